"""Map and Repeat: GFI weights against closed forms, incrementality, batching, errors."""

import math

import mlx.core as mx
import pytest

import genmlx.combinators.map as map_module
from genmlx.combinators.map import Map, MapTrace, Repeat
from genmlx.core import choicemap, gen, runtime, select
from genmlx.core.diff import NoChange, UnknownChange, VectorDiff
from genmlx.core.errors import AddressError, ConstraintError
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
def point(x):
    """y ~ N(x, 1)."""
    return normal(x, 1.0) @ "y"


@gen
def pair(x):
    """a ~ N(x, 1); b ~ N(a, 1)."""
    a = normal(x, 1.0) @ "a"
    return normal(a, 1.0) @ "b"


@gen
def leaf(mu):
    return normal(mu, 1.0) @ "z"


@gen
def nested_kernel(x, s):
    """Three levels: Map element -> @gen sub-call -> distribution."""
    z = leaf(x) @ "in"
    return normal(z, s) @ "y"


@gen
def nested_model(xs, ss):
    mu = normal(0.0, 1.0) @ "mu"
    return Map(nested_kernel)(xs + mu, ss) @ "m"


XS = mx.array([0.0, 1.0, 2.0])


# ------------------------------------------------------------------ layout and simulate
def test_simulate_layout_retval_and_score():
    tr = Map(point).simulate((XS,), key=mx.random.key(0))
    assert isinstance(tr, MapTrace)
    assert sorted(map(str, tr.get_choices().addresses())) == ["(0, 'y')", "(1, 'y')", "(2, 'y')"]
    ys = [f(tr[(i, "y")]) for i in range(3)]
    assert tr.retval.shape == (3,)
    assert [f(v) for v in tr.retval] == ys
    expected = sum(lognormal(y, x, 1.0) for y, x in zip(ys, [0.0, 1.0, 2.0]))
    assert close(f(tr.score), expected)


def test_distribution_kernel_and_multiple_arguments():
    tr = Map(normal).simulate((XS, mx.array([1.0, 2.0, 3.0])), key=mx.random.key(1))
    assert sorted(tr.get_choices().addresses()) == [0, 1, 2]
    expected = sum(lognormal(f(tr[i]), i, i + 1.0) for i in range(3))
    assert close(f(tr.score), expected)


# ------------------------------------------------------------------ GFI matrix
def test_assess_closed_form():
    cm = choicemap({(0, "y"): 0.5, (1, "y"): -1.0, (2, "y"): 2.5})
    ld, rv = Map(point).assess((XS,), cm)
    expected = lognormal(0.5, 0, 1) + lognormal(-1.0, 1, 1) + lognormal(2.5, 2, 1)
    assert close(f(ld), expected)
    assert rv.tolist() == [0.5, -1.0, 2.5]


def test_generate_partial_heterogeneous_constraints():
    cm = choicemap({(0, "a"): 0.3, (2, "b"): 1.5})
    tr, w = Map(pair).generate((XS,), cm, key=mx.random.key(2))
    assert f(tr[(0, "a")]) == pytest.approx(0.3)
    assert f(tr[(2, "b")]) == pytest.approx(1.5)
    a2 = f(tr[(2, "a")])
    expected = lognormal(0.3, 0.0, 1.0) + lognormal(1.5, a2, 1.0)
    assert close(f(w), expected)
    vals = {(i, k): f(tr[(i, k)]) for i in range(3) for k in "ab"}
    score = sum(
        lognormal(vals[(i, "a")], float(i), 1) + lognormal(vals[(i, "b")], vals[(i, "a")], 1)
        for i in range(3)
    )
    assert close(f(tr.score), score)


def test_generate_empty_and_full():
    tr = Map(point).simulate((XS,), key=mx.random.key(3))
    _, w0 = Map(point).generate((XS,), None, key=mx.random.key(4))
    assert f(w0) == 0.0
    tr2, w = Map(point).generate((XS,), tr.get_choices(), key=mx.random.key(4))
    assert close(f(w), f(tr.score))


def test_update_one_element():
    m = Map(point)
    tr, _ = m.generate((XS,), choicemap({(i, "y"): float(i) for i in range(3)}), key=0)
    new, w, rd, disc = m.update(tr, choicemap({(1, "y"): 3.0}), key=mx.random.key(5))
    assert close(f(w), lognormal(3.0, 1, 1) - lognormal(1.0, 1, 1))
    assert f(new[(1, "y")]) == 3.0 and f(new[(0, "y")]) == 0.0
    assert disc.addresses() == [(1, "y")] and f(disc[(1, "y")]) == 1.0
    assert isinstance(rd, VectorDiff) and set(rd.updated) == {1}
    assert close(f(new.score), f(tr.score) + f(w))


def test_update_length_increase():
    m = Map(point)
    tr, _ = m.generate((XS,), choicemap({(i, "y"): float(i) for i in range(3)}), key=0)
    xs4 = mx.array([0.0, 1.0, 2.0, 3.0, 4.0])
    diffs = (VectorDiff(5, 3, {}),)
    new, w, rd, disc = m.update(tr, choicemap({(3, "y"): 0.5}), (xs4,), diffs, key=1)
    assert new.n == 5 and new.retval.shape == (5,)
    assert close(f(w), lognormal(0.5, 3.0, 1.0))  # element 4 is sampled: adds 0
    assert disc.is_empty
    assert isinstance(rd, VectorDiff) and (rd.new_length, rd.prev_length) == (5, 3)
    y4 = f(new[(4, "y")])
    assert close(f(new.score), f(tr.score) + lognormal(0.5, 3, 1) + lognormal(y4, 4, 1))


def test_update_length_decrease_discards_removed():
    m = Map(point)
    tr, _ = m.generate((XS,), choicemap({(i, "y"): float(i) + 0.5 for i in range(3)}), key=0)
    new, w, rd, disc = m.update(tr, None, (XS[:1],), (VectorDiff(1, 3, {}),), key=1)
    assert new.n == 1
    assert close(f(w), -(lognormal(1.5, 1, 1) + lognormal(2.5, 2, 1)))
    assert sorted(map(str, disc.addresses())) == ["(1, 'y')", "(2, 'y')"]
    assert f(disc[(2, "y")]) == 2.5
    assert close(f(new.score), lognormal(0.5, 0, 1))
    assert isinstance(rd, VectorDiff) and rd.new_length == 1
    # back again with the discard restores the trace and negates the weight
    back, w2, _, _ = m.update(new, disc, (XS,), (VectorDiff(3, 1, {}),), key=2)
    assert close(f(w2), -f(w))
    assert close(f(back.score), f(tr.score))


def test_update_changed_argument_element():
    m = Map(point)
    tr, _ = m.generate((XS,), choicemap({(i, "y"): float(i) for i in range(3)}), key=0)
    xs2 = mx.array([0.0, 5.0, 2.0])
    new, w, rd, _ = m.update(tr, None, (xs2,), (VectorDiff(3, 3, {1: UnknownChange}),), key=1)
    assert close(f(w), lognormal(1.0, 5.0, 1.0) - lognormal(1.0, 1.0, 1.0))
    assert isinstance(rd, VectorDiff) and set(rd.updated) == {1}
    assert f(new[(1, "y")]) == 1.0


def test_regenerate_closed_form():
    m = Map(pair)
    cm = choicemap({(i, k): 0.25 * i + (k == "b") for i in range(3) for k in "ab"})
    tr, _ = m.generate((XS,), cm, key=0)
    new, w, rd = m.regenerate(tr, select((1, "a")), key=mx.random.key(7))
    a1_new = f(new[(1, "a")])
    assert a1_new != f(tr[(1, "a")])
    b1 = f(tr[(1, "b")])
    expected = lognormal(b1, a1_new, 1.0) - lognormal(b1, f(tr[(1, "a")]), 1.0)
    assert close(f(w), expected)
    for i in (0, 2):
        assert f(new[(i, "a")]) == f(tr[(i, "a")])
    assert isinstance(rd, VectorDiff) and set(rd.updated) <= {1}
    _, w_none, rd_none = m.regenerate(tr, Selection.none(), key=1)
    assert f(w_none) == 0.0 and rd_none is NoChange


def test_project_closed_form():
    cm = choicemap({(0, "y"): 0.5, (1, "y"): -1.0, (2, "y"): 2.5})
    m = Map(point)
    tr, _ = m.generate((XS,), cm, key=0)
    p = m.project(tr, select((0, "y"), 2))
    assert close(f(p), lognormal(0.5, 0, 1) + lognormal(2.5, 2, 1))
    assert f(m.project(tr, Selection.none())) == 0.0


def test_repeat_matrix():
    r = Repeat(point, 3)
    cm = choicemap({(0, "y"): 0.1, (2, "y"): -0.4})
    tr, w = r.generate((1.5,), cm, key=mx.random.key(0))
    assert close(f(w), lognormal(0.1, 1.5, 1) + lognormal(-0.4, 1.5, 1))
    y1 = f(tr[(1, "y")])
    assert close(f(tr.score), f(w) + lognormal(y1, 1.5, 1))
    new, w2, _, disc = r.update(tr, choicemap({(1, "y"): 0.0}), key=1)
    assert close(f(w2), lognormal(0.0, 1.5, 1) - lognormal(y1, 1.5, 1))
    assert f(disc[(1, "y")]) == pytest.approx(y1)
    # changing the shared argument re-runs every call
    _, w3, _, _ = r.update(tr, None, (0.0,), (UnknownChange,), key=2)
    exp = sum(
        lognormal(f(tr[(i, "y")]), 0.0, 1) - lognormal(f(tr[(i, "y")]), 1.5, 1) for i in range(3)
    )
    assert close(f(w3), exp)
    assert close(f(r.project(tr, select(1))), lognormal(y1, 1.5, 1))


# ------------------------------------------------------------------ incrementality
def _count_calls(monkeypatch):
    sizes: list[int] = []
    real = map_module.vmap_call

    def recording(fn, n, batched, shared, **kwargs):
        sizes.append(n)
        return real(fn, n, batched, shared, **kwargs)

    monkeypatch.setattr(map_module, "vmap_call", recording)
    return sizes


def test_update_is_incremental(monkeypatch):
    m = Map(point)
    xs = mx.arange(8).astype(mx.float32)
    tr = m.simulate((xs,), key=0)
    sizes = _count_calls(monkeypatch)
    xs2 = mx.where(mx.arange(8) == 5, 10.0, xs)
    new, w, rd, _ = m.update(tr, None, (xs2,), (VectorDiff(8, 8, {5: UnknownChange}),), key=1)
    assert sizes == [1]
    y5 = f(tr[(5, "y")])
    assert close(f(w), lognormal(y5, 10.0, 1) - lognormal(y5, 5.0, 1))
    sizes.clear()
    m.update(tr, choicemap({(3, "y"): 0.0}), key=2)
    assert sizes == [1]
    sizes.clear()
    m.regenerate(tr, select((6, "y")), key=3)
    assert sizes == [1]
    sizes.clear()
    m.update(tr, None, (mx.arange(10).astype(mx.float32),), (VectorDiff(10, 8, {}),), key=4)
    assert sizes == [2]  # only the two new elements
    sizes.clear()
    m.update(tr, None, (xs2,), (UnknownChange,), key=5)
    assert sizes == [8]


# ------------------------------------------------------------------ laws
def test_laws_map():
    check_gfi_laws(Map(pair), (XS,), max_examples=3)


def test_laws_map_nested_in_model():
    check_gfi_laws(nested_model, (XS, mx.array([1.0, 0.5, 2.0])), max_examples=3)


def test_laws_repeat():
    check_gfi_laws(Repeat(nested_kernel, 3), (0.5, 1.0), max_examples=3)


# ------------------------------------------------------------------ batching exactness
ARGS = (XS, mx.array([1.0, 0.5, 2.0]))
P = 3


def _same_choices(a, b):
    la = dict(a.leaves())
    lb = dict(b.leaves())
    assert sorted(map(repr, la)) == sorted(map(repr, lb))
    for p, v in la.items():
        assert mx.array_equal(v, lb[p]).item(), p


def test_vsimulate_particles_equal_unbatched_runs():
    key = mx.random.key(11)
    vt = nested_model.vsimulate(ARGS, P, key=key)
    keys = mx.random.split(key, P)
    for i in range(P):
        tr = nested_model.simulate(ARGS, key=keys[i])
        _same_choices(vt.get_choices().particle(i), tr.get_choices())
        assert mx.array_equal(vt.score[i], tr.score).item()
        assert mx.allclose(vt.retval[i], tr.retval).item()


def test_vgenerate_and_batched_update_regenerate_match_unbatched():
    key = mx.random.key(12)
    k1, k2, k3 = mx.random.split(key, 3)
    obs = choicemap({("m", 1, "y"): 0.3, ("m", 2, "in", "z"): -0.2})
    vt, vw = nested_model.vgenerate(ARGS, obs, P, key=k1)
    keys1 = mx.random.split(k1, P)
    traces = []
    for i in range(P):
        tr, w = nested_model.generate(ARGS, obs, key=keys1[i])
        _same_choices(vt.get_choices().particle(i), tr.get_choices())
        assert close(f(vw[i]), f(w))
        traces.append(tr)
    # batched update that grows the Map (new elements sampled from per-particle keys)
    args4 = (mx.array([0.0, 1.0, 2.0, 3.0]), mx.array([1.0, 0.5, 2.0, 1.0]))
    cons = choicemap({("m", 0, "y"): 1.0})
    vnew, vw2, _, vdisc = nested_model.update(vt, cons, args4, key=k2)
    keys2 = mx.random.split(k2, P)
    for i in range(P):
        new, w, _, disc = nested_model.update(traces[i], cons, args4, key=keys2[i])
        _same_choices(vnew.get_choices().particle(i), new.get_choices())
        assert close(f(vw2[i]), f(w))
        _same_choices(vdisc.particle(i), disc)
    # batched regenerate of one element
    sel = select(("m", 1, "in"))
    vreg, vw3, _ = nested_model.regenerate(vt, sel, key=k3)
    keys3 = mx.random.split(k3, P)
    for i in range(P):
        reg, w, _ = nested_model.regenerate(traces[i], sel, key=keys3[i])
        _same_choices(vreg.get_choices().particle(i), reg.get_choices())
        assert close(f(vw3[i]), f(w))
    # batched project
    vp = nested_model.project(vt, select(("m", 0)))
    for i in range(P):
        assert close(f(vp[i]), f(nested_model.project(traces[i], select(("m", 0)))))


def test_batched_heterogeneous_constraints_per_particle():
    cm = choicemap(
        {(0, "a"): mx.array([0.1, 0.2]), (2, "b"): mx.array([1.0, 2.0])}, batch_shape=(2,)
    )
    key = mx.random.key(13)
    vt, vw = Map(pair).vgenerate((XS,), cm, 2, key=key)
    keys = mx.random.split(key, 2)
    for i in range(2):
        tr, w = Map(pair).generate((XS,), cm.particle(i), key=keys[i])
        _same_choices(vt.get_choices().particle(i), tr.get_choices())
        assert close(f(vw[i]), f(w))


# ------------------------------------------------------------------ exceptions and errors
@gen
def bad_kernel(x):
    normal(x, 1.0) @ "y"
    raise RuntimeError("kernel failed")


def test_kernel_exception_leaves_no_active_run():
    with pytest.raises(RuntimeError, match="kernel failed"):
        Map(bad_kernel).simulate((XS,), key=0)
    assert runtime.active_run() is None

    @gen
    def outer(xs):
        return Map(bad_kernel)(xs) @ "m"

    with pytest.raises(RuntimeError):
        outer.vsimulate((XS,), 2, key=0)
    assert runtime.active_run() is None


def test_mismatched_lengths_name_the_argument():
    with pytest.raises(ValueError, match="argument 1 has leading length 2"):
        Map(normal).simulate((XS, mx.ones(2)), key=0)
    with pytest.raises(ValueError, match="argument 0"):
        Map(normal).simulate((1.0,), key=0)
    with pytest.raises(ValueError, match="Repeat"):
        Map(normal).simulate((), key=0)


def test_bad_constraint_index():
    with pytest.raises(ConstraintError, match=r"\(5,\)|5"):
        Map(point).generate((XS,), choicemap({(5, "y"): 1.0}), key=0)
    with pytest.raises(ConstraintError, match="'y'"):
        Map(point).generate((XS,), choicemap({"y": 1.0}), key=0)
    m = Map(point)
    tr = m.simulate((XS,), key=0)
    with pytest.raises(ConstraintError):
        m.update(tr, choicemap({(3, "y"): 1.0}), key=0)
    with pytest.raises(ConstraintError, match="element"):
        Map(point).generate((XS,), choicemap({(1, "nope"): 1.0}), key=0)


def test_bad_selection_index():
    m = Map(point)
    tr = m.simulate((XS,), key=0)
    with pytest.raises(AddressError, match=r"\(7, 'y'\)"):
        m.regenerate(tr, select((7, "y")), key=0)
    with pytest.raises(AddressError):
        m.project(tr, select("y"))


def test_repeat_bad_n_and_vectordiff_mismatch():
    with pytest.raises(ValueError, match="positive int"):
        Repeat(point, 0)
    m = Map(point)
    tr = m.simulate((XS,), key=0)
    with pytest.raises(ValueError, match="VectorDiff"):
        m.update(tr, None, (XS,), (VectorDiff(4, 3, {}),), key=0)


def test_update_heterogeneous_constraints_one_call(monkeypatch):
    m = Map(pair)
    cm = choicemap({(i, k): 0.25 * i + (k == "b") for i in range(3) for k in "ab"})
    tr, _ = m.generate((XS,), cm, key=0)
    sizes = _count_calls(monkeypatch)
    new, w, _, disc = m.update(tr, choicemap({(0, "a"): 2.0, (2, "b"): -1.0}), key=1)
    assert sizes == [2]  # elements 0 and 2, one vectorised call
    a0, b0, a2, b2 = 0.0, 1.0, 0.5, 1.5
    exp = (
        lognormal(2.0, 0, 1) + lognormal(b0, 2.0, 1) - lognormal(a0, 0, 1) - lognormal(b0, a0, 1)
    ) + (lognormal(-1.0, a2, 1) - lognormal(b2, a2, 1))
    assert close(f(w), exp)
    assert sorted(map(str, disc.addresses())) == ["(0, 'a')", "(2, 'b')"]
    assert not disc.is_masked
    back, w2, _, _ = m.update(new, disc, key=2)
    assert close(f(w2), -f(w))
    _same_choices(back.get_choices(), tr.get_choices())


def test_map_of_map():
    mm = Map(Map(point))
    xs = mx.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    tr = mm.simulate((xs,), key=0)
    assert tr.retval.shape == (3, 2)
    exp = sum(
        lognormal(f(tr[(i, j, "y")]), float(2 * i + j), 1) for i in range(3) for j in range(2)
    )
    assert close(f(tr.score), exp)
    check_gfi_laws(mm, (xs,), max_examples=2)


def test_assess_missing_element_choice_names_the_element():
    from genmlx.core.errors import MissingChoiceError

    cm = choicemap({(0, "y"): 1.0, (2, "y"): 1.0})
    with pytest.raises(MissingChoiceError, match=r"element\(s\) \[1\]"):
        Map(point).assess((XS,), cm)
