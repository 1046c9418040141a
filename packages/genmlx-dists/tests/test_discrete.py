"""Tests for genmlx.dists.discrete.

log_prob is compared with scipy.stats (float64) at float32-rounded parameters with
rtol = atol = 1e-5 — the module's saddle-point formulation keeps the relative error
near 1e-6 even where naive lgamma differences would lose three digits (large rates
and counts), so no tolerance is loosened. Samplers are checked by chi-square (or
Kolmogorov–Smirnov) goodness of fit on 20000 draws with a fixed seed (p > 1e-4) and
by mean/variance within 5 standard errors of the exact moments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from genmlx.core.testing import check_gfi_laws
from genmlx.dists import discrete as D
from genmlx.dists.base import validation
from genmlx.dists.examples import examples

N = 20000
ALL: list[Any] = [
    D.bernoulli,
    D.categorical,
    D.categorical_logits,
    D.poisson,
    D.geometric,
    D.binomial,
    D.neg_binomial,
    D.uniform_discrete,
    D.multinomial,
    D.beta_binomial,
    D.dirichlet_multinomial,
    D.zipf,
    D.delta,
    D.piecewise_uniform,
]
ENUMERABLE = [d for d in ALL if d.is_enumerable]
EXAMPLES = [(d, p) for d in ALL for p in examples(d)]


def f32(x: Any) -> np.ndarray:
    """Parameters as float32 and back to float64: scipy sees what MLX sees."""
    return np.asarray(np.asarray(x, dtype=np.float32), dtype=np.float64)


def np64(x: mx.array) -> np.ndarray:
    return np.asarray(x.astype(mx.float32), dtype=np.float64)


def assert_logp(ours: mx.array, ref: Any, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    o, r = np64(ours), np.asarray(ref, dtype=np.float64)
    assert o.shape == r.shape, (o.shape, r.shape)
    assert not np.isnan(o).any()
    np.testing.assert_array_equal(np.isneginf(o), np.isneginf(r))
    fin = np.isfinite(r)
    np.testing.assert_allclose(o[fin], r[fin], rtol=rtol, atol=atol)


def ids(d: Any) -> str:
    return str(getattr(d, "name", d))


# ------------------------------------------------------------------ log_prob vs scipy


def _grid(values: np.ndarray, *params: np.ndarray) -> tuple[np.ndarray, ...]:
    """Outer grid: values along axis 0, each parameter along its own later axis."""
    k = len(params)
    out = [values.reshape((-1,) + (1,) * k)]
    for i, p in enumerate(params):
        shape = [1] * (k + 1)
        shape[i + 1] = -1
        out.append(np.asarray(p).reshape(shape))
    return tuple(out)


SCALAR_CASES: list[tuple[str, Any, np.ndarray, list[np.ndarray], Callable[..., Any]]] = [
    (
        "bernoulli",
        D.bernoulli,
        np.array([0.0, 1.0]),
        [np.array([0.0, 0.01, 0.3, 0.999, 1.0])],
        lambda k, p: stats.bernoulli.logpmf(k, p),
    ),
    (
        "poisson",
        D.poisson,
        np.arange(0.0, 61.0),
        [np.array([0.0, 1e-3, 0.7, 9.99, 10.0, 37.5, 250.0])],
        lambda k, lam: stats.poisson.logpmf(k, lam),
    ),
    (
        "geometric",
        D.geometric,
        np.arange(0.0, 51.0),
        [np.array([0.01, 0.3, 0.9, 1.0])],
        lambda k, p: stats.geom.logpmf(k + 1, p),
    ),
    (
        "binomial",
        D.binomial,
        np.arange(0.0, 51.0),
        [np.array([0.0, 1.0, 7.0, 50.0]), np.array([0.0, 1e-3, 0.3, 0.5, 0.97, 1.0])],
        lambda k, n, p: np.where(k <= n, stats.binom.logpmf(np.minimum(k, n), n, p), -np.inf),
    ),
    (
        "neg_binomial",
        D.neg_binomial,
        np.arange(0.0, 81.0),
        [np.array([0.05, 1.0, 3.5, 40.0, 1000.0]), np.array([0.02, 0.5, 0.95, 1.0])],
        lambda k, r, p: stats.nbinom.logpmf(k, r, p),
    ),
    (
        "beta_binomial",
        D.beta_binomial,
        np.arange(0.0, 41.0),
        [np.array([0.0, 5.0, 40.0]), np.array([0.3, 2.0, 150.0]), np.array([0.7, 9.0])],
        lambda k, n, a, b: np.where(
            k <= n, stats.betabinom.logpmf(np.minimum(k, n), n, a, b), -np.inf
        ),
    ),
    (
        "zipf",
        D.zipf,
        np.array([1.0, 2.0, 3.0, 10.0, 16.0, 17.0, 18.0, 99.0, 100.0, 500.0, 3000.0]),
        [np.array([0.0, 0.5, 1.0, 1.1, 2.5, 7.0]), np.array([1.0, 16.0, 17.0, 100.0, 3000.0])],
        lambda k, s, n: np.where(k <= n, stats.zipfian.logpmf(np.minimum(k, n), s, n), -np.inf),
    ),
]


@pytest.mark.parametrize("case", SCALAR_CASES, ids=[c[0] for c in SCALAR_CASES])
def test_log_prob_matches_scipy(case: Any) -> None:
    _, dist, values, params, ref = case
    grid = _grid(values, *[f32(p) for p in params])
    ours = dist.log_prob(*(mx.array(g.astype(np.float32)) for g in grid))
    expected = np.broadcast_to(ref(*grid), ours.shape)
    assert_logp(ours, expected)


@pytest.mark.parametrize(
    ("dist", "values", "params", "ref"),
    [
        (
            D.poisson,
            np.round(1e4 + np.linspace(-8, 8, 41) * 100.0),
            (1e4,),
            lambda k: stats.poisson.logpmf(k, 1e4),
        ),
        (
            D.poisson,
            np.round(1e6 + np.linspace(-8, 8, 41) * 1000.0),
            (1e6,),
            lambda k: stats.poisson.logpmf(k, 1e6),
        ),
        (
            D.binomial,
            np.round(3000 + np.linspace(-8, 8, 41) * np.sqrt(2100.0)),
            (10000, 0.3),
            lambda k: stats.binom.logpmf(k, 10000, f32(0.3)),
        ),
        (
            D.neg_binomial,
            np.round(1e4 + np.linspace(-8, 8, 41) * np.sqrt(2e4)),
            (1e4, 0.5),
            lambda k: stats.nbinom.logpmf(k, 1e4, 0.5),
        ),
        (
            D.beta_binomial,
            np.arange(0.0, 1001.0, 25.0),
            (1000, 1000.0, 1000.0),
            lambda k: stats.betabinom.logpmf(k, 1000, 1000.0, 1000.0),
        ),
    ],
    ids=["poisson-1e4", "poisson-1e6", "binomial-1e4", "neg_binomial-1e4", "beta_binomial-1e3"],
)
def test_log_prob_large_parameters_exact(dist: Any, values: Any, params: Any, ref: Any) -> None:
    # Naive k log λ − λ − lgamma(k+1) in float32 is off by ~1e-2 here; the
    # saddle-point form keeps rtol 1e-5.
    assert_logp(dist.log_prob(mx.array(values.astype(np.float32)), *params), ref(values))


def test_log_prob_categorical_and_logits() -> None:
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 0.25, 0.25]], dtype=np.float32)
    vals = np.arange(4.0).reshape(4, 1)
    with np.errstate(divide="ignore"):
        ref = np.log(probs / probs.sum(-1, keepdims=True)).T
    assert_logp(D.categorical.log_prob(mx.array(vals), mx.array(probs)), ref)
    # unnormalised weights are normalised
    assert_logp(D.categorical.log_prob(mx.array(vals), mx.array(3.0 * probs)), ref)
    logits = np.array([[0.5, -1.0, 2.0, -np.inf], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    lref = (logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))).T
    assert_logp(D.categorical_logits.log_prob(mx.array(vals), mx.array(logits)), lref)


def test_log_prob_uniform_discrete() -> None:
    vals = np.arange(-5.0, 12.0).reshape(-1, 1)
    low = np.array([-3.0, 0.0, 4.0, 7.0])
    high = np.array([2.0, 0.0, 9.0, 11.0])
    ref = stats.randint.logpmf(vals, low, high + 1)
    assert_logp(D.uniform_discrete.log_prob(mx.array(vals), mx.array(low), mx.array(high)), ref)


def test_log_prob_multinomial_and_dirichlet_multinomial() -> None:
    rng = np.random.default_rng(0)
    for k in (2, 3, 6):
        p = rng.dirichlet(np.ones(k)).astype(np.float32)
        x = rng.multinomial(30, p, size=40).astype(np.float64)
        p64 = p.astype(np.float64) / p.astype(np.float64).sum()
        ours = D.multinomial.log_prob(mx.array(x), 30, mx.array(p))
        assert_logp(ours, stats.multinomial.logpmf(x, 30, p64))
        alpha = f32(rng.uniform(0.1, 20.0, size=k))
        ours = D.dirichlet_multinomial.log_prob(mx.array(x), 30, mx.array(alpha))
        assert_logp(ours, stats.dirichlet_multinomial.logpmf(x, alpha, 30))
    # large counts, where lgamma differences cancel
    x = np.array([[500.0, 300.0, 200.0], [480.0, 330.0, 190.0]])
    p = np.array([0.5, 0.3, 0.2])
    assert_logp(
        D.multinomial.log_prob(mx.array(x), 1000, mx.array(p)),
        stats.multinomial.logpmf(x, 1000, f32(p) / f32(p).sum()),
    )
    al = np.array([300.0, 200.0, 100.0])
    assert_logp(
        D.dirichlet_multinomial.log_prob(mx.array(x), 1000, mx.array(al)),
        stats.dirichlet_multinomial.logpmf(x, al, 1000),
    )
    # a zero-probability category
    p0 = mx.array([0.5, 0.0, 0.5])
    assert_logp(
        D.multinomial.log_prob(mx.array([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]), 3, p0),
        [math.log(3 * 0.125), -np.inf],
    )


def _pu_ref(x: np.ndarray, b: np.ndarray, q: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(b, x, side="right") - 1, 0, len(q) - 1)
    inside = (x >= b[0]) & (x <= b[-1])
    with np.errstate(divide="ignore"):
        lp = np.log(q[i] / q.sum() / (b[i + 1] - b[i]))
    return np.where(inside, lp, -np.inf)


def test_log_prob_piecewise_uniform() -> None:
    b = np.array([0.0, 1.0, 3.0, 3.5])
    q = np.array([0.2, 0.0, 0.8])
    x = np.array([-0.5, 0.0, 0.5, 1.0, 2.9, 3.0, 3.25, 3.5, 3.6])
    assert_logp(
        D.piecewise_uniform.log_prob(mx.array(x), mx.array(b), mx.array(q)), _pu_ref(x, b, q)
    )


def test_delta() -> None:
    key = mx.random.key(0)
    assert D.delta.sample(key, 3).dtype == mx.int32
    assert D.delta.sample(key, 2.5, shape=(2,)).tolist() == [2.5, 2.5]
    assert D.delta.sample(key, True).dtype == mx.bool_
    v = mx.array([1.0, 2.0])
    assert D.delta.sample(key, v, shape=(3,)).shape == (3, 2)
    assert_logp(D.delta.log_prob(mx.array([1.0, 5.0]), v), [0.0, -np.inf])
    assert_logp(D.delta.log_prob(2.5, 2.5), 0.0)
    assert D.delta.support(v).shape == (1, 2)


def test_flip_alias() -> None:
    assert D.flip is D.bernoulli
    assert D.bernoulli.sample(mx.random.key(0), 0.5, shape=(3,)).dtype == mx.bool_
    assert_logp(D.bernoulli.log_prob(mx.array([True, False]), 0.25), np.log([0.25, 0.75]))


# ------------------------------------------------------------------ support and validity

OUT_OF_SUPPORT: list[tuple[Any, list[float], tuple[Any, ...]]] = [
    (D.bernoulli, [2.0, -1.0, 0.5], (0.3,)),
    (D.categorical, [-1.0, 3.0, 0.5], (mx.array([0.2, 0.3, 0.5]),)),
    (D.categorical_logits, [-1.0, 3.0, 1.5], (mx.array([0.2, 0.3, 0.5]),)),
    (D.poisson, [-1.0, 2.5, math.inf], (3.0,)),
    (D.geometric, [-1.0, 0.5], (0.3,)),
    (D.binomial, [-1.0, 11.0, 2.5], (10, 0.3)),
    (D.neg_binomial, [-1.0, 2.5], (2.0, 0.3)),
    (D.uniform_discrete, [0.0, 7.0, 2.5], (1, 6)),
    (D.beta_binomial, [-1.0, 11.0, 0.5], (10, 2.0, 3.0)),
    (D.zipf, [0.0, 101.0, 1.5, -2.0], (1.1, 100)),
    (D.delta, [2.0, 3.5], (3.0,)),
    (D.piecewise_uniform, [-0.1, 3.6], (mx.array([0.0, 1.0, 3.0, 3.5]), mx.array([0.2, 0.5, 0.3]))),
]


@pytest.mark.parametrize(("dist", "values", "params"), OUT_OF_SUPPORT, ids=ids)
def test_out_of_support_is_neg_inf(dist: Any, values: list[float], params: Any) -> None:
    lp = np64(dist.log_prob(mx.array(values), *params))
    assert np.all(np.isneginf(lp)), lp


def test_out_of_support_multivariate() -> None:
    p = mx.array([0.2, 0.3, 0.5])
    bad = mx.array([[1.0, 1.0, 1.0], [5.0, 0.0, -1.0], [1.5, 1.5, 1.0], [2.0, 2.0, 2.0]])
    assert np.all(np.isneginf(np64(D.multinomial.log_prob(bad[:3], 4, p))))
    assert np.all(np.isneginf(np64(D.dirichlet_multinomial.log_prob(bad[1:], 4, p))))


INVALID_PLAIN: list[tuple[Any, tuple[Any, ...]]] = [
    (D.bernoulli, (1.5,)),
    (D.bernoulli, (-0.1,)),
    (D.categorical, ([0.5, -0.1, 0.6],)),
    (D.categorical, ([0.0, 0.0],)),
    (D.poisson, (-1.0,)),
    (D.geometric, (0.0,)),
    (D.geometric, (1.5,)),
    (D.binomial, (-1, 0.5)),
    (D.binomial, (2.5, 0.5)),
    (D.binomial, (10, 1.5)),
    (D.neg_binomial, (0.0, 0.5)),
    (D.neg_binomial, (2.0, 0.0)),
    (D.neg_binomial, (2.0, 1.5)),
    (D.uniform_discrete, (3, 1)),
    (D.uniform_discrete, (0.5, 2)),
    (D.multinomial, (-1, [0.5, 0.5])),
    (D.multinomial, (2.5, [0.5, 0.5])),
    (D.multinomial, (3, [-0.1, 1.1])),
    (D.beta_binomial, (5, 0.0, 1.0)),
    (D.beta_binomial, (5, 1.0, -1.0)),
    (D.beta_binomial, (-2, 1.0, 1.0)),
    (D.dirichlet_multinomial, (5, [0.0, 1.0])),
    (D.dirichlet_multinomial, (-1, [1.0, 1.0])),
    (D.zipf, (-1.0, 10)),
    (D.zipf, (1.0, 0)),
    (D.zipf, (1.0, 2.5)),
    (D.piecewise_uniform, ([0.0, 1.0, 1.0], [0.5, 0.5])),
    (D.piecewise_uniform, ([0.0, 1.0, 2.0], [-1.0, 2.0])),
]


@pytest.mark.parametrize(("dist", "params"), INVALID_PLAIN, ids=lambda x: ids(x))
def test_invalid_plain_params_raise(dist: Any, params: Any) -> None:
    value = dist.sample(mx.random.key(0), *examples(dist)[0])
    with pytest.raises(ValueError, match=dist.name):
        dist.sample(mx.random.key(0), *params)
    with pytest.raises(ValueError, match=dist.name):
        dist.log_prob(value, *params)


def test_validation_off_skips_the_eager_check() -> None:
    with validation(False):
        lp = D.poisson.log_prob(1, -1.0)
    assert np.isneginf(np64(lp))


# (dist, value, float params (array), other params, which entries of the batch are invalid)
INVALID_ARRAY: list[tuple[Any, Any, list[Any], list[bool]]] = [
    (D.bernoulli, True, [mx.array([0.3, 1.5, -0.2, math.nan])], [False, True, True, True]),
    (D.poisson, 2, [mx.array([3.0, -1.0, math.nan, math.inf])], [False, True, True, True]),
    (D.geometric, 2, [mx.array([0.3, 0.0, 1.5, math.nan])], [False, True, True, True]),
    (
        D.binomial,
        2,
        [mx.array([5.0, -1.0, 2.5, 5.0]), mx.array([0.3, 0.3, 0.3, 1.5])],
        [False, True, True, True],
    ),
    (
        D.neg_binomial,
        2,
        [mx.array([2.0, 0.0, -1.0, 2.0]), mx.array([0.3, 0.3, 0.3, 0.0])],
        [False, True, True, True],
    ),
    (
        D.beta_binomial,
        2,
        [
            mx.array([5.0, 5.0, 5.0, -1.0]),
            mx.array([1.0, 0.0, 1.0, 1.0]),
            mx.array([1.0, 1.0, -2.0, 1.0]),
        ],
        [False, True, True, True],
    ),
    (
        D.zipf,
        2,
        [mx.array([1.0, -1.0, 1.0, math.nan]), mx.array([10.0, 10.0, 0.0, 10.0])],
        [False, True, True, True],
    ),
    (
        D.uniform_discrete,
        2,
        [mx.array([0.0, 3.0, 0.5]), mx.array([4.0, 1.0, 4.0])],
        [False, True, True],
    ),
    (
        D.categorical,
        1,
        [mx.array([[0.5, 0.5], [-0.5, 1.5], [0.0, 0.0], [math.nan, 1.0]])],
        [False, True, True, True],
    ),
    (
        D.categorical_logits,
        1,
        [mx.array([[0.5, 0.5], [math.inf, 0.0], [-math.inf, -math.inf], [math.nan, 1.0]])],
        [False, True, True, True],
    ),
    (
        D.multinomial,
        mx.array([1.0, 1.0]),
        [mx.array([2.0, 2.0, 2.5]), mx.array([[0.5, 0.5], [-0.5, 1.5], [0.5, 0.5]])],
        [False, True, True],
    ),
    (
        D.dirichlet_multinomial,
        mx.array([1.0, 1.0]),
        [mx.array([2.0, 2.0, -2.0]), mx.array([[0.5, 0.5], [0.0, 1.5], [0.5, 0.5]])],
        [False, True, True],
    ),
    (
        D.piecewise_uniform,
        0.5,
        [
            mx.array([[0.0, 1.0, 2.0], [0.0, 0.0, 2.0], [0.0, 1.0, 2.0]]),
            mx.array([[0.5, 0.5], [0.5, 0.5], [-1.0, 2.0]]),
        ],
        [False, True, True],
    ),
]


@pytest.mark.parametrize(("dist", "value", "params", "bad"), INVALID_ARRAY, ids=ids)
def test_invalid_array_params_give_neg_inf_without_nan(
    dist: Any, value: Any, params: list[Any], bad: list[bool]
) -> None:
    lp = np64(dist.log_prob(value, *params))
    assert not np.isnan(lp).any()
    np.testing.assert_array_equal(np.isneginf(lp), bad)
    # and no NaN gradient leaks from the unselected branches
    for i in range(len(params)):

        def f(t: mx.array, i: int = i) -> mx.array:
            ps = list(params)
            ps[i] = t
            lpv = dist.log_prob(value, *ps)
            return mx.sum(mx.where(mx.isfinite(lpv), lpv, 0.0))

        g = np64(mx.grad(f)(params[i]))
        assert not np.isnan(g).any(), (i, g)


# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize(("dist", "params"), EXAMPLES, ids=ids)
def test_sample_shapes(dist: Any, params: tuple[Any, ...]) -> None:
    key = mx.random.key(1)
    x0 = dist.sample(key, *params)
    lp0 = dist.log_prob(x0, *params)
    batch = lp0.shape
    event = x0.shape[len(batch) :]
    assert len(event) == dist.event_ndim
    x = dist.sample(key, *params, shape=(4, 2))
    assert x.shape == (4, 2, *batch, *event)
    assert x.dtype == x0.dtype
    if dist is D.bernoulli:
        assert x.dtype == mx.bool_
    elif dist is D.piecewise_uniform:
        assert x.dtype == mx.float32
    elif dist is not D.delta:
        assert x.dtype == mx.int32
    lp = dist.log_prob(x, *params)
    assert lp.shape == (4, 2, *batch)
    assert np.all(np.isfinite(np64(lp)))


def test_sample_broadcasts_batched_params() -> None:
    key = mx.random.key(0)
    n = mx.array([[5.0], [50.0]])
    p = mx.array([0.1, 0.5, 0.9])
    assert D.binomial.sample(key, n, p, shape=(7,)).shape == (7, 2, 3)
    assert D.beta_binomial.sample(key, n, p, mx.array(2.0)).shape == (2, 3)
    probs = mx.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]])
    assert D.multinomial.sample(key, mx.array([[3.0], [8.0]]), probs, shape=(5,)).shape == (
        5,
        2,
        3,
        2,
    )
    assert D.categorical.sample(key, probs, shape=(4,)).shape == (4, 3)
    assert D.dirichlet_multinomial.sample(key, 10, probs, shape=(4,)).shape == (4, 3, 2)
    assert D.zipf.sample(key, mx.array([1.0, 2.0]), mx.array([[10.0], [20.0]])).shape == (2, 2)
    assert D.uniform_discrete.sample(key, mx.array([0, 5]), 9, shape=(3,)).shape == (3, 2)
    bounds = mx.array([0.0, 1.0, 2.0])
    assert D.piecewise_uniform.sample(key, bounds, probs, shape=(6,)).shape == (6, 3)


# ------------------------------------------------------------------ goodness of fit


def chi2_pvalue(x: np.ndarray, pmf: Callable[[np.ndarray], np.ndarray], lo: int, hi: int) -> float:
    """Chi-square p-value of integer samples against ``pmf`` on lo..hi (+ a rest bin)."""
    ks = np.arange(lo, hi + 1)
    obs = np.array([(x == k).sum() for k in ks], dtype=np.float64)
    exp = pmf(ks) * len(x)
    keep = exp >= 5
    obs_rest = len(x) - obs[keep].sum()
    exp_rest = len(x) - exp[keep].sum()
    o = np.append(obs[keep], obs_rest) if exp_rest >= 1 else obs[keep]
    e = np.append(exp[keep], exp_rest) if exp_rest >= 1 else exp[keep]
    e = e * o.sum() / e.sum()
    return float(stats.chisquare(o, e).pvalue)


def check_moments(x: np.ndarray, mean: float, var: float, kurt: float) -> None:
    n = len(x)
    se_mean = math.sqrt(var / n)
    se_var = math.sqrt(max(kurt + 2.0, 0.0) * var * var / n)
    assert abs(x.mean() - mean) < 5 * se_mean + 1e-12, (x.mean(), mean, se_mean)
    assert abs(x.var() - var) < 5 * se_var + 1e-12, (x.var(), var, se_var)


GOF: list[tuple[str, Any, tuple[Any, ...], Any]] = [
    ("bernoulli", D.bernoulli, (0.3,), stats.bernoulli(0.3)),
    ("poisson-0.7", D.poisson, (0.7,), stats.poisson(0.7)),
    ("poisson-9.99", D.poisson, (9.99,), stats.poisson(f32(9.99))),
    ("poisson-10", D.poisson, (10.0,), stats.poisson(10.0)),
    ("poisson-57.3", D.poisson, (57.3,), stats.poisson(f32(57.3))),
    ("poisson-2.5e5", D.poisson, (2.5e5,), stats.poisson(2.5e5)),
    ("geometric", D.geometric, (0.15,), stats.geom(f32(0.15), loc=-1)),
    ("binomial-inversion", D.binomial, (15, 0.3), stats.binom(15, f32(0.3))),
    ("binomial-inversion-big-n", D.binomial, (1000, 0.004), stats.binom(1000, f32(0.004))),
    ("binomial-btrs", D.binomial, (60, 0.45), stats.binom(60, f32(0.45))),
    # either side of the inversion/BTRS switch at n·p = 10 (0.25 is exact in float32)
    ("binomial-np-9.84", D.binomial, (41, 0.24), stats.binom(41, f32(0.24))),
    ("binomial-np-10", D.binomial, (40, 0.25), stats.binom(40, 0.25)),
    ("binomial-btrs-flip", D.binomial, (200, 0.97), stats.binom(200, f32(0.97))),
    ("binomial-btrs-1e6", D.binomial, (10**6, 0.3), stats.binom(10**6, f32(0.3))),
    ("neg_binomial", D.neg_binomial, (2.5, 0.3), stats.nbinom(2.5, f32(0.3))),
    ("neg_binomial-small-r", D.neg_binomial, (0.4, 0.05), stats.nbinom(f32(0.4), f32(0.05))),
    ("uniform_discrete", D.uniform_discrete, (-3, 7), stats.randint(-3, 8)),
    ("beta_binomial", D.beta_binomial, (20, 0.5, 0.7), stats.betabinom(20, 0.5, f32(0.7))),
    ("zipf", D.zipf, (1.1, 100), stats.zipfian(f32(1.1), 100)),
    ("zipf-large-n", D.zipf, (2.0, 100000), stats.zipfian(2.0, 100000)),
]


@pytest.mark.parametrize(("label", "dist", "params", "ref"), GOF, ids=[g[0] for g in GOF])
def test_sampler_goodness_of_fit(label: str, dist: Any, params: Any, ref: Any) -> None:
    x = np64(dist.sample(mx.random.key(2024), *params, shape=(N,)))
    lo, hi = int(ref.ppf(1e-6)), int(ref.isf(1e-6))
    assert chi2_pvalue(x, ref.pmf, lo, hi) > 1e-4
    m, v, _, k = (float(t) for t in ref.stats(moments="mvsk"))
    check_moments(x, m, v, k)


def test_guide_table_count_equals_full_comparison() -> None:
    # The eager guide-table search must give exactly the full comparison's count, for
    # bodies and far tails (v down to 2**-33) of tables from tiny to branch-edge rates.
    v = mx.concatenate(
        [
            mx.maximum(mx.random.uniform(shape=(50000,), key=mx.random.key(3)), D._V_MIN),
            mx.array([D._V_MIN, 2.0**-32, 1e-9, 1e-6, 0.5, 1.0 - 2.0**-24]),
            2.0 ** (-33.0 * mx.random.uniform(shape=(5000,), key=mx.random.key(4))),
        ]
    )
    for lam in (1e-6, 0.01, 0.7, 3.0, 9.99):
        steps = lam / np.arange(1, D._INV_CAP + 1, dtype=np.float32)
        f = np.concatenate([[1.0], np.cumprod(steps)]).astype(np.float32) * np.exp(-lam)
        surv = mx.cumsum(mx.array(f[1:], dtype=mx.float32), reverse=True)
        full = mx.sum((mx.expand_dims(v, -1) < surv).astype(mx.int32), axis=-1)
        np.testing.assert_array_equal(np.array(D._count_above(v, surv)), np.array(full))


@pytest.mark.parametrize(
    ("dist", "params"),
    [
        (D.poisson, (0.01,)),
        (D.poisson, (3.0,)),
        (D.poisson, (9.99,)),
        (D.poisson, (10.0,)),
        (D.poisson, (57.3,)),
        (D.poisson, (mx.array([0.5, 30.0]),)),
        (D.binomial, (10, 0.3)),
        (D.binomial, (15, 0.7)),
        (D.binomial, (60, 0.45)),
        (D.binomial, (mx.array([5.0, 300.0]), mx.array([0.2, 0.9]))),
        (D.uniform_discrete, (1, 6)),
        # range 3·2**22: a word is rejected with probability 2**-10, so eagerly several
        # rounds run before every draw is accepted
        (D.uniform_discrete, (0, 3 * 2**22 - 1)),
        (D.uniform_discrete, (mx.array([-3, 0]), mx.array([7, 3 * 2**22 - 1]))),
    ],
    ids=[
        "poisson-0.01",
        "poisson-3",
        "poisson-9.99",
        "poisson-10",
        "poisson-57.3",
        "poisson-mixed",
        "binomial-10-0.3",
        "binomial-flip",
        "binomial-btrs",
        "binomial-mixed",
        "uniform_discrete-1-6",
        "uniform_discrete-rejecting",
        "uniform_discrete-mixed",
    ],
)
def test_eager_and_traced_samplers_agree(dist: Any, params: tuple[Any, ...]) -> None:
    # Eager sampling takes shortcuts (guide tables, skipped branches, early stops) that
    # must not change a single draw: compiled and vmapped sampling run the full path.
    def draw(k: mx.array) -> mx.array:
        return dist.sample(k, *params, shape=(2000, *np.broadcast_shapes(*map(np.shape, params))))

    key = mx.random.key(11)
    np.testing.assert_array_equal(np.array(draw(key)), np.array(mx.compile(draw)(key)))
    keys = mx.random.split(key, 3)
    np.testing.assert_array_equal(
        np.array(mx.stack([draw(k) for k in keys])), np.array(mx.vmap(draw)(keys))
    )


def test_poisson_tiny_rate_fits() -> None:
    # rate 0.01: the guide table resolves almost every draw in bucket lookups alone.
    lam = float(np.float32(0.01))
    x = np64(D.poisson.sample(mx.random.key(21), 0.01, shape=(200000,)))
    ref = stats.poisson(lam)
    assert chi2_pvalue(x, ref.pmf, 0, 3) > 1e-4
    check_moments(x, lam, lam, 1.0 / lam)


def test_categorical_samplers_fit() -> None:
    probs = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    for dist, par in ((D.categorical, probs), (D.categorical_logits, np.log(probs) + 3.0)):
        x = np64(dist.sample(mx.random.key(5), mx.array(par), shape=(N,)))
        assert chi2_pvalue(x, lambda k: probs[k].astype(np.float64), 0, 3) > 1e-4


def test_batched_parameter_samplers_fit() -> None:
    # Poisson rates on both sides of the inversion/PTRS switch, in one batch.
    rates = np.array([0.5, 9.99, 10.0, 300.0], dtype=np.float32)
    x = np64(D.poisson.sample(mx.random.key(7), mx.array(rates), shape=(N,)))
    for j, lam in enumerate(rates.astype(np.float64)):
        ref = stats.poisson(lam)
        assert chi2_pvalue(x[:, j], ref.pmf, int(ref.ppf(1e-6)), int(ref.isf(1e-6))) > 1e-4
        check_moments(x[:, j], lam, lam, 1.0 / lam)
    # Binomial with a batched n (inversion, BTRS and the p > 1/2 reflection).
    n = np.array([5.0, 40.0, 300.0, 30.0])
    p = np.array([0.2, 0.5, 0.9, 0.95], dtype=np.float32)
    x = np64(D.binomial.sample(mx.random.key(8), mx.array(n), mx.array(p), shape=(N,)))
    for j in range(4):
        ref = stats.binom(n[j], float(p[j]))
        assert chi2_pvalue(x[:, j], ref.pmf, 0, int(n[j])) > 1e-4
        m, v, _, k = (float(t) for t in ref.stats(moments="mvsk"))
        check_moments(x[:, j], m, v, k)


def test_multinomial_samplers_fit() -> None:
    p = np.array([0.1, 0.25, 0.05, 0.6], dtype=np.float32)
    x = np64(D.multinomial.sample(mx.random.key(9), 30, mx.array(p), shape=(N,)))
    assert np.all(x.sum(-1) == 30) and np.all(x >= 0)
    for j in range(4):
        ref = stats.binom(30, float(p[j]))
        assert chi2_pvalue(x[:, j], ref.pmf, 0, 30) > 1e-4
    # covariance −n p_i p_j
    c = np.cov(x[:, 0], x[:, 3])[0, 1]
    assert abs(c - (-30 * p[0] * p[3])) < 0.15
    alpha = np.array([0.5, 2.0, 4.0], dtype=np.float32)
    # (key 10 gives a 4-sigma fluke in one sparse bin: over 40 other keys the p-values
    # are uniform, and 10**6 draws with key 10 fit with p > 0.3.)
    x = np64(D.dirichlet_multinomial.sample(mx.random.key(12), 12, mx.array(alpha), shape=(N,)))
    assert np.all(x.sum(-1) == 12)
    for j in range(3):
        ref = stats.betabinom(12, float(alpha[j]), float(alpha.sum() - alpha[j]))
        assert chi2_pvalue(x[:, j], ref.pmf, 0, 12) > 1e-4
        m, v, _, k = (float(t) for t in ref.stats(moments="mvsk"))
        check_moments(x[:, j], m, v, k)


def test_piecewise_uniform_sampler_fits() -> None:
    b = np.array([0.0, 1.0, 3.0, 3.5])
    q = np.array([0.2, 0.5, 0.3])
    x = np64(D.piecewise_uniform.sample(mx.random.key(11), mx.array(b), mx.array(q), shape=(N,)))
    cq = np.concatenate([[0.0], np.cumsum(q)])

    def cdf(t: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(b, t, side="right") - 1, 0, 2)
        frac = np.clip((t - b[i]) / (b[i + 1] - b[i]), 0.0, 1.0)
        return np.where(t < b[0], 0.0, np.where(t >= b[-1], 1.0, cq[i] + q[i] * frac))

    assert stats.kstest(x, cdf).pvalue > 1e-4
    # the density is piecewise constant: its gradient in the value is 0 (and finite)
    g = mx.grad(lambda t: mx.sum(D.piecewise_uniform.log_prob(t, mx.array(b), mx.array(q))))
    assert np64(g(mx.array([0.5, 2.0, 3.25]))).tolist() == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------ gradients


def central_diff(f: Callable[[np.ndarray], float], x0: np.ndarray, rel: float = 1e-6) -> np.ndarray:
    x0 = np.asarray(x0, dtype=np.float64)
    g = np.zeros_like(x0)
    for i in np.ndindex(x0.shape):
        h = rel * max(1.0, abs(float(x0[i])))
        e = np.zeros_like(x0)
        e[i] = h
        g[i] = (f(x0 + e) - f(x0 - e)) / (2 * h)
    return g


K = np.array([0.0, 1.0, 3.0, 7.0, 15.0])
X3 = np.array([[2.0, 3.0, 5.0], [0.0, 4.0, 6.0]])
PU_B = np.array([0.0, 1.0, 3.0, 3.5])
PU_Q = np.array([0.2, 0.5, 0.3])
PU_X = np.array([0.5, 2.0, 3.2])

GRAD_CASES: list[tuple[str, Callable[[mx.array], mx.array], Callable[[np.ndarray], Any], Any]] = [
    (
        "bernoulli-p",
        lambda p: D.bernoulli.log_prob(mx.array([True, False]), p),
        lambda p: stats.bernoulli.logpmf([1, 0], p),
        0.3,
    ),
    (
        "poisson-rate",
        lambda r: D.poisson.log_prob(mx.array(K), r),
        lambda r: stats.poisson.logpmf(K, r),
        4.2,
    ),
    (
        "poisson-rate-large",
        lambda r: D.poisson.log_prob(mx.array([9990.0, 10100.0]), r),
        lambda r: stats.poisson.logpmf([9990.0, 10100.0], r),
        1e4,
    ),
    (
        "geometric-p",
        lambda p: D.geometric.log_prob(mx.array(K), p),
        lambda p: stats.geom.logpmf(K + 1, p),
        0.3,
    ),
    (
        "binomial-p",
        lambda p: D.binomial.log_prob(mx.array(K), 20, p),
        lambda p: stats.binom.logpmf(K, 20, p),
        0.37,
    ),
    (
        "neg_binomial-r",
        lambda r: D.neg_binomial.log_prob(mx.array(K), r, 0.4),
        lambda r: stats.nbinom.logpmf(K, r, 0.4),
        2.7,
    ),
    (
        "neg_binomial-small-r",
        lambda r: D.neg_binomial.log_prob(mx.array(K), r, 0.4),
        lambda r: stats.nbinom.logpmf(K, r, 0.4),
        0.2,
    ),
    (
        "neg_binomial-p",
        lambda p: D.neg_binomial.log_prob(mx.array(K), 2.7, p),
        lambda p: stats.nbinom.logpmf(K, 2.7, p),
        0.4,
    ),
    (
        "beta_binomial-alpha",
        lambda a: D.beta_binomial.log_prob(mx.array(K), 15, a, 2.0),
        lambda a: stats.betabinom.logpmf(K, 15, a, 2.0),
        0.7,
    ),
    (
        "beta_binomial-beta",
        lambda b: D.beta_binomial.log_prob(mx.array(K), 15, 0.7, b),
        lambda b: stats.betabinom.logpmf(K, 15, 0.7, b),
        20.0,
    ),
    (
        "zipf-s",
        lambda s: D.zipf.log_prob(mx.array([1.0, 2.0, 50.0, 400.0]), s, 1000),
        lambda s: stats.zipfian.logpmf([1, 2, 50, 400], s, 1000),
        1.3,
    ),
    (
        "zipf-s-at-1",
        lambda s: D.zipf.log_prob(mx.array([1.0, 2.0, 50.0, 400.0]), s, 1000),
        lambda s: stats.zipfian.logpmf([1, 2, 50, 400], s, 1000),
        1.0,
    ),
    (
        "categorical-probs",
        lambda p: D.categorical.log_prob(mx.array([0, 2]), p),
        lambda p: np.log(p[[0, 2]] / p.sum()),
        np.array([0.2, 0.3, 0.5]),
    ),
    (
        "categorical-logits",
        lambda lg: D.categorical_logits.log_prob(mx.array([0, 2]), lg),
        lambda lg: lg[[0, 2]] - np.log(np.exp(lg).sum()),
        np.array([0.1, -1.0, 2.0]),
    ),
    (
        "multinomial-probs",
        lambda p: D.multinomial.log_prob(mx.array(X3), 10, p),
        lambda p: stats.multinomial.logpmf(X3, 10, p / p.sum()),
        np.array([0.2, 0.3, 0.5]),
    ),
    (
        "dirichlet_multinomial-alpha",
        lambda a: D.dirichlet_multinomial.log_prob(mx.array(X3), 10, a),
        lambda a: stats.dirichlet_multinomial.logpmf(X3, a, 10),
        np.array([0.5, 2.0, 7.0]),
    ),
    (
        "piecewise_uniform-bounds",
        lambda b: D.piecewise_uniform.log_prob(mx.array(PU_X), b, mx.array(PU_Q)),
        lambda b: _pu_ref(PU_X, b, PU_Q),
        PU_B,
    ),
    (
        "piecewise_uniform-probs",
        lambda q: D.piecewise_uniform.log_prob(mx.array(PU_X), mx.array(PU_B), q),
        lambda q: _pu_ref(PU_X, PU_B, q),
        PU_Q,
    ),
]


@pytest.mark.parametrize(("label", "ours", "ref", "x0"), GRAD_CASES, ids=[g[0] for g in GRAD_CASES])
def test_grad_matches_finite_differences(label: str, ours: Any, ref: Any, x0: Any) -> None:
    # Reference: float64 central differences of scipy's log-pmf (step 1e-6 relative:
    # truncation ~1e-12, rounding ~1e-10 even at rate 1e4). The float32 gradient is
    # accurate to a few ulps of the log-pmf's terms: rtol 2e-4 leaves a wide margin.
    x0 = np.asarray(f32(x0))
    g = np64(mx.grad(lambda t: mx.sum(ours(t)))(mx.array(x0.astype(np.float32))))
    expected = central_diff(lambda t: float(np.sum(ref(t))), x0)
    np.testing.assert_allclose(g, expected, rtol=2e-4, atol=1e-5)


# ------------------------------------------------------------------ enumeration


@pytest.mark.parametrize(
    ("dist", "params"),
    [(d, p) for d in ENUMERABLE for p in examples(d)]
    + [
        (D.binomial, (1000, 0.3)),
        (D.beta_binomial, (200, 0.3, 4.0)),
        (D.zipf, (0.8, 3000)),
        (D.uniform_discrete, (mx.array([0.0, -2.0]), mx.array([3.0, 9.0]))),
        (D.categorical_logits, (mx.array([0.0, -mx.inf, 3.0]),)),
    ],
    ids=ids,
)
def test_support_sums_to_one(dist: Any, params: tuple[Any, ...]) -> None:
    sup = dist.support(*params)
    lp = dist.log_prob(sup, *params)
    assert lp.shape[0] == sup.shape[0]
    total = np64(mx.logsumexp(lp, axis=0))
    np.testing.assert_allclose(total, 0.0, atol=1e-5)


def test_support_values() -> None:
    assert D.bernoulli.support(0.3).tolist() == [False, True]
    assert D.categorical.support(mx.array([0.2, 0.8])).tolist() == [0, 1]
    assert D.binomial.support(3, 0.5).tolist() == [0, 1, 2, 3]
    assert D.zipf.support(1.0, 3).tolist() == [1, 2, 3]
    assert D.uniform_discrete.support(-1, 1).tolist() == [-1, 0, 1]
    # batched parameters: (M,) + batch, the union of the supports
    s = D.binomial.support(mx.array([1.0, 3.0]), 0.5)
    assert s.shape == (4, 2)
    lp = np64(D.binomial.log_prob(s, mx.array([1.0, 3.0]), 0.5))
    assert np.isneginf(lp[2:, 0]).all() and np.isfinite(lp[:, 1]).all()
    with pytest.raises(TypeError):
        D.poisson.support(3.0)


# ------------------------------------------------------------------ GFI conformance


@pytest.mark.parametrize(("dist", "params"), EXAMPLES, ids=ids)
def test_gfi_laws(dist: Any, params: tuple[Any, ...]) -> None:
    check_gfi_laws(dist, params, max_examples=3)


# ------------------------------------------------------------------ vmap and compile


@pytest.mark.parametrize(("dist", "params"), EXAMPLES, ids=ids)
def test_sampling_under_vmap_and_compile(dist: Any, params: tuple[Any, ...]) -> None:
    keys = mx.random.split(mx.random.key(3), 3)
    batched = mx.vmap(lambda k: dist.sample(k, *params))(keys)
    for i in range(3):
        np.testing.assert_array_equal(np64(batched[i]), np64(dist.sample(keys[i], *params)))
    compiled = mx.compile(lambda k: dist.sample(k, *params, shape=(2,)))
    np.testing.assert_allclose(
        np64(compiled(keys[0])), np64(dist.sample(keys[0], *params, shape=(2,))), rtol=1e-6
    )
    # log_prob of batched values against shared parameters, under vmap
    lp_v = mx.vmap(lambda x: dist.log_prob(x, *params))(batched)
    np.testing.assert_allclose(np64(lp_v), np64(dist.log_prob(batched, *params)), rtol=1e-6)
