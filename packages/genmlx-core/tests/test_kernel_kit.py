"""The kernel kit: exact test-model posteriors, correct kernels pass, broken kernels fail.

The kernels here are written with core's public API only (``regenerate``, ``update``,
``choice_gradients``, ``where_particles``). Each broken kernel carries one classic
MCMC bug and must fail the check aimed at it, with the seeds fixed so the outcome is
reproducible: a resimulation MH that accepts with the *joint* density ratio (it drops
the Hastings correction, the prior ratio of its proposal), a MALA without the
proposal-density correction, an MH that counts the likelihood twice, kernels that
ignore their key (a fixed internal key; MLX's global generator), a batched kernel that
couples its chains, one that moves observations, and ones that break the return
protocol.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import Trace, choice_gradients, choicemap
from genmlx.core.batching import where_particles
from genmlx.core.testing import check_kernel
from genmlx.core.testing.distributions import ks_pvalue
from genmlx.core.testing.kernel_models import KERNEL_TEST_MODELS, KernelTestModel
from genmlx.core.testing.kernels import (
    KERNEL_CHECKS,
    QUICK,
    THOROUGH,
    accepted_of,
    check_stationarity,
    ks_resolution,
)


# --------------------------------------------------------------------------- kernels
def _accept(key: mx.array, log_alpha: mx.array, new: Trace, old: Trace) -> tuple[Trace, mx.array]:
    u = mx.random.uniform(shape=log_alpha.shape, key=key)
    acc = mx.log(u) < mx.where(mx.isnan(log_alpha), -mx.inf, log_alpha)
    return where_particles(acc, new, old), acc


def resim_mh(trace: Trace, *, key: mx.array, selection: Any) -> tuple[Trace, mx.array]:
    """Correct resimulation MH: acceptance ratio = the regenerate weight."""
    k1, k2 = mx.random.split(key)
    new, w, _ = trace.gen_fn.regenerate(trace, selection, key=k1)
    return _accept(k2, w, new, trace)


def joint_ratio_mh(trace: Trace, *, key: mx.array, selection: Any) -> tuple[Trace, mx.array]:
    """BUG: accepts with p(x', y)/p(x, y), dropping the Hastings term p(x)/p(x')."""
    k1, k2 = mx.random.split(key)
    new, _, _ = trace.gen_fn.regenerate(trace, selection, key=k1)
    return _accept(k2, new.score - trace.score, new, trace)


def double_likelihood_mh(trace: Trace, *, key: mx.array, selection: Any) -> tuple[Trace, mx.array]:
    """BUG: counts the likelihood ratio twice (targets prior × likelihood²)."""
    k1, k2 = mx.random.split(key)
    new, w, _ = trace.gen_fn.regenerate(trace, selection, key=k1)
    return _accept(k2, 2.0 * w, new, trace)


def fixed_key_mh(trace: Trace, *, key: mx.array, selection: Any) -> tuple[Trace, mx.array]:
    """BUG: ignores its key (always the same internal key)."""
    return resim_mh(trace, key=mx.random.key(0), selection=selection)


def global_rng_mh(trace: Trace, *, key: mx.array, selection: Any) -> tuple[Trace, mx.array]:
    """BUG: draws from MLX's global generator instead of its key."""
    return resim_mh(trace, key=_global_key(), selection=selection)


def _global_key() -> mx.array:
    return mx.random.key(int(mx.random.randint(0, 2**30, ()).item()))


def coupled_rw(
    trace: Trace, *, key: mx.array, selection: Any, step: float
) -> tuple[Trace, mx.array]:
    """BUG: one random-walk increment for every chain (``shape=()``): coupled chains.

    Each chain on its own is a correct random-walk MH (its marginal transition is
    right); only the batched call ties the chains together.
    """
    k1, k2 = mx.random.split(key)
    z = mx.random.normal(key=k1)  # forgot the batch shape: shared by all chains
    vals = {}
    for path, v in trace.get_choices().filter(selection).leaves():
        vals[path if len(path) > 1 else path[0]] = v + step * z
    cm = choicemap(vals).with_batch_shape(tuple(trace.batch_shape))
    new, w, _, _ = trace.gen_fn.update(trace, cm)
    return _accept(k2, w, new, trace)


def everything_mh(trace: Trace, *, key: mx.array, selection: Any) -> tuple[Trace, mx.array]:
    """BUG: regenerates every choice, observations included."""
    from genmlx.core import Selection

    return resim_mh(trace, key=key, selection=Selection.all())


def _gradient_step(
    trace: Trace, key: mx.array, selection: Any, step: float, correct: bool
) -> tuple[Trace, mx.array]:
    k1, k2 = mx.random.split(key)
    g = choice_gradients(trace, selection)
    nb = len(trace.batch_shape)
    new_vals, fwd_mean = {}, {}
    for path, v in trace.get_choices().filter(selection).leaves():
        addr = path if len(path) > 1 else path[0]
        mean = v + 0.5 * step * step * g[addr]
        new_vals[addr] = mean + step * mx.random.normal(v.shape, key=k1)
        fwd_mean[addr] = mean
    cm = choicemap(new_vals).with_batch_shape(tuple(trace.batch_shape))
    new, w, _, _ = trace.gen_fn.update(trace, cm)
    log_alpha = w
    if correct:
        g_new = choice_gradients(new, selection)
        for addr, x_new in new_vals.items():
            x = trace[addr]
            back = x - (x_new + 0.5 * step * step * g_new[addr])
            fwd = x_new - fwd_mean[addr]
            axes = tuple(range(nb, x.ndim))
            log_alpha = log_alpha + (
                mx.sum(fwd * fwd, axis=axes) - mx.sum(back * back, axis=axes)
            ) / (2 * step * step)
    return _accept(k2, log_alpha, new, trace)


def mala(trace: Trace, *, key: mx.array, selection: Any, step: float) -> tuple[Trace, mx.array]:
    """Correct MALA."""
    return _gradient_step(trace, key, selection, step, correct=True)


def mala_no_correction(
    trace: Trace, *, key: mx.array, selection: Any, step: float
) -> tuple[Trace, mx.array]:
    """BUG: a Langevin proposal accepted with the target ratio only (no q correction)."""
    return _gradient_step(trace, key, selection, step, correct=False)


def factory(kernel: Any, gradient: bool = False) -> Any:
    def make(model: KernelTestModel) -> Any:
        if gradient:
            if model.discrete:
                return None
            step = min(model.scales.values())
            return functools.partial(kernel, selection=model.selection, step=step)
        return functools.partial(kernel, selection=model.selection)

    make.__name__ = kernel.__name__
    return make


def _failed(report: Any) -> set[str]:
    return {r.name.split("[")[0] for r in report.failures}


# --------------------------------------------------------------------------- the models
def _assess_grid_1d(model: KernelTestModel, grid: np.ndarray) -> np.ndarray:
    """Log posterior (unnormalised) on a grid, from the model's own ``assess``."""
    (addr,) = model.latents
    draws = {addr: grid}
    tr = model.trace(draws)
    ld, _ = model.model.assess(model.args, tr.get_choices())
    return np.array(ld, dtype=np.float64)


@pytest.mark.parametrize("name", ["conjugate_gaussian", "bimodal", "constrained"])
def test_one_dimensional_posteriors_match_the_model(name: str) -> None:
    """The NumPy posterior sampler against the CDF of exp(assess) on a fine grid."""
    model = KERNEL_TEST_MODELS[name]
    lo, hi = model.support[model.latents[0]]
    lo, hi = (max(lo, -8.0) + 1e-6, min(hi, 8.0) - 1e-6)
    grid = np.linspace(lo, hi, 20001)
    ld = _assess_grid_1d(model, grid)
    dens = np.exp(ld - ld.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    n = 50000
    x = np.sort(model.posterior(np.random.default_rng(1), n)[model.latents[0]])
    f = np.interp(x, grid, cdf)
    d = max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))
    assert ks_pvalue(float(d), n) > 1e-3, (name, d)


def test_the_mixture_prior_passes_the_distribution_kit() -> None:
    from genmlx.core.testing import check_distribution
    from genmlx.core.testing.kernel_models import normal_mixture

    check_distribution(normal_mixture, (0.5, -2.0, 2.0, 0.7), n=20000, max_examples=2)
    check_distribution(normal_mixture, (0.2, 0.0, 1.0, 0.3), n=20000, max_examples=1)


def test_bimodal_posterior_is_the_updated_mixture() -> None:
    # components N(∓2, 0.7²) updated by y = 0.8 ~ N(x, 1.5²), reweighted by N(y; m, s² + σ²)
    v = 1 / (1 / 0.49 + 1 / 2.25)
    mu = np.array([v * (-2 / 0.49 + 0.8 / 2.25), v * (2 / 0.49 + 0.8 / 2.25)])
    lw = -0.5 * (0.8 - np.array([-2.0, 2.0])) ** 2 / (0.49 + 2.25)
    p = np.exp(lw - lw.max()) / np.exp(lw - lw.max()).sum()
    x = KERNEL_TEST_MODELS["bimodal"].posterior(np.random.default_rng(8), 200000)["x"]
    mean = p @ mu
    var = v + p[0] * p[1] * (mu[0] - mu[1]) ** 2
    assert x.mean() == pytest.approx(mean, abs=4 * math.sqrt(var / 200000))
    assert x.var() == pytest.approx(var, rel=0.01)
    below = p @ np.array([0.5 * (1 + math.erf((0.15 - m) / math.sqrt(2 * v))) for m in mu])
    assert (x < 0.15).mean() == pytest.approx(below, abs=0.004)
    assert p[0] == pytest.approx(0.237, abs=0.001)


def test_correlated_gaussian_moments() -> None:
    m = KERNEL_TEST_MODELS["correlated_gaussian"]
    x = m.posterior(np.random.default_rng(2), 200000)["x"]
    # precision I + 4·11ᵀ = [[5, 4], [4, 5]]; mean = cov (m0 + 4y·1) with m0 = (0, 0.5), y = 1
    cov = np.linalg.inv(np.array([[5.0, 4.0], [4.0, 5.0]]))
    mean = cov @ np.array([4.0, 4.5])
    np.testing.assert_allclose(x.mean(axis=0), mean, atol=4 * math.sqrt(5 / 9 / 200000) * 1.5)
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.01)
    assert np.corrcoef(x.T)[0, 1] == pytest.approx(-0.8, abs=0.005)


def test_correlated_gaussian_density_matches_the_model() -> None:
    """log posterior(x) − assess(x) is constant (the sampler's density is the model's)."""
    m = KERNEL_TEST_MODELS["correlated_gaussian"]
    pts = np.random.default_rng(3).normal(size=(50, 2))
    tr = m.trace({"x": pts})
    ld = np.array(m.model.assess(m.args, tr.get_choices()).log_density, dtype=np.float64)
    cov = np.linalg.inv(np.array([[5.0, 4.0], [4.0, 5.0]]))
    mean = cov @ np.array([4.0, 4.5])
    diff = pts - mean
    lp = -0.5 * np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    assert np.ptp(ld - lp) < 1e-4


def test_discrete_posterior_matches_enumeration_through_assess() -> None:
    m = KERNEL_TEST_MODELS["discrete"]
    states = np.array([[(s >> k) & 1 for k in range(3)] for s in range(8)], dtype=bool)
    tr = m.trace({a: states[:, i] for i, a in enumerate(m.latents)})
    ld = np.array(m.model.assess(m.args, tr.get_choices()).log_density, dtype=np.float64)
    probs = np.exp(ld - ld.max())
    probs /= probs.sum()
    n = 100000
    d = m.posterior(np.random.default_rng(4), n)
    idx = d["a"].astype(int) + 2 * d["b"].astype(int) + 4 * d["c"].astype(int)
    counts = np.bincount(idx, minlength=8)
    stat = np.sum((counts - n * probs) ** 2 / (n * probs))
    assert stat < 30.0  # chi-square, 7 df: P(> 30) ≈ 1e-4


def test_constrained_posterior_is_beta_6_5() -> None:
    p = KERNEL_TEST_MODELS["constrained"].posterior(np.random.default_rng(5), 200000)["p"]
    assert p.mean() == pytest.approx(6 / 11, abs=0.002)
    assert p.var() == pytest.approx(30 / (121 * 12), rel=0.02)


@pytest.mark.parametrize("name", list(KERNEL_TEST_MODELS))
def test_model_traces_hold_draws_and_observations(name: str) -> None:
    m = KERNEL_TEST_MODELS[name]
    draws = m.posterior(np.random.default_rng(6), 5)
    tr = m.trace(draws)
    assert tr.batch_shape == (5,)
    for a in m.latents:
        np.testing.assert_allclose(np.array(tr[a]).astype(float), draws[a].astype(float), rtol=1e-6)
    for a, v in m.observations.items():
        np.testing.assert_allclose(np.array(tr[a]).astype(float), float(v), rtol=1e-6)
    ld, _ = m.model.assess(m.args, tr.get_choices())
    np.testing.assert_allclose(np.array(ld), np.array(tr.score), rtol=1e-5)
    single = m.single_trace({a: draws[a][0] for a in m.latents})
    assert single.batch_shape == ()
    assert float(single.score) == pytest.approx(float(tr.score[0]), rel=1e-5)


def test_sbc_models_accept_per_chain_observations() -> None:
    m = KERNEL_TEST_MODELS["conjugate_gaussian"]
    obs = {a: np.array([0.0, 10.0]) for a in m.observed}
    mu = m.posterior(np.random.default_rng(7), 2, obs)["mu"]
    assert abs(mu[0]) < 2.0 and mu[1] > 6.0  # posterior means 0 and 30/3.25 ≈ 9.2


# --------------------------------------------------------------------------- correct kernels
def test_resimulation_mh_passes_every_check() -> None:
    report = check_kernel(factory(resim_mh))
    names = {r.name for r in report.results}
    assert {f"stationarity[{m}]" for m in KERNEL_TEST_MODELS} <= names
    assert "sbc[conjugate_gaussian]" in names
    assert {"info", "key_determinism", "batched_vs_single"} <= {n.split("[")[0] for n in names}
    # regenerate splits its key over the particles, so the per-chain check is statistical
    (bvs,) = [r for r in report.results if r.name.startswith("batched_vs_single")]
    assert "own randomness" in bvs.detail


def test_mala_passes_and_skips_discrete_models() -> None:
    report = check_kernel(factory(mala, gradient=True))
    assert "does not apply to discrete" in report.notes
    assert "stationarity[constrained]" in {r.name for r in report.results}


class _Info(NamedTuple):
    accepted: mx.array
    log_alpha: mx.array


def test_info_objects_and_declared_fields() -> None:
    def with_info(trace: Trace, *, key: mx.array, selection: Any) -> tuple[Trace, _Info]:
        k1, k2 = mx.random.split(key)
        new, w, _ = trace.gen_fn.regenerate(trace, selection, key=k1)
        out, acc = _accept(k2, w, new, trace)
        return out, _Info(acc, w)

    check_kernel(factory(with_info), checks=["info"], info_fields=("log_alpha",))
    with pytest.raises(AssertionError, match="info has no field 'divergent'"):
        check_kernel(factory(with_info), checks=["info"], info_fields=("divergent",))


# --------------------------------------------------------------------------- broken kernels
def test_dropped_hastings_correction_is_flagged() -> None:
    report = check_kernel(factory(joint_ratio_mh), raise_on_failure=False)
    assert _failed(report) == {"stationarity"}
    bad = {r.name for r in report.failures}
    assert {"stationarity[conjugate_gaussian]", "stationarity[discrete]"} <= bad


def test_mala_without_proposal_correction_is_flagged() -> None:
    report = check_kernel(factory(mala_no_correction, gradient=True), raise_on_failure=False)
    assert "stationarity" in _failed(report)
    assert "stationarity[correlated_gaussian]" in {r.name for r in report.failures}


def test_double_counted_likelihood_is_flagged() -> None:
    report = check_kernel(factory(double_likelihood_mh), raise_on_failure=False)
    assert _failed(report) == {"stationarity"}
    assert len(report.failures) >= 3
    with pytest.raises(AssertionError, match=r"FAIL stationarity\[conjugate_gaussian\]"):
        check_kernel(factory(double_likelihood_mh))


def test_kernel_ignoring_its_key_is_flagged() -> None:
    report = check_kernel(factory(fixed_key_mh), raise_on_failure=False)
    assert "key_determinism" in _failed(report)
    (r,) = [r for r in report.failures if r.name.startswith("key_determinism")]
    assert "ignores its key" in r.detail


def test_kernel_using_the_global_generator_is_flagged() -> None:
    report = check_kernel(factory(global_rng_mh), raise_on_failure=False)
    assert "key_determinism" in _failed(report)
    (r,) = [r for r in report.failures if r.name.startswith("key_determinism")]
    assert "same key gave different results" in r.detail


def test_coupled_chains_are_flagged() -> None:
    report = check_kernel(
        factory(coupled_rw, gradient=True), checks=["batched_vs_single"], raise_on_failure=False
    )
    assert _failed(report) == {"batched_vs_single"}


def test_moving_observations_is_flagged() -> None:
    report = check_kernel(
        factory(everything_mh), checks=["stationarity", "info"], raise_on_failure=False
    )
    assert "observation" in str(report) and "changed" in str(report)
    assert not report.passed


def test_protocol_violations_are_flagged() -> None:
    def bare(trace: Trace, *, key: mx.array) -> Trace:
        return trace

    def wrong_shape(trace: Trace, *, key: mx.array) -> tuple[Trace, mx.array]:
        return trace, mx.array(True)

    def lying(trace: Trace, *, key: mx.array, selection: Any) -> tuple[Trace, mx.array]:
        new, _ = resim_mh(trace, key=key, selection=selection)
        return new, mx.zeros(trace.batch_shape, dtype=mx.bool_)  # "rejected", but moved

    r1 = check_kernel(lambda m: bare, checks=["info"], raise_on_failure=False)
    assert "must return (new_trace, info)" in str(r1)
    r2 = check_kernel(lambda m: wrong_shape, checks=["info"], raise_on_failure=False)
    assert "accepted has shape ()" in str(r2)
    r3 = check_kernel(factory(lying), checks=["info"], raise_on_failure=False)
    assert "accepted=False but its value" in str(r3)


def test_accepted_of() -> None:
    a = mx.array([True])
    assert accepted_of(a) is a
    assert accepted_of(_Info(a, a)) is a
    with pytest.raises(TypeError, match="accepted"):
        accepted_of(3)


def _shift_kernel(delta: float) -> Any:
    """A 'kernel' that moves every chain by ``delta`` posterior sd in total over the run."""

    def make(model: KernelTestModel) -> Any:
        per_step = delta * model.scales["mu"] / QUICK.n_steps

        def shift(trace: Trace, *, key: mx.array) -> tuple[Trace, mx.array]:
            cm = choicemap({"mu": trace["mu"] + per_step}).with_batch_shape(trace.batch_shape)
            new, _, _, _ = trace.gen_fn.update(trace, cm)
            return new, mx.ones(trace.batch_shape, dtype=mx.bool_)

        return shift

    return make


def test_stated_resolution_is_the_power_of_the_stationarity_test() -> None:
    """The kit states which shift it resolves; twice that shift is flagged, none is not."""
    model = KERNEL_TEST_MODELS["conjugate_gaussian"]
    d, shift = ks_resolution(QUICK.n_chains, QUICK.n_reference, QUICK.alpha)
    assert 0.02 < d < 0.1 and shift == pytest.approx(2 * math.sqrt(2) * _erfinv(d), rel=1e-3)
    ok = check_stationarity(_shift_kernel(0.0)(model), model)
    assert ok.passed and f"{shift:.2f} sd" in ok.detail
    # the posterior sd of mu is exactly model.scales["mu"], so this is a 2·shift move
    bad = check_stationarity(_shift_kernel(2 * shift)(model), model)
    assert not bad.passed


def _erfinv(y: float) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if math.erf(mid) < y else (lo, mid)
    return hi


def test_kit_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown checks"):
        check_kernel(factory(resim_mh), checks=["stationary"])
    with pytest.raises(ValueError, match="unknown kernel test model"):
        check_kernel(factory(resim_mh), models=["gaussian"])
    with pytest.raises(AssertionError, match="applies to none of the test models"):
        check_kernel(lambda m: None)
    with pytest.raises(TypeError, match="factory must be callable"):
        check_kernel(3)  # type: ignore[arg-type]
    report = check_kernel(lambda m: 1 / 0, raise_on_failure=False)
    assert "factory[conjugate_gaussian]: raised ZeroDivisionError" in str(report)
    assert set(KERNEL_CHECKS) == {
        "info",
        "key_determinism",
        "batched_vs_single",
        "stationarity",
        "sbc",
    }
    assert QUICK.n_chains < THOROUGH.n_chains


def test_the_pytest_fixture(genmlx_kernel_kit: Any) -> None:
    report = genmlx_kernel_kit(factory(resim_mh), models=["discrete"], checks=["stationarity"])
    assert report.passed and report.kit == "kernel"


@pytest.mark.slow
@pytest.mark.parametrize("kernel", [resim_mh, mala], ids=["resim_mh", "mala"])
def test_thorough_settings_pass_correct_kernels(kernel: Any) -> None:
    check_kernel(factory(kernel, gradient=kernel is mala), settings=THOROUGH)


@pytest.mark.slow
def test_thorough_settings_flag_a_dropped_hastings_correction() -> None:
    report = check_kernel(factory(joint_ratio_mh), settings=THOROUGH, raise_on_failure=False)
    assert "stationarity" in _failed(report)
