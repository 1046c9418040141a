"""Tests of genmlx.dists.gamma_sampling (the samplers) and genmlx.dists.gamma_beta (the
gamma-family distributions).

Reference values come from scipy.stats in float64, evaluated at the float32 inputs.
Tolerances: rtol = atol = 1e-5 plus a conditioning term (see ``_cond_tol``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from scipy import integrate, special, stats

from genmlx.core.testing import check_gfi_laws
from genmlx.dists import gamma_beta as gf
from genmlx.dists.examples import examples
from genmlx.dists.gamma_beta import (
    beta,
    beta_uniform,
    chi2,
    dirichlet,
    gamma,
    inv_gamma,
    kumaraswamy,
    student_t,
)
from genmlx.dists.gamma_sampling import (
    GAMMA_ROUNDS,
    log_standard_gamma,
    spill_slots,
    standard_beta,
    standard_dirichlet,
    standard_gamma,
)

ALL = [gamma, inv_gamma, chi2, beta, kumaraswamy, beta_uniform, student_t, dirichlet]
IDS = [d.name for d in ALL]
N = 20000
U32 = 2.0**-24
TINY = 2.0**-126


def np64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


# ------------------------------------------------------------------ reference helpers
def kuma_logpdf(x: Any, a: Any, b: Any) -> np.ndarray:
    x, a, b = np64(x), np64(a), np64(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(a) + np.log(b) + (a - 1) * np.log(x) + (b - 1) * np.log1p(-(x**a))


def kuma_cdf(x: Any, a: float, b: float) -> np.ndarray:
    return -np.expm1(b * np.log1p(-(np64(x) ** a)))


def bu_logpdf(x: Any, th: Any, a: Any, b: Any) -> np.ndarray:
    # written so that finite differences work at theta = 0 and theta = 1
    return np.log(th * stats.beta.pdf(x, a, b) + (1 - np64(th)))


def dir_logpdf(x: np.ndarray, al: np.ndarray) -> np.ndarray:
    """scipy's Dirichlet log density at the renormalised point x / sum(x), rowwise."""
    x = np64(x)
    x = x / x.sum(-1, keepdims=True)
    return np.array([stats.dirichlet.logpdf(r, np64(al)) for r in x.reshape(-1, x.shape[-1])])


REF: dict[str, Callable[..., Any]] = {
    "gamma": lambda x, a, r: stats.gamma.logpdf(x, a, scale=1 / np64(r)),
    "inv_gamma": lambda x, a, s: stats.invgamma.logpdf(x, a, scale=s),
    "chi2": lambda x, k: stats.chi2.logpdf(x, k),
    "beta": lambda x, a, b: stats.beta.logpdf(x, a, b),
    "kumaraswamy": kuma_logpdf,
    "beta_uniform": bu_logpdf,
    "student_t": lambda x, k, m, s: stats.t.logpdf(x, k, m, s),
}


def _cond_tol(ref_fn: Callable[..., Any], args: list[np.ndarray], ref: np.ndarray) -> np.ndarray:
    """rtol = atol = 1e-5, plus 8 float32 roundings' worth of the problem's conditioning.

    The inputs are exact float32 numbers, but a float32 evaluation must round
    intermediates such as ``rate * x``, ``scale / x`` or ``a / (a + b)``; one rounding
    (relative 2**-24) moves the result as much as perturbing an input by that relative
    amount, i.e. by ``|theta * d logp / d theta| * 2**-24``. That term, summed over the
    inputs (estimated by float64 central differences) and allowed 8 times, is what float32
    forces; it matters only where the log density is steep in log-coordinates (shape
    1e4: ``|x d logp/dx| ~ 500``, 8 roundings ~ 2.4e-4).
    """
    sens = np.zeros_like(ref)
    h = 1e-6
    for j, a in enumerate(args):
        up = [*args]
        dn = [*args]
        up[j] = a * (1 + h)
        dn[j] = a * (1 - h)
        with np.errstate(all="ignore"):
            d = (ref_fn(*up) - ref_fn(*dn)) / (2 * h)
        sens = sens + np.where(np.isfinite(d), np.abs(d), 0.0)
    return 1e-5 + 1e-5 * np.abs(ref) + 8 * U32 * sens


def assert_logprob_matches(name: str, got: Any, args: list[Any]) -> None:
    args64 = [np64(np.asarray(a, dtype=np.float32)) for a in args]
    shape = np.broadcast_shapes(*[a.shape for a in args64])
    args64 = [np.broadcast_to(a, shape) for a in args64]
    ref = np.asarray(REF[name](*args64), dtype=np.float64)
    got = np64(got)
    assert got.shape == ref.shape
    assert not np.isnan(got).any()
    fin = np.isfinite(ref)
    np.testing.assert_array_equal(got[~fin], ref[~fin])
    tol = _cond_tol(REF[name], args64, ref)
    err = np.abs(got - ref)
    bad = fin & (err > tol)
    assert not bad.any(), (
        f"{name}: {bad.sum()} mismatches, worst at {np.argmax(np.where(fin, err / tol, 0))}: "
        f"got {got[bad][:5]}, ref {ref[bad][:5]}"
    )


# ----------------------------------------------------------------------- samplers
def _log_gamma_cdf(y: np.ndarray, a: float) -> np.ndarray:
    """P(log G <= y), G ~ Gamma(a): regularised gamma at e^y; series x^a / Gamma(a+1) when
    e^y would underflow float64 (relative error O(e^y) there)."""
    small = y < -30
    with np.errstate(over="ignore", under="ignore"):
        return np.where(
            small,
            np.exp(a * np.minimum(y, -30) - special.gammaln(a + 1)),
            special.gammainc(a, np.exp(np.maximum(y, -30))),
        )


@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.5, 1.0, 3.7, 1000.0, 1e4])
def test_log_standard_gamma_ks(alpha: float) -> None:
    lg = np64(log_standard_gamma(mx.random.key(11), alpha, (N,)))
    assert np.isfinite(lg).all()
    assert stats.kstest(lg, lambda y: _log_gamma_cdf(y, alpha)).pvalue > 1e-4


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.7, 1000.0])
def test_standard_gamma_ks_and_moments(alpha: float) -> None:
    g = np64(standard_gamma(mx.random.key(12), alpha, (N,)))
    assert stats.kstest(g, stats.gamma(alpha).cdf).pvalue > 1e-4
    check_moments(g, [stats.gamma(alpha).moment(k) for k in range(1, 5)])


def test_standard_gamma_tiny_alpha_never_zero_or_inf() -> None:
    key = mx.random.key(13)
    for alpha in (1e-3, 0.01):
        lg = np64(log_standard_gamma(key, alpha, (N,)))
        g = np64(standard_gamma(key, alpha, (N,)))
        assert (g >= np.float32(TINY)).all() and np.isfinite(g).all()
        # representable draws are exp(log draw); the rest are clamped to 2**-126
        # (a draw within 1e-3 of log 2**-126 may round to either side: not asserted)
        rep = lg > math.log(TINY) + 1e-3
        clamped = lg < math.log(TINY) - 1e-3
        np.testing.assert_allclose(g[rep], np.exp(lg[rep]), rtol=1e-5)
        assert (g[clamped] == np.float32(TINY)).all()
        assert rep.sum() > 0 and clamped.sum() > 0
    # a Gamma(0.01) draw is returned as max(G, 2**-126): the atom's mass is
    # P(G <= 2**-126) (binomial test) and the rest follows G conditioned above it (KS)
    g = np64(standard_gamma(mx.random.key(14), 0.01, (N,)))
    dist = stats.gamma(0.01)
    t = float(np.float32(TINY))
    at = g <= t
    assert stats.binomtest(int(at.sum()), N, dist.cdf(t)).pvalue > 1e-4
    cond = lambda x: (dist.cdf(x) - dist.cdf(t)) / dist.sf(t)  # noqa: E731
    assert stats.kstest(g[~at], cond).pvalue > 1e-4


def test_standard_gamma_broadcasts_alpha_per_column() -> None:
    alpha = mx.array([0.5, 3.7, 20.0])
    g = np64(standard_gamma(mx.random.key(15), alpha, (N, 3)))
    for j, a in enumerate([0.5, 3.7, 20.0]):
        assert stats.kstest(g[:, j], stats.gamma(a).cdf).pvalue > 1e-4


def test_rounds_bound() -> None:
    """Marsaglia–Tsang acceptance is smallest at alpha = 1 (the boost uses alpha + 1);
    10 rounds leave an element unaccepted with probability < 1e-12."""

    def acceptance(a: float) -> float:
        d = a - 1 / 3
        c = 1 / math.sqrt(9 * d)
        f = lambda x: math.exp(d - d * (1 + c * x) ** 3 + 3 * d * math.log1p(c * x))  # noqa: E731
        return integrate.quad(f, -1 / c, np.inf, limit=200)[0] / math.sqrt(2 * math.pi)

    ps = [acceptance(a) for a in (1.0, 1.01, 1.5, 3.0, 30.0)]
    assert min(ps) == ps[0] and ps[0] > 0.95
    assert (1 - ps[0]) ** GAMMA_ROUNDS < 1e-12


def test_standard_beta_and_dirichlet_samplers() -> None:
    b = np64(standard_beta(mx.random.key(16), 0.7, 2.5, (N,)))
    assert stats.kstest(b, stats.beta(0.7, 2.5).cdf).pvalue > 1e-4
    # tiny parameters: strictly inside (0, 1), no NaN
    b = np64(standard_beta(mx.random.key(17), 1e-3, 2e-3, (N,)))
    assert ((b > 0) & (b < 1)).all()
    d = np64(standard_dirichlet(mx.random.key(18), mx.array([0.01, 0.02, 1.0]), (N, 3)))
    assert (d > 0).all() and np.abs(d.sum(-1) - 1).max() < 3 * 2.0**-22
    assert np.isfinite(np64(dirichlet.log_prob(mx.array(f32(d)), [0.01, 0.02, 1.0]))).all()
    # invalid concentration gives NaN draws
    assert np.isnan(np64(standard_gamma(mx.random.key(0), mx.array([-1.0, 0.0]), (2,)))).all()


# ------------------------------------------------------------ goodness of fit
def check_moments(x: np.ndarray, raw: list[float]) -> None:
    """Sample mean and variance within 5 standard errors of the exact ones.

    ``raw`` = E[X], E[X^2], E[X^3], E[X^4]; SE(mean) = sqrt(var/n) and
    SE(sample var) = sqrt((mu4 - var^2) / n), mu4 the central fourth moment.
    """
    m1, m2, m3, m4 = raw
    var = m2 - m1**2
    mu4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
    n = x.shape[0]
    assert abs(x.mean() - m1) < 5 * math.sqrt(var / n), (x.mean(), m1)
    assert abs(x.var() - var) < 5 * math.sqrt((mu4 - var**2) / n), (x.var(), var)


def _frozen_moments(dist: Any) -> list[float]:
    return [float(dist.moment(k)) for k in range(1, 5)]


GOF: list[tuple[Any, tuple[Any, ...], Callable[[np.ndarray], Any], list[float] | None]] = [
    (gamma, (3.7, 2.0), stats.gamma(3.7, scale=0.5).cdf, _frozen_moments(stats.gamma(3.7, 0, 0.5))),
    (gamma, (0.3, 0.1), stats.gamma(0.3, scale=10.0).cdf, _frozen_moments(stats.gamma(0.3, 0, 10))),
    (
        inv_gamma,
        (5.5, 2.0),
        stats.invgamma(5.5, scale=2).cdf,
        _frozen_moments(stats.invgamma(5.5, 0, 2)),
    ),
    (inv_gamma, (0.6, 1.0), stats.invgamma(0.6).cdf, None),
    (chi2, (4.5,), stats.chi2(4.5).cdf, _frozen_moments(stats.chi2(4.5))),
    (chi2, (0.3,), stats.chi2(0.3).cdf, _frozen_moments(stats.chi2(0.3))),
    (beta, (0.4, 2.5), stats.beta(0.4, 2.5).cdf, _frozen_moments(stats.beta(0.4, 2.5))),
    (beta, (50.0, 7.0), stats.beta(50, 7).cdf, _frozen_moments(stats.beta(50, 7))),
    (
        kumaraswamy,
        (2.0, 5.0),
        lambda x: kuma_cdf(x, 2.0, 5.0),
        [5.0 * special.beta(1 + k / 2.0, 5.0) for k in range(1, 5)],
    ),
    (kumaraswamy, (0.3, 0.6), lambda x: kuma_cdf(x, 0.3, 0.6), None),
    (
        beta_uniform,
        (0.6, 2.0, 5.0),
        lambda x: 0.6 * stats.beta(2, 5).cdf(x) + 0.4 * np.clip(x, 0, 1),
        [0.6 * stats.beta(2, 5).moment(k) + 0.4 / (k + 1) for k in range(1, 5)],
    ),
    (student_t, (6.5, 1.0, 2.0), stats.t(6.5, 1, 2).cdf, _frozen_moments(stats.t(6.5, 1, 2))),
    (student_t, (0.7, -3.0, 0.5), stats.t(0.7, -3, 0.5).cdf, None),
]


@pytest.mark.parametrize(("d", "params", "cdf", "raw"), GOF, ids=[g[0].name for g in GOF])
def test_goodness_of_fit(d: Any, params: tuple[Any, ...], cdf: Any, raw: Any) -> None:
    x = np64(d.sample(mx.random.key(21), *params, shape=(N,)))
    assert x.shape == (N,) and np.isfinite(x).all()
    assert stats.kstest(x, cdf).pvalue > 1e-4
    if raw is not None:
        check_moments(x, raw)


def test_dirichlet_goodness_of_fit() -> None:
    al = np.array([0.5, 2.0, 3.0])
    x = np64(dirichlet.sample(mx.random.key(22), mx.array(f32(al)), shape=(N,)))
    assert x.shape == (N, 3)
    n = al.sum()
    for i, a in enumerate(al):  # marginals are Beta(alpha_i, n - alpha_i)
        marg = stats.beta(a, n - a)
        assert stats.kstest(x[:, i], marg.cdf).pvalue > 1e-4
        check_moments(x[:, i], _frozen_moments(marg))
    # a batched call: row j of alpha drives column j
    alb = mx.array([[1.0, 1.0], [4.0, 0.5]])
    xb = np64(dirichlet.sample(mx.random.key(23), alb, shape=(N,)))
    assert xb.shape == (N, 2, 2)
    assert stats.kstest(xb[:, 0, 0], stats.beta(1, 1).cdf).pvalue > 1e-4
    assert stats.kstest(xb[:, 1, 0], stats.beta(4, 0.5).cdf).pvalue > 1e-4


def test_batched_sampling_per_element() -> None:
    a = mx.array([0.5, 3.0])
    r = mx.array([[1.0], [4.0]])
    x = np64(gamma.sample(mx.random.key(24), a, r, shape=(N,)))
    assert x.shape == (N, 2, 2)
    for i, rr in enumerate([1.0, 4.0]):
        for j, aa in enumerate([0.5, 3.0]):
            assert stats.kstest(x[:, i, j], stats.gamma(aa, scale=1 / rr).cdf).pvalue > 1e-4


def test_tiny_parameters_give_finite_samples() -> None:
    k = mx.random.key(25)
    for d, p in [
        (gamma, (1e-3, 1.0)),
        (inv_gamma, (1e-3, 1.0)),
        (chi2, (2e-3,)),
        (beta, (1e-3, 1e-3)),
        (kumaraswamy, (1e-3, 1e-3)),
        (student_t, (1e-3, 0.0, 1.0)),
    ]:
        x = np64(d.sample(k, *p, shape=(2000,)))
        assert np.isfinite(x).all(), d.name
        assert np.isfinite(np64(d.log_prob(mx.array(f32(x)), *p))).all(), d.name


# ------------------------------------------------------------------ log_prob grids
A_GRID = f32([1e-3, 0.01, 0.3, 0.5, 1.0, 1.7, 3.7, 9.99, 10.0, 10.5, 100.0, 1000.0, 1e4])
Q_GRID = np.array([1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999])


def test_gamma_log_prob_grid() -> None:
    r = f32([0.1, 1.0, 7.0])[:, None, None]
    a = A_GRID[None, :, None]
    x = f32(np.maximum(stats.gamma.ppf(Q_GRID, np64(a), scale=1 / np64(r)), 1e-30))
    assert_logprob_matches(
        "gamma", gamma.log_prob(mx.array(x), mx.array(a), mx.array(r)), [x, a, r]
    )
    xi = f32(1 / np64(x))
    got = inv_gamma.log_prob(mx.array(xi), mx.array(a), mx.array(r))
    assert_logprob_matches("inv_gamma", got, [xi, a, r])
    k = 2 * a
    xc = f32(np.maximum(stats.chi2.ppf(Q_GRID, np64(k)), 1e-30))
    assert_logprob_matches("chi2", chi2.log_prob(mx.array(xc), mx.array(k)), [xc, k])


def test_beta_log_prob_grid() -> None:
    b = f32([1e-3, 0.3, 1.0, 2.5, 50.0, 1e4])[:, None, None]
    a = A_GRID[None, :, None]
    q = np.array([1e-5, 1e-3, 0.1, 0.5, 0.9, 0.999, 1 - 1e-5])
    x = f32(np.clip(stats.beta.ppf(q, np64(a), np64(b)), 1e-30, 1 - 2**-24))
    assert_logprob_matches("beta", beta.log_prob(mx.array(x), mx.array(a), mx.array(b)), [x, a, b])
    th = f32([0.0, 0.3, 1.0])[:, None, None, None]
    got = beta_uniform.log_prob(mx.array(x), mx.array(th), mx.array(a), mx.array(b))
    assert_logprob_matches("beta_uniform", got, [x, th, a, b])


def test_kumaraswamy_log_prob_grid() -> None:
    a = f32([1e-3, 0.3, 1.0, 2.0, 50.0])[:, None, None]
    b = f32([0.01, 0.5, 1.0, 3.0, 100.0])[None, :, None]
    q = np.array([1e-5, 1e-3, 0.1, 0.5, 0.9, 0.999])
    # inverse CDF in float64
    x = f32(np.clip((-np.expm1(np.log1p(-q) / np64(b))) ** (1 / np64(a)), 1e-30, 1 - 2**-24))
    got = kumaraswamy.log_prob(mx.array(x), mx.array(a), mx.array(b))
    assert_logprob_matches("kumaraswamy", got, [x, a, b])


def test_kumaraswamy_density_integrates_to_one() -> None:
    for a, b in [(0.5, 0.5), (2.0, 5.0), (7.0, 0.8)]:
        xs = np.linspace(0, 1, 20001)[1:-1]
        lp = np64(kumaraswamy.log_prob(mx.array(f32(xs)), a, b))
        np.testing.assert_allclose(lp, kuma_logpdf(f32(xs), a, b), rtol=1e-5, atol=1e-5)
        dens = lambda t, a=a, b=b: math.exp(kuma_logpdf(t, a, b))  # noqa: E731
        assert abs(integrate.quad(dens, 0, 1)[0] - 1) < 1e-6


def test_student_t_log_prob_grid() -> None:
    nu = np.concatenate([A_GRID, f32([1e6])])[:, None, None]
    for loc, sc in [(0.0, 1.0), (3.0, 0.01), (-2.0, 50.0)]:
        x = f32(stats.t.ppf(np.concatenate([Q_GRID, [1e-3]]), np64(nu), loc, sc))
        x = f32(np.clip(np.nan_to_num(x), -3e38, 3e38))
        got = student_t.log_prob(mx.array(x), mx.array(nu), loc, sc)
        assert_logprob_matches("student_t", got, [x, nu, f32(loc), f32(sc)])
    # far tails: |z| beyond 1e15 sqrt(df) (where z^2 would overflow float32)
    got = np64(student_t.log_prob(mx.array(f32([1e30, -1e37])), 2.0, 0.0, 1.0))
    np.testing.assert_allclose(got, stats.t.logpdf(np64(f32([1e30, -1e37])), 2.0), rtol=1e-6)


def test_dirichlet_log_prob_grid() -> None:
    rng = np.random.default_rng(0)
    for al in [[1, 1, 1], [0.01, 0.5, 3], [100, 1000, 50], [1e4, 1e4, 2e4], [0.3] * 5, [2.0]]:
        al = f32(al)
        x = f32(np.maximum(rng.dirichlet(np64(al), size=40), 1e-30))
        x = x / x.sum(-1, keepdims=True)  # a float32-normalised point
        got = np64(dirichlet.log_prob(mx.array(x), mx.array(al)))
        ref = dir_logpdf(x, al)
        assert got.shape == (40,)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=str(al))
    # batch broadcasting: value (4, 1, 3) against alpha (2, 3)
    al2 = f32([[1.0, 2.0, 3.0], [0.5, 0.5, 5.0]])
    x = f32(rng.dirichlet([1, 1, 1], size=4))[:, None, :]
    got = np64(dirichlet.log_prob(mx.array(x), mx.array(al2)))
    assert got.shape == (4, 2)
    for i in range(4):
        for j in range(2):
            np.testing.assert_allclose(got[i, j], dir_logpdf(x[i, 0], al2[j])[0], rtol=1e-5)


def test_closed_forms_and_docstring_values() -> None:
    assert abs(float(gamma.log_prob(1.0, 2.0, 3.0)) - (2 * math.log(3) - 3)) < 1e-6
    assert abs(float(student_t.log_prob(0.0, 1.0, 0.0, 1.0)) + math.log(math.pi)) < 1e-6
    assert abs(float(beta.log_prob(0.3, 1.0, 1.0))) < 2e-6


# -------------------------------------------------------------- support and params
def test_support_edges() -> None:
    inf = math.inf
    # gamma / chi2 at 0: +inf (shape < 1), log(rate) (shape == 1), -inf (shape > 1)
    got = np64(gamma.log_prob(0.0, mx.array([0.5, 1.0, 2.0]), 3.0))
    np.testing.assert_allclose(got, [inf, math.log(3.0), -inf])
    x = mx.array([0.0, 0.0, 0.0, 1.0, 1.0])
    got = np64(beta.log_prob(x, mx.array([0.5, 1, 2, 2, 2]), mx.array([2.0, 3, 2, 1, 0.5])))
    np.testing.assert_allclose(got, [inf, math.log(3.0), -inf, math.log(2.0), inf])
    got = np64(kumaraswamy.log_prob(mx.array([0.0, 1.0]), mx.array([1.0, 3.0]), 1.0))
    np.testing.assert_allclose(got, [0.0, math.log(3.0)], atol=1e-7)
    # beta_uniform at an infinite Beta density: +inf unless theta = 0
    got = np64(beta_uniform.log_prob(0.0, mx.array([0.0, 0.5]), 0.5, 2.0))
    np.testing.assert_allclose(got, [0.0, inf])
    assert float(inv_gamma.log_prob(0.0, 2.0, 1.0)) == -inf


OUTSIDE: list[tuple[Any, tuple[Any, ...], list[float]]] = [
    (gamma, (2.0, 1.0), [-1.0, -1e-30, math.inf, -math.inf, math.nan]),
    (inv_gamma, (2.0, 1.0), [-1.0, 0.0, math.inf, math.nan]),
    (chi2, (3.0,), [-0.5, math.inf, math.nan]),
    (beta, (2.0, 3.0), [-0.1, 1.1, 1.0 + 2**-23, math.inf, math.nan]),
    (kumaraswamy, (2.0, 3.0), [-0.1, 1.5, math.nan]),
    (beta_uniform, (0.5, 2.0, 3.0), [-0.1, 1.1, math.inf, math.nan]),
    (student_t, (3.0, 0.0, 1.0), [math.inf, -math.inf, math.nan]),
]


@pytest.mark.parametrize(("d", "params", "xs"), OUTSIDE, ids=[o[0].name for o in OUTSIDE])
def test_out_of_support_is_neg_inf(d: Any, params: tuple[Any, ...], xs: list[float]) -> None:
    got = np64(d.log_prob(mx.array(f32(xs)), *params))
    assert (got == -np.inf).all(), got


def test_dirichlet_simplex_tolerance() -> None:
    al = [2.0, 3.0, 4.0]
    tol = 3 * 2.0**-22
    base = f32([0.2, 0.3, 0.5])
    lp = lambda x: float(dirichlet.log_prob(mx.array(f32(x)), al))  # noqa: E731
    assert math.isfinite(lp(base))
    assert math.isfinite(lp(base * (1 + 0.9 * tol)))
    assert lp(base * (1 + 2 * tol)) == -math.inf
    assert lp(base * (1 - 2 * tol)) == -math.inf
    assert lp([0.5, 0.6, -0.1]) == -math.inf
    assert lp([0.5, 0.5, math.nan]) == -math.inf
    assert lp([0.5, 0.5, math.inf]) == -math.inf
    # a zero component: density limit (alpha_i = 1 keeps it finite)
    assert float(dirichlet.log_prob(mx.array([0.0, 0.4, 0.6]), [1.0, 2.0, 2.0])) == pytest.approx(
        float(np.log(special.gamma(5.0) / special.gamma(2.0) ** 2 * 0.4 * 0.6)), rel=1e-5
    )
    assert float(dirichlet.log_prob(mx.array([0.0, 0.4, 0.6]), [0.5, 2.0, 2.0])) == math.inf
    # the log density moves with sum(x) only by O(K (sum - 1)), not sum(alpha) (sum - 1)
    big = [1e4, 1e4, 2e4]
    x = f32([0.25, 0.25, 0.5])
    d1 = float(dirichlet.log_prob(mx.array(x), big))
    d2 = float(dirichlet.log_prob(mx.array(x * f32(1 + 2**-22)), big))
    assert abs(d1 - d2) < 1e-5


INVALID_PLAIN: list[tuple[Any, tuple[Any, ...]]] = [
    (gamma, (0.0, 1.0)),
    (gamma, (1.0, -2.0)),
    (gamma, (math.nan, 1.0)),
    (gamma, (math.inf, 1.0)),
    (inv_gamma, (-1.0, 1.0)),
    (inv_gamma, (1.0, 0.0)),
    (chi2, (0.0,)),
    (beta, (0.0, 1.0)),
    (beta, (1.0, -1.0)),
    (kumaraswamy, (-1.0, 1.0)),
    (kumaraswamy, (1.0, 0.0)),
    (beta_uniform, (1.5, 1.0, 1.0)),
    (beta_uniform, (-0.1, 1.0, 1.0)),
    (beta_uniform, (0.5, 0.0, 1.0)),
    (student_t, (0.0, 0.0, 1.0)),
    (student_t, (1.0, math.inf, 1.0)),
    (student_t, (1.0, 0.0, -1.0)),
    (dirichlet, ([1.0, 0.0, 2.0],)),
    (dirichlet, ([[1.0, 2.0], [1.0, -1.0]],)),
    (dirichlet, (2.0,)),
]


@pytest.mark.parametrize(
    ("d", "params"), INVALID_PLAIN, ids=[f"{d.name}{p}" for d, p in INVALID_PLAIN]
)
def test_invalid_plain_params_raise(d: Any, params: tuple[Any, ...]) -> None:
    value = mx.array([0.3, 0.3, 0.4]) if d is dirichlet else 0.5
    with pytest.raises(ValueError, match=d.name):
        d.log_prob(value, *params)
    with pytest.raises(ValueError, match=d.name):
        d.sample(mx.random.key(0), *params)


# array parameters with one valid and several invalid entries (first entry valid)
INVALID_ARRAY: list[tuple[Any, Any, tuple[Any, ...]]] = [
    (gamma, 0.5, (mx.array([2.0, 0.0, -1.0, math.nan, math.inf]), mx.array(1.0))),
    (gamma, 0.5, (mx.array(2.0), mx.array([1.0, 0.0, -1.0, math.nan, math.inf]))),
    (inv_gamma, 0.5, (mx.array([2.0, 0.0, -1.0, math.nan]), mx.array(1.0))),
    (inv_gamma, 0.5, (mx.array(2.0), mx.array([1.0, 0.0, -1.0, math.inf]))),
    (chi2, 0.5, (mx.array([2.0, 0.0, -1.0, math.nan]),)),
    (beta, 0.5, (mx.array([2.0, 0.0, -1.0, math.nan]), mx.array(1.0))),
    (beta, 0.5, (mx.array(2.0), mx.array([2.0, 0.0, -1.0, math.inf]))),
    (kumaraswamy, 0.5, (mx.array([2.0, 0.0, -1.0, math.nan]), mx.array(1.0))),
    (kumaraswamy, 0.5, (mx.array(2.0), mx.array([2.0, 0.0, -1.0, math.inf]))),
    (beta_uniform, 0.5, (mx.array([0.3, -0.1, 1.5, math.nan]), mx.array(2.0), mx.array(2.0))),
    (beta_uniform, 0.5, (mx.array(0.3), mx.array([2.0, 0.0, -1.0, math.nan]), mx.array(2.0))),
    (student_t, 0.5, (mx.array([2.0, 0.0, -1.0, math.nan]), mx.array(0.0), mx.array(1.0))),
    (student_t, 0.5, (mx.array(2.0), mx.array([0.0, math.inf, math.nan]), mx.array(1.0))),
    (student_t, 0.5, (mx.array(2.0), mx.array(0.0), mx.array([1.0, 0.0, -1.0, math.inf]))),
    (dirichlet, mx.array([0.2, 0.8]), (mx.array([[1.0, 2.0], [0.0, 1.0], [-1.0, 1.0]]),)),
]


@pytest.mark.parametrize(
    ("d", "x", "params"), INVALID_ARRAY, ids=[i[0].name for i in INVALID_ARRAY]
)
def test_invalid_array_params_give_neg_inf_without_nan(
    d: Any, x: Any, params: tuple[Any, ...]
) -> None:
    lp = np64(d.log_prob(x, *params))
    assert np.isfinite(lp[0]) and (lp[1:] == -np.inf).all(), lp
    for j, p in enumerate(params):
        if p.ndim == 0 or (d is dirichlet and p.ndim == 1):
            continue

        def f(q: mx.array, j: int = j) -> mx.array:
            ps = list(params)
            ps[j] = q
            return mx.sum(mx.where(mx.isfinite(d.log_prob(x, *ps)), d.log_prob(x, *ps), 0.0))

        g = np64(mx.grad(f)(p))
        assert not np.isnan(g).any(), (d.name, j, g)
    # sampling with invalid array parameters gives NaN there, a number elsewhere
    s = np64(d.sample(mx.random.key(1), *params))
    if d is dirichlet:
        assert np.isfinite(s[0]).all() and np.isnan(s[1:]).all()
    else:
        assert np.isfinite(s[0]) and np.isnan(s[1:]).all()


# ------------------------------------------------------------------------- shapes
def _batch(d: Any, params: tuple[Any, ...]) -> tuple[int, ...]:
    if d is dirichlet:
        return tuple(np.shape(params[0]))
    return tuple(np.broadcast_shapes(*[tuple(np.shape(p)) for p in params]))


@pytest.mark.parametrize("d", ALL, ids=IDS)
def test_sample_shapes_and_dtypes(d: Any) -> None:
    key = mx.random.key(3)
    for params in examples(d):
        full = _batch(d, params)
        for shape in [(), (4,), (2, 3)]:
            x = d.sample(key, *params, shape=shape)
            assert x.shape == shape + full and x.dtype == mx.float32
            lp = d.log_prob(x, *params)
            expect = shape + (full[:-1] if d is dirichlet else full)
            assert lp.shape == expect
            assert np.isfinite(np64(lp)).all(), (d.name, params)


@pytest.mark.parametrize("d", ALL, ids=IDS)
def test_vmap_and_compile(d: Any) -> None:
    params = examples(d)[-1]
    keys = mx.random.split(mx.random.key(4), 3)

    def f(k: mx.array) -> mx.array:
        out: mx.array = d.sample(k, *params, shape=(2,))
        return out

    v = np64(mx.vmap(f)(keys))
    c = np64(mx.compile(f)(keys[1]))
    e = np64(f(keys[1]))
    assert v.shape == (3, *e.shape)
    np.testing.assert_allclose(v[1], e, rtol=1e-6)
    np.testing.assert_allclose(c, e, rtol=1e-5)
    # log_prob under compile and vmap too
    lp = mx.compile(lambda x: d.log_prob(x, *params))(mx.array(f32(e)))
    np.testing.assert_allclose(np64(lp), np64(d.log_prob(mx.array(f32(e)), *params)), rtol=1e-5)
    lv = mx.vmap(lambda x: d.log_prob(x, *params))(mx.array(f32(v)))
    assert lv.shape[0] == 3


@pytest.mark.parametrize("d", ALL, ids=IDS)
def test_gfi_laws(d: Any) -> None:
    for params in examples(d):
        check_gfi_laws(d, params, max_examples=3)


# ---------------------------------------------------------------------- gradients
def _fd(fn: Callable[..., Any], args: list[float], j: int) -> float:
    h = 1e-6 * max(1.0, abs(args[j]))
    up, dn = list(args), list(args)
    up[j] += h
    dn[j] -= h
    return float((fn(*up) - fn(*dn)) / (2 * h))


GRAD_CASES: list[tuple[Any, list[float]]] = [
    (gamma, [0.7, 2.5, 1.5]),
    (gamma, [0.01, 0.3, 4.0]),
    (gamma, [1020.0, 1000.0, 1.0]),
    (inv_gamma, [0.4, 2.0, 1.5]),
    (inv_gamma, [0.01, 40.0, 0.5]),
    (chi2, [2.2, 3.0]),
    (chi2, [0.05, 0.5]),
    (beta, [0.3, 2.0, 3.0]),
    (beta, [0.01, 0.5, 0.3]),
    (beta, [0.55, 500.0, 400.0]),
    (beta, [0.4, 1.0, 1.0]),
    (kumaraswamy, [0.3, 2.0, 3.0]),
    (kumaraswamy, [0.9, 0.5, 0.4]),
    (beta_uniform, [0.3, 0.4, 2.0, 3.0]),
    (beta_uniform, [0.2, 0.0, 2.0, 3.0]),
    (beta_uniform, [0.2, 1.0, 0.5, 3.0]),
    (student_t, [1.3, 3.0, 0.5, 2.0]),
    (student_t, [-40.0, 0.5, 0.0, 1.0]),
    (student_t, [0.7, 1e5, 0.2, 0.3]),
]


@pytest.mark.parametrize(("d", "args"), GRAD_CASES, ids=[f"{d.name}{a}" for d, a in GRAD_CASES])
def test_grad_matches_finite_differences(d: Any, args: list[float]) -> None:
    """mx.grad (float32) against float64 central differences of scipy's log density.

    Tolerance 2e-4 relative + 2e-4 absolute: float32 gradients carry rounding of the
    terms they combine (e.g. log a ~ 7 and digamma ~ 7 for a = 1000, whose difference is
    the 1e-3-sized derivative), a few 1e-7 relative each.
    """
    ref_fn = REF[d.name]
    arrs = [mx.array(a) for a in args]
    grads = mx.grad(lambda *xs: d.log_prob(*xs), argnums=tuple(range(len(args))))(*arrs)
    a32 = [float(np.float32(a)) for a in args]
    for j, g in enumerate(grads):
        expect = _fd(lambda *xs: ref_fn(*xs), a32, j)
        assert float(g) == pytest.approx(expect, rel=2e-4, abs=2e-4), (d.name, j, float(g), expect)


def test_dirichlet_grad() -> None:
    al = np.array([0.5, 2.0, 30.0])
    x = np.array([0.1, 0.3, 0.6])
    gx, ga = mx.grad(lambda x, a: dirichlet.log_prob(x, a), argnums=(0, 1))(
        mx.array(f32(x)), mx.array(f32(al))
    )
    x64, a64 = np64(f32(x)), np64(f32(al))
    ref = lambda xx, aa: dir_logpdf(xx, aa)[0]  # noqa: E731
    h = 1e-6
    for i in range(3):
        e = np.eye(3)[i] * h
        fx = (ref(x64 + e, a64) - ref(x64 - e, a64)) / (2 * h)
        fa = (ref(x64, a64 + e) - ref(x64, a64 - e)) / (2 * h)
        assert float(gx[i]) == pytest.approx(fx, rel=2e-4, abs=2e-4)
        assert float(ga[i]) == pytest.approx(fa, rel=2e-4, abs=2e-4)


def test_reparam() -> None:
    for d in ALL:
        if d is not kumaraswamy:
            assert not d.has_reparam
            with pytest.raises(TypeError):
                d.reparam_sample(mx.random.key(0), *examples(d)[0])
    assert kumaraswamy.has_reparam
    key = mx.random.key(5)

    def s(a: mx.array, b: mx.array) -> mx.array:
        out: mx.array = mx.sum(kumaraswamy.reparam_sample(key, a, b, shape=(50,)))
        return out

    ga, gb = mx.grad(s, argnums=(0, 1))(mx.array(2.0), mx.array(3.0))
    u = np64(mx.random.uniform(shape=(50,), key=key))

    def inv(a: float, b: float) -> float:
        return float(np.sum((-np.expm1(np.log1p(-u) / b)) ** (1 / a)))

    assert float(ga) == pytest.approx(_fd(inv, [2.0, 3.0], 0), rel=1e-3)
    assert float(gb) == pytest.approx(_fd(inv, [2.0, 3.0], 1), rel=1e-3)
    # the reparameterised draws are the sampler's draws
    np.testing.assert_allclose(
        np64(kumaraswamy.sample(key, 2.0, 3.0, shape=(50,))),
        (-np.expm1(np.log1p(-u) / 3.0)) ** 0.5,
        rtol=1e-5,
    )


def test_public_names() -> None:
    for name in gf.__all__:
        assert hasattr(gf, name)
    for d in ALL:
        assert getattr(gf, d.name) is d
        assert 2 <= len(examples(d)) <= 3
        assert any(any(isinstance(p, mx.array) and p.ndim >= 1 for p in ps) for ps in examples(d))


def test_spill_slots_bound() -> None:
    # More proposals left undecided than slots must be rarer than 1e-14 at the worst
    # per-round probability (alpha = 1: a ziggurat slow path or a failed squeeze,
    # 0.0858), for small and large batches.
    for n in (1, 7, 100, 10_000, 1_000_000):
        q = spill_slots(n)
        assert 1 <= q <= n
        assert q == n or stats.binom(n, 0.0858).sf(q) < 1e-14


@pytest.mark.parametrize(
    "alpha",
    [2.5, 1.0, 0.3, mx.array([[0.3], [1.0], [2.5], [40.0]])],
    ids=["2.5", "1", "0.3", "per-element"],
)
def test_log_standard_gamma_eager_equals_traced(alpha: Any) -> None:
    # Eagerly the later rounds stop once every spilled slot has accepted; compiled and
    # vmapped sampling run them all. The draws must be the same.
    def draw(k: mx.array) -> mx.array:
        return log_standard_gamma(k, alpha, (4, 3000))

    key = mx.random.key(31)
    np.testing.assert_array_equal(np.array(draw(key)), np.array(mx.compile(draw)(key)))
    keys = mx.random.split(key, 3)
    np.testing.assert_array_equal(
        np.array(mx.stack([draw(k) for k in keys])), np.array(mx.vmap(draw)(keys))
    )


def test_gamma_large_batch_with_spilled_rounds_fits() -> None:
    # alpha = 1 rejects ~4.8% of first proposals: with 2e5 draws ~9700 go through the
    # spilled slots; per-element alphas look their constants up by owner.
    x = np64(standard_gamma(mx.random.key(32), 1.0, (200_000,)))
    assert stats.kstest(x, stats.gamma(1.0).cdf).pvalue > 1e-4
    alphas = np.array([0.5, 1.0, 3.0, 17.0], dtype=np.float32)
    x = np64(standard_gamma(mx.random.key(33), mx.array(alphas), (50_000, 4)))
    for j, a in enumerate(alphas.astype(np.float64)):
        assert stats.kstest(x[:, j], stats.gamma(a).cdf).pvalue > 1e-4
        se = math.sqrt(a / 50_000)
        assert abs(x[:, j].mean() - a) < 5 * se
