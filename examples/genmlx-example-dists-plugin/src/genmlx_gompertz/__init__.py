"""An example GenMLX distribution plugin: the Gompertz distribution.

Use it like any GenMLX distribution once installed::

    from genmlx_gompertz import gompertz
    age = gompertz(0.1, 0.5) @ "age"          # inside a @gen function

or through the registry, ``genmlx.core.registry().distributions["gompertz"]``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import mlx.core as mx

from genmlx.core import Distribution

__all__ = ["Gompertz", "gompertz"]


def _arr(x: Any) -> mx.array:
    return x if isinstance(x, mx.array) else mx.array(x, dtype=mx.float32)


def _check(name: str, value: Any) -> None:
    """Plain-number parameters are checked eagerly (arrays give -inf in log_prob)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"gompertz: parameter {name}={value!r} must be > 0 and finite")


class Gompertz(Distribution):
    """Gompertz(eta, b): the distribution of lifetimes with hazard ``eta·b·exp(b·x)``.

    Density, for ``x ≥ 0``, shape ``eta > 0`` and rate ``b > 0``::

        p(x) = b · eta · exp(eta + b·x − eta·exp(b·x))

    CDF ``1 − exp(−eta (exp(b·x) − 1))``; ``scipy.stats.gompertz(c=eta, scale=1/b)``.
    Sampling inverts the CDF, ``x = log1p(−log1p(−u) / eta) / b`` with ``u ~ U(0, 1)``:
    exact, vectorised, and a differentiable function of the parameters, so
    ``has_reparam = True``. Parameters broadcast; values are float32.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx_gompertz import gompertz
        >>> gompertz.sample(mx.random.key(0), 0.1, mx.array([0.5, 2.0]), shape=(3,)).shape
        (3, 2)
        >>> round(float(gompertz.log_prob(1.0, 1.0, 1.0)), 4)  # 1 + 1 - e
        -0.7183
    """

    name = "gompertz"
    params = ("eta", "b")  # in order; gives keywords: gompertz(eta=0.1, b=0.5) @ "x"
    has_reparam = True
    example_params: ClassVar[list[tuple[Any, ...]]] = [
        (0.1, 0.5),
        (mx.array([0.5, 1.0, 3.0]), mx.array([2.0, 1.0, 0.25])),
    ]

    def sample(self, key: mx.array, eta: Any, b: Any, *, shape: tuple[int, ...] = ()) -> mx.array:
        _check("eta", eta)
        _check("b", b)
        e, r = _arr(eta), _arr(b)
        full = (*tuple(shape), *mx.broadcast_shapes(e.shape, r.shape))
        u = mx.random.uniform(shape=full, key=key)
        out: mx.array = mx.log1p(-mx.log1p(-u) / e) / r
        return out

    def log_prob(self, value: Any, eta: Any, b: Any) -> mx.array:
        _check("eta", eta)
        _check("b", b)
        x, e, r = _arr(value), _arr(eta), _arr(b)
        valid = mx.logical_and(e > 0, r > 0)
        es, rs = mx.where(valid, e, 1.0), mx.where(valid, r, 1.0)
        inside = x >= 0
        xs = mx.where(inside, x, 0.0)  # guard: exp of a huge negative value is harmless
        lp = mx.log(rs) + mx.log(es) + es + rs * xs - es * mx.exp(rs * xs)
        out: mx.array = mx.where(mx.logical_and(valid, inside), lp, -mx.inf)
        return out


gompertz = Gompertz()
