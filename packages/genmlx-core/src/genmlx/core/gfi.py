"""The Generative Function Interface (GFI).

A *generative function* defines a probability distribution over *choice maps* (its
random choices) and a return value, given arguments. Write ``p(t; x)`` for the density
of choices ``t`` under arguments ``x`` and ``r(t; x)`` for the return value. Every
generative function supports the operations below, with Gen.jl's weight semantics:

======================  ======================================================
operation               returns
======================  ======================================================
``simulate``            a trace ``t ~ p(·; x)``
``generate``            ``(t, w)``: ``t`` consistent with constraints ``c``;
                        ``w = log p(t; x) - log q(t; x, c)``, which for the
                        internal proposal is ``Σ log p`` of the constrained choices
``assess``              ``(log p(t; x), r(t; x))`` for complete choices ``t``
``propose``             ``(t, log p(t; x), r)`` with ``t ~ p(·; x)``
``update``              ``(t', w, retdiff, discard)`` with
                        ``w = log p(t'; x') - log p(t; x)`` over the changed part
``regenerate``          ``(t', w, retdiff)``: selected choices resampled from the
                        prior; ``w`` counts only unselected kept choices
``project``             ``Σ log p`` of the selected choices of ``t``
``edit``                ``(t', w, retdiff, backward_request)`` for an edit request
======================  ======================================================

Batched traces (``trace.batch_shape == (n,)``) are ``n`` independent executions; every
operation then returns ``[n]`` weights. ``vsimulate`` and ``vgenerate`` make them by
running the body once for all particles (see :mod:`genmlx.core.batching`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import mlx.core as mx

from genmlx.core import batching, runtime
from genmlx.core.address import Address, to_path
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange, diff_args, no_change_args
from genmlx.core.random import Key, resolve_key
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace

if TYPE_CHECKING:
    from genmlx.core.edit import EditRequest

from genmlx.core.checks import (
    as_argdiffs,
    as_args,
    as_choicemap,
    as_selection,
    check_finite,
)
from genmlx.core.results import (
    AssessResult,
    EditResult,
    GenerateResult,
    ProposeResult,
    RegenerateResult,
    UpdateResult,
)

__all__ = [
    "AssessResult",
    "EditResult",
    "GenerateResult",
    "GenerativeFunction",
    "ProposeResult",
    "RegenerateResult",
    "TracedCall",
    "UpdateResult",
]


class TracedCall:
    """``gen_fn(*args)``: a call waiting for an address, written ``gen_fn(*args) @ addr``.

    Inside a ``@gen`` body, ``@ addr`` traces the call at ``addr`` and returns its value
    (the sampled choice for a distribution, the return value for a generative function).
    """

    __slots__ = ("args", "gen_fn")

    def __init__(self, gen_fn: GenerativeFunction, args: tuple[Any, ...]) -> None:
        self.gen_fn = gen_fn
        self.args = args

    def __matmul__(self, addr: Address) -> Any:
        from genmlx.core.handlers import trace_site

        return trace_site(to_path(addr), self.gen_fn, self.args)

    def __repr__(self) -> str:
        return f"TracedCall({self.gen_fn!r}, {len(self.args)} args)"

    def __bool__(self) -> bool:
        raise self._misuse("as a truth value")

    def _misuse(self, how: str) -> TypeError:
        """The error for a call used as a value before it was given an address."""
        name = getattr(self.gen_fn, "name", type(self.gen_fn).__name__)
        return TypeError(
            f"{name}(...) was used {how} without an address: add @ \"address\" to make "
            f'the traced choice and use its value, e.g. `x = {name}(...) @ "x"` inside a '
            f"@gen body (outside one, use {name}.simulate(args) or, for a distribution, "
            f"{name}.sample(key, ...))"
        )


def _number_misuse(symbol: str) -> Any:
    def method(self: TracedCall, *other: Any) -> Any:
        raise self._misuse(f"in `{symbol}`" if symbol else "as a number")

    return method


# A TracedCall in arithmetic, comparisons or a conversion is a forgotten `@ "address"`.
for _names, _symbol in [
    (("__add__", "__radd__"), "+"),
    (("__sub__", "__rsub__"), "-"),
    (("__mul__", "__rmul__"), "*"),
    (("__truediv__", "__rtruediv__"), "/"),
    (("__floordiv__", "__rfloordiv__"), "//"),
    (("__mod__", "__rmod__"), "%"),
    (("__pow__", "__rpow__"), "**"),
    (("__rmatmul__",), "@ (on the left)"),
    (("__neg__",), "unary -"),
    (("__pos__",), "unary +"),
    (("__abs__",), "abs()"),
    (("__lt__",), "<"),
    (("__le__",), "<="),
    (("__gt__",), ">"),
    (("__ge__",), ">="),
    (("__float__", "__int__", "__index__", "__complex__", "__array__"), ""),
    (("__getitem__",), "[...]"),
]:
    for _name in _names:
        setattr(TracedCall, _name, _number_misuse(_symbol))


class GenerativeFunction(ABC):
    """Base class of every generative function (``@gen`` functions, distributions,
    combinators, neural networks).

    Subclasses implement the unbatched operations ``_simulate``, ``_generate``,
    ``_assess``, ``_update``, ``_regenerate`` and ``_project`` (and may override
    ``_propose`` and ``_edit``) as pure MLX computations with the mathematical contracts
    stated on the public methods. The public methods normalise arguments and keys,
    dispatch batched traces to :mod:`genmlx.core.batching` (which runs the unbatched
    operation once under ``mx.vmap``) and validate scores. A subclass whose trace type
    implements ``_tree_flatten``/``_tree_unflatten`` gets batching and compilation for
    free.
    """

    name: str = "generative function"

    # ------------------------------------------------------------------ structure
    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """Whether this function's address structure is fixed once ``args`` are known.

        Returns ``None`` when every call with arguments of this structure visits the
        same addresses with the same shapes (distributions, fixed-length combinators),
        or a short reason why not (completing "the call at ... ") otherwise. A model
        that calls a generative function with a structure that can change is *dynamic*
        for :func:`genmlx.core.analyze` and runs on the interpreter. The default is
        the conservative answer; subclasses whose structure is fixed override it.
        """
        del args
        return (
            f"is a {type(self).__name__}, which does not declare a fixed address structure "
            "(GenerativeFunction.static_structure)"
        )

    def choice_domains(self, args: tuple[Any, ...]) -> dict[Any, Any] | None:
        """The domains of this function's random choices for ``args``, by relative path,
        where they are the same for every call (``None``: not known).

        The compiled tier (:func:`genmlx.core.logdensity`) uses them to map latent
        choices made inside a call to unconstrained space. Combinators answer from their
        kernel's domains.
        """
        del args
        return None

    # ------------------------------------------------------------------ syntax
    def __call__(self, *args: Any) -> TracedCall:
        """``gf(*args) @ addr`` traces a call inside a ``@gen`` body."""
        return TracedCall(self, args)

    # ------------------------------------------------------------------ unbatched core
    @abstractmethod
    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> Trace:
        """Sample ``t ~ p(·; args)`` and return its trace."""

    @abstractmethod
    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        """Trace consistent with ``constraints``; weight = Σ log p of constrained choices."""

    @abstractmethod
    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        """``log p(choices; args)``; every choice must be given and used."""

    @abstractmethod
    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        """Move ``trace`` to new args and constraints; see :meth:`update`."""

    @abstractmethod
    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        """Resample the selected choices; see :meth:`regenerate`."""

    @abstractmethod
    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        """Σ log p of the selected choices of ``trace``."""

    def _propose(self, args: tuple[Any, ...], key: mx.array) -> ProposeResult:
        tr = self._simulate(args, key)
        return ProposeResult(tr.get_choices(), tr.score, tr.retval)

    def _edit(self, trace: Trace, request: EditRequest, key: mx.array) -> EditResult:
        return request.apply(self, trace, key)

    # ------------------------------------------------------------------ public GFI
    def simulate(self, args: tuple[Any, ...] = (), *, key: Key = None) -> Trace:
        """Sample an execution: ``t ~ p(·; args)``.

        Args:
            args: the arguments, as a tuple.
            key: PRNG key (``None``: a fresh one from MLX's global generator).

        Returns:
            The trace; ``trace.score == log p(t; args)``.
        """
        args = as_args(args, "simulate")
        key = resolve_key(key, "simulate")
        with runtime.operation() as top:
            tr = self._simulate(args, key)
        if top:
            check_finite("simulate", self, tr, None, allow_neg_inf=False)
        return tr

    def generate(
        self, args: tuple[Any, ...] = (), constraints: Any = None, *, key: Key = None
    ) -> GenerateResult:
        """Sample an execution consistent with ``constraints``.

        Unconstrained choices are drawn from the model (the internal proposal ``q``), so
        ``weight = log p(t; args) - log q(t; args, constraints)``, which is the sum of
        the log densities of the constrained choices (plus sub-calls' weights).

        Args:
            args: the arguments.
            constraints: a ChoiceMap (or dict) of observed values. Every constraint
                must be used; a batched choice map constrains each particle separately.
            key: PRNG key.

        Returns:
            ``(trace, weight)``.

        Raises:
            ConstraintError: a constraint is at an address the model never visits.
        """
        args = as_args(args, "generate")
        cons = as_choicemap(constraints, "generate")
        if cons.batch_shape:
            return batching.vgenerate(
                self, args, cons, cons.batch_shape[0], resolve_key(key, "generate")
            )
        key = resolve_key(key, "generate")
        _prepare(self, args)
        from genmlx.core import rewrites

        prepared = rewrites.prepare(self, args, cons) if runtime.operation_depth() == 0 else None
        with runtime.operation() as top, rewrites.active(prepared):
            res = self._generate(args, cons, key)
        if top:
            check_finite("generate", self, res.trace, res.weight)
        return res

    def assess(self, args: tuple[Any, ...], choices: Any) -> AssessResult:
        """The log density of complete ``choices`` and the return value.

        Raises:
            MissingChoiceError: a random choice of the model is not in ``choices``.
            ConstraintError: ``choices`` holds a value the model does not use.
        """
        args = as_args(args, "assess")
        cm = as_choicemap(choices, "assess", "choices")
        if cm.batch_shape:
            return batching.vassess(self, args, cm)
        with runtime.operation() as top:
            res = self._assess(args, cm)
        if top:
            check_finite("assess", self, None, res.log_density)
        return res

    def propose(self, args: tuple[Any, ...] = (), *, key: Key = None) -> ProposeResult:
        """Sample choices and return them with their log density and the return value."""
        args = as_args(args, "propose")
        key = resolve_key(key, "propose")
        with runtime.operation() as top:
            res = self._propose(args, key)
        if top:
            check_finite("propose", self, None, res.weight, allow_neg_inf=False)
        return res

    def _resolve_args(
        self,
        trace: Trace,
        args: tuple[Any, ...] | None,
        argdiffs: tuple[Diff, ...] | None,
        op: str,
    ) -> tuple[tuple[Any, ...], tuple[Diff, ...]]:
        if trace.gen_fn is not self:
            raise ValueError(
                f"{op}: the trace was made by {trace.gen_fn!r}, not by {self!r}; "
                "call the operation on trace.gen_fn"
            )
        if argdiffs is not None:
            argdiffs = as_argdiffs(argdiffs, op, self)
        if args is None:
            if argdiffs is not None and not all(d.is_no_change() for d in argdiffs):
                raise ValueError(
                    f"{op} on {self!r}: argdiffs say the arguments changed but no args were "
                    "given; pass the new args too"
                )
            return trace.args, no_change_args(trace.args)
        args = as_args(args, op)
        self._check_arity(trace, args, op)
        if argdiffs is None:
            return args, diff_args(trace.args, args)
        if len(argdiffs) != len(args):
            raise ValueError(
                f"{op} on {self!r}: {len(argdiffs)} argdiffs for {len(args)} arguments; give "
                "one Diff (NoChange, UnknownChange, ...) per argument"
            )
        return args, argdiffs

    def _check_arity(self, trace: Trace, args: tuple[Any, ...], op: str) -> None:
        """Raise ``TypeError`` when ``update``/``regenerate`` get new arguments this
        generative function cannot take. The default asks for as many as the trace was
        made with; a generative function with optional arguments overrides it."""
        if len(args) != len(trace.args):
            raise TypeError(
                f"{op} on {self!r}: the trace was made with {len(trace.args)} argument(s) but "
                f"{len(args)} were given; pass every argument of the model (args=None keeps "
                "the old ones)"
            )

    def update(
        self,
        trace: Trace,
        constraints: Any = None,
        args: tuple[Any, ...] | None = None,
        argdiffs: tuple[Diff, ...] | None = None,
        *,
        key: Key = None,
    ) -> UpdateResult:
        """Change arguments and/or constrain choices of ``trace``.

        ``weight = log p(t'; args') - log p(t; args)`` restricted to what changed: kept
        choices add ``new - old`` log density, newly constrained choices add their log
        density, newly sampled choices add 0 and removed choices subtract their old log
        density. ``discard`` holds overwritten and removed choices, so updating the new
        trace with ``discard`` (and the old args) returns to ``trace`` with weight
        ``-weight``. With no constraints and unchanged arguments the trace itself comes
        back with weight 0 (subclasses never see that case: "unchanged" means the very
        same argument objects and all-``NoChange`` argdiffs).

        Args:
            trace: the trace to change (single or batched).
            constraints: new values (ChoiceMap or dict). Every one must be used.
            args: new arguments; ``None`` keeps the old ones.
            argdiffs: change hints for ``args`` (default: computed conservatively).
            key: PRNG key for choices that must be sampled.
        """
        args, argdiffs = self._resolve_args(trace, args, argdiffs, "update")
        cons = as_choicemap(constraints, "update")
        if cons.is_empty and _unchanged(trace.args, args, argdiffs):
            # nothing to do, for every generative function: the trace is kept as it is
            return UpdateResult(trace, mx.zeros_like(trace.score), NoChange, ChoiceMap.empty())
        key = resolve_key(key, "update")
        if trace.batch_shape:
            return batching.vupdate(self, trace, cons, args, argdiffs, key)
        if cons.batch_shape:
            raise ValueError("update: batched constraints need a batched trace")
        _prepare(self, args)
        with runtime.operation() as top:
            res = self._update(trace, cons, args, argdiffs, key)
        if top:
            check_finite("update", self, res.trace, res.weight)
        return res

    def regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...] | None = None,
        argdiffs: tuple[Diff, ...] | None = None,
        *,
        key: Key = None,
    ) -> RegenerateResult:
        """Resample the selected choices from the model.

        ``weight`` counts only unselected choices that are kept (``new - old`` log
        density); selected, newly sampled and removed choices contribute 0. This is the
        Metropolis–Hastings acceptance log ratio of the resimulation move.
        """
        args, argdiffs = self._resolve_args(trace, args, argdiffs, "regenerate")
        sel = as_selection(selection, "regenerate")
        if sel.is_none() and _unchanged(trace.args, args, argdiffs):
            return RegenerateResult(trace, mx.zeros_like(trace.score), NoChange)
        key = resolve_key(key, "regenerate")
        if trace.batch_shape:
            return batching.vregenerate(self, trace, sel, args, argdiffs, key)
        _prepare(self, args)
        with runtime.operation() as top:
            res = self._regenerate(trace, sel, args, argdiffs, key)
        if top:
            check_finite("regenerate", self, res.trace, res.weight)
        return res

    def project(self, trace: Trace, selection: Selection) -> mx.array:
        """``Σ log p`` of the selected choices of ``trace``."""
        sel = as_selection(selection, "project")
        if trace.gen_fn is not self:
            raise ValueError(f"project: the trace was made by {trace.gen_fn!r}, not {self!r}")
        if trace.batch_shape:
            return batching.vproject(self, trace, sel)
        with runtime.operation():
            return self._project(trace, sel)

    def edit(self, trace: Trace, request: EditRequest, *, key: Key = None) -> EditResult:
        """Apply an edit request (SMCP3's interface); returns the backward request too.

        See :mod:`genmlx.core.edit` for ``ConstraintEdit``, ``SelectionEdit`` and
        ``ProposalEdit``.
        """
        from genmlx.core.edit import EditRequest

        if not isinstance(request, EditRequest):
            raise TypeError(f"edit: request must be an EditRequest, got {type(request).__name__}")
        if trace.gen_fn is not self:
            raise ValueError(f"edit: the trace was made by {trace.gen_fn!r}, not {self!r}")
        key = resolve_key(key, "edit")
        if trace.batch_shape:
            return batching.vedit(self, trace, request, key)
        with runtime.operation() as top:
            res = self._edit(trace, request, key)
        if top:
            check_finite("edit", self, res.trace, res.weight)
        return res

    # ------------------------------------------------------------------ batched
    def vsimulate(self, args: tuple[Any, ...], n: int, *, key: Key = None) -> Trace:
        """``n`` independent executions in one batched run of the body.

        Particle ``i`` equals ``simulate(args, key=mx.random.split(key, n)[i])``.

        Returns:
            A trace with ``batch_shape == (n,)``: every choice has a leading ``[n]`` axis.
        """
        return batching.vsimulate(
            self, as_args(args, "vsimulate"), n, resolve_key(key, "vsimulate")
        )

    def vgenerate(
        self, args: tuple[Any, ...], constraints: Any, n: int, *, key: Key = None
    ) -> GenerateResult:
        """``n`` executions of :meth:`generate` in one batched run: weights of shape ``[n]``.

        ``constraints`` are shared by every particle unless the choice map is batched
        (``batch_shape == (n,)``), in which case particle ``i`` gets leaf ``[i]``.
        """
        cons = as_choicemap(constraints, "vgenerate")
        return batching.vgenerate(
            self, as_args(args, "vgenerate"), cons, n, resolve_key(key, "vgenerate")
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # ------------------------------------------------------------------ copying
    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickled by reference to its module-level name (see genmlx.core.serialize)."""
        from genmlx.core.serialize import reduce_generative_function

        return reduce_generative_function(self, protocol)

    def __copy__(self) -> GenerativeFunction:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> GenerativeFunction:
        return self  # code, not data: copies of traces share their model


def _prepare(gf: GenerativeFunction, args: tuple[Any, ...]) -> None:
    """Analyse a static model once so that its updates are dependency-aware."""
    from genmlx.core import static

    static.prepare(gf, args)


def _unchanged(old: tuple[Any, ...], new: tuple[Any, ...], argdiffs: tuple[Diff, ...]) -> bool:
    """The argdiffs say nothing changed and the arguments are the very same objects."""
    if not all(d.is_no_change() for d in argdiffs):
        return False
    return old is new or (len(old) == len(new) and all(a is b for a, b in zip(old, new)))
