"""The GFI laws every generative function must satisfy, checkable on any of them.

Each law is a function ``law(gen_fn, args, key)`` that raises ``AssertionError`` with
a message naming the law and the numbers when it fails. :func:`check_gfi_laws` runs
them all for many keys drawn by hypothesis (derandomised, so a failure reproduces).

The laws (``t ~ simulate``, ``c`` its choices, ``s`` its score):

* ``simulate_assess`` — ``assess(args, c).log_density == s`` and the same return value.
* ``generate_full`` — ``generate(args, c)`` has weight ``s`` and score ``s``.
* ``generate_empty`` — ``generate(args, {})`` has weight 0.
* ``propose_assess`` — ``propose`` returns ``(c', w, r)`` with ``assess(c') == w``.
* ``update_noop`` — ``update(t)`` with nothing changed has weight 0 and keeps ``c``.
* ``update_full`` — updating ``t₁`` to all choices of ``t₂`` has weight ``s₂ − s₁``.
* ``update_roundtrip`` — updating back with the discard negates the weight.
* ``regenerate_none`` / ``regenerate_all`` — weight 0 (arguments unchanged).
* ``project_all`` / ``project_none`` — ``s`` and 0.
* ``edit_roundtrip`` — a ConstraintEdit's backward request undoes it.
* ``static_equivalence`` — for a static ``@gen`` model, the compiled tier (compiled
  batched operations, dependency-aware update/regenerate, the log density) gives the
  interpreter's numbers.
* ``batched_simulate`` — particle ``i`` of ``vsimulate(args, n, key)`` equals
  ``simulate(args, key=split(key, n)[i])``.
* ``batched_generate`` — ``vgenerate`` with per-particle full constraints has weights
  equal to the particles' scores.
* ``batched_update`` — updating batched ``t₁`` to the choices of batched ``t₂`` has
  per-particle weights ``s₂ − s₁`` and the discard undoes it; regenerating every
  choice of a batched trace has weight 0 and each particle's score equals ``assess``.

Example:
    >>> from genmlx.core.testing import check_gfi_laws
    >>> from genmlx.core.testing.models import two_normals
    >>> check_gfi_laws(two_normals, (), max_examples=3)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core.choicemap import ChoiceMap
from genmlx.core.edit import ConstraintEdit
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace
from genmlx.core.tree import flatten

__all__ = ["BATCHED_LAWS", "GFI_LAWS", "check_gfi_laws", "check_gfi_laws_at"]

Law = Callable[[GenerativeFunction, tuple[Any, ...], mx.array], None]

RTOL = 1e-5
ATOL = 1e-4


def _np(x: Any) -> np.ndarray:
    return np.asarray(x.astype(mx.float32) if isinstance(x, mx.array) else x, dtype=np.float64)


def assert_close(
    actual: Any, expected: Any, what: str, rtol: float = RTOL, atol: float = ATOL
) -> None:
    """Assert two arrays agree to ``atol + rtol * |expected|`` (NaN ≠ anything)."""
    a, e = _np(actual), _np(expected)
    ok = np.all(np.isclose(a, e, rtol=rtol, atol=atol)) and a.shape == e.shape
    if not ok:
        raise AssertionError(f"{what}: got {a}, expected {e} (rtol={rtol}, atol={atol})")


def assert_same_choices(a: ChoiceMap, b: ChoiceMap, what: str) -> None:
    """Assert two choice maps have the same addresses and (close) values.

    Masked leaves (unbatched maps only) count where their mask is True.
    """
    a = a.unmasked() if a.is_masked else a
    b = b.unmasked() if b.is_masked else b
    pa = [p for p, _ in a.leaves()]
    pb = [p for p, _ in b.leaves()]
    if sorted(map(repr, pa)) != sorted(map(repr, pb)):
        raise AssertionError(f"{what}: addresses differ: {pa} vs {pb}")
    for p, v in a.leaves():
        assert_close(v, b[p if len(p) != 1 else p[0]] if p else b.value, f"{what} at {p}")


def _retvals_close(a: Any, b: Any, what: str) -> None:
    la, ta = flatten(a)
    lb, tb = flatten(b)
    if len(la) != len(lb):
        raise AssertionError(f"{what}: return values have different structure")
    for x, y in zip(la, lb):
        assert_close(x, y, what)


def _two_keys(key: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    ks = mx.random.split(key, 3)
    return ks[0], ks[1], ks[2]


def simulate_assess(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    tr = gf.simulate(args, key=key)
    ld, rv = gf.assess(args, tr.get_choices())
    assert_close(ld, tr.score, "simulate_assess: assess(choices) vs trace score")
    _retvals_close(rv, tr.retval, "simulate_assess: return value")


def generate_full(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    k1, k2, _ = _two_keys(key)
    tr = gf.simulate(args, key=k1)
    tr2, w = gf.generate(args, tr.get_choices(), key=k2)
    assert_close(w, tr.score, "generate_full: weight vs score")
    assert_close(tr2.score, tr.score, "generate_full: new score vs score")
    assert_same_choices(tr2.get_choices(), tr.get_choices(), "generate_full: choices")


def generate_empty(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    _, w = gf.generate(args, ChoiceMap.empty(), key=key)
    assert_close(w, 0.0, "generate_empty: weight", atol=0.0)


def propose_assess(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    choices, w, rv = gf.propose(args, key=key)
    ld, rv2 = gf.assess(args, choices)
    assert_close(ld, w, "propose_assess: assess(proposed choices) vs propose weight")
    _retvals_close(rv2, rv, "propose_assess: return value")


def update_noop(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    k1, k2, _ = _two_keys(key)
    tr = gf.simulate(args, key=k1)
    new, w, _, discard = gf.update(tr, ChoiceMap.empty(), key=k2)
    assert_close(w, 0.0, "update_noop: weight", atol=0.0)
    assert_same_choices(new.get_choices(), tr.get_choices(), "update_noop: choices")
    if not discard.is_empty:
        raise AssertionError(f"update_noop: discard should be empty, got {discard}")


def update_full(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    k1, k2, k3 = _two_keys(key)
    t1 = gf.simulate(args, key=k1)
    t2 = gf.simulate(args, key=k2)
    new, w, _, _ = gf.update(t1, t2.get_choices(), key=k3)
    assert_close(w, t2.score - t1.score, "update_full: weight vs s2 - s1")
    assert_close(new.score, t2.score, "update_full: new score vs s2")


def update_roundtrip(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    k1, k2, k3 = _two_keys(key)
    t1 = gf.simulate(args, key=k1)
    t2 = gf.simulate(args, key=k2)
    new, w, _, discard = gf.update(t1, t2.get_choices(), key=k3)
    back, w2, _, _ = gf.update(new, discard, key=k3)
    assert_close(w2, -w, "update_roundtrip: backward weight vs -forward weight")
    assert_close(back.score, t1.score, "update_roundtrip: restored score")
    assert_same_choices(back.get_choices(), t1.get_choices(), "update_roundtrip: choices")


def regenerate_none(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    k1, k2, _ = _two_keys(key)
    tr = gf.simulate(args, key=k1)
    new, w, _ = gf.regenerate(tr, Selection.none(), key=k2)
    assert_close(w, 0.0, "regenerate_none: weight", atol=0.0)
    assert_same_choices(new.get_choices(), tr.get_choices(), "regenerate_none: choices")


def regenerate_all(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    k1, k2, _ = _two_keys(key)
    tr = gf.simulate(args, key=k1)
    new, w, _ = gf.regenerate(tr, Selection.all(), key=k2)
    assert_close(w, 0.0, "regenerate_all: weight")
    ld, _ = gf.assess(args, new.get_choices())
    assert_close(new.score, ld, "regenerate_all: new score vs assess")


def project_all_none(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    tr = gf.simulate(args, key=key)
    assert_close(gf.project(tr, Selection.all()), tr.score, "project_all: vs score")
    assert_close(gf.project(tr, Selection.none()), 0.0, "project_none", atol=0.0)


def edit_roundtrip(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    k1, k2, k3 = _two_keys(key)
    t1 = gf.simulate(args, key=k1)
    t2 = gf.simulate(args, key=k2)
    new, w, _, back = gf.edit(t1, ConstraintEdit(t2.get_choices()), key=k3)
    restored, w2, _, _ = gf.edit(new, back, key=k3)
    assert_close(w + w2, 0.0, "edit_roundtrip: forward + backward weight")
    assert_same_choices(restored.get_choices(), t1.get_choices(), "edit_roundtrip: choices")


def _particle(tr: Trace, i: int) -> ChoiceMap:
    return tr.get_choices().particle(i)


def batched_simulate(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    n = 3
    vt = gf.vsimulate(args, n, key=key)
    if vt.batch_shape != (n,):
        raise AssertionError(f"batched_simulate: batch_shape {vt.batch_shape} != ({n},)")
    keys = mx.random.split(key, n)
    for i in range(n):
        tr = gf.simulate(args, key=keys[i])
        assert_same_choices(_particle(vt, i), tr.get_choices(), f"batched_simulate: particle {i}")
        assert_close(vt.score[i], tr.score, f"batched_simulate: score of particle {i}")


def batched_generate(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    n = 3
    k1, k2, _ = _two_keys(key)
    vt = gf.vsimulate(args, n, key=k1)
    tr, w = gf.vgenerate(args, vt.get_choices(), n, key=k2)
    assert_close(w, vt.score, "batched_generate: weights vs particle scores")
    assert_close(tr.score, vt.score, "batched_generate: scores")


def batched_update(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    n = 3
    k1, k2, k3 = _two_keys(key)
    t1 = gf.vsimulate(args, n, key=k1)
    t2 = gf.vsimulate(args, n, key=k2)
    new, w, _, discard = gf.update(t1, t2.get_choices(), key=k3)
    if new.batch_shape != (n,) or tuple(w.shape) != (n,):
        raise AssertionError(
            f"batched_update: batch shape {new.batch_shape}, weight shape {tuple(w.shape)}"
        )
    assert_close(w, t2.score - t1.score, "batched_update: weights vs s2 - s1")
    assert_close(new.score, t2.score, "batched_update: scores vs s2")
    back, w2, _, _ = gf.update(new, discard, key=k3)
    assert_close(w2, -w, "batched_update: backward weights vs -forward")
    assert_close(back.score, t1.score, "batched_update: restored scores")
    reg, wr, _ = gf.regenerate(t1, Selection.all(), key=k3)
    assert_close(wr, mx.zeros((n,)), "batched_update: regenerate-all weights")
    for i in range(n):
        ld, _ = gf.assess(args, reg.get_choices().particle(i))
        assert_close(ld, reg.score[i], f"batched_update: regenerated particle {i} vs assess")


def _same_tree(a: Any, b: Any, what: str) -> None:
    # the structures are compared through the arrays (their number, shapes and values)
    # and the traces' choices: a combinator built inside a body is a new object on every
    # run, so tree definitions holding it differ by identity only
    la, _ = flatten(a)
    lb, _ = flatten(b)
    if len(la) != len(lb) or any(x.shape != y.shape for x, y in zip(la, lb)):
        raise AssertionError(f"{what}: the compiled tier's result has another structure")
    for x, y in ((a, b),) if isinstance(a, Trace) else zip(a, b) if isinstance(a, tuple) else ():
        if isinstance(x, Trace) and isinstance(y, Trace):
            if sorted(map(str, x.get_choices().addresses())) != sorted(
                map(str, y.get_choices().addresses())
            ):
                raise AssertionError(f"{what}: the traces hold different addresses")
    for i, (x, y) in enumerate(zip(la, lb)):
        assert_close(x, y, f"{what}: leaf {i}")


def static_equivalence(gf: GenerativeFunction, args: tuple[Any, ...], key: mx.array) -> None:
    """For an analysable static ``@gen`` model: the compiled tier (compiled batched
    operations, dependency-aware update/regenerate, the log density) gives the
    interpreter's results. Other generative functions pass trivially."""
    from genmlx.core import static
    from genmlx.core.dsl import DynamicGenerativeFunction
    from genmlx.core.graph import analyze
    from genmlx.core.logdensity import StaticModelError, logdensity

    if not isinstance(gf, DynamicGenerativeFunction):
        return
    g = analyze(gf, args)
    if not g.is_static:
        return
    n = 3
    k1, k2, k3 = _two_keys(key)
    t1 = gf.simulate(args, key=k1)
    t2 = gf.simulate(args, key=k2)
    cm2 = t2.get_choices()
    sel = Selection.all() if not cm2.addresses() else _first_selection(cm2)

    def ops() -> list[Any]:
        vt = gf.vsimulate(args, n, key=k1)
        vg = gf.vgenerate(args, vt.get_choices(), n, key=k2)
        vu = gf.update(vt, _batched_like(cm2, n), key=k3)
        vr = gf.regenerate(vt, sel, key=k3)
        u = gf.update(t1, cm2, key=k3)
        r = gf.regenerate(t1, sel, key=k3)
        # retdiffs may differ: the static tier's are more precise (both are valid hints)
        return [vt, vg, (vu[0], vu[1], vu[3]), vr[:2], (u[0], u[1], u[3]), r[:2]]

    with static.auto_compile(False):
        ref = ops()
    with static.auto_compile(True):
        for _ in range(2):  # the second call of a signature compiles it
            ops()
        got = ops()
    names = ["vsimulate", "vgenerate", "vupdate", "vregenerate", "update", "regenerate"]
    for name, a, b in zip(names, got, ref):
        _same_tree(a, b, f"static_equivalence: {name}")
    # the log density (no transform) equals assess, its gradient the choice gradients
    try:
        ld = logdensity(gf, args, transform=False)
    except StaticModelError:
        return
    y = ld.from_choicemap(t1.get_choices())
    assess_all, _ = gf.assess(args, t1.get_choices())
    assert_close(ld(y), assess_all, "static_equivalence: logdensity vs assess")


def _first_selection(cm: ChoiceMap) -> Selection:
    from genmlx.core.selection import select

    return select(cm.addresses()[0])


def _batched_like(cm: ChoiceMap, n: int) -> ChoiceMap:
    return cm.map(lambda v: mx.broadcast_to(v, (n, *v.shape))).with_batch_shape((n,))


GFI_LAWS: dict[str, Law] = {
    "simulate_assess": simulate_assess,
    "generate_full": generate_full,
    "generate_empty": generate_empty,
    "propose_assess": propose_assess,
    "update_noop": update_noop,
    "update_full": update_full,
    "update_roundtrip": update_roundtrip,
    "regenerate_none": regenerate_none,
    "regenerate_all": regenerate_all,
    "project_all_none": project_all_none,
    "edit_roundtrip": edit_roundtrip,
    "static_equivalence": static_equivalence,
}
"""Laws every generative function satisfies."""

BATCHED_LAWS: dict[str, Law] = {
    "batched_simulate": batched_simulate,
    "batched_generate": batched_generate,
    "batched_update": batched_update,
}
"""Laws relating batched and unbatched execution (for bodies without random branching)."""


def check_gfi_laws_at(
    gen_fn: GenerativeFunction,
    args: tuple[Any, ...],
    key: mx.array,
    *,
    batched: bool = True,
) -> list[str]:
    """Check every law for one key; returns the names of the laws checked."""
    laws = dict(GFI_LAWS)
    if batched:
        laws.update(BATCHED_LAWS)
    for law in laws.values():
        law(gen_fn, args, key)
    return list(laws)


def check_gfi_laws(
    gen_fn: GenerativeFunction,
    args: tuple[Any, ...],
    *,
    max_examples: int = 10,
    batched: bool = True,
) -> None:
    """Check the GFI laws for keys drawn by hypothesis.

    Args:
        gen_fn: the generative function under test.
        args: arguments to run it with.
        max_examples: how many keys to try.
        batched: also check batched against unbatched execution (turn off for bodies
            with Python control flow on random values, which cannot be batched).

    Raises:
        AssertionError: the first law that fails, with the seed it failed for (seeds are
            not shrunk: every seed is as simple as any other).
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st


    try:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st
    except ImportError as e:  # an optional extra, so the error says what to install
        raise ImportError(
            'check_gfi_laws draws its cases with hypothesis: pip install "genmlx-core[testing]"'
        ) from e

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(seed=st.integers(min_value=0, max_value=2**31 - 1))
    def run(seed: int) -> None:
        check_gfi_laws_at(gen_fn, args, mx.random.key(seed), batched=batched)

    run()
