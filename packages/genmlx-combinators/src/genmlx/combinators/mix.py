"""``Mix``: a mixture of generative functions.

``Mix(c0, c1, ...)(logits, args0, args1, ...)`` draws a component index ``k`` from
``categorical(logits)`` at address ``"component"``, then runs component ``k`` on its
own argument tuple ``args_k`` at address ``"value"``. It is written as a ``@gen``
body over a :class:`~genmlx.combinators.switch.Switch`, so every GFI operation,
incremental update and batching (one index per particle) come from those.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from genmlx.combinators.dimap import Contramap
from genmlx.combinators.switch import Switch
from genmlx.core.distribution import Distribution
from genmlx.core.dsl import DynamicGenerativeFunction
from genmlx.core.gfi import GenerativeFunction

__all__ = ["Categorical", "Mix", "categorical"]


class Categorical(Distribution):
    """The categorical distribution over ``0..K-1`` given unnormalised log weights.

    A small private copy so that genmlx-combinators depends on genmlx-core only; it
    agrees with ``genmlx.dists.categorical``.
    """

    name = "categorical"
    params = ("logits",)
    is_enumerable = True
    is_discrete = True

    def sample(self, key: mx.array, logits: Any, *, shape: tuple[int, ...] = ()) -> mx.array:
        lg = logits if isinstance(logits, mx.array) else mx.array(logits)
        out = mx.random.categorical(lg, shape=tuple(shape) + lg.shape[:-1] or None, key=key)
        return out.astype(mx.int32)

    def log_prob(self, value: Any, logits: Any) -> mx.array:
        lg = logits if isinstance(logits, mx.array) else mx.array(logits)
        v = value if isinstance(value, mx.array) else mx.array(value)
        lp = lg - mx.logsumexp(lg, axis=-1, keepdims=True)
        k = lg.shape[-1]
        vi = mx.clip(v.astype(mx.int32), 0, k - 1)
        picked = mx.take_along_axis(
            mx.broadcast_to(lp, (*v.shape, k)), vi[..., None], axis=-1
        ).squeeze(-1)
        ok = mx.logical_and(v >= 0, v < k)
        return mx.where(ok, picked, mx.array(-mx.inf))

    def support(self, logits: Any) -> mx.array:
        lg = logits if isinstance(logits, mx.array) else mx.array(logits)
        return mx.arange(lg.shape[-1], dtype=mx.int32)


categorical = Categorical()


def _pick_args(k: int) -> Any:
    def pre(*component_args: Any) -> tuple[Any, ...]:
        return tuple(component_args[k])

    return pre


class Mix(DynamicGenerativeFunction):
    """A mixture: a component index at ``"component"``, then that component at ``"value"``.

    Called as ``Mix(c0, c1, ...)(logits, args0, args1, ...) @ addr`` where ``logits``
    are unnormalised log mixture weights (length = number of components) and ``args_k``
    is the argument tuple of component ``k``. Address layout: ``"component"`` (an int
    in ``0..K-1``) and ``("value", *addresses of the chosen component)``. Score:
    ``log softmax(logits)[k] + score of component k``. Under batching the index differs
    per particle (see :class:`~genmlx.combinators.switch.Switch`).

    Example:
        >>> import math
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.mix import Mix
        >>> @gen
        ... def bump(mu):
        ...     return normal(mu, 1.0) @ "x"
        >>> mix = Mix(bump, bump)
        >>> logits = mx.log(mx.array([0.25, 0.75]))
        >>> ld, _ = mix.assess((logits, (0.0,), (5.0,)),
        ...                    choicemap({"component": 1, ("value", "x"): 5.0}))
        >>> round(float(ld), 4) == round(math.log(0.75) - 0.5 * math.log(2 * math.pi), 4)
        True
    """

    def __init__(self, *components: GenerativeFunction) -> None:
        if not components:
            raise ValueError("Mix needs at least one component")
        for i, c in enumerate(components):
            if not isinstance(c, GenerativeFunction):
                raise TypeError(f"Mix: component {i} is not a generative function: {c!r}")
        self.components = tuple(components)
        switch = Switch(*(Contramap(c, _pick_args(k)) for k, c in enumerate(components)))
        # the inner Switch and its branches pickle as parts of this Mix (so that traces
        # pickled with it still belong to this Mix's Switch after unpickling)
        self._switch = switch
        object.__setattr__(switch, "_pickle_owner", (self, ("_switch",)))
        for k, branch in enumerate(switch.branches):
            object.__setattr__(branch, "_pickle_owner", (self, ("_switch", "branches", k)))
        n = len(components)
        name = "Mix(" + ", ".join(getattr(c, "name", "?") for c in components) + ")"

        def body(logits: Any, *component_args: Any) -> Any:
            if len(component_args) != n:
                raise TypeError(
                    f"{name}: expected one argument tuple per component ({n}), "
                    f"got {len(component_args)}"
                )
            lg = logits if isinstance(logits, mx.array) else mx.array(logits)
            if lg.ndim == 0 or lg.shape[-1] != n:
                raise ValueError(
                    f"{name}: logits has shape {tuple(lg.shape)}, but the mixture has {n} "
                    f"components; give one logit per component (last axis of length {n})"
                )
            k = categorical(lg) @ "component"
            return switch(k, *component_args) @ "value"

        body.__qualname__ = name
        super().__init__(body)
        self.name = name

    def __reduce__(self) -> Any:
        """Pickled as its components (by reference where they have module-level names)."""
        from genmlx.core.serialize import reference, resolve_reference

        ref = reference(self)
        if ref is not None:
            return (resolve_reference, (ref,))
        return (Mix, self.components)

    def __repr__(self) -> str:
        return f"<{self.name}>"
