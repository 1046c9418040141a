"""Learning: maximum likelihood, proposal training (lecture) and wake-sleep.

Bounds come from the optimiser's own dynamics. Full-batch gradient descent on a
quadratic loss contracts the error exactly: ``θ_t - θ* = (I - ηH)^t (θ_0 - θ*)``.
Stochastic steps near an optimum follow ``δ' = (1 - ηH) δ + η ξ`` with ``Var ξ = C/B``
(``C`` the per-example gradient variance at the optimum, ``B`` the batch size), whose
stationary variance is ``η C / (B H (2 - ηH))``; tests allow 5 such standard deviations.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest

from genmlx.core import GenMLXError, ParamStore, choicemap, gen, param, select
from genmlx.dists import normal
from genmlx.infer.learning import (
    LectureResult,
    TrainResult,
    WakeSleepResult,
    lecture,
    lecture_batched,
    train,
    train_proposal,
    wake_sleep,
)

rng = np.random.default_rng(0)
YS = rng.normal(1.7, 1.3, size=64).astype(np.float32)
YBAR = float(YS.astype(np.float64).mean())


@gen
def gauss() -> None:
    normal(param("mu", 0.0), 1.0) @ "y"


def gauss_loss(mu: float, ys: np.ndarray) -> float:
    y = ys.astype(np.float64)
    return float(np.mean(0.5 * (y - mu) ** 2 + 0.5 * math.log(2 * math.pi)))


# ---------------------------------------------------------------------- train
def test_full_batch_maximum_likelihood_converges_to_the_data_mean() -> None:
    # loss = mean_i (y_i - mu)²/2 + const: H = 1, so mu_t - ȳ = (1 - η)^t (mu_0 - ȳ)
    eta, steps = 0.3, 60
    res = train(
        gauss,
        {"y": mx.array(YS)},
        ParamStore({"mu": 0.0}),
        n_steps=steps,
        optimizer=optim.SGD(learning_rate=eta),
        key=mx.random.key(0),
        compile=False,  # the compiled step is checked separately (cold JIT is slow)
    )
    assert isinstance(res, TrainResult)
    assert abs(float(res.params["mu"]) - YBAR) <= (1 - eta) ** steps * abs(YBAR) + 1e-5
    # the history is the negative mean log-likelihood before each step
    assert abs(float(res.history[0]) - gauss_loss(0.0, YS)) < 1e-4
    mu1 = eta * YBAR  # after one step from 0
    assert abs(float(res.history[1]) - gauss_loss(mu1, YS)) < 1e-4
    assert res.history.shape == (steps,)


def test_minibatch_maximum_likelihood_stays_within_the_sgd_noise() -> None:
    # minibatch of B without replacement from D: Var ξ = s²/B · (D - B)/(D - 1) with s²
    # the data's (population) variance; stationary Var(mu - ȳ) = η Var ξ / (2 - η)
    eta, b, d = 0.1, 8, YS.size
    res = train(
        gauss,
        {"y": mx.array(YS)},
        ParamStore({"mu": 0.0}),
        n_steps=300,
        batch_size=b,
        optimizer=optim.SGD(learning_rate=eta),
        key=mx.random.key(1),
        compile=False,  # the compiled step is checked separately (cold JIT is slow)
    )
    s2 = float(YS.astype(np.float64).var())
    sd = math.sqrt(eta * s2 / b * (d - b) / (d - 1) / (2 - eta))
    assert abs(float(res.params["mu"]) - YBAR) < 5 * sd + (1 - eta) ** 300 * abs(YBAR)


def test_compiled_and_eager_training_agree_and_adam_is_the_default() -> None:
    store = ParamStore({"mu": 0.0})
    data = {"y": mx.array(YS)}
    a = train(gauss, data, store, n_steps=20, batch_size=16, key=mx.random.key(2))
    b = train(gauss, data, store, n_steps=20, batch_size=16, key=mx.random.key(2), compile=False)
    c = train(
        gauss,
        data,
        store,
        n_steps=20,
        batch_size=16,
        key=mx.random.key(2),
        optimizer=optim.Adam(learning_rate=0.01),
    )
    assert np.allclose(np.asarray(a.history), np.asarray(b.history), atol=1e-5)
    assert abs(float(a.params["mu"]) - float(b.params["mu"])) < 1e-6
    assert abs(float(a.params["mu"]) - float(c.params["mu"])) < 1e-7
    assert float(store["mu"]) == 0.0  # the given store is unchanged


def test_data_function_with_inputs_per_datum() -> None:
    # a regression model written over a batch: one execution scores every point
    xs = mx.array(np.linspace(-2.0, 2.0, 40, dtype=np.float32))
    ys = mx.array(
        (0.8 * np.linspace(-2.0, 2.0, 40) - 0.5 + rng.normal(0, 0.3, 40)).astype(np.float32)
    )

    @gen
    def line(x: mx.array) -> None:
        normal(param("slope", 0.0) * x + param("intercept", 0.0), 1.0) @ "ys"

    def data(key: mx.array) -> tuple[tuple[Any, ...], Any]:
        return (xs,), choicemap({"ys": ys})

    eta, steps = 0.02, 200
    res = train(
        line,
        data,
        ParamStore({"slope": 0.0, "intercept": 0.0}),
        n_steps=steps,
        optimizer=optim.SGD(learning_rate=eta),
        key=mx.random.key(3),
        compile=False,  # the compiled step is checked separately (cold JIT is slow)
    )
    # loss = Σ (y - s x - c)²/2: Hessian X^T X; least squares optimum; error contracts
    # by max |1 - η λ| per step
    x = np.stack([np.asarray(xs, np.float64), np.ones(40)], axis=1)
    hess = x.T @ x
    opt = np.linalg.solve(hess, x.T @ np.asarray(ys, np.float64))
    rate = max(abs(1 - eta * lam) for lam in np.linalg.eigvalsh(hess))
    got = np.array([float(res.params["slope"]), float(res.params["intercept"])])
    assert np.linalg.norm(got - opt) <= rate**steps * np.linalg.norm(opt) + 1e-4


def test_progress_bar(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    train(
        gauss,
        {"y": mx.array(YS)},
        ParamStore({"mu": 0.0}),
        n_steps=3,
        key=0,
        progress=True,
        compile=False,
    )
    assert "train" in capsys.readouterr().err  # tqdm writes to stderr
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install tqdm"):
        train(
            gauss,
            {"y": mx.array(YS)},
            ParamStore({"mu": 0.0}),
            n_steps=3,
            key=0,
            progress=True,
            compile=False,
        )


def test_train_errors() -> None:
    data = {"y": mx.array(YS)}
    with pytest.raises(ValueError, match="no parameters"):
        train(gauss, data, ParamStore({}), n_steps=1)
    with pytest.raises(ValueError, match="batch_size=100 exceeds the 64 data"):
        train(gauss, data, ParamStore({"mu": 0.0}), n_steps=1, batch_size=100)
    with pytest.raises(ValueError, match="same leading"):
        train(gauss, {"y": mx.zeros(3), "z": mx.zeros(4)}, ParamStore({"mu": 0.0}), n_steps=1)
    with pytest.raises(TypeError, match="optimizer"):
        train(gauss, data, ParamStore({"mu": 0.0}), n_steps=1, optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating point"):
        train(gauss, data, ParamStore({"mu": mx.array(1)}), n_steps=1)

    def peeking(key: mx.array) -> tuple[tuple[Any, ...], Any]:
        n = int(mx.random.randint(1, 3, key=key).item())  # needs a concrete value
        return (), choicemap({"y": mx.array(YS[:n])}, batch_shape=(n,))

    with pytest.raises(GenMLXError, match="compile=False"):
        train(gauss, peeking, ParamStore({"mu": 0.0}), n_steps=1, key=0)
    res = train(gauss, peeking, ParamStore({"mu": 0.0}), n_steps=2, key=0, compile=False)
    assert res.history.shape == (2,)


# ---------------------------------------------------------------------- lecture
SIGMA2 = 0.5  # z ~ N(0, 1), x ~ N(z, σ²): posterior N(x/(1+σ²), σ²/(1+σ²))
A_OPT = 1 / (1 + SIGMA2)
S2_OPT = SIGMA2 / (1 + SIGMA2)


@gen
def recog_model() -> None:
    z = normal(0.0, 1.0) @ "z"
    normal(z, math.sqrt(SIGMA2)) @ "x"


@gen
def proposal(x: mx.array) -> None:
    normal(param("a", 0.0) * x + param("b", 0.0), mx.exp(param("log_s", 0.0))) @ "z"


def expected_log_q(a: float, b: float, s: float) -> float:
    """E_{p(z,x)}[log N(z; a x + b, s²)]: z - a x - b has variance (1-a)² + a²σ², mean -b."""
    m2 = (1 - a) ** 2 + a * a * SIGMA2 + b * b
    return -math.log(s) - 0.5 * math.log(2 * math.pi) - m2 / (2 * s * s)


def test_lecture_scores_the_model_latents_under_the_proposal() -> None:
    store = ParamStore({"a": 0.4, "b": 0.1, "log_s": math.log(0.9)})
    res = lecture(recog_model, (), proposal, store, lambda tr: (tr["x"],), key=mx.random.key(0))
    assert isinstance(res, LectureResult)
    tr = recog_model.simulate((), key=mx.random.split(mx.random.key(0), 2)[0])
    x, z = float(tr["x"]), float(tr["z"])
    mean, s = 0.4 * x + 0.1, 0.9
    assert abs(float(res.score) - float(normal.log_prob(z, mean, s))) < 1e-5
    r = z - mean
    assert abs(float(res.grads["a"]) - r * x / s**2) < 1e-4
    assert abs(float(res.grads["b"]) - r / s**2) < 1e-4
    assert abs(float(res.grads["log_s"]) - (-1 + r * r / s**2)) < 1e-4


def test_lecture_batched_gradient_is_unbiased() -> None:
    # ten independent batch means; their mean must be within 5 SE (from their spread)
    # of E[∇ log q]: ∂a = (1 - a(1+σ²))/s², ∂b = -b/s², ∂log s = -1 + E r²/s²
    a, b, s = 0.3, 0.2, 0.8
    store = ParamStore({"a": a, "b": b, "log_s": math.log(s)})
    runs = [
        lecture_batched(
            recog_model, (), proposal, store, lambda tr: (tr["x"],), 2000, key=mx.random.key(k)
        )
        for k in range(10)
    ]
    exact = {
        "a": (1 - a * (1 + SIGMA2)) / s**2,
        "b": -b / s**2,
        "log_s": -1 + ((1 - a) ** 2 + a * a * SIGMA2 + b * b) / s**2,
    }
    for name, value in exact.items():
        g = np.array([float(r.grads[name]) for r in runs])
        assert abs(g.mean() - value) < 5 * g.std(ddof=1) / math.sqrt(g.size), name
    sc = np.array([float(r.score) for r in runs])
    assert abs(sc.mean() - expected_log_q(a, b, s)) < 5 * sc.std(ddof=1) / math.sqrt(sc.size)


def test_proposal_training_reaches_the_exact_posterior() -> None:
    get_q_args = lambda tr: (tr["x"],)  # noqa: E731
    start = ParamStore({"a": 0.0, "b": 0.5, "log_s": 0.5})
    res = train_proposal(
        recog_model,
        (),
        proposal,
        start,
        get_q_args,
        n_steps=200,
        batch_size=1000,
        optimizer=optim.SGD(learning_rate=0.2),
        key=mx.random.key(0),
        compile=False,  # the compiled step is checked separately (cold JIT is slow)
    )
    eta, bsz = 0.02, 1000
    res = train_proposal(
        recog_model,
        (),
        proposal,
        res.params,
        get_q_args,
        n_steps=300,
        batch_size=bsz,
        optimizer=optim.SGD(learning_rate=eta),
        key=mx.random.key(1),
        compile=False,  # the compiled step is checked separately (cold JIT is slow)
    )
    # the optimum is the posterior: a = 1/(1+σ²), b = 0, s² = σ²/(1+σ²). Per-example
    # gradient variance C equals the Hessian H for all three (H = (1+σ²)/s², 1/s², 2),
    # so the stationary variance is η / (B (2 - ηH)).
    hess = {"a": (1 + SIGMA2) / S2_OPT, "b": 1 / S2_OPT, "log_s": 2.0}
    target = {"a": A_OPT, "b": 0.0, "log_s": 0.5 * math.log(S2_OPT)}
    var = {k: eta / (bsz * (2 - eta * h)) for k, h in hess.items()}
    for k in target:
        assert abs(float(res.params[k]) - target[k]) < 5 * math.sqrt(var[k]), k
    # the score: the optimality gap is ≈ Σ H_k δ_k² / 2, a scaled χ² with mean
    # Σ H_k var_k / 2; allow 5 times that mean
    a, b, s = (float(res.params[k]) for k in ("a", "b", "log_s"))
    best = expected_log_q(A_OPT, 0.0, math.sqrt(S2_OPT))
    assert abs(best + 0.5 * math.log(2 * math.pi * math.e * S2_OPT)) < 1e-12
    gap = best - expected_log_q(a, b, math.exp(s))
    assert 0 <= gap < 5 * sum(hess[k] * var[k] for k in hess) / 2
    # the recorded loss is -score, around the optimal -E log q
    tail = -np.asarray(res.history[-100:], dtype=np.float64)
    assert abs(tail.mean() - best) < 5 * tail.std(ddof=1) / math.sqrt(tail.size) + gap


# ---------------------------------------------------------------------- wake-sleep
D = 20
X_DATA = (rng.normal(1.5, math.sqrt(1 + SIGMA2), size=D)).astype(np.float32)
XBAR = float(X_DATA.astype(np.float64).mean())


@gen
def dataset_model(n: int) -> None:
    z = normal(param("mu", 0.0) + mx.zeros((n,)), 1.0) @ "z"
    normal(z, math.sqrt(SIGMA2)) @ "x"


def test_wake_sleep_learns_the_model_and_the_posterior() -> None:
    # Joint fixed point: mu = x̄ (maximum likelihood: x ~ N(mu, 1 + σ²)) and the
    # posterior proposal a = 1/(1+σ²), b = σ² mu/(1+σ²), s² = σ²/(1+σ²).
    store = ParamStore({"mu": 0.0, "a": 0.0, "b": 0.0, "log_s": 0.0})
    kw: dict[str, Any] = dict(
        observations={"x": mx.array(X_DATA)},
        get_q_args=lambda tr: (tr["x"],),
        args=(D,),
        proposal_args=(mx.array(X_DATA),),
        n_samples=16,
    )
    res = wake_sleep(
        dataset_model,
        proposal,
        store,
        n_steps=300,
        batch_size=64,
        optimizer=optim.SGD(learning_rate=0.01),
        key=mx.random.key(0),
        compile=False,  # the compiled step is checked separately (cold JIT is slow)
        **kw,
    )
    eta, bsz, n = 0.005, 64, 16
    res = wake_sleep(
        dataset_model,
        proposal,
        res.params,
        n_steps=600,
        batch_size=bsz,
        optimizer=optim.SGD(learning_rate=eta),
        key=mx.random.key(1),
        compile=False,  # the compiled step is checked separately (cold JIT is slow)
        **kw,
    )
    assert isinstance(res, WakeSleepResult)
    assert res.wake_history.shape == res.sleep_history.shape == (600,)
    # Linear-noise analysis of the joint SGD around the fixed point, state (mu, a, b):
    # * wake: mu's gradient (mean of n samples of Σ_i (z_i - mu), z ~ q) has mean
    #   D (a x̄ + b - mu) and noise variance D s²/n;
    # * sleep: lecture_batched averages over B model samples of D points; per point the
    #   (a, b) Hessian is H = [[E x², E x], [E x, 1]] / s² (x ~ N(mu, 1 + σ²)) and the
    #   gradient covariance equals H (as in the lecture test); the target (a, b)* is
    #   (1/(1+σ²), c mu) with c = σ²/(1+σ²). log s decouples, with H = C = 2.
    # So δ' = A δ + η ξ with A = I + η D M, and the stationary covariance solves the
    # discrete Lyapunov equation Σ = A Σ Aᵀ + Q.
    c = SIGMA2 / (1 + SIGMA2)
    h = np.array([[1 + SIGMA2 + XBAR**2, XBAR], [XBAR, 1.0]]) / S2_OPT
    m = np.zeros((3, 3))
    m[0] = [-1.0, XBAR, 1.0]
    m[1:, 0] = c * h[:, 1]
    m[1:, 1:] = -h
    a_mat = np.eye(3) + eta * D * m
    q = np.zeros((3, 3))
    q[0, 0] = eta**2 * D * S2_OPT / n
    q[1:, 1:] = eta**2 * D * h / bsz
    sigma = np.linalg.solve(np.eye(9) - np.kron(a_mat, a_mat), q.reshape(-1)).reshape(3, 3)
    var_u = eta / (bsz * (2 - eta * D * 2.0))
    mu = float(res.params["mu"])
    assert abs(mu - XBAR) < 5 * math.sqrt(sigma[0, 0])
    assert abs(float(res.params["a"]) - A_OPT) < 5 * math.sqrt(sigma[1, 1])
    assert abs(float(res.params["b"]) - c * XBAR) < 5 * math.sqrt(sigma[2, 2])
    assert abs(float(res.params["log_s"]) - 0.5 * math.log(S2_OPT)) < 5 * math.sqrt(var_u)


def test_lecture_errors() -> None:
    store = ParamStore({"a": 0.0, "b": 0.0, "log_s": 0.0})
    with pytest.raises(TypeError, match="proposal must be a generative function"):
        lecture(recog_model, (), lambda x: x, store, lambda tr: ())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        lecture_batched(recog_model, (), proposal, store, lambda tr: (tr["x"],), 0)
    # an explicit latent selection works like the inferred one
    r1 = lecture(
        recog_model, (), proposal, store, lambda tr: (tr["x"],), key=3, latents=select("z")
    )
    r2 = lecture(recog_model, (), proposal, store, lambda tr: (tr["x"],), key=3)
    assert float(r1.score) == float(r2.score)


# The compiled steps below are marked slow: on Linux CPU, MLX's first compile of a graph
# JIT-builds C++ kernels (cached under $TMPDIR/mlx), which takes tens of seconds cold.
@pytest.mark.slow
def test_compiled_and_eager_objective_training_agree() -> None:
    from genmlx.infer.adev import elbo_objective
    from genmlx.infer.learning import train_objective

    @gen
    def guide() -> None:
        normal(param("m", 0.0), mx.exp(param("log_s", 0.0))) @ "z"

    obj = elbo_objective(recog_model, (), {"x": 1.0}, guide)
    store = ParamStore({"m": 0.0, "log_s": 0.0})
    runs = [
        train_objective(obj, store, n_steps=5, n_samples=8, key=mx.random.key(4), compile=c)
        for c in (True, False)
    ]
    assert np.allclose(
        np.asarray(runs[0].history), np.asarray(runs[1].history), atol=1e-5
    )
    for k in ("m", "log_s"):
        assert abs(float(runs[0].params[k]) - float(runs[1].params[k])) < 1e-5


@pytest.mark.slow
def test_compiled_and_eager_proposal_and_wake_sleep_training_agree() -> None:
    get_q_args = lambda tr: (tr["x"],)  # noqa: E731
    store = ParamStore({"a": 0.0, "b": 0.0, "log_s": 0.0})
    runs = [
        train_proposal(
            recog_model,
            (),
            proposal,
            store,
            get_q_args,
            n_steps=5,
            batch_size=16,
            key=mx.random.key(5),
            compile=c,
        )
        for c in (True, False)
    ]
    assert np.allclose(
        np.asarray(runs[0].history), np.asarray(runs[1].history), atol=1e-5
    )
    kw: dict[str, Any] = dict(
        observations={"x": mx.array(X_DATA)},
        get_q_args=get_q_args,
        args=(D,),
        proposal_args=(mx.array(X_DATA),),
        n_steps=5,
        batch_size=8,
        key=mx.random.key(6),
    )
    store = ParamStore({"mu": 0.0, "a": 0.0, "b": 0.0, "log_s": 0.0})
    ws = [wake_sleep(dataset_model, proposal, store, compile=c, **kw) for c in (True, False)]
    assert np.allclose(np.asarray(ws[0].wake_history), np.asarray(ws[1].wake_history), atol=1e-4)
    assert np.allclose(np.asarray(ws[0].sleep_history), np.asarray(ws[1].sleep_history), atol=1e-4)
    for k in store:
        assert abs(float(ws[0].params[k]) - float(ws[1].params[k])) < 1e-5
