"""genmlx.dists.special against scipy.special, on wide grids including extreme arguments.

Each function is compared at float32 inputs with the float64 scipy value at the same
(rounded) input, and its ``mx.grad`` with the analytic derivative. Tolerances are a few
float32 ulps (eps = 6e-8) relative to max(|reference|, floor), where the floor is set
where the function crosses zero (there absolute error is what float32 can deliver).
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
import scipy.special as sp

from genmlx.dists import special as S

LOG_2PI_2 = 0.5 * math.log(2.0 * math.pi)


def f32(x: object) -> np.ndarray:
    """Values rounded to float32, as float64 (the reference is evaluated there)."""
    return np.asarray(np.asarray(x, dtype=np.float32), dtype=np.float64)


def ev(fn, *xs: np.ndarray) -> np.ndarray:
    return np.asarray(fn(*[mx.array(x.astype(np.float32)) for x in xs]), dtype=np.float64)


def grad(fn, *xs: np.ndarray, argnum: int = 0) -> np.ndarray:
    g = mx.vmap(mx.grad(fn, argnums=argnum))(*[mx.array(x.astype(np.float32)) for x in xs])
    return np.asarray(g, dtype=np.float64)


def assert_rel(got: np.ndarray, ref: np.ndarray, rtol: float, floor: float = 0.0) -> None:
    """|got - ref| <= rtol * max(|ref|, floor) where ref is finite; equal elsewhere."""
    got, ref = np.broadcast_arrays(np.asarray(got), np.asarray(ref))
    fin = np.isfinite(ref)
    assert np.all(np.isfinite(got[fin])), "non-finite result where the reference is finite"
    same = (got[~fin] == ref[~fin]) | (np.isnan(got[~fin]) & np.isnan(ref[~fin]))
    assert np.all(same), (got[~fin][~same][:5], ref[~fin][~same][:5])
    err = np.abs(got[fin] - ref[fin]) / np.maximum(np.abs(ref[fin]), max(floor, 1e-300))
    worst = int(np.argmax(err)) if err.size else 0
    assert err.size == 0 or err[worst] <= rtol, (
        f"max rel err {err[worst]:.3g} > {rtol:g}: got {got[fin][worst]!r}, ref {ref[fin][worst]!r}"
    )


POS = f32(
    np.concatenate(
        [
            np.geomspace(1e-30, 1e30, 1500),
            np.linspace(0.01, 10.0, 1500),
            np.linspace(0.999, 1.001, 101),  # zeros of lgamma
            np.linspace(1.999, 2.001, 101),
            np.linspace(1.3, 1.6, 301),  # zero of digamma
        ]
    )
)
NEG = f32(-np.concatenate([np.linspace(0.013, 20.0, 1500), np.geomspace(1e-20, 1e4, 300)]))
NEG = NEG[NEG != np.round(NEG)]  # poles tested separately


# ----------------------------------------------------------------------- gamma family
def test_lgamma_positive() -> None:
    assert_rel(ev(S.lgamma, POS), sp.gammaln(POS), 1e-6)


def test_lgamma_reflection_branch() -> None:
    # near the zeros of log|Gamma| on the negative axis only absolute accuracy is possible
    assert_rel(ev(S.lgamma, NEG), sp.gammaln(NEG), 1.5e-6, floor=1.0)


def test_lgamma_special_values() -> None:
    x = np.array([1.0, 2.0, 0.0, -1.0, -2.0, -30.0, np.inf, 1e38])
    got = ev(S.lgamma, x)
    assert got[0] == 0.0 and got[1] == 0.0
    assert np.all(got[2:] == np.inf)
    assert np.isnan(ev(S.lgamma, np.array([np.nan])))[0]
    # integer and Python-number inputs
    assert abs(float(S.lgamma(5)) - math.log(24.0)) < 1e-6
    assert abs(float(S.lgamma(mx.array([5]))[0]) - math.log(24.0)) < 1e-6


def test_digamma() -> None:
    assert_rel(ev(S.digamma, POS), sp.digamma(POS), 1e-6)
    assert_rel(ev(S.digamma, NEG), sp.digamma(NEG), 1.5e-6, floor=1.0)
    # full relative accuracy around the positive root 1.4616...
    x = f32(1.4616321449683623 + np.linspace(-1e-3, 1e-3, 201))
    assert_rel(ev(S.digamma, x), sp.digamma(x), 1e-5)
    got = ev(S.digamma, np.array([0.0, -1.0, -5.0]))
    assert got[0] == -np.inf and np.all(np.isnan(got[1:]))


def test_grad_lgamma_is_digamma() -> None:
    x = np.concatenate([POS[(POS > 1e-6) & (POS < 1e6)], NEG[NEG > -20]])
    g = grad(S.lgamma, x)
    assert_rel(g, sp.digamma(x), 1.5e-6, floor=1.0)
    # and agrees with our digamma
    assert_rel(g, ev(S.digamma, x), 1.5e-6, floor=1.0)


def test_grad_digamma_is_trigamma() -> None:
    x = np.concatenate([POS[(POS > 1e-6) & (POS < 1e6)], NEG[NEG > -20]])
    ref = sp.polygamma(1, x)
    ok = np.abs(ref) < 3e38  # trigamma(-1e-20) = 1e40 overflows float32
    assert_rel(grad(S.digamma, x[ok]), ref[ok], 1.5e-6)


VALS = f32(np.concatenate([np.geomspace(1e-6, 1e10, 40), np.linspace(0.1, 20.0, 25)]))


def test_log_beta() -> None:
    a, b = (g.ravel() for g in np.meshgrid(VALS, VALS))
    assert_rel(ev(S.log_beta, a, b), sp.betaln(a, b), 1.5e-6, floor=1.0)
    # the cancellation cases of the naive formula
    got = ev(S.log_beta, np.array([1.0, 1e6, 0.5]), np.array([1e7, 1e6, 1e30]))
    ref = sp.betaln([1.0, 1e6, 0.5], [1e7, 1e6, 1e30])
    assert_rel(got, ref, 1e-6)
    assert float(S.log_beta(1.0, math.inf)) == -math.inf


def test_log_beta_grad() -> None:
    a, b = (g.ravel() for g in np.meshgrid(VALS, VALS))
    ga = grad(S.log_beta, a, b, argnum=0)
    gb = grad(S.log_beta, a, b, argnum=1)
    # psi(a) - psi(a + b) cancels when b << a: absolute error relative to |psi(a)|
    scale = np.maximum(np.abs(sp.digamma(a)), 1.0)
    assert np.all(np.abs(ga - (sp.digamma(a) - sp.digamma(a + b))) <= 2e-6 * scale)
    scale = np.maximum(np.abs(sp.digamma(b)), 1.0)
    assert np.all(np.abs(gb - (sp.digamma(b) - sp.digamma(a + b))) <= 2e-6 * scale)
    # at a == b (where minimum/maximum would split the gradient)
    g = grad(S.log_beta, np.array([2.0]), np.array([2.0]))
    assert_rel(g, sp.digamma(2.0) - sp.digamma(4.0), 1e-6)


def test_lbinom() -> None:
    n = f32(np.concatenate([np.arange(0, 40), np.round(np.geomspace(40, 1e7, 25))]))
    nn, kk = (g.ravel() for g in np.meshgrid(n, n))
    got = ev(S.lbinom, nn, kk)
    inside = kk <= nn
    ref = sp.gammaln(nn + 1) - sp.gammaln(kk + 1) - sp.gammaln(nn - kk + 1)
    assert_rel(got[inside], ref[inside], 1e-6, floor=1.0)
    assert np.all(got[~inside] == -np.inf)
    assert np.all(ev(S.lbinom, np.array([7.0, 7.0, 1e7]), np.array([0.0, 7.0, 1e7])) == 0.0)
    assert float(S.lbinom(5.0, -1.0)) == -math.inf


# ---------------------------------------------------------------------------- Bessel
XB = f32(np.concatenate([np.geomspace(1e-8, 1e30, 1500), np.linspace(0.0, 40.0, 1601)]))
XB = np.concatenate([-XB, XB])


def _log_i0_ref(x: np.ndarray) -> np.ndarray:
    out = np.log(sp.i0e(x)) + np.abs(x)
    small = np.abs(x) < 1.0  # log(i0e) + |x| cancels: use the series there
    u = (x[small] / 2.0) ** 2
    acc, term = np.zeros_like(u), np.ones_like(u)
    for k in range(1, 20):
        term = term * u / k**2
        acc += term
    out[small] = np.log1p(acc)
    return out


def test_log_i0_and_log_i0e() -> None:
    ref = _log_i0_ref(XB)
    assert_rel(ev(S.log_i0, XB), ref, 1e-6, floor=1e-30)
    # log_i0e = log_i0 - |x|, computed without cancellation (absolute accuracy ~1e-7)
    ref_e = np.log(sp.i0e(XB))
    assert_rel(ev(S.log_i0e, XB), ref_e, 5e-7, floor=1.0)
    big = np.array([1e4, 1e8, 1e30])
    assert_rel(ev(S.log_i0e, big), np.log(sp.i0e(big)), 1e-6)
    assert np.all(np.isfinite(ev(S.log_i0, big)))


def test_log_i1_and_log_i1e() -> None:
    x = XB[XB != 0.0]
    ref = np.log(np.abs(sp.i1e(x))) + np.abs(x)
    assert_rel(ev(S.log_i1, x), ref, 1e-6, floor=1.0)
    assert_rel(ev(S.log_i1e, x), np.log(np.abs(sp.i1e(x))), 1e-6, floor=1.0)
    assert float(S.log_i1(0.0)) == -math.inf


def test_bessel_grads() -> None:
    x = XB[(np.abs(XB) < 1e6) & (XB != 0.0)]
    assert_rel(grad(S.log_i0, x), sp.i1e(x) / sp.i0e(x), 1e-6)
    xp = x[x > 1e-3]
    assert_rel(grad(S.log_i1, xp), sp.i0e(xp) / sp.i1e(xp) - 1.0 / xp, 1e-6)
    assert float(mx.grad(S.log_i0)(mx.array(0.0))) == 0.0


# ------------------------------------------------------------ error function, normal
XN = f32(
    np.concatenate(
        [
            np.linspace(-40.0, 40.0, 4001),
            np.geomspace(1e-30, 1e4, 800),
            -np.geomspace(1e-30, 1e4, 800),
        ]
    )
)
TINY = np.finfo(np.float32).tiny


def _flush(r: np.ndarray) -> np.ndarray:
    """The reference with float32 denormals flushed to 0 (MLX's CPU flushes them)."""
    return np.where(np.abs(r) < TINY, 0.0, r)


def tail_rtol(x: np.ndarray, base: float) -> np.ndarray:
    """Phi(x) is conditioned like x^2: a 1-ulp change of x moves it by eps x^2 relative."""
    return base * (1.0 + 0.5 * x * x)


def test_erf_erfc() -> None:
    assert_rel(ev(S.erf, XN), sp.erf(XN), 3e-7)
    # mx.erf loses relative accuracy near 0 in float32; ours does not
    x = f32(np.geomspace(1e-30, 1e-2, 50))
    assert_rel(ev(S.erf, x), sp.erf(x), 2e-7)
    ref = _flush(sp.erfc(XN))
    got = ev(S.erfc, XN)
    ok = np.abs(got - ref) <= tail_rtol(np.sqrt(2.0) * XN, 3e-7) * np.abs(ref) + 2 * TINY
    assert np.all(ok)


def test_ndtr_and_log_ndtr() -> None:
    ref = _flush(sp.ndtr(XN))
    got = ev(S.ndtr, XN)
    assert np.all(np.abs(got - ref) <= tail_rtol(XN, 3e-7) * np.abs(ref) + 2 * TINY)
    lref = sp.log_ndtr(XN)
    lgot = ev(S.log_ndtr, XN)
    # x < 0: relative accuracy of the log; x > 0: log Phi = -Phi(-x), conditioned as ndtr
    neg = XN < 0
    assert_rel(lgot[neg], lref[neg], 3e-7)
    pos = ~neg
    ok = np.abs(lgot[pos] - lref[pos]) <= tail_rtol(XN[pos], 3e-7) * np.abs(lref[pos]) + 2 * TINY
    assert np.all(ok)


def test_log_ndtr_far_tail() -> None:
    x = np.array([-30.0, -100.0, -1e3, -1e4, -1e6])
    assert_rel(ev(S.log_ndtr, x), sp.log_ndtr(x), 2e-7)
    assert float(S.log_ndtr(-math.inf)) == -math.inf
    assert float(S.log_ndtr(math.inf)) == 0.0


def test_normal_cdf_grads() -> None:
    x = XN[np.abs(XN) < 1e3]
    pdf = np.exp(-0.5 * x * x - LOG_2PI_2)
    g = grad(S.ndtr, x)
    # (+1e-36: results near float32's smallest normal go through denormal intermediates)
    assert np.all(np.abs(g - pdf) <= tail_rtol(x, 5e-7) * pdf + 1e-36)
    gl = grad(S.log_ndtr, x)
    ref = np.exp(-0.5 * x * x - LOG_2PI_2 - sp.log_ndtr(x))
    assert np.all(np.abs(gl - ref) <= tail_rtol(x, 5e-7) * ref + 1e-36)
    ge = grad(S.erf, x)
    ref = 2.0 / math.sqrt(math.pi) * np.exp(-x * x)
    assert np.all(np.abs(ge - ref) <= tail_rtol(np.sqrt(2.0) * x, 5e-7) * ref + 1e-36)
    # no NaN gradients at the clamps / infinities
    for fn in (S.ndtr, S.log_ndtr, S.erf, S.erfc):
        g = grad(fn, np.array([math.inf, -math.inf, 0.0]))
        assert not np.any(np.isnan(g)), fn


P = f32(
    np.concatenate(
        [
            np.geomspace(1e-37, 0.5, 1500),
            1.0 - np.geomspace(6e-8, 0.5, 800),
            np.linspace(0, 1, 2001),
        ]
    )
)


def test_ndtri() -> None:
    assert_rel(ev(S.ndtri, P), sp.ndtri(P), 5e-7)
    got = ev(S.ndtri, np.array([0.0, 1.0, -0.1, 1.1]))
    assert got[0] == -np.inf and got[1] == np.inf and np.all(np.isnan(got[2:]))
    # round trip through ndtr
    x = f32(np.linspace(-8, 8, 161))
    assert_rel(ev(lambda t: S.ndtri(S.ndtr(t)), x[x < 0]), x[x < 0], 2e-6)


def test_ndtri_exp() -> None:
    y = f32(np.concatenate([-np.geomspace(1e-30, 1e30, 2000), [0.0, -np.inf]]))
    assert_rel(ev(S.ndtri_exp, y), sp.ndtri_exp(y), 5e-7)
    assert np.isnan(float(S.ndtri_exp(0.5)))
    # inverse of log_ndtr in the far tail
    x = np.array([-10.0, -40.0, -300.0, -1e4])
    assert_rel(ev(lambda t: S.ndtri_exp(S.log_ndtr(t)), x), x, 1e-6)


def test_ndtri_grads() -> None:
    p = P[(P > 0) & (P < 1)]
    x = sp.ndtri(p)
    assert_rel(grad(S.ndtri, p), np.exp(0.5 * x * x + LOG_2PI_2), 2e-6)
    y = f32(-np.geomspace(1e-6, 1e6, 1000))
    x = sp.ndtri_exp(y)
    assert_rel(grad(S.ndtri_exp, y), np.exp(y + 0.5 * x * x + LOG_2PI_2), 2e-6)


def _lncd_ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty_like(a)
    with np.errstate(all="ignore"):
        for i, (x, y) in enumerate(zip(a, b)):
            if x >= 0 or y <= 0:  # one tail: log-space difference
                hi, lo = (
                    (sp.log_ndtr(-x), sp.log_ndtr(-y))
                    if x >= 0
                    else (
                        sp.log_ndtr(y),
                        sp.log_ndtr(x),
                    )
                )
                out[i] = -np.inf if hi == -np.inf else hi + np.log(-np.expm1(lo - hi))
            else:
                out[i] = np.log(0.5 * (sp.erf(y / math.sqrt(2)) - sp.erf(x / math.sqrt(2))))
    return out


def _lncd_grid() -> tuple[np.ndarray, np.ndarray]:
    pts = np.concatenate(
        [[-np.inf], -np.geomspace(1e-4, 60, 30), [0.0], np.geomspace(1e-4, 60, 30), [np.inf]]
    )
    aa, bb = (g.ravel() for g in np.meshgrid(pts, pts))
    keep = aa < bb
    a, b = f32(aa[keep]), f32(bb[keep])
    c = f32(np.linspace(-40.0, 40.0, 161))
    for w in (1e-5, 1e-3, 0.1):  # narrow intervals, relative width w
        a = np.concatenate([a, c])
        b = np.concatenate([b, f32(c + w * np.maximum(1.0, np.abs(c)))])
    return a, b


def test_log_normal_cdf_diff() -> None:
    a, b = _lncd_grid()
    assert_rel(ev(S.log_normal_cdf_diff, a, b), _lncd_ref(a, b), 5e-7, floor=1.0)
    got = ev(
        S.log_normal_cdf_diff, np.array([8.0, -41.0, 3.0, 2.0]), np.array([9.0, -40.0, 3.0, 1.0])
    )
    assert abs(got[0] - (-35.01361859343716)) < 1e-5
    assert abs(got[1] - (-804.6084420137539)) < 1e-4
    assert got[2] == -np.inf and np.isnan(got[3])


def test_log_normal_cdf_diff_grads() -> None:
    a, b = _lncd_grid()
    ref = _lncd_ref(a, b)
    ga = grad(S.log_normal_cdf_diff, a, b, argnum=0)
    gb = grad(S.log_normal_cdf_diff, a, b, argnum=1)
    with np.errstate(all="ignore"):
        ra = np.where(np.isinf(a), 0.0, -np.exp(-0.5 * a * a - LOG_2PI_2 - ref))
        rb = np.where(np.isinf(b), 0.0, np.exp(-0.5 * b * b - LOG_2PI_2 - ref))
    # the derivative is phi(a)/(Phi(b) - Phi(a)); tolerance 1e-5 relative to max(|ref|, 1e-3)
    assert_rel(ga, ra, 1e-5, floor=1e-3)
    assert_rel(gb, rb, 1e-5, floor=1e-3)


def test_log_normal_cdf_diff_scaled() -> None:
    a, b = _lncd_grid()
    m = np.where(a >= 0, a, np.where(b <= 0, b, 0.0))
    with np.errstate(all="ignore"):
        ref = _lncd_ref(a, b) + np.where(np.isinf(m), 0.0, 0.5 * m * m)
    ok = np.isfinite(m)
    assert_rel(ev(S.log_normal_cdf_diff_scaled, a[ok], b[ok]), ref[ok], 5e-7, floor=1.0)
    # no large terms: log(Phi(-u)) + u^2/2 ~ -log(u sqrt(2 pi)) even where log Phi underflows
    u = np.array([10.0, 1e3, 1e6])
    got = ev(S.log_normal_cdf_diff_scaled, u, np.full(3, np.inf))
    ref = -np.log(u * math.sqrt(2 * math.pi)) + np.log1p(-1 / u**2 + 3 / u**4 - 15 / u**6)
    ref[0] = sp.log_ndtr(-10.0) + 50.0  # the asymptotic series is not accurate enough at 10
    assert_rel(got, ref, 1e-6)


# ------------------------------------------------------------------ log-space helpers
def test_log1mexp() -> None:
    x = f32(np.concatenate([np.geomspace(1e-30, 80, 1000), -np.geomspace(1e-30, 80, 100)]))
    a = np.abs(x)
    with np.errstate(divide="ignore"):
        ref = np.where(a < 0.69, np.log(-np.expm1(-a)), np.log1p(-np.exp(-a)))
    # for large |x| the value -exp(-|x|) is conditioned like exp: relative error |x| eps
    got = ev(S.log1mexp, x)
    ref = _flush(ref)
    assert np.all(np.abs(got - ref) <= 2e-7 * (1.0 + a) * np.abs(ref) + 2 * TINY)
    assert float(S.log1mexp(0.0)) == -math.inf
    xp = x[x > 0]
    g, ref = grad(S.log1mexp, xp), _flush(1.0 / np.expm1(xp))
    assert np.all(np.abs(g - ref) <= 3e-7 * (1.0 + xp) * np.abs(ref) + 2 * TINY)


def test_log_diff_exp() -> None:
    a = np.array([0.0, 1.0, -np.inf, 5.0, np.inf, 2.0, 100.0, -200.0])
    b = np.array([-1.0, 1.0, -np.inf, -np.inf, 3.0, 3.0, 99.0, -200.5])
    got = ev(S.log_diff_exp, a, b)
    with np.errstate(all="ignore"):
        ref = a + np.log(-np.expm1(b - a))
    assert_rel(got[[0, 6, 7]], ref[[0, 6, 7]], 2e-7)
    assert got[1] == -np.inf and got[2] == -np.inf and got[3] == 5.0 and got[4] == np.inf
    assert np.isnan(got[5])
    g = grad(S.log_diff_exp, np.array([0.0]), np.array([-1.0]))
    assert_rel(g, 1.0 / (1.0 - math.exp(-1.0)), 1e-6)


def test_xlogy_xlog1py() -> None:
    x = np.array([0.0, 0.0, 0.0, 2.0, 3.0, 0.0])
    y = np.array([0.0, 3.0, -1.0, 0.0, 0.5, np.inf])
    assert_rel(ev(S.xlogy, x, y), sp.xlogy(x, y), 1e-7)
    x1 = np.array([0.0, 0.0, 2.0, 3.0])
    y1 = np.array([-1.0, 3.0, -1.0, 1e-8])
    assert_rel(ev(S.xlog1py, x1, y1), sp.xlog1py(x1, y1), 1e-7)
    # gradients are finite at x = 0 (no NaN through the where)
    gx = grad(S.xlogy, np.array([0.0, 0.0, 2.0]), np.array([0.0, 2.0, 2.0]))
    assert np.all(np.isfinite(gx)) and abs(gx[1] - math.log(2.0)) < 1e-6
    gy = grad(S.xlogy, np.array([0.0, 2.0]), np.array([0.0, 2.0]), argnum=1)
    assert np.all(np.isfinite(gy)) and abs(gy[1] - 1.0) < 1e-6
    g1 = grad(S.xlog1py, np.array([0.0, 2.0]), np.array([-1.0, 1.0]))
    assert np.all(np.isfinite(g1)) and abs(g1[1] - math.log(2.0)) < 1e-6


# --------------------------------------------------------------------- transformations
@pytest.mark.parametrize(
    "name",
    ["lgamma", "digamma", "log_i0", "log_i0e", "log_i1", "erf", "erfc", "ndtr", "log_ndtr"],
)
def test_compile_and_vmap(name: str) -> None:
    fn = getattr(S, name)
    x = mx.array(np.linspace(-30.0, 30.0, 201).astype(np.float32))
    eager = np.asarray(fn(x))
    np.testing.assert_allclose(np.asarray(mx.compile(fn)(x)), eager, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(np.asarray(mx.vmap(fn)(x)), eager, rtol=1e-6, equal_nan=True)
    g = np.asarray(mx.compile(mx.grad(lambda t: mx.sum(fn(t))))(x))
    assert g.shape == (201,)


@pytest.mark.parametrize(
    "name", ["log_beta", "lbinom", "log_normal_cdf_diff", "log_diff_exp", "xlogy", "xlog1py"]
)
def test_two_argument_vmap_with_one_unbatched_argument(name: str) -> None:
    """vmap over one argument with the other fixed (MLX 0.32's vmap of ``&``/``|``
    drops the batch axis when the first operand is unbatched; the functions avoid it)."""
    fn = getattr(S, name)
    fixed = mx.array([0.5, 2.0, 3.0])
    xs = mx.array([[1.0, 2.5, 4.0], [3.0, 4.0, 5.0]])
    for f in (lambda x: fn(fixed, x), lambda x: fn(x, fixed)):
        out = mx.vmap(f)(xs)
        assert out.shape == (2, 3)
        expect = np.stack([np.asarray(f(xs[i])) for i in range(2)])
        np.testing.assert_allclose(np.asarray(out), expect, rtol=1e-6, equal_nan=True)


def test_broadcasting_and_dtypes() -> None:
    a = mx.ones((3, 1))
    b = mx.ones((1, 4))
    assert S.log_beta(a, b).shape == (3, 4)
    assert S.log_normal_cdf_diff(mx.zeros((2, 1)), mx.ones((5,))).shape == (2, 5)
    assert S.lgamma(3).dtype == mx.float32
    assert S.ndtri(mx.array([0.3])).dtype == mx.float32


def test_public_names() -> None:
    for name in S.__all__:
        assert callable(getattr(S, name)), name
