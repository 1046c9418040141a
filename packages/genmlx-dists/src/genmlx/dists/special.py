"""Special functions MLX lacks, written with MLX ops so ``mx.grad`` differentiates them.

Every function accepts MLX arrays or Python numbers, broadcasts, and computes in the
input's floating dtype (integers and Python numbers become float32). They are written
for float32: each one is accurate to a few float32 ulps (about 1e-6 relative or better,
see the notes per function) over the whole argument range, including the far tails
where the textbook formulas overflow or cancel. They contain no Python control flow on
array values, so they work under ``mx.grad``, ``mx.vmap`` and ``mx.compile``.

Branches are selected with ``mx.where`` and every branch is evaluated on *guarded*
inputs (a harmless value where the branch is not selected), so the branch that is not
taken never produces NaN or infinity and no NaN gradient leaks through ``mx.where``.

The functions:

* gamma family: :func:`lgamma`, :func:`digamma`, :func:`log_beta`, :func:`lbinom`;
* Bessel: :func:`log_i0`, :func:`log_i0e`, :func:`log_i1`, :func:`log_i1e`;
* error function and normal distribution: :func:`erf`, :func:`erfc`, :func:`ndtr`,
  :func:`log_ndtr`, :func:`ndtri`, :func:`ndtri_exp`, :func:`log_normal_cdf_diff`,
  :func:`log_normal_cdf_diff_scaled`;
* log-space helpers: :func:`log1mexp`, :func:`log_diff_exp`, :func:`xlogy`,
  :func:`xlog1py`.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.dists.special import lgamma, log_ndtr
    >>> round(float(lgamma(5.0)), 5)  # log 4! = log 24
    3.17805
    >>> round(float(log_ndtr(-30.0)), 2)  # finite far in the tail
    -454.32
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

__all__ = [
    "digamma",
    "erf",
    "erfc",
    "lbinom",
    "lgamma",
    "log1mexp",
    "log_beta",
    "log_diff_exp",
    "log_i0",
    "log_i0e",
    "log_i1",
    "log_i1e",
    "log_ndtr",
    "log_normal_cdf_diff",
    "log_normal_cdf_diff_scaled",
    "ndtr",
    "ndtri",
    "ndtri_exp",
    "xlog1py",
    "xlogy",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_PI = math.log(math.pi)
_LOG_2PI = math.log(2.0 * math.pi)
_LN2 = math.log(2.0)
_SQRT1_2 = math.sqrt(0.5)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


# --------------------------------------------------------------------------- helpers
def _as(x: Any) -> mx.array:
    """``x`` as a floating MLX array (Python numbers and integer arrays become float32)."""
    a = x if isinstance(x, mx.array) else mx.array(x, dtype=mx.float32)
    if not mx.issubdtype(a.dtype, mx.floating):
        a = a.astype(mx.float32)
    return a


def _and(*xs: mx.array) -> mx.array:
    """Elementwise logical and. (Not the ``&`` operator: it maps to ``bitwise_and``,
    whose ``mx.vmap`` rule in MLX 0.32 drops the batch axis when its first operand is
    unbatched.)"""
    out = xs[0]
    for x in xs[1:]:
        out = mx.logical_and(out, x)
    return out


def _or(*xs: mx.array) -> mx.array:
    """Elementwise logical or (``mx.logical_or``; see :func:`_and`)."""
    out = xs[0]
    for x in xs[1:]:
        out = mx.logical_or(out, x)
    return out


def _horner(x: mx.array, coeffs: tuple[float, ...]) -> mx.array:
    """``sum(coeffs[i] * x**i)`` (coefficients in increasing degree)."""
    acc = mx.zeros_like(x) + coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * x + c
    return acc


def _clenshaw(s: mx.array, coeffs: tuple[float, ...]) -> mx.array:
    """``sum(coeffs[k] * T_k(s))`` for ``s`` in [-1, 1] (Chebyshev series)."""
    b1 = mx.zeros_like(s)
    b2 = mx.zeros_like(s)
    two_s = 2.0 * s
    for c in reversed(coeffs[1:]):
        b1, b2 = c + two_s * b1 - b2, b1
    out: mx.array = coeffs[0] + s * b1 - b2
    return out


def _sinpi_abs(x: mx.array) -> mx.array:
    """``|sin(pi x)|`` with exact argument reduction (accurate near the integers)."""
    r = x - mx.round(x)  # exact, in [-0.5, 0.5]
    return mx.abs(mx.sin(math.pi * r))


# ----------------------------------------------------------------------- gamma family
# Taylor series of lgamma about 2: lgamma(2 + z) = sum_{k>=1} LG2[k-1] z^k, with
# LG2 = (1 - euler_gamma, ..., (-1)^k (zeta(k) - 1) / k, ...). Used for |z| <= 1/2,
# where the truncation error is below 1e-11.
_LG2 = (
    0.42278433509846713,
    0.3224670334241132,
    -0.0673523010531981,
    0.020580808427784546,
    -0.007385551028673986,
    0.0028905103307415234,
    -0.001192753911703261,
    0.0005096695247430425,
    -0.00022315475845357936,
    9.945751278180853e-05,
    -4.492623673813314e-05,
    2.0507212775670694e-05,
    -9.439488275268395e-06,
    4.374866789907487e-06,
    -2.039215753801366e-06,
    9.55141213040742e-07,
)
# Its derivative: digamma(2 + z) = sum_{k>=1} k LG2[k-1] z^(k-1).
_PSI2 = tuple(k * c for k, c in enumerate(_LG2, start=1))

# Stirling: lgamma(x) = (x - 1/2) log x - x + log(2 pi)/2 + (1/x) * P(1/x^2), with
# P's coefficients B_2k / (2k (2k - 1)). Used for x >= 4.5 (truncation error < 1e-11).
_STIRLING = (
    1.0 / 12.0,
    -1.0 / 360.0,
    1.0 / 1260.0,
    -1.0 / 1680.0,
    1.0 / 1188.0,
    -691.0 / 360360.0,
    1.0 / 156.0,
)
# Its derivative: digamma(x) = log x - 1/(2x) - sum B_2k / (2k x^2k).
_PSI_ASYM = (
    1.0 / 12.0,
    -1.0 / 120.0,
    1.0 / 252.0,
    -1.0 / 240.0,
    1.0 / 132.0,
    -691.0 / 32760.0,
    1.0 / 12.0,
)
_STIRLING_MIN = 4.5

# Taylor series of digamma about its positive root x0 (digamma(x0) = 0), used for
# |x - x0| < 1/4 so that digamma keeps full relative accuracy near its zero:
# digamma(x0 + d) = sum_{n>=1} PSI_ROOT[n-1] d^n, PSI_ROOT[n-1] = (-1)^(n+1) zeta(n+1, x0).
_PSI_ROOT_HI = 1.4616321325302124  # x0 rounded to float32
_PSI_ROOT_LO = 1.2438149843418955e-08  # x0 - _PSI_ROOT_HI
_PSI_ROOT = (
    0.9676722454476214,
    -0.44276316898359214,
    0.2584997609556512,
    -0.16394270544240658,
    0.10782405069126239,
    -0.07219956125645476,
    0.048804288164143145,
    -0.033161126474847376,
    0.022597648232218125,
    -0.015424765904948968,
    0.010538791616612182,
    -0.007204534386356875,
)


def _reduce_to_two(
    x: mx.array,
) -> tuple[mx.array, mx.array, mx.array, mx.array, mx.array]:
    """For 0 <= x < 4.5: z in [-1/2, 1/2) with x = 2 + z + (integer shift), and the
    guarded factors of the shift (see :func:`_lgamma_pos`)."""
    z = mx.where(
        x < 0.5,
        x,
        mx.where(
            x < 1.5,
            x - 1.0,
            mx.where(x < 2.5, x - 2.0, mx.where(x < 3.5, x - 3.0, x - 4.0)),
        ),
    )
    # lgamma(x) = lgamma(2 + z) - log(c) - log1p(d) + log(e) + log(f) where each factor
    # is 1 (resp. 0 for d) outside the range of x it belongs to.
    c = mx.where(x < 1.5, x, 1.0)  # x < 1.5: divide by x
    d = mx.where(x < 0.5, x, 0.0)  # x < 0.5: divide by x + 1
    e = mx.where(x >= 2.5, x - 1.0, 1.0)  # x >= 2.5: multiply by x - 1
    f = mx.where(x >= 3.5, x - 2.0, 1.0)  # x >= 3.5: multiply by x - 2
    return z, c, d, e, f


def _lgamma_pos(x: mx.array) -> mx.array:
    """log Γ(x) for x >= 0 (+inf at 0)."""
    big = x >= _STIRLING_MIN
    xs = mx.where(big, x, _STIRLING_MIN)
    w = 1.0 / xs
    stirling = (
        (xs - 0.5) * (mx.log(xs) - 1.0) + (_HALF_LOG_2PI - 0.5) + w * _horner(w * w, _STIRLING)
    )
    xm = mx.where(big, 2.0, x)
    z, c, d, e, f = _reduce_to_two(xm)
    small = z * _horner(z, _LG2) - mx.log(c) - mx.log1p(d) + mx.log(e) + mx.log(f)
    return mx.where(big, stirling, small)


def lgamma(x: Any) -> mx.array:
    """log ``|Γ(x)|``, for every real x (+inf at 0 and the negative integers).

    x >= 4.5 uses Stirling's series; 0 <= x < 4.5 shifts x by an integer into
    [1.5, 2.5) and uses the Taylor series about 2 (so lgamma keeps full relative
    accuracy near its zeros at 1 and 2); x < 0 uses the reflection formula
    log``|Γ(x)|`` = log π − log``|sin(πx)|`` − log Γ(1 − x) with exact reduction of sin's
    argument. Accuracy: a few float32 ulps (relative to max(``|lgamma(x)|``, 1) near the
    negative zeros of lgamma). ``mx.grad(lgamma)`` agrees with :func:`digamma`.

    Example:
        >>> round(float(lgamma(0.5)), 6)  # log sqrt(pi)
        0.572365
    """
    x = _as(x)
    neg = x < 0.0
    direct = _lgamma_pos(mx.where(neg, 1.0 - x, x))
    xr = mx.where(neg, x, 0.5)
    refl = _LOG_PI - mx.log(_sinpi_abs(xr)) - direct
    return mx.where(neg, refl, direct)


def _digamma_pos(x: mx.array) -> mx.array:
    """ψ(x) for x >= 0 (-inf at 0)."""
    big = x >= _STIRLING_MIN
    xs = mx.where(big, x, _STIRLING_MIN)
    w = 1.0 / xs
    asym = mx.log(xs) - 0.5 * w - (w * w) * _horner(w * w, _PSI_ASYM)
    xm = mx.where(big, 2.0, x)
    z, c, d, e, f = _reduce_to_two(xm)
    lt15 = xm < 1.5
    lt05 = xm < 0.5
    ge25 = xm >= 2.5
    ge35 = xm >= 3.5
    shift = (
        -mx.where(lt15, 1.0 / c, 0.0)
        - mx.where(lt05, 1.0 / (1.0 + d), 0.0)
        + mx.where(ge25, 1.0 / e, 0.0)
        + mx.where(ge35, 1.0 / f, 0.0)
    )
    small = _horner(z, _PSI2) + shift
    # near the positive root x0 = 1.46163...: Taylor series in x - x0
    near = mx.abs(x - _PSI_ROOT_HI) < 0.25
    dlt = mx.where(near, (x - _PSI_ROOT_HI) - _PSI_ROOT_LO, 0.0)
    root = dlt * _horner(dlt, _PSI_ROOT)
    return mx.where(big, asym, mx.where(near, root, small))


def digamma(x: Any) -> mx.array:
    """ψ(x) = d/dx log Γ(x), for every real x (-inf at 0, NaN at the negative integers).

    x >= 4.5: asymptotic series; 0 <= x < 4.5: the recurrence ψ(x+1) = ψ(x) + 1/x to
    shift into [1.5, 2.5) and the Taylor series about 2 (the derivative of
    :func:`lgamma`'s, so ``mx.grad(lgamma)`` agrees with ``digamma``), plus a Taylor
    series about the positive root 1.4616... for full relative accuracy there;
    x < 0: the reflection ψ(x) = ψ(1 − x) − π cot(πx). Accuracy: a few float32 ulps
    (relative to max(``|ψ(x)|``, 1) near the negative roots).

    Example:
        >>> round(float(digamma(1.0)), 6)  # -euler_gamma
        -0.577216
    """
    x = _as(x)
    neg = x < 0.0
    direct = _digamma_pos(mx.where(neg, 1.0 - x, x))
    xr = mx.where(neg, x, 0.25)
    r = xr - mx.round(xr)  # cot(pi x) = cot(pi r)
    pr = math.pi * r
    cot = mx.cos(pr) / mx.sin(pr)  # r = 0 (a pole) gives +-inf
    refl = direct - math.pi * cot
    pole = _and(neg, r == 0.0)
    return mx.where(pole, mx.nan, mx.where(neg, refl, direct))


def _stirling_corr(x: mx.array) -> mx.array:
    """lgamma(x) − [(x − 1/2) log x − x + log(2π)/2] for x >= 4.5."""
    w = 1.0 / x
    return w * _horner(w * w, _STIRLING)


_LBETA_BIG = 6.0


def log_beta(a: Any, b: Any) -> mx.array:
    """log B(a, b) = lgamma(a) + lgamma(b) − lgamma(a + b), without cancellation.

    With p = min(a, b) and q = max(a, b): when q >= 6 the Stirling parts of the three
    lgamma terms are combined analytically (as in R's ``lbeta``), so log B(1, 1e7) =
    −log(1e7) and log B(1e6, 1e6) keep full float32 relative accuracy; otherwise the
    plain sum of lgamma terms is accurate. Non-positive arguments use :func:`lgamma`'s
    reflection (log ``|B|``). ``log_beta(a, inf)`` is -inf for a > 0.

    Example:
        >>> round(float(log_beta(2.0, 3.0)), 6)  # log(1/12)
        -2.484907
    """
    a, b = _as(a), _as(b)
    a, b = mx.broadcast_arrays(a, b)
    swap = a > b  # (a where, not minimum/maximum: their gradient is wrong at a == b)
    p = mx.where(swap, b, a)
    q = mx.where(swap, a, b)
    q_inf = _and(mx.isinf(q), p > 0.0)
    both_big = _and(p >= _LBETA_BIG, ~q_inf)
    one_big = _and(p > 0.0, p < _LBETA_BIG, q >= _LBETA_BIG, ~q_inf)
    naive = _and(~both_big, ~one_big)

    # both big: log(2 pi)/2 - log(q)/2 + corrections + (p - 1/2) log(p/(p+q)) + q log1p(-p/(p+q))
    pa = mx.where(both_big, p, _LBETA_BIG)
    qa = mx.where(both_big, q, _LBETA_BIG)
    ra = pa / (pa + qa)
    big2 = (
        _HALF_LOG_2PI
        - 0.5 * mx.log(qa)
        + _stirling_corr(pa)
        + _stirling_corr(qa)
        - _stirling_corr(pa + qa)
        + (pa - 0.5) * mx.log(ra)
        + qa * mx.log1p(-ra)
    )
    # one big: lgamma(p) + corr(q) - corr(p+q) + p - p log(p+q) + (q - 1/2) log1p(-p/(p+q))
    pb = mx.where(one_big, p, 1.0)
    qb = mx.where(one_big, q, _LBETA_BIG)
    big1 = (
        lgamma(pb)
        + _stirling_corr(qb)
        - _stirling_corr(pb + qb)
        + pb
        - pb * mx.log(pb + qb)
        + (qb - 0.5) * mx.log1p(-pb / (pb + qb))
    )
    pc = mx.where(naive, p, 1.0)
    qc = mx.where(naive, q, 1.0)
    small = lgamma(pc) + lgamma(qc) - lgamma(pc + qc)
    out = mx.where(both_big, big2, mx.where(one_big, big1, small))
    return mx.where(q_inf, -mx.inf, out)


def lbinom(n: Any, k: Any) -> mx.array:
    """log of the binomial coefficient C(n, k) = n! / (k! (n − k)!), for real 0 <= k <= n.

    Computed as −log(n + 1) − log B(n − k + 1, k + 1) with the stable :func:`log_beta`
    (so it is accurate for n up to float32's range), exactly 0 at k = 0 and k = n, and
    -inf where k < 0 or k > n (the coefficient of integers is 0 there).

    Example:
        >>> round(float(lbinom(10.0, 3.0)), 5)  # log 120
        4.78749
    """
    n, k = _as(n), _as(k)
    ok = _and(k >= 0.0, k <= n)
    edge = _and(ok, _or(k == 0.0, k == n))
    inner = _and(ok, ~edge)
    ns = mx.where(inner, n, 2.0)
    ks = mx.where(inner, k, 1.0)
    val = -mx.log1p(ns) - log_beta(ns - ks + 1.0, ks + 1.0)
    return mx.where(inner, val, mx.where(edge, 0.0, -mx.inf))


# ---------------------------------------------------------------------------- Bessel
_BESSEL_SERIES_MAX = 15.0
_BESSEL_TERMS = 26
# I0(x) = sum_k u^k / (k!)^2 and I1(x) = (x/2) sum_k u^k / (k! (k+1)!), u = x^2/4, written
# in v = u/16 = (x/8)^2 (coefficients 16^k/...) so that no coefficient underflows float32.
# At |x| = 15 the first omitted term is below 1e-20 of the sum.
_I0_SERIES = tuple(16.0**k / math.factorial(k) ** 2 for k in range(1, _BESSEL_TERMS + 1))
_I1_SERIES = tuple(
    16.0**k / (math.factorial(k) * math.factorial(k + 1)) for k in range(1, _BESSEL_TERMS + 1)
)


def _bessel_asym(nu: int, n: int) -> tuple[float, ...]:
    """Coefficients of I_nu(x) ~ e^x / sqrt(2 pi x) * sum_k (-1)^k a_k(nu) / x^k (A&S 9.7.1)."""
    out = [1.0]
    a = 1.0
    for k in range(1, n + 1):
        a *= -(4.0 * nu * nu - (2 * k - 1) ** 2) / (k * 8.0)
        out.append(a)
    return tuple(out)


_I0_ASYM = _bessel_asym(0, 14)
_I1_ASYM = _bessel_asym(1, 14)


def _log_bessel(x: mx.array, order: int, scaled: bool) -> mx.array:
    ax = mx.abs(x)
    small = ax <= _BESSEL_SERIES_MAX
    xs = mx.where(small, x, 0.0)
    xv = 0.125 * xs
    v = xv * xv
    axl = mx.where(small, _BESSEL_SERIES_MAX, ax)
    w = 1.0 / axl
    asym_tail = -0.5 * (_LOG_2PI + mx.log(axl))
    if order == 0:
        s = mx.log1p(v * _horner(v, _I0_SERIES))
        asym = asym_tail + mx.log(_horner(w, _I0_ASYM))
    else:
        axs = mx.where(small, ax, 1.0)
        s = mx.log(0.5 * axs) + mx.log1p(v * _horner(v, _I1_SERIES))
        s = mx.where(_and(small, ax == 0.0), -mx.inf, s)
        asym = asym_tail + mx.log(_horner(w, _I1_ASYM))
    if scaled:
        return mx.where(small, s - ax, asym)
    return mx.where(small, s, asym + axl)


def log_i0(x: Any) -> mx.array:
    """log I0(x), the modified Bessel function of the first kind of order 0 (even in x).

    ``|x|`` <= 15: log1p of the power series (all terms positive, no cancellation);
    ``|x|`` > 15: the Hankel asymptotic expansion in the exponentially scaled form
    (``|x|`` − log(2π``|x|``)/2 + log(1 + 1/(8``|x|``) + ...)), which never overflows: log I0(1e30)
    is finite. Relative accuracy about 2e-7. The gradient is I1(x)/I0(x).

    Example:
        >>> round(float(log_i0(1.0)), 6)
        0.235914
    """
    return _log_bessel(_as(x), 0, scaled=False)


def log_i0e(x: Any) -> mx.array:
    """log(exp(−``|x|``) I0(x)) = log_i0(x) − ``|x|``, without cancellation for large ``|x|``.

    Absolute error about 1e-6 for ``|x|`` <= 15 (where it is log_i0(x) − ``|x|``), relative
    error about 2e-7 beyond.

    Example:
        >>> round(float(log_i0e(1000.0)), 6)  # about -log(2 pi 1000)/2
        -4.372691
    """
    return _log_bessel(_as(x), 0, scaled=True)


def log_i1(x: Any) -> mx.array:
    """log ``|I1(x)|``, modified Bessel function of the first kind of order 1 (odd in x).

    -inf at x = 0. Same method and accuracy as :func:`log_i0`.

    Example:
        >>> round(float(log_i1(1.0)), 6)
        -0.570648
    """
    return _log_bessel(_as(x), 1, scaled=False)


def log_i1e(x: Any) -> mx.array:
    """log(exp(−``|x|``) ``|I1(x)|``) = log_i1(x) − ``|x|``.

    Example:
        >>> round(float(log_i1e(1.0) - log_i1(1.0)), 6)
        -1.0
    """
    return _log_bessel(_as(x), 1, scaled=True)


# ------------------------------------------------------------ error function, normal
# Chebyshev series (in s = (2 - z)/(2 + z) = 2t - 1, t = 1/(1 + z/2)) of
# g(z) = log(erfc(z)) + z^2 - log(t) on z >= 0, i.e. log erfc(z) = log t - z^2 + g: the
# form of Numerical Recipes' erfcc, refitted to degree 14 (max error 4e-10 in float64).
_ERFC_CHEB = (
    -0.6513268598908547,
    0.6419697923564903,
    0.019476473204185937,
    -0.009561514786808665,
    -0.0009465953444818912,
    0.00036683949785263535,
    4.252332480853364e-05,
    -2.0278578119718264e-05,
    -1.624290004920148e-06,
    1.3036559480590164e-06,
    1.5626129099693963e-08,
    -8.523899098685413e-08,
    6.535941307617143e-09,
    5.056949174223983e-09,
    -1.08783164420867e-09,
)
# erf(x) = x * sum_n ERF_TAYLOR[n] x^(2n) for |x| < 1/2 (11 terms: error < 1e-16).
_ERF_TAYLOR = tuple(
    _TWO_OVER_SQRT_PI * (-1.0) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(11)
)


def _erfc_s(z: mx.array) -> mx.array:
    """s = (2 − z)/(2 + z) ∈ (−1, 1] for z >= 0, written to be finite at z = inf."""
    return 4.0 / (2.0 + z) - 1.0


def _log_erfc_pos(z: mx.array, z2: mx.array) -> mx.array:
    """log erfc(z) for z >= 0, given z2 = z^2 (computed by the caller without rounding
    z first). Finite for every finite z (no underflow)."""
    return -mx.log1p(0.5 * z) - z2 + _clenshaw(_erfc_s(z), _ERFC_CHEB)


def erfc(x: Any) -> mx.array:
    """The complementary error function 1 − erf(x), with full relative accuracy in the
    right tail (erfc(10) = 2.09e-45 is a float32 denormal; it underflows to 0 beyond).

    Example:
        >>> f"{float(erfc(5.0)):.6e}"
        '1.537460e-12'
    """
    x = _as(x)
    # |x| written as a where (not abs) so that the gradient at 0 is right; erfc(30)
    # underflows, and clamping there keeps the gradient at inf 0, not NaN.
    ax = mx.minimum(mx.where(x >= 0.0, x, -x), 30.0)
    tail = mx.exp(_log_erfc_pos(ax, ax * ax))
    return mx.where(x >= 0.0, tail, 2.0 - tail)


def erf(x: Any) -> mx.array:
    """The error function, with full relative accuracy near 0 (unlike ``mx.erf`` in
    float32, which loses it below ``|x|`` ~ 1e-2).

    ``|x|`` < 1/2: Taylor series; otherwise sign(x) (1 − erfc(``|x|``)).

    Example:
        >>> round(float(erf(0.5)), 6)
        0.5205
    """
    x = _as(x)
    ax = mx.abs(x)
    small = ax < 0.5
    xs = mx.where(small, x, 0.0)
    taylor = xs * _horner(xs * xs, _ERF_TAYLOR)
    axl = mx.where(small, 0.5, mx.minimum(ax, 30.0))
    big = 1.0 - mx.exp(_log_erfc_pos(axl, axl * axl))
    return mx.where(small, taylor, mx.where(x < 0.0, -big, big))


def ndtr(x: Any) -> mx.array:
    """Φ(x), the standard normal CDF, with full relative accuracy in the lower tail.

    Φ(x) = erfc(−x/√2)/2, using the tail form of erfc on the side x < 0 (so Φ(−12)
    = 1.78e-33 is accurate) and 1 − erfc(x/√2)/2 for x >= 0.

    Example:
        >>> round(float(ndtr(1.0)), 6)
        0.841345
    """
    x = _as(x)
    # |x| as a where (not abs): right gradient at 0; Φ(-40) underflows, and clamping
    # there keeps the gradient at inf 0, not NaN.
    ax = mx.minimum(mx.where(x >= 0.0, x, -x), 40.0)
    tail = 0.5 * mx.exp(_log_erfc_pos(ax * _SQRT1_2, 0.5 * ax * ax))
    return mx.where(x < 0.0, tail, 1.0 - tail)


def _log_ndtr_neg(x: mx.array) -> mx.array:
    """log Φ(x) for x <= 0 (any magnitude)."""
    return _log_erfc_pos(-x * _SQRT1_2, 0.5 * x * x) - _LN2


def log_ndtr(x: Any) -> mx.array:
    """log Φ(x), finite and accurate for every finite x.

    x < 0: log(erfc(−x/√2)/2) in log space, −x²/2 − log(t) + g(t) with the Chebyshev fit
    g (no underflow: log_ndtr(−30) = −454.32, log_ndtr(−1e4) = −5e7); x >= 0:
    log1p(−Φ(−x)). Absolute error about 1e-7 (relative, for x < 0).

    Example:
        >>> round(float(log_ndtr(0.0)), 6)  # log 1/2
        -0.693147
    """
    x = _as(x)
    neg = x < 0.0
    xn = mx.where(neg, x, 0.0)
    xp = mx.where(neg, 0.0, mx.minimum(x, 40.0))  # log Φ(40) = -Φ(-40) underflows to 0
    lo = _log_ndtr_neg(xn)
    hi = mx.log1p(-mx.exp(_log_ndtr_neg(-xp)))
    return mx.where(neg, lo, hi)


def _log_mills_neg(x: mx.array) -> mx.array:
    """log(Φ(x)/φ(x)) for x <= 0, without the cancellation of log Φ(x) − log φ(x)."""
    z = -x * _SQRT1_2
    return _clenshaw(_erfc_s(z), _ERFC_CHEB) - mx.log1p(0.5 * z) - _LN2 + _HALF_LOG_2PI


# Acklam's rational approximation to the lower tail of the inverse normal CDF (relative
# error < 1.2e-9): x = C(q) / D(q), q = sqrt(-2 log p), here written in w = 1/q (numerator
# and denominator divided by q^5) so that it does not overflow for huge q.
_ACK_C_W = (  # c1 + c2 w + ... + c6 w^5
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_ACK_D_W = (  # d1 w + d2 w^2 + d3 w^3 + d4 w^4 + w^5, divided by w
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e00,
    3.754408661907416e00,
    1.0,
)
_P_LOW = 0.02425
_LOG_P_LOW = math.log(_P_LOW)
_LOG1M_P_LOW = math.log1p(-_P_LOW)
_SQRT2 = math.sqrt(2.0)


def _ndtri_central(t: mx.array) -> mx.array:
    """Φ⁻¹((1 + t)/2) = √2 erfinv(t), for the central region ``|t|`` <= 0.9515."""
    return _SQRT2 * mx.erfinv(t)


def _ndtri_tail(logp: mx.array) -> mx.array:
    """Φ⁻¹(exp(logp)) for logp < log(0.02425) (lower tail, any magnitude).

    Acklam's tail approximation in q = sqrt(−2 logp), then one Newton step on
    log Φ(x) = logp, which makes the result (and its derivative, dx/dlogp =
    Φ(x)/φ(x)) exact to float32 precision even where logp is beyond float64's range.
    """
    w = mx.rsqrt(-2.0 * logp)
    x0 = _horner(w, _ACK_C_W) / (w * _horner(w, _ACK_D_W))
    return x0 + (logp - _log_ndtr_neg(x0)) * mx.exp(_log_mills_neg(x0))


def ndtri(p: Any) -> mx.array:
    """Φ⁻¹(p), the inverse of :func:`ndtr` (the standard normal quantile function).

    √2 erfinv(2p − 1) in the centre (0.02425 <= p <= 0.97575); in the tails Acklam's
    rational approximation in log space plus a Newton step (see :func:`ndtri_exp`), so
    ndtri(1e-30) = −11.46 is accurate. ±inf at p = 0, 1; NaN outside [0, 1]. For
    p > 1/2 the upper tail is computed from 1 − p (exact in floating point).

    Example:
        >>> round(float(ndtri(0.975)), 5)
        1.95996
    """
    p = _as(p)
    lo = p < _P_LOW
    hi = p > 1.0 - _P_LOW
    mid = _and(~lo, ~hi)
    pl = mx.where(_and(lo, p > 0.0), p, _P_LOW / 2.0)
    ph = mx.where(_and(hi, p < 1.0), p, 1.0 - _P_LOW / 2.0)
    pm = mx.where(mid, p, 0.5)
    out = mx.where(
        lo,
        _ndtri_tail(mx.log(pl)),
        mx.where(hi, -_ndtri_tail(mx.log1p(-ph)), _ndtri_central(2.0 * pm - 1.0)),
    )
    out = mx.where(p == 0.0, -mx.inf, mx.where(p == 1.0, mx.inf, out))
    return mx.where(_or(p < 0.0, p > 1.0), mx.nan, out)


def ndtri_exp(y: Any) -> mx.array:
    """Φ⁻¹(exp(y)): the inverse of :func:`log_ndtr`, for y <= 0.

    Accurate for arbitrarily negative y (ndtri_exp(−1e4) = −141.3798), where exp(y)
    underflows, and near y = 0 (the upper tail is computed from −expm1(y)). -inf at
    y = −inf, +inf at y = 0, NaN for y > 0. Used by the tail-stable truncated normal
    sampler.

    Example:
        >>> round(float(ndtri_exp(-1000.0)), 4)
        -44.6157
    """
    y = _as(y)
    lo = y < _LOG_P_LOW
    hi = y > _LOG1M_P_LOW
    mid = _and(~lo, ~hi)
    yl = mx.where(_and(lo, y > -mx.inf), y, _LOG_P_LOW - 1.0)
    yh = mx.where(_and(hi, y < 0.0), y, _LOG1M_P_LOW / 2.0)
    ym = mx.where(mid, y, -_LN2)
    out = mx.where(
        lo,
        _ndtri_tail(yl),
        mx.where(hi, -_ndtri_tail(mx.log(-mx.expm1(yh))), _ndtri_central(mx.expm1(ym + _LN2))),
    )
    out = mx.where(y == -mx.inf, -mx.inf, mx.where(y == 0.0, mx.inf, out))
    return mx.where(y > 0.0, mx.nan, out)


def _cheb_divdiff(x: mx.array, y: mx.array, coeffs: tuple[float, ...]) -> mx.array:
    """(f(x) − f(y)) / (x − y) for the Chebyshev series f = sum coeffs[k] T_k, computed
    without cancellation (also at x = y, where it is f'(x)); ``|x|``, ``|y|`` <= 1.

    With D_k = (T_k(x) − T_k(y))/(x − y): D_0 = 0, D_1 = 1,
    D_{k+1} = 2x D_k + 2 T_k(y) − D_{k−1}.
    """
    d_prev = mx.zeros_like(x)
    d_cur = mx.ones_like(x)
    t_prev = mx.ones_like(y)  # T_0(y)
    t_cur = y  # T_1(y)
    acc = coeffs[1] * d_cur
    for c in coeffs[2:]:
        d_prev, d_cur = d_cur, 2.0 * x * d_cur + 2.0 * t_cur - d_prev
        t_prev, t_cur = t_cur, 2.0 * y * t_cur - t_prev
        acc = acc + c * d_cur
    return acc


def _log_ndtr_neg_scaled(u: mx.array) -> mx.array:
    """log Φ(−u) + u²/2 for u >= 0 (no large terms: about −log(u √(2π)) for large u)."""
    z = u * _SQRT1_2
    return _clenshaw(_erfc_s(z), _ERFC_CHEB) - mx.log1p(0.5 * z) - _LN2


def _log_tail_diff_scaled(u: mx.array, v: mx.array) -> mx.array:
    """log(Φ(−u) − Φ(−v)) + u²/2 for 0 <= u <= v < inf, accurate for narrow intervals.

    log Φ(−x) = −log 2 − log1p(z/2) − x²/2 + g(s(z)), z = x/√2; the difference
    D = log Φ(−u) − log Φ(−v) is assembled from terms that are each proportional to
    v − u (so D keeps its relative accuracy as v → u), and the result is
    log Φ(−u) + u²/2 + log(1 − exp(−D)).
    """
    zu = u * _SQRT1_2
    zv = v * _SQRT1_2
    dz = (v - u) * _SQRT1_2
    su = _erfc_s(zu)
    sv = _erfc_s(zv)
    ds = 4.0 * dz / ((2.0 + zu) * (2.0 + zv))  # su - sv
    d = (
        0.5 * (v - u) * (v + u)
        + mx.log1p(0.5 * dz / (1.0 + 0.5 * zu))
        + ds * _cheb_divdiff(su, sv, _ERFC_CHEB)
    )
    return _log_ndtr_neg_scaled(u) + log1mexp(d)


def _nearest_to_zero(a: mx.array, b: mx.array) -> mx.array:
    """The point of [a, b] nearest to 0 (a if a >= 0, b if b <= 0, else 0)."""
    return mx.where(a >= 0.0, a, mx.where(b <= 0.0, b, 0.0))


def log_normal_cdf_diff_scaled(a: Any, b: Any) -> mx.array:
    """log(Φ(b) − Φ(a)) + m²/2, where m is the point of [a, b] nearest to 0.

    The exponentially scaled form of :func:`log_normal_cdf_diff` (as erfcx is of erfc):
    it has no large terms even far in a tail, so a truncated normal's log density
    −(z² − m²)/2 − log σ − log(2π)/2 − log_normal_cdf_diff_scaled(a, b), with
    z² − m² = (z − m)(z + m), keeps full float32 accuracy when the truncation is far
    from the mode (where z²/2 and log(Φ(b) − Φ(a)) are both large and cancel).

    Example:
        >>> round(float(log_normal_cdf_diff_scaled(30.0, 31.0)), 5)  # ~ -log(30 sqrt(2 pi))
        -4.32124
    """
    a, b = _as(a), _as(b)
    a, b = mx.broadcast_arrays(a, b)
    mid = _and(a < 0.0, b > 0.0)
    upper = _and(~mid, a >= 0.0)  # interval in [0, inf]: use u = a, v = b
    # otherwise the interval is in [-inf, 0]: use u = -b, v = -a
    # straddling 0 (m = 0)
    am = mx.where(mid, a, -1.0)
    bm = mx.where(mid, b, 1.0)
    mid_val = mx.log(0.5 * (erf(bm * _SQRT1_2) - erf(am * _SQRT1_2)))
    # one tail (m = u)
    u = mx.where(upper, a, -b)
    v = mx.where(upper, b, -a)
    bad = _or(mid, u > v, mx.isnan(u), mx.isnan(v))
    u_inf = mx.isinf(u)
    v_inf = mx.isinf(v)
    us = mx.where(_or(bad, u_inf), 0.0, u)
    vs = mx.where(_or(bad, u_inf, v_inf), us + 1.0, v)
    tail = _log_tail_diff_scaled(us, vs)
    tail = mx.where(v_inf, _log_ndtr_neg_scaled(us), tail)
    tail = mx.where(u_inf, -mx.inf, tail)
    out = mx.where(mid, mid_val, tail)
    return mx.where(_or(a > b, mx.isnan(a), mx.isnan(b)), mx.nan, out)


def log_normal_cdf_diff(a: Any, b: Any) -> mx.array:
    """log(Φ(b) − Φ(a)) for a <= b, stable in both tails and for narrow intervals.

    The normaliser of a truncated normal. When the interval straddles 0 it is
    log((erf(b/√2) − erf(a/√2))/2) (a sum of two positive terms); when it lies in
    one tail it is computed in that tail's log space, with the difference of the two
    tail probabilities formed without cancellation, so e.g. log(Φ(9) − Φ(8)) =
    −35.0136, log(Φ(−40) − Φ(−41)) = −804.608 and log(Φ(8.0001) − Φ(8)) are accurate.
    Either bound may be infinite; a == b gives -inf and a > b NaN. See also
    :func:`log_normal_cdf_diff_scaled`.

    Example:
        >>> round(float(log_normal_cdf_diff(8.0, 9.0)), 4)
        -35.0136
    """
    a, b = _as(a), _as(b)
    m = _nearest_to_zero(*mx.broadcast_arrays(a, b))
    ms = mx.where(mx.isinf(m), 0.0, m)
    return log_normal_cdf_diff_scaled(a, b) - 0.5 * ms * ms


# ------------------------------------------------------------------ log-space helpers
def log1mexp(x: Any) -> mx.array:
    """log(1 − exp(−``|x|``)), stable for all x (Mächler's two-branch formula).

    ``|x|`` < log 2: log(−expm1(−``|x|``)); otherwise log1p(−exp(−``|x|``)). -inf at x = 0.

    Example:
        >>> round(float(log1mexp(1e-5)), 4)  # about log(1e-5)
        -11.5129
    """
    x = _as(x)
    a = mx.abs(x)
    near = a < _LN2
    a1 = mx.where(near, a, _LN2)
    a2 = mx.where(near, _LN2, a)
    return mx.where(near, mx.log(-mx.expm1(-a1)), mx.log1p(-mx.exp(-a2)))


def log_diff_exp(a: Any, b: Any) -> mx.array:
    """log(exp(a) − exp(b)) for a >= b, without overflow or cancellation.

    Equals a + log1mexp(a − b); a == b gives -inf, b = -inf gives a, a < b gives NaN.

    Example:
        >>> round(float(log_diff_exp(0.0, -1.0)), 6)  # log(1 - 1/e)
        -0.458675
    """
    a, b = _as(a), _as(b)
    b_ninf = b == -mx.inf
    ok = _and(a > b, ~b_ninf, ~mx.isinf(a))
    d = mx.where(ok, a - b, 1.0)
    val = mx.where(ok, a, 0.0) + log1mexp(d)
    a_inf = _and(a == mx.inf, b < mx.inf)
    out = mx.where(a == b, -mx.inf, mx.where(a < b, mx.nan, a))  # the cases with an infinity
    return mx.where(ok, val, mx.where(_or(b_ninf, a_inf), a, out))


def xlogy(x: Any, y: Any) -> mx.array:
    """x · log(y), with 0 where x == 0 (also when y == 0), as scipy.special.xlogy.

    The gradient in x at x = 0 is log(y) for finite y > 0 (and 0 where y is 0 or inf);
    no NaN reaches any gradient.

    Example:
        >>> float(xlogy(0.0, 0.0))
        0.0
    """
    x, y = _as(x), _as(y)
    special = _and(x == 0.0, ~_and(y > 0.0, y < mx.inf))
    ys = mx.where(special, 1.0, y)
    return mx.where(special, 0.0, x * mx.log(ys))


def xlog1py(x: Any, y: Any) -> mx.array:
    """x · log1p(y), with 0 where x == 0 (also when y == −1), as scipy.special.xlog1py.

    Example:
        >>> float(xlog1py(0.0, -1.0))
        0.0
    """
    x, y = _as(x), _as(y)
    special = _and(x == 0.0, ~_and(y > -1.0, y < mx.inf))
    ys = mx.where(special, 0.0, y)
    return mx.where(special, 0.0, x * mx.log1p(ys))
