"""plot_posterior and plot_pairs: what the figures hold, for every input form.

Histogram heights are compared with ``numpy.histogram`` of the same values (with the
weights computed independently here from the log weights, ``exp(lw − logsumexp lw)``),
so a wrong weight, a dropped particle or a wrong bin shows up as a height mismatch.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import genmlx.viz as gv
from genmlx.core import choicemap, gen
from genmlx.dists import bernoulli, normal
from genmlx.infer import chain, importance_sampling, mh
from genmlx.viz._common import weighted_kde

YS = [0.8, 1.4, 1.1]


@gen
def model() -> None:
    mu = normal(0.0, 1.0) @ "mu"
    flip = bernoulli(0.3) @ "flip"
    normal(mx.array([0.0, 1.0, 2.0]) + mu, 1.0) @ "vec"
    for i, _ in enumerate(YS):
        normal(mu + 0.5 * flip, 0.5) @ ("y", i)


OBS = choicemap({("y", i): v for i, v in enumerate(YS)})


def _heights(ax: object) -> np.ndarray:
    return np.array([p.get_height() for p in ax.patches if isinstance(p, Rectangle)])  # type: ignore[attr-defined]


def _weighted_edges(x: np.ndarray, w: np.ndarray, bins: int) -> np.ndarray:
    """Equal bins between the weighted 0.1 % and 99.9 % quantiles (the smallest sorted
    value whose cumulative weight reaches p)."""
    order = np.argsort(x)
    cum = np.cumsum(w[order])
    lo = x[order][np.argmax(cum >= 0.001 * cum[-1])]
    hi = x[order][np.argmax(cum >= 0.999 * cum[-1])]
    return np.linspace(lo, hi, bins + 1)


def _softmax(lw: np.ndarray) -> np.ndarray:
    lw = lw.astype(np.float64)
    m = lw.max()
    w = np.exp(lw - m)
    return w / w.sum()


def test_dict_samples_histogram_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=700)
    fig = gv.plot_posterior({"mu": x}, "mu", bins=25)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    want, edges = np.histogram(x, bins=np.histogram_bin_edges(x, 25), density=True)
    np.testing.assert_allclose(_heights(ax), want, rtol=1e-12)
    np.testing.assert_allclose([p.get_x() for p in ax.patches], edges[:-1], rtol=1e-12)
    assert ax.get_xlabel() == "mu" and ax.get_ylabel() == "density"
    assert ax.get_title() == f"mu: mean {x.mean():.3g}, sd {x.std():.3g}"
    assert fig.get_suptitle() == "posterior marginals (700 samples)"


def test_importance_sampling_result_uses_normalised_weights() -> None:
    res = importance_sampling(model, (), OBS, 400, key=mx.random.key(3))
    w = _softmax(np.array(res.log_weights))
    mu = np.array(res.traces["mu"], dtype=np.float64)
    fig = gv.plot_posterior(res, ["mu"], bins=20)
    (ax,) = fig.axes
    edges = _weighted_edges(mu, w, 20)
    want, _ = np.histogram(mu, bins=edges, weights=w, density=True)
    np.testing.assert_allclose(_heights(ax), want, rtol=1e-9)
    np.testing.assert_allclose([p.get_x() for p in ax.patches], edges[:-1], rtol=1e-9)
    # the unweighted histogram differs (the weights matter)
    unweighted, _ = np.histogram(mu, bins=edges, density=True)
    assert np.abs(unweighted - want).max() > 0.05
    ess = 1.0 / np.sum(w**2)
    assert fig.get_suptitle() == f"posterior marginals (400 weighted particles, ESS {ess:.1f})"
    m = float(np.sum(w * mu))
    sd = math.sqrt(float(np.sum(w * (mu - m) ** 2)))
    assert ax.get_title() == f"mu: mean {m:.3g}, sd {sd:.3g}"


def test_explicit_weights_equal_log_weights_result() -> None:
    res = importance_sampling(model, (), OBS, 300, key=mx.random.key(4))
    w = np.exp(np.array(res.log_weights, dtype=np.float64))
    a = gv.plot_posterior(res, "mu")
    b = gv.plot_posterior({"mu": np.array(res.traces["mu"])}, "mu", weights=3.0 * w)
    np.testing.assert_allclose(_heights(a.axes[0]), _heights(b.axes[0]), rtol=1e-9)


def test_batched_trace_list_of_traces_and_choicemap_agree() -> None:
    keys = mx.random.split(mx.random.key(5), 6)
    traces = [model.simulate((), key=k) for k in keys]
    mu = np.array([float(t["mu"]) for t in traces])
    stacked = {"mu": mu}
    f_list = gv.plot_posterior(traces, "mu", bins=4)
    f_dict = gv.plot_posterior(stacked, "mu", bins=4)
    np.testing.assert_allclose(_heights(f_list.axes[0]), _heights(f_dict.axes[0]))
    batched = model.vsimulate((), 50, key=mx.random.key(6))
    f_tr = gv.plot_posterior(batched, "mu", bins=5)
    f_cm = gv.plot_posterior(batched.get_choices(), "mu", bins=5)
    bmu = np.array(batched["mu"], dtype=np.float64)
    want, _ = np.histogram(bmu, bins=np.histogram_bin_edges(bmu, 5), density=True)
    np.testing.assert_allclose(_heights(f_tr.axes[0]), want, rtol=1e-12)
    np.testing.assert_allclose(_heights(f_cm.axes[0]), want, rtol=1e-12)


def test_default_addresses_split_vectors_and_bin_discrete_values() -> None:
    batched = model.vsimulate((), 200, key=mx.random.key(7))
    fig = gv.plot_posterior(batched)
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert labels == ["mu", "flip", "vec[0]", "vec[1]", "vec[2]", "y/0", "y/1", "y/2"]
    flip = np.array(batched["flip"], dtype=np.float64)
    ax = fig.axes[1]
    # booleans: one bin per value, centred on 0 and 1, heights = frequencies
    np.testing.assert_allclose([p.get_x() for p in ax.patches], [-0.5, 0.5])
    np.testing.assert_allclose(_heights(ax), [np.mean(flip == 0), np.mean(flip == 1)])
    vec2 = np.array(batched["vec"], dtype=np.float64)[:, 2]
    want, _ = np.histogram(vec2, bins=np.histogram_bin_edges(vec2, 30), density=True)
    np.testing.assert_allclose(_heights(fig.axes[4]), want, rtol=1e-12)


def test_chain_result_pools_chains() -> None:
    tr, _ = model.vgenerate((), OBS, 3, key=mx.random.key(8))
    from functools import partial

    from genmlx.core import select

    res = chain(
        partial(mh, selection_or_proposal=select("mu")),
        tr,
        40,
        key=mx.random.key(9),
        addresses=["mu"],
    )
    fig = gv.plot_posterior(res, "mu", bins=10)
    pooled = np.array(res.samples["mu"], dtype=np.float64).ravel()
    assert pooled.size == 120
    want, _ = np.histogram(pooled, bins=np.histogram_bin_edges(pooled, 10), density=True)
    np.testing.assert_allclose(_heights(fig.axes[0]), want, rtol=1e-12)


def test_masked_choice_uses_only_present_particles() -> None:
    x = np.arange(10.0)
    present = np.array([True, False] * 5)
    cm = choicemap({"x": mx.array(x)}, batch_shape=(10,)).mask(mx.array(present))
    fig = gv.plot_posterior(cm, "x", bins=5)
    kept = x[present]
    want, _ = np.histogram(kept, bins=np.histogram_bin_edges(kept, 5), density=True)
    np.testing.assert_allclose(_heights(fig.axes[0]), want, rtol=1e-12)


def test_several_batch_axes_are_pooled() -> None:
    x = np.arange(12.0).reshape(2, 3, 2)  # batch (2, 3), one vector of 2 per particle
    present = np.array([[True, True, False], [True, True, True]])
    cm = choicemap({"v": mx.array(x)}, batch_shape=(2, 3)).mask(mx.array(present))
    fig = gv.plot_posterior(cm, "v", bins=3)
    assert [ax.get_xlabel() for ax in fig.axes] == ["v[0]", "v[1]"]
    kept = x.reshape(6, 2)[present.ravel(), 1]
    want, _ = np.histogram(kept, bins=np.histogram_bin_edges(kept, 3), density=True)
    np.testing.assert_allclose(_heights(fig.axes[1]), want, rtol=1e-12)


def test_kde_line_is_the_weighted_gaussian_mixture() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    w = rng.uniform(0.1, 1.0, size=300)
    wn = w / w.sum()
    fig = gv.plot_posterior({"a": x}, weights=w, kind="kde")
    (line,) = fig.axes[0].get_lines()
    grid, dens = line.get_xdata(), line.get_ydata()
    # Scott's rule with Kish's ESS, written out here
    m = np.sum(wn * x)
    h = math.sqrt(np.sum(wn * (x - m) ** 2)) * (1.0 / np.sum(wn**2)) ** (-0.2)
    want = np.array([np.sum(wn * np.exp(-0.5 * ((g - x) / h) ** 2)) for g in grid])
    want /= h * math.sqrt(2 * math.pi)
    np.testing.assert_allclose(dens, want, rtol=1e-9)
    # the grid spans the weighted 0.1 %..99.9 % range widened by 3h on each side, so
    # the density integrates to 1 up to the weight outside that range (0.001 a side)
    # plus the kernels' mass beyond 3h (0.00135 a side)
    area = float(np.sum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid)))
    assert 1.0 - 2 * (0.001 + 0.00135) < area < 1.0 + 1e-3
    assert grid[0] == pytest.approx(_weighted_edges(x, wn, 1)[0] - 3 * h)


def test_kde_of_many_particles_matches_chunked_and_direct() -> None:
    x = np.random.default_rng(2).normal(size=9000)  # more than one chunk of 4096
    grid, dens = weighted_kde(x, None, np.linspace(-3, 3, 7))
    h = x.std() * 9000 ** (-0.2)
    want = np.array([np.mean(np.exp(-0.5 * ((g - x) / h) ** 2)) for g in grid])
    np.testing.assert_allclose(dens, want / (h * math.sqrt(2 * math.pi)), rtol=1e-10)


def test_both_truths_and_grid() -> None:
    x = {
        "a": np.linspace(0, 1, 50),
        "b": np.linspace(1, 2, 50),
        "c": np.ones(50),
        "d": np.zeros(50),
    }
    fig = gv.plot_posterior(x, kind="both", truths={"a": 0.25, "c": 1.0}, ncols=2)
    assert len(fig.axes) == 4
    geom = [ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes]
    assert geom == [(2, 2)] * 4
    a_lines = fig.axes[0].get_lines()
    assert len(a_lines) == 2  # KDE + truth
    assert list(a_lines[1].get_xdata()) == [0.25, 0.25]
    assert len(fig.axes[1].get_lines()) == 1  # KDE only, no truth for b


def test_fig_argument_and_saving(tmp_path: object) -> None:
    fig = Figure()
    out = gv.plot_posterior({"a": np.arange(5.0)}, fig=fig)
    assert out is fig
    from pathlib import Path

    p = Path(str(tmp_path))
    fig.savefig(p / "a.png")
    fig.savefig(p / "a.svg")
    assert (p / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (p / "a.svg").read_text()
    with pytest.raises(ValueError, match="fig already holds axes"):
        gv.plot_posterior({"a": np.arange(5.0)}, fig=fig)


def test_bad_input_errors_name_the_problem() -> None:
    res = importance_sampling(model, (), OBS, 20, key=mx.random.key(0))
    with pytest.raises(KeyError, match="'sigma'"):
        gv.plot_posterior(res, "sigma")
    with pytest.raises(ValueError, match="carries its own log_weights"):
        gv.plot_posterior(res, "mu", weights=np.ones(20))
    with pytest.raises(ValueError, match=r"weights must have shape \(5,\)"):
        gv.plot_posterior({"a": np.arange(5.0)}, weights=np.ones(4))
    with pytest.raises(ValueError, match="non-negative"):
        gv.plot_posterior({"a": np.arange(3.0)}, weights=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="kind must be one of"):
        gv.plot_posterior({"a": np.arange(3.0)}, kind="violin")
    with pytest.raises(TypeError, match="cannot read samples from int"):
        gv.plot_posterior(3)
    with pytest.raises(ValueError, match="pass addresses"):
        gv.plot_posterior({"a": np.zeros((10, 40))})
    with pytest.raises(ValueError, match="not batched"):
        gv.plot_posterior(choicemap({"a": 1.0}))


# ---------------------------------------------------------------------- pairs
def test_pairs_scatter_holds_every_pair() -> None:
    rng = np.random.default_rng(3)
    a, b, c = rng.normal(size=(3, 150))
    fig = gv.plot_pairs({"a": a, "b": b, "c": c})
    assert len(fig.axes) == 6
    by_pos = {
        ax.get_subplotspec().rowspan.start * 10 + ax.get_subplotspec().colspan.start: ax
        for ax in fig.axes
    }
    vals = [a, b, c]
    for i in range(3):
        for j in range(i):
            ax = by_pos[10 * i + j]
            (coll,) = [x for x in ax.collections if isinstance(x, PathCollection)]
            np.testing.assert_allclose(coll.get_offsets(), np.column_stack([vals[j], vals[i]]))
        diag = by_pos[11 * i]
        want, _ = np.histogram(vals[i], bins=np.histogram_bin_edges(vals[i], 30), density=True)
        np.testing.assert_allclose(_heights(diag), want, rtol=1e-12)
    assert by_pos[20].get_xlabel() == "a" and by_pos[20].get_ylabel() == "c"
    assert by_pos[21].get_xlabel() == "b"


def test_pairs_weighted_scatter_sizes_and_hist2d() -> None:
    res = importance_sampling(model, (), OBS, 200, key=mx.random.key(11))
    w = _softmax(np.array(res.log_weights))
    mu = np.array(res.traces["mu"], dtype=np.float64)
    fig = gv.plot_pairs(res, ["mu", "vec"], point_size=4.0)
    assert len(fig.axes) == 10  # mu, vec[0], vec[1], vec[2]: 4 diagonal + 6 pairs
    lower = [ax for ax in fig.axes if ax.collections]
    assert len(lower) == 6
    sizes = lower[0].collections[0].get_sizes()
    np.testing.assert_allclose(sizes, 4.0 * 200 * w, rtol=1e-6)
    fig2 = gv.plot_pairs(res, ["mu", "vec"], kind="hist2d", bins=8)
    meshes = [c for ax in fig2.axes for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 6
    mesh = meshes[0]  # the first pair panel: x = mu, y = vec[0]
    v0 = np.array(res.traces["vec"], dtype=np.float64)[:, 0]
    want, _, _ = np.histogram2d(
        mu,
        v0,
        bins=(_weighted_edges(mu, w, 8), _weighted_edges(v0, w, 8)),
        weights=w,
        density=True,
    )
    np.testing.assert_allclose(np.asarray(mesh.get_array()).ravel(), want.T.ravel(), rtol=1e-9)


def test_pairs_needs_two_variables() -> None:
    with pytest.raises(ValueError, match="at least two scalar variables"):
        gv.plot_pairs({"a": np.arange(4.0)})
