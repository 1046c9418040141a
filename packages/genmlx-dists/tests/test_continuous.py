"""genmlx.dists.continuous against scipy.stats.

For every distribution: log_prob on a grid of values and parameters (rtol = atol =
1e-5), -inf outside the support, ValueError for invalid plain parameters, -inf (no
NaN, no NaN gradient) for invalid array parameters, sample shapes with ``shape=`` and
broadcast batched parameters, a Kolmogorov–Smirnov test (n = 20000, fixed seed,
p > 1e-4) and mean/variance within 5 standard errors of the exact moments,
``mx.grad`` of log_prob against float64 central differences of scipy's logpdf,
reparameterised-sample gradients against the implicit-function derivative
``dx/dθ = -(∂F/∂θ)(x) / f(x)``, the GFI laws, and sampling under ``mx.vmap`` and
``mx.compile``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

from genmlx.core.testing import check_gfi_laws
from genmlx.dists import continuous as C
from genmlx.dists.examples import examples

INF = math.inf
N = 20000


def f32(x: Any) -> np.ndarray:
    return np.asarray(np.asarray(x, dtype=np.float32), dtype=np.float64)


def key_for(name: str, salt: int = 0) -> mx.array:
    return mx.random.key(zlib.crc32(name.encode()) + salt)


def np64(x: mx.array) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------- references
def _wrapcauchy_logpdf(x: np.ndarray, mu: Any, rho: Any) -> np.ndarray:
    d = x - mu
    return np.log1p(-rho * rho) - np.log(2 * np.pi) - np.log1p(rho * rho - 2 * rho * np.cos(d))


class _WrappedCauchyRef:
    """scipy's wrapcauchy lives on [0, 2π) and excludes rho = 0; this is the density on
    [-π, π] around mu, and the CDF of the centred angle d = x - mu in (-π, π)."""

    def __init__(self, mu: Any, rho: Any) -> None:
        self.mu, self.rho = np.asarray(mu, float), np.asarray(rho, float)

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        return _wrapcauchy_logpdf(x, self.mu, self.rho)

    def cdf_centred(self, d: np.ndarray) -> np.ndarray:
        c = (1 - self.rho) / (1 + self.rho)
        return 0.5 + np.arctan(np.tan(d / 2) / c) / np.pi


class _VonMisesRef:
    def __init__(self, mu: Any, kappa: Any) -> None:
        self.mu, self.kappa = np.asarray(mu, float), np.asarray(kappa, float)

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        k = self.kappa
        return k * (np.cos(x - self.mu) - 1) - np.log(2 * np.pi) - np.log(sp.i0e(k))


def _truncnorm(mu: Any, sigma: Any, low: Any, high: Any) -> Any:
    mu, sigma = np.asarray(mu, float), np.asarray(sigma, float)
    return st.truncnorm((np.asarray(low) - mu) / sigma, (np.asarray(high) - mu) / sigma, mu, sigma)


@dataclass
class Spec:
    dist: Any
    ref: Callable[..., Any]  # params -> frozen scipy distribution (or stand-in)
    grid: list[tuple[float, ...]]  # parameter sets for the log_prob comparison
    ks: tuple[float, ...]  # parameters of the sampler tests
    bad_plain: list[tuple[Any, ...]]
    bad_array: tuple[Any, ...]  # arrays; invalid entries given by bad_mask
    bad_mask: list[bool]
    outside: Callable[..., list[float]] = lambda *p: []
    bad_value: float = 0.3  # a value inside the support for the valid bad_array entries
    moments: bool = True
    probs: tuple[float, ...] = (1e-10, 1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999, 1 - 1e-6)
    extra_values: list[float] = field(default_factory=list)


LOCSCALE_BAD = dict(
    bad_plain=[(0.0, 0.0), (0.0, -1.0), (INF, 1.0), (0.0, INF), (math.nan, 1.0)],
    bad_array=(mx.array([0.0, 0.0, INF, 1.0]), mx.array([1.0, -1.0, 1.0, 0.0])),
    bad_mask=[False, True, True, True],
)
SCALE_BAD = dict(
    bad_plain=[(0.0,), (-1.0,), (INF,), (math.nan,)],
    bad_array=(mx.array([1.0, -1.0, 0.0, INF]),),
    bad_mask=[False, True, True, True],
)
LS_GRID = [(0.0, 1.0), (-3.0, 0.01), (100.0, 50.0), (1e4, 1e-3), (-2.5, 1e3)]

SPECS: dict[str, Spec] = {
    "normal": Spec(
        C.normal,
        lambda m, s: st.norm(m, s),
        LS_GRID,
        (0.5, 2.0),
        **LOCSCALE_BAD,
        extra_values=[-1e3, 1e3],
    ),
    "uniform": Spec(
        C.uniform,
        lambda lo, hi: st.uniform(lo, np.asarray(hi) - lo),
        [(0.0, 1.0), (-5.0, 5.0), (1e3, 1e3 + 1e-2), (-1e-3, 2e-3)],
        (-1.0, 3.0),
        bad_plain=[(1.0, 1.0), (2.0, 1.0), (-INF, 1.0), (0.0, math.nan)],
        bad_array=(mx.array([0.0, 1.0, 2.0, -INF]), mx.array([1.0, 1.0, 1.0, 0.0])),
        bad_mask=[False, True, True, True],
        outside=lambda lo, hi: [lo - 1.0, hi + 1.0, -INF, INF],
        probs=(0.0, 1e-6, 0.1, 0.5, 0.9, 1 - 1e-6, 1.0),
    ),
    "exponential": Spec(
        C.exponential,
        lambda r: st.expon(scale=1.0 / np.asarray(r)),
        [(1.0,), (1e-3,), (1e3,), (3.7,)],
        (2.0,),
        **SCALE_BAD,
        outside=lambda r: [-1e-6, -1.0, -INF],
        extra_values=[0.0],
    ),
    "laplace": Spec(C.laplace, lambda m, s: st.laplace(m, s), LS_GRID, (1.0, 2.0), **LOCSCALE_BAD),
    "cauchy": Spec(
        C.cauchy,
        lambda m, s: st.cauchy(m, s),
        LS_GRID,
        (1.0, 2.0),
        **LOCSCALE_BAD,
        moments=False,
        extra_values=[1e20, -1e30],
    ),
    "logistic": Spec(
        C.logistic, lambda m, s: st.logistic(m, s), LS_GRID, (1.0, 2.0), **LOCSCALE_BAD
    ),
    "gumbel": Spec(C.gumbel, lambda m, s: st.gumbel_r(m, s), LS_GRID, (1.0, 2.0), **LOCSCALE_BAD),
    "half_normal": Spec(
        C.half_normal,
        lambda s: st.halfnorm(scale=s),
        [(1.0,), (1e-3,), (1e3,), (2.5,)],
        (2.0,),
        **SCALE_BAD,
        outside=lambda s: [-1e-6, -INF],
        extra_values=[0.0],
    ),
    "half_cauchy": Spec(
        C.half_cauchy,
        lambda s: st.halfcauchy(scale=s),
        [(1.0,), (1e-3,), (1e3,), (2.5,)],
        (2.0,),
        **SCALE_BAD,
        outside=lambda s: [-1e-6, -INF],
        moments=False,
        extra_values=[0.0, 1e25],
    ),
    "log_normal": Spec(
        C.log_normal,
        lambda m, s: st.lognorm(s=s, scale=np.exp(m)),
        [(0.0, 1.0), (-3.0, 0.01), (5.0, 2.0), (1.0, 0.3)],
        (0.3, 0.4),
        **LOCSCALE_BAD,
        outside=lambda m, s: [0.0, -1.0, -INF],
    ),
    "weibull": Spec(
        C.weibull,
        lambda k, lam: st.weibull_min(k, scale=lam),
        [(1.5, 2.0), (0.3, 1.0), (1.0, 5.0), (20.0, 0.01), (3.0, 1e3)],
        (1.5, 2.0),
        bad_plain=[(0.0, 1.0), (1.0, -1.0), (INF, 1.0), (1.0, math.nan)],
        bad_array=(mx.array([1.0, -1.0, 1.0, 2.0]), mx.array([1.0, 1.0, 0.0, INF])),
        bad_mask=[False, True, True, True],
        outside=lambda k, lam: [-1e-6, -INF],
    ),
    "pareto": Spec(
        C.pareto,
        lambda xm, a: st.pareto(a, scale=xm),
        [(1.0, 3.0), (1e-3, 0.5), (100.0, 10.0), (2.0, 50.0)],
        (1.5, 5.0),
        bad_plain=[(0.0, 1.0), (1.0, -1.0), (INF, 1.0), (1.0, math.nan)],
        bad_array=(mx.array([1.0, -1.0, 1.0, 2.0]), mx.array([1.0, 1.0, 0.0, INF])),
        bad_mask=[False, True, True, True],
        outside=lambda xm, a: [xm * (1 - 1e-5), 0.0, -1.0],
        bad_value=2.5,
        extra_values=[],
    ),
    "truncated_normal": Spec(
        C.truncated_normal,
        _truncnorm,
        [
            (0.0, 1.0, -1.0, 2.0),
            (0.0, 1.0, 8.0, 9.0),
            (0.0, 1.0, -9.0, -8.0),
            (1.0, 2.0, -INF, -30.0),
            (0.0, 1.0, 30.0, INF),
            (0.0, 1.0, -INF, INF),
            (5.0, 0.1, 4.0, 4.5),
            (0.0, 1.0, 1.0, 1.0001),
        ],
        (0.5, 2.0, -1.0, 4.0),
        bad_plain=[
            (0.0, 1.0, 1.0, 1.0),
            (0.0, 1.0, 2.0, 1.0),
            (0.0, 0.0, 0.0, 1.0),
            (0.0, 1.0, INF, INF),
            (0.0, 1.0, math.nan, 1.0),
        ],
        bad_array=(
            mx.array([0.0, 0.0, 0.0, 0.0]),
            mx.array([1.0, 1.0, -1.0, 1.0]),
            mx.array([-1.0, 2.0, -1.0, -INF]),
            mx.array([1.0, 1.0, 1.0, -INF]),
        ),
        bad_mask=[False, True, True, True],
        outside=lambda m, s, lo, hi: [
            v for v in (lo - 1e-3 * (1 + abs(lo)), hi + 1e-3 * (1 + abs(hi))) if math.isfinite(v)
        ],
    ),
    "von_mises": Spec(
        C.von_mises,
        _VonMisesRef,
        [(0.0, 0.0), (0.5, 2.0), (-3.0, 1e-4), (3.0, 50.0), (1.0, 1e4), (10.0, 1.0)],
        (0.5, 2.0),
        bad_plain=[(0.0, -1.0), (INF, 1.0), (0.0, INF), (0.0, math.nan)],
        bad_array=(mx.array([0.0, 0.0, INF, 0.0]), mx.array([1.0, -1.0, 1.0, INF])),
        bad_mask=[False, True, True, True],
        outside=lambda m, k: [-3.2, 3.2, 10.0],
        moments=False,  # circular moments: test_circular_moments
    ),
    "wrapped_cauchy": Spec(
        C.wrapped_cauchy,
        _WrappedCauchyRef,
        [(0.0, 0.0), (0.5, 0.3), (-3.0, 0.9), (3.0, 0.999), (10.0, 0.5)],
        (0.5, 0.6),
        bad_plain=[(0.0, -0.1), (0.0, 1.0), (INF, 0.5), (0.0, math.nan)],
        bad_array=(mx.array([0.0, 0.0, 0.0, INF]), mx.array([0.5, 1.0, -0.5, 0.5])),
        bad_mask=[False, True, True, True],
        outside=lambda m, r: [-3.2, 3.2, 10.0],
        moments=False,
    ),
}
CIRCULAR = {"von_mises", "wrapped_cauchy"}
NAMES = list(SPECS)


def _grid_values(name: str, spec: Spec, params: tuple[float, ...]) -> np.ndarray:
    if name in CIRCULAR:
        return f32(np.concatenate([np.linspace(-math.pi, math.pi, 25), [params[0] % 1.0]]))
    ref = spec.ref(*params)
    v = ref.ppf(np.asarray(spec.probs))
    return f32(np.concatenate([v, spec.extra_values]))


# ----------------------------------------------------------------------- log_prob
@pytest.mark.parametrize("name", NAMES)
def test_log_prob_matches_scipy(name: str) -> None:
    spec = SPECS[name]
    values = [_grid_values(name, spec, p) for p in spec.grid]
    width = max(len(v) for v in values)
    # one broadcast call: values (V, P) against parameter arrays (P,)
    vmat = np.stack([np.pad(v, (0, width - len(v)), mode="edge") for v in values], axis=1)
    params = [f32([p[i] for p in spec.grid]) for i in range(len(spec.grid[0]))]
    got = np64(
        spec.dist.log_prob(
            mx.array(vmat.astype(np.float32)), *[mx.array(p.astype(np.float32)) for p in params]
        )
    )
    assert got.shape == vmat.shape
    for j, p in enumerate(spec.grid):
        pj = tuple(float(f32(x)) for x in p)
        ref = spec.ref(*pj).logpdf(vmat[:, j])
        ok = np.isclose(got[:, j], ref, rtol=1e-5, atol=1e-5) | (got[:, j] == ref)
        assert np.all(ok), (p, vmat[:, j][~ok], got[:, j][~ok], ref[~ok])
    # plain-number parameters and Python-float values give the same
    p0 = spec.grid[0]
    v0 = float(values[0][len(values[0]) // 2])
    lp = float(spec.dist.log_prob(v0, *p0))
    assert math.isclose(lp, float(spec.ref(*p0).logpdf(v0)), rel_tol=1e-5, abs_tol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_outside_support_is_neg_inf(name: str) -> None:
    spec = SPECS[name]
    for p in spec.grid:
        out = spec.outside(*p)
        if out:
            lp = np64(spec.dist.log_prob(mx.array(out, dtype=mx.float32), *p))
            assert np.all(lp == -np.inf), (p, out, lp)
            # no NaN gradient leaks from the guarded branch (value or parameters)
            args = [mx.array(out, dtype=mx.float32)] + [mx.array(x, dtype=mx.float32) for x in p]

            def f(*a: mx.array) -> mx.array:
                o = spec.dist.log_prob(*a)
                return mx.sum(mx.where(mx.isinf(o), 0.0, o))

            for g in mx.grad(f, argnums=tuple(range(len(args))))(*args):
                assert not np.any(np.isnan(np64(g))), (p, out)


@pytest.mark.parametrize("name", NAMES)
def test_infinite_and_nan_values(name: str) -> None:
    # every density vanishes at +-inf: -inf there (never NaN), NaN stays NaN, and no NaN
    # reaches the gradients of the finite elements
    d = SPECS[name].dist
    for p in examples(d):
        nd = max(np.ndim(np.asarray(x)) for x in p)
        v = mx.array([-INF, INF, math.nan]).reshape(3, *([1] * nd))
        lp = np64(d.log_prob(v, *p))
        assert np.all(lp[:2] == -np.inf) and np.all(np.isnan(lp[2]))
        args = [mx.array([-INF, INF]).reshape(2, *([1] * nd))] + [mx.array(x) for x in p]

        def f(*a: mx.array) -> mx.array:
            o = d.log_prob(*a)
            return mx.sum(mx.where(mx.isinf(o), 0.0, o))

        for g in mx.grad(f, argnums=tuple(range(len(args))))(*args):
            assert not np.any(np.isnan(np64(g)))


@pytest.mark.parametrize("name", NAMES)
def test_invalid_plain_params_raise(name: str) -> None:
    spec = SPECS[name]
    key = key_for(name)
    for p in spec.bad_plain:
        with pytest.raises(ValueError, match=spec.dist.name):
            spec.dist.log_prob(0.5, *p)
        with pytest.raises(ValueError, match=spec.dist.name):
            spec.dist.sample(key, *p)


@pytest.mark.parametrize("name", NAMES)
def test_invalid_array_params_give_neg_inf(name: str) -> None:
    spec = SPECS[name]
    mask = np.array(spec.bad_mask)
    params = spec.bad_array
    v = mx.array(spec.bad_value)
    lp = np64(spec.dist.log_prob(v, *params))
    assert np.all(lp[mask] == -np.inf), lp
    assert np.all(np.isfinite(lp[~mask])), lp
    # the gradient w.r.t. every parameter and the value is NaN-free
    for i in range(len(params) + 1):

        def f(*args: mx.array) -> mx.array:
            out = spec.dist.log_prob(*args)
            return mx.sum(mx.where(mx.isinf(out), 0.0, out))

        g = np64(mx.grad(f, argnums=i)(v, *params))
        assert not np.any(np.isnan(g)), (i, g)
    # sampling gives NaN exactly at the invalid elements
    x = np64(spec.dist.sample(key_for(name), *params))
    assert np.all(np.isnan(x[mask])) and not np.any(np.isnan(x[~mask])), x


# ------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_broadcasting(name: str) -> None:
    spec = SPECS[name]
    d = spec.dist
    key = key_for(name)
    assert d.sample(key, *spec.ks).shape == ()
    assert d.sample(key, *spec.ks, shape=(4, 2)).shape == (4, 2)
    assert d.sample(key, *spec.ks, shape=5).shape == (5,)
    for p in examples(d):
        batch = tuple(np.broadcast_shapes(*[np.shape(np.asarray(x)) for x in p]))
        x = d.sample(key, *p, shape=(3,))
        assert x.shape == (3, *batch) and x.dtype == mx.float32
        lp = d.log_prob(x, *p)
        assert lp.shape == (3, *batch) and bool(mx.all(mx.isfinite(lp)))
    assert d.is_discrete is False and d.event_ndim == 0
    assert d.has_reparam is (name != "von_mises")
    # parameters broadcast against each other: a (2, 1) parameter with (3,) ones
    if len(spec.ks) > 1:
        p2 = [mx.full((2, 1) if i == 0 else (3,), v) for i, v in enumerate(spec.ks)]
        assert d.sample(key, *p2, shape=(4,)).shape == (4, 2, 3)
        assert d.log_prob(mx.zeros((5, 1, 1)), *p2).shape == (5, 2, 3)
    # and broadcast against the value
    p1 = [mx.full((2,), v) for v in spec.ks]
    assert d.log_prob(mx.zeros((3, 1)), *p1).shape == (3, 2)


# ---------------------------------------------------------------------- sampling
def _samples(name: str, params: tuple[float, ...], salt: int = 0) -> np.ndarray:
    return np64(SPECS[name].dist.sample(key_for(name, salt), *params, shape=(N,)))


def _ks_pvalue(name: str, params: tuple[float, ...], x: np.ndarray) -> float:
    if name == "von_mises":
        d = np.mod(x - params[0] + np.pi, 2 * np.pi) - np.pi
        if params[1] == 0.0:
            return float(st.kstest(d, st.uniform(-np.pi, 2 * np.pi).cdf).pvalue)
        return float(st.kstest(d, st.vonmises(params[1]).cdf).pvalue)
    if name == "wrapped_cauchy":
        d = np.mod(x - params[0] + np.pi, 2 * np.pi) - np.pi
        return float(st.kstest(d, _WrappedCauchyRef(*params).cdf_centred).pvalue)
    return float(st.kstest(x, SPECS[name].ref(*params).cdf).pvalue)


@pytest.mark.parametrize("name", NAMES)
def test_sampler_goodness_of_fit(name: str) -> None:
    params = SPECS[name].ks
    x = _samples(name, params)
    assert np.all(np.isfinite(x))
    p = _ks_pvalue(name, params, x)
    assert p > 1e-4, p


EXTRA_GOF = [
    ("truncated_normal", (0.0, 1.0, 8.0, 9.0)),  # far tail
    ("truncated_normal", (0.0, 1.0, -9.0, -8.0)),
    ("truncated_normal", (1.0, 2.0, -INF, -30.0)),
    ("truncated_normal", (0.0, 1.0, -0.01, 0.01)),
    ("truncated_normal", (0.0, 1.0, -INF, INF)),
    ("truncated_normal", (0.0, 1.0, -1.0, 40.0)),
    ("von_mises", (0.5, 0.0)),
    ("von_mises", (-3.0, 1e-3)),
    ("von_mises", (3.0, 1.0)),
    ("von_mises", (0.0, 50.0)),
    ("von_mises", (1.0, 1e4)),
    ("wrapped_cauchy", (3.0, 0.0)),
    ("wrapped_cauchy", (-2.0, 0.99)),
    ("weibull", (0.3, 1.0)),
    ("pareto", (1e-3, 0.5)),
    ("exponential", (1e3,)),
]


@pytest.mark.parametrize(("name", "params"), EXTRA_GOF)
def test_sampler_goodness_of_fit_extreme(name: str, params: tuple[float, ...]) -> None:
    x = _samples(name, params, salt=1)
    lp = np64(SPECS[name].dist.log_prob(mx.array(x.astype(np.float32)), *params))
    assert np.all(np.isfinite(lp))
    assert _ks_pvalue(name, params, x) > 1e-4


def test_truncated_normal_far_tail_moments() -> None:
    # [40, 41] is beyond what float64 scipy resolves; the mean of N(0,1) truncated to
    # [a, inf) is phi(a)/(1 - Phi(a)) ~ a + 1/a - 2/a^3, and [40, 41] has the same mean
    # to 1e-300. Variance ~ 1/a^2 - 6/a^4.
    x = _samples("truncated_normal", (0.0, 1.0, 40.0, 41.0), salt=2)
    assert np.all((x >= 40.0) & (x <= 41.0))
    a = 40.0
    mean = a + 1 / a - 2 / a**3 + 10 / a**5
    var = 1 / a**2 - 6 / a**4
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / N)
    assert abs(x.var() - var) < 5 * var * math.sqrt(8.0 / N)  # exponential-like tail: kurtosis 9


@pytest.mark.parametrize("name", [n for n in NAMES if SPECS[n].moments])
def test_sampler_moments(name: str) -> None:
    params = SPECS[name].ks
    x = _samples(name, params, salt=3)
    mean, var, kurt = (float(m) for m in SPECS[name].ref(*params).stats(moments="mvk"))
    se_mean = math.sqrt(var / N)
    se_var = var * math.sqrt((kurt + 2.0) / N)
    assert abs(x.mean() - mean) < 5 * se_mean, (x.mean(), mean)
    assert abs(x.var(ddof=1) - var) < 5 * se_var, (x.var(), var)


@pytest.mark.parametrize(
    ("name", "params"),
    [("von_mises", (0.5, 2.0)), ("von_mises", (-3.0, 30.0)), ("wrapped_cauchy", (0.5, 0.6))],
)
def test_circular_moments(name: str, params: tuple[float, float]) -> None:
    x = _samples(name, params, salt=4)
    c = np.cos(x - params[0])
    if name == "von_mises":
        k = params[1]
        m1 = sp.i1e(k) / sp.i0e(k)
        m2 = sp.ive(2, k) / sp.i0e(k)  # E cos 2d
    else:
        m1 = params[1]
        m2 = params[1] ** 2
    var = (1 + m2) / 2 - m1 * m1
    assert abs(c.mean() - m1) < 5 * math.sqrt(var / N)
    assert abs(np.sin(x - params[0]).mean()) < 5 * math.sqrt((1 - m2) / 2 / N)


# ---------------------------------------------------------------------- gradients
def _fd(f: Callable[[float], float], x: float, h: float | None = None) -> float:
    """Five-point central difference (truncation error O(h^4)) in float64."""
    h = 1e-7 * max(1.0, abs(x)) if h is None else h
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_gradients_match_finite_differences(name: str) -> None:
    spec = SPECS[name]
    d = spec.dist
    for p in spec.grid:
        p = tuple(float(f32(v)) for v in p)
        if name in CIRCULAR:
            values = f32([p[0] % 1.0 - 1.0, p[0] % 1.0 + 0.7])
        else:
            values = f32(spec.ref(*p).ppf([0.1, 0.5, 0.9]))
        for v in values:
            args = [mx.array(v, dtype=mx.float32)] + [mx.array(x, dtype=mx.float32) for x in p]
            grads = mx.grad(lambda *a: d.log_prob(*a), argnums=tuple(range(len(args))))(*args)
            full = (float(v), *p)
            # step: small against both the argument and the spread of the distribution
            if name in CIRCULAR:
                spread = 1.0
            else:
                spread = float(np.diff(spec.ref(*p).ppf([0.25, 0.75]))[0])
            expect = {}
            for i in range(len(full)):
                if not math.isfinite(full[i]):
                    continue  # infinite truncation bound: only NaN-freeness is checked

                def ref_at(t: float, i: int = i, full: tuple[float, ...] = full) -> float:
                    a = list(full)
                    a[i] = t
                    return float(spec.ref(*a[1:]).logpdf(a[0]))

                h = 1e-4 * min(abs(full[i]) or spread, spread)
                expect[i] = _fd(ref_at, full[i], h)
            # float32 rounds each term of the log density's derivative, and those terms
            # are as large as the largest partial derivative (1/scale, z/scale, ...):
            # tolerance 1e-4 relative to that magnitude
            tol = 1e-4 * max(1.0, *(abs(e) for e in expect.values()))
            for i, g in enumerate(grads):
                assert not math.isnan(float(g)), (p, v, i)
                if i in expect:
                    assert abs(float(g) - expect[i]) <= tol, (p, v, i, float(g), expect[i])


def _cdf_for_reparam(name: str, params: list[float], x: float) -> float:
    if name == "wrapped_cauchy":
        dlt = (x - params[0] + math.pi) % (2 * math.pi) - math.pi
        return float(_WrappedCauchyRef(0.0, params[1]).cdf_centred(dlt))
    return float(SPECS[name].ref(*params).cdf(x))


REPARAM_CASES = [(n, SPECS[n].ks) for n in NAMES if n != "von_mises"] + [
    ("truncated_normal", (0.0, 1.0, 8.0, 9.0)),
    ("truncated_normal", (1.0, 2.0, -INF, -30.0)),
]


@pytest.mark.parametrize(("name", "params"), REPARAM_CASES)
def test_reparam_gradients_are_implicit_derivatives(name: str, params: tuple[float, ...]) -> None:
    """Per-sample dx/dθ from mx.grad against -(∂F/∂θ)(x) / f(x) in float64."""
    spec = SPECS[name]
    d = spec.dist
    n = 24
    pvec = [mx.full((n,), v, dtype=mx.float32) for v in params]
    key = key_for(name, 5)
    x = np64(d.reparam_sample(key, *pvec))
    pdf = np.exp(np64(d.log_prob(mx.array(x.astype(np.float32)), *params)))
    for i, v in enumerate(params):
        if not math.isfinite(v):
            continue
        g = np64(mx.grad(lambda *a, i=i: mx.sum(d.reparam_sample(key, *a)), argnums=i)(*pvec))
        for j in range(n):

            def cdf_at(t: float, j: int = j, i: int = i) -> float:
                q = [float(f32(u)) for u in params]
                q[i] = t
                return _cdf_for_reparam(name, q, x[j])

            expect = -_fd(cdf_at, float(f32(v))) / pdf[j]
            # x is float32 and the map is evaluated in float32: 1e-3 relative to the
            # scale of x (the derivative of a location-scale map is ~x/scale)
            tol = 1e-3 * max(1.0, abs(expect), abs(x[j]))
            assert abs(g[j] - expect) <= tol, (i, j, x[j], g[j], expect)


def test_von_mises_rounds_bound() -> None:
    """The docstring's bound: Best–Fisher's acceptance probability per round (with the
    sampler's rho) is >= 0.6577 for all kappa, so 27 rounds fail with prob < 3e-13."""
    th = np.linspace(-np.pi, np.pi, 40001)
    worst = 1.0
    for k in np.geomspace(1e-6, 1e6, 200):
        s = np.sqrt(1 + 4 * k * k)
        tau = 1 + s
        rho = 2 * k * tau / ((s + 1) * (tau + np.sqrt(2 * tau)))
        log_ratio = (
            k * (np.cos(th) - 1)
            + np.log1p(rho * rho - 2 * rho * np.cos(th))
            - np.log(sp.i0e(k))
            - np.log1p(-rho * rho)
        )
        worst = min(worst, float(np.exp(-log_ratio.max())))
    assert worst > 0.6577
    # a proposal also needs its point in the unit disc (probability pi/4)
    assert (1 - (math.pi / 4) * worst) ** C.VON_MISES_ROUNDS < 1e-13
    assert C._VM_REJECT >= 1 - (math.pi / 4) * worst
    # and the acceptance rate seen by the sampler's own test quantity, at kappa = 1
    # (in the efficiency trough) is that of the envelope
    x = _samples("von_mises", (0.0, 1.0), salt=7)
    assert np.all(np.isfinite(x))


def test_von_mises_has_no_reparam() -> None:
    with pytest.raises(TypeError):
        C.von_mises.reparam_sample(mx.random.key(0), 0.0, 1.0)


# ------------------------------------------------------------------ GFI and batching
@pytest.mark.parametrize("name", NAMES)
def test_gfi_laws(name: str) -> None:
    d = SPECS[name].dist
    assert len(examples(d)) >= 2
    for p in examples(d):
        check_gfi_laws(d, p, max_examples=3)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_and_compile_sampling(name: str) -> None:
    d = SPECS[name].dist
    p = examples(d)[1]
    keys = mx.random.split(key_for(name, 6), 4)
    batched = d.sample(keys[0], *p)
    vm = mx.vmap(lambda k: d.sample(k, *p))(keys)
    assert vm.shape == (4, *batched.shape)
    for i in range(4):
        np.testing.assert_array_equal(np.asarray(vm[i]), np.asarray(d.sample(keys[i], *p)))
    comp = mx.compile(lambda k: d.sample(k, *p, shape=(3,)))
    np.testing.assert_allclose(
        np.asarray(comp(keys[1])), np.asarray(d.sample(keys[1], *p, shape=(3,))), rtol=1e-6
    )
    # log_prob under vmap over values with unbatched parameters
    xs = d.sample(keys[2], *p, shape=(4,))
    np.testing.assert_allclose(
        np.asarray(mx.vmap(lambda x: d.log_prob(x, *p))(xs)),
        np.asarray(d.log_prob(xs, *p)),
        rtol=1e-6,
    )
