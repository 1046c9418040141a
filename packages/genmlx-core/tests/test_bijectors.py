"""Every bijector of :mod:`genmlx.core.bijectors`: round trips, log-determinants against
the automatic-differentiation Jacobian, domains, shapes and batching.

For maps onto a lower-dimensional manifold (a ``K``-simplex, triangular and correlation
Cholesky factors, positive definite matrices) the Jacobian is taken with respect to the
free coordinates of the value: the first ``K - 1`` entries of a simplex, the lower
triangle of a Cholesky factor or of a symmetric matrix, the strict lower triangle of a
correlation Cholesky factor (the densities of ``dirichlet``, ``LKJ`` and ``wishart`` are
on those coordinates).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import constraints as C
from genmlx.core.bijectors import (
    AffineBijector,
    Bijector,
    ComposeBijector,
    CorrCholeskyBijector,
    ExpBijector,
    IdentityBijector,
    IntervalBijector,
    LowerCholeskyBijector,
    OrderedBijector,
    PositiveDefiniteBijector,
    SigmoidBijector,
    StickBreakingBijector,
    biject_to,
)


def _tril(n: int, k: int) -> tuple[mx.array, mx.array]:
    r, c = np.tril_indices(n, k)
    return mx.array(r.astype(np.int32)), mx.array(c.astype(np.int32))


def _free_simplex(x: mx.array) -> mx.array:
    return x[..., :-1]


def _free_tril(n: int, k: int) -> Callable[[mx.array], mx.array]:
    r, c = _tril(n, k)
    return lambda x: x[..., r, c]


def _ident(x: mx.array) -> mx.array:
    return x


# (name, bijector, unconstrained shape, free coordinates of the value, domain)
CASES: list[tuple[str, Bijector, tuple[int, ...], Callable[[mx.array], mx.array], Any]] = [
    ("identity", IdentityBijector(), (3,), _ident, C.real),
    ("exp", ExpBijector(), (3,), _ident, C.positive),
    ("exp_low", ExpBijector(2.0), (3,), _ident, C.greater_than(2.0)),
    ("exp_high", ExpBijector(high=1.0), (3,), _ident, C.less_than(1.0)),
    ("sigmoid", SigmoidBijector(-1.0, 3.0), (3,), _ident, C.interval(-1.0, 3.0)),
    ("unit", SigmoidBijector(0.0, 1.0), (3,), _ident, C.unit_interval),
    (
        "interval_arrays",
        IntervalBijector(mx.array([0.0, -math.inf, 1.0, -math.inf]),
                         mx.array([1.0, 2.0, math.inf, math.inf])),
        (4,),
        _ident,
        None,
    ),
    ("affine", AffineBijector(1.0, -2.0), (3,), _ident, C.real),
    ("compose", ComposeBijector(AffineBijector(0.5, 2.0), ExpBijector()), (3,), _ident,
     C.positive),
    ("stick_breaking", StickBreakingBijector(), (3,), _free_simplex, C.simplex),
    ("ordered", OrderedBijector(), (4,), _ident, C.ordered),
    ("lower_cholesky", LowerCholeskyBijector(), (6,), _free_tril(3, 0), C.lower_cholesky),
    ("positive_definite", PositiveDefiniteBijector(), (6,), _free_tril(3, 0),
     C.positive_definite),
    ("corr_cholesky_3", CorrCholeskyBijector(), (3,), _free_tril(3, -1), C.corr_cholesky),
    ("corr_cholesky_4", CorrCholeskyBijector(), (6,), _free_tril(4, -1), C.corr_cholesky),
]
IDS = [c[0] for c in CASES]


def _jacobian(f: Callable[[mx.array], mx.array], y: mx.array) -> np.ndarray:
    """``∂f/∂y`` as ``[out, in]``, one reverse-mode gradient per output coordinate."""
    n_out = int(f(y).size)
    rows = []
    for i in range(n_out):
        g = mx.grad(lambda yy, i=i: f(yy).reshape(-1)[i])(y)
        rows.append(np.array(g, dtype=np.float64).reshape(-1))
    return np.stack(rows, 0)


def _point(shape: tuple[int, ...], seed: int) -> mx.array:
    return mx.array(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize(("name", "bij", "ushape", "free", "domain"), CASES, ids=IDS)
def test_round_trip_and_domain(name: str, bij: Bijector, ushape: tuple[int, ...],
                               free: Any, domain: Any) -> None:
    for seed in range(3):
        y = _point(ushape, seed)
        x = bij.forward(y)
        assert bool(mx.all(bij.domain.check(x))), f"{name}: forward left the domain"
        back = bij.inverse(x)
        np.testing.assert_allclose(np.array(back), np.array(y), atol=2e-5, rtol=1e-4)
        # forward ∘ inverse on the constrained side
        np.testing.assert_allclose(np.array(bij.forward(back)), np.array(x), atol=2e-6,
                                   rtol=1e-5)


@pytest.mark.parametrize(("name", "bij", "ushape", "free", "domain"), CASES, ids=IDS)
def test_log_det_matches_the_autodiff_jacobian(name: str, bij: Bijector,
                                               ushape: tuple[int, ...], free: Any,
                                               domain: Any) -> None:
    for seed in range(3):
        y = _point(ushape, seed + 10)
        jac = _jacobian(lambda yy: free(bij.forward(yy)), y)
        assert jac.shape[0] == jac.shape[1], f"{name}: the free coordinates are not square"
        _, expect = np.linalg.slogdet(jac)
        got = float(mx.sum(bij.log_det_jacobian(y)))
        assert got == pytest.approx(expect, abs=2e-4, rel=2e-5), name
        x2, ld2 = bij.forward_and_log_det(y)
        assert float(mx.sum(ld2)) == pytest.approx(got, abs=1e-6)
        np.testing.assert_allclose(np.array(x2), np.array(bij.forward(y)), atol=1e-7)


@pytest.mark.parametrize(("name", "bij", "ushape", "free", "domain"), CASES, ids=IDS)
def test_shapes_and_batching(name: str, bij: Bijector, ushape: tuple[int, ...], free: Any,
                             domain: Any) -> None:
    if isinstance(bij, IntervalBijector):
        pytest.skip("its bounds fix the element shape")
    y = _point((2, 5, *ushape), 7)
    x = bij.forward(y)
    cshape = bij.constrained_shape(ushape)
    assert x.shape == (2, 5, *cshape)
    assert bij.unconstrained_shape(cshape) == ushape
    assert bij.inverse(x).shape == y.shape
    ld = bij.log_det_jacobian(y)
    per_event = (2, 5) if bij.event_ndim else (2, 5, *ushape)
    assert ld.shape == per_event
    # each batch row equals the unbatched map
    one = bij.forward(y[1, 3])
    np.testing.assert_allclose(np.array(x[1, 3]), np.array(one), atol=1e-6)
    np.testing.assert_allclose(
        float(mx.sum(ld[1, 3])), float(mx.sum(bij.log_det_jacobian(y[1, 3]))), atol=1e-5
    )
    # and under vmap / compile
    vx = mx.vmap(bij.forward)(y.reshape(10, *ushape))
    np.testing.assert_allclose(np.array(vx), np.array(x.reshape(10, *cshape)), atol=1e-6)
    cx = mx.compile(bij.forward)(y)
    np.testing.assert_allclose(np.array(cx), np.array(x), atol=1e-6)


@pytest.mark.parametrize(("name", "bij", "ushape", "free", "domain"), CASES, ids=IDS)
def test_biject_to_picks_an_equivalent_map(name: str, bij: Bijector, ushape: tuple[int, ...],
                                           free: Any, domain: Any) -> None:
    if domain is None:
        pytest.skip("built directly")
    b2 = biject_to(domain)
    if isinstance(bij, (AffineBijector, ComposeBijector)):
        assert b2.domain == domain
        return
    y = _point(ushape, 3)
    np.testing.assert_allclose(np.array(b2.forward(y)), np.array(bij.forward(y)), atol=1e-6)


def test_biject_to_infinite_bounds_and_arrays() -> None:
    assert isinstance(biject_to(C.interval(-math.inf, 2.0)), ExpBijector)
    assert isinstance(biject_to(C.interval(0.0, math.inf)), ExpBijector)
    assert isinstance(biject_to(C.interval(-math.inf, math.inf)), IdentityBijector)
    assert isinstance(biject_to(C.interval(mx.array(0.0), mx.array(2.0))), IntervalBijector)
    b = biject_to(C.interval(-math.inf, 2.0))
    assert float(b.forward(mx.array(0.0))) == pytest.approx(1.0)
    # an interval with array bounds agrees with the scalar maps element by element
    ib = IntervalBijector(mx.array([0.0, -math.inf, 1.0, -math.inf]),
                          mx.array([2.0, 2.0, math.inf, math.inf]))
    y = mx.array([0.3, -0.4, 1.2, 5.0])
    expect = [
        float(SigmoidBijector(0.0, 2.0).forward(y[0])),
        float(ExpBijector(high=2.0).forward(y[1])),
        float(ExpBijector(1.0).forward(y[2])),
        5.0,
    ]
    np.testing.assert_allclose(np.array(ib.forward(y)), expect, rtol=1e-6)


def test_biject_to_refuses_discrete_and_unknown_domains() -> None:
    with pytest.raises(TypeError, match="discrete domain"):
        biject_to(C.boolean)
    with pytest.raises(TypeError, match="discrete domain"):
        biject_to(C.nonnegative_integer)

    class Odd(C.Constraint):
        name = "odd"

    with pytest.raises(ValueError, match="no bijector is known for the domain odd"):
        biject_to(Odd())


def test_stick_breaking_zero_is_uniform_and_extremes_stay_in_the_simplex() -> None:
    s = StickBreakingBijector()
    x = s.forward(mx.zeros(4))
    np.testing.assert_allclose(np.array(x), [0.2] * 5, atol=1e-6)
    big = s.forward(mx.array([30.0, -30.0, 30.0]))
    assert bool(mx.all(big >= 0)) and float(mx.sum(big)) == pytest.approx(1.0, abs=1e-6)
    assert bool(mx.all(mx.isfinite(s.log_det_jacobian(mx.array([30.0, -30.0, 30.0])))))


def test_positive_definite_forward_is_symmetric_and_cholesky_inverse() -> None:
    pd = PositiveDefiniteBijector()
    y = _point((10,), 4)  # 4 x 4
    m = pd.forward(y)
    np.testing.assert_allclose(np.array(m), np.array(m).T, atol=1e-6)
    assert np.all(np.linalg.eigvalsh(np.array(m, dtype=np.float64)) > 0)
    np.testing.assert_allclose(np.array(pd.inverse(m)), np.array(y), atol=1e-4)


def test_corr_cholesky_rows_have_unit_norm() -> None:
    cc = CorrCholeskyBijector()
    low = cc.forward(_point((3, 10), 5))  # three 5 x 5 factors
    corr = np.array(low @ mx.swapaxes(low, -1, -2))
    np.testing.assert_allclose(np.diagonal(corr, axis1=-2, axis2=-1), 1.0, atol=1e-5)
    assert np.all(np.abs(corr) <= 1 + 1e-5)


def test_reprs_name_their_domain() -> None:
    assert repr(biject_to(C.positive)) == "ExpBijector(domain=positive)"
    assert repr(biject_to(C.interval(0.0, 2.0))) == "SigmoidBijector(domain=interval(0.0, 2.0))"
    assert repr(StickBreakingBijector()) == "StickBreakingBijector()"


def test_structural_equality() -> None:
    assert ExpBijector() == ExpBijector() and hash(ExpBijector()) == hash(ExpBijector())
    assert ExpBijector() != ExpBijector(1.0) and ExpBijector() != ExpBijector(high=0.0)
    assert biject_to(C.interval(0.0, 2.0)) == SigmoidBijector(0.0, 2.0)
    assert AffineBijector(1.0, 2.0) == AffineBijector(1.0, 2.0) != AffineBijector(1.0, 3.0)
    assert StickBreakingBijector() == StickBreakingBijector() != OrderedBijector()


def test_float64_maps_are_double_precision() -> None:
    # MLX's float64 exp is float32-accurate; the bijectors use expm1 + 1 in float64
    with mx.stream(mx.cpu):
        y = mx.array([0.3, 1.7, -2.2], dtype=mx.float64)
        x = ExpBijector().forward(y)
        assert x.dtype == mx.float64
        np.testing.assert_allclose(np.array(x), np.exp(np.array(y)), rtol=1e-14)
        o = OrderedBijector().forward(y)
        ref = np.cumsum(np.concatenate([[0.3], np.exp([1.7, -2.2])]))
        np.testing.assert_allclose(np.array(o), ref, rtol=1e-14)
