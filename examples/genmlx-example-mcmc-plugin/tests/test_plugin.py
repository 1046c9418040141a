"""The example plugin's objects pass their conformance kits, plus checks of their own."""

from __future__ import annotations

import importlib.metadata
from functools import partial

import mlx.core as mx
import numpy as np
import pytest
from genmlx_example_mcmc import Iterate, autocorrelation, barker, plot_autocorrelation

from genmlx.core import gen, registry, select
from genmlx.core.testing.models import normal


# --- the conformance kits, one line each (fixtures of genmlx-core's pytest plugin)
def test_barker_passes_the_kernel_kit(genmlx_kernel_kit):
    genmlx_kernel_kit("barker")


def test_iterate_passes_the_combinator_kit(genmlx_combinator_kit):
    genmlx_combinator_kit("Iterate")


def test_plot_autocorrelation_passes_the_visualizer_kit(genmlx_visualizer_kit):
    genmlx_visualizer_kit("plot_autocorrelation")


# --- our own checks
def test_registered_through_the_entry_point():
    eps = importlib.metadata.entry_points(group="genmlx")
    assert any(ep.value == "genmlx_example_mcmc.plugin" for ep in eps)
    reg = registry()
    assert reg.inference["barker"] is barker
    assert reg.combinators["Iterate"] is Iterate
    assert reg.visualizers["plot_autocorrelation"] is plot_autocorrelation
    assert reg.visualizers.entry("plot_autocorrelation").info("accepts") == ("chain_result",)


def test_barker_batched_chains_equal_single_chains():
    @gen
    def model():
        mu = normal(0.0, 1.0) @ "mu"
        normal(mu, 0.5) @ "y"

    tr, _ = model.vgenerate((), {"y": 1.0}, 4, key=mx.random.key(0))
    key = mx.random.key(1)
    out, info = barker(tr, select("mu"), step_size=0.8, key=key)
    acc = info.accepted
    assert info.accept_prob.shape == (4,)
    keys = mx.random.split(key, 4)
    for i in range(4):
        single, _ = model.generate((), {"y": 1.0, "mu": tr["mu"][i]}, key=mx.random.key(2))
        s_out, s_info = barker(single, select("mu"), step_size=0.8, key=keys[i])
        s_acc = s_info.accepted
        assert float(s_out["mu"]) == pytest.approx(float(out["mu"][i]), rel=1e-5)
        assert bool(s_acc) == bool(acc[i])


def test_barker_rejects_bad_input():
    @gen
    def model():
        normal(0.0, 1.0) @ "x"

    tr = model.simulate((), key=mx.random.key(0))
    with pytest.raises(ValueError, match="step_size must be positive"):
        barker(tr, select("x"), step_size=0.0, key=mx.random.key(1))
    with pytest.raises(ValueError, match="picks no choices"):
        barker(tr, select("nothing"), step_size=0.5, key=mx.random.key(1))


def test_iterate_composes_the_kernel():
    @gen
    def double(x):
        return 2.0 * x + normal(0.0, 1e-3) @ "e"

    tr = Iterate(double, 3).simulate((mx.array(1.0),), key=mx.random.key(0))
    assert float(tr.retval) == pytest.approx(8.0, abs=0.02)
    assert len(tr.get_choices().addresses()) == 3
    with pytest.raises(ValueError, match="positive int"):
        Iterate(double, 0)


def test_autocorrelation_of_an_ar1_chain():
    rng = np.random.default_rng(0)
    phi, n = 0.7, 200000
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + rng.normal()
    rho = autocorrelation(x[:, None], 3)[:, 0]
    np.testing.assert_allclose(rho, phi ** np.arange(4), atol=0.01)


def test_plot_autocorrelation_draws_each_chain():
    from genmlx.infer import chain, mh

    @gen
    def model():
        mu = normal(0.0, 1.0) @ "mu"
        normal(mu, 0.5) @ "y"

    tr, _ = model.vgenerate((), {"y": 1.0}, 3, key=mx.random.key(0))
    res = chain(
        partial(mh, selection_or_proposal=select("mu")),
        tr,
        50,
        key=mx.random.key(1),
        addresses=["mu"],
    )
    fig = plot_autocorrelation(res, max_lag=10)
    (ax,) = fig.axes
    assert len(ax.lines) == 3 + 1 + 1  # chains, their mean, the zero line
    want = np.nanmean(autocorrelation(np.array(res.samples["mu"]), 10), axis=1)
    np.testing.assert_allclose(ax.lines[3].get_ydata(), want)
