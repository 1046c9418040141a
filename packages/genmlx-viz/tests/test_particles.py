"""SMC particle plots and animations, from a real particle filter and from arrays.

Histogram widths are compared with ``numpy.histogram`` on the shared edges
(``linspace(lo − pad, hi + pad, bins + 1)``, ``pad = 5 %`` of the range over all steps),
weights recomputed here from the states' log weights.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from PIL import Image

import genmlx.viz as gv
from genmlx.combinators import Unfold
from genmlx.core import gen
from genmlx.dists import normal
from genmlx.infer import particle_filter

YS = [0.3, 0.8, 1.6, 2.1]
N = 60


@gen
def kernel(t: int, x: mx.array) -> mx.array:
    x = normal(x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


def _history() -> list:  # type: ignore[type-arg]
    model = Unfold(kernel)
    x0 = mx.array(0.0)
    keys = mx.random.split(mx.random.key(0), 2 * len(YS))
    state = particle_filter(model, (1, x0), {(0, "y"): YS[0]}, N, key=keys[0])
    out = [state]
    for t in range(1, len(YS)):
        state = state.resample(key=keys[2 * t - 1])
        state = state.step((t + 1, x0), {(t, "y"): YS[t]}, key=keys[2 * t])
        out.append(state)
    return out


HISTORY = _history()


def _values(t: int) -> np.ndarray:
    return np.array(HISTORY[t].traces[(t, "x")], dtype=np.float64)


def _weights(t: int) -> np.ndarray:
    lw = np.array(HISTORY[t].log_weights, dtype=np.float64)
    w = np.exp(lw - lw.max())
    return w / w.sum()


def _edges(bins: int, truth: list[float] | None = None) -> np.ndarray:
    allv = np.concatenate([_values(t) for t in range(len(YS))] + [np.array(truth or [])])
    lo, hi = allv.min(), allv.max()
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, bins + 1)


def test_plot_particles_last_step() -> None:
    fig = gv.plot_particles(HISTORY, lambda t: (t, "x"), bins=12, truth=YS, point_size=10.0)
    ax_time, ax_hist = fig.axes
    past, current = [c for c in ax_time.collections if isinstance(c, PathCollection)]
    t = len(YS) - 1
    assert len(past.get_offsets()) == N * t
    np.testing.assert_allclose(past.get_offsets()[:N, 1], _values(0))
    np.testing.assert_allclose(current.get_offsets()[:, 1], _values(t))
    np.testing.assert_allclose(current.get_offsets()[:, 0], t)
    np.testing.assert_allclose(current.get_sizes(), 10.0 * N * _weights(t), rtol=1e-9)
    want, _ = np.histogram(_values(t), bins=_edges(12, YS), weights=_weights(t), density=True)
    np.testing.assert_allclose([b.get_width() for b in ax_hist.patches], want, rtol=1e-9)
    mean_line, truth_line = ax_time.get_lines()
    means = [float(np.sum(_weights(s) * _values(s))) for s in range(len(YS))]
    np.testing.assert_allclose(mean_line.get_ydata(), means, rtol=1e-9)
    np.testing.assert_allclose(truth_line.get_ydata(), YS)
    ess = 1.0 / np.sum(_weights(t) ** 2)
    assert ax_time.get_title() == f"step {t}: {t}/x, {N} particles, ESS {ess:.1f}"
    assert ax_time.get_xlabel() == "step" and ax_hist.get_xlabel() == "density"


def test_plot_particles_middle_step_from_arrays_with_weights() -> None:
    vals = [_values(t) for t in range(len(YS))]
    ws = [np.exp(np.array(HISTORY[t].log_weights, dtype=np.float64)) for t in range(len(YS))]
    fig = gv.plot_particles(vals, step=1, weights=ws, bins=10)
    ax_time, ax_hist = fig.axes
    past, current = [c for c in ax_time.collections if isinstance(c, PathCollection)]
    assert len(past.get_offsets()) == N
    np.testing.assert_allclose(current.get_offsets()[:, 1], _values(1))
    want, _ = np.histogram(_values(1), bins=_edges(10), weights=_weights(1), density=True)
    np.testing.assert_allclose([b.get_width() for b in ax_hist.patches], want, rtol=1e-9)
    assert ax_time.get_title().startswith("step 1: value, 60 particles")


def test_animation_frames_gif_and_html(tmp_path: Path) -> None:
    anim = gv.animate_particles(HISTORY, lambda t: (t, "x"), bins=8, interval=100)
    assert isinstance(anim, gv.ParticleAnimation)
    assert anim.n_frames == len(YS)
    fig = anim.draw_frame(2)
    assert fig.axes[0].get_title().startswith("step 2: 2/x")
    gif = gv.save_animation(anim, tmp_path / "pf.gif", fps=4, dpi=40)
    with Image.open(gif) as im:
        assert im.n_frames == len(YS)
        assert im.size == (int(8.0 * 40), int(3.6 * 40))
        assert im.info["duration"] == 250  # 1000 / fps ms
    html = gv.save_animation(anim, tmp_path / "pf.html", fps=4, dpi=30).read_text()
    assert html.count("data:image/png;base64") == len(YS)
    assert "<script" in html
    assert "<script" in anim._repr_html_()


def test_particle_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pass address="):
        gv.plot_particles(HISTORY)
    with pytest.raises(KeyError, match=r"step 0 holds no choice at \(0, 'z'\)"):
        gv.plot_particles(HISTORY, lambda t: (t, "z"))
    with pytest.raises(ValueError, match="carries its own log_weights"):
        gv.plot_particles(HISTORY, lambda t: (t, "x"), weights=[None] * len(YS))
    with pytest.raises(ValueError, match="truth must have one value per step"):
        gv.plot_particles(HISTORY, lambda t: (t, "x"), truth=[0.0])
    with pytest.raises(ValueError, match="one scalar per particle"):
        gv.plot_particles([np.zeros((5, 2))])
    with pytest.raises(TypeError, match="non-empty list of snapshots"):
        gv.plot_particles([])
    with pytest.raises(ValueError, match=r"step must be in \[0, 2\)"):
        gv.plot_particles([np.zeros(3), np.ones(3)], step=2)
    anim = gv.animate_particles([np.zeros(3), np.ones(3)])
    with pytest.raises(ValueError, match="unsupported suffix '.mp4'"):
        gv.save_animation(anim, tmp_path / "a.mp4")
    gv.save_animation(anim, tmp_path / "a.gif")  # renders it, so no "deleted" warning
