"""Vmap: vectorised choices, GFI weights against closed forms, batching, errors."""

import math

import mlx.core as mx
import pytest

from genmlx.combinators.vmap import Vmap, VmapTrace
from genmlx.core import choicemap, gen, runtime, select
from genmlx.core.diff import NoChange
from genmlx.core.errors import ConstraintError
from genmlx.core.selection import Selection
from genmlx.core.testing import check_gfi_laws
from genmlx.core.testing.models import normal


def lognormal(x: float, mu: float, sigma: float) -> float:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def f(x: mx.array) -> float:
    return float(x.item())


def close(a: float, b: float, tol: float = 1e-4) -> bool:
    return abs(a - b) <= tol * (1 + abs(b))


@gen
def pair(x, s):
    """a ~ N(x, s); b ~ N(a, 1)."""
    a = normal(x, s) @ "a"
    return normal(a, 1.0) @ "b"


@gen
def leaf(mu):
    return normal(mu, 1.0) @ "z"


@gen
def nested_kernel(x):
    z = leaf(x) @ "in"
    return normal(z, 1.0) @ "y"


VK = Vmap(nested_kernel)


@gen
def nested_model(xs):
    mu = normal(0.0, 1.0) @ "mu"
    return VK(xs + mu) @ "v"


XS = mx.array([0.0, 1.0, 2.0])
V = Vmap(pair, in_axes=(0, None))


def test_simulate_vectorised_layout():
    tr = V.simulate((XS, 2.0), key=mx.random.key(0))
    assert isinstance(tr, VmapTrace)
    cm = tr.get_choices()
    assert sorted(cm.addresses()) == ["a", "b"]
    assert cm["a"].shape == (3,) and tr.retval.shape == (3,)
    a, b = cm["a"].tolist(), cm["b"].tolist()
    expected = sum(lognormal(a[i], i, 2.0) + lognormal(b[i], a[i], 1.0) for i in range(3))
    assert close(f(tr.score), expected)
    assert tr.retval.tolist() == b


def test_assess_and_generate_partial():
    a = [0.5, 1.0, -0.5]
    b = [1.0, 0.0, 2.0]
    full = choicemap({"a": mx.array(a), "b": mx.array(b)})
    ld, rv = V.assess((XS, 2.0), full)
    exp = sum(lognormal(a[i], i, 2.0) + lognormal(b[i], a[i], 1.0) for i in range(3))
    assert close(f(ld), exp)
    assert rv.tolist() == b
    tr, w = V.generate((XS, 2.0), choicemap({"b": mx.array(b)}), key=mx.random.key(1))
    a_new = tr["a"].tolist()
    assert close(f(w), sum(lognormal(b[i], a_new[i], 1.0) for i in range(3)))


def test_update_regenerate_project():
    a = [0.5, 1.0, -0.5]
    b = [1.0, 0.0, 2.0]
    tr, _ = V.generate((XS, 2.0), choicemap({"a": mx.array(a), "b": mx.array(b)}), key=0)
    a2 = [0.0, 0.0, 0.0]
    new, w, rd, disc = V.update(tr, choicemap({"a": mx.array(a2)}), key=1)
    exp = sum(
        lognormal(a2[i], i, 2.0)
        + lognormal(b[i], a2[i], 1.0)
        - lognormal(a[i], i, 2.0)
        - lognormal(b[i], a[i], 1.0)
        for i in range(3)
    )
    assert close(f(w), exp)
    assert disc["a"].tolist() == a and disc.addresses() == ["a"]
    # new argument for the broadcast axis: every element re-scored
    _, w2, _, _ = V.update(tr, None, (XS, 1.0), key=2)
    exp2 = sum(lognormal(a[i], i, 1.0) - lognormal(a[i], i, 2.0) for i in range(3))
    assert close(f(w2), exp2)
    # regenerate "a": weight counts b's change
    reg, w3, _ = V.regenerate(tr, select("a"), key=mx.random.key(3))
    a3 = reg["a"].tolist()
    exp3 = sum(lognormal(b[i], a3[i], 1.0) - lognormal(b[i], a[i], 1.0) for i in range(3))
    assert close(f(w3), exp3)
    _, w4, rd4 = V.regenerate(tr, Selection.none(), key=4)
    assert f(w4) == 0.0 and rd4 is NoChange
    p = V.project(tr, select("b"))
    assert close(f(p), sum(lognormal(b[i], a[i], 1.0) for i in range(3)))


def test_update_with_length_change_replaces_everything():
    v = Vmap(normal)
    tr, _ = v.generate((XS, mx.ones(3)), choicemap({(): mx.array([0.0, 1.0, 2.0])}), key=0)
    ys = [0.5, 0.5]
    new, w, _, disc = v.update(tr, choicemap({(): mx.array(ys)}), (XS[:2], mx.ones(2)), key=1)
    old = sum(lognormal(float(i), float(i), 1.0) for i in range(3))
    assert close(f(w), lognormal(0.5, 0, 1) + lognormal(0.5, 1, 1) - old)
    assert disc.value.tolist() == [0.0, 1.0, 2.0]
    assert new.n == 2


def test_laws():
    check_gfi_laws(V, (XS, 2.0), max_examples=3)
    check_gfi_laws(Vmap(normal), (XS, mx.array([1.0, 2.0, 0.5])), max_examples=3)


def test_laws_nested_model():
    check_gfi_laws(nested_model, (XS,), max_examples=3)


def _same_choices(a, b):
    la, lb = dict(a.leaves()), dict(b.leaves())
    assert sorted(map(repr, la)) == sorted(map(repr, lb))
    for p, v in la.items():
        assert mx.array_equal(v, lb[p]).item(), p


def test_batched_matches_unbatched():
    P = 3
    key = mx.random.key(9)
    k1, k2, k3 = mx.random.split(key, 3)
    obs = choicemap({("v", "y"): mx.array([0.1, 0.2, 0.3])})
    vt, vw = nested_model.vgenerate((XS,), obs, P, key=k1)
    assert vt.get_choices()[("v", "y")].shape == (P, 3)
    keys = mx.random.split(k1, P)
    traces = []
    for i in range(P):
        tr, w = nested_model.generate((XS,), obs, key=keys[i])
        _same_choices(vt.get_choices().particle(i), tr.get_choices())
        assert close(f(vw[i]), f(w))
        traces.append(tr)
    cons = choicemap({("v", "in", "z"): mx.array([0.0, 0.0, 0.0])})
    vnew, vw2, _, _ = nested_model.update(vt, cons, key=k2)
    keys2 = mx.random.split(k2, P)
    for i in range(P):
        new, w, _, _ = nested_model.update(traces[i], cons, key=keys2[i])
        _same_choices(vnew.get_choices().particle(i), new.get_choices())
        assert close(f(vw2[i]), f(w))
    vreg, vw3, _ = nested_model.regenerate(vt, select(("v", "in")), key=k3)
    keys3 = mx.random.split(k3, P)
    for i in range(P):
        reg, w, _ = nested_model.regenerate(traces[i], select(("v", "in")), key=keys3[i])
        _same_choices(vreg.get_choices().particle(i), reg.get_choices())
        assert close(f(vw3[i]), f(w))


@gen
def bad_kernel(x):
    normal(x, 1.0) @ "y"
    raise RuntimeError("kernel failed")


def test_kernel_exception_leaves_no_active_run():
    with pytest.raises(RuntimeError, match="kernel failed"):
        Vmap(bad_kernel).simulate((XS,), key=0)
    assert runtime.active_run() is None


def test_errors():
    with pytest.raises(ValueError, match="in_axes"):
        Vmap(pair, in_axes=1)
    with pytest.raises(ValueError, match="in_axes has 1 entries"):
        Vmap(pair, in_axes=(0,)).simulate((XS, 1.0), key=0)
    with pytest.raises(ValueError, match="argument 1 has leading length 2"):
        Vmap(pair).simulate((XS, mx.ones(2)), key=0)
    with pytest.raises(ValueError, match="Repeat"):
        Vmap(pair, in_axes=None).simulate((1.0, 1.0), key=0)
    with pytest.raises(ConstraintError, match="'a'"):
        V.generate((XS, 1.0), choicemap({"a": mx.ones(2)}), key=0)
    with pytest.raises(ConstraintError):
        V.generate((XS, 1.0), choicemap({"nope": mx.ones(3)}), key=0)
