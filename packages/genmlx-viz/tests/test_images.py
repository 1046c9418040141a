"""One image comparison per plot type, against baselines in tests/baseline/.

Each figure is drawn from fixed inputs (NumPy's PCG64 streams, or a fully constrained
trace) with the pinned style of conftest.py, its text is removed (:func:`strip_text`;
the text is checked exactly by the content tests), and it is rendered twice: the two
renders must be pixel-identical. The render is then compared with the committed
baseline by ``matplotlib.testing.compare.compare_images``, whose ``tol`` is the RMS
difference of the 0-255 pixel values.

Why text is removed and ``TOL = 1``: with text, switching the FreeType hinting mode
(what another FreeType build does) changed the RMS by 27-39 on these figures, because
constrained layout moves every axes when text extents change, while shifting the
posterior figure's data by 5 % of its spread changed it by only 6.7. Without text the
hinting switches give RMS 0.0 on every figure, and shifting the data by 0.5 % of its
spread gives 1.09, 5 % gives 6.7; ``test_tolerance_catches_a_small_data_change``
keeps the 5 % case failing.

Regenerate the baselines (after checking the new images by eye) with
``GENMLX_VIZ_UPDATE_BASELINES=1 pytest packages/genmlx-viz/tests/test_images.py``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.testing.compare import compare_images
from matplotlib.ticker import NullFormatter
from PIL import Image

import genmlx.viz as gv
from genmlx.core import choicemap, gen
from genmlx.dists import normal

BASELINE = Path(__file__).parent / "baseline"
TOL = 1.0
UPDATE = os.environ.get("GENMLX_VIZ_UPDATE_BASELINES") == "1"


@gen
def regression(xs: mx.array) -> None:
    slope = normal(0.0, 1.0) @ "slope"
    intercept = normal(0.0, 2.0) @ "intercept"
    for i in range(4):
        normal(slope * xs[i] + intercept, 0.5) @ ("y", i)


def trace_figure() -> Figure:
    xs = mx.array([0.0, 1.0, 2.0, 3.0])
    values = {"slope": 0.8, "intercept": -0.3}
    values.update({("y", i): v for i, v in enumerate([-0.1, 0.6, 1.2, 2.6])})
    tr, _ = regression.generate((xs,), choicemap(values), key=mx.random.key(0))
    return gv.plot_trace(tr)


def posterior_figure(shift: float = 0.0) -> Figure:
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2000, 2)) @ np.array([[1.0, 0.6], [0.0, 0.8]])
    w = np.exp(-0.5 * (x[:, 0] - 0.5) ** 2)
    k = rng.poisson(2.0, size=2000)
    return gv.plot_posterior(
        {"a": x[:, 0] + shift, "b": x[:, 1], "k": k}, weights=w, kind="both", truths={"a": 0.5}
    )


def pairs_figure() -> Figure:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(600, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, -0.7], [0, 0, 0.5]])
    return gv.plot_pairs({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}, truths={"a": 0.0, "b": 0.0})


def chains_figure() -> Figure:
    rng = np.random.default_rng(12)
    ar = np.zeros((3, 150))
    for t in range(1, 150):
        ar[:, t] = 0.8 * ar[:, t - 1] + rng.normal(size=3) * 0.6
    return gv.plot_chains({"mu": ar, "sigma": np.exp(0.3 * rng.normal(size=(3, 150)))})


def ranks_figure() -> Figure:
    rng = np.random.default_rng(13)
    x = rng.normal(size=(4, 300))
    x[3] += 0.4
    return gv.plot_ranks({"mu": x, "tau": rng.normal(size=(4, 300))})


def particles_figure() -> Figure:
    rng = np.random.default_rng(14)
    truth = np.cumsum(rng.normal(size=6) * 0.7)
    steps = [truth[t] + rng.normal(size=120) for t in range(6)]
    ws = [np.exp(-0.5 * ((v - truth[t]) / 0.6) ** 2) for t, v in enumerate(steps)]
    return gv.plot_particles(steps, weights=ws, truth=list(truth), bins=20)


def losses_figure() -> Figure:
    rng = np.random.default_rng(15)
    steps = np.arange(300)
    a = 200 * np.exp(-steps / 60) + 20 + rng.normal(size=300) * 4
    b = 220 * np.exp(-steps / 90) + 25 + rng.normal(size=300) * 4
    return gv.plot_losses({"adam": a, "sgd": b}, window=20, ylabel="-ELBO")


FIGURES: dict[str, Callable[[], Figure]] = {
    "trace": trace_figure,
    "posterior": posterior_figure,
    "pairs": pairs_figure,
    "chains": chains_figure,
    "ranks": ranks_figure,
    "particles": particles_figure,
    "losses": losses_figure,
}


def strip_text(fig: Figure) -> Figure:
    """Remove every piece of text (titles, labels, tick labels, bar labels, legends).

    Text extents depend on the FreeType build, and constrained layout moves every axes
    when they change, so images with text differ across machines by far more than a
    real change of the data does. The text itself is checked by the content tests.
    """
    fig.suptitle("")
    for ax in fig.axes:
        ax.set_title("")
        ax.set_xlabel("")
        ax.set_ylabel("")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(NullFormatter())
            axis.set_minor_formatter(NullFormatter())
        for text in list(ax.texts):
            text.remove()
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
    return fig


def _render(make: Callable[[], Figure], path: Path) -> np.ndarray:
    strip_text(make()).savefig(path, dpi=60)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


@pytest.mark.parametrize("name", list(FIGURES))
def test_matches_baseline(name: str, tmp_path: Path) -> None:
    first = _render(FIGURES[name], tmp_path / f"{name}.png")
    second = _render(FIGURES[name], tmp_path / f"{name}-again.png")
    np.testing.assert_array_equal(first, second)  # rendering is deterministic
    baseline = BASELINE / f"{name}.png"
    if UPDATE:
        BASELINE.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / f"{name}.png", baseline)
    assert baseline.exists(), f"no baseline {baseline}; run with GENMLX_VIZ_UPDATE_BASELINES=1"
    diff = compare_images(str(baseline), str(tmp_path / f"{name}.png"), tol=TOL)
    assert diff is None, diff


def test_tolerance_catches_a_small_data_change(tmp_path: Path) -> None:
    moved = tmp_path / "posterior-moved.png"
    strip_text(posterior_figure(shift=0.05)).savefig(moved, dpi=60)
    diff = compare_images(str(BASELINE / "posterior.png"), str(moved), tol=TOL)
    assert diff is not None and "RMS" in diff
