"""Distribution constructors: build new distributions out of existing ones.

* :func:`mixture` — finite mixtures (Gen.jl's ``HomogeneousMixture`` and
  ``HeterogeneousMixture``);
* :func:`product` — a joint of independent distributions, one stacked value;
* :func:`iid` — ``n`` independent draws as one vector choice;
* :func:`transformed` — the push-forward of a distribution through a bijector: this
  module's elementwise :class:`Bijector` (``exp_bijector``, ``sigmoid_bijector``,
  :func:`affine`, :meth:`~genmlx.dists.Bijector.from_functions`) or any of
  :mod:`genmlx.core.bijectors` (or a domain, meaning its ``biject_to``);
* :func:`from_functions` — a distribution from a user's own sample and log-density functions.

Every constructed object is a :class:`~genmlx.core.Distribution`, so it is traced with
``d(*params) @ addr`` like any other.

**Parameter batch shapes.** To sample a constructed distribution without Python loops
while keeping every batch element independent, the constructors broadcast the components'
parameters to the full batch shape. For that they need each parameter's number of
trailing *event* axes (1 for ``mv_normal``'s mean, 2 for its covariance, 0 for scalars):
taken from the ``param_event_ndims`` argument, else the component's
``param_event_ndims`` attribute, else a table for the library's vector-parameter
distributions (``categorical``, ``dirichlet``, ``multinomial``, ``mv_normal``, ...), else
0 for every parameter. The constructed distributions themselves answer through two
hooks, ``params_batch_shape(*params)`` and ``broadcast_params(batch, *params)``, so they
nest (``iid(mixture(normal), n)``, ``mixture([product(...), product(...)])``); those with
array parameters also declare ``param_event_ndims`` (a mixture's component axis counts as
an event axis of each of its parameters: ``mixture(normal)`` has ``(1, 1, 1)``).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.dists.constructors import iid, mixture
    >>> from genmlx.dists.continuous import normal
    >>> mix = mixture(normal)  # weights, then mu and sigma with a trailing component axis
    >>> w, mu, sd = mx.array([0.3, 0.7]), mx.array([-2.0, 2.0]), mx.array([1.0, 0.5])
    >>> mix.sample(mx.random.key(0), w, mu, sd, shape=(4,)).shape
    (4,)
    >>> iid(normal, 3).sample(mx.random.key(0), 0.0, 1.0).shape
    (3,)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import constraints as C
from genmlx.core.bijectors import Bijector as CoreBijector
from genmlx.core.bijectors import biject_to
from genmlx.core.distribution import Distribution
from genmlx.dists.base import arr, validation_enabled
from genmlx.dists.examples import examples

__all__ = [
    "IID",
    "Bijector",
    "FunctionDistribution",
    "HeterogeneousMixture",
    "HomogeneousMixture",
    "Product",
    "Transformed",
    "affine",
    "exp_bijector",
    "from_functions",
    "iid",
    "mixture",
    "product",
    "sigmoid_bijector",
    "transformed",
]

# Parameter event ndims of the library's distributions with vector/matrix parameters
# (DESIGN §6 names), used when a distribution does not declare ``param_event_ndims``.
_KNOWN_PARAM_EVENT_NDIMS: dict[str, tuple[int, ...]] = {
    "categorical": (1,),
    "categorical_logits": (1,),
    "dirichlet": (1,),
    "multinomial": (0, 1),
    "dirichlet_multinomial": (0, 1),
    "piecewise_uniform": (1, 1),
    "mv_normal": (1, 2),
    "wishart": (0, 2),
    "inv_wishart": (0, 2),
}

_WEIGHT_TOL = 1e-4
_MIX_CLAMP = 60.0


# --------------------------------------------------------------------------- helpers
def _resolve_pen(
    dist: Distribution, n_params: int, override: Sequence[int] | None
) -> tuple[int, ...]:
    """Each parameter's number of trailing event axes (see the module docstring)."""
    pen = override
    if pen is None:
        pen = getattr(dist, "param_event_ndims", None)
    if pen is None:
        pen = _KNOWN_PARAM_EVENT_NDIMS.get(dist.name)
    if pen is None:
        return (0,) * n_params
    pen = tuple(int(e) for e in pen)
    if len(pen) != n_params:
        raise ValueError(
            f"{dist.name}: got {n_params} parameters but param_event_ndims {pen} describes "
            f"{len(pen)}"
        )
    return pen


def _n_params(dist: Distribution) -> int | None:
    """The number of parameters ``dist.sample`` takes after the key (None: variadic)."""
    try:
        sig = inspect.signature(dist.sample)
    except (TypeError, ValueError):
        return None
    kinds = [p.kind for p in sig.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    n = sum(k in positional for k in kinds)
    return n - 1 if n >= 1 else None


def _declared_pen(
    dist: Distribution, override: Sequence[int] | None = None
) -> tuple[int, ...] | None:
    """``dist``'s parameter event ranks when they can be known without a call."""
    pen = override if override is not None else getattr(dist, "param_event_ndims", None)
    if pen is None:
        pen = _KNOWN_PARAM_EVENT_NDIMS.get(dist.name)
    if pen is None:
        n = _n_params(dist)
        pen = None if n is None else (0,) * n
    return None if pen is None else tuple(int(e) for e in pen)


def _shape_of(p: Any) -> tuple[int, ...]:
    if isinstance(p, mx.array):
        return tuple(p.shape)
    return tuple(np.shape(p))


def _param_batch(params: Sequence[Any], pen: Sequence[int]) -> tuple[int, ...]:
    """Broadcast batch shape of ``params`` (each with ``pen[i]`` trailing event axes)."""
    shapes = []
    for p, e in zip(params, pen):
        s = _shape_of(p)
        shapes.append(s[: len(s) - e])
    return tuple(mx.broadcast_shapes(*shapes)) if shapes else ()


def _broadcast_params(
    params: Sequence[Any], pen: Sequence[int], batch: tuple[int, ...]
) -> tuple[Any, ...]:
    """Broadcast array parameters to ``batch + own event shape``.

    Plain numbers are left alone (so the component still validates them eagerly) unless
    no parameter is an array, in which case the first is made one, so that the component
    samples the whole ``batch`` (independent draws for every batch element).
    """
    out = list(params)
    arrays = [i for i, p in enumerate(out) if not isinstance(p, (int, float, bool))]
    if not arrays and out and batch:
        arrays = [0]
    for i in arrays:
        p = out[i] if isinstance(out[i], mx.array) else mx.array(out[i])
        s = tuple(p.shape)
        out[i] = mx.broadcast_to(p, (*batch, *s[len(s) - pen[i] :]))
    return tuple(out)


def _batch_of(
    dist: Distribution, params: Sequence[Any], override: Sequence[int] | None = None
) -> tuple[int, ...]:
    """The broadcast batch shape of ``dist``'s parameters: from the distribution's
    ``params_batch_shape(*params)`` hook (the constructed distributions have one), else
    from each parameter's number of event axes."""
    hook = getattr(dist, "params_batch_shape", None)
    if override is None and callable(hook):
        return tuple(hook(*params))
    return _param_batch(params, _resolve_pen(dist, len(params), override))


def _broadcast_for(
    dist: Distribution,
    params: Sequence[Any],
    batch: tuple[int, ...],
    override: Sequence[int] | None = None,
) -> tuple[Any, ...]:
    """``dist``'s parameters broadcast to the batch shape ``batch`` (through its
    ``broadcast_params(batch, *params)`` hook when it has one)."""
    hook = getattr(dist, "broadcast_params", None)
    if override is None and callable(hook):
        return tuple(hook(batch, *params))
    return _broadcast_params(params, _resolve_pen(dist, len(params), override), batch)


def _as_value(value: Any) -> mx.array:
    return value if isinstance(value, mx.array) else mx.array(value)


def _check_weights_plain(name: str, weights: Any) -> None:
    if not validation_enabled() or isinstance(weights, mx.array):
        return
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 0:
        raise ValueError(f"{name}: weights must be a vector (trailing component axis)")
    ok = bool(np.all(np.isfinite(w)) and np.all(w >= 0))
    ok = ok and bool(np.all(np.abs(w.sum(axis=-1) - 1.0) <= _WEIGHT_TOL))
    if not ok:
        raise ValueError(
            f"{name}: parameter weights={weights!r} is invalid; it must be non-negative and "
            "sum to 1 along its last axis (genmlx.dists.validation(False) turns this off)"
        )


def _log_mix(w: mx.array, lp: mx.array) -> mx.array:
    """``log Σ_k w_k exp(lp_k)`` over the last axis: stable, NaN-free, with finite
    gradients (also w.r.t. zero weights); ``-inf`` where ``w`` is not a probability
    vector."""
    K = w.shape[-1]
    # mx.logical_and, not `&`: MLX 0.32's bitwise ops mishandle batch axes under vmap
    valid = mx.logical_and(
        mx.logical_and(mx.all(w >= 0, axis=-1), mx.all(mx.isfinite(w), axis=-1)),
        mx.abs(mx.sum(w, axis=-1) - 1.0) <= _WEIGHT_TOL,
    )
    w = mx.where(valid[..., None], w, 1.0 / K)
    pos = w > 0
    logw = mx.where(pos, mx.log(mx.where(pos, w, 1.0)), -mx.inf)
    a = lp + logw
    m = mx.stop_gradient(mx.max(a, axis=-1, keepdims=True))
    m = mx.where(mx.isfinite(m), m, 0.0)
    d = lp - m
    # w·e^d is exact and overflow-free while d ≤ 60 (w ≤ 1); beyond, w < e^-60 and
    # e^(d + log w) ≤ 1 is used instead (zero where w = 0).
    t_small = w * mx.exp(mx.minimum(d, _MIX_CLAMP))
    t_large = mx.where(pos, mx.exp(mx.minimum(a - m, 0.0)), 0.0)
    s = mx.sum(mx.where(d <= _MIX_CLAMP, t_small, t_large), axis=-1)
    ok = s > 0
    out = mx.where(ok, mx.log(mx.where(ok, s, 1.0)) + m[..., 0], -mx.inf)
    res: mx.array = mx.where(valid, out, -mx.inf)
    return res


def _select(draws: mx.array, idx: mx.array, event_ndim: int) -> mx.array:
    """``draws[..., idx, *event]`` along the component axis ``-(event_ndim + 1)``."""
    ix = idx.astype(mx.int32).reshape(*idx.shape, 1, *([1] * event_ndim))
    axis = draws.ndim - event_ndim - 1
    out: mx.array = mx.take_along_axis(draws, ix, axis=axis)
    return mx.squeeze(out, axis=axis)


def _draw_index(key: mx.array, w: mx.array, shape: tuple[int, ...]) -> mx.array:
    pos = w > 0
    logits = mx.where(pos, mx.log(mx.where(pos, w, 1.0)), -mx.inf)
    return mx.random.categorical(logits, axis=-1, shape=shape, key=key).astype(mx.int32)


# --------------------------------------------------------------------------- mixtures
class HomogeneousMixture(Distribution):
    """A finite mixture of one family: ``p(x) = Σ_k w_k · component(x; θ_k)``
    (Gen.jl's ``HomogeneousMixture``). Built by ``mixture(component)``.

    Parameters ``(weights, *component_params)``. ``weights`` ``[..., K]`` is a
    probability vector (non-negative, sums to 1 within 1e-4) over its last axis.

    **Component axis convention.** Each component parameter carries the component index
    on its *last batch axis*: the axis just before the parameter's own event axes. For a
    scalar parameter (``normal``'s ``mu``) that is the trailing axis — shape ``[..., K]``,
    as in Gen.jl; for ``mv_normal`` the means are ``[..., K, d]`` and the covariances
    ``[..., K, d, d]``. A parameter shared by all components may have size 1 there (or be
    a plain number). Leading axes are batch axes and broadcast with ``weights``'.

    ``log_prob`` is ``logsumexp_k(log w_k + log p_k(x))`` (stable; finite gradients in
    the weights, also at zero weights); invalid array weights give ``-inf``, invalid
    plain (list) weights raise ``ValueError``. Sampling draws the component index from
    ``categorical(weights)`` and selects it (``take_along_axis``) among vectorised draws
    from all ``K`` components: exact, one pass, no Python loop. Values have the
    component's event shape and dtype. ``has_reparam`` is False (the index is discrete).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.constructors import mixture
        >>> from genmlx.dists.continuous import normal
        >>> mix = mixture(normal)
        >>> w, mu, sd = mx.array([0.5, 0.5]), mx.array([-1.0, 1.0]), mx.array([1.0, 1.0])
        >>> round(float(mix.log_prob(0.0, w, mu, sd)), 4)
        -1.4189
    """

    def __init__(
        self, component: Distribution, *, param_event_ndims: Sequence[int] | None = None
    ) -> None:
        if not isinstance(component, Distribution):
            raise TypeError(f"mixture: component must be a Distribution, got {component!r}")
        self.component = component
        self.name = f"mixture({component.name})"
        self.event_ndim = component.event_ndim
        self.is_discrete = component.is_discrete
        self._pen = None if param_event_ndims is None else tuple(param_event_ndims)
        comp_pen = _declared_pen(component, self._pen)
        if comp_pen is not None:  # weights: 1 (the component axis); parameters: +1
            self.param_event_ndims = (1, *(e + 1 for e in comp_pen))

    def _prep(self, weights: Any, params: tuple[Any, ...]) -> tuple[mx.array, tuple[int, ...]]:
        _check_weights_plain(self.name, weights)
        w = arr(weights)
        if w.ndim == 0:
            raise ValueError(f"{self.name}: weights must have a trailing component axis")
        cb = _batch_of(self.component, params, self._pen)
        try:
            total = tuple(mx.broadcast_shapes(tuple(w.shape), cb))
        except ValueError:
            total = ()
        if not total or total[-1] != w.shape[-1]:
            raise ValueError(
                f"{self.name}: the parameters' batch shape {cb} does "
                f"not broadcast with the weights' {tuple(w.shape)}; the component axis (the "
                f"last batch axis of every parameter) must have size {w.shape[-1]} or 1"
            )
        return w, total

    def sample(
        self, key: mx.array, weights: Any, *params: Any, shape: tuple[int, ...] = ()
    ) -> mx.array:
        w, total = self._prep(weights, params)
        k_idx, k_draw = mx.random.split(key)
        bparams = _broadcast_for(self.component, params, total, self._pen)
        draws = self.component.sample(k_draw, *bparams, shape=tuple(shape))
        idx = _draw_index(k_idx, w, (*tuple(shape), *total[:-1]))
        return _select(draws, idx, self.event_ndim)

    def params_batch_shape(self, weights: Any, *params: Any) -> tuple[int, ...]:
        """The batch shape of ``(weights, *params)`` (the component axis excluded)."""
        return self._prep(weights, params)[1][:-1]

    def broadcast_params(
        self, batch: tuple[int, ...], weights: Any, *params: Any
    ) -> tuple[Any, ...]:
        """``(weights, *params)`` broadcast to the batch shape ``batch``."""
        w, total = self._prep(weights, params)
        full = (*tuple(batch), total[-1])
        return (
            mx.broadcast_to(w, full),
            *_broadcast_for(self.component, params, full, self._pen),
        )

    def log_prob(self, value: Any, weights: Any, *params: Any) -> mx.array:
        w, _ = self._prep(weights, params)
        x = mx.expand_dims(_as_value(value), -(self.event_ndim + 1))
        lp = self.component.log_prob(x, *params)
        return _log_mix(w, lp)


class HeterogeneousMixture(Distribution):
    """A finite mixture of different distributions: ``p(x) = Σ_k w_k · d_k(x; θ_k)``
    (Gen.jl's ``HeterogeneousMixture``). Built by ``mixture([d0, d1, ...])``.

    Parameters ``(weights, params_0, params_1, ...)``: ``weights`` ``[..., K]`` a
    probability vector over its last axis, and ``params_k`` the tuple of parameters of
    component ``k`` (batch axes broadcast with ``weights``' leading axes). Components must
    share the event shape; a sampled value has the promoted dtype of the components'.

    ``log_prob`` by logsumexp; sampling draws every component once (vectorised over the
    sample and batch shape: the only Python loop is over the ``K`` components), draws
    the index from ``categorical(weights)`` and selects with ``take_along_axis``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.constructors import mixture
        >>> from genmlx.dists.continuous import normal, uniform
        >>> mix = mixture([normal, uniform])
        >>> x = mix.sample(mx.random.key(0), mx.array([0.5, 0.5]), (0.0, 1.0), (-1.0, 1.0))
        >>> x.shape
        ()
    """

    def __init__(
        self,
        components: Sequence[Distribution],
        *,
        param_event_ndims: Sequence[Sequence[int] | None] | None = None,
    ) -> None:
        comps = tuple(components)
        if not comps or not all(isinstance(c, Distribution) for c in comps):
            raise TypeError("mixture: components must be a non-empty list of Distributions")
        e = {c.event_ndim for c in comps}
        if len(e) != 1:
            raise ValueError(
                "mixture: heterogeneous components must have the same event_ndim; got "
                f"{[c.event_ndim for c in comps]}"
            )
        self.components = comps
        self.name = "mixture(" + ", ".join(c.name for c in comps) + ")"
        self.event_ndim = comps[0].event_ndim
        self.is_discrete = all(c.is_discrete for c in comps)
        if param_event_ndims is not None and len(param_event_ndims) != len(comps):
            raise ValueError("mixture: param_event_ndims needs one entry per component")
        self._pens: tuple[Sequence[int] | None, ...] = (
            tuple(param_event_ndims) if param_event_ndims is not None else (None,) * len(comps)
        )

    def _prep(
        self, weights: Any, comp_params: tuple[Any, ...]
    ) -> tuple[mx.array, list[tuple[Any, ...]], tuple[int, ...]]:
        K = len(self.components)
        if len(comp_params) != K:
            raise ValueError(
                f"{self.name}: expected weights then {K} parameter tuples, got "
                f"{len(comp_params)} parameter tuples"
            )
        _check_weights_plain(self.name, weights)
        w = arr(weights)
        if w.ndim == 0 or w.shape[-1] != K:
            raise ValueError(
                f"{self.name}: weights must have a trailing axis of size {K}; got {tuple(w.shape)}"
            )
        ps = [tuple(p) if isinstance(p, (tuple, list)) else (p,) for p in comp_params]
        batches = [_batch_of(c, p, pe) for c, p, pe in zip(self.components, ps, self._pens)]
        batch = tuple(mx.broadcast_shapes(tuple(w.shape[:-1]), *batches))
        return w, ps, batch

    def params_batch_shape(self, weights: Any, *comp_params: Any) -> tuple[int, ...]:
        """The batch shape of ``(weights, params_0, ...)``."""
        return self._prep(weights, comp_params)[2]

    def broadcast_params(
        self, batch: tuple[int, ...], weights: Any, *comp_params: Any
    ) -> tuple[Any, ...]:
        """``(weights, params_0, ...)`` broadcast to the batch shape ``batch``."""
        w, ps, _ = self._prep(weights, comp_params)
        return (
            mx.broadcast_to(w, (*tuple(batch), w.shape[-1])),
            *(
                _broadcast_for(c, p, tuple(batch), pe)
                for c, p, pe in zip(self.components, ps, self._pens)
            ),
        )

    def sample(
        self, key: mx.array, weights: Any, *comp_params: Any, shape: tuple[int, ...] = ()
    ) -> mx.array:
        w, ps, batch = self._prep(weights, comp_params)
        K = len(self.components)
        keys = mx.random.split(key, K + 1)
        draws = []
        for k, (c, p, pe) in enumerate(zip(self.components, ps, self._pens)):
            bp = _broadcast_for(c, p, batch, pe)
            draws.append(c.sample(keys[k], *bp, shape=tuple(shape)))
        stacked = mx.stack(draws, axis=draws[0].ndim - self.event_ndim)
        idx = _draw_index(keys[K], w, (*tuple(shape), *batch))
        return _select(stacked, idx, self.event_ndim)

    def log_prob(self, value: Any, weights: Any, *comp_params: Any) -> mx.array:
        w, ps, _ = self._prep(weights, comp_params)
        x = _as_value(value)
        lps = mx.broadcast_arrays(*(c.log_prob(x, *p) for c, p in zip(self.components, ps)))
        return _log_mix(w, mx.stack(list(lps), axis=-1))


def mixture(
    component: Distribution | Sequence[Distribution],
    *,
    param_event_ndims: Any = None,
) -> Distribution:
    """A finite mixture distribution.

    ``mixture(d)`` is a :class:`HomogeneousMixture` with parameters
    ``(weights, *params_of_d)``, each ``d`` parameter with the component index on its
    last batch axis (``[..., K]`` for scalar parameters). ``mixture([d0, d1, ...])`` is a
    :class:`HeterogeneousMixture` with parameters ``(weights, params_0, params_1, ...)``,
    ``params_k`` a tuple.

    Args:
        component: one distribution, or a list of distributions.
        param_event_ndims: the component parameters' numbers of event axes (a tuple, or
            for a list of components a list of tuples/None); inferred when omitted.
    """
    if isinstance(component, Distribution):
        return HomogeneousMixture(component, param_event_ndims=param_event_ndims)
    return HeterogeneousMixture(component, param_event_ndims=param_event_ndims)


# --------------------------------------------------------------------------- product / iid
class Product(Distribution):
    """The joint of independent distributions ``d_0, ..., d_{m−1}``, as one choice.

    Parameters ``(params_0, params_1, ...)``, ``params_i`` the tuple of ``d_i``'s
    parameters; their batch axes broadcast. The value stacks the components' values
    on a new axis just before their event axes: for scalar components it is a vector
    ``[..., m]`` (``value[..., i]`` is ``d_i``'s); for components of event shape ``E``
    it is ``[..., m, *E]``. So the components must share the event shape (for
    differently shaped parts use a ``@gen`` function). ``event_ndim`` is the
    components' plus one; values take the components' promoted dtype (e.g. a product of
    ``bernoulli`` and ``normal`` is float32).

    ``log_prob`` sums the components' log densities; sampling draws each component once
    (vectorised). ``has_reparam`` when every component has it.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.constructors import product
        >>> from genmlx.dists.continuous import normal
        >>> from genmlx.dists.gamma_beta import gamma
        >>> d = product(normal, gamma)
        >>> d.sample(mx.random.key(0), (0.0, 1.0), (2.0, 1.0), shape=(5,)).shape
        (5, 2)
    """

    def __init__(
        self, *dists: Distribution, param_event_ndims: Sequence[Any] | None = None
    ) -> None:
        if not dists or not all(isinstance(d, Distribution) for d in dists):
            raise TypeError("product: arguments must be Distributions")
        e = {d.event_ndim for d in dists}
        if len(e) != 1:
            raise ValueError(
                "product: components must have the same event_ndim; got "
                f"{[d.event_ndim for d in dists]}"
            )
        self.dists = tuple(dists)
        self.name = "product(" + ", ".join(d.name for d in dists) + ")"
        self.event_ndim = dists[0].event_ndim + 1
        self.is_discrete = all(d.is_discrete for d in dists)
        self.has_reparam = all(d.has_reparam for d in dists)
        if param_event_ndims is not None and len(param_event_ndims) != len(dists):
            raise ValueError("product: param_event_ndims needs one entry per component")
        self._pens: tuple[Any, ...] = (
            tuple(param_event_ndims) if param_event_ndims is not None else (None,) * len(dists)
        )

    def _prep(self, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], tuple[int, ...]]:
        if len(params) != len(self.dists):
            raise ValueError(
                f"{self.name}: expected {len(self.dists)} parameter tuples, got {len(params)}"
            )
        ps = [tuple(p) if isinstance(p, (tuple, list)) else (p,) for p in params]
        batches = [_batch_of(d, p, pe) for d, p, pe in zip(self.dists, ps, self._pens)]
        return ps, tuple(mx.broadcast_shapes(*batches))

    def params_batch_shape(self, *params: Any) -> tuple[int, ...]:
        """The batch shape of ``(params_0, params_1, ...)``."""
        return self._prep(params)[1]

    def broadcast_params(self, batch: tuple[int, ...], *params: Any) -> tuple[Any, ...]:
        """``(params_0, ...)`` broadcast to the batch shape ``batch``."""
        ps, _ = self._prep(params)
        return tuple(
            _broadcast_for(d, p, tuple(batch), pe) for d, p, pe in zip(self.dists, ps, self._pens)
        )

    def _draw(
        self, key: mx.array, params: tuple[Any, ...], shape: tuple[int, ...], rep: bool
    ) -> mx.array:
        ps, batch = self._prep(params)
        keys = mx.random.split(key, len(self.dists))
        draws = []
        for k, (d, p, pe) in enumerate(zip(self.dists, ps, self._pens)):
            f = d.reparam_sample if rep else d.sample
            draws.append(f(keys[k], *_broadcast_for(d, p, batch, pe), shape=tuple(shape)))
        out: mx.array = mx.stack(draws, axis=draws[0].ndim - self.event_ndim + 1)
        return out

    def sample(self, key: mx.array, *params: Any, shape: tuple[int, ...] = ()) -> mx.array:
        return self._draw(key, params, shape, rep=False)

    def reparam_sample(self, key: mx.array, *params: Any, shape: tuple[int, ...] = ()) -> mx.array:
        if not self.has_reparam:
            return super().reparam_sample(key, *params, shape=shape)
        return self._draw(key, params, shape, rep=True)

    def log_prob(self, value: Any, *params: Any) -> mx.array:
        ps, _ = self._prep(params)
        x = _as_value(value)
        axis = x.ndim - self.event_ndim
        if x.ndim < self.event_ndim or x.shape[axis] != len(self.dists):
            raise ValueError(
                f"{self.name}: value needs an axis of size {len(self.dists)} before the "
                f"components' event axes; got shape {tuple(x.shape)}"
            )
        total: mx.array | None = None
        for i, (d, p) in enumerate(zip(self.dists, ps)):
            lp = d.log_prob(mx.take(x, i, axis=axis), *p)
            total = lp if total is None else total + lp
        assert total is not None
        return total


class IID(Distribution):
    """``n`` independent draws of one distribution as a single vector choice.

    Parameters: those of the base distribution (batch axes broadcast as usual). The
    value has shape ``batch + (n,) + base_event``: the draws' axis sits just before the
    base's event axes, so ``event_ndim`` is the base's plus one and the whole vector is
    one event (``log_prob`` sums the ``n`` log densities). Sampling is one call of the
    base sampler with sample shape ``(n, ...)``, moved into place. ``has_reparam`` as the
    base.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.constructors import iid
        >>> from genmlx.dists.continuous import normal
        >>> d = iid(normal, 4)
        >>> d.sample(mx.random.key(0), mx.zeros(3), 1.0, shape=(2,)).shape
        (2, 3, 4)
    """

    def __init__(
        self, dist: Distribution, n: int, *, param_event_ndims: Sequence[int] | None = None
    ) -> None:
        if not isinstance(dist, Distribution):
            raise TypeError(f"iid: expected a Distribution, got {dist!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"iid: n must be a positive int, got {n!r}")
        self.dist = dist
        self.n = n
        self.name = f"iid({dist.name}, {n})"
        self.event_ndim = dist.event_ndim + 1
        self.is_discrete = dist.is_discrete
        self.has_reparam = dist.has_reparam
        self._pen = None if param_event_ndims is None else tuple(param_event_ndims)
        self.example_params = examples(dist)
        pen = _declared_pen(dist, self._pen)
        if pen is not None:
            self.param_event_ndims = pen

    def params_batch_shape(self, *params: Any) -> tuple[int, ...]:
        """The base's parameter batch shape."""
        return _batch_of(self.dist, params, self._pen)

    def broadcast_params(self, batch: tuple[int, ...], *params: Any) -> tuple[Any, ...]:
        """The base's parameters broadcast to the batch shape ``batch``."""
        return _broadcast_for(self.dist, params, tuple(batch), self._pen)

    def _draw(
        self, key: mx.array, params: tuple[Any, ...], shape: tuple[int, ...], rep: bool
    ) -> mx.array:
        f = self.dist.reparam_sample if rep else self.dist.sample
        x = f(key, *params, shape=(self.n, *tuple(shape)))
        out: mx.array = mx.moveaxis(x, 0, x.ndim - self.dist.event_ndim - 1)
        return out

    def sample(self, key: mx.array, *params: Any, shape: tuple[int, ...] = ()) -> mx.array:
        return self._draw(key, params, shape, rep=False)

    def reparam_sample(self, key: mx.array, *params: Any, shape: tuple[int, ...] = ()) -> mx.array:
        if not self.has_reparam:
            return super().reparam_sample(key, *params, shape=shape)
        return self._draw(key, params, shape, rep=True)

    def log_prob(self, value: Any, *params: Any) -> mx.array:
        x = _as_value(value)
        e = self.dist.event_ndim
        axis = x.ndim - e - 1
        if axis < 0 or x.shape[axis] != self.n:
            raise ValueError(
                f"{self.name}: value needs an axis of size {self.n} before the base's "
                f"{e} event axes; got shape {tuple(x.shape)}"
            )
        pb = _batch_of(self.dist, params, self._pen)
        batch = tuple(mx.broadcast_shapes(tuple(x.shape[:axis]), pb))
        x = mx.broadcast_to(x, (*batch, *x.shape[axis:]))
        lp = self.dist.log_prob(mx.moveaxis(x, len(batch), 0), *params)
        out: mx.array = mx.sum(lp, axis=0)
        return out


def product(*dists: Distribution, param_event_ndims: Sequence[Any] | None = None) -> Product:
    """The joint of independent distributions as one stacked value (see :class:`Product`)."""
    return Product(*dists, param_event_ndims=param_event_ndims)


def iid(dist: Distribution, n: int, *, param_event_ndims: Sequence[int] | None = None) -> IID:
    """``n`` independent draws of ``dist`` as one vector choice (see :class:`IID`)."""
    return IID(dist, n, param_event_ndims=param_event_ndims)


# --------------------------------------------------------------------------- bijectors
def _auto_ladj(forward: Callable[[mx.array], mx.array]) -> Callable[[mx.array], mx.array]:
    """``log|f'(x)|`` for an elementwise map ``f``, by automatic differentiation.

    For elementwise ``f`` the Jacobian is diagonal, so ``∂/∂x_i Σ_j f(x)_j = f'(x_i)``:
    one ``mx.grad`` gives every derivative (the same as ``mx.vmap(mx.grad(f))`` over
    the elements, in one pass). Differentiable again (MLX nests ``grad``).
    """
    g = mx.grad(lambda x: mx.sum(forward(x)))

    def ladj(x: mx.array) -> mx.array:
        out: mx.array = mx.log(mx.abs(g(x)))
        return out

    return ladj


class Bijector(CoreBijector):
    """A smooth invertible elementwise map ``y = f(x)`` for :func:`transformed`, from your
    own functions.

    It is a :class:`genmlx.core.bijectors.Bijector` (``forward``, ``inverse``,
    ``log_det_jacobian``), so it and the core library's bijectors
    (:func:`genmlx.core.bijectors.biject_to` of a domain, ``StickBreakingBijector``,
    ``OrderedBijector``, ...) are interchangeable in :func:`transformed`.

    Args:
        forward: ``x ↦ y`` (elementwise, MLX ops).
        inverse: ``y ↦ x``.
        log_abs_det_jacobian: ``x ↦ log|f'(x)|`` elementwise (the forward map's);
            computed by automatic differentiation when omitted.
        in_image: ``y ↦`` boolean mask of the points in ``f``'s image (values outside get
            ``-inf``); everything when omitted.
        image_point: a point inside the image, substituted for points outside it before
            inverting, so that no NaN arises (default ``forward(0)``).
        name: for messages and the transformed distribution's name.
        domain: the image of the real line as a :mod:`genmlx.core.constraints` domain,
            if known (gradient-based inference uses it for a transformed distribution
            whose base lives on the real line).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.constructors import Bijector
        >>> cube = Bijector(lambda x: x**3 + x, None)  # inverse needed only by log_prob
        >>> round(float(cube.log_abs_det_jacobian(mx.array(1.0))), 4)  # log 4
        1.3863
    """

    def __init__(
        self,
        forward: Callable[[mx.array], mx.array],
        inverse: Callable[[mx.array], mx.array] | None,
        log_abs_det_jacobian: Callable[[mx.array], mx.array] | None = None,
        *,
        in_image: Callable[[mx.array], mx.array] | None = None,
        image_point: float | None = None,
        name: str = "bijector",
        domain: C.Constraint | None = None,
    ) -> None:
        self._forward = forward
        self._inverse = inverse
        self._ladj = (
            log_abs_det_jacobian if log_abs_det_jacobian is not None else _auto_ladj(forward)
        )
        self._in_image = in_image
        self._image_point = image_point
        self.name = name
        self.domain = domain  # type: ignore[assignment]

    @classmethod
    def from_functions(
        cls,
        forward: Callable[[mx.array], mx.array],
        inverse: Callable[[mx.array], mx.array],
        *,
        in_image: Callable[[mx.array], mx.array] | None = None,
        image_point: float | None = None,
        name: str = "bijector",
        domain: C.Constraint | None = None,
    ) -> Bijector:
        """A bijector whose Jacobian is computed automatically (elementwise maps only)."""
        return cls(
            forward, inverse, None, in_image=in_image, image_point=image_point, name=name,
            domain=domain,
        )

    def forward(self, x: Any) -> mx.array:
        """``y = f(x)``."""
        return self._forward(arr(x))

    def inverse(self, y: Any) -> mx.array:
        """``x = f⁻¹(y)``."""
        if self._inverse is None:
            raise TypeError(f"bijector {self.name} has no inverse")
        return self._inverse(arr(y))

    def log_abs_det_jacobian(self, x: Any) -> mx.array:
        """``log|f'(x)|`` of the forward map, elementwise."""
        return self._ladj(arr(x))

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        """``log|f'|`` at the input ``y`` (the core interface's name for
        :meth:`log_abs_det_jacobian`)."""
        return self.log_abs_det_jacobian(y)

    def in_image(self, y: mx.array) -> mx.array:
        """Boolean mask: ``y`` lies in the image of ``f``."""
        if self._in_image is None:
            return mx.ones(y.shape, dtype=mx.bool_)
        return self._in_image(y)

    def image_point(self) -> mx.array:
        """A point of the image (used to guard points outside it)."""
        if self._image_point is not None:
            return mx.array(self._image_point, dtype=mx.float32)
        return self._forward(mx.array(0.0))

    def __repr__(self) -> str:
        return f"<bijector {self.name}>"

    # user functions: equal only to itself
    __eq__ = object.__eq__
    __hash__ = object.__hash__


def _softplus(x: mx.array) -> mx.array:
    out: mx.array = mx.logaddexp(x, mx.zeros_like(x))
    return out


exp_bijector = Bijector(
    mx.exp,
    mx.log,
    lambda x: x,
    in_image=lambda y: y > 0,
    name="exp",
    domain=C.positive,
)
"""``y = exp(x)``: ℝ → (0, ∞), ``log|f'(x)| = x``."""

sigmoid_bijector = Bijector(
    mx.sigmoid,
    lambda y: mx.log(y) - mx.log1p(-y),
    lambda x: -_softplus(-x) - _softplus(x),
    in_image=lambda y: mx.logical_and(y > 0, y < 1),
    name="sigmoid",
    domain=C.unit_interval,
)
"""``y = 1 / (1 + e^{−x})``: ℝ → (0, 1), ``log|f'(x)| = −softplus(−x) − softplus(x)``."""


def affine(loc: Any, scale: Any) -> Bijector:
    """``y = loc + scale · x`` (``scale ≠ 0``; arrays broadcast), ``log|f'| = log|scale|``.

    Raises:
        ValueError: for a plain-number ``scale`` of 0 (while validation is on).
    """
    if validation_enabled() and isinstance(scale, (int, float)) and float(scale) == 0.0:
        raise ValueError("affine: scale must be non-zero")
    lo, sc = arr(loc), arr(scale)
    log_sc = mx.log(mx.abs(sc))

    def ladj(x: mx.array) -> mx.array:
        return mx.broadcast_to(log_sc, mx.broadcast_shapes(x.shape, log_sc.shape))

    return Bijector(
        lambda x: lo + sc * x,
        lambda y: (y - lo) / sc,
        ladj,
        image_point=None,
        name="affine",
        domain=C.real,
    )


def _bijector_name(bij: CoreBijector) -> str:
    name = getattr(bij, "name", None)
    if isinstance(name, str):
        return name
    dom = getattr(bij, "domain", None)
    return f"{type(bij).__name__}" if dom is None else f"{type(bij).__name__}({dom!r})"


class Transformed(Distribution):
    """The distribution of ``y = f(x)``, ``x ~ base``, for a bijector ``f``.

    Change of variables::

        log p_Y(y) = log p_X(f⁻¹(y)) − log|det J_f(x)|,   x = f⁻¹(y)

    with the log-determinant summed over the value's event axes. ``f`` is a
    :class:`genmlx.core.bijectors.Bijector`: an elementwise :class:`Bijector` of this
    module (``exp_bijector``, ``sigmoid_bijector``, :func:`affine`, your own), or one of
    the core library's, including maps that change the event shape
    (``StickBreakingBijector`` takes ``K - 1`` numbers to a ``K``-simplex, the
    Cholesky bijectors take packed vectors to matrices). The value's event
    dimension is the larger of the base's and the bijector's. Parameters: the base's.
    Values outside ``f``'s image get ``-inf``. Sampling is ``f`` of a base draw;
    ``has_reparam`` and ``reparam_sample`` follow the base. The base must be
    continuous. Its domain (for gradient-based inference) is the bijector's image when
    the base lives on the whole real line.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.constructors import exp_bijector, transformed
        >>> from genmlx.dists.continuous import normal
        >>> lognormal = transformed(normal, exp_bijector)
        >>> round(float(lognormal.log_prob(1.0, 0.0, 1.0)), 4)
        -0.9189
    """

    def __init__(self, base: Distribution, bijector: CoreBijector) -> None:
        if not isinstance(base, Distribution):
            raise TypeError(f"transformed: base must be a Distribution, got {base!r}")
        if isinstance(bijector, C.Constraint):
            bijector = biject_to(bijector)
        if not isinstance(bijector, CoreBijector):
            raise TypeError(
                "transformed: expected a bijector (genmlx.dists.Bijector, a "
                "genmlx.core.bijectors bijector) or a genmlx.core.constraints domain, got "
                f"{bijector!r}"
            )
        if base.is_discrete:
            raise TypeError(
                f"transformed: base {base.name} is discrete; a change of variables needs "
                "a continuous distribution"
            )
        self.base = base
        self.bijector = bijector
        self.name = f"transformed({base.name}, {_bijector_name(bijector)})"
        self.event_ndim = max(base.event_ndim, bijector.event_ndim)
        self.has_reparam = base.has_reparam
        self.example_params = examples(base)
        pen = _declared_pen(base)
        if pen is not None:
            self.param_event_ndims = pen

    # Equal when built from the same base and an equal bijector, so that
    # ``transformed(normal, constraints.positive)(...) @ addr`` written inside a model body
    # is the same site at every execution.
    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return (
            type(other) is type(self)
            and other.base is self.base  # type: ignore[attr-defined]
            and other.bijector == self.bijector  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        return hash((type(self), id(self.base), self.bijector))

    def domain(self, *params: Any) -> C.Constraint | None:
        """The bijector's image when the base's domain is the real line (else unknown)."""
        base_dom = self.base.domain(*params)
        dom = getattr(self.bijector, "domain", None)
        if isinstance(base_dom, type(C.real)) and isinstance(dom, C.Constraint):
            return dom
        return None

    def params_batch_shape(self, *params: Any) -> tuple[int, ...]:
        """The base's parameter batch shape."""
        return _batch_of(self.base, params)

    def broadcast_params(self, batch: tuple[int, ...], *params: Any) -> tuple[Any, ...]:
        """The base's parameters broadcast to the batch shape ``batch``."""
        return _broadcast_for(self.base, params, tuple(batch))

    def sample(self, key: mx.array, *params: Any, shape: tuple[int, ...] = ()) -> mx.array:
        return self.bijector.forward(self.base.sample(key, *params, shape=shape))

    def reparam_sample(self, key: mx.array, *params: Any, shape: tuple[int, ...] = ()) -> mx.array:
        return self.bijector.forward(self.base.reparam_sample(key, *params, shape=shape))

    def _in_image(self, y: mx.array) -> mx.array:
        """Per bijector event: ``y`` lies in the image."""
        bij = self.bijector
        if isinstance(bij, Bijector):
            return bij.in_image(y)
        dom = getattr(bij, "domain", None)
        if dom is None or isinstance(dom, type(C.real)):
            return mx.isfinite(y) if bij.event_ndim == 0 else mx.ones(
                y.shape[: y.ndim - bij.event_ndim], dtype=mx.bool_
            )
        return dom.check(y)

    def _image_point(self, y: mx.array) -> mx.array:
        bij = self.bijector
        if isinstance(bij, Bijector):
            return bij.image_point()
        ushape = bij.unconstrained_shape(tuple(y.shape))
        return bij.forward(mx.zeros(ushape, dtype=mx.float32))

    def log_prob(self, value: Any, *params: Any) -> mx.array:
        y = arr(value)
        bij = self.bijector
        je, be, e = bij.event_ndim, self.base.event_ndim, self.event_ndim
        ok = self._in_image(y)  # y.shape[: ndim - je]
        okb = ok.reshape(ok.shape + (1,) * je) if je else ok
        y_safe = mx.where(okb, y, self._image_point(y))
        x = bij.inverse(y_safe)
        ladj = bij.log_det_jacobian(x)
        ladj = mx.broadcast_to(ladj, mx.broadcast_shapes(ladj.shape, x.shape[: x.ndim - je]))
        lp = self.base.log_prob(x, *params)
        extra_j, extra_b = e - je, e - be  # event axes each still has to sum over
        if extra_j:
            ladj = mx.sum(ladj, axis=tuple(range(ladj.ndim - extra_j, ladj.ndim)))
            ok = mx.all(ok, axis=tuple(range(ok.ndim - extra_j, ok.ndim)))
        if extra_b:
            lp = mx.sum(lp, axis=tuple(range(lp.ndim - extra_b, lp.ndim)))
        out: mx.array = mx.where(ok, lp - ladj, -mx.inf)
        return out


def transformed(base: Distribution, bijector: CoreBijector | C.Constraint) -> Transformed:
    """The push-forward of ``base`` through ``bijector`` (see :class:`Transformed`).

    ``bijector`` may also be a :mod:`genmlx.core.constraints` domain, meaning
    ``biject_to(domain)``: ``transformed(normal, constraints.positive)`` is the
    log-normal, ``transformed(normal, constraints.interval(0, 2))`` a scaled
    logit-normal — guides for constrained latent choices in black-box VI.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import constraints
        >>> from genmlx.dists import normal
        >>> lognormal = transformed(normal, constraints.positive)
        >>> round(float(lognormal.log_prob(1.0, 0.0, 1.0)), 4)
        -0.9189
    """
    return Transformed(base, bijector)  # type: ignore[arg-type]  # a domain is mapped to its bijector


# --------------------------------------------------------------------------- from functions
class FunctionDistribution(Distribution):
    """A distribution from a user's sample and log-density functions (see
    :func:`from_functions`)."""

    def __init__(
        self,
        sample: Callable[..., mx.array],
        log_prob: Callable[..., mx.array],
        *,
        name: str = "custom",
        has_reparam: bool = False,
        reparam_sample: Callable[..., mx.array] | None = None,
        event_ndim: int = 0,
        is_discrete: bool = False,
        support: Callable[..., mx.array] | None = None,
        param_event_ndims: Sequence[int] | None = None,
        example_params: Sequence[tuple[Any, ...]] | None = None,
    ) -> None:
        if not callable(sample) or not callable(log_prob):
            raise TypeError("from_functions: sample and log_prob must be callables")
        self._sample_fn = sample
        self._log_prob_fn = log_prob
        self._reparam_fn = reparam_sample
        self._support_fn = support
        self.name = name
        self.has_reparam = bool(has_reparam or reparam_sample is not None)
        self.event_ndim = int(event_ndim)
        self.is_discrete = bool(is_discrete)
        self.is_enumerable = support is not None
        if param_event_ndims is not None:
            self.param_event_ndims = tuple(param_event_ndims)
        self.example_params = [tuple(p) for p in (example_params or [])]

    def sample(self, key: mx.array, *params: Any, shape: tuple[int, ...] = ()) -> mx.array:
        return self._sample_fn(key, *params, shape=tuple(shape))

    def reparam_sample(self, key: mx.array, *params: Any, shape: tuple[int, ...] = ()) -> mx.array:
        if self._reparam_fn is not None:
            return self._reparam_fn(key, *params, shape=tuple(shape))
        return super().reparam_sample(key, *params, shape=shape)

    def log_prob(self, value: Any, *params: Any) -> mx.array:
        return self._log_prob_fn(value, *params)

    def support(self, *params: Any) -> mx.array:
        if self._support_fn is None:
            return super().support(*params)
        return self._support_fn(*params)


def from_functions(
    sample: Callable[..., mx.array],
    log_prob: Callable[..., mx.array],
    *,
    name: str = "custom",
    has_reparam: bool = False,
    reparam_sample: Callable[..., mx.array] | None = None,
    event_ndim: int = 0,
    is_discrete: bool = False,
    support: Callable[..., mx.array] | None = None,
    param_event_ndims: Sequence[int] | None = None,
    example_params: Sequence[tuple[Any, ...]] | None = None,
) -> FunctionDistribution:
    """A :class:`~genmlx.core.Distribution` from your own functions.

    Args:
        sample: ``sample(key, *params, shape=())`` returning ``shape + batch + event``;
            vectorised MLX code (it runs under ``mx.vmap``/``mx.compile``).
        log_prob: ``log_prob(value, *params)``, broadcasting, one number per event.
        name: the distribution's name.
        has_reparam: ``sample`` is a differentiable function of the parameters (it then
            serves as ``reparam_sample``).
        reparam_sample: a separate reparameterised sampler (implies ``has_reparam``).
        event_ndim: trailing value axes forming one event.
        is_discrete: values are integers or booleans.
        support: ``support(*params)`` listing a finite support (makes it enumerable).
        param_event_ndims: each parameter's number of event axes (for :func:`mixture`,
            :func:`product` and :func:`iid`).
        example_params: parameter tuples for the conformance kit.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.constructors import from_functions
        >>> def sample(key, rate, *, shape=()):
        ...     u = mx.random.uniform(shape=tuple(shape) + mx.array(rate).shape, key=key)
        ...     return -mx.log1p(-u) / rate
        >>> def log_prob(x, rate):
        ...     x, rate = mx.array(x), mx.array(rate)
        ...     return mx.where(x >= 0, mx.log(rate) - rate * x, -mx.inf)
        >>> expo = from_functions(sample, log_prob, name="my_exponential")
        >>> round(float(expo.log_prob(1.0, 2.0)), 4)
        -1.3069
    """
    return FunctionDistribution(
        sample,
        log_prob,
        name=name,
        has_reparam=has_reparam,
        reparam_sample=reparam_sample,
        event_ndim=event_ndim,
        is_discrete=is_discrete,
        support=support,
        param_event_ndims=param_event_ndims,
        example_params=example_params,
    )
