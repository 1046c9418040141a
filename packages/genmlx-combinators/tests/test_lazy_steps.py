"""Lazy particle data in sequence traces: the same numbers as a plain flatten, at O(1) cost.

A batched Unfold/Scan trace keeps its old steps frozen (``FrozenSteps``): batched
operations do not pass them through ``mx.vmap`` and resampling records an ancestor map
instead of gathering them. These tests run the same particle-filter-like sequence of
operations (extend, resample, rejuvenate an old or the last step, update an old
step) with lazy particle data on and off and require bit-identical results, and check
that the work a batched step hands to ``mx.vmap`` does not grow with the trace length.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.combinators.scan import Scan
from genmlx.combinators.step_store import FrozenSteps
from genmlx.combinators.unfold import Unfold
from genmlx.core import NoChange, VectorDiff, choicemap, config, gen, select
from genmlx.core.batching import take_particles, where_particles
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.testing.models import normal
from genmlx.core.trace import Trace
from genmlx.core.tree import evaluate, flatten

N = 16


@gen
def kernel(t: int, x: mx.array) -> mx.array:
    x = normal(0.9 * x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


@gen
def scan_kernel(level: mx.array, u: mx.array) -> tuple[mx.array, mx.array]:
    level = normal(level + u, 1.0) @ "level"
    y = normal(level, 0.5) @ "y"
    return level, y


X0 = mx.array(0.0)


def _leaves(cm: Any) -> dict[Any, np.ndarray]:
    return {p: np.asarray(v) for p, v in cm.leaves()}


def _run(model: GenerativeFunction, t_max: int, seed: int, ops: str) -> list[Any]:
    """A filter-like run; returns every number it produced (for exact comparison)."""
    keys = mx.random.split(mx.random.key(seed), 4 * t_max + 4)
    out: list[Any] = []
    is_scan = isinstance(model, Scan)

    def args(t: int) -> tuple[Any, ...]:
        return (X0, mx.arange(t, dtype=mx.float32) * 0.1) if is_scan else (t, X0)

    tr, w = model.vgenerate(args(1), choicemap({(0, "y"): 0.3}), N, key=keys[0])
    out += [w]
    for t in range(1, t_max):
        idx = mx.random.randint(0, N, (N,), key=keys[4 * t])
        tr = take_particles(tr, idx)
        argdiffs = (NoChange, VectorDiff(t + 1, t, {})) if is_scan else (NoChange, NoChange)
        tr, w, _, _ = model.update(
            tr, choicemap({(t, "y"): 0.1 * t}), args(t + 1), argdiffs, key=keys[4 * t + 1]
        )
        out += [w, tr.score]
        if "last" in ops:  # rejuvenate the newest step (an MH-like move)
            addr = (t, "level") if is_scan else (t, "x")
            new, w2, _ = model.regenerate(tr, select(addr), key=keys[4 * t + 2])
            accept = mx.random.bernoulli(0.5, (N,), key=keys[4 * t + 3])
            tr_sel = where_particles(accept, new, tr)
            assert tr_sel is not None
            tr = tr_sel
            out += [w2, tr.score]
        evaluate(tr)
    if "old" in ops:  # touch an old (frozen) step: regenerate and update it
        addr = (2, "level") if is_scan else (2, "x")
        new, w3, _ = model.regenerate(tr, select(addr), key=keys[1])
        out += [w3, new.score, _leaves(new.get_choices())]
        new2, w4, _, disc = model.update(tr, choicemap({addr: 0.25}), key=keys[2])
        out += [w4, new2.score, _leaves(new2.get_choices()), _leaves(disc)]
    out += [
        _leaves(tr.get_choices()),
        tr.score,
        tr.retval,
        take_particles(tr, mx.array(3)).get_choices(),
    ]
    return out


def _assert_same(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, dict):
            assert x.keys() == y.keys()
            for k in x:
                np.testing.assert_array_equal(x[k], y[k], err_msg=str(k))
        elif isinstance(x, tuple):
            for u, v in zip(x, y):
                np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
        elif isinstance(x, mx.array):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:  # a choice map of one particle
            _assert_same([_leaves(x)], [_leaves(y)])


@pytest.mark.parametrize("make", [lambda: Unfold(kernel), lambda: Scan(scan_kernel)])
@pytest.mark.parametrize("ops", ["", "last", "last+old"])
def test_lazy_steps_give_the_plain_numbers_exactly(make: Any, ops: str) -> None:
    model = make()
    lazy = _run(model, 12, seed=3, ops=ops)
    with config.lazy_particles(False):
        plain = _run(model, 12, seed=3, ops=ops)
    _assert_same(lazy, plain)


def _vmap_leaves(tr: Trace) -> int:
    return len(flatten(tr, freeze=True)[0])


def test_a_batched_step_hands_vmap_the_same_work_at_every_length() -> None:
    model = Unfold(kernel)
    tr, _ = model.vgenerate((1, X0), choicemap({(0, "y"): 0.3}), N, key=mx.random.key(0))
    counts = []
    for t in range(1, 60):
        tr = take_particles(tr, mx.arange(N)[::-1])
        tr, _, _, _ = model.update(
            tr, choicemap({(t, "y"): 0.0}), (t + 1, X0), (NoChange, NoChange), key=mx.random.key(t)
        )
        counts.append(_vmap_leaves(tr))
    assert counts[5] == counts[-1]  # the frozen prefix yields no leaves
    with config.lazy_particles(False):  # a plain flatten grows with the length
        assert _vmap_leaves(tr) > 50 * counts[-1] // 2


def test_resampling_records_an_ancestor_map_and_reads_compose_it() -> None:
    model = Unfold(kernel)
    tr = model.vsimulate((5, X0), 4, key=mx.random.key(1))
    before = np.asarray(tr.retval)  # [4, 5]
    idx1, idx2 = mx.array([3, 3, 0, 1]), mx.array([1, 0, 2, 2])
    tr2 = take_particles(take_particles(tr, idx1), idx2)
    steps = tr2.steps
    assert isinstance(steps.frozen, FrozenSteps)  # type: ignore[attr-defined]
    want = before[np.asarray(idx1)][np.asarray(idx2)]
    np.testing.assert_array_equal(np.asarray(tr2.retval), want)
    np.testing.assert_array_equal(np.asarray(tr2[(1, "x")]), want[:, 1])
    one = take_particles(tr2, mx.array(2))  # one particle: an unbatched trace
    np.testing.assert_array_equal(np.asarray(one.retval), want[2])


def test_a_model_raising_inside_a_batched_step_leaves_no_registration() -> None:
    from genmlx.core.batching import particle_index

    @gen
    def bad(t: int, x: mx.array) -> mx.array:
        x = normal(x, 1.0) @ "x"
        if t == 3:
            raise RuntimeError("boom")
        return x

    model = Unfold(bad)
    tr = model.vsimulate((3, X0), 4, key=mx.random.key(0))
    tr = take_particles(tr, mx.array([0, 0, 1, 1]))
    frozen = tr.steps.frozen  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="boom"):
        model.update(tr, choicemap(), (4, X0), (NoChange, NoChange), key=mx.random.key(1))
    assert particle_index(frozen._opaque_key) is None
