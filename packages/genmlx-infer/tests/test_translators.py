"""Trace translators: exact weights of changes of variables (Jacobians found
automatically), coarse-to-fine SMC against the exact evidence of a linear-Gaussian
model, the extending translator against the particle filter's step, an involutive MCMC
move that leaves the exact posterior invariant, and the errors of malformed transforms.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from genmlx.core import choicemap, gen, select
from genmlx.dists import normal
from genmlx.infer import (
    DeterministicTraceTranslator,
    GeneralTraceTranslator,
    SimpleExtendingTraceTranslator,
    SymmetricTraceTranslator,
    conjugate_posterior,
    mh,
    particle_filter,
    translate_particles,
    translator_mh,
)


@gen
def p_old():
    normal(0.0, 1.0) @ "x"
    normal(0.0, 1.0) @ "u"


@gen
def p_new():
    normal(0.0, 2.0) @ "a"
    normal(1.0, 0.5) @ "b"


def rotate(io):
    x, u = io.read_old("x"), io.read_old("u")
    io.write_new("a", 1.5 * x + 0.5 * u)
    io.write_new("b", 1.0 + x - u)


def test_deterministic_translator_weight_is_the_change_of_variables():
    tr = p_old.simulate((), key=mx.random.key(0))
    new, w = DeterministicTraceTranslator(p_new, (), None, rotate)(tr, key=mx.random.key(1))
    x, u = float(tr["x"]), float(tr["u"])
    a, b = 1.5 * x + 0.5 * u, 1.0 + x - u
    assert float(new["a"]) == pytest.approx(a) and float(new["b"]) == pytest.approx(b)
    det = abs(1.5 * -1.0 - 0.5 * 1.0)
    want = (
        stats.norm.logpdf(a, 0, 2)
        + stats.norm.logpdf(b, 1, 0.5)
        - stats.norm.logpdf(x)
        - stats.norm.logpdf(u)
        + math.log(det)
    )
    assert float(w) == pytest.approx(want, abs=1e-4)
    # batched: every particle on its own, the same numbers
    trb = p_old.vsimulate((), 6, key=mx.random.key(2))
    newb, wb = DeterministicTraceTranslator(p_new, (), None, rotate)(trb, key=mx.random.key(3))
    assert wb.shape == (6,) and newb.batch_shape == (6,)
    for i in (0, 5):
        xi, ui = float(trb["x"][i]), float(trb["u"][i])
        ai, bi = 1.5 * xi + 0.5 * ui, 1.0 + xi - ui
        wi = (
            stats.norm.logpdf(ai, 0, 2)
            + stats.norm.logpdf(bi, 1, 0.5)
            - stats.norm.logpdf(xi)
            - stats.norm.logpdf(ui)
            + math.log(det)
        )
        assert float(wb[i]) == pytest.approx(wi, abs=1e-4)


def test_translated_weights_estimate_the_new_normaliser():
    # E_old[e^w] = 1 when both models are normalised: importance sampling through f
    trb = p_old.vsimulate((), 20000, key=mx.random.key(4))
    _, w = DeterministicTraceTranslator(p_new, (), None, rotate)(trb, key=mx.random.key(5))
    e = np.exp(np.asarray(w, dtype=np.float64))
    assert abs(e.mean() - 1.0) < 5 * e.std() / math.sqrt(len(e))


def test_malformed_transforms_are_refused():
    def drops(io):
        io.write_new("a", io.read_old("x"))
        io.write_new("b", io.read_old("x"))

    def too_few(io):
        io.write_new("a", io.read_old("x") + io.read_old("u"))

    tr = p_old.simulate((), key=mx.random.key(0))
    with pytest.raises(ValueError, match="bijection"):
        DeterministicTraceTranslator(p_new, (), None, too_few)(tr, key=mx.random.key(1))
    with pytest.raises(ValueError, match="read twice"):
        DeterministicTraceTranslator(p_new, (), None, drops)(tr, key=mx.random.key(1))

    def half(io):
        io.write_new("a", io.read_old("x"))
        io.read_old("u")

    with pytest.raises(ValueError):
        DeterministicTraceTranslator(p_new, (), None, half)(tr, key=mx.random.key(1))


# ---------------------------------------------------------------- coarse to fine
XS = mx.linspace(0.0, 0.999, 16)
YS = mx.array([-1.2, -0.9, -1.1, -0.7, 0.6, 0.3, 0.5, 0.8, 1.4, 1.7, 1.6, 1.2, 0.1, 0.3, -0.1, 0.2])


@gen
def piecewise(k, xs):
    n = 2**k
    vals = normal(mx.zeros(n), 1.0) @ "vals"
    normal(vals[mx.floor(xs * n).astype(mx.int32)], 0.3) @ "ys"


@gen
def split_noise(tr, k):
    normal(mx.zeros(2**k), 0.5) @ "u"


def split(io):
    v, u = io.read_old("vals"), io.read_fwd("u")
    io.write_new("vals", mx.stack([v + u, v - u], axis=-1).reshape(-1))


def _coarse_to_fine(n, key_int):
    obs = {"ys": YS}
    st = particle_filter(piecewise, (0, XS), obs, n, key=mx.random.key(key_int))
    for k in range(3):
        st = st.resample(key=mx.random.key(100 * key_int + k))
        for r in range(3):
            st = st.rejuvenate(mh, select("vals"), key=mx.random.key(1000 * key_int + 10 * k + r))
        tt = GeneralTraceTranslator(piecewise, (k + 1, XS), obs, split_noise, (k,), None, (), split)
        st = translate_particles(st, tt, key=mx.random.key(5000 * key_int + k))
    return st


def test_coarse_to_fine_smc_estimates_the_fine_evidence():
    exact = float(conjugate_posterior(piecewise, (3, XS), {"ys": YS}).log_ml)
    ests = np.array([float(_coarse_to_fine(500, r).log_ml_estimate) for r in range(6)])
    st = _coarse_to_fine(500, 0)
    assert st.traces.args[0] == 3 and st.traces["vals"].shape == (500, 8)
    # unbiased on the linear scale
    z = np.exp(ests - exact)
    assert abs(z.mean() - 1.0) < 5 * z.std(ddof=1) / math.sqrt(len(z)) + 0.05


def test_simple_extending_translator_is_the_particle_filter_step():
    @gen
    def growing(t):
        x = normal(0.0, 1.0) @ "x"
        for i in range(t):
            normal(x, 1.0) @ ("y", i)

    st = particle_filter(growing, (1,), {("y", 0): 0.5}, 64, key=mx.random.key(0))
    a = st.step((2,), {("y", 1): 0.7}, key=mx.random.key(1))
    tt = SimpleExtendingTraceTranslator((2,), None, {("y", 1): 0.7})
    b = translate_particles(st, tt, key=mx.random.key(1))
    np.testing.assert_allclose(np.asarray(a.log_weights), np.asarray(b.log_weights), atol=1e-5)


# ---------------------------------------------------------------- symmetric translator in MCMC
@gen
def posterior_model():
    mu = normal(0.0, 1.0) @ "mu"
    normal(mu, 1.0) @ "y"


@gen
def scale_aux(tr):
    normal(0.0, 0.5) @ "s"


def scale_move(io):  # (mu, s) -> (mu e^s, -s): an involution with |det J| = e^s
    mu, s = io.read_old("mu"), io.read_fwd("s")
    io.write_new("mu", mu * mx.exp(s))
    io.write_bwd("s", -s)


def test_symmetric_translator_mh_keeps_the_exact_posterior():
    n = 4000
    # start at exact posterior draws N(y/2, 1/2) and move: the law must stay put
    mu0 = 0.9 + math.sqrt(0.5) * np.asarray(mx.random.normal((n,), key=mx.random.key(0)))
    cm = choicemap(
        {"mu": mx.array(mu0, dtype=mx.float32), "y": mx.full((n,), 1.8)}
    ).with_batch_shape((n,))
    tr = posterior_model.vgenerate((), cm, n, key=mx.random.key(1)).trace
    move = SymmetricTraceTranslator(scale_aux, (), scale_move)
    acc_total = 0.0
    for i in range(5):
        tr, info = translator_mh(tr, move, key=mx.random.key(10 + i))
        acc_total += float(mx.mean(info.accepted.astype(mx.float32)))
    assert 0.05 < acc_total / 5 < 0.99
    mu = np.asarray(tr["mu"], dtype=np.float64)
    assert abs(mu.mean() - 0.9) < 5 * math.sqrt(0.5 / n) * 2
    assert mu.var() == pytest.approx(0.5, rel=0.1)
    # the weight of one move is the involutive-MCMC log ratio
    one = posterior_model.generate((), {"mu": 0.4, "y": 1.8}, key=mx.random.key(2)).trace
    new, w = move(one, key=mx.random.key(3))
    s = math.log(float(new["mu"]) / 0.4)
    want = (
        stats.norm.logpdf(0.4 * math.exp(s))
        + stats.norm.logpdf(1.8, 0.4 * math.exp(s))
        - stats.norm.logpdf(0.4)
        - stats.norm.logpdf(1.8, 0.4)
        + s
    )  # q(-s) = q(s)
    assert float(w) == pytest.approx(want, abs=1e-4)
