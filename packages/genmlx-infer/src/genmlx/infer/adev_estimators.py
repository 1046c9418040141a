"""ADEV's per-primitive gradient estimators, and distributions bound to one.

An *estimator* says how ADEV (:mod:`genmlx.infer.adev`) differentiates through one
random choice ``x ~ d(θ)`` followed by the rest of the program, its *continuation*
``k``. ADEV never differentiates a sampled value by itself: it builds a *surrogate*, a
scalar ``S(θ)`` whose value is an unbiased estimate of ``E_{x~d(θ)}[k(x, θ)]`` and whose
gradient ``∇_θ S`` is an unbiased estimate of ``∇_θ E_{x~d(θ)}[k(x, θ)]``, given
surrogates with the same two properties for the continuation. The built-in estimators:

* ``reparam``: ``x = T(ε, θ)`` (``d.reparam_sample``) and ``S = k(x)``, the pathwise
  gradient (distributions with ``has_reparam``);
* ``reinforce``: ``x ~ d(θ)`` with no gradient and ``S = k(x) · exp(ℓ - ⊥ℓ)`` with
  ``ℓ = log d(x; θ)`` (``⊥`` stops gradients): value ``k(x)``, gradient
  ``∇k(x) + k(x) ∇ log d(x; θ)``, the score-function estimator (any distribution);
* ``enum``: ``S = Σ_v d(v; θ) k(v)`` over the finite support, exact, one continuation
  per support point (``is_enumerable`` distributions, one scalar choice);
* ``mvd``: ``b ~ d(θ)`` and ``S = k(b) + (p₁ - ⊥p₁) · ⊥(k(v₁) - k(v₀))`` for a
  two-point support ``{v₀, v₁}`` with ``p₁ = d(v₁; θ)``: the measure-valued derivative
  (Bernoulli's weak derivative is ``δ₁ - δ₀``), two continuations.

The first two are *linear*: they call the continuation once, with the sampled value,
so ADEV runs the rest of the program in place and multiplies the final result by
``exp(Σℓ - ⊥Σℓ)`` (whose value is exactly 1). ``enum`` and ``mvd`` need the
continuation at several values; ADEV evaluates it for all of them at once under
``mx.vmap``.

Each estimator is also a function of a distribution: ``reinforce(normal)`` is the
distribution ``normal`` bound to the REINFORCE estimator (an :class:`ADEVPrimitive`).
Bound distributions are ordinary distributions everywhere else (``simulate``,
``generate``, importance sampling, ...), so a guide written with them is an ordinary
generative function. The usual ones have names: ``normal_reparam``,
``normal_reinforce``, ``flip_enum``, ``flip_reinforce``, ``flip_mvd``,
``categorical_enum``, ``categorical_reinforce``, ``geometric_reinforce``,
``mv_normal_reparam``, ``uniform_reparam``, ``beta_reinforce`` (they need
``genmlx-dists`` and are created when first imported).

New estimators are plugins: subclass :class:`ADEVEstimator` (implement
:meth:`~ADEVEstimator.draw` for a linear one, :meth:`~ADEVEstimator.estimate`
otherwise, and :meth:`~ADEVEstimator.check`) and register an instance through the
``genmlx_register_inference`` hook; :func:`get_estimator` then finds it by name.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.dists import bernoulli
    >>> from genmlx.infer.adev_estimators import enum_exact, reinforce
    >>> flip_exact = enum_exact(bernoulli)
    >>> flip_exact.name, flip_exact.estimator is enum_exact
    ('bernoulli_enum', True)
    >>> reinforce.name
    'reinforce'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.core.address import Path, format_address
from genmlx.core.deprecation import moved
from genmlx.core.distribution import Distribution
from genmlx.core.errors import GenMLXError

__all__ = [
    "MVD",
    "ADEVEstimator",
    "ADEVEstimatorError",
    "ADEVPrimitive",
    "Continuation",
    "Enum",
    "Reinforce",
    "Reparam",
    "enum_exact",
    "get_estimator",
    "magic_box",
    "mvd",
    "register_builtin_estimators",
    "reinforce",
    "reparam",
]

Continuation = Callable[[mx.array], mx.array]
"""``cont(values)``: the surrogate of the rest of the program for each entry of
``values`` along axis 0 (one vectorised evaluation), shape ``[M]``."""


class ADEVEstimatorError(GenMLXError, TypeError):
    """An estimator was applied to a choice it cannot handle (e.g. ``reparam`` on a
    discrete distribution, ``enum`` on a continuous one)."""


def magic_box(ell: mx.array) -> mx.array:
    """``exp(ℓ - ⊥ℓ)``: equal to 1, with gradient ``∇ℓ`` (the score-function factor)."""
    return mx.exp(ell - mx.stop_gradient(ell))


def _where(path: Path) -> str:
    return format_address(path) if path else "the root"


def _alternatives(dist: Distribution, exclude: str) -> str:
    opts = []
    if dist.has_reparam:
        opts.append("reparam")
    if dist.is_enumerable:
        opts.append("enum")
    opts.append("reinforce")
    return " or ".join(o for o in opts if o != exclude)


class ADEVEstimator:
    """Base class of ADEV's gradient estimators (see the module docstring).

    Subclasses set :attr:`name` and :attr:`linear` and implement :meth:`check` and
    either :meth:`draw` (linear estimators) or :meth:`estimate`.

    Attributes:
        name: the estimator's short name (``"reinforce"``); it is registered in the
            plugin registry as ``"adev_" + name``.
        linear: ``True`` when the estimator calls the continuation once, at the value
            it draws: it then implements :meth:`draw` and ADEV continues in place.
    """

    name: str = "estimator"
    linear: bool = True

    def check(self, dist: Distribution, args: tuple[Any, ...], path: Path) -> None:
        """Raise :class:`ADEVEstimatorError` when the estimator cannot handle ``dist``
        at ``path`` (name the address and what to use instead). Checks shapes and
        static properties only; it never evaluates arrays."""

    def draw(
        self, key: mx.array, dist: Distribution, args: tuple[Any, ...]
    ) -> tuple[mx.array, mx.array]:
        """A linear estimator's draw: ``(x, ℓ)`` such that ``k(x) · exp(ℓ - ⊥ℓ)`` is a
        surrogate of ``E_{x~d(θ)}[k(x)]`` for every continuation ``k``."""
        # Not a stub: the protocol's two paths. ADEV calls draw only when
        # ``linear`` is True and estimate otherwise; a plugin that sets
        # ``linear = True`` without a draw reaches this error, which says so.
        raise NotImplementedError(
            f"the {self.name} estimator sets linear=True but defines no draw(); implement "
            "draw, or set linear=False and implement estimate"
        )

    def estimate(
        self,
        key: mx.array,
        dist: Distribution,
        args: tuple[Any, ...],
        cont: Continuation,
    ) -> mx.array:
        """The surrogate of ``E_{x~d(θ)}[k(x)]`` given the continuation ``cont`` (which
        evaluates ``k`` at a stack of values along axis 0). The default implementation
        uses :meth:`draw`."""
        x, ell = self.draw(key, dist, args)
        out: mx.array = cont(x[None])[0] * magic_box(ell)
        return out

    def __call__(self, dist: Distribution) -> ADEVPrimitive:
        """``dist`` bound to this estimator (an :class:`ADEVPrimitive`)."""
        return ADEVPrimitive(dist, self)

    def __repr__(self) -> str:
        return f"<ADEV estimator {self.name}>"


class Reparam(ADEVEstimator):
    """The reparameterisation (pathwise) estimator: ``x = d.reparam_sample(key, θ)``."""

    name = "reparam"
    linear = True

    def check(self, dist: Distribution, args: tuple[Any, ...], path: Path) -> None:
        if not dist.has_reparam:
            raise ADEVEstimatorError(
                f"adev: reparam cannot differentiate through the choice at {_where(path)}: "
                f"{dist.name} has no reparameterised sampler (has_reparam is False); "
                f"use {_alternatives(dist, 'reparam')} for it"
            )

    def draw(
        self, key: mx.array, dist: Distribution, args: tuple[Any, ...]
    ) -> tuple[mx.array, mx.array]:
        return dist.reparam_sample(key, *args), mx.array(0.0)


class Reinforce(ADEVEstimator):
    """The score-function (REINFORCE) estimator: any distribution."""

    name = "reinforce"
    linear = True

    def draw(
        self, key: mx.array, dist: Distribution, args: tuple[Any, ...]
    ) -> tuple[mx.array, mx.array]:
        x = mx.stop_gradient(dist.sample(key, *args))
        return x, dist.score(x, args)


def _support(dist: Distribution, args: tuple[Any, ...], path: Path, who: str) -> mx.array:
    if not dist.is_enumerable:
        raise ADEVEstimatorError(
            f"adev: {who} needs a finite support, but the choice at {_where(path)} is "
            f"{dist.name}, which has none to enumerate (is_enumerable is False); "
            f"use {_alternatives(dist, who)} for it"
        )
    sup = dist.support(*args)
    if sup.ndim != 1 + dist.event_ndim:
        raise ADEVEstimatorError(
            f"adev: {who} handles one scalar choice at a time, but the choice at "
            f"{_where(path)} ({dist.name}) holds {sup.shape[1 : sup.ndim - dist.event_ndim]} "
            "independent values (batched parameters) whose joint support is a product; "
            "give each value its own address, or use reinforce"
        )
    return sup


class Enum(ADEVEstimator):
    """Exact enumeration over a finite support: ``S = Σ_v d(v; θ) · k(v)``."""

    name = "enum"
    linear = False

    def check(self, dist: Distribution, args: tuple[Any, ...], path: Path) -> None:
        _support(dist, args, path, "enum")

    def estimate(
        self,
        key: mx.array,
        dist: Distribution,
        args: tuple[Any, ...],
        cont: Continuation,
    ) -> mx.array:
        sup = dist.support(*args)
        w = mx.exp(dist.log_prob(sup, *args))
        vals = cont(sup)
        return mx.sum(mx.where(w > 0, w * vals, mx.zeros_like(vals)))


class MVD(ADEVEstimator):
    """The measure-valued derivative of a two-point distribution (Bernoulli).

    ``E[k(b)] = p₁ k(v₁) + (1 - p₁) k(v₀)`` has derivative ``(k(v₁) - k(v₀)) ∇p₁``: the
    surrogate runs the continuation at the sampled ``b`` and at the other point.
    """

    name = "mvd"
    linear = False

    def check(self, dist: Distribution, args: tuple[Any, ...], path: Path) -> None:
        sup = _support(dist, args, path, "mvd")
        if sup.shape[0] != 2:
            raise ADEVEstimatorError(
                f"adev: mvd is the measure-valued derivative of a two-point distribution "
                f"(bernoulli), but the choice at {_where(path)} ({dist.name}) has "
                f"{sup.shape[0]} support points; use enum or reinforce for it"
            )

    def estimate(
        self,
        key: mx.array,
        dist: Distribution,
        args: tuple[Any, ...],
        cont: Continuation,
    ) -> mx.array:
        sup = dist.support(*args)
        v0, v1 = sup[0], sup[1]
        b = mx.stop_gradient(dist.sample(key, *args)).astype(sup.dtype)
        is_one = b == v1
        other = mx.where(is_one, v0, v1)
        vals = cont(mx.stack([b, other]))
        k_b, k_other = vals[0], vals[1]
        diff = mx.where(is_one, k_b - k_other, k_other - k_b)  # k(v₁) - k(v₀)
        p1 = mx.exp(dist.log_prob(v1, *args))
        out: mx.array = k_b + (p1 - mx.stop_gradient(p1)) * mx.stop_gradient(diff)
        return out


reparam = Reparam()
"""The reparameterisation estimator (``reparam(normal)`` binds it to ``normal``)."""
reinforce = Reinforce()
"""The REINFORCE (score-function) estimator."""
enum_exact = Enum()
"""Exact enumeration of a finite support (the estimator named ``"enum"``)."""
mvd = MVD()
"""The measure-valued derivative for two-point distributions (Bernoulli)."""

_BUILTIN: dict[str, ADEVEstimator] = {e.name: e for e in (reparam, reinforce, enum_exact, mvd)}


class ADEVPrimitive(Distribution):
    """A distribution bound to an ADEV estimator (``reinforce(normal)``).

    It samples, scores, enumerates and reparameterises exactly as the distribution it
    wraps, so it works in any generative function; inside an ADEV expectation its
    choices are differentiated with its ``estimator``.
    """

    dist: Distribution
    estimator: ADEVEstimator

    def __init__(self, dist: Distribution, estimator: ADEVEstimator) -> None:
        if isinstance(dist, ADEVPrimitive):
            dist = dist.dist  # rebinding replaces the estimator
        if not isinstance(dist, Distribution):
            raise TypeError(
                f"an ADEV estimator binds a distribution (genmlx.core.Distribution), got {dist!r}"
            )
        if not isinstance(estimator, ADEVEstimator):
            raise TypeError(f"expected an ADEVEstimator, got {estimator!r}")
        self.dist = dist
        self.estimator = estimator
        self.name = f"{dist.name}_{estimator.name}"
        self.has_reparam = dist.has_reparam
        self.is_enumerable = dist.is_enumerable
        self.is_discrete = dist.is_discrete
        self.event_ndim = dist.event_ndim
        # the wrapped distribution's parameter names, so reinforce(normal)(mu=..., sigma=...)
        self._param_specs = dist._param_specs  # type: ignore[misc]

    def sample(self, *args: Any, **kwargs: Any) -> mx.array:
        return self.dist.sample(*args, **kwargs)

    def log_prob(self, *args: Any, **kwargs: Any) -> mx.array:
        return self.dist.log_prob(*args, **kwargs)

    def reparam_sample(self, *args: Any, **kwargs: Any) -> mx.array:
        return self.dist.reparam_sample(*args, **kwargs)

    def support(self, *params: Any) -> mx.array:
        return self.dist.support(*params)

    def score(self, value: mx.array, args: tuple[Any, ...]) -> mx.array:
        return self.dist.score(value, args)

    def __repr__(self) -> str:
        return f"<ADEVPrimitive {self.name}>"


def get_estimator(name: str | ADEVEstimator) -> ADEVEstimator:
    """The estimator called ``name``: a built-in (``"reparam"``, ``"reinforce"``,
    ``"enum"``, ``"mvd"``) or one a plugin registered as an inference object (under
    ``"adev_<name>"`` or ``name``).

    Raises:
        KeyError: no estimator has that name.
    """
    if isinstance(name, ADEVEstimator):
        return name
    if not isinstance(name, str):
        raise TypeError(f"an ADEV estimator is an ADEVEstimator or its name, got {name!r}")
    key = name[5:] if name.startswith("adev_") else name
    if key in _BUILTIN:
        return _BUILTIN[key]
    from genmlx.core.plugins import registry

    inference = registry().inference
    for candidate in (name, f"adev_{name}"):
        if candidate in inference and isinstance(inference[candidate], ADEVEstimator):
            found: ADEVEstimator = inference[candidate]
            return found
    raise KeyError(
        f"no ADEV estimator named {name!r}: the built-ins are {sorted(_BUILTIN)}, and no "
        "plugin registered an ADEVEstimator under that name"
    )


def register_builtin_estimators(register: Callable[..., Any]) -> None:
    """Register the built-in estimators through a plugin ``register`` callback (as
    ``adev_reparam``, ``adev_reinforce``, ``adev_enum``, ``adev_mvd``)."""
    for est in _BUILTIN.values():
        register(est, name=f"adev_{est.name}")


# Named primitives, made on first use (they need genmlx-dists).
_NAMED: dict[str, tuple[str, ADEVEstimator]] = {
    "normal_reparam": ("normal", reparam),
    "normal_reinforce": ("normal", reinforce),
    "flip_enum": ("bernoulli", enum_exact),
    "flip_reinforce": ("bernoulli", reinforce),
    "flip_mvd": ("bernoulli", mvd),
    "categorical_enum": ("categorical", enum_exact),
    "categorical_reinforce": ("categorical", reinforce),
    "geometric_reinforce": ("geometric", reinforce),
    "mv_normal_reparam": ("mv_normal", reparam),
    "uniform_reparam": ("uniform", reparam),
    "beta_reinforce": ("beta", reinforce),
}
_MADE: dict[str, ADEVPrimitive] = {}


_moved_names = moved(__name__, {"enum": "genmlx.infer.adev_estimators:enum_exact"})


def __getattr__(name: str) -> Any:
    if name == "enum":
        return _moved_names(name)
    if name not in _NAMED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _MADE:
        dist_name, est = _NAMED[name]
        try:
            dists = importlib.import_module("genmlx.dists")
        except ImportError as e:  # pragma: no cover - genmlx-dists is a test dependency
            raise ImportError(f"{name} binds genmlx.dists.{dist_name}; install genmlx-dists") from e
        _MADE[name] = ADEVPrimitive(getattr(dists, dist_name), est)
    return _MADE[name]

