"""Reference distributions and models for the conformance kit's self-tests and docs.

These are small, exact implementations written on the public
:class:`~genmlx.core.Distribution` base so that core can be tested (and its examples
run) without genmlx-dists. They are not a distribution library: use ``genmlx.dists``
for modelling. ``beta`` here samples by order statistics and so accepts integer
parameters only.

The models are the ones named in the cross-system conformance specification
(``single_gaussian``, ``two_normals``, ``beta_bernoulli``, ``linear_regression``,
``many_addresses``, ``mixed``).
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

from genmlx.core import constraints as C
from genmlx.core.distribution import Distribution
from genmlx.core.dsl import DynamicGenerativeFunction, gen
from genmlx.core.fused import NORMAL

__all__ = [
    "MODELS",
    "Bernoulli",
    "Beta",
    "Normal",
    "bernoulli",
    "beta",
    "beta_bernoulli",
    "linear_regression",
    "many_addresses",
    "mixed",
    "normal",
    "single_gaussian",
    "two_normals",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _arr(x: Any) -> mx.array:
    return x if isinstance(x, mx.array) else mx.array(x, dtype=mx.float32)


def _shape(shape: tuple[int, ...], *params: mx.array) -> tuple[int, ...]:
    return tuple(shape) + tuple(mx.broadcast_shapes(*(p.shape for p in params)))


def _lgamma(x: mx.array) -> mx.array:
    """log Γ(x) for x > 0 (Lanczos, g = 7); accurate to float32 precision."""
    coefs = (
        0.99999999999980993,
        676.5203681218851,
        -1259.1392167224028,
        771.32342877765313,
        -176.61502916214059,
        12.507343278686905,
        -0.13857109526572012,
        9.9843695780195716e-6,
        1.5056327351493116e-7,
    )
    z = x - 1.0
    acc = mx.full(z.shape, coefs[0])
    for i, c in enumerate(coefs[1:], start=1):
        acc = acc + c / (z + i)
    t = z + 7.5
    return _HALF_LOG_2PI + (z + 0.5) * mx.log(t) - t + mx.log(acc)


class Normal(Distribution):
    """Normal(mu, sigma), broadcasting (reference implementation)."""

    name = "normal"
    params = ("mu", "sigma")
    gaussian_location_scale = True
    has_reparam = True
    fused_log_prob = NORMAL

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.real

    def sample(
        self, key: mx.array, mu: Any, sigma: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        m, s = _arr(mu), _arr(sigma)
        eps = mx.random.normal(_shape(shape, m, s), key=key)
        return self.from_standard_normal(eps, m, s)

    def standard_normal_shape(self, mu: Any, sigma: Any) -> tuple[int, ...]:
        """The shape of one draw's standard normals."""
        return _shape((), _arr(mu), _arr(sigma))

    def from_standard_normal(self, z: mx.array, mu: Any, sigma: Any) -> mx.array:
        """``mu + sigma * z``."""
        out: mx.array = _arr(mu) + _arr(sigma) * z
        return out

    def log_prob(self, value: Any, mu: Any, sigma: Any) -> mx.array:
        x, m, s = _arr(value), _arr(mu), _arr(sigma)
        z = (x - m) / s
        out: mx.array = -0.5 * z * z - mx.log(s) - _HALF_LOG_2PI
        return out


class Bernoulli(Distribution):
    """Bernoulli(p) with boolean values (reference implementation)."""

    name = "bernoulli"
    params = ("p",)
    is_discrete = True
    is_enumerable = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.boolean

    def sample(self, key: mx.array, p: Any, *, shape: tuple[int, ...] = ()) -> mx.array:
        pa = _arr(p)
        out: mx.array = mx.random.uniform(shape=_shape(shape, pa), key=key) < pa
        return out

    def log_prob(self, value: Any, p: Any) -> mx.array:
        value, p = _arr(value), _arr(p)
        valid = mx.logical_and(p >= 0, p <= 1)  # False for NaN too
        ps = mx.where(valid, p, 0.5)  # guard: no NaN (nor NaN gradient) from log
        lp = mx.where(value.astype(mx.bool_), mx.log(ps), mx.log1p(-ps))
        out: mx.array = mx.where(valid, lp, -mx.inf)  # an invalid p has no mass anywhere
        return out

    def support(self, *params: Any) -> mx.array:
        return mx.array([False, True])


class Beta(Distribution):
    """Beta(alpha, beta) for integer parameters (reference implementation).

    Samples are the ``alpha``-th smallest of ``alpha + beta - 1`` uniforms.
    """

    name = "beta"
    params = ("alpha", "beta")

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.unit_interval

    def sample(
        self, key: mx.array, alpha: Any, beta: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        a, b = float(alpha), float(beta)
        if a != int(a) or b != int(b) or a < 1 or b < 1:
            raise ValueError("the reference beta samples integer parameters >= 1 only")
        m = int(a) + int(b) - 1
        u = mx.random.uniform(shape=(*tuple(shape), m), key=key)
        return mx.sort(u, axis=-1)[..., int(a) - 1]

    def log_prob(self, value: Any, alpha: Any, beta: Any) -> mx.array:
        x, a, b = _arr(value), _arr(alpha), _arr(beta)
        log_b = _lgamma(a) + _lgamma(b) - _lgamma(a + b)
        lp = (a - 1.0) * mx.log(x) + (b - 1.0) * mx.log1p(-x) - log_b
        return mx.where(mx.logical_and(x > 0, x < 1), lp, -mx.inf)


normal = Normal()
bernoulli = Bernoulli()
beta = Beta()


@gen
def single_gaussian() -> Any:
    """x ~ N(0, 1)."""
    return normal(0.0, 1.0) @ "x"


@gen
def two_normals() -> Any:
    """mu ~ N(0, 10); x ~ N(mu, 1)."""
    mu = normal(0.0, 10.0) @ "mu"
    return normal(mu, 1.0) @ "x"


@gen
def beta_bernoulli() -> Any:
    """p ~ Beta(2, 2); x ~ Bernoulli(p)."""
    p = beta(2.0, 2.0) @ "p"
    return bernoulli(p) @ "x"


@gen
def linear_regression(xs: Any) -> Any:
    """slope, intercept ~ N(0, 10); y_i ~ N(slope * x_i + intercept, 1) at "y{i}"."""
    slope = normal(0.0, 10.0) @ "slope"
    intercept = normal(0.0, 10.0) @ "intercept"
    for i in range(len(xs)):
        normal(slope * xs[i] + intercept, 1.0) @ f"y{i}"
    return slope


@gen
def many_addresses() -> Any:
    """mu ~ N(0, 10); y_i ~ N(mu, 1) for i = 0..9 at "y{i}"."""
    mu = normal(0.0, 10.0) @ "mu"
    for i in range(10):
        normal(mu, 1.0) @ f"y{i}"
    return mu


@gen
def mixed() -> Any:
    """coin ~ Bernoulli(0.5); x ~ N(10, 1) if coin else N(0, 1) (a Python branch)."""
    coin = bernoulli(0.5) @ "coin"
    if coin:
        return normal(10.0, 1.0) @ "x"
    return normal(0.0, 1.0) @ "x"


MODELS: dict[str, DynamicGenerativeFunction] = {
    "single_gaussian": single_gaussian,
    "single_normal": single_gaussian,
    "two_normals": two_normals,
    "beta_bernoulli": beta_bernoulli,
    "linear_regression": linear_regression,
    "linear_regression_5": linear_regression,
    "many_addresses": many_addresses,
    "mixed": mixed,
}
"""The conformance specification's model names → models."""
