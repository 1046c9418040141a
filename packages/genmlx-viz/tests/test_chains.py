"""plot_chains and plot_ranks.

Ranks are recomputed here independently (a double argsort, valid without ties), and
bin counts with numpy; the uniformity band is checked against Binomial tail sums
computed with ``math.comb``.
"""

from __future__ import annotations

import math
from functools import partial

import mlx.core as mx
import numpy as np
import pytest
from matplotlib.container import BarContainer

import genmlx.viz as gv
from genmlx.core import choicemap, gen, select
from genmlx.dists import normal
from genmlx.infer import chain, mh
from genmlx.viz.chains import binomial_interval, pooled_ranks


@gen
def model() -> None:
    mu = normal(0.0, 1.0) @ "mu"
    normal(mx.array([mu, -mu]), 1.0) @ "v"
    normal(mu, 0.5) @ "y"


def _chain_result(n_chains: int = 4, steps: int = 30):  # type: ignore[no-untyped-def]
    tr, _ = model.vgenerate((), choicemap({"y": 0.7}), n_chains, key=mx.random.key(0))
    kernel = partial(mh, selection_or_proposal=select("mu", "v"))
    return chain(kernel, tr, steps, key=mx.random.key(1), addresses=["mu", "v"])


def test_plot_chains_from_chain_result_one_line_per_chain() -> None:
    res = _chain_result()
    fig = gv.plot_chains(res)
    # variables mu, v[0], v[1]; two axes each (histogram, trace)
    assert len(fig.axes) == 6
    mu = np.array(res.samples["mu"])  # [draws, chains]
    trace_ax = fig.axes[1]
    lines = trace_ax.get_lines()
    assert len(lines) == 4
    for c, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_ydata(), mu[:, c].astype(np.float64))
        np.testing.assert_array_equal(line.get_xdata(), np.arange(30))
    v1 = np.array(res.samples["v"])[:, :, 1]
    for c, line in enumerate(fig.axes[5].get_lines()):
        np.testing.assert_array_equal(line.get_ydata(), v1[:, c].astype(np.float64))
    assert [fig.axes[i].get_title() for i in (1, 3, 5)] == ["mu", "v[0]", "v[1]"]
    assert fig.axes[0].get_ylabel() == "mu"
    assert fig.get_suptitle() == "chains (4 chains, 30 draws each)"
    # the histograms: one step outline per chain, on shared edges
    assert len(fig.axes[0].patches) == 4


def test_plot_chains_dict_and_single_chain() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 80))
    fig = gv.plot_chains({"a": x}, max_chains=2)
    assert len(fig.axes[1].get_lines()) == 2
    assert fig.get_suptitle() == "chains (chains 0-1 of 3, 80 draws each)"
    one = gv.plot_chains({"a": x[0]})
    (line,) = one.axes[1].get_lines()
    np.testing.assert_array_equal(line.get_ydata(), x[0])


def test_single_chain_result() -> None:
    tr, _ = model.generate((), choicemap({"y": 0.7}), key=mx.random.key(5))
    kernel = partial(mh, selection_or_proposal=select("mu"))
    res = chain(kernel, tr, 25, key=mx.random.key(6), addresses=["mu"])
    fig = gv.plot_chains(res)
    (line,) = fig.axes[1].get_lines()
    np.testing.assert_array_equal(line.get_ydata(), np.array(res.samples["mu"], dtype=np.float64))
    assert fig.get_suptitle() == "chains (1 chain, 25 draws each)"


def test_pooled_ranks_average_ties() -> None:
    x = np.array([[3.0, 1.0, 2.0], [2.0, 5.0, 2.0]])
    # sorted: 1, 2, 2, 2, 3, 5 -> the three 2s share ranks 2, 3, 4 -> 3
    assert pooled_ranks(x).tolist() == [[5.0, 1.0, 3.0], [3.0, 6.0, 3.0]]
    y = np.random.default_rng(1).normal(size=(4, 50))
    want = np.argsort(np.argsort(y.ravel())).reshape(4, 50) + 1.0
    np.testing.assert_array_equal(pooled_ranks(y), want)


@pytest.mark.parametrize(("n", "p", "level"), [(100, 0.5, 0.95), (40, 0.05, 0.99), (200, 0.1, 0.9)])
def test_binomial_interval_is_the_central_interval(n: int, p: float, level: float) -> None:
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    lo, hi = binomial_interval(n, p, level)
    tail = (1 - level) / 2
    assert sum(pmf[:lo]) <= tail < sum(pmf[: lo + 1])
    assert sum(pmf[hi + 1 :]) <= tail + 1e-12 < sum(pmf[hi:])


def test_plot_ranks_bars_are_per_chain_rank_histograms() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 120))
    x[2] += 0.8  # a chain that disagrees
    fig = gv.plot_ranks({"a": x}, bins=6)
    (ax,) = fig.axes
    ranks = np.argsort(np.argsort(x.ravel())).reshape(3, 120) + 1.0
    counts = np.stack(
        [np.histogram((ranks[c] - 0.5) / 360, bins=np.linspace(0, 1, 7))[0] for c in range(3)]
    )
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3
    heights = np.array([[r.get_height() for r in b] for b in bars])
    bottoms = np.array([[r.get_y() for r in b] for b in bars])
    np.testing.assert_array_equal(bottoms, np.repeat([[0.0], [1.0], [2.0]], 6, axis=1))
    # one scale factor for all bars of the axes
    np.testing.assert_allclose(heights / heights.max(), counts / counts.max(), rtol=1e-12)
    # the shifted chain piles up in the top bin, above the 99% uniformity band
    assert counts[2, -1] > binomial_interval(120, 1 / 6, 0.99)[1]
    # dashed reference line at D / B for each chain, on the same scale
    refs = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    scale = heights.max() / counts.max()
    np.testing.assert_allclose(
        [ln.get_ydata()[0] for ln in refs], [c + 20 * scale for c in range(3)], rtol=1e-12
    )
    assert ax.get_title() == "a"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]


def test_plot_ranks_from_chain_result_and_max_chains() -> None:
    res = _chain_result(n_chains=6, steps=40)
    fig = gv.plot_ranks(res, "mu", max_chains=3)
    (ax,) = fig.axes
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3 and all(len(b) == 4 for b in bars)  # default bins: 40 // 10
    assert fig.get_suptitle() == "rank plots (chains 0-2 of 6, 40 draws each, 4 bins)"


def test_chain_errors() -> None:
    with pytest.raises(TypeError, match="cannot read chains from list"):
        gv.plot_chains([1.0, 2.0])
    with pytest.raises(ValueError, match=r"\[chains, draws\]"):
        gv.plot_chains({"a": np.zeros((2, 10)), "b": np.zeros((3, 10))})
    with pytest.raises(KeyError, match="'b'"):
        gv.plot_ranks({"a": np.zeros((2, 10))}, "b")
    with pytest.raises(ValueError, match="level"):
        gv.plot_ranks({"a": np.zeros((2, 10))}, level=1.5)
    with pytest.raises(ValueError, match="max_chains"):
        gv.plot_chains({"a": np.zeros((2, 10))}, max_chains=0)
