"""The particle filter's compiled path against the interpreted path.

For the same keys, every result of the compiled path (``genmlx.infer._smc_fast``) must
be bit-for-bit the interpreted path's (``static.auto_compile(False)`` turns the compiled
path off): log weights, accumulated log ML, and the batched trace it materialises
(scores, every choice, the return value, each step's arguments). Checked on the HMM and
linear-Gaussian models of ``test_smc`` (whose kernels branch on ``t == 0``), on ``@gen``
models around an ``Unfold`` (with and without choices of their own), on a ``Scan``, for
every resampling scheme, with ESS-triggered resampling, and across the operations that
need a trace (rejuvenation, SMCP3 edits, custom proposals), after which the filter
returns to the compiled path. Kernels the compiled path cannot serve (``t`` used beyond
comparisons, trainable parameters) run on the interpreted path with the same results.
"""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.combinators import Scan, Unfold
from genmlx.core import NonFiniteScoreError, gen, param, select, static
from genmlx.core.diff import NoChange, VectorDiff
from genmlx.dists import categorical, gamma, normal, uniform
from genmlx.infer import mh, particle_filter
from genmlx.infer._smc_fast import FastParticleFilterState, program_stats, refusals
from genmlx.infer.smc import RESAMPLING_METHODS, ParticleFilterState


# ---------------------------------------------------------------------- models
@gen
def hmm_kernel(t: int, z: mx.array, pi: mx.array, a: mx.array, b: mx.array) -> mx.array:
    probs = pi if t == 0 else a[z]
    z = categorical(probs) @ "z"
    categorical(b[z]) @ "y"
    return z


HMM = Unfold(hmm_kernel)
Z0 = mx.array(0)
PI = mx.array([0.6, 0.3, 0.1])
A = mx.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
B = mx.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.1, 0.2, 0.7]])
HMM_YS = [0, 0, 1, 2, 2, 1, 0, 2, 2, 2, 1, 1]

LG_A, LG_Q, LG_R = 0.9, 0.7, 0.5
LG_YS = [0.4, 0.9, 1.6, 1.2, 0.3, -0.5, -0.9, -0.2, 0.6, 1.4]


@gen
def lg_kernel(t: int, x: mx.array) -> mx.array:
    if t == 0:
        x = normal(0.0, 1.0) @ "x"
    else:
        x = normal(LG_A * x, LG_Q) @ "x"
    normal(x, LG_R) @ "y"
    return x


LG = Unfold(lg_kernel)
X0 = mx.array(0.0)


@gen
def lg_wrapped(T: int) -> Any:
    return LG(T, X0) @ "chain"


@gen
def lg_wrapped_own(T: int) -> Any:
    gamma(2.0, 2.0) @ "s"
    normal(0.0, 1.0) @ "z"
    xs = LG(T, X0) @ "chain"
    return xs


def hmm_args(t: int) -> tuple[Any, ...]:
    return (t + 1, Z0, PI, A, B)


# ---------------------------------------------------------------------- helpers
def _run(
    model: Any,
    args_at: Any,
    obs_at: Any,
    n_steps: int,
    n: int,
    key: mx.array,
    *,
    method: str = "systematic",
    ess_frac: float | None = None,
    every: Any = None,
) -> ParticleFilterState:
    keys = mx.random.split(key, 4 * n_steps)
    st = particle_filter(model, args_at(0), obs_at(0), n, key=keys[0])
    for t in range(1, n_steps):
        if ess_frac is None:
            st = st.resample(method, key=keys[4 * t])
        else:
            st = st.maybe_resample(ess_frac * n, method, key=keys[4 * t])
        if every is not None:
            st = every(st, t, keys[4 * t + 1])
        st = st.step(args_at(t), obs_at(t), key=keys[4 * t + 2])
    return st


def _both(*args: Any, **kw: Any) -> tuple[ParticleFilterState, ParticleFilterState]:
    fast = _run(*args, **kw)
    with static.auto_compile(False):
        slow = _run(*args, **kw)
    return fast, slow


def _same(a: Any, b: Any) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    np.testing.assert_array_equal(a, b)


def _tree_leaves(x: Any) -> list[Any]:
    if isinstance(x, (tuple, list)):
        return [leaf for y in x for leaf in _tree_leaves(y)]
    return [x]


def _assert_equal_states(fast: ParticleFilterState, slow: ParticleFilterState) -> None:
    assert type(slow) is ParticleFilterState
    _same(fast.log_weights, slow.log_weights)
    _same(fast.log_ml_accumulated, slow.log_ml_accumulated)
    _same(fast.log_ml_estimate, slow.log_ml_estimate)
    _same(fast.ess(), slow.ess())
    tf, ts = fast.traces, slow.traces
    assert type(tf) is type(ts) and tf.batch_shape == ts.batch_shape
    assert len(tf.args) == len(ts.args)
    for x, y in zip(tf.args, ts.args):
        if isinstance(y, mx.array):
            _same(x, y)
        else:
            assert x == y and type(x) is type(y)
    _same(tf.score, ts.score)
    cf, cs = dict(tf.get_choices().leaves()), dict(ts.get_choices().leaves())
    assert list(cf) == list(cs)
    for path in cf:
        _same(cf[path], cs[path])
    for x, y in zip(_tree_leaves(tf.retval), _tree_leaves(ts.retval)):
        _same(x, y)


def _steps_of(tr: Any) -> Any:
    return tr.get_subtrace("chain").steps if hasattr(tr, "get_subtrace") else tr.steps


# ---------------------------------------------------------------------- equality
@pytest.mark.parametrize("method", RESAMPLING_METHODS)
@pytest.mark.parametrize("ess_frac", [None, 0.5])
def test_hmm_equals_interpreted(method: str, ess_frac: float | None) -> None:
    fast, slow = _both(
        HMM,
        hmm_args,
        lambda t: {(t, "y"): HMM_YS[t]},
        len(HMM_YS),
        200,
        mx.random.key(1),
        method=method,
        ess_frac=ess_frac,
    )
    assert isinstance(fast, FastParticleFilterState)
    _assert_equal_states(fast, slow)
    # each step's kernel trace (arguments, score, choices) as the interpreter has it
    for sf, ss in zip(fast.traces.steps, slow.traces.steps):
        assert sf.args[0] == ss.args[0] and isinstance(sf.args[0], int)
        for x, y in zip(sf.args[1:], ss.args[1:]):
            _same(x, y)
        _same(sf.score, ss.score)


@pytest.mark.parametrize("method", ["systematic", "multinomial"])
@pytest.mark.parametrize("ess_frac", [None, 0.5])
def test_linear_gaussian_equals_interpreted(method: str, ess_frac: float | None) -> None:
    fast, slow = _both(
        LG,
        lambda t: (t + 1, X0),
        lambda t: {(t, "y"): LG_YS[t]},
        len(LG_YS),
        300,
        mx.random.key(2),
        method=method,
        ess_frac=ess_frac,
    )
    assert isinstance(fast, FastParticleFilterState)
    _assert_equal_states(fast, slow)


def test_fresh_equal_arguments_stay_on_the_compiled_path() -> None:
    """A user who builds the initial state anew each step (``mx.array(0.0)``) gets the
    same numbers on the compiled path as one who passes the same object; an init that
    really changed is an ``UnknownChange`` (the interpreted, whole-sequence update)."""
    same = _run(
        LG, lambda t: (t + 1, X0), lambda t: {(t, "y"): LG_YS[t]}, 6, 200, mx.random.key(4)
    )
    fresh = _run(
        LG,
        lambda t: (t + 1, mx.array(float(X0.item()))),
        lambda t: {(t, "y"): LG_YS[t]},
        6,
        200,
        mx.random.key(4),
    )
    assert isinstance(same, FastParticleFilterState)
    assert isinstance(fresh, FastParticleFilterState)
    _same(fresh.log_weights, same.log_weights)
    _same(fresh.log_ml_estimate, same.log_ml_estimate)
    with static.auto_compile(False):
        slow = _run(
            LG, lambda t: (t + 1, X0), lambda t: {(t, "y"): LG_YS[t]}, 6, 200, mx.random.key(4)
        )
    _assert_equal_states(fresh, slow)
    # a changed init is an UnknownChange: the interpreted update re-runs the sequence
    # (this kernel ignores the init at t = 0, so the weights agree all the same)
    st = particle_filter(LG, (1, X0), {(0, "y"): LG_YS[0]}, 200, key=mx.random.key(5))
    moved = st.step((2, mx.array(5.0)), {(1, "y"): LG_YS[1]}, key=mx.random.key(6))
    assert type(moved) is ParticleFilterState
    kept = st.step((2, mx.array(float(X0.item()))), {(1, "y"): LG_YS[1]}, key=mx.random.key(6))
    assert isinstance(kept, FastParticleFilterState)
    _same(moved.log_weights, kept.log_weights)


@pytest.mark.parametrize("model", [lg_wrapped, lg_wrapped_own])
@pytest.mark.parametrize("ess_frac", [None, 0.5])
def test_gen_around_unfold_equals_interpreted(model: Any, ess_frac: float | None) -> None:
    fast, slow = _both(
        model,
        lambda t: (t + 1,),
        lambda t: {("chain", t, "y"): LG_YS[t]},
        len(LG_YS),
        100,
        mx.random.key(3),
        ess_frac=ess_frac,
    )
    assert isinstance(fast, FastParticleFilterState)
    assert fast.__dict__["_core"].outer is not None  # the compiled path ran
    _assert_equal_states(fast, slow)
    # the model's own choices went through the resamplings with their particles
    if model is lg_wrapped_own:
        s = np.asarray(slow.traces["s"])
        _same(fast.traces["s"], s)


@gen
def scan_kernel(c: mx.array, x: mx.array) -> tuple[mx.array, mx.array]:
    c = normal(0.8 * c + x, 1.0) @ "c"
    y = normal(c, 0.5) @ "y"
    return c, y


SCAN = Scan(scan_kernel)
XS = mx.arange(12, dtype=mx.float32) * 0.1


def test_scan_with_vector_diff_equals_interpreted() -> None:
    fast, slow = _both(
        SCAN,
        lambda t: (X0, XS[: t + 1]),
        lambda t: {(t, "y"): LG_YS[t]},
        len(LG_YS),
        100,
        mx.random.key(4),
    )
    # default argdiffs for a new xs are UnknownChange: the interpreter re-runs every
    # step, so the compiled path stays out (same results either way)
    _assert_equal_states(fast, slow)

    def run(key: mx.array) -> ParticleFilterState:
        keys = mx.random.split(key, 30)
        st = particle_filter(SCAN, (X0, XS[:1]), {(0, "y"): LG_YS[0]}, 100, key=keys[0])
        for t in range(1, len(LG_YS)):
            st = st.resample(key=keys[2 * t])
            st = st.step(
                (X0, XS[: t + 1]),
                {(t, "y"): LG_YS[t]},
                argdiffs=(NoChange, VectorDiff(t + 1, t, {})),
                key=keys[2 * t + 1],
            )
        return st

    fast = run(mx.random.key(5))
    with static.auto_compile(False):
        slow = run(mx.random.key(5))
    assert isinstance(fast, FastParticleFilterState)
    _assert_equal_states(fast, slow)


# ---------------------------------------------------------------------- mixed operations
def _rejuvenate(st: ParticleFilterState, t: int, key: mx.array) -> ParticleFilterState:
    return st.rejuvenate(mh, select((t - 1, "x")), key=key)


def test_rejuvenation_between_compiled_steps() -> None:
    fast, slow = _both(
        LG,
        lambda t: (t + 1, X0),
        lambda t: {(t, "y"): LG_YS[t]},
        len(LG_YS),
        100,
        mx.random.key(6),
        every=_rejuvenate,
    )
    assert isinstance(fast, FastParticleFilterState)
    _assert_equal_states(fast, slow)


@gen
def lg_optimal(trace: Any, t: int, y: float) -> None:
    x_prev = trace[(t - 1, "x")]
    prec = 1.0 / LG_Q**2 + 1.0 / LG_R**2
    mean = (LG_A * x_prev / LG_Q**2 + y / LG_R**2) / prec
    normal(mean, 1.0 / math.sqrt(prec)) @ (t, "x")


def _mixed_steps(key: mx.array) -> ParticleFilterState:
    """Bootstrap steps (compiled) with a custom-proposal step (interpreted) every third."""
    keys = mx.random.split(key, 3 * len(LG_YS))
    st = particle_filter(LG, (1, X0), {(0, "y"): LG_YS[0]}, 80, key=keys[0])
    for t in range(1, len(LG_YS)):
        st = st.resample("stratified", key=keys[3 * t])
        y = LG_YS[t]
        if t % 3 == 1:
            st = st.step(
                (t + 1, X0),
                {(t, "y"): y},
                proposal=lg_optimal,
                proposal_args=(t, y),
                key=keys[3 * t + 1],
            )
        else:
            st = st.step((t + 1, X0), {(t, "y"): y}, key=keys[3 * t + 1])
    return st


def test_custom_proposal_steps_between_compiled_steps() -> None:
    fast = _mixed_steps(mx.random.key(7))
    with static.auto_compile(False):
        slow = _mixed_steps(mx.random.key(7))
    assert isinstance(fast, FastParticleFilterState)
    _assert_equal_states(fast, slow)


def test_smcp3_edit_on_a_compiled_state() -> None:
    from genmlx.core.edit import SelectionEdit

    def every(st: ParticleFilterState, t: int, key: mx.array) -> ParticleFilterState:
        return st.edit(SelectionEdit(select((t - 1, "x"))), key=key)

    fast, slow = _both(
        LG,
        lambda t: (t + 1, X0),
        lambda t: {(t, "y"): LG_YS[t]},
        6,
        60,
        mx.random.key(8),
        every=every,
    )
    assert isinstance(fast, FastParticleFilterState)
    _assert_equal_states(fast, slow)


# ---------------------------------------------------------------------- the state
def test_state_protocol() -> None:
    keys = mx.random.split(mx.random.key(9), 4)
    st = particle_filter(LG, (1, X0), {(0, "y"): 0.4}, 32, key=keys[0])
    assert isinstance(st, FastParticleFilterState) and isinstance(st, ParticleFilterState)
    first = st.traces
    assert st.n_particles == 32 and st.traces is first  # the generate trace itself
    st = st.resample(key=keys[1]).step((2, X0), {(1, "y"): 0.9}, key=keys[2])
    with pytest.raises(AttributeError):
        st.log_weights = mx.zeros(32)  # type: ignore[misc]
    traces, lw, acc = st  # tuple unpacking gives the fields
    assert traces.batch_shape == (32,) and lw.shape == (32,) and acc.shape == ()
    assert st[1] is lw and len(st) == 3
    plain = st._replace(log_weights=mx.zeros(32))
    assert type(plain) is ParticleFilterState and plain.traces is st.traces
    assert set(st._asdict()) == {"traces", "log_weights", "log_ml_accumulated"}
    assert "compiled path" in repr(st)
    # rebuilt from its fields (tree unflattening, loading) or pickled: still compiled
    for back in (
        FastParticleFilterState(traces, lw, acc),
        pickle.loads(pickle.dumps(st)),
        copy.deepcopy(st),
    ):
        assert isinstance(back, FastParticleFilterState)
        _same(back.log_weights, lw)
        _same(back.traces.score, traces.score)
        a = back.step((3, X0), {(2, "y"): 0.1}, key=keys[3])
        _same(a.log_weights, st.step((3, X0), {(2, "y"): 0.1}, key=keys[3]).log_weights)
    # a resampling read before the next step runs on its own, once
    rs = st.resample("multinomial", key=keys[3])
    assert "pending" in repr(rs)
    _same(rs.log_weights, mx.zeros(32))
    assert rs.ess().item() == pytest.approx(32.0, rel=1e-5)
    assert rs.log_ml_estimate.item() == pytest.approx(st.log_ml_estimate.item(), abs=1e-4)


def test_off_switch_gives_plain_states() -> None:
    with static.auto_compile(False):
        st = particle_filter(LG, (1, X0), {(0, "y"): 0.4}, 16, key=mx.random.key(0))
        assert type(st) is ParticleFilterState
        st = st.resample(key=mx.random.key(1)).step((2, X0), {(1, "y"): 0.9}, key=mx.random.key(2))
        assert type(st) is ParticleFilterState


COUNT = {"n": 0}


@gen
def counted_kernel(t: int, x: mx.array) -> mx.array:
    COUNT["n"] += 1  # runs whenever the body is executed (traced or interpreted)
    x = normal(x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


def test_the_kernel_body_is_traced_once_for_all_steps() -> None:
    model = Unfold(counted_kernel)
    keys = mx.random.split(mx.random.key(10), 80)
    st = particle_filter(model, (1, X0), {(0, "y"): 0.1}, 50, key=keys[0])
    COUNT["n"] = 0
    per_step = []
    for t in range(1, 30):
        st = st.resample(key=keys[2 * t])
        before = COUNT["n"]
        st = st.step((t + 1, X0), {(t, "y"): 0.1 * t}, key=keys[2 * t + 1])
        per_step.append(COUNT["n"] - before)
    # the first step analyses and traces the kernel; the compiled program does the rest
    assert 1 <= per_step[0] <= 3 and per_step[1:] == [0] * 28, per_step
    assert program_stats(counted_kernel)["compiled_programs"] == 1
    # a second filter of the same shapes reuses the program
    st2 = particle_filter(model, (1, X0), {(0, "y"): 0.1}, 50, key=keys[1])
    COUNT["n"] = 0
    st2.resample(key=keys[2]).step((2, X0), {(1, "y"): 0.3}, key=keys[3])
    assert COUNT["n"] == 0 and program_stats(counted_kernel)["compiled_programs"] == 1


# ---------------------------------------------------------------------- the step index
@gen
def phased_kernel(t: int, x: mx.array) -> mx.array:
    scale = 2.0 if t < 4 else 0.5  # two phases: two programs, chosen by a guard
    x = normal(x, scale) @ "x"
    normal(x, 0.5) @ "y"
    return x


@gen
def drifting_kernel(t: int, x: mx.array) -> mx.array:
    x = normal(x + 0.1 * t, 1.0) @ "x"  # t in arithmetic: specific to one t
    normal(x, 0.5) @ "y"
    return x


@gen
def inner_step(t: int, x: mx.array) -> mx.array:
    return normal(x, 1.0) @ "v"


@gen
def passing_kernel(t: int, x: mx.array) -> mx.array:
    x = inner_step(t, x) @ "inner"  # t handed on to a sub-call
    normal(x, 0.5) @ "y"
    return x


@gen
def param_kernel(t: int, x: mx.array) -> mx.array:
    s = param("s", 1.0)
    x = normal(x, s) @ "x"
    normal(x, 0.5) @ "y"
    return x


@pytest.mark.parametrize(
    ("kernel", "compiled"),
    [
        (phased_kernel, True),
        (drifting_kernel, False),
        (passing_kernel, False),
        (param_kernel, False),
    ],
)
def test_kernels_and_the_step_index(kernel: Any, compiled: bool) -> None:
    model = Unfold(kernel)
    fast, slow = _both(
        model, lambda t: (t + 1, X0), lambda t: {(t, "y"): LG_YS[t]}, 9, 50, mx.random.key(11)
    )
    _assert_equal_states(fast, slow)
    stats = program_stats(kernel)
    if compiled:
        assert stats["compiled_programs"] == 2 and not refusals(kernel)
    else:
        assert stats["compiled_programs"] == 0 and refusals(kernel)


def test_rebinding_a_global_drops_the_programs() -> None:
    global LG_R
    old = LG_R
    fast1, _ = _both(
        LG, lambda t: (t + 1, X0), lambda t: {(t, "y"): LG_YS[t]}, 4, 20, mx.random.key(12)
    )
    try:
        LG_R = 2.0  # a plain float is part of the kernel's code: programs are per value
        fast2, slow2 = _both(
            LG, lambda t: (t + 1, X0), lambda t: {(t, "y"): LG_YS[t]}, 4, 20, mx.random.key(12)
        )
    finally:
        LG_R = old
    _assert_equal_states(fast2, slow2)
    assert not np.array_equal(np.asarray(fast1.log_weights), np.asarray(fast2.log_weights))


EMIT2 = mx.array([[0.9, 0.1], [0.2, 0.8]])


@gen
def global_kernel(t: int, z: mx.array) -> mx.array:
    z = categorical(mx.array([0.5, 0.5])) @ "z"
    categorical(EMIT2[z]) @ "y"
    return z


def test_rebinding_a_global_array_is_seen() -> None:
    global EMIT2
    model = Unfold(global_kernel)
    old = EMIT2

    def run() -> tuple[ParticleFilterState, ParticleFilterState]:
        return _both(
            model, lambda t: (t + 1, Z0), lambda t: {(t, "y"): t % 2}, 5, 40, mx.random.key(13)
        )

    a, _ = run()
    try:
        EMIT2 = mx.array([[0.5, 0.5], [0.5, 0.5]])
        b, slow = run()
    finally:
        EMIT2 = old
    _assert_equal_states(b, slow)
    _same(b.log_weights, mx.zeros(40) + math.log(0.5))
    assert not np.array_equal(np.asarray(a.log_weights), np.asarray(b.log_weights))


# ---------------------------------------------------------------------- scores
@gen
def bad_kernel(t: int, x: mx.array, s: mx.array) -> mx.array:
    x = normal(x, 1.0) @ "x"
    normal(x, s) @ "y"
    return x


def _nan_at_step_4(key: mx.array) -> ParticleFilterState:
    s = mx.array(1.0)
    keys = mx.random.split(key, 10)
    st = particle_filter(Unfold(bad_kernel), (1, X0, s), {(0, "y"): 0.3}, 20, key=keys[0])
    for t in range(1, 5):
        y = float("nan") if t == 4 else 0.3
        st = st.resample(key=keys[2 * t]).step((t + 1, X0, s), {(t, "y"): y}, key=keys[2 * t + 1])
    return st


def test_non_finite_scores_are_reported_when_results_are_read() -> None:
    with static.auto_compile(False):  # the interpreted path raises at the step
        with pytest.raises(NonFiniteScoreError, match=r"\(4, 'y'\)"):
            _nan_at_step_4(mx.random.key(0))
    st = _nan_at_step_4(mx.random.key(0))  # the compiled one reads nothing at a step
    assert isinstance(st, FastParticleFilterState)
    with pytest.raises(NonFiniteScoreError, match=r"step 4, the choice at address \(4, 'y'\)"):
        st.log_ml_estimate  # noqa: B018
    with pytest.raises(NonFiniteScoreError):
        st.traces  # noqa: B018
    # without score checks a NaN weight is still refused: at the step by the interpreted
    # path, when read by the compiled one
    from genmlx.core import config
    from genmlx.infer import DegenerateWeightsError

    with config.score_checks(False):
        with static.auto_compile(False), pytest.raises(DegenerateWeightsError, match="NaN"):
            _nan_at_step_4(mx.random.key(0))
        st = _nan_at_step_4(mx.random.key(0))
        with pytest.raises(DegenerateWeightsError, match="NaN"):
            st.log_ml_estimate  # noqa: B018


# ---------------------------------------------------------------------- dead particles
@gen
def boxed_kernel(t: int, x: mx.array) -> mx.array:
    x = normal(x, 1.0) @ "x"
    uniform(x - 1.0, x + 1.0) @ "y"  # particles farther than 1 from y die (-inf weight)
    return x


BOXED = Unfold(boxed_kernel)
BOXED_YS = [0.3, 0.5, 0.4, 0.9, 1.2, 0.8]


def test_dead_particles_equal_interpreted() -> None:
    fast, slow = _both(
        BOXED, lambda t: (t + 1, X0), lambda t: {(t, "y"): BOXED_YS[t]}, len(BOXED_YS), 200,
        mx.random.key(14), ess_frac=0.5,
    )
    assert isinstance(fast, FastParticleFilterState)
    lw = np.asarray(slow.log_weights)
    assert np.isneginf(lw).any() and not np.isnan(lw).any()  # some dead, none NaN
    _assert_equal_states(fast, slow)


def test_resampling_weights_that_are_all_dead() -> None:
    from genmlx.infer import DegenerateWeightsError

    keys = mx.random.split(mx.random.key(15), 6)
    st = particle_filter(BOXED, (1, X0), {(0, "y"): 0.3}, 100, key=keys[0])
    st = st.resample(key=keys[1]).step((2, X0), {(1, "y"): 100.0}, key=keys[2])  # impossible
    assert isinstance(st, FastParticleFilterState)
    assert st.log_ml_estimate.item() == -math.inf  # a correct estimate: Z = 0
    # the weights were read: resampling them is refused here, as on the interpreted path
    with pytest.raises(DegenerateWeightsError, match="particle filter's weights"):
        st.resample(key=keys[3])
    # not read yet: the resampling runs inside the next compiled step and is reported
    # when the results are read
    st = particle_filter(BOXED, (1, X0), {(0, "y"): 0.3}, 100, key=keys[0])
    st = st.resample(key=keys[1]).step((2, X0), {(1, "y"): 100.0}, key=keys[2])
    st = st.resample(key=keys[3]).step((3, X0), {(2, "y"): 0.2}, key=keys[4])
    with pytest.raises(DegenerateWeightsError, match="no particle of positive weight"):
        st.log_ml_estimate  # noqa: B018
