"""The ``Distribution`` base: a generative function with exactly one random choice.

A distribution's choice map holds a single value at the root address ``()``; its
return value is that value. Subclasses implement two methods and may declare more:

* ``sample(key, *params, shape=())`` — a draw of shape ``shape + batch + event``,
  where *batch* is the parameters' broadcast batch shape (vectorised: no Python loops);
* ``log_prob(value, *params)`` — the log density (or mass), broadcasting, one number
  per event (so shape ``value.shape[:value.ndim - event_ndim]`` after broadcasting);
* optionally ``reparam_sample`` (set ``has_reparam = True``) and ``support(*params)``
  (set ``is_enumerable = True``) for finite discrete distributions.

A subclass declares its parameters once, in order, as the class attribute ``params``
(``params = ("mu", "sigma")``, or :class:`Param` entries for aliases). From that one
declaration the base class accepts keyword parameters everywhere —
``normal(mu=0.0, sigma=1.0) @ "x"``, ``normal.sample(key, mu=0.0, sigma=1.0, shape=(3,))``,
``normal.log_prob(x, sigma=2.0, mu=1.0)`` — passing them on by position to the
subclass's own methods, and words the errors for unknown, repeated or missing ones.

The GFI score of a choice is the *sum* of ``log_prob`` over its elements: a choice whose
value is a vector of independent normals has one score.

Example:
    >>> import math
    >>> import mlx.core as mx
    >>> from genmlx.core import Distribution
    >>> class Exponential(Distribution):
    ...     name = "exponential"
    ...     def sample(self, key, rate, *, shape=()):
    ...         rate = mx.array(rate)
    ...         u = mx.random.uniform(shape=tuple(shape) + rate.shape, key=key)
    ...         return -mx.log1p(-u) / rate
    ...     def log_prob(self, value, rate):
    ...         value, rate = mx.array(value), mx.array(rate)
    ...         return mx.where(value >= 0, mx.log(rate) - rate * value, -mx.inf)
    >>> exponential = Exponential()
    >>> round(float(exponential.assess((2.0,), exponential.leaf(1.0)).log_density), 4)
    -1.3069
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import mlx.core as mx
import numpy as np

from genmlx.core import runtime
from genmlx.core.address import Path, format_address
from genmlx.core.choicemap import ChoiceMap, as_array
from genmlx.core.constraints import Constraint, greater_than
from genmlx.core.constraints import real as C_real
from genmlx.core.diff import Diff, NoChange, UnknownChange
from genmlx.core.errors import (
    ConstraintError,
    DistributionArgumentError,
    GenMLXError,
    MissingChoiceError,
)
from genmlx.core.gfi import (
    AssessResult,
    GenerateResult,
    GenerativeFunction,
    RegenerateResult,
    TracedCall,
    UpdateResult,
)
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace

__all__ = [
    "Distribution",
    "DistributionTrace",
    "Param",
    "mask_invalid",
    "param_validation",
    "param_validation_enabled",
    "where_mask",
]


@dataclass(frozen=True)
class Param:
    """One declared parameter of a distribution (an entry of ``Distribution.params``).

    Attributes:
        name: the public keyword name (DESIGN's parameterisation table), e.g. ``"sigma"``.
        constraint: the values the parameter may take: a
            :class:`~genmlx.core.constraints.Constraint` (``positive``,
            ``interval(0, 1, left_open=True)``, ...), a function of the parameters
            declared before it returning one (``lambda low: greater_than(low)`` for a
            uniform's ``high``), or ``None`` (no constraint besides ``finite``).
        aliases: other keyword names accepted for it (e.g. an older name).
        event_ndim: trailing axes of the parameter that form one value (1 for a
            probability vector, 2 for a covariance matrix); the rest broadcast.
        finite: the parameter must be finite (default; a truncation bound may be
            infinite).

    From these records the base class derives, once for every distribution: keyword
    binding (:meth:`Distribution.bind_params`), the eager check of plain-number
    parameters with its error wording (:meth:`Distribution.check_params`) and the
    validity mask of array parameters (:meth:`Distribution.params_valid`).

    Example:
        >>> from genmlx.core import constraints as C
        >>> Param("shape", C.positive, aliases=("alpha",)).keywords
        ('shape', 'alpha')
        >>> Param("sigma", C.positive).requirement()
        'finite and > 0'
    """

    name: str
    constraint: Constraint | Callable[..., Constraint] | None = None
    aliases: tuple[str, ...] = ()
    event_ndim: int = 0
    finite: bool = True

    @property
    def keywords(self) -> tuple[str, ...]:
        """Every keyword this parameter answers to, its name first."""
        return (self.name, *self.aliases)

    def resolve(self, before: tuple[Any, ...]) -> Constraint | None:
        """The constraint, given the values of the parameters declared before this one."""
        c = self.constraint
        if c is None or isinstance(c, Constraint):
            return c
        return c(*before)

    def requirement(self, before: tuple[Any, ...] = ()) -> str:
        """What a valid value is, in words (for error messages)."""
        try:
            c = self.resolve(before)
        except Exception:
            c = None
        from genmlx.core.constraints import real

        if c is None or c == real:
            return "finite" if self.finite else "a number"
        if self.finite and isinstance(c, greater_than):
            return f"finite and {c.requirement}"
        return c.requirement


def _as_param(entry: Any, owner: str) -> Param:
    if isinstance(entry, Param):
        return entry
    if isinstance(entry, str):
        return Param(entry)
    raise TypeError(
        f"{owner}.params: each entry must be a parameter name (str) or a Param, "
        f"got {entry!r}"
    )


# Methods whose parameters the base binds from keywords: name -> (leading positional
# arguments before the parameters, their keyword names, keywords reserved for the method).
_BOUND_METHODS: dict[str, tuple[int, tuple[str, ...], frozenset[str]]] = {
    "sample": (1, ("key",), frozenset({"shape"})),
    "reparam_sample": (1, ("key",), frozenset({"shape"})),
    "log_prob": (1, ("value",), frozenset()),
    "support": (0, (), frozenset()),
}


def _bind_method(method: str, impl: Callable[..., Any]) -> Callable[..., Any]:
    """``impl`` with keyword parameters bound to positions through ``self.params``."""
    n_lead, lead_names, reserved = _BOUND_METHODS[method]

    checked = method != "support"

    @functools.wraps(impl)
    def bound(self: Distribution, *args: Any, **kwargs: Any) -> Any:
        if not kwargs or kwargs.keys() <= reserved:  # the common, all-positional call
            if checked and self._checks_params:
                self.check_params(*args[n_lead:])
            return impl(self, *args, **kwargs)
        own = {k: kwargs.pop(k) for k in reserved if k in kwargs}
        lead = list(args[:n_lead])
        declared = {k for p in (self._param_specs or ()) for k in p.keywords}
        for name in lead_names[len(lead) :]:
            if name in kwargs and name not in declared:
                lead.append(kwargs.pop(name))
        op = f"{self.name}.{method}"
        try:
            values = self.bind_params(args[n_lead:], kwargs, op=op)
        except TypeError as e:
            clash = [
                p for p in self._param_specs or () if reserved & set(p.keywords) and p.aliases
            ]
            if not clash:
                raise
            p = clash[0]
            raise TypeError(
                f"{e} (in {op}, {p.name}= is the {method} keyword; pass the parameter "
                f"{p.name!r} by position or as {p.aliases[0]}=)"
            ) from None
        if checked and self._checks_params:
            self.check_params(*values)
        return impl(self, *lead, *values, **own)

    bound.__genmlx_bound__ = True  # type: ignore[attr-defined]
    return bound


_VALIDATE: ContextVar[bool] = ContextVar("genmlx_param_validation", default=True)


def param_validation_enabled() -> bool:
    """Whether plain-number parameters of distributions are checked eagerly."""
    return _VALIDATE.get()


@contextlib.contextmanager
def param_validation(enabled: bool) -> Iterator[None]:
    """Turn the eager parameter check of every distribution on or off in a ``with``
    block (``genmlx.dists.validation`` is this)."""
    token = _VALIDATE.set(enabled)
    try:
        yield
    finally:
        _VALIDATE.reset(token)


def _plain(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def where_mask(mask: mx.array, a: mx.array, b: mx.array) -> mx.array:
    """``a`` where ``mask`` holds, else ``b``; the mask broadcasts over trailing event axes.

    The result has ``b``'s dtype (the sampled or kept value's).
    """
    a = a.astype(b.dtype) if a.dtype != b.dtype else a
    if b.ndim > mask.ndim:
        mask = mask.reshape(mask.shape + (1,) * (b.ndim - mask.ndim))
    return mx.where(mask, a, b)


_SHAPE_KEY = mx.array([0, 0], dtype=mx.uint32)

F = TypeVar("F", bound=Callable[..., Any])


def _named_errors(op: str) -> Callable[[F], F]:
    """Report a parameter error of a distribution used directly as a generative function
    as a :class:`~genmlx.core.errors.DistributionArgumentError` naming it."""

    def deco(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: Distribution, *a: Any) -> Any:
            try:
                return method(self, *a)
            except (ValueError, TypeError, IndexError) as e:
                if isinstance(e, GenMLXError) or runtime.is_transform_eval_error(e):
                    raise
                args = a[2] if op in ("update", "regenerate") else a[0]
                raise argument_error(e, f"{op} on {self.name}", (), self, args) from e

        return wrapper  # type: ignore[return-value]

    return deco


def _signature(args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """A hashable summary of parameters that fixes a sampler's output shape, or None."""
    out: list[Any] = []
    for a in args:
        if isinstance(a, mx.array):
            out.append((tuple(a.shape), a.dtype))
        elif isinstance(a, (bool, int, float, str)) or a is None:
            out.append((type(a), a))
        else:
            shape = getattr(a, "shape", None)
            if shape is None or not hasattr(a, "dtype"):
                return None
            out.append((type(a), tuple(shape), str(a.dtype)))
    return tuple(out)


def describe_params(dist: Distribution, args: tuple[Any, ...]) -> str:
    """``"mu: array (3,) float32, sigma: float 1.0"`` for error messages."""
    names = _param_names(type(dist))
    parts = []
    for i, a in enumerate(args):
        name = names[i] if i < len(names) else f"param {i}"
        if isinstance(a, mx.array):
            d = f"array {tuple(a.shape)} {a.dtype}".replace("mlx.core.", "")
        elif isinstance(a, (bool, int, float)):
            d = f"{type(a).__name__} {a!r}"
        else:
            shape = getattr(a, "shape", None)
            d = type(a).__name__ + (f" {tuple(shape)}" if shape is not None else "")
            if isinstance(a, str) or a is None:
                d = f"{type(a).__name__} {a!r}"
        parts.append(f"{name}: {d}")
    return ", ".join(parts) if parts else "no parameters"


_PARAM_NAMES: dict[type, tuple[str, ...]] = {}


def _param_names(cls: type) -> tuple[str, ...]:
    names = _PARAM_NAMES.get(cls)
    specs = getattr(cls, "_param_specs", None)
    if names is None and specs:
        names = tuple(p.name for p in specs)
        _PARAM_NAMES[cls] = names
    if names is None:
        try:
            sig = inspect.signature(cls.log_prob)  # type: ignore[attr-defined]
            ps = [
                p.name
                for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            names = tuple(ps[2:])  # self, value
        except (TypeError, ValueError):
            names = ()
        _PARAM_NAMES[cls] = names
    return names


def argument_error(
    err: BaseException, op: str, path: Path, dist: Distribution, args: tuple[Any, ...]
) -> DistributionArgumentError:
    """The :class:`~genmlx.core.errors.DistributionArgumentError` for an error a
    distribution raised at ``path`` (to be raised ``from err``)."""
    where = f"at address {format_address(path)}" if path else "(called directly)"
    msg = str(err)
    hint = ""
    if "broadcast" in msg:
        hint = (
            " The parameters' shapes must broadcast together (NumPy's rules: trailing "
            "axes equal or 1)."
        )
    elif "type" in msg.lower() or isinstance(err, TypeError):
        hint = " Parameters must be numbers or MLX arrays."
    return DistributionArgumentError(
        f"{op}: {dist.name} {where} cannot use its parameters ({describe_params(dist, args)})."
        f"{hint} ({type(err).__name__}: {msg})"
    )


def _param_shapes(args: tuple[Any, ...]) -> str:
    parts = []
    for a in args:
        shape = getattr(a, "shape", None)
        parts.append(str(tuple(shape)) if shape is not None else type(a).__name__)
    return "(" + ", ".join(parts) + ")"


def _check_arity(cls: type, method: str, impl: Callable[..., Any]) -> None:
    """A declared ``params`` must match the positional parameters of ``impl``."""
    try:
        sig = inspect.signature(impl)
    except (TypeError, ValueError):  # builtins and the like: nothing to compare
        return
    kinds = [p.kind for p in sig.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    n_lead = _BOUND_METHODS[method][0]
    n = len(positional) - 1 - n_lead  # minus self and the leading arguments
    params: tuple[Param, ...] = getattr(cls, "_param_specs", None) or ()
    if n != len(params):
        raise TypeError(
            f"{cls.__name__}.params declares {len(params)} parameter(s) "
            f"{tuple(p.name for p in params)} but {cls.__name__}.{method} takes {n}"
        )


class DistributionTrace(Trace):
    """The trace of a distribution: one value and its log density."""

    __slots__ = ("value",)

    value: mx.array

    def __init__(
        self,
        gen_fn: Distribution,
        args: tuple[Any, ...],
        value: mx.array,
        score: mx.array,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(gen_fn, args, value, score, batch_shape)
        object.__setattr__(self, "value", value)

    def get_choices(self) -> ChoiceMap:
        return ChoiceMap(self.value, None, self.batch_shape)

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return [self.args, self.value, self.score], (self.batch_shape, self.gen_fn)

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> DistributionTrace:
        batch_shape, gen_fn = aux
        args, value, score = children
        return cls(gen_fn, args, value, score, batch_shape)

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        yield (), self.score


_REAL_TYPE = type(C_real)
# What params_valid returns when every parameter was found valid in Python (plain
# numbers, or no declared ranges): mask_invalid skips its select for it.
_ALL_VALID = mx.array(True)


def mask_invalid(valid: mx.array, value: Any, fill: float) -> Any:
    """``value`` where ``valid``, ``fill`` elsewhere — ``mx.where(valid, value, fill)``,
    except that no operation is added when ``valid`` is what
    :meth:`Distribution.params_valid` returns for parameters it found valid without
    array operations (plain numbers): the same values, fewer operations in compiled
    programs.

    Example:
        >>> import mlx.core as mx
        >>> mask_invalid(mx.array([True, False]), mx.array([0.5, 0.5]), mx.nan).tolist()
        [0.5, nan]
    """
    if valid is _ALL_VALID and isinstance(value, mx.array):
        return value
    return mx.where(valid, value, fill)


def _finite(a: mx.array) -> mx.array:
    """``isfinite`` of a floating array in two operations (NaN and ±inf fail
    ``|a| < inf``), against the five of ``mx.isfinite``."""
    out: mx.array = mx.abs(a) < mx.inf
    return out


def _float32(v: Any) -> float | None:
    """A plain number rounded to float32 (``None`` if it cannot be converted)."""
    try:
        with np.errstate(over="ignore"):
            return float(np.float32(v))
    except (OverflowError, ValueError):
        return None


def _number_valid(p: Param, c: Constraint | None, v: float) -> bool | None:
    """Whether a plain Python number ``v`` (already rounded to float32, as the array
    path would see it) is a valid value of parameter ``p`` with its resolved
    constraint ``c``, judged in Python; ``None`` when that cannot be decided without
    arrays (an event-shaped parameter, a bound that is an array)."""
    if p.event_ndim or (c is not None and c.event_ndim):
        return None
    if c is not None and (
        type(c).check_number is Constraint.check_number
        or any(isinstance(k, tuple) and k[:1] == ("array",) for k in c._key())
    ):
        return None
    if p.finite and not math.isfinite(v):
        return False
    return True if c is None else bool(c.check_number(v))


class Distribution(GenerativeFunction):
    """Base class of distributions (generative functions with one choice at the root).

    Subclasses set these class attributes as they apply.

    Attributes:
        name: registry name.
        has_reparam: ``reparam_sample`` is implemented (gradients flow through samples).
        is_enumerable: ``support(*params)`` lists the finite support.
        is_discrete: values are integers or booleans (no gradient w.r.t. the value).
        event_ndim: trailing value dimensions forming one event (0 for scalars,
            1 for ``mv_normal``, 2 for ``wishart``).
        is_improper: the density does not integrate to one (``flat`` priors): it can
            be scored but not sampled; ``sample`` raises
            :class:`~genmlx.core.errors.ImproperPriorError`, and structure analysis
            uses :meth:`placeholder` for a value of the right shape.
        params: the parameters in order, declared once as names or :class:`Param`
            records (``params = ("mu", "sigma")``); keyword parameters in calls,
            ``sample``, ``log_prob`` and ``support`` come from it. ``None`` (the
            default) means positional parameters only.
    """

    name: str = "distribution"
    has_reparam: bool = False
    is_enumerable: bool = False
    is_discrete: bool = False
    event_ndim: int = 0
    is_improper: bool = False
    # The parameters, in order, as names or Param records (normalised to a tuple of
    # Param when the class is created); None: not declared, so parameters are
    # positional only (constructed distributions with variable parameters).
    params: ClassVar[tuple[str | Param, ...] | None] = None
    _param_specs: ClassVar[tuple[Param, ...] | None] = None
    # whether any declared parameter has a range to check (finite or a constraint)
    _checks_params: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("params")
        if declared is not None:
            entries = (declared,) if isinstance(declared, (str, Param)) else tuple(declared)
            specs = tuple(_as_param(e, cls.__name__) for e in entries)
            seen: set[str] = set()
            for p in specs:
                clash = set(p.keywords) & seen
                if clash:
                    raise TypeError(f"{cls.__name__}.params: {sorted(clash)} named twice")
                seen.update(p.keywords)
            cls.params = cls._param_specs = specs
            cls._checks_params = any(p.constraint is not None for p in specs)
        if cls._param_specs is None:
            return
        for method in _BOUND_METHODS:
            impl = cls.__dict__.get(method)
            if impl is None or getattr(impl, "__genmlx_bound__", False):
                continue
            if not inspect.isfunction(impl) or getattr(impl, "__isabstractmethod__", False):
                continue
            _check_arity(cls, method, impl)
            setattr(cls, method, _bind_method(method, impl))

    def bind_params(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, op: str | None = None
    ) -> tuple[Any, ...]:
        """The parameters in declared order, from positional ``args`` and ``kwargs``.

        Args:
            args: parameters given by position (a prefix of :attr:`params`).
            kwargs: the rest by keyword (a parameter's name or one of its aliases).
            op: the operation, for error messages (default: the distribution's name).

        Raises:
            TypeError: the distribution declares no parameter names and ``kwargs`` is
                not empty, or a keyword is unknown, a parameter is given twice, one is
                missing, or too many are given by position.

        Example:
            >>> from genmlx.core.testing.models import normal
            >>> normal.bind_params((), {"sigma": 2.0, "mu": 1.0})
            (1.0, 2.0)
        """
        op = op or self.name
        specs = self._param_specs
        if specs is None:
            if kwargs:
                raise TypeError(
                    f"{op}: {self.name} takes its parameters by position only (it declares "
                    f"no parameter names); got keywords {sorted(kwargs)}"
                )
            return tuple(args)
        signature = f"{self.name}({', '.join(p.name for p in specs)})"
        if len(args) > len(specs):
            raise TypeError(
                f"{op}: {signature} takes {len(specs)} parameter(s), got {len(args)} by position"
            )
        if not kwargs:
            if len(args) < len(specs):
                missing = ", ".join(repr(p.name) for p in specs[len(args) :])
                raise TypeError(f"{op}: missing parameter(s) {missing}; call {signature}")
            return tuple(args)
        owner = {k: p for p in specs for k in p.keywords}
        unknown = [k for k in kwargs if k not in owner]
        if unknown:
            raise TypeError(
                f"{op}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"the parameters are {signature}"
                + "".join(
                    f" ({p.name!r} is also accepted as {', '.join(map(repr, p.aliases))})"
                    for p in specs
                    if p.aliases
                )
            )
        values = list(args)
        for i, p in enumerate(specs):
            given = [k for k in p.keywords if k in kwargs]
            if i < len(args):
                if given:
                    raise TypeError(
                        f"{op}: parameter {p.name!r} given both by position and as {given[0]}="
                    )
                continue
            if len(given) > 1:
                raise TypeError(f"{op}: parameter {p.name!r} given twice (as {given})")
            if not given:
                absent = [q.name for q in specs[i:] if not any(k in kwargs for k in q.keywords)]
                raise TypeError(
                    f"{op}: missing parameter(s) {', '.join(map(repr, absent))}; "
                    f"call {signature}"
                )
            values.append(kwargs[given[0]])
        return tuple(values)

    def check_params(self, *params: Any) -> None:
        """Check plain-number parameters against the declared constraints, eagerly.

        Array parameters are not read (that would force an evaluation inside traced,
        batched or compiled code): :meth:`params_valid` masks them instead. The check is
        on unless :func:`param_validation` (``genmlx.dists.validation``) turned it off.

        Raises:
            ValueError: a plain-number parameter is outside its declared range; the
                message names the distribution, the parameter, its value and the range.

        Example:
            >>> import mlx.core as mx
            >>> from genmlx.core import constraints as C
            >>> class Exp(Distribution):
            ...     name = "exp"
            ...     params = (Param("rate", C.positive),)
            ...     def sample(self, key, rate, *, shape=()):
            ...         return mx.random.exponential(shape, key=key) / rate
            ...     def log_prob(self, value, rate):
            ...         return mx.log(rate) - rate * value
            >>> try:
            ...     Exp().log_prob(1.0, -2.0)       # sample/log_prob check automatically
            ... except ValueError as e:
            ...     print(str(e).split(" (")[0])
            exp: parameter rate=-2.0 is invalid; it must be finite and > 0
        """
        specs = self._param_specs
        if not specs or not _VALIDATE.get():
            return
        for i, (p, v) in enumerate(zip(specs, params)):
            if not _plain(v):
                continue
            x = float(v)
            ok = not (p.finite and not math.isfinite(x))
            if ok and p.constraint is not None:
                before = params[:i]
                if isinstance(p.constraint, Constraint):
                    ok = p.constraint.check_number(x)
                elif all(_plain(b) for b in before):
                    ok = p.resolve(before).check_number(x)  # type: ignore[union-attr]
            if not ok:
                raise ValueError(
                    f"{self.name}: parameter {p.name}={v!r} is invalid; it must be "
                    f"{p.requirement(params[:i])} (genmlx.dists.validation(False) turns "
                    "this check off)"
                )

    def params_valid(self, *params: Any) -> mx.array:
        """Where the parameters lie in their declared ranges: a boolean array with the
        parameters' broadcast batch shape (``True`` when nothing is declared).

        ``sample`` returns NaN and ``log_prob`` ``-inf`` where it is ``False``, so an
        invalid array parameter gives a visible, NaN-free answer under ``vmap`` and
        ``compile`` instead of a silently wrong one.

        Example:
            >>> import mlx.core as mx
            >>> from genmlx.core import constraints as C
            >>> class Gauss(Distribution):
            ...     name = "gauss"
            ...     params = (Param("mu", C.real), Param("sigma", C.positive))
            ...     def sample(self, key, mu, sigma, *, shape=()):
            ...         return mu + sigma * mx.random.normal(shape, key=key)
            ...     def log_prob(self, value, mu, sigma):
            ...         return -0.5 * ((value - mu) / sigma) ** 2 - mx.log(sigma)
            >>> Gauss().params_valid(0.0, mx.array([1.0, -1.0, mx.inf])).tolist()
            [True, False, False]
        """
        specs = self._param_specs
        if not specs:
            return _ALL_VALID
        arrays = [
            v.astype(mx.float32) if isinstance(v, mx.array) and v.dtype == mx.bfloat16 else v
            for v in params
        ]
        ok: mx.array | None = None
        # plain numbers as the float32 the array path sees (bounds that depend on them
        # are then compared exactly as float32 comparisons would)
        rounded = [_float32(v) if _plain(v) else v for v in arrays]
        for i, (p, v) in enumerate(zip(specs, arrays)):
            plain = None
            r = rounded[i]
            if _plain(v) and isinstance(r, float):
                before = tuple(rounded[:i])
                if all(b is not None for b in before):
                    plain = _number_valid(p, p.resolve(before), r)
            if plain is not None:
                # a plain number is checked here, in Python (as the float32 the array
                # path would see): no array operations for constant parameters
                if not plain:
                    ok = mx.array(False) if ok is None else mx.logical_and(ok, mx.array(False))
                continue
            c = p.resolve(tuple(arrays[:i]))
            a = v if isinstance(v, mx.array) else mx.array(v, dtype=mx.float32)
            cond: mx.array | None = None
            finite_checked = p.finite and mx.issubdtype(a.dtype, mx.floating)
            if finite_checked:
                cond = _finite(a)
                if p.event_ndim:
                    cond = mx.all(cond, axis=tuple(range(-p.event_ndim, 0)))
            if c is not None and not (finite_checked and type(c) is _REAL_TYPE):
                inside = c.check(a)
                for _ in range(p.event_ndim - c.event_ndim):
                    inside = mx.all(inside, axis=-1)
                cond = inside if cond is None else mx.logical_and(cond, inside)
            if cond is not None:
                ok = cond if ok is None else mx.logical_and(ok, cond)
        return _ALL_VALID if ok is None else ok

    def __call__(self, *args: Any, **kwargs: Any) -> TracedCall:
        """``d(*params) @ addr`` (or ``d(mu=..., sigma=...) @ addr``) traces a choice."""
        if self._param_specs is None and not kwargs:
            return TracedCall(self, args)
        return TracedCall(self, self.bind_params(args, kwargs))

    # The signatures below are written ``(*args, **kwargs)`` so that subclasses can
    # name their parameters (``sample(self, key, mu, sigma, *, shape=())``); the
    # calling convention is ``sample(key, *params, shape=())`` and
    # ``log_prob(value, *params)``.
    @abstractmethod
    def sample(self, *args: Any, **kwargs: Any) -> mx.array:
        """``sample(key, *params, shape=())``: a draw of shape
        ``shape + batch_shape(params) + event_shape``."""

    @abstractmethod
    def log_prob(self, *args: Any, **kwargs: Any) -> mx.array:
        """``log_prob(value, *params)``: log density/mass, broadcasting, one number per
        event."""

    def reparam_sample(self, *args: Any, **kwargs: Any) -> mx.array:
        """``reparam_sample(key, *params, shape=())``: a sample that is a differentiable
        function of the parameters.

        Raises:
            TypeError: when the distribution has no reparameterisation.
        """
        if self.has_reparam:
            return self.sample(*args, **kwargs)
        raise TypeError(f"{self.name} has no reparameterised sampler (has_reparam is False)")

    def support(self, *params: Any) -> mx.array:
        """The finite support, as an array of values (finite discrete distributions).

        Raises:
            TypeError: when the distribution is not enumerable.
        """
        raise TypeError(f"{self.name} has no finite support to enumerate (is_enumerable is False)")

    #: ``log_prob(value, mu, sigma)`` is the Gaussian density with mean ``mu`` and standard
    #: deviation ``sigma`` (the compiled tier's affine-Gaussian rewrite uses it).
    gaussian_location_scale: bool = False
    #: The distribution provides :meth:`iid_statistics` / :meth:`iid_log_prob`.
    has_iid_statistics: bool = False
    #: The MLX primitive name of the link of its first parameter (``"Sigmoid"``,
    #: ``"Exp"``) when it provides :meth:`glm_log_prob` (the generalised-linear rewrite).
    glm_link: str | None = None
    #: How the log density is evaluated inside a fused GPU kernel when a parameter is
    #: (a link of) an affine function of latent values: a
    #: :class:`genmlx.core.fused.FusedLogProb` (``None``: never fused). See
    #: :mod:`genmlx.core.fused`.
    fused_log_prob: Any = None

    def standard_normal_shape(self, *params: Any) -> tuple[int, ...] | None:
        """The shape of the standard normals one draw with these parameters consumes,
        when the sampler is ``from_standard_normal(mx.random.normal(shape, key=key),
        *params)`` exactly (``None``: it is not). Lets a batched operation on a GPU
        compute the draws of many sites and particles in one kernel
        (:mod:`genmlx.core.presample`)."""
        del params
        return None

    def from_standard_normal(self, z: mx.array, *params: Any) -> mx.array:
        """The draw made from the standard normals ``z`` (see
        :meth:`standard_normal_shape`)."""
        # an optional hook: presample calls it only for distributions whose
        # standard_normal_shape returns a shape (and then override it)
        raise NotImplementedError(
            f"{self.name} does not sample from standard normals: override "
            "from_standard_normal together with standard_normal_shape"
        )

    def glm_log_prob(self, value: mx.array, eta: mx.array) -> mx.array:
        """Elementwise log density with the first parameter given through its link as the
        linear predictor ``eta`` (only where :attr:`glm_link` is set)."""
        # an optional hook: the rewrites call it only for distributions that set
        # glm_link (and then override it), so reaching this is a plugin's declaration bug
        raise NotImplementedError(f"{self.name} declares no link")

    def iid_statistics(self, value: mx.array) -> tuple[mx.array, ...] | None:
        """Sufficient statistics of an observed array of independent draws with scalar
        parameters (``None``: not provided). Used by the iid rewrite of
        :mod:`genmlx.core.rewrites`."""
        del value
        return None

    def iid_log_prob(self, stats: tuple[mx.array, ...], *params: Any) -> mx.array:
        """``Σ log p(vᵢ; params)`` from :meth:`iid_statistics` (scalar parameters)."""
        # an optional hook: called only when iid_statistics returned statistics (a
        # distribution providing them overrides both)
        raise NotImplementedError(f"{self.name} provides no iid statistics")

    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """A distribution always makes exactly one choice: its structure is fixed."""
        del args
        return None

    def choice_domains(self, args: tuple[Any, ...]) -> dict[Any, Any] | None:
        """The domain of the single choice (at the root path)."""
        try:
            d = self.domain(*args)
        except Exception:
            return None
        return None if d is None else {(): d}

    def domain(self, *params: Any) -> Constraint | None:
        """The set of values with positive density, as a
        :class:`~genmlx.core.constraints.Constraint` (``None``: not declared).

        Gradient-based inference maps each continuous latent choice from this domain
        to unconstrained space (:func:`genmlx.core.bijectors.biject_to`). It may depend
        on the parameters (``uniform(low, high)`` is ``interval(low, high)``), which
        may themselves be computed from other choices. The default is ``None``
        (unknown) rather than the real line, because assuming an unbounded domain for
        a bounded distribution would silently sample outside its support; a
        distribution meant for gradient methods declares its domain.
        """
        del params
        return None

    def placeholder(self, *params: Any) -> mx.array:
        """A value in the domain with the shape and dtype of a draw, for structure
        analysis (:func:`genmlx.core.analyze`) of distributions that cannot be sampled
        (``is_improper``). The default draws one with a fixed key."""
        return self.sample(mx.random.key(0), *params)

    def leaf(self, value: Any) -> ChoiceMap:
        """The choice map holding ``value`` as this distribution's choice."""
        return ChoiceMap.leaf(value)

    def score(self, value: mx.array, args: tuple[Any, ...]) -> mx.array:
        """The GFI score of one choice: ``sum(log_prob(value, *args))``."""
        return mx.sum(self.log_prob(value, *args))

    def value_shape(self, args: tuple[Any, ...]) -> tuple[int, ...]:
        """The shape of one value drawn with parameters ``args`` (batch + event shape).

        The default reads the shape of a lazily built ``sample`` (MLX infers shapes
        without computing anything) and caches it per parameter signature (the shapes
        and dtypes of array parameters, the values of plain ones). Override it when the
        sampler is expensive to build or not lazy.
        """
        sig = _signature(args)
        cache: dict[Any, tuple[int, ...]] | None = self.__dict__.get("_value_shapes")
        if cache is None:
            cache = {}
            self.__dict__["_value_shapes"] = cache
        if sig is not None:
            hit = cache.get(sig)
            if hit is not None:
                return hit
        shape = tuple(self.sample(_SHAPE_KEY, *args).shape)
        if sig is not None:
            if len(cache) > 512:
                cache.clear()
            cache[sig] = shape
        return shape

    def check_value(self, value: mx.array, args: tuple[Any, ...], op: str, path: Path) -> None:
        """Raise :class:`~genmlx.core.errors.ConstraintError` when a given value (a
        constraint, or a choice given to ``assess``) does not have the shape this
        distribution produces with ``args``.

        A value of another shape would be broadcast against the parameters and score
        several densities (or store a value that no draw could have), silently.
        """
        expected = self.value_shape(args)
        got = tuple(value.shape)
        if got == expected:
            return
        where = format_address(path) if path else "its root"
        hint = ""
        k = len(expected)
        if runtime.in_transform() and len(got) > k and got[len(got) - k :] == expected:
            hint = (
                " For one value per particle of a batched run, build the choice map with "
                "batch_shape=(n,) (e.g. choicemap({...}, batch_shape=(n,))): each particle "
                "then sees its own row."
            )
        raise ConstraintError(
            f"{op}: the value given at address {where} has shape {got}, but {self.name} "
            f"with parameters of shape(s) {_param_shapes(args)} produces values of shape "
            f"{expected}; give a value of shape {expected}.{hint}"
        )

    # ------------------------------------------------------------ constrained choices
    def constrained_value(
        self, constraint: ChoiceMap, args: tuple[Any, ...], op: str, path: Path = ()
    ) -> mx.array | None:
        """The value a constraint gives this choice, checked; ``None`` when it gives none.

        Raises:
            ConstraintError: the value has the wrong shape, or the constraint is a map of
                sub-addresses (a distribution has one choice) outside lenient mode.
        """
        if constraint.has_root_value:
            v = as_array(constraint.value)
            self.check_value(v, args, op, path)
            return v
        if constraint.is_empty or runtime.is_lenient():
            return None
        at = format_address(path) if path else "its root"
        raise ConstraintError(
            f"{op}: the constraint at {at} is a map of sub-addresses "
            f"{constraint.addresses()!r}, but {at} is a single random choice "
            f"({self.name}); give it one value"
        )

    def generate_choice(
        self,
        args: tuple[Any, ...],
        constraint: ChoiceMap,
        draw: Callable[[], mx.array],
        op: str = "generate",
        path: Path = (),
    ) -> tuple[mx.array, mx.array, mx.array | None]:
        """``generate`` of this one choice: ``(value, score, weight)``.

        The semantics of a (possibly masked) constraint, in one place — the ``@gen``
        interpreter and the distribution's own ``generate`` both use it:

        * no value given: ``value = draw()``, weight ``None`` (nothing added);
        * a value: its score is the weight;
        * a masked value (a leaf mask ``m``): the value where ``m`` holds, a draw
          elsewhere; the weight is the score where ``m`` holds, 0 elsewhere.

        Args:
            args: the parameters.
            constraint: the constraint at this choice's address (may be empty).
            draw: returns a fresh sample (called only when one is needed, so that the
                caller spends a key only then).
            op, path: for error messages.
        """
        v = self.constrained_value(constraint, args, op, path)
        if v is None:
            v = draw()
            return v, self.score(v, args), None
        m = constraint.leaf_mask
        if m is None:
            s = self.score(v, args)
            return v, s, s
        v = where_mask(m, v, draw())
        s = self.score(v, args)
        return v, s, mx.where(m, s, mx.zeros_like(s))

    def update_choice(
        self,
        args: tuple[Any, ...],
        constraint: ChoiceMap,
        old: tuple[mx.array, mx.array] | None,
        draw: Callable[[], mx.array],
        op: str = "update",
        path: Path = (),
    ) -> tuple[mx.array, mx.array, mx.array | None, ChoiceMap | None, bool]:
        """``update`` of this one choice: ``(value, score, weight, discard, changed)``.

        ``old`` is the previous ``(value, score)`` (``None``: the choice is new). Gen.jl's
        semantics: a kept choice adds ``new − old`` score; a newly constrained one adds
        its score; a new unconstrained one is drawn and adds nothing (weight ``None``); a
        masked constraint replaces the value only where its mask holds (elsewhere the
        old value is kept, or a draw for a new choice, contributing 0). ``discard`` holds
        the overwritten old value (with the mask, for a masked constraint).
        """
        v = self.constrained_value(constraint, args, op, path)
        m = constraint.leaf_mask if v is not None else None
        if v is not None and m is not None:
            if old is not None:
                v = where_mask(m, v, old[0])
                s = self.score(v, args)
                return v, s, s - old[1], ChoiceMap(old[0], None, (), m), True
            v = where_mask(m, v, draw())
            s = self.score(v, args)
            return v, s, mx.where(m, s, mx.zeros_like(s)), None, True
        if v is not None:
            s = self.score(v, args)
            if old is not None:
                return v, s, s - old[1], ChoiceMap(old[0]), True
            return v, s, s, None, True
        if old is not None:
            s = self.score(old[0], args)
            return old[0], s, s - old[1], None, False
        v = draw()
        return v, self.score(v, args), None, None, True

    # ------------------------------------------------------------------ GFI
    @_named_errors("simulate")
    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> DistributionTrace:
        v = self.sample(key, *args)
        return DistributionTrace(self, args, v, self.score(v, args))

    @_named_errors("generate")
    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        op = f"generate on {self.name}"
        v, s, w = self.generate_choice(args, constraints, lambda: self.sample(key, *args), op)
        return GenerateResult(
            DistributionTrace(self, args, v, s), mx.zeros_like(s) if w is None else w
        )

    @_named_errors("assess")
    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        if not choices.has_root_value and runtime.is_lenient():
            v = self.sample(mx.random.key(0), *args)  # a branch not taken: any value
            return AssessResult(self.score(v, args), v)
        if not choices.has_root_value:
            raise MissingChoiceError(f"assess on {self.name}: no value given for its choice")
        v = as_array(choices.value)
        self.check_value(v, args, f"assess on {self.name}", ())
        return AssessResult(self.score(v, args), v)

    @_named_errors("update")
    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        assert isinstance(trace, DistributionTrace)
        if (
            self.constrained_value(constraints, args, f"update on {self.name}") is None
            and all(d.is_no_change() for d in argdiffs)
        ):
            return UpdateResult(trace, mx.zeros_like(trace.score), NoChange, ChoiceMap.empty())
        v, s, w, discard, changed = self.update_choice(
            args,
            constraints,
            (trace.value, trace.score),
            lambda: self.sample(key, *args),
            f"update on {self.name}",
        )
        return UpdateResult(
            DistributionTrace(self, args, v, s),
            s - trace.score if w is None else w,
            UnknownChange if changed else NoChange,
            ChoiceMap.empty() if discard is None else discard,
        )

    @_named_errors("regenerate")
    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        assert isinstance(trace, DistributionTrace)
        if selection.contains_path(()):
            new = self._simulate(args, key)
            return RegenerateResult(new, mx.zeros_like(new.score), UnknownChange)
        if all(d.is_no_change() for d in argdiffs):
            return RegenerateResult(trace, mx.zeros_like(trace.score), NoChange)
        s = self.score(trace.value, args)
        return RegenerateResult(
            DistributionTrace(self, args, trace.value, s), s - trace.score, NoChange
        )

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        return trace.score if selection.contains_path(()) else mx.zeros_like(trace.score)

    def __repr__(self) -> str:
        return f"<distribution {self.name}>"
