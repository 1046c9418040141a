"""plot_trace: one bar per site, its log density, and the site's value.

Log densities are checked against the normal log pdf written out here,
``−½ log(2πσ²) − (x − μ)²/(2σ²)``, so a wrong site score or a misplaced value fails.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from matplotlib.container import BarContainer

import genmlx.viz as gv
from genmlx.combinators import Switch
from genmlx.core import choicemap, gen
from genmlx.dists import bernoulli, normal
from genmlx.viz.trace_view import trace_sites


def logpdf(x: float, mu: float, sigma: float) -> float:
    return -0.5 * math.log(2 * math.pi * sigma**2) - (x - mu) ** 2 / (2 * sigma**2)


@gen
def inner(m: mx.array) -> None:
    normal(m, 2.0) @ "z"


@gen
def model() -> None:
    mu = normal(0.0, 1.0) @ "mu"
    normal(mu, 0.5) @ ("y", 0)
    normal(mx.array([mu, mu]), 1.0) @ "pair"
    inner(mu) @ "sub"


VALUES = {"mu": 0.5, ("y", 0): 1.25, "pair": mx.array([0.0, 2.0]), ("sub", "z"): -1.0}


def _expected() -> list[float]:
    return [
        logpdf(0.5, 0.0, 1.0),
        logpdf(1.25, 0.5, 0.5),
        logpdf(0.0, 0.5, 1.0) + logpdf(2.0, 0.5, 1.0),
        logpdf(-1.0, 0.5, 2.0),
    ]


def _bars(fig: object) -> BarContainer:
    (bars,) = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]  # type: ignore[attr-defined]
    return bars


def test_single_trace_rows_values_and_log_densities() -> None:
    tr, _ = model.generate((), choicemap(VALUES), key=mx.random.key(0))
    fig = gv.plot_trace(tr)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["mu = 0.5", "y/0 = 1.25", "pair = [0, 2]", "sub/z = -1"]
    widths = [r.get_width() for r in _bars(fig)]
    np.testing.assert_allclose(widths, _expected(), rtol=1e-5)
    # the first site is drawn on top
    ys = [r.get_y() for r in _bars(fig)]
    assert ys == sorted(ys, reverse=True)
    total = sum(_expected())
    assert ax.get_title() == f"trace of model: score {float(tr.score):.4g}"
    assert abs(float(tr.score) - total) < 1e-4
    assert ax.get_xlabel() == "log density"
    assert [t.get_text() for t in ax.texts] == [f"{float(w):.4g}" for w in widths]


def test_batched_trace_summary_and_single_particle() -> None:
    n = 64
    tr = model.vsimulate((), n, key=mx.random.key(1))
    mu = np.array(tr["mu"], dtype=np.float64)
    y0 = np.array(tr[("y", 0)], dtype=np.float64)
    site_mu = np.array([logpdf(m, 0.0, 1.0) for m in mu])
    site_y = np.array([logpdf(y, m, 0.5) for y, m in zip(y0, mu)])
    fig = gv.plot_trace(tr)
    widths = [r.get_width() for r in _bars(fig)]
    np.testing.assert_allclose(widths[:2], [site_mu.mean(), site_y.mean()], rtol=1e-5)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == f"mu = {mu.mean():.4g} ± {mu.std():.4g}"
    assert labels[2] == "pair = [2] per particle"
    assert "64 particles" in fig.axes[0].get_title()
    # error bars: one horizontal segment per site, ± one sd over particles
    (err,) = [c for c in fig.axes[0].collections]
    seg0 = err.get_segments()[0]
    np.testing.assert_allclose(
        [seg0[0][0], seg0[1][0]],
        [site_mu.mean() - site_mu.std(), site_mu.mean() + site_mu.std()],
        rtol=1e-5,
    )
    fig3 = gv.plot_trace(tr, particle=3)
    w3 = [r.get_width() for r in _bars(fig3)]
    np.testing.assert_allclose(w3[:2], [site_mu[3], site_y[3]], rtol=1e-5)
    assert fig3.axes[0].get_yticklabels()[0].get_text() == f"mu = {mu[3]:.4g}"
    assert "particle 3" in fig3.axes[0].get_title()


def test_max_sites() -> None:
    @gen
    def many() -> None:
        for i in range(12):
            normal(0.0, 1.0) @ ("x", i)

    tr = many.simulate((), key=mx.random.key(2))
    fig = gv.plot_trace(tr, max_sites=5)
    assert len(_bars(fig)) == 5
    assert fig.axes[0].get_title().endswith("(7 more sites not shown)")
    assert len(trace_sites(tr)) == 12


@gen
def left() -> None:
    normal(0.0, 1.0) @ "x"


@gen
def right() -> None:
    normal(5.0, 1.0) @ "w"


@gen
def branching() -> None:
    k = bernoulli(0.5) @ "k"
    Switch(left, right)(k.astype(mx.int32)) @ "br"


def test_masked_sites_count_only_the_particles_that_took_the_branch() -> None:
    tr = branching.vsimulate((), 40, key=mx.random.key(11))
    k = np.array(tr["k"])
    assert 0 < k.sum() < 40  # both branches are taken
    x = np.array(tr.get_choices()[("br", "x")], dtype=np.float64)[~k]
    w = np.array(tr.get_choices()[("br", "w")], dtype=np.float64)[k]
    fig = gv.plot_trace(tr)
    widths = [r.get_width() for r in _bars(fig)]
    want_x = np.mean([logpdf(v, 0.0, 1.0) for v in x])
    want_w = np.mean([logpdf(v, 5.0, 1.0) for v in w])
    np.testing.assert_allclose(widths, [math.log(0.5), want_x, want_w], rtol=1e-5)
    # one particle that took the right branch: its x site is not shown
    i = int(np.flatnonzero(k)[0])
    labels = [t.get_text() for t in gv.plot_trace(tr, particle=i).axes[0].get_yticklabels()]
    assert [s.split(" =")[0] for s in labels] == ["k", "br/w"]


def test_trace_view_errors() -> None:
    tr = model.simulate((), key=mx.random.key(3))
    with pytest.raises(ValueError, match="particle=1 needs a trace batched"):
        gv.plot_trace(tr, particle=1)
    bt = model.vsimulate((), 4, key=mx.random.key(3))
    with pytest.raises(ValueError, match=r"particle must be an int in \[0, 4\)"):
        gv.plot_trace(bt, particle=4)
    with pytest.raises(TypeError, match="expected a Trace"):
        gv.plot_trace({"mu": 1.0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_sites"):
        gv.plot_trace(tr, max_sites=0)
