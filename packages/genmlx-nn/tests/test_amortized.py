"""Amortized inference: the ELBO estimator, its gradient, VAE training and neural IS.

Closed forms (numpy, independent of GenMLX) for the linear-Gaussian model
``z ~ N(0, 1)``, ``x ~ N(z, 1)`` with encoder ``q(z; x) = N(μ, s²)``,
``μ = w₀x + c₀``, ``log s = w₁x + c₁``:

* ``ELBO(x) = −log 2π − ½(μ² + s²) − ½((x − μ)² + s²) + ½ log(2πe) + log s``;
* ``∂ELBO/∂μ = x − 2μ`` and ``∂ELBO/∂log s = 1 − 2s²``, so
  ``∂/∂w₀ = (x − 2μ)x``, ``∂/∂c₀ = x − 2μ``, ``∂/∂w₁ = (1 − 2s²)x``, ``∂/∂c₁ = 1 − 2s²``;
* with the exact posterior ``q = N(x/2, 1/2)`` the ELBO equals ``log p(x) = log N(x; 0, 2)``
  for every draw.

Monte Carlo checks use a bound of 5 standard errors, the SE being the sample standard
deviation of independent replicates over √(number of replicates), with fixed seeds.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest

from genmlx.combinators import Unfold
from genmlx.core import ParamStore, gen, param, use_params
from genmlx.dists import bernoulli, categorical, normal
from genmlx.infer import importance_sampling, particle_filter
from genmlx.nn import NeuralNetGF, elbo, make_elbo_step, param_store, train_amortized

K = mx.random.key


# --------------------------------------------------------------------------- linear Gaussian
@gen
def lg_model():
    z = normal(0.0, 1.0) @ "z"
    normal(mx.array([z]), 1.0) @ "x"


def lg_observe(x: mx.array) -> dict[str, mx.array]:
    return {"x": x}


def lg_encoder_of(net: NeuralNetGF):
    @gen
    def encoder(x):
        out = net(x) @ "net"
        normal(out[0], mx.exp(out[1])) @ "z"

    return encoder


def lg_net(w: list[float], c: list[float]) -> NeuralNetGF:
    lin = nn.Linear(1, 2)
    lin.update({"weight": mx.array([[w[0]], [w[1]]]), "bias": mx.array(c)})
    return NeuralNetGF(lin, name="enc")


def lg_closed_form(xs: np.ndarray, w: list[float], c: list[float]) -> tuple[np.ndarray, ...]:
    mu = w[0] * xs + c[0]
    log_s = w[1] * xs + c[1]
    s2 = np.exp(2 * log_s)
    value = (
        -math.log(2 * math.pi)
        - 0.5 * (mu**2 + s2)
        - 0.5 * ((xs - mu) ** 2 + s2)
        + 0.5 * math.log(2 * math.pi * math.e)
        + log_s
    )
    d_mu, d_logs = xs - 2 * mu, 1 - 2 * s2
    grads = (np.mean(d_mu * xs), np.mean(d_mu), np.mean(d_logs * xs), np.mean(d_logs))
    return value, np.array(grads)


def test_elbo_with_the_exact_posterior_is_the_log_marginal() -> None:
    @gen
    def exact(x):
        normal(x[0] / 2.0, math.sqrt(0.5)) @ "z"

    xs = mx.array([[0.0], [1.0], [-2.0], [3.5]])
    e = elbo(lg_model, exact, xs, observe=lg_observe, key=K(0), n_samples=3)
    x = np.array([0.0, 1.0, -2.0, 3.5])
    log_px = -0.5 * math.log(4 * math.pi) - x**2 / 4
    assert e.shape == (4,)
    assert np.allclose(np.array(e), log_px, atol=1e-5)


def test_per_datum_model_arguments_for_a_conditional_model() -> None:
    # z ~ N(c, 1), x ~ N(z, 1) with the context c part of each datum [c, x]; the exact
    # posterior N((c + x)/2, 1/2) as encoder gives ELBO = log N(x; c, 2) for every draw
    @gen
    def conditional(c):
        z = normal(c, 1.0) @ "z"
        normal(z, 1.0) @ "x"

    @gen
    def exact(d):
        normal((d[0] + d[1]) / 2.0, math.sqrt(0.5)) @ "z"

    data = np.array([[0.0, 1.0], [2.0, -1.0], [-1.5, 0.5]], dtype=np.float32)
    e = elbo(
        conditional,
        exact,
        mx.array(data),
        observe=lambda d: {"x": d[1]},
        args=lambda d: (d[0],),
        key=K(3),
    )
    c, x = data[:, 0].astype(np.float64), data[:, 1].astype(np.float64)
    assert np.allclose(np.array(e), -0.5 * math.log(4 * math.pi) - (x - c) ** 2 / 4, atol=1e-5)


def test_elbo_estimate_is_unbiased() -> None:
    w, c = [0.3, -0.2], [0.1, -0.4]
    encoder = lg_encoder_of(lg_net(w, c))
    x = np.array([1.3], dtype=np.float32)
    reps = 4000
    data = mx.array(np.repeat(x[None], reps, axis=0))
    e = np.array(elbo(lg_model, encoder, data, observe=lg_observe, key=K(1)), dtype=np.float64)
    exact, _ = lg_closed_form(x.astype(np.float64), w, c)
    se = e.std(ddof=1) / math.sqrt(reps)
    assert abs(e.mean() - exact[0]) < 5 * se


def test_elbo_step_gradient_matches_the_closed_form() -> None:
    # SGD with learning rate lr moves the values by lr · ∇(mean ELBO); 30 independent
    # steps from the same values give 30 gradient estimates whose mean must be within
    # 5 SE of the closed-form gradient (each estimate averages 256 data points).
    w, c = [0.3, -0.2], [0.1, -0.4]
    net = lg_net(w, c)
    encoder = lg_encoder_of(net)
    rng = np.random.default_rng(0)
    xs = rng.normal(scale=math.sqrt(2.0), size=(256, 1)).astype(np.float32)
    _, exact = lg_closed_form(xs[:, 0].astype(np.float64), w, c)
    lr = 1e-3
    store = param_store(net)
    estimates = []
    for compiled in (False, True):
        opt = optim.SGD(learning_rate=lr)
        step = make_elbo_step(lg_model, encoder, opt, observe=lg_observe, compile=compiled)
        rows = []
        for r in range(30):
            value, new = step(store.values_dict, K(100 + r), mx.array(xs))
            dw = (np.array(new["enc/weight"]) - np.array(store["enc/weight"]))[:, 0] / lr
            db = (np.array(new["enc/bias"]) - np.array(store["enc/bias"])) / lr
            rows.append([dw[0], db[0], dw[1], db[1]])
        estimates.append(np.array(rows, dtype=np.float64))
    interpreted, compiled_est = estimates
    # the compiled step computes the same thing as the interpreted one (same keys)
    assert np.allclose(interpreted, compiled_est, rtol=1e-3, atol=2e-2)
    mean = interpreted.mean(axis=0)
    se = interpreted.std(axis=0, ddof=1) / math.sqrt(len(interpreted))
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-3), (mean, exact, se)


def test_discrete_encoder_choices_are_rejected() -> None:
    @gen
    def bad_encoder(x):
        categorical(mx.array([0.5, 0.5])) @ "z"

    with pytest.raises(TypeError, match=r"encoder's choice at \('z',\) has dtype"):
        elbo(lg_model, bad_encoder, mx.zeros((2, 1)), observe=lg_observe, key=K(0))


def test_bad_arguments() -> None:
    encoder = lg_encoder_of(lg_net([0.0, 0.0], [0.0, 0.0]))
    with pytest.raises(ValueError, match=r"data must be an mx\.array"):
        elbo(lg_model, encoder, [1.0], observe=lg_observe, key=K(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        elbo(lg_model, encoder, mx.zeros((2, 1)), observe=lg_observe, n_samples=0)
    with pytest.raises(ValueError, match="batch_size must be an int in 1..2"):
        train_amortized(
            lg_model,
            encoder,
            mx.zeros((2, 1)),
            ParamStore({"a": 0.0}),
            optim.Adam(0.1),
            observe=lg_observe,
            n_steps=1,
            batch_size=3,
        )
    with pytest.raises(TypeError, match="optimizer must be an mlx.optimizers.Optimizer"):
        make_elbo_step(lg_model, encoder, "adam", observe=lg_observe)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- a VAE
def shapes(n: int, seed: int) -> mx.array:
    """8×8 binary images: a 2-wide horizontal or vertical bar or a 3×3 square, 1% flips."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 8, 8), np.float32)
    for k in range(n):
        kind = rng.integers(3)
        if kind == 0:
            r = rng.integers(7)
            out[k, r : r + 2, :] = 1
        elif kind == 1:
            c = rng.integers(7)
            out[k, :, c : c + 2] = 1
        else:
            r, c = rng.integers(6, size=2)
            out[k, r : r + 3, c : c + 3] = 1
    out = np.where(rng.random(out.shape) < 0.01, 1 - out, out)
    return mx.array(out.reshape(n, 64))


def make_vae() -> tuple:
    mx.random.seed(0)
    enc = NeuralNetGF(nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4)), "encoder")
    dec = NeuralNetGF(nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64)), "decoder")

    @gen
    def model():
        z = normal(mx.zeros(2), 1.0) @ "z"
        logits = dec(z) @ "decoder"
        bernoulli(1e-3 + (1 - 2e-3) * mx.sigmoid(logits)) @ "x"

    @gen
    def encoder(x):
        out = enc(x) @ "encoder"
        normal(out[:2], mx.exp(out[2:])) @ "z"

    return model, encoder, param_store(enc, dec)


def observe_image(x: mx.array) -> dict[str, mx.array]:
    return {"x": x}


@pytest.fixture(scope="module")
def trained_vae() -> tuple:
    model, encoder, store = make_vae()
    fit = train_amortized(
        model,
        encoder,
        shapes(512, 0),
        store,
        optim.Adam(3e-3),
        observe=observe_image,
        n_steps=300,
        batch_size=64,
        key=K(1),
    )
    return model, encoder, store, fit


def test_vae_training_improves_the_held_out_elbo(trained_vae: tuple) -> None:
    model, encoder, store, fit = trained_vae
    assert fit.elbo_history.shape == (300,)
    assert sorted(fit.params) == sorted(store)
    test = shapes(64, 1)
    # per-datum ELBO estimates (K = 4 draws each) before and after training, paired by
    # datum; SE of the mean paired difference = sd / sqrt(64)
    before = elbo(model, encoder, test, observe=observe_image, key=K(9), n_samples=4, params=store)
    after = elbo(
        model, encoder, test, observe=observe_image, key=K(9), n_samples=4, params=fit.params
    )
    d = np.array(after - before, dtype=np.float64)
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert d.mean() > 10 * se
    assert d.mean() > 10.0  # nats per image: the decoder learnt the shapes
    # the training curve went up too (first vs last 20 minibatch estimates)
    h = np.array(fit.elbo_history)
    assert h[-20:].mean() > h[:20].mean() + 10.0


def test_trained_encoder_beats_the_prior_as_importance_proposal(trained_vae: tuple) -> None:
    # For 64 held-out images and 4 seeds, importance sampling with N = 10 particles
    # from the prior and from the trained encoder, both under the trained model. Both
    # log-ML estimates are biased down (Jensen); the better proposal is less so. The
    # statistic is the per-image mean over seeds of (encoder − prior); its SE is
    # sd / sqrt(64) over images.
    model, encoder, _, fit = trained_vae
    test = shapes(64, 1)
    n, seeds = 10, 4
    prior_est = np.zeros((64, seeds))
    neural_est = np.zeros((64, seeds))
    with use_params(fit.params):
        for j in range(64):
            x = test[j]
            obs = observe_image(x)
            for s in range(seeds):
                prior_est[j, s] = importance_sampling(
                    model, (), obs, n, key=K(1000 + 10 * j + s)
                ).log_ml_estimate.item()
                neural_est[j, s] = importance_sampling(
                    model,
                    (),
                    obs,
                    n,
                    proposal=encoder,
                    proposal_args=(x,),
                    key=K(5000 + 10 * j + s),
                ).log_ml_estimate.item()
    diff = (neural_est - prior_est).mean(axis=1)
    se = diff.std(ddof=1) / math.sqrt(diff.size)
    assert diff.mean() > 4 * se, (diff.mean(), se)
    # and the neural estimates are far less variable across seeds
    assert neural_est.std(axis=1).mean() < 0.25 * prior_est.std(axis=1).mean()
    # IS with the encoder as proposal tightens its own ELBO (E log p̂_N ≥ ELBO, N ≥ 1)
    e = np.array(
        elbo(model, encoder, test, observe=observe_image, key=K(7), n_samples=8, params=fit.params),
        dtype=np.float64,
    )
    gap = neural_est.mean(axis=1) - e
    assert gap.mean() > -5 * gap.std(ddof=1) / math.sqrt(gap.size)


# --------------------------------------------------------------------------- neural SMC
# State-space model x_t ~ N(0.9 x_{t-1}, 1), y_t ~ N(x_t, 0.1). The locally optimal
# proposal p(x_t | x_{t-1}, y_t) is Gaussian with precision 1 + 1/0.1² = 101 and mean
# (0.9 x_{t-1} + 100 y_t)/101; the exact log marginal likelihood comes from a Kalman
# filter (numpy).
A, Q, R = 0.9, 1.0, 0.1
N_PARTICLES = 20  # few particles: the bootstrap degenerates, the neural filter does not
SEEDS = 16


@gen
def ssm_kernel(t, x_prev):
    x = normal(A * x_prev, Q) @ "x"
    normal(x, R) @ "y"
    return x


@gen
def ssm_step(x_prev):
    x = normal(A * x_prev, Q) @ "x"
    normal(x, R) @ "y"


def kalman_log_ml(ys: list[float]) -> float:
    m, p, ll = 0.0, 0.0, 0.0
    for y in ys:
        m, p = A * m, A * A * p + Q * Q
        s = p + R * R
        ll += -0.5 * (math.log(2 * math.pi * s) + (y - m) ** 2 / s)
        gain = p / s
        m, p = m + gain * (y - m), (1 - gain) * p
    return ll


def test_trained_proposal_drives_a_particle_filter() -> None:
    # the proposal's mean is a network of [x_prev, y]; its log sd a free parameter
    mx.random.seed(0)
    net = NeuralNetGF(nn.Linear(2, 1), name="prop")

    @gen
    def step_encoder(d):  # d = [x_prev, y]
        mean = (net(d) @ "net")[0]
        normal(mean, mx.exp(param("log_sd", 0.0))) @ "x"

    rng = np.random.default_rng(0)
    x_prev = rng.normal(scale=2.0, size=2000)
    y = A * x_prev + Q * rng.normal(size=2000) + R * rng.normal(size=2000)
    data = mx.array(np.stack([x_prev, y], 1).astype(np.float32))
    store = ParamStore.initialize(step_encoder, (data[0],))
    assert sorted(store) == ["log_sd", "prop/bias", "prop/weight"]
    fit = train_amortized(
        ssm_step,
        step_encoder,
        data,
        store,
        optim.Adam(0.05),
        observe=lambda d: {"y": d[1]},
        args=lambda d: (d[0],),
        n_steps=300,
        batch_size=128,
        key=K(0),
    )
    # the learnt proposal is the locally optimal one (an optimisation tolerance)
    w, b = np.array(fit.params["prop/weight"])[0], float(fit.params["prop/bias"][0])
    assert np.allclose(w, [A / 101, 100 / 101], atol=0.02) and abs(b) < 0.05
    assert abs(float(fit.params["log_sd"]) - math.log(1 / math.sqrt(101))) < 0.05

    @gen
    def first_proposal(x0, y0):
        mean = (net(mx.stack([x0, y0])) @ "net")[0]
        normal(mean, mx.exp(param("log_sd", 0.0))) @ (0, "x")

    @gen
    def step_proposal(trace, t, yt):
        mean = (net(mx.stack([trace[(t - 1, "x")], yt])) @ "net")[0]
        normal(mean, mx.exp(param("log_sd", 0.0))) @ (t, "x")

    horizon, x, ys = 30, 0.0, []
    for _ in range(horizon):
        x = A * x + Q * rng.normal()
        ys.append(x + R * rng.normal())
    x0 = mx.array(0.0)
    model = Unfold(ssm_kernel)

    def run(neural: bool, seed: int) -> float:
        ks = mx.random.split(K(seed), 2 * horizon)
        obs0 = {(0, "y"): ys[0]}
        prop0 = dict(proposal=first_proposal, proposal_args=(x0, mx.array(ys[0]))) if neural else {}
        st = particle_filter(model, (1, x0), obs0, N_PARTICLES, key=ks[0], **prop0)
        for t in range(1, horizon):
            st = st.resample(key=ks[2 * t])
            prop = (
                dict(proposal=step_proposal, proposal_args=(t, mx.array(ys[t]))) if neural else {}
            )
            st = st.step((t + 1, x0), {(t, "y"): ys[t]}, key=ks[2 * t + 1], **prop)
        return float(st.log_ml_estimate)

    with use_params(fit.params):
        neural = np.array([run(True, s) for s in range(SEEDS)])
    boot = np.array([run(False, s) for s in range(SEEDS)])
    exact = kalman_log_ml(ys)
    # 16 seeds each; SE = sd / sqrt(16). The neural filter's estimate is within 5 SE
    # (plus its Jensen bias, var/2 ≈ 0.01) of the exact value, the bootstrap's far below.
    se_n = neural.std(ddof=1) / math.sqrt(SEEDS)
    se_b = boot.std(ddof=1) / math.sqrt(SEEDS)
    assert abs(neural.mean() - exact) < 5 * se_n + 0.05, (neural.mean(), exact, se_n)
    assert neural.mean() - boot.mean() > 4 * math.hypot(se_n, se_b), (neural, boot)
