"""Table-driven check of every log density against scipy.stats, for every distribution
scipy has.

Each row maps one of our distributions onto scipy's parameterisation and gives a grid
of parameter tuples; values are a grid of quantiles of the scipy distribution (the
whole support, tails included) for continuous ones and every integer between the
1e-4 and 1 − 1e-4 quantiles for discrete ones, plus points outside the support (which
must give ``-inf``). The whole grid is one broadcasting call per distribution:
parameters of shape ``[P, 1]`` against values of shape ``[P, V]``.

Both sides see the same float32 numbers: values and parameters are rounded to float32
first and scipy evaluates the rounded numbers in float64, so the comparison measures
our float32 arithmetic only. Tolerance: ``|ours − scipy| ≤ atol + rtol·|scipy|`` with
atol = rtol = 1e-5 everywhere — every row, including the lgamma-heavy ones at large
parameters (gamma shape 150, beta(200, 100), binomial n = 1000, poisson rate 1e4,
student-t df 1e4) and the matrix distributions, meets it. Not in scipy (and so not
here): ``kumaraswamy``, ``beta_uniform``, ``delta``, ``piecewise_uniform`` (their own
test files check them against closed forms).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from scipy import special as sp
from scipy import stats

import genmlx.dists as gd

QS = np.array([1e-4, 1e-3, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1 - 1e-4])
F32_EPS = 2.0**-23


def f32(x: Any) -> np.ndarray:
    """Round to float32, return as float64 (what both sides see)."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def wrap(d: np.ndarray) -> np.ndarray:
    """Angle difference wrapped into [−π, π)."""
    return np.mod(d + np.pi, 2 * np.pi) - np.pi


def on_circle(x: np.ndarray, lp: np.ndarray) -> np.ndarray:
    """``lp`` on [−π, π] (compared in float32: π rounds up), ``-inf`` outside."""
    pi32 = float(np.float32(np.pi))
    return np.where((x >= -pi32) & (x <= pi32), lp, -np.inf)


@dataclass
class Row:
    """One distribution: ours, scipy's log density, a parameter grid and tolerances."""

    name: str
    logpdf: Callable[..., Any]  # (x, *params) -> float64 array, params broadcast
    params: list[tuple[float, ...]]
    frozen: Callable[..., Any] | None = None  # (*params) -> scipy frozen dist (ppf grid)
    discrete: bool = False
    outside: list[float] = field(default_factory=list)  # values outside every support
    rtol: float = 1e-5  # widen only with a comment saying why float32 forces it
    atol: float = 1e-5


ROWS: list[Row] = [
    # ---------------------------------------------------------------- continuous
    Row(
        "normal",
        lambda x, m, s: stats.norm.logpdf(x, m, s),
        [(0.0, 1.0), (-3.0, 0.01), (100.0, 30.0), (0.5, 1e3)],
        lambda m, s: stats.norm(m, s),
    ),
    Row(
        "uniform",
        lambda x, lo, hi: stats.uniform.logpdf(x, lo, hi - lo),
        [(0.0, 1.0), (-5.0, 3.0), (10.0, 10.5)],
        lambda lo, hi: stats.uniform(lo, hi - lo),
        outside=[-1e3, 1e3],
    ),
    Row(
        "exponential",
        lambda x, r: stats.expon.logpdf(x, scale=1 / r),
        [(1.0,), (0.01,), (250.0,)],
        lambda r: stats.expon(scale=1 / r),
        outside=[-1.0, -1e-3],
    ),
    Row(
        "laplace",
        lambda x, m, b: stats.laplace.logpdf(x, m, b),
        [(0.0, 1.0), (2.0, 0.1), (-50.0, 20.0)],
        lambda m, b: stats.laplace(m, b),
    ),
    Row(
        "cauchy",
        lambda x, m, s: stats.cauchy.logpdf(x, m, s),
        [(0.0, 1.0), (3.0, 0.01), (-10.0, 50.0)],
        lambda m, s: stats.cauchy(m, s),
    ),
    Row(
        "logistic",
        lambda x, m, s: stats.logistic.logpdf(x, m, s),
        [(0.0, 1.0), (5.0, 0.2), (-1.0, 30.0)],
        lambda m, s: stats.logistic(m, s),
    ),
    Row(
        "gumbel",
        lambda x, m, s: stats.gumbel_r.logpdf(x, m, s),
        [(0.0, 1.0), (5.0, 0.2), (-1.0, 30.0)],
        lambda m, s: stats.gumbel_r(m, s),
    ),
    Row(
        "half_normal",
        lambda x, s: stats.halfnorm.logpdf(x, scale=s),
        [(1.0,), (0.05,), (40.0,)],
        lambda s: stats.halfnorm(scale=s),
        outside=[-1.0, -1e-4],
    ),
    Row(
        "half_cauchy",
        lambda x, s: stats.halfcauchy.logpdf(x, scale=s),
        [(1.0,), (0.05,), (40.0,)],
        lambda s: stats.halfcauchy(scale=s),
        outside=[-1.0, -1e-4],
    ),
    Row(
        "log_normal",
        lambda x, m, s: stats.lognorm.logpdf(x, s, scale=np.exp(m)),
        [(0.0, 1.0), (2.0, 0.1), (-1.0, 2.5)],
        lambda m, s: stats.lognorm(s, scale=np.exp(m)),
        outside=[-1.0, 0.0],
    ),
    Row(
        "weibull",
        lambda x, k, lam: stats.weibull_min.logpdf(x, k, scale=lam),
        [(1.0, 1.0), (0.5, 2.0), (3.5, 0.7), (20.0, 5.0)],
        lambda k, lam: stats.weibull_min(k, scale=lam),
        outside=[-1.0],
    ),
    Row(
        "pareto",
        lambda x, xm, a: stats.pareto.logpdf(x, a, scale=xm),
        [(1.0, 1.0), (0.5, 3.0), (10.0, 0.5)],
        lambda xm, a: stats.pareto(a, scale=xm),
        outside=[-1.0, 0.0, 0.25],
    ),
    Row(
        "truncated_normal",
        lambda x, m, s, lo, hi: stats.truncnorm.logpdf(
            x, (lo - m) / s, (hi - m) / s, loc=m, scale=s
        ),
        [(0.0, 1.0, -1.0, 2.0), (1.0, 0.5, 2.0, 3.0), (0.0, 1.0, 5.0, 9.0), (0.0, 2.0, -1.0, 1.0)],
        lambda m, s, lo, hi: stats.truncnorm((lo - m) / s, (hi - m) / s, loc=m, scale=s),
        outside=[-20.0, 20.0],
    ),
    Row(
        "von_mises",
        # ours lives on [−π, π] (−inf outside), 2π-periodic in mu; scipy's vonmises
        # density is 2π-periodic: compare at the wrapped difference, inside [−π, π]
        lambda x, m, k: on_circle(x, stats.vonmises.logpdf(wrap(x - m), k)),
        [(0.0, 1.0), (0.5, 0.01), (-2.0, 30.0), (3.0, 500.0)],
        None,
        outside=[-4.0, 4.0],
    ),
    Row(
        "wrapped_cauchy",
        # scipy's wrapcauchy lives on [0, 2π) around loc; ours on [−π, π]: same density
        # as a 2π-periodic function, evaluated at (x − mu) mod 2π
        lambda x, m, r: on_circle(x, stats.wrapcauchy.logpdf(np.mod(x - m, 2 * np.pi), r)),
        [(0.0, 0.3), (1.0, 0.9), (-2.0, 0.01)],
        None,
        outside=[-4.0, 4.0],
    ),
    # ---------------------------------------------------------------- gamma family
    Row(
        "gamma",
        lambda x, a, r: stats.gamma.logpdf(x, a, scale=1 / r),
        [(1.0, 1.0), (0.3, 2.0), (5.0, 0.5), (150.0, 10.0)],
        lambda a, r: stats.gamma(a, scale=1 / r),
        outside=[-1.0],
    ),
    Row(
        "inv_gamma",
        lambda x, a, s: stats.invgamma.logpdf(x, a, scale=s),
        [(2.0, 1.0), (0.5, 3.0), (40.0, 10.0)],
        lambda a, s: stats.invgamma(a, scale=s),
        outside=[-1.0],
    ),
    Row(
        "chi2",
        lambda x, df: stats.chi2.logpdf(x, df),
        [(1.0,), (4.0,), (0.5,), (80.0,)],
        lambda df: stats.chi2(df),
        outside=[-1.0],
    ),
    Row(
        "beta",
        lambda x, a, b: stats.beta.logpdf(x, a, b),
        [(2.0, 3.0), (0.5, 0.5), (0.1, 5.0), (200.0, 100.0)],
        lambda a, b: stats.beta(a, b),
        outside=[-0.5, 1.5],
    ),
    Row(
        "student_t",
        lambda x, df, m, s: stats.t.logpdf(x, df, m, s),
        [(3.0, 0.0, 1.0), (0.5, 2.0, 0.1), (30.0, -5.0, 4.0), (1e4, 0.0, 1.0)],
        lambda df, m, s: stats.t(df, m, s),
    ),
    # ---------------------------------------------------------------- discrete
    Row(
        "bernoulli",
        lambda x, p: stats.bernoulli.logpmf(x, p),
        [(0.3,), (1e-4,), (0.999,)],
        None,
        discrete=True,
    ),
    Row(
        "poisson",
        lambda x, r: stats.poisson.logpmf(x, r),
        [(3.0,), (0.01,), (40.0,), (1e4,)],
        lambda r: stats.poisson(r),
        discrete=True,
        outside=[-1.0, 2.5],
    ),
    Row(
        "geometric",
        # ours counts failures before the first success; scipy's geom counts trials
        lambda x, p: stats.geom.logpmf(x + 1, p),
        [(0.3,), (0.01,), (0.95,)],
        lambda p: stats.geom(p, loc=-1),
        discrete=True,
        outside=[-1.0, 2.5],
    ),
    Row(
        "binomial",
        lambda x, n, p: stats.binom.logpmf(x, n, p),
        [(10.0, 0.3), (100.0, 0.01), (1000.0, 0.5), (5.0, 0.999)],
        lambda n, p: stats.binom(n, p),
        discrete=True,
        outside=[-1.0, 2.5],
    ),
    Row(
        "neg_binomial",
        lambda x, r, p: stats.nbinom.logpmf(x, r, p),
        [(3.0, 0.4), (0.5, 0.9), (50.0, 0.2), (1.0, 0.01)],
        lambda r, p: stats.nbinom(r, p),
        discrete=True,
        outside=[-1.0, 2.5],
    ),
    Row(
        "uniform_discrete",
        lambda x, lo, hi: stats.randint.logpmf(x, lo, hi + 1),
        [(1.0, 6.0), (-3.0, 3.0), (0.0, 1000.0)],
        lambda lo, hi: stats.randint(lo, hi + 1),
        discrete=True,
        outside=[-100.0, 2000.0, 2.5],
    ),
    Row(
        "beta_binomial",
        lambda x, n, a, b: stats.betabinom.logpmf(x, n, a, b),
        [(10.0, 2.0, 3.0), (50.0, 0.5, 0.5), (200.0, 30.0, 5.0)],
        lambda n, a, b: stats.betabinom(n, a, b),
        discrete=True,
        outside=[-1.0, 2.5],
    ),
    Row(
        "zipf",
        lambda x, s, n: stats.zipfian.logpmf(x, s, n),
        [(1.1, 100.0), (0.5, 10.0), (2.0, 1000.0)],
        lambda s, n: stats.zipfian(s, n),
        discrete=True,
        outside=[0.0, -1.0, 2.5],
    ),
]


def _values(row: Row, p: tuple[float, ...]) -> np.ndarray:
    if row.name == "bernoulli":
        return np.array([0.0, 1.0])
    if row.name in ("von_mises", "wrapped_cauchy"):
        return np.linspace(-np.pi, np.pi, 13)
    assert row.frozen is not None
    d = row.frozen(*p)
    if row.discrete:
        lo, hi = d.ppf(1e-4), d.ppf(1 - 1e-4)
        pts = np.unique(np.round(np.linspace(lo, hi, 40)))
        return pts.astype(np.float64)
    return np.asarray(d.ppf(QS), dtype=np.float64)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_log_prob_matches_scipy(row: Row) -> None:
    dist = getattr(gd, row.name)
    grids = [_values(row, p) for p in row.params]
    width = max(len(g) for g in grids) + len(row.outside)
    # pad every row of the [P, V] value grid with its own last value
    vals = np.stack(
        [
            np.concatenate([g, row.outside, np.full(width - len(g) - len(row.outside), g[-1])])
            for g in grids
        ]
    )
    pars = [f32(np.array([p[i] for p in row.params]))[:, None] for i in range(len(row.params[0]))]
    if row.name == "bernoulli":
        x_ours: mx.array = mx.array(vals.astype(bool))
    elif row.discrete:
        x_ours = mx.array(vals.astype(np.float32)).astype(mx.int32)
        x_ours = mx.where(
            mx.array(vals != np.round(vals)),
            mx.array(vals, dtype=mx.float32),
            x_ours.astype(mx.float32),
        )  # keep 2.5 non-integer
    else:
        x_ours = mx.array(vals.astype(np.float32))
    xs = f32(vals)
    ours = np.array(
        dist.log_prob(x_ours, *[mx.array(p.astype(np.float32)) for p in pars]),
        dtype=np.float64,
    )
    with np.errstate(all="ignore"):
        ref = np.asarray(row.logpdf(xs, *pars), dtype=np.float64)
    assert ours.shape == ref.shape
    assert not np.isnan(ours).any(), f"NaN at {xs[np.isnan(ours)]}"
    neg_inf = np.isneginf(ref)
    bad_inf = np.isneginf(ours) != neg_inf
    assert not bad_inf.any(), (
        f"-inf mismatch at values {xs[bad_inf]}: ours {ours[bad_inf]}, scipy {ref[bad_inf]}"
    )
    pos_inf = np.isposinf(ref)  # e.g. beta(0.5, 0.5) at x = 1, where float32 rounds to
    assert np.array_equal(np.isposinf(ours), pos_inf), "+inf mismatch"  # the boundary
    fin = ~neg_inf & ~pos_inf
    err = np.abs(ours[fin] - ref[fin])
    bound = row.atol + row.rtol * np.abs(ref[fin])
    worst = int(np.argmax(err - bound))
    assert np.all(err <= bound), (
        f"{row.name}: |ours − scipy| = {err[worst]:.3g} > {bound[worst]:.3g} at value "
        f"{xs[fin][worst]!r}, params row {np.argwhere(fin)[worst][0]} "
        f"({[float(p[np.argwhere(fin)[worst][0], 0]) for p in pars]}): ours {ours[fin][worst]!r}, "
        f"scipy {ref[fin][worst]!r}"
    )


# --------------------------------------------------------------------------- vector/matrix
def _probs(k: int, seed: int) -> np.ndarray:
    w = np.random.default_rng(seed).uniform(0.2, 1.0, size=k)
    return f32(w / w.sum())


def test_categorical_matches_scipy_multinomial_with_one_trial() -> None:
    # scipy has no categorical; Multinomial(1, probs) at the one-hot vector is the same
    for probs in (_probs(3, 0), _probs(7, 1), f32([1e-4, 0.5, 0.4999])):
        k = np.arange(len(probs))
        ref = stats.multinomial.logpmf(np.eye(len(probs)), 1, probs / probs.sum())
        ours = np.array(gd.categorical.log_prob(mx.array(k, dtype=mx.int32), mx.array(probs)))
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
        logits = f32(np.log(probs) + 3.0)
        ours_l = np.array(
            gd.categorical_logits.log_prob(mx.array(k, dtype=mx.int32), mx.array(logits))
        )
        ref_l = logits - sp.logsumexp(logits)
        np.testing.assert_allclose(ours_l, ref_l, rtol=1e-5, atol=1e-5)


def test_multinomial_matches_scipy() -> None:
    for n, probs, seed in ((10, _probs(3, 2), 0), (200, _probs(5, 3), 1)):
        xs = stats.multinomial.rvs(n, probs / probs.sum(), size=30, random_state=seed)
        ref = stats.multinomial.logpmf(xs, n, probs / probs.sum())
        ours = np.array(
            gd.multinomial.log_prob(mx.array(xs.astype(np.int32)), float(n), mx.array(probs))
        )
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_dirichlet_multinomial_matches_scipy() -> None:
    for n, alpha, seed in ((10, f32([1.0, 2.0, 0.5]), 0), (100, f32([20.0, 5.0, 0.3, 1.0]), 1)):
        p = stats.dirichlet.rvs(alpha, size=30, random_state=seed)
        xs = np.array(
            [stats.multinomial.rvs(n, q / q.sum(), random_state=seed + i) for i, q in enumerate(p)]
        )
        ref = stats.dirichlet_multinomial.logpmf(xs, alpha, n)
        ours = np.array(
            gd.dirichlet_multinomial.log_prob(
                mx.array(xs.astype(np.int32)), float(n), mx.array(alpha)
            )
        )
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_dirichlet_matches_scipy() -> None:
    for alpha, seed in ((f32([1.0, 2.0, 3.0]), 0), (f32([0.3, 0.5, 8.0, 30.0]), 1)):
        xs = f32(stats.dirichlet.rvs(alpha, size=30, random_state=seed))
        xs = np.clip(xs, 1e-30, None)
        xs = f32(xs / xs.sum(axis=1, keepdims=True))
        ref = np.array([stats.dirichlet.logpdf(x / x.sum(), alpha) for x in xs])
        ours = np.array(gd.dirichlet.log_prob(mx.array(xs.astype(np.float32)), mx.array(alpha)))
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def _spd(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return f32(a @ a.T / d + np.eye(d))


def test_mv_normal_matches_scipy() -> None:
    for d, seed in ((2, 0), (4, 1)):
        mean, cov = f32(np.arange(d) - 1.0), _spd(d, seed)
        xs = f32(stats.multivariate_normal.rvs(mean, cov, size=30, random_state=seed))
        xs[0] = mean + 8.0  # a far point
        ref = stats.multivariate_normal.logpdf(xs, mean, cov)
        ours = np.array(
            gd.mv_normal.log_prob(
                mx.array(xs.astype(np.float32)),
                mx.array(mean.astype(np.float32)),
                mx.array(cov.astype(np.float32)),
            )
        )
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("ours_name", "scipy_dist"), [("wishart", stats.wishart), ("inv_wishart", stats.invwishart)]
)
def test_wishart_family_matches_scipy(ours_name: str, scipy_dist: Any) -> None:
    dist = getattr(gd, ours_name)
    for d, df, seed in ((2, 4.0, 0), (3, 7.5, 1)):
        scale = _spd(d, seed)
        xs = scipy_dist.rvs(df, scale, size=20, random_state=seed)
        xs = f32(0.5 * (xs + np.swapaxes(xs, -1, -2)))
        ref = np.array([scipy_dist.logpdf(x, df, scale) for x in xs])
        ours = np.array(
            dist.log_prob(mx.array(xs.astype(np.float32)), df, mx.array(scale.astype(np.float32)))
        )
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_every_scipy_distribution_has_a_row() -> None:
    covered = {r.name for r in ROWS} | {
        "categorical", "categorical_logits", "multinomial", "dirichlet_multinomial",
        "dirichlet", "mv_normal", "wishart", "inv_wishart",
    }  # fmt: skip
    # wrapped_normal: scipy has none; test_wrapped_normal.py checks it against the wrap sum
    not_in_scipy = {"kumaraswamy", "beta_uniform", "delta", "piecewise_uniform", "wrapped_normal"}
    from genmlx.dists._plugin import DISTRIBUTION_NAMES

    assert set(DISTRIBUTION_NAMES) - covered == not_in_scipy
    assert math.isfinite(F32_EPS)
