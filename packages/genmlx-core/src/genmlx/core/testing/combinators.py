"""The combinator kit: the GFI laws for a combinator applied to a family of kernels.

A combinator is only as correct as its weights are for *every* generative function it
wraps, so the kit builds it around each kernel of a fixed family
(:func:`kernel_family`) and checks, on every result:

* ``gfi_laws`` — the laws of :mod:`genmlx.core.testing.laws` (simulate/assess,
  generate full and empty, propose, update no-op/full/round trip, regenerate none/all,
  project, edit round trip), for several keys drawn by hypothesis;
* ``batched_laws`` — batched against single execution: particle ``i`` of ``vsimulate``
  equals ``simulate`` with ``split(key, n)[i]``; ``vgenerate`` with per-particle full
  constraints weighs the particles' scores; a batched ``update`` to other particles'
  choices has per-particle weights ``s₂ − s₁`` and undoes itself with its discard; a
  batched ``regenerate`` of everything has weight 0 (``batched_update``);
* ``incremental_update`` — ``update`` with ``NoChange`` argdiffs (the arguments passed
  as equal but new objects, so the combinator itself must use the diffs) and no
  constraints re-runs nothing: no GFI operation of the kernel is called, the weight is
  0, the choices are kept, the discard is empty and the retdiff is ``NoChange``; the
  same for ``regenerate`` of the empty selection.

**The family** (each a generative function of one float scalar returning a float
scalar, wrapped in :class:`CountingKernel` so the kit sees every operation the
combinator calls on it):

* ``deterministic`` — no random choices: ``2x + 1``;
* ``discrete`` — ``b ~ Bernoulli(sigmoid(x))``, returns ``x + b``;
* ``continuous`` — ``z ~ N(x, 1)``, ``y ~ N(z, 0.5)``, returns ``y``;
* ``nested`` — calls ``continuous`` at ``"c"`` and ``discrete`` at ``"d"``;
* ``batched`` — one array-valued choice ``v ~ N(x + [0, 1, 2], 1)`` (shape ``[3]``),
  returns ``sum(v)``.

**What a combinator provides:** ``conformance_build(kernel) -> [(gen_fn, args), ...]``,
the combinator applied to ``kernel`` with arguments to run it on (registration
metadata or an attribute; see :data:`genmlx.core.plugins.registry.METADATA_KEYS`).
Pass at least one argument as an ``mx.array`` so the incremental law reaches the
combinator (Python scalars compare by identity and short-circuit in core). Call the
kernel as a sub-call (``kernel(x) @ addr``), not with ``splice``: it is not a ``@gen``
function. Its ``conformance_examples()`` (fixed examples) go through the same checks
(without the counting). ``conformance_batched = False`` skips the batched laws.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.core.testing.combinators import check_combinator
    >>> def twice(kernel):                     # a combinator: call kernel twice
    ...     @gen
    ...     def both(x):
    ...         return kernel(x) @ 0, kernel(x) @ 1
    ...     return both
    >>> report = check_combinator(lambda k: [(twice(k), (mx.array(0.5),))], name="twice",
    ...                           max_examples=1)
    >>> report.passed
    True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx

from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange
from genmlx.core.dsl import gen
from genmlx.core.gfi import (
    AssessResult,
    GenerateResult,
    GenerativeFunction,
    RegenerateResult,
    UpdateResult,
)
from genmlx.core.selection import Selection
from genmlx.core.testing.distributions import CheckResult
from genmlx.core.testing.laws import (
    BATCHED_LAWS,
    GFI_LAWS,
    assert_close,
    assert_same_choices,
    check_gfi_laws,
)
from genmlx.core.testing.models import bernoulli, normal
from genmlx.core.testing.report import KitReport
from genmlx.core.trace import Trace

__all__ = [
    "COMBINATOR_CHECKS",
    "FAMILY",
    "Builder",
    "CountingKernel",
    "check_combinator",
    "check_incremental_update",
    "kernel_family",
]

Example = tuple[GenerativeFunction, tuple[Any, ...]]
Builder = Callable[[GenerativeFunction], Sequence[Example]]
"""``build(kernel) -> [(gen_fn, args), ...]``: a combinator applied to ``kernel``."""

COMBINATOR_CHECKS: tuple[str, ...] = ("gfi_laws", "batched_laws", "incremental_update")
"""The checks :func:`check_combinator` runs on each built example."""

FAMILY: tuple[str, ...] = ("deterministic", "discrete", "continuous", "nested", "batched")
"""The names of the kernel family, in order."""


class CountingKernel(GenerativeFunction):
    """A generative function that counts the GFI operations called on it.

    It behaves exactly like ``inner`` (same choices, scores, weights and return values;
    its traces are ``inner``'s with ``gen_fn`` set to the wrapper) and records each
    call of ``simulate``, ``generate``, ``assess``, ``update``, ``regenerate`` and
    ``project`` in its ``calls`` counter (a :class:`collections.Counter`), batched ones
    included; :attr:`total` is their sum.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core.testing.models import single_gaussian
        >>> k = CountingKernel(single_gaussian)
        >>> tr = k.simulate((), key=mx.random.key(0))
        >>> k.calls["simulate"], float(tr.score) == float(single_gaussian.assess(
        ...     (), tr.get_choices()).log_density)
        (1, True)
    """

    def __init__(self, inner: GenerativeFunction, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or str(getattr(inner, "name", "kernel"))
        self.calls: Counter[str] = Counter()

    @property
    def total(self) -> int:
        """The number of operations called so far."""
        return sum(self.calls.values())

    def _wrap(self, tr: Trace) -> Trace:
        return tr._replace(gen_fn=self)

    def _unwrap(self, tr: Trace) -> Trace:
        return tr._replace(gen_fn=self.inner)

    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> Trace:
        self.calls["simulate"] += 1
        return self._wrap(self.inner._simulate(args, key))

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        self.calls["generate"] += 1
        res = self.inner._generate(args, constraints, key)
        return res._replace(trace=self._wrap(res.trace))

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        self.calls["assess"] += 1
        return self.inner._assess(args, choices)

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        self.calls["update"] += 1
        res = self.inner._update(self._unwrap(trace), constraints, args, argdiffs, key)
        return res._replace(trace=self._wrap(res.trace))

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        self.calls["regenerate"] += 1
        res = self.inner._regenerate(self._unwrap(trace), selection, args, argdiffs, key)
        return res._replace(trace=self._wrap(res.trace))

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        self.calls["project"] += 1
        return self.inner._project(self._unwrap(trace), selection)


def _family_bodies() -> dict[str, GenerativeFunction]:
    @gen
    def deterministic(x: Any) -> Any:
        return 2.0 * x + 1.0

    @gen
    def discrete(x: Any) -> Any:
        b = bernoulli(mx.sigmoid(x)) @ "b"
        return x + b.astype(mx.float32)

    @gen
    def continuous(x: Any) -> Any:
        z = normal(x, 1.0) @ "z"
        return normal(z, 0.5) @ "y"

    @gen
    def nested(x: Any) -> Any:
        a = continuous(x) @ "c"
        return discrete(a) @ "d"

    @gen
    def batched(x: Any) -> Any:
        v = normal(x + mx.arange(3, dtype=mx.float32), 1.0) @ "v"
        return mx.sum(v)

    return {
        "deterministic": deterministic,
        "discrete": discrete,
        "continuous": continuous,
        "nested": nested,
        "batched": batched,
    }


def kernel_family() -> dict[str, CountingKernel]:
    """Fresh counting instances of the kernel family (see the module docstring)."""
    return {name: CountingKernel(gf, name) for name, gf in _family_bodies().items()}


def _fresh(x: Any) -> Any:
    """An equal value that is a new object where possible (arrays, tuples, lists)."""
    if isinstance(x, mx.array):
        return mx.array(x)
    if isinstance(x, tuple):
        return tuple(_fresh(v) for v in x)
    if isinstance(x, list):
        return [_fresh(v) for v in x]
    return x


def check_incremental_update(
    gen_fn: GenerativeFunction,
    args: tuple[Any, ...],
    key: mx.array,
    counter: CountingKernel | None = None,
) -> None:
    """The incremental-update law (see the module docstring); raises ``AssertionError``."""
    k1, k2, k3 = mx.random.split(key, 3)
    tr = gen_fn.simulate(args, key=k1)
    same = _fresh(args)
    nochange = tuple(NoChange for _ in args)
    before = counter.total if counter is not None else 0
    new, w, retdiff, discard = gen_fn.update(tr, ChoiceMap.empty(), same, nochange, key=k2)
    if counter is not None and counter.total != before:
        ran = dict(counter.calls)
        raise AssertionError(
            "incremental_update: update with NoChange argdiffs and no constraints called "
            f"the kernel {counter.total - before} time(s) (calls so far: {ran}); it must "
            "re-run nothing"
        )
    assert_close(w, 0.0, "incremental_update: weight", atol=0.0)
    assert_same_choices(new.get_choices(), tr.get_choices(), "incremental_update: choices")
    assert_close(new.score, tr.score, "incremental_update: score", atol=0.0)
    if not discard.is_empty:
        raise AssertionError(f"incremental_update: discard should be empty, got {discard}")
    if not retdiff.is_no_change():
        raise AssertionError(f"incremental_update: retdiff should be NoChange, got {retdiff}")
    before = counter.total if counter is not None else 0
    reg, wr, rd = gen_fn.regenerate(tr, Selection.none(), _fresh(args), nochange, key=k3)
    if counter is not None and counter.total != before:
        raise AssertionError(
            "incremental_update: regenerate of the empty selection with NoChange argdiffs "
            f"called the kernel {counter.total - before} time(s); it must re-run nothing"
        )
    assert_close(wr, 0.0, "incremental_update: regenerate weight", atol=0.0)
    assert_same_choices(reg.get_choices(), tr.get_choices(), "incremental_update: regenerate")
    if not rd.is_no_change():
        raise AssertionError(f"incremental_update: regenerate retdiff should be NoChange, got {rd}")


def _check_example(
    report: KitReport,
    label: str,
    gf: GenerativeFunction,
    args: tuple[Any, ...],
    counter: CountingKernel | None,
    max_examples: int,
    batched: bool,
    checks: Sequence[str],
) -> None:
    if not isinstance(gf, GenerativeFunction):
        report.results.append(
            CheckResult(label, False, f"the builder returned {gf!r}, not a generative function")
        )
        return
    if "gfi_laws" in checks:

        def laws() -> CheckResult:
            check_gfi_laws(gf, args, max_examples=max_examples, batched=False)
            what = f"{len(GFI_LAWS)} laws × {max_examples} keys"
            return CheckResult(f"gfi_laws[{label}]", True, what)

        report.run(f"gfi_laws[{label}]", laws)
    if "batched_laws" in checks:
        if batched and getattr(gf, "conformance_batched", True):

            def blaws() -> CheckResult:
                for seed in range(max(1, min(max_examples, 2))):
                    for law in BATCHED_LAWS.values():
                        law(gf, args, mx.random.key(seed))
                return CheckResult(f"batched_laws[{label}]", True, ", ".join(BATCHED_LAWS))

            report.run(f"batched_laws[{label}]", blaws)
        else:
            report.notes.append(f"batched laws skipped for {label} (conformance_batched=False)")
    if "incremental_update" in checks:

        def incr() -> CheckResult:
            check_incremental_update(gf, args, mx.random.key(7), counter)
            what = "kernel not called" if counter is not None else "weights and choices kept"
            return CheckResult(f"incremental_update[{label}]", True, what)

        report.run(f"incremental_update[{label}]", incr)


def check_combinator(
    build: Builder | None = None,
    *,
    name: str | None = None,
    examples: Callable[[], Sequence[Example]] | Sequence[Example] | None = None,
    kernels: Sequence[str] | None = None,
    checks: Sequence[str] | None = None,
    max_examples: int = 3,
    batched: bool = True,
    raise_on_failure: bool = True,
) -> KitReport:
    """Run the combinator kit.

    Args:
        build: ``build(kernel) -> [(gen_fn, args), ...]``: the combinator around one
            kernel of the family, with arguments (see the module docstring).
        name: the combinator's name in the report.
        examples: fixed ``[(gen_fn, args), ...]`` (or a callable returning them), e.g.
            the combinator's ``conformance_examples``; checked the same way.
        kernels: a subset of :data:`FAMILY` (default: all).
        checks: a subset of :data:`COMBINATOR_CHECKS` (default: all).
        max_examples: keys per law.
        batched: run the batched laws (turn off for bodies that cannot be batched).
        raise_on_failure: raise ``AssertionError`` with the report on a failure.

    Returns:
        The :class:`~genmlx.core.testing.report.KitReport`.
    """
    if build is None and examples is None:
        raise ValueError("check_combinator: give build= (a kernel builder) and/or examples=")
    wanted = list(COMBINATOR_CHECKS if checks is None else checks)
    unknown = set(wanted) - set(COMBINATOR_CHECKS)
    if unknown:
        raise ValueError(f"check_combinator: unknown checks {sorted(unknown)}")
    family = kernel_family()
    names = list(FAMILY if kernels is None else kernels)
    bad = set(names) - set(FAMILY)
    if bad:
        raise ValueError(f"check_combinator: unknown kernels {sorted(bad)}; known: {FAMILY}")
    report = KitReport("combinator", name or str(getattr(build, "__name__", "combinator")))
    if build is not None:
        for kname in names:
            kernel = family[kname]
            try:
                built = list(build(kernel))
            except Exception as e:
                report.results.append(
                    CheckResult(f"build[{kname}]", False, f"raised {type(e).__name__}: {e}")
                )
                continue
            if not built:
                report.results.append(
                    CheckResult(f"build[{kname}]", False, "the builder returned no examples")
                )
            for j, (gf, args) in enumerate(built):
                label = kname if len(built) == 1 else f"{kname}-{j}"
                _check_example(
                    report, label, gf, tuple(args), kernel, max_examples, batched, wanted
                )
    if examples is not None:
        fixed = list(examples() if callable(examples) else examples)
        for j, (gf, args) in enumerate(fixed):
            _check_example(
                report, f"example-{j}", gf, tuple(args), None, max_examples, batched, wanted
            )
    if raise_on_failure and not report.passed:
        raise AssertionError(str(report))
    return report
