"""ADEV: unbiased gradients of expectations, checked against exact gradients.

Exact answers are closed forms computed here in plain Python. Enumeration is exact, so
it is compared to float32 precision. Every other estimator is checked statistically:
with ``per_sample=True`` the ``N`` independent per-sample estimates come back, and the
mean must lie within 5 standard errors ``SE = std/√N`` (measured from those samples)
of the exact value — a two-sided 5σ bound, missed with probability < 1e-6 per check
(fixed seeds make the tests deterministic).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import BatchedControlFlowError, GenMLXError, ParamStore, gen, param, runtime
from genmlx.core.plugins import Registry, hookimpl
from genmlx.dists import bernoulli, categorical, normal
from genmlx.infer.adev import (
    ADEVSample,
    Expectation,
    adev_simulate,
    elbo_objective,
    expectation,
    iwelbo_objective,
    sleep_q_objective,
    wake_p_objective,
    wake_q_objective,
)
from genmlx.infer.adev_estimators import (
    ADEVEstimator,
    ADEVEstimatorError,
    ADEVPrimitive,
    categorical_enum,
    enum_exact,
    flip_enum,
    flip_mvd,
    flip_reinforce,
    get_estimator,
    magic_box,
    mvd,
    normal_reinforce,
    normal_reparam,
    register_builtin_estimators,
    reinforce,
    reparam,
)

N = 20_000


def within(samples: mx.array, exact: float, k: float = 5.0) -> tuple[bool, float, float]:
    """Whether the mean of ``samples`` is within ``k`` standard errors of ``exact``."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    mean = float(x.mean())
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    return abs(mean - exact) <= k * se, mean, se


def assert_unbiased(samples: mx.array, exact: float) -> None:
    ok, mean, se = within(samples, exact)
    assert ok, f"mean {mean:.5f} is {abs(mean - exact):.3g} from {exact} (SE={se:.2g})"


def flip_loss(prim: Any) -> Expectation:
    """E_{b~flip(p)}[b ? 0 : -p/2] = -(1-p)p/2, whose derivative is p - 1/2."""

    def loss(p: mx.array) -> mx.array:
        b = prim(p) @ "b"
        return mx.where(b, 0.0, -p / 2)

    return expectation(loss)


# ---------------------------------------------------------------------- flip: exact & MC
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.85])
def test_flip_enumeration_is_exact(p: float) -> None:
    g = flip_loss(flip_enum).grad(mx.array(p), key=mx.random.key(0))
    assert abs(float(g.args[0]) - (p - 0.5)) < 2e-7
    assert abs(float(g.value) + (1 - p) * p / 2) < 2e-7
    # the same whatever the key: nothing is sampled
    g2 = flip_loss(flip_enum).grad(mx.array(p), key=mx.random.key(7), n_samples=3)
    assert abs(float(g2.args[0]) - (p - 0.5)) < 2e-7


@pytest.mark.parametrize("prim", [flip_reinforce, flip_mvd], ids=["reinforce", "mvd"])
def test_flip_reinforce_and_mvd_are_unbiased(prim: ADEVPrimitive) -> None:
    p = 0.3
    g = flip_loss(prim).grad(mx.array(p), key=mx.random.key(1), n_samples=N, per_sample=True)
    assert g.args[0].shape == (N,)
    assert_unbiased(g.args[0], p - 0.5)
    assert_unbiased(g.value, -(1 - p) * p / 2)


def test_mvd_per_sample_values_are_the_weak_derivative() -> None:
    # For this loss the MVD estimate is (f(1) - f(0)) + ∂f/∂p(b) = p/2 + (b ? 0 : -1/2):
    # exactly two values, with frequencies p and 1 - p.
    p = 0.3
    g = flip_loss(flip_mvd).grad(mx.array(p), key=mx.random.key(2), n_samples=4000, per_sample=True)
    vals = np.asarray(g.args[0])
    assert np.all(np.isclose(vals, p / 2, atol=1e-6) | np.isclose(vals, p / 2 - 0.5, atol=1e-6))


def test_estimators_by_address_and_default() -> None:
    def loss(p: mx.array) -> mx.array:
        b = bernoulli(p) @ "b"
        return mx.where(b, 0.0, -p / 2)

    exact = expectation(loss, estimators={"b": "enum"}).grad(mx.array(0.2), key=mx.random.key(0))
    assert abs(float(exact.args[0]) + 0.3) < 2e-7
    # an address in estimators= overrides the estimator a primitive is bound to
    bound = expectation(flip_loss(flip_reinforce).fn, estimators={"b": enum_exact})
    assert abs(float(bound.grad(mx.array(0.2), key=mx.random.key(0)).args[0]) + 0.3) < 2e-7
    # default= for everything not named
    d = expectation(loss, default=mvd).grad(
        mx.array(0.2), key=mx.random.key(3), n_samples=N, per_sample=True
    )
    assert_unbiased(d.args[0], -0.3)


# ---------------------------------------------------------------------- normal
def square(prim: Any) -> Expectation:
    """E_{x~N(mu, sigma)}[x²] = mu² + sigma²: gradient (2 mu, 2 sigma)."""

    def f(mu: mx.array, sigma: mx.array) -> mx.array:
        x = prim(mu, sigma) @ "x"
        return x * x

    return expectation(f)


@pytest.mark.parametrize("prim", [normal_reparam, normal_reinforce], ids=["reparam", "reinforce"])
def test_normal_gradients_are_unbiased(prim: ADEVPrimitive) -> None:
    mu, sigma = 1.5, 0.7
    g = square(prim).grad(
        mx.array(mu), mx.array(sigma), key=mx.random.key(4), n_samples=N, per_sample=True
    )
    assert_unbiased(g.args[0], 2 * mu)
    assert_unbiased(g.args[1], 2 * sigma)
    assert_unbiased(g.value, mu**2 + sigma**2)


def test_reparam_is_the_default_for_normal_and_reinforce_for_bernoulli() -> None:
    def f(mu: mx.array) -> mx.array:
        x = normal(mu, 1.0) @ "x"
        return x

    # reparam: d/dmu of x = mu + eps is exactly 1 for every sample
    g = expectation(f).grad(mx.array(0.4), key=mx.random.key(0), n_samples=50, per_sample=True)
    assert np.allclose(np.asarray(g.args[0]), 1.0)
    g = flip_loss(bernoulli).grad(mx.array(0.3), key=mx.random.key(5), n_samples=N, per_sample=True)
    assert_unbiased(g.args[0], -0.2)
    assert len(set(np.round(np.asarray(g.args[0]), 5))) == 2  # REINFORCE's two values


# ---------------------------------------------------------------------- composition
def test_nested_enumeration_with_a_reparameterised_choice() -> None:
    # a ~ flip(p), b ~ flip(q), x ~ N(±q, 1); f = x·p if a∧b else x².
    # E = p²q² + (1 - pq)(q² + 1).
    @gen
    def program(p: mx.array, q: mx.array) -> mx.array:
        a = flip_enum(p) @ "a"
        b = flip_enum(q) @ "b"
        x = normal_reparam(mx.where(a, 1.0, -1.0) * q, 1.0) @ "x"
        return mx.where(mx.logical_and(a, b), x * p, x * x)

    p, q = 0.3, 0.6
    exact = p * p * q * q + (1 - p * q) * (q * q + 1)
    dp = 2 * p * q * q - q * (q * q + 1)
    dq = 2 * p * p * q - p * (q * q + 1) + (1 - p * q) * 2 * q
    g = expectation(program).grad(
        mx.array(p), mx.array(q), key=mx.random.key(6), n_samples=N, per_sample=True
    )
    assert_unbiased(g.value, exact)
    assert_unbiased(g.args[0], dp)
    assert_unbiased(g.args[1], dq)


def test_categorical_enumeration_is_exact() -> None:
    c = mx.array([1.0, -2.0, 0.5, 3.0])

    def f(theta: mx.array) -> mx.array:
        k = categorical_enum(mx.softmax(theta)) @ "k"
        return mx.take(c, k)

    theta = mx.array([0.2, -0.4, 1.0, 0.1])
    g = expectation(f).grad(theta, key=mx.random.key(0))
    pr = np.exp(np.asarray(theta, dtype=np.float64))
    pr /= pr.sum()
    cv = np.asarray(c, dtype=np.float64)
    mean = float(pr @ cv)
    assert abs(float(g.value) - mean) < 1e-6
    assert np.allclose(np.asarray(g.args[0]), pr * (cv - mean), atol=1e-6)


def test_sub_calls_and_parameters() -> None:
    @gen
    def inner(mu: mx.array) -> mx.array:
        return normal(mu, 1.0) @ "y"

    @gen
    def program() -> mx.array:
        y = inner(param("mu", 0.0)) @ "s"
        b = bernoulli(param("p", 0.5)) @ "b"
        return y * y + mx.where(b, 1.0, 0.0)

    # E = mu² + 1 + p: d/dmu = 2 mu (reparam inside the sub-call), d/dp = 1 (enum at
    # "b", named by address)
    store = ParamStore({"mu": mx.array(0.8), "p": mx.array(0.25)})
    e = expectation(program, estimators={"b": "enum"})
    g = e.grad(key=mx.random.key(0), n_samples=N, store=store, per_sample=True)
    assert_unbiased(g.params["mu"], 1.6)
    assert np.allclose(np.asarray(g.params["p"]), 1.0, atol=1e-6)
    # an enclosing address selects the estimator for everything beneath it
    e2 = expectation(program, estimators={"s": reinforce, "b": "enum"})
    g2 = e2.grad(key=mx.random.key(1), n_samples=N, store=store, per_sample=True)
    assert_unbiased(g2.params["mu"], 1.6)
    assert np.std(np.asarray(g2.params["mu"])) > 2 * np.std(np.asarray(g.params["mu"]))


def test_opaque_generative_function_uses_reinforce_over_its_trace() -> None:
    from genmlx.combinators import Map

    @gen
    def kernel(mu: mx.array) -> mx.array:
        return normal(mu, 1.0) @ "y"

    ys = Map(kernel)

    def program(mus: mx.array) -> mx.array:
        s = adev_simulate(ys, (mus,), at="ys")
        return mx.sum(s.retval**2)

    g = expectation(program).grad(
        mx.array([1.0, -0.5]), key=mx.random.key(2), n_samples=N, per_sample=True
    )
    assert_unbiased(g.args[0][:, 0], 2.0)
    assert_unbiased(g.args[0][:, 1], -1.0)
    with pytest.raises(ADEVEstimatorError, match="reinforce over its whole trace"):
        expectation(program, estimators={"ys": reparam}).grad(mx.array([1.0]), key=0)


def test_adev_simulate_returns_choices_and_their_log_density() -> None:
    @gen
    def guide(m: mx.array) -> None:
        z = normal(m, 0.5) @ "z"
        normal(z, 2.0) @ ("w", 0)

    seen: list[list[str]] = []

    def program(m: mx.array) -> mx.array:
        q = adev_simulate(guide, (m,), at="g")
        assert isinstance(q, ADEVSample)
        seen.append(sorted(map(str, q.choices.addresses())))
        ld, _ = guide.assess((m,), q.choices)
        return q.score - ld

    v = expectation(program).estimate(
        mx.array(0.3), key=mx.random.key(0), n_samples=50, per_sample=True
    )
    assert np.allclose(np.asarray(v), 0.0, atol=1e-6)
    assert seen[0] == ["('w', 0)", "z"]


# ---------------------------------------------------------------------- objectives
SIG2 = 1.0  # x | z ~ N(z, 1), z ~ N(0, 1), observed x = 2: posterior N(1, 1/2)
X_OBS = 2.0
LOG_ML = -0.5 * math.log(2 * math.pi * 2.0) - X_OBS**2 / 4.0


@gen
def nn_model() -> None:
    z = normal(param("mu", 0.0), 1.0) @ "z"
    normal(z, 1.0) @ "x"


@gen
def nn_guide() -> None:
    normal(param("m", 0.0), mx.exp(param("log_s", 0.0))) @ "z"


def exact_elbo(m: float, s: float, mu: float = 0.0) -> float:
    """E_q[log N(z; mu, 1) + log N(x; z, 1)] + H[q] for q = N(m, s²)."""
    e_prior = -0.5 * math.log(2 * math.pi) - 0.5 * ((m - mu) ** 2 + s * s)
    e_lik = -0.5 * math.log(2 * math.pi) - 0.5 * ((X_OBS - m) ** 2 + s * s)
    return e_prior + e_lik + 0.5 * math.log(2 * math.pi * math.e * s * s)


def nn_store(m: float, s: float, mu: float = 0.0) -> ParamStore:
    return ParamStore({"mu": mx.array(mu), "m": mx.array(m), "log_s": mx.array(math.log(s))})


def test_elbo_value_and_gradient_match_the_closed_form() -> None:
    obj = elbo_objective(nn_model, (), {"x": X_OBS}, nn_guide)
    m, s = 0.3, 1.2
    g = obj.grad(key=mx.random.key(0), n_samples=N, store=nn_store(m, s), per_sample=True)
    assert_unbiased(g.value, exact_elbo(m, s))
    # dELBO/dm = (x - m) - m; dELBO/dlog s = 1 - 2 s²; dELBO/dmu = m - mu
    assert_unbiased(g.params["m"], X_OBS - 2 * m)
    assert_unbiased(g.params["log_s"], 1 - 2 * s * s)
    assert_unbiased(g.params["mu"], m)
    # at the exact posterior every sample's log weight is log p(x): zero variance
    v = obj.estimate(
        key=mx.random.key(1), n_samples=100, store=nn_store(1.0, math.sqrt(0.5)), per_sample=True
    )
    assert np.allclose(np.asarray(v), LOG_ML, atol=2e-5)


def test_elbo_with_reinforce_guide_is_unbiased() -> None:
    obj = elbo_objective(nn_model, (), {"x": X_OBS}, nn_guide, default="reinforce")
    m, s = 0.3, 1.2
    g = obj.grad(key=mx.random.key(2), n_samples=N, store=nn_store(m, s), per_sample=True)
    assert_unbiased(g.params["m"], X_OBS - 2 * m)
    assert_unbiased(g.params["log_s"], 1 - 2 * s * s)


def test_iwelbo_lies_between_the_elbo_and_log_evidence() -> None:
    m, s = 0.0, 1.0  # the prior as guide: ELBO < IWELBO_K < log p(x)
    store = nn_store(m, s)
    el = elbo_objective(nn_model, (), {"x": X_OBS}, nn_guide)
    ev = el.estimate(key=mx.random.key(3), n_samples=N, store=store, per_sample=True)
    assert_unbiased(ev, exact_elbo(m, s))
    iw = iwelbo_objective(nn_model, (), {"x": X_OBS}, nn_guide, n_particles=10)
    iv = iw.estimate(key=mx.random.key(4), n_samples=N, store=store, per_sample=True)
    ok, mean, se = within(iv, exact_elbo(m, s))
    assert mean - exact_elbo(m, s) > 5 * se  # strictly above the ELBO
    assert mean < LOG_ML + 5 * se
    # K = 1 is the ELBO
    i1 = iwelbo_objective(nn_model, (), {"x": X_OBS}, nn_guide, n_particles=1)
    assert_unbiased(
        i1.estimate(key=mx.random.key(5), n_samples=N, store=store, per_sample=True),
        exact_elbo(m, s),
    )
    # IWELBO's gradient with a reparameterised guide: at the exact posterior every
    # particle's weight is p(x), so the bound is log p(x) exactly
    post = iw.estimate(
        key=mx.random.key(6), n_samples=64, store=nn_store(1.0, math.sqrt(0.5)), per_sample=True
    )
    assert np.allclose(np.asarray(post), LOG_ML, atol=2e-5)


def test_elbo_training_recovers_the_exact_posterior() -> None:
    import mlx.optimizers as optim

    from genmlx.infer.learning import train_objective

    obj = elbo_objective(nn_model, (), {"x": X_OBS}, nn_guide)
    store = ParamStore({"m": mx.array(-1.0), "log_s": mx.array(0.5)})
    res = train_objective(
        obj,
        store,
        n_steps=150,
        n_samples=256,
        optimizer=optim.SGD(learning_rate=0.2),
        key=mx.random.key(0),
        compile=False,
    )
    eta, n = 0.02, 256
    res = train_objective(
        obj,
        res.params,
        n_steps=300,
        n_samples=n,
        optimizer=optim.SGD(learning_rate=eta),
        key=mx.random.key(1),
        compile=False,
    )
    # Bound: near the optimum SGD is θ' - θ* = (1 - ηH)(θ - θ*) + η ξ with Hessian H = 2
    # for both m and log s, and per-sample gradient variance C = 1/s² = 2 (m) and
    # Var(1 - ε²) = 2 (log s), so the stationary variance is η C / (n H (2 - ηH)).
    sd = math.sqrt(eta * 2 / (n * 2 * (2 - eta * 2)))
    assert abs(float(res.params["m"]) - 1.0) < 5 * sd
    assert abs(float(res.params["log_s"]) - math.log(math.sqrt(0.5))) < 5 * sd
    assert res.history.shape == (300,)


def test_wake_p_gradient_reaches_only_the_model() -> None:
    # wake-p with one particle: log p(z, x; mu) at z ~ q, gradient E_q[z - mu] = m - mu
    m, s, mu = 0.7, 0.9, -0.2
    obj = wake_p_objective(nn_model, (), {"x": X_OBS}, nn_guide)
    g = obj.grad(key=mx.random.key(0), n_samples=N, store=nn_store(m, s, mu), per_sample=True)
    assert_unbiased(g.params["mu"], m - mu)
    assert float(mx.max(mx.abs(g.params["m"]))) == 0.0
    assert float(mx.max(mx.abs(g.params["log_s"]))) == 0.0


def test_wake_q_gradient_vanishes_at_the_posterior() -> None:
    # with q = p(z | x) all self-normalised weights are 1/K and E_q[∇ log q] = 0
    obj = wake_q_objective(nn_model, (), {"x": X_OBS}, nn_guide, n_particles=4)
    g = obj.grad(
        key=mx.random.key(1), n_samples=N, store=nn_store(1.0, math.sqrt(0.5)), per_sample=True
    )
    assert_unbiased(g.params["m"], 0.0)
    assert_unbiased(g.params["log_s"], 0.0)
    assert float(mx.max(mx.abs(g.params["mu"]))) == 0.0
    # away from it the gradient points to the posterior mean (self-normalised IS of
    # E_{p(z|x)}[(z - m)/s²] = (1 - m)/s², biased for finite K: only its sign is checked)
    g2 = obj.grad(key=mx.random.key(2), n_samples=4096, store=nn_store(-1.0, 1.0))
    assert float(g2.params["m"]) > 0
    with pytest.raises(ValueError, match="n_particles"):
        wake_q_objective(nn_model, (), {"x": X_OBS}, nn_guide, n_particles=1)


SIGMA2 = 0.5  # recognition model: z ~ N(0, 1), x ~ N(z, SIGMA2)


@gen
def lg_model() -> None:
    z = normal(0.0, 1.0) @ "z"
    normal(z, math.sqrt(SIGMA2)) @ "x"


@gen
def lg_proposal(x: mx.array) -> None:
    normal(param("a", 0.0) * x + param("b", 0.0), mx.exp(param("log_s", 0.0))) @ "z"


def test_sleep_q_gradient_matches_the_closed_form() -> None:
    # E_{p(z,x)}[∇ log N(z; a x + b, s²)] with r = z - a x - b, E[x²] = 1 + σ², E[zx] = 1:
    # ∂a = (1 - a(1 + σ²))/s², ∂b = -b/s², ∂log s = -1 + ((1-a)² + a²σ² + b²)/s²
    a, b, s = 0.3, 0.2, 0.8
    store = ParamStore({"a": mx.array(a), "b": mx.array(b), "log_s": mx.array(math.log(s))})
    obj = sleep_q_objective(lg_model, (), lg_proposal, lambda tr: (tr["x"],))
    g = obj.grad(key=mx.random.key(0), n_samples=N, store=store, per_sample=True)
    assert_unbiased(g.params["a"], (1 - a * (1 + SIGMA2)) / s**2)
    assert_unbiased(g.params["b"], -b / s**2)
    assert_unbiased(g.params["log_s"], -1 + ((1 - a) ** 2 + a * a * SIGMA2 + b * b) / s**2)


# ---------------------------------------------------------------------- plugins
class ReinforceWithBaseline(ADEVEstimator):
    """REINFORCE with a constant baseline c: S = k(x) + (exp(ℓ - ⊥ℓ) - 1)(⊥k(x) - c)."""

    name = "reinforce_baseline"
    linear = False

    def __init__(self, c: float) -> None:
        self.c = c

    def estimate(self, key: mx.array, dist: Any, args: Any, cont: Any) -> mx.array:
        x = mx.stop_gradient(dist.sample(key, *args))
        k = cont(x[None])[0]
        out: mx.array = k + (magic_box(dist.score(x, args)) - 1) * (mx.stop_gradient(k) - self.c)
        return out


class _Plugin:
    @hookimpl
    def genmlx_register_inference(self, register: Any) -> None:
        register_builtin_estimators(register)
        register(ReinforceWithBaseline(-0.1), name="adev_reinforce_baseline")


def test_estimators_are_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    reg_mod = importlib.import_module("genmlx.core.plugins.registry")
    reg = Registry(autoload=False)
    reg.register_plugin(_Plugin(), name="adev-test")
    monkeypatch.setattr(reg_mod, "_REGISTRY", reg)
    assert reg.inference["adev_enum"] is enum_exact
    assert reg.inference.provider("adev_reinforce_baseline") == "adev-test"
    est = get_estimator("reinforce_baseline")
    assert isinstance(est, ReinforceWithBaseline)

    def loss(p: mx.array) -> mx.array:
        b = bernoulli(p) @ "b"
        return mx.where(b, 0.0, -p / 2)

    e = expectation(loss, estimators={"b": "adev_reinforce_baseline"})
    g = e.grad(mx.array(0.3), key=mx.random.key(0), n_samples=N, per_sample=True)
    assert_unbiased(g.args[0], -0.2)
    # per sample: (f(b) - c) ∂log p(b) + ∂f(b): -c/p for b = 1, (p/2 + c)/(1-p) - 1/2 for b = 0
    p, c = 0.3, -0.1
    vals = np.asarray(g.args[0])
    ones = np.isclose(vals, -c / p, atol=1e-5)
    zeros = np.isclose(vals, (p / 2 + c) / (1 - p) - 0.5, atol=1e-5)
    assert np.all(ones | zeros)
    assert_unbiased(ones.astype(np.float64), p)  # b = 1 with frequency p
    with pytest.raises(KeyError, match="no ADEV estimator named 'nope'"):
        get_estimator("nope")


# ---------------------------------------------------------------------- errors
def test_estimator_that_does_not_fit_names_the_address_and_the_fix() -> None:
    def discrete(p: mx.array) -> mx.array:
        return mx.where(bernoulli(p) @ ("coin", 3), 1.0, 0.0)

    with pytest.raises(ADEVEstimatorError, match=r"reparam .*\('coin', 3\).*reinforce") as e:
        expectation(discrete, default=reparam).grad(mx.array(0.3), key=0)
    assert "enum" in str(e.value)

    def continuous(mu: mx.array) -> mx.array:
        return normal(mu, 1.0) @ "x"

    with pytest.raises(ADEVEstimatorError, match=r"enum needs a finite support.*'x'.*reparam"):
        expectation(continuous, estimators={"x": enum_exact}).grad(mx.array(0.3), key=0)
    with pytest.raises(ADEVEstimatorError, match="mvd .*two-point.*'k'.*3 support points"):
        expectation(
            lambda: categorical(mx.array([0.2, 0.3, 0.5])) @ "k", estimators={"k": mvd}
        ).grad(key=0)
    with pytest.raises(ADEVEstimatorError, match="one scalar choice.*'bs'"):
        expectation(lambda p: mx.sum(flip_enum(p) @ "bs"), default=None).grad(
            mx.array([0.2, 0.4]), key=0
        )
    with pytest.raises(KeyError, match="built-ins"):
        expectation(continuous, estimators={"x": "pathwise"})


def test_branching_estimator_inside_particles_is_refused() -> None:
    @gen
    def guide() -> None:
        flip_enum(0.3) @ "b"

    def program() -> mx.array:
        return mx.sum(adev_simulate(guide, (), n_particles=4).score)

    with pytest.raises(ADEVEstimatorError, match="only linear estimators"):
        expectation(program).grad(key=0)


def test_bad_programs_raise_clear_errors_and_leave_no_state() -> None:
    with pytest.raises(ValueError, match="scalar"):
        expectation(lambda mu: normal(mu, 1.0) @ "x" + mx.zeros(3)).grad(mx.array(0.0), key=0)

    def branchy(mu: mx.array) -> mx.array:
        x = normal(mu, 1.0) @ "x"
        return x if x > 0 else -x

    with pytest.raises(BatchedControlFlowError, match="mx.where"):
        expectation(branchy).grad(mx.array(0.0), key=0)
    assert runtime.active_run() is None
    with pytest.raises(GenMLXError, match="inside an ADEV program"):
        adev_simulate(nn_guide, ())
    with pytest.raises(TypeError, match="@gen function or a Python function"):
        expectation(normal)
    with pytest.raises(ValueError, match="n_samples"):
        square(normal_reparam).grad(mx.array(0.0), mx.array(1.0), key=0, n_samples=0)


def test_primitives_are_ordinary_distributions() -> None:
    @gen
    def m() -> None:
        normal_reparam(0.0, 1.0) @ "x"
        flip_enum(0.3) @ "b"

    tr = m.simulate((), key=mx.random.key(0))
    expect = float(normal.log_prob(tr["x"], 0.0, 1.0) + bernoulli.log_prob(tr["b"], 0.3))
    assert abs(float(tr.score) - expect) < 1e-6
    assert reinforce(normal_reparam).estimator is reinforce  # rebinding
    assert reinforce(normal_reparam).dist is normal
