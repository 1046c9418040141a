"""Adapter running ../shared/conformance/cross-system/inference_quality_tests.json.

The specification names a model, an algorithm with parameters, data and an analytical
posterior (mean/std/variance) or log marginal likelihood. Each model is built here with
``genmlx.dists``; the exact posterior moments and log-MLs are recomputed in plain Python
(``math``) from the conjugate formulas and checked against the spec's (rounded) numbers,
then our algorithm's estimate is checked against the exact value within 5 Monte-Carlo
standard errors (fixed seeds):

* importance sampling (``n_particles`` from the spec): the delta-method SE of the
  self-normalised estimate, ``SE² = Σ w̄_i² (x_i − x̂)²`` (for a posterior variance
  ``Σ w̄_i² ((x_i − x̂)² − v̂)²``), and for ``log p̂(y)`` ``SE² = 1/ESS − 1/N``;
* MH / HMC / MALA (``n_steps``, ``burn`` and step sizes from the spec): the spec runs one
  chain; we run ``N_CHAINS`` independent batched chains of the spec's length, take each
  chain's post-burn-in mean, and use the spread of those means across chains for the
  SE (valid whatever the autocorrelation). We check the posterior mean *and* the
  posterior variance this way. The spec gives no numeric tolerance for these cases
  (its ``std`` is the posterior sd, or for ``normal_linreg`` a loose 0.5 where the exact
  sd is 0.135), so our 5-SE bound on N_CHAINS × 1500 draws is much stricter than any
  single-chain comparison at the spec's scale;
* (runtime: all MCMC cases but three are marked ``slow``, see ``FAST_MCMC``);
* ``acceptance_rate`` cases: the mean acceptance over all chains and steps exceeds the
  spec's ``min_accept_rate``.

* SMC (``particle_filter``, bootstrap, systematic resampling at every step): the spec
  does not define ``linear_gaussian_ssm``; its analytical log-ML (−14.764156) is the
  Kalman filter's for ``x_0 ~ N(0, 1)``, ``x_t ~ N(x_{t-1}, 1)``, ``y_t ~ N(x_t, 0.5)``
  (we recompute it and check that). We run ``R_SMC`` seeds and require every run within
  the spec's tolerance *and* the runs' mean ``Ẑ/Z`` within 4 standard errors of 1 (``Ẑ``
  is unbiased); the ESS case checks the final ESS of every run. ``smc_single`` (one step
  = importance sampling) uses the IS log-ML bound above.

* VI (``advi``, mean-field, the spec's iterations and learning rate, Adam): the spec's
  criterion, the fitted mean within 3 posterior sd of the exact mean, is what we check
  here: the final Adam iterate at the spec's learning rates still moves by optimiser
  noise (at lr 0.05 about 0.2 posterior sd), so a tighter single-run bound would not be
  derived from anything. ``test_vi.py`` checks exactness with bounds from replicated
  fits.

The spec marks the two ``normal_linreg`` MALA cases ``skip`` because Gen.jl's MALA does
not converge there; ours does, so we run them.
"""

from __future__ import annotations

import json
import math
import os
from functools import partial
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

from genmlx.core import choicemap, gen, select
from genmlx.dists import (
    bernoulli,
    beta,
    categorical,
    dirichlet,
    gamma,
    iid,
    inv_gamma,
    normal,
    poisson,
)
from genmlx.infer import chain, mh
from genmlx.infer.gradient_kernels import hmc, mala
from genmlx.infer.importance import importance_sampling
from genmlx.infer.smc import particle_filter

REPO_ROOT = Path(__file__).resolve().parents[3]
SKIP_REASON = (
    "cross-system conformance data not found: it lives in ../shared beside the repository "
    "(the developers' checkout), not in a user's clone; set GENMLX_SHARED_DIR to run it"
)
N_CHAINS = 64


def shared_dir() -> Path | None:
    """``$GENMLX_SHARED_DIR`` or ``<repo>/../shared``, when it holds the spec."""
    env = os.environ.get("GENMLX_SHARED_DIR")
    for c in ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared"]:
        if (c / "conformance" / "cross-system").is_dir():
            return c
    return None


def _spec() -> dict[str, Any]:
    d = shared_dir()
    if d is None:
        return {}
    path = d / "conformance" / "cross-system" / "inference_quality_tests.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


SPEC = _spec()
R_SMC = 12


def _cases(algorithms: tuple[str, ...]) -> list[Any]:
    if not SPEC:
        return [
            pytest.param(
                {"id": "missing"}, id="missing", marks=pytest.mark.skip(reason=SKIP_REASON)
            )
        ]
    return [pytest.param(c, id=c["id"]) for c in SPEC["tests"] if c["algorithm"] in algorithms]


# MCMC cases run at the spec's full length (2000 steps); on CPU the models with 20–30
# observation sites cost 10–60 s each, so all but these three are behind `slow`
FAST_MCMC = {"infer-nn-mh", "infer-linreg-mh", "infer-nn-mala"}


def _mcmc_cases() -> list[Any]:
    return [
        c
        if c.id in FAST_MCMC or c.id == "missing"
        else pytest.param(*c.values, id=c.id, marks=pytest.mark.slow)
        for c in _cases(("mh", "hmc", "mala"))
    ]


# --------------------------------------------------------------------------- models
def build(case: dict[str, Any]) -> tuple[Any, tuple[Any, ...], Any, str]:
    """``(model, args, observations, target address)`` for the spec's model name."""
    name, data = case["model"], case["data"]
    if name == "normal_linreg":
        xs, ys = data["xs"], data["ys"]

        @gen
        def linreg(xs: list[float]) -> None:
            slope = normal(0.0, 10.0) @ "slope"
            for i, x in enumerate(xs):
                normal(slope * x, 1.0) @ ("y", i)

        return linreg, (xs,), choicemap({("y", i): y for i, y in enumerate(ys)}), "slope"
    obs = data["observations"]
    n = len(obs)
    # the n observations are one vector choice "x" of iid(base, n) draws: the same joint
    # density as n scalar sites, one site per step instead of n (the MCMC cases' cost)
    if name == "normal_normal":

        @gen
        def model() -> None:
            mu = normal(0.0, 1.0) @ "mu"
            iid(normal, n)(mu, 1.0) @ "x"

        x = mx.array([float(v) for v in obs])
    elif name == "beta_bernoulli_iid":

        @gen
        def model() -> None:
            p = beta(1.0, 1.0) @ "p"
            iid(bernoulli, n)(p) @ "x"

        x = mx.array([bool(v) for v in obs])
    elif name == "gamma_poisson":

        @gen
        def model() -> None:
            lam = gamma(2.0, 1.0) @ "lambda"
            iid(poisson, n)(lam) @ "x"

        x = mx.array(obs, dtype=mx.int32)
    elif name == "dirichlet_categorical":

        @gen
        def model() -> None:
            p = dirichlet(mx.ones(3)) @ "p"
            iid(categorical, n)(p) @ "x"

        x = mx.array(obs, dtype=mx.int32)
    elif name == "inv_gamma_normal":

        @gen
        def model() -> None:
            s = inv_gamma(3.0, 2.0) @ "sigma"
            iid(normal, n)(0.0, mx.sqrt(s)) @ "x"

        x = mx.array([float(v) for v in obs])
    else:
        raise KeyError(name)
    cm = choicemap({"x": x})
    return model, (), cm, case.get("target_addr", "")


def exact_posterior(case: dict[str, Any]) -> tuple[float, float]:
    """Exact posterior ``(mean, variance)`` of the target (component), from conjugacy."""
    name, data = case["model"], case["data"]
    if name == "normal_linreg":
        prec = 1.0 / 100.0 + sum(x * x for x in data["xs"])
        return sum(x * y for x, y in zip(data["xs"], data["ys"])) / prec, 1.0 / prec
    obs = data["observations"]
    n, s = len(obs), float(sum(obs))
    if name == "normal_normal":
        return s / (1.0 + n), 1.0 / (1.0 + n)
    if name == "beta_bernoulli_iid":
        a, b = 1.0 + s, 1.0 + n - s
        return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1.0))
    if name == "gamma_poisson":
        a, r = 2.0 + s, 1.0 + n
        return a / r, a / r**2
    if name == "dirichlet_categorical":
        alpha = [1.0 + sum(1 for v in obs if v == k) for k in range(3)]
        a0, tot = alpha[case.get("target_component", 0)], sum(alpha)
        return a0 / tot, a0 * (tot - a0) / (tot**2 * (tot + 1.0))
    if name == "inv_gamma_normal":
        a, b = 3.0 + n / 2.0, 2.0 + sum(v * v for v in obs) / 2.0
        return b / (a - 1.0), b * b / ((a - 1.0) ** 2 * (a - 2.0))
    raise KeyError(name)


def exact_log_ml(case: dict[str, Any]) -> float:
    """Exact ``log p(y)`` (normal–normal: y ~ N(0, I + 11ᵀ); beta–bernoulli: Beta fns)."""
    obs = [float(v) for v in case["data"]["observations"]]
    n = len(obs)
    if case["model"] == "normal_normal":
        s, ss = sum(obs), sum(v * v for v in obs)
        quad = ss - s * s / (1.0 + n)  # Sherman–Morrison: (I + 11ᵀ)⁻¹ = I − 11ᵀ/(1+n)
        return -0.5 * (n * math.log(2 * math.pi) + math.log(1.0 + n) + quad)
    if case["model"] == "beta_bernoulli_iid":
        k = sum(obs)
        return math.lgamma(1 + k) + math.lgamma(1 + n - k) - math.lgamma(2 + n)
    raise KeyError(case["model"])


def _target(x: mx.array, case: dict[str, Any]) -> mx.array:
    return x[..., case["target_component"]] if "target_component" in case else x


def test_exact_values_agree_with_spec() -> None:
    """Our conjugate formulas reproduce every analytical number the spec states."""
    if not SPEC:
        pytest.skip(SKIP_REASON)
    for c in SPEC["tests"]:
        if "analytical_log_ml" in c and c["model"] != "linear_gaussian_ssm":
            assert abs(exact_log_ml(c) - c["analytical_log_ml"]) < 0.01, c["id"]
        if "analytical_posterior" in c:
            mean, var = exact_posterior(c)
            post = c["analytical_posterior"]
            assert abs(mean - post["mean"]) < 0.005, c["id"]
            if "variance" in post:
                assert abs(var - post["variance"]) < 0.001, c["id"]
            # the spec's std is not the posterior sd for two models: normal_linreg's 0.5
            # is a loose tolerance (exact sd 0.135), and gamma_poisson's 0.245 disagrees
            # with its own Gamma(62, 21) posterior (sd √62/21 = 0.375); we use exact values
            if c["model"] not in ("normal_linreg", "gamma_poisson"):
                assert abs(math.sqrt(var) - post["std"]) < 0.005, c["id"]


# --------------------------------------------------------------------------- IS
@pytest.mark.parametrize("case", _cases(("importance_sampling",)))
def test_importance_sampling(case: dict[str, Any]) -> None:
    model, args, obs, addr = build(case)
    n = case["algorithm_params"]["n_particles"]
    res = importance_sampling(model, args, obs, n, key=mx.random.key(20261121))
    w = mx.exp(res.log_weights)
    ess = 1.0 / float(mx.sum(w * w).item())
    comparison = case.get("comparison", "posterior_mean")
    if comparison in ("log_ml", "log_ml_analytical"):
        se = math.sqrt(max(1.0 / ess - 1.0 / n, 1e-12))
        got, want = float(res.log_ml_estimate.item()), exact_log_ml(case)
        assert abs(got - want) < 5 * se, (got, want, se)
        return
    x = _target(res.traces[addr], case)
    xhat = mx.sum(w * x)
    mean, var = exact_posterior(case)
    if comparison == "posterior_variance":
        vhat = mx.sum(w * (x - xhat) ** 2)
        se = math.sqrt(float(mx.sum(w * w * ((x - xhat) ** 2 - vhat) ** 2).item()))
        assert abs(float(vhat.item()) - var) < 5 * se, (float(vhat.item()), var, se)
    else:
        se = math.sqrt(float(mx.sum(w * w * (x - xhat) ** 2).item()))
        assert abs(float(xhat.item()) - mean) < 5 * se, (float(xhat.item()), mean, se)


# --------------------------------------------------------------------------- MCMC
def _kernel(case: dict[str, Any], addr: str) -> Any:
    p, sel = case["algorithm_params"], select(addr)
    if case["algorithm"] == "mh":
        return partial(mh, selection_or_proposal=sel)
    if case["algorithm"] == "hmc":
        return partial(hmc, selection=sel, step_size=p["step_size"], n_leapfrog=p["leapfrog_steps"])
    return partial(mala, selection=sel, step_size=p["step_size"])


@pytest.mark.parametrize("case", _mcmc_cases())
def test_mcmc(case: dict[str, Any]) -> None:
    model, args, obs, addr = build(case)
    p = case["algorithm_params"]
    tr, _ = model.vgenerate(args, obs, N_CHAINS, key=mx.random.key(7))
    res = chain(
        _kernel(case, addr),
        tr,
        p["n_steps"],
        key=mx.random.key(11),
        burn_in=p["burn"],
        addresses=[addr],
    )
    if case.get("comparison") == "acceptance_rate":
        rate = float(res.acceptance_rate.mean().item())
        assert rate > case["min_accept_rate"], rate
        return
    x = _target(res.samples[addr], case)  # [kept, chains]
    means = x.mean(axis=0)
    vars_ = x.var(axis=0, ddof=1)
    mean, var = exact_posterior(case)
    se_m = float(means.std(ddof=1).item()) / math.sqrt(N_CHAINS)
    got_m = float(means.mean().item())
    assert abs(got_m - mean) < 5 * se_m, (got_m, mean, se_m)
    # pooled variance: the mean of per-chain variances (each chain's own centring has
    # O(1/n_kept·τ) bias, well below the SE at these lengths)
    se_v = float(vars_.std(ddof=1).item()) / math.sqrt(N_CHAINS)
    got_v = float(vars_.mean().item())
    assert abs(got_v - var) < 5 * se_v + 0.02 * var, (got_v, var, se_v)


# --------------------------------------------------------------------------- SMC
SSM_Q, SSM_R = 1.0, 0.5


@gen
def _ssm_step(t: int, x: Any) -> Any:
    x = normal(x, SSM_Q) @ "x"
    normal(x, SSM_R) @ "y"
    return x


def _kalman_log_ml(ys: list[float]) -> float:
    m, p, ll = 0.0, 0.0, 0.0  # the state before step 0 is exactly 0
    for y in ys:
        m, p = m, p + SSM_Q**2
        s = p + SSM_R**2
        ll += -0.5 * (y - m) ** 2 / s - 0.5 * math.log(2 * math.pi * s)
        k = p / s
        m, p = m + k * (y - m), (1 - k) * p
    return ll


def _run_ssm_filter(ys: list[float], n: int, seed: int) -> Any:
    from genmlx.combinators import Unfold

    model = Unfold(_ssm_step)
    x0 = mx.array(0.0)
    keys = mx.random.split(mx.random.key(seed), 2 * len(ys))
    st = particle_filter(model, (1, x0), {(0, "y"): ys[0]}, n, key=keys[0])
    for t in range(1, len(ys)):
        st = st.resample(key=keys[2 * t - 1])
        st = st.step((t + 1, x0), {(t, "y"): ys[t]}, key=keys[2 * t])
    return st


@pytest.mark.parametrize("case", _cases(("smc", "smc_single")))
def test_smc(case: dict[str, Any]) -> None:
    n = case["algorithm_params"]["n_particles"]
    if case["algorithm"] == "smc_single":  # one step of SMC: importance sampling
        model, args, obs, _ = build(case)
        st = particle_filter(model, args, obs, n, key=mx.random.key(20261121))
        ess = float(st.ess())
        se = math.sqrt(max(1.0 / ess - 1.0 / n, 1e-12))
        got, want = float(st.log_ml_estimate), exact_log_ml(case)
        assert abs(got - want) < min(5 * se, case["tolerance"]), (got, want, se)
        return
    ys = case["data"]["observations"]
    exact = _kalman_log_ml(ys)
    if "analytical_log_ml" in case:
        assert abs(exact - case["analytical_log_ml"]) < 1e-5
    runs = [_run_ssm_filter(ys, n, seed) for seed in range(R_SMC)]
    if case.get("comparison") == "ess":
        for st in runs:
            assert float(st.ess()) > case["ess_threshold"]
        return
    logz = [float(st.log_ml_estimate) for st in runs]
    tol = case["tolerance"]
    assert all(abs(v - exact) < tol for v in logz), (logz, exact)
    ratio = [math.exp(v - exact) for v in logz]
    mean = sum(ratio) / len(ratio)
    sd = math.sqrt(sum((r - mean) ** 2 for r in ratio) / (len(ratio) - 1))
    assert abs(mean - 1.0) < 4 * sd / math.sqrt(len(ratio)) + 1e-6, (mean, sd)


# --------------------------------------------------------------------------- VI
@pytest.mark.parametrize("case", _cases(("vi",)))
def test_vi(case: dict[str, Any]) -> None:
    from genmlx.infer.vi import advi

    model, args, obs, addr = build(case)
    p = case["algorithm_params"]
    res = advi(
        model,
        args,
        obs,
        n_steps=p["iterations"],
        learning_rate=p["learning_rate"],
        key=mx.random.key(5),
    )
    got = float(_target(res.loc[addr], case))
    mean, var = exact_posterior(case)
    assert abs(got - mean) < 3 * math.sqrt(var), (got, mean)  # the spec's criterion
