"""ArviZ export: chains and particles round-trip exactly; summaries agree with numpy.

``az.summary(..., round_to="none")`` means are compared with ``numpy.mean`` of the
input arrays (float64 means of the same numbers: agreement to 1e-6 relative covers
float32 inputs summed in a different order). Resampling is checked by its defining
property: systematic resampling copies particle ``i`` ``⌊M w_i⌋`` or ``⌈M w_i⌉`` times.
"""

from __future__ import annotations

import builtins
from functools import partial
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

import genmlx.viz as gv
from genmlx.core import choicemap, gen, select
from genmlx.dists import normal
from genmlx.infer import chain, importance_sampling, mh
from genmlx.viz.inference_data import systematic_resample

az = pytest.importorskip("arviz")


@gen
def model() -> None:
    mu = normal(0.0, 1.0) @ "mu"
    normal(mx.array([mu, 2.0 * mu]), 1.0) @ "v"
    for i in range(3):
        normal(mu, 0.5) @ ("y", i)


OBS = choicemap({("y", i): v for i, v in enumerate([0.9, 1.3, 0.6])})


def _summary_means(idata: Any) -> dict[str, float]:
    s = az.summary(idata, round_to="none", kind="stats")
    return {str(k): float(v) for k, v in s["mean"].items()}


def test_chain_result_round_trip() -> None:
    tr, _ = model.vgenerate((), OBS, 4, key=mx.random.key(0))
    kernel = partial(mh, selection_or_proposal=select("mu", "v"))
    res = chain(kernel, tr, 50, key=mx.random.key(1), addresses=["mu", "v"])
    idata = gv.to_inference_data(res)
    post = idata.posterior
    mu = np.moveaxis(np.array(res.samples["mu"]), 0, 1)  # [chains, draws]
    v = np.moveaxis(np.array(res.samples["v"]), 0, 1)  # [chains, draws, 2]
    assert post["mu"].dims == ("chain", "draw")
    assert post["v"].dims == ("chain", "draw", "v_dim_0")
    assert post["mu"].dtype == mu.dtype
    np.testing.assert_array_equal(post["mu"].values, mu)
    np.testing.assert_array_equal(post["v"].values, v)
    np.testing.assert_array_equal(
        idata.sample_stats["acceptance_rate"].values, np.array(res.acceptance_rate)
    )
    means = _summary_means(idata)
    np.testing.assert_allclose(means["mu"], mu.astype(np.float64).mean(), rtol=1e-6)
    np.testing.assert_allclose(means["v[0]"], v[..., 0].astype(np.float64).mean(), rtol=1e-6)
    np.testing.assert_allclose(means["v[1]"], v[..., 1].astype(np.float64).mean(), rtol=1e-6)


def test_dict_chains_with_extra_groups_and_names() -> None:
    rng = np.random.default_rng(0)
    draws = {"a": rng.normal(size=(3, 40)), ("b", 1): rng.normal(size=(3, 40))}
    ll = {"y": rng.normal(size=(3, 40, 5))}
    acc = {"accepted": rng.uniform(size=(3, 40)) < 0.5}
    idata = gv.to_inference_data(
        draws, log_likelihood=ll, sample_stats=acc, var_names={("b", 1): "b1"}
    )
    assert sorted(idata.posterior.data_vars) == ["a", "b1"]
    np.testing.assert_array_equal(idata.posterior["b1"].values, draws[("b", 1)])
    np.testing.assert_array_equal(idata.log_likelihood["y"].values, ll["y"])
    np.testing.assert_array_equal(idata.sample_stats["accepted"].values, acc["accepted"])
    means = _summary_means(idata)
    np.testing.assert_allclose(means["a"], draws["a"].mean(), rtol=1e-12)
    assert gv.to_inference_data(draws).posterior["b.1"].shape == (3, 40)


def test_weighted_particles_keep_their_weights() -> None:
    res = importance_sampling(model, (), OBS, 300, key=mx.random.key(2))
    idata = gv.to_inference_data(res, ["mu", "v"])
    lw = np.array(res.log_weights, dtype=np.float64)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    np.testing.assert_allclose(idata.sample_stats["weight"].values[0], w, rtol=1e-12)
    np.testing.assert_allclose(idata.sample_stats["log_weight"].values[0], np.log(w), rtol=1e-12)
    mu = np.array(res.traces["mu"])
    np.testing.assert_array_equal(idata.posterior["mu"].values, mu[None])
    np.testing.assert_array_equal(idata.posterior["v"].values, np.array(res.traces["v"])[None])
    assert idata.posterior["mu"].dims == ("chain", "draw")
    # ArviZ ignores the weights: its mean is the plain mean of the particles
    np.testing.assert_allclose(_summary_means(idata)["mu"], mu.astype(np.float64).mean(), rtol=1e-6)


def test_resampled_particles_follow_the_weights() -> None:
    res = importance_sampling(model, (), OBS, 200, key=mx.random.key(3))
    m = 500
    idata = gv.to_inference_data(res, "mu", resample=True, n_samples=m, seed=7)
    lw = np.array(res.log_weights, dtype=np.float64)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    idx = idata.sample_stats["particle_index"].values[0]
    counts = np.bincount(idx, minlength=200)
    assert counts.sum() == m
    assert np.all((counts == np.floor(m * w)) | (counts == np.ceil(m * w)))
    mu = np.array(res.traces["mu"])
    np.testing.assert_array_equal(idata.posterior["mu"].values[0], mu[idx])
    # ArviZ's mean of the resampled draws is the weighted mean up to the rounding of
    # counts: |Σ (n_i/M − w_i) x_i| ≤ Σ |x_i| / M
    bound = np.abs(mu.astype(np.float64)).sum() / m
    assert abs(_summary_means(idata)["mu"] - float(np.sum(w * mu))) <= bound
    again = gv.to_inference_data(res, "mu", resample=True, n_samples=m, seed=7)
    np.testing.assert_array_equal(again.sample_stats["particle_index"].values, idx[None])


def test_systematic_resample_counts() -> None:
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(50))
    for m in (10, 50, 333):
        counts = np.bincount(systematic_resample(w, m, rng), minlength=50)
        assert counts.sum() == m
        assert np.all((counts == np.floor(m * w)) | (counts == np.ceil(m * w)))


def test_batched_trace_and_dict_with_weights_are_particles() -> None:
    tr = model.vsimulate((), 30, key=mx.random.key(4))
    idata = gv.to_inference_data(tr, "mu")
    np.testing.assert_allclose(idata.sample_stats["weight"].values, np.full((1, 30), 1 / 30))
    ws = np.arange(1.0, 31.0)
    idata2 = gv.to_inference_data({"mu": np.array(tr["mu"])}, weights=ws)
    np.testing.assert_allclose(idata2.sample_stats["weight"].values[0], ws / ws.sum(), rtol=1e-12)
    ll = {"y": np.arange(30.0)}
    idata3 = gv.to_inference_data(tr, "mu", log_likelihood=ll)
    np.testing.assert_array_equal(idata3.log_likelihood["y"].values, ll["y"][None])


def test_masked_choices_become_nan() -> None:
    cm = choicemap({"x": mx.arange(4, dtype=mx.float32)}, batch_shape=(4,)).mask(
        mx.array([True, False, True, True])
    )
    idata = gv.to_inference_data(cm)
    np.testing.assert_array_equal(idata.posterior["x"].values, [[0.0, np.nan, 2.0, 3.0]])


def test_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="resample=True applies to weighted particles"):
        gv.to_inference_data({"a": np.zeros((2, 5))}, resample=True)
    with pytest.raises(ValueError, match="n_samples applies only with resample=True"):
        gv.to_inference_data({"a": np.zeros(5)}, weights=np.ones(5), n_samples=3)
    with pytest.raises(ValueError, match=r"must be \[chains, draws, ...\] = \[2, 5\]"):
        gv.to_inference_data({"a": np.zeros((2, 5))}, log_likelihood={"y": np.zeros((5, 2))})
    with pytest.raises(ValueError, match="both named 'a'"):
        gv.to_inference_data({"a": np.zeros((2, 5)), "b": np.zeros((2, 5))}, var_names={"b": "a"})
    real_import = builtins.__import__

    def no_arviz(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "arviz":
            raise ImportError("No module named 'arviz'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_arviz)
    with pytest.raises(ImportError, match=r'pip install "genmlx-viz\[arviz\]"'):
        gv.to_inference_data({"a": np.zeros((2, 5))})
