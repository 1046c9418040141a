"""An example GenMLX distribution plugin: the Gompertz distribution.

Use it like any GenMLX distribution once installed::

    from genmlx_gompertz import gompertz
    age = gompertz(0.1, 0.5) @ "age"          # inside a @gen function

or through the registry, ``genmlx.core.registry().distributions["gompertz"]``.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from genmlx.core import Distribution
from genmlx.core import constraints as C
from genmlx.core.distribution import Param

__all__ = ["EXAMPLES", "Gompertz", "gompertz"]


def _arr(x: Any) -> mx.array:
    return x if isinstance(x, mx.array) else mx.array(x, dtype=mx.float32)


class Gompertz(Distribution):
    """Gompertz(eta, b): the distribution of lifetimes with hazard ``eta·b·exp(b·x)``.

    Density, for ``x ≥ 0``, shape ``eta > 0`` and rate ``b > 0``::

        p(x) = b · eta · exp(eta + b·x − eta·exp(b·x))

    CDF ``1 − exp(−eta (exp(b·x) − 1))``; ``scipy.stats.gompertz(c=eta, scale=1/b)``.
    Sampling inverts the CDF, ``x = log1p(−log1p(−u) / eta) / b`` with ``u ~ U(0, 1)``:
    exact, vectorised, and a differentiable function of the parameters, so
    ``has_reparam = True``. Parameters broadcast; values are float32.

    The parameters are declared once (``Param``): the base class checks plain numbers
    eagerly with its standard wording (``gompertz(-1.0, 0.5)`` raises), gives the
    validity mask of array parameters (``params_valid``), and binds keywords
    (``gompertz(eta=0.1, b=0.5) @ "x"``).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx_gompertz import gompertz
        >>> gompertz.sample(mx.random.key(0), 0.1, mx.array([0.5, 2.0]), shape=(3,)).shape
        (3, 2)
        >>> round(float(gompertz.log_prob(1.0, 1.0, 1.0)), 4)  # 1 + 1 - e
        -0.7183
    """

    name = "gompertz"
    params = (Param("eta", C.positive), Param("b", C.positive))
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain (used by gradient
        methods, MAP and VI to work on the unconstrained scale)."""
        del params
        return C.positive

    def sample(self, key: mx.array, eta: Any, b: Any, *, shape: tuple[int, ...] = ()) -> mx.array:
        e, r = _arr(eta), _arr(b)
        full = (*tuple(shape), *mx.broadcast_shapes(e.shape, r.shape))
        u = mx.random.uniform(shape=full, key=key)
        out: mx.array = mx.log1p(-mx.log1p(-u) / e) / r
        return mx.where(self.params_valid(eta, b), out, mx.nan)

    def log_prob(self, value: Any, eta: Any, b: Any) -> mx.array:
        x, e, r = _arr(value), _arr(eta), _arr(b)
        valid = self.params_valid(eta, b)
        es, rs = mx.where(valid, e, 1.0), mx.where(valid, r, 1.0)
        inside = x >= 0
        xs = mx.where(inside, x, 0.0)  # guard: exp of a huge negative value is harmless
        lp = mx.log(rs) + mx.log(es) + es + rs * xs - es * mx.exp(rs * xs)
        out: mx.array = mx.where(mx.logical_and(valid, inside), lp, -mx.inf)
        return out


gompertz = Gompertz()

#: Parameter tuples the distribution kit checks (given at registration).
EXAMPLES: list[tuple[Any, ...]] = [
    (0.1, 0.5),
    (mx.array([0.5, 1.0, 3.0]), mx.array([2.0, 1.0, 0.25])),
]
