"""The combinator kit: the kernel family, correct combinators pass, broken ones fail.

Core has no combinators of its own, so the combinators here are small ones written
against core's public API: ``twice`` (a ``@gen`` factory) passes every check; a
combinator whose update weight is off, one that re-runs its kernel on a no-change
update and one whose batched runs draw other randomness than single runs must each
fail the check aimed at it.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import pytest

from genmlx.core import NoChange, UnknownChange, gen, runtime
from genmlx.core.dsl import DynamicGenerativeFunction
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.testing import check_combinator, check_gfi_laws
from genmlx.core.testing.combinators import (
    COMBINATOR_CHECKS,
    FAMILY,
    CountingKernel,
    check_incremental_update,
    kernel_family,
)
from genmlx.core.testing.models import two_normals


def twice(kernel: GenerativeFunction) -> GenerativeFunction:
    @gen
    def both(x: Any) -> Any:
        return kernel(x) @ 0, kernel(x) @ 1

    return both


def build_twice(kernel: GenerativeFunction) -> list[tuple[GenerativeFunction, tuple[Any, ...]]]:
    return [(twice(kernel), (mx.array(0.5),))]


class _OffByOne(DynamicGenerativeFunction):
    """BUG: update weights are off by 0.1."""

    def _update(self, trace, constraints, args, argdiffs, key):  # type: ignore[no-untyped-def]
        res = super()._update(trace, constraints, args, argdiffs, key)
        return res._replace(weight=res.weight + 0.1)


class _Eager(DynamicGenerativeFunction):
    """BUG: ignores NoChange argdiffs, so every update re-runs the body (and the kernel)."""

    def _update(self, trace, constraints, args, argdiffs, key):  # type: ignore[no-untyped-def]
        diffs = tuple(UnknownChange for _ in argdiffs)
        return super()._update(trace, constraints, args, diffs, key)

    def _regenerate(self, trace, selection, args, argdiffs, key):  # type: ignore[no-untyped-def]
        diffs = tuple(UnknownChange for _ in argdiffs)
        return super()._regenerate(trace, selection, args, diffs, key)


class _BatchedDiffers(DynamicGenerativeFunction):
    """BUG: under batching (inside mx.vmap) simulate draws with another key."""

    def _simulate(self, args, key):  # type: ignore[no-untyped-def]
        if runtime.in_transform():
            key = mx.random.split(key)[1]
        return super()._simulate(args, key)


def _subclassed(cls: type) -> Any:
    def build(kernel: GenerativeFunction) -> list[tuple[GenerativeFunction, tuple[Any, ...]]]:
        def body(x: Any) -> Any:
            return kernel(x) @ 0, kernel(x + 1.0) @ 1

        return [(cls(body), (mx.array(0.5),))]

    build.__name__ = cls.__name__
    return build


# --------------------------------------------------------------------------- family
def test_counting_kernel_is_transparent_and_counts() -> None:
    k = CountingKernel(two_normals)
    check_gfi_laws(k, (), max_examples=3)
    assert k.calls["simulate"] > 0 and k.calls["update"] > 0 and k.calls["regenerate"] > 0
    tr = k.simulate((), key=mx.random.key(0))
    ref = two_normals.simulate((), key=mx.random.key(0))
    assert float(tr.score) == float(ref.score) and tr.gen_fn is k


@pytest.mark.parametrize("name", FAMILY)
def test_family_kernels_obey_the_gfi_laws(name: str) -> None:
    kernel = kernel_family()[name]
    check_gfi_laws(kernel, (mx.array(0.3),), max_examples=3)
    tr = kernel.simulate((mx.array(0.3),), key=mx.random.key(1))
    assert tr.retval.shape == ()  # a float scalar in, a float scalar out


def test_family_covers_the_kinds_of_kernel() -> None:
    fam = kernel_family()
    x = (mx.array(0.3),)
    addrs = {
        n: [str(a) for a in k.simulate(x, key=mx.random.key(2)).get_choices().addresses()]
        for n, k in fam.items()
    }
    assert addrs["deterministic"] == []
    assert fam["discrete"].simulate(x, key=mx.random.key(2))["b"].dtype == mx.bool_
    assert fam["batched"].simulate(x, key=mx.random.key(2))["v"].shape == (3,)
    assert any("'c'" in a for a in addrs["nested"]) and any("'d'" in a for a in addrs["nested"])


# --------------------------------------------------------------------------- combinators
def test_a_correct_combinator_passes_every_check() -> None:
    report = check_combinator(build_twice, name="twice", max_examples=2)
    checked = {r.name for r in report.results}
    for kernel in FAMILY:
        for check in COMBINATOR_CHECKS:
            assert f"{check}[{kernel}]" in checked


def test_fixed_examples_run_too() -> None:
    cont = kernel_family()["continuous"]
    report = check_combinator(examples=lambda: [(twice(cont), (mx.array(0.5),))], max_examples=1)
    assert {r.name for r in report.results} == {
        "gfi_laws[example-0]",
        "batched_laws[example-0]",
        "incremental_update[example-0]",
    }


def test_wrong_update_weight_is_flagged() -> None:
    report = check_combinator(_subclassed(_OffByOne), max_examples=2, raise_on_failure=False)
    failed = {r.name.split("[")[0] for r in report.failures}
    assert "gfi_laws" in failed
    assert "update_full: weight vs s2 - s1" in str(report) or "update" in str(report)


def test_rerunning_the_kernel_on_a_no_change_update_is_flagged() -> None:
    report = check_combinator(
        _subclassed(_Eager), checks=["incremental_update"], raise_on_failure=False
    )
    assert len(report.failures) == len(FAMILY)
    assert "must re-run nothing" in str(report)


def test_batched_runs_that_differ_from_single_runs_are_flagged() -> None:
    report = check_combinator(
        _subclassed(_BatchedDiffers), checks=["batched_laws"], raise_on_failure=False
    )
    assert "batched_simulate" in str(report)
    # the deterministic kernel draws nothing, so only it passes
    assert {r.name for r in report.failures} == {
        f"batched_laws[{k}]" for k in FAMILY if k != "deterministic"
    }


def test_incremental_law_without_a_counter() -> None:
    check_incremental_update(twice(kernel_family()["batched"]), (mx.array(0.5),), mx.random.key(0))
    k = kernel_family()["continuous"]
    gf = _Eager(lambda x: k(x) @ "a")
    with pytest.raises(AssertionError, match="called the kernel 1 time"):
        check_incremental_update(gf, (mx.array(0.5),), mx.random.key(0), k)
    assert NoChange.is_no_change()


def test_builder_problems_are_reported() -> None:
    r1 = check_combinator(lambda k: 1 / 0, raise_on_failure=False)
    assert "build[deterministic]: raised ZeroDivisionError" in str(r1)
    r2 = check_combinator(lambda k: [], raise_on_failure=False)
    assert "returned no examples" in str(r2)
    r3 = check_combinator(lambda k: [(lambda x: x, (1.0,))], raise_on_failure=False)
    assert "not a generative function" in str(r3)
    with pytest.raises(ValueError, match="give build="):
        check_combinator()
    with pytest.raises(ValueError, match="unknown kernels"):
        check_combinator(build_twice, kernels=["stochastic"])
    with pytest.raises(AssertionError, match="combinator kit: broken"):
        check_combinator(lambda k: 1 / 0, name="broken")


def test_the_pytest_fixture(genmlx_combinator_kit: Any) -> None:
    assert genmlx_combinator_kit(build_twice, kernels=["continuous"], max_examples=1).passed
