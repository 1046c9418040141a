"""genmlx.core.compile: compiled and interpreted GFI operations agree, key for key."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import (
    ChoiceMap,
    GenerateResult,
    NoChange,
    Trace,
    UnknownChange,
    UpdateResult,
    choicemap,
    compile,
    gen,
    select,
)
from genmlx.core.testing.models import linear_regression, normal, two_normals

K = mx.random.key
N = 4
TOL = 1e-6


def ln(x: float, mu: float, sigma: float) -> float:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2.0 * math.pi)


@gen
def chain(n):
    mu = normal(0.0, 1.0) @ "mu"
    for i in range(n):
        normal(mu, 2.0) @ ("y", i)
    return mu


@gen
def inner_gf(m):
    return normal(m, 1.0) @ "x"


@gen
def outer_gf():
    m = normal(0.0, 3.0) @ "m"
    return inner_gf(m) @ "sub"


def close(a, b, tol=TOL):
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=tol, atol=tol)


def same_choices(a: ChoiceMap, b: ChoiceMap) -> None:
    la, lb = list(a), list(b)
    assert [x for x, _ in la] == [x for x, _ in lb]
    for (_, u), (_, v) in zip(la, lb):
        assert u.shape == v.shape and u.dtype == v.dtype
        close(u, v)


def same_trace(a: Trace, b: Trace) -> None:
    assert type(a) is type(b)
    assert a.gen_fn is b.gen_fn
    assert a.batch_shape == b.batch_shape
    same_choices(a.get_choices(), b.get_choices())
    close(a.score, b.score)
    close(a.retval, b.retval)


class Counter:
    """Wraps a function and counts how often its Python body runs (i.e. traces)."""

    def __init__(self, wrapped):
        self._wrapped, self.n = wrapped, 0

    def __call__(self, *args):
        self.n += 1
        return self._wrapped(*args)


def test_compiled_simulate_equals_interpreted():
    for gf, args in ((chain, (3,)), (outer_gf, ())):
        fn = lambda key, gf=gf, args=args: gf.simulate(args, key=key)  # noqa: E731
        cfn = compile(fn)
        for seed in (0, 1, 2):
            a = cfn(K(seed))
            b = fn(K(seed))
            assert isinstance(a, Trace)
            same_trace(a, b)
        # scores are the closed form
        a = cfn(K(0))
        if gf is chain:
            mu = a["mu"].item()
            exp = ln(mu, 0, 1) + sum(ln(a[("y", i)].item(), mu, 2) for i in range(3))
            assert a.score.item() == pytest.approx(exp, rel=1e-5, abs=1e-5)


def test_compiled_vsimulate_equals_interpreted():
    fn = lambda key: chain.vsimulate((2,), N, key=key)  # noqa: E731
    a, b = compile(fn)(K(3)), fn(K(3))
    assert a.batch_shape == (N,)
    same_trace(a, b)


def test_compiled_vgenerate_with_array_observations():
    def fn(key, obs):
        return two_normals.vgenerate((), choicemap({"x": obs}), N, key=key)

    cfn = compile(fn)
    for obs in (mx.array(1.0), mx.array(-2.5)):
        a, b = cfn(K(4), obs), fn(K(4), obs)
        assert isinstance(a, GenerateResult)
        same_trace(a.trace, b.trace)
        close(a.weight, b.weight)
        assert a.weight.shape == (N,)
        # the observation is an input, not a constant frozen at the first call
        assert a.trace["x"].tolist() == [obs.item()] * N
        for i in range(N):
            mu = a.trace["mu"][i].item()
            assert a.weight[i].item() == pytest.approx(ln(obs.item(), mu, 1), rel=1e-5, abs=1e-5)


def test_compiled_update_equals_interpreted():
    tr, _ = chain.generate(
        (3,), choicemap({"mu": 0.5, ("y", 0): 1.0, ("y", 1): -1.0, ("y", 2): 2.0}), key=K(0)
    )

    def fn(key, tr, v):
        return chain.update(tr, choicemap({"mu": v}), args=(4,), key=key)

    cfn = compile(fn)
    a, b = cfn(K(5), tr, mx.array(1.0)), fn(K(5), tr, mx.array(1.0))
    assert isinstance(a, UpdateResult)
    same_trace(a.trace, b.trace)
    close(a.weight, b.weight)
    same_choices(a.discard, b.discard)
    assert a.retdiff is UnknownChange and b.retdiff is UnknownChange
    y3 = a.trace[("y", 3)].item()
    expected = (ln(1.0, 0, 1) - ln(0.5, 0, 1)) + sum(
        ln(y, 1.0, 2) - ln(y, 0.5, 2) for y in (1.0, -1.0, 2.0)
    )
    assert a.weight.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert a.trace.score.item() == pytest.approx(
        ln(1.0, 0, 1) + sum(ln(y, 1.0, 2) for y in (1.0, -1.0, 2.0, y3)), rel=1e-5, abs=1e-5
    )
    # constraining mu to its old value: every kept choice contributes 0, y3 is new (0)
    c = cfn(K(5), tr, mx.array(0.5))
    assert c.weight.item() == pytest.approx(0.0, abs=1e-6)
    assert c.retdiff is UnknownChange
    assert c.discard["mu"].item() == 0.5


def test_compiled_update_no_change_returns_static_retdiff():
    tr = chain.simulate((2,), key=K(1))
    cfn = compile(lambda key, tr: chain.update(tr, None, key=key))
    res = cfn(K(2), tr)
    assert res.retdiff is NoChange
    assert res.weight.item() == 0.0
    same_trace(res.trace, tr)


def _mh_loop(key, tr):
    """A small inference loop: several regenerate steps, collecting weights."""
    ws = []
    for k in mx.random.split(key, 3):
        tr, w, _ = two_normals.regenerate(tr, select("mu"), key=k)
        ws.append(w)
    return tr, mx.stack(ws)


@pytest.mark.parametrize("batched", [False, True])
def test_compiled_regenerate_loop_equals_interpreted(batched):
    if batched:
        tr0, _ = two_normals.vgenerate((), {"x": 1.0}, N, key=K(0))
    else:
        tr0, _ = two_normals.generate((), {"x": 1.0}, key=K(0))
    counted = Counter(_mh_loop)
    cfn = compile(counted)
    (ta, wa), (tb, wb) = cfn(K(7), tr0), _mh_loop(K(7), tr0)
    same_trace(ta, tb)
    close(wa, wb)
    assert wa.shape == ((3, N) if batched else (3,))
    # a second call with the same shapes reuses the compiled function
    (tc, wc) = cfn(K(8), tr0)
    assert counted.n == 1
    (td, wd) = _mh_loop(K(8), tr0)
    same_trace(tc, td)
    close(wc, wd)


def test_recompiles_on_new_shapes_only():
    def fn(key, xs):
        return linear_regression.simulate((xs,), key=key)

    counted = Counter(fn)
    cfn = compile(counted)
    x3, x4 = mx.array([0.0, 1.0, 2.0]), mx.array([0.0, 1.0, 2.0, 3.0])
    a = cfn(K(0), x3)
    same_trace(a, fn(K(0), x3))
    assert len(a.get_choices()) == 5
    cfn(K(1), x3 + 1.0)
    assert counted.n == 1
    b = cfn(K(0), x4)
    assert counted.n == 2
    assert len(b.get_choices()) == 6
    same_trace(b, fn(K(0), x4))
    cfn(K(2), x3)
    assert counted.n == 2


def test_static_args_trigger_recompilation():
    def fn(key, n, scale):
        tr = chain.simulate((n,), key=key)
        return tr, tr.score * scale

    counted = Counter(fn)
    cfn = compile(counted)
    t2, s2 = cfn(K(0), 2, 1.0)
    t3, s3 = cfn(K(0), 3, 1.0)
    assert counted.n == 2
    assert len(t2.get_choices()) == 3 and len(t3.get_choices()) == 4
    same_trace(t2, chain.simulate((2,), key=K(0)))
    same_trace(t3, chain.simulate((3,), key=K(0)))
    _, s3b = cfn(K(0), 3, 2.0)  # a new static float value: recompiled, not frozen
    assert counted.n == 3
    close(s3b, 2.0 * s3)
    cfn(K(5), 2, 1.0)
    assert counted.n == 3


def test_compiled_results_rebuild_containers():
    def fn(key):
        tr = two_normals.simulate((), key=key)
        return {"mu": tr["mu"], "pair": (tr.score, "tag"), "choices": tr.get_choices()}

    out = compile(fn)(K(9))
    ref = fn(K(9))
    assert out["pair"][1] == "tag"
    close(out["mu"], ref["mu"])
    close(out["pair"][0], ref["pair"][0])
    same_choices(out["choices"], ref["choices"])


class _Step:
    """A callable object with its own ``fn`` and ``cache`` attributes (ordinary user code)."""

    def __init__(self):
        self.fn = lambda key: two_normals.simulate((), key=key)
        self.cache = {}

    def __call__(self, key):
        return self.fn(key).score * 2.0


def test_compile_of_a_callable_object_with_fn_and_cache_attributes():
    step = _Step()
    cstep = compile(step)
    out = cstep(K(3))
    # compile must call step(key), not step.fn(key), and leave the object's dict alone
    assert isinstance(out, mx.array)
    close(out, 2.0 * two_normals.simulate((), key=K(3)).score)
    assert step.cache == {}
