"""Algebraic rewrites: every rewritten score equals the direct evaluation (float32
rounding of the terms), with rewrites on and off, eager, batched and in the log density."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from genmlx.core import analyze, choicemap, gen, logdensity, rewrites
from genmlx.core.testing.models import beta, normal

XS = mx.linspace(0, 1, 40)
YS = 0.5 - 1.25 * XS + 2.0 * XS**2 + 0.05 * mx.random.normal((40,), key=mx.random.key(9))
OBS = choicemap({"ys": YS})


@gen
def poly(xs):
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    c = normal(0.0, 1.0) @ "c"
    normal(a + b * xs + c * xs**2, 0.05) @ "ys"


@gen
def poly_sigma(xs):
    w = normal(mx.zeros(3), 1.0) @ "w"
    s = beta(2.0, 2.0) @ "s"  # a latent scale (one number per execution)
    design = mx.stack([mx.ones_like(xs), xs, xs**2], axis=1)
    normal(design @ w, 0.05 + s) @ "ys"


@gen
def nonlinear(xs):
    a = normal(0.0, 1.0) @ "a"
    normal(mx.exp(a * xs), 0.5) @ "ys"


def ref_loglik(a, b, c, xs, ys, sd):
    x, y = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    mu = a[:, None] + b[:, None] * x + c[:, None] * x**2
    return (-0.5 * ((y - mu) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)).sum(1)


def close(got, want, scale):
    """float32 rounding of the terms: ``|got − want| ≤ 1e-5 (|want| + scale)``."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert np.all(np.abs(got - want) <= 1e-5 * (np.abs(want) + scale) + 1e-4), np.abs(
        got - want
    ).max()


def test_affine_gaussian_is_found_and_shown():
    g = analyze(poly, (XS,), OBS)
    text = repr(g)
    assert "rewrite 'ys': affine Gaussian in 'a', 'b', 'c' (p=3, fixed scale)" in text
    assert "rewrite" not in repr(analyze(nonlinear, (XS,), OBS))
    with rewrites.enabled(False):
        assert "[rewrites off]" in repr(analyze(poly, (XS,), OBS))


def test_vgenerate_weights_equal_the_direct_evaluation():
    analyze(poly, (XS,))
    with rewrites.enabled(False):
        tr0, w0 = poly.vgenerate((XS,), OBS, 2000, key=mx.random.key(1))
    tr1, w1 = poly.vgenerate((XS,), OBS, 2000, key=mx.random.key(1))
    np.testing.assert_array_equal(np.asarray(tr0["a"]), np.asarray(tr1["a"]))
    a, b, c = (np.asarray(tr1[k], np.float64) for k in "abc")
    ref = ref_loglik(a, b, c, XS, YS, 0.05)
    scale = float(np.abs(ref).max())
    close(w1, ref, scale)
    close(w0, ref, scale)
    np.testing.assert_allclose(np.asarray(tr1.score), np.asarray(tr0.score), rtol=1e-4, atol=1e-2)


def test_generate_and_assess_use_it_too():
    analyze(poly, (XS,))
    tr, w = poly.generate((XS,), OBS, key=mx.random.key(2))
    a, b, c = (np.asarray([float(tr[k])]) for k in "abc")
    close(w, ref_loglik(a, b, c, XS, YS, 0.05), 1e4)
    cm = tr.get_choices()
    ld1, _ = poly.assess((XS,), cm)
    with rewrites.enabled(False):
        ld0, _ = poly.assess((XS,), cm)
    close(ld1, ld0, 1e4)


def test_other_data_arrays_get_their_own_statistics():
    analyze(poly, (XS,))
    ys2 = YS + 1.0
    tr, w = poly.generate((XS,), choicemap({"ys": ys2}), key=mx.random.key(3))
    a, b, c = (np.asarray([float(tr[k])]) for k in "abc")
    close(w, ref_loglik(a, b, c, XS, ys2, 0.05), 1e4)


def test_latent_scale_value_and_gradient_in_the_log_density():
    obs = choicemap({"ys": YS})
    ld1 = logdensity(poly_sigma, (XS,), obs)
    assert "scalar scale" in repr(analyze(poly_sigma, (XS,), obs))
    with rewrites.enabled(False):
        ld0 = logdensity(poly_sigma, (XS,), obs)
        y = mx.random.normal((9, 4), key=mx.random.key(4))
        v0, g0 = ld0.value_and_grad(y)
    v1, g1 = ld1.value_and_grad(y)
    close(v1, v0, float(mx.max(mx.abs(v0)).item()))
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-3, atol=1e-2)


def test_invalid_scale_gives_minus_infinity():
    @gen
    def bad(xs):
        a = normal(0.0, 1.0) @ "a"
        s = normal(0.0, 1.0) @ "s"
        normal(a * xs, s) @ "ys"  # s may be negative: -inf there, as directly

    analyze(bad, (XS,))
    from genmlx.core import config

    cm = choicemap({"a": 0.1, "s": -0.5, "ys": YS})
    with config.score_checks(False):
        ld1, _ = bad.assess((XS,), cm)
        with rewrites.enabled(False):
            ld0, _ = bad.assess((XS,), cm)
    # the distribution's own answer for an invalid scale (this reference normal: NaN)
    assert str(float(ld1)) == str(float(ld0))


def test_inside_a_users_compile(monkeypatch):
    """Captured (concrete) data: the rewrite applies inside ``mx.compile``; data passed
    as compiled inputs are symbolic, so the direct evaluation runs — both agree."""
    analyze(poly, (XS,))
    calls = []
    real = rewrites.score
    monkeypatch.setattr(rewrites, "score", lambda *a, **k: calls.append(1) or real(*a, **k))

    @mx.compile
    def captured(key):
        return poly.vgenerate((XS,), OBS, 500, key=key)[1]

    @mx.compile
    def symbolic(key, ys):
        return poly.vgenerate((XS,), choicemap({"ys": ys}), 500, key=key)[1]

    w1 = captured(mx.random.key(5))
    assert calls, "the rewrite was not applied inside mx.compile with captured data"
    w2 = symbolic(mx.random.key(5), YS)
    with rewrites.enabled(False):
        w0 = poly.vgenerate((XS,), OBS, 500, key=mx.random.key(5))[1]
    scale = float(mx.max(mx.abs(w0)).item())
    close(w1, w0, scale)
    close(w2, w0, scale)


def test_prepare_is_not_stale_after_the_model_is_analysed() -> None:
    """A call before the analysis finds nothing to rewrite; the same call after it must
    see the rewrite (the per-call memo keeps only real answers)."""
    from genmlx.core import analyze, choicemap, gen, rewrites
    from genmlx.core.testing.models import normal as tnormal

    @gen
    def fresh(xs):
        a = tnormal(0.0, 1.0) @ "a"
        tnormal(a * xs, 0.5) @ "ys"

    xs = mx.linspace(0, 1, 9)
    obs = choicemap({"ys": xs})
    assert rewrites.prepare(fresh, (xs,), obs) is None  # not analysed yet
    analyze(fresh, (xs,), obs)
    assert rewrites.prepare(fresh, (xs,), obs) is not None
    assert rewrites.prepare(fresh, (xs,), obs) is rewrites.prepare(fresh, (xs,), obs)


_GX = mx.linspace(0, 1, 12)


def test_rebinding_a_global_array_is_noticed() -> None:
    """The rewrites' data constants come from the body; a global array it reads that is
    rebound must give the new model's weights (not the cached constants)."""
    global _GX
    from genmlx.core import choicemap, gen, rewrites
    from genmlx.core.testing.models import normal as tnormal

    @gen
    def m():
        a = tnormal(0.0, 1.0) @ "a"
        tnormal(a * _GX, 0.1) @ "ys"

    obs = choicemap({"ys": mx.linspace(0, 1, 12)})
    key = mx.random.key(0)
    for _ in range(3):
        m.vgenerate((), obs, 4, key=key)
    assert rewrites.prepare(m, (), obs) is not None  # the rewrite is in use
    old = _GX
    try:
        _GX = mx.linspace(0, 2, 12)
        _, w1 = m.vgenerate((), obs, 4, key=key)
        with rewrites.enabled(False):
            _, w2 = m.vgenerate((), obs, 4, key=key)
        _GX = old
        _, w3 = m.vgenerate((), obs, 4, key=key)
    finally:
        _GX = old
    assert bool(mx.allclose(w1, w2, rtol=1e-4, atol=1e-2))
    assert not bool(mx.allclose(w1, w3, rtol=1e-4, atol=1e-2))
