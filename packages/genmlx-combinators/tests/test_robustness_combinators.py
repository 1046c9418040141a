"""Robustness of the combinators: Switch update keeps shared values (Gen.jl's
update_recurse_merge), Vmap of a per-element Switch, combinators name themselves and
the offending index, and combinator traces survive pickle and save/load."""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from genmlx.combinators import Map, Mix, Switch, Unfold, Vmap
from genmlx.core import (
    NonFiniteScoreError,
    UnknownChange,
    choicemap,
    compile,
    config,
    gen,
    load,
    save,
    select,
)
from genmlx.core.batching import take_particles
from genmlx.core.testing.models import normal

K = mx.random.key


def lp(x: float, mu: float, sigma: float = 1.0) -> float:
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


@gen
def near():
    return normal(0.0, 1.0) @ "x"


@gen
def far():
    x = normal(5.0, 2.0) @ "x"
    normal(x, 1.0) @ "w"
    return x


@gen
def other():  # same address "x" as near, but a vector: nothing can be kept
    return normal(mx.zeros((2,)), 1.0) @ "x"


SW = Switch(near, far)
SW_SHAPES = Switch(near, other)


@gen
def kernel(i):
    return SW(i) @ "s"


@gen
def picker():
    u = normal(0.0, 1.0) @ "u"
    k = (u > 0).astype(mx.int32)
    return SW(k) @ "s"


@gen
def step_kernel(t, x):
    x = normal(x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


UNFOLD = Unfold(step_kernel)
VMAP = Vmap(kernel)
MAP = Map(kernel)
MIX = Mix(near, far)


# ----------------------------------------------------------------- Switch update merge
def test_switch_update_keeps_the_shared_value_and_the_weight_is_the_score_ratio() -> None:
    tr, _ = SW.generate((0,), {"x": 0.5}, key=K(0))
    new, w, rd, discard = SW.update(tr, None, (1,), (UnknownChange,), key=K(1))
    assert float(new["x"]) == 0.5  # kept, as Gen.jl's update_recurse_merge
    wv = float(new["w"])  # only the new branch has "w": sampled, adds 0
    assert float(w) == pytest.approx(lp(0.5, 5.0, 2.0) - lp(0.5, 0.0), abs=1e-5)
    assert float(new.score) == pytest.approx(lp(0.5, 5.0, 2.0) + lp(wv, 0.5), abs=1e-5)
    assert discard.is_empty and rd is UnknownChange
    # and back: the discard (empty) and the old index restore the old trace; "w" is
    # removed and subtracts its score
    back, w_back, _, d_back = SW.update(new, discard, (0,), (UnknownChange,), key=K(2))
    assert float(back["x"]) == 0.5 and back.get_choices().addresses() == ["x"]
    assert float(w_back) == pytest.approx(lp(0.5, 0.0) - lp(0.5, 5.0, 2.0) - lp(wv, 0.5), 1e-5)
    assert sorted(map(str, d_back.addresses())) == ["w"]


def test_switch_update_constraints_win_and_overwritten_values_are_discarded() -> None:
    tr, _ = SW.generate((1,), {"x": 4.0, "w": 3.0}, key=K(0))
    new, w, _, discard = SW.update(tr, {"x": 1.0}, (0,), (UnknownChange,), key=K(1))
    assert float(new["x"]) == 1.0
    assert float(w) == pytest.approx(lp(1.0, 0.0) - lp(4.0, 5.0, 2.0) - lp(3.0, 4.0), abs=1e-5)
    assert {str(a): float(v) for a, v in discard} == {"x": 4.0, "w": 3.0}
    # reversing with the discard returns exactly, with the opposite weight
    back, w_back, _, _ = SW.update(new, discard, (1,), (UnknownChange,), key=K(2))
    assert float(back["x"]) == 4.0 and float(back["w"]) == 3.0
    assert float(w_back) == pytest.approx(-float(w), abs=1e-5)


def test_switch_update_does_not_reuse_a_value_of_another_shape() -> None:
    tr, _ = SW_SHAPES.generate((0,), {"x": 0.5}, key=K(0))
    new, w, _, discard = SW_SHAPES.update(tr, None, (1,), (UnknownChange,), key=K(1))
    x = np.asarray(new["x"])
    assert x.shape == (2,)
    assert float(w) == pytest.approx(-lp(0.5, 0.0), abs=1e-5)  # fresh: adds 0; removed: −
    assert {str(a): float(v) for a, v in discard} == {"x": 0.5}


def test_batched_switch_update_keeps_shared_values_per_particle() -> None:
    n = 6
    tr = picker.vsimulate((), n, key=K(3))
    flip = choicemap({"u": -tr["u"]}, batch_shape=(n,))  # every particle changes branch
    new, w, _, discard = picker.update(tr, flip, key=K(4))
    x_old, x_new = np.asarray(tr[("s", "x")]), np.asarray(new[("s", "x")])
    assert np.array_equal(x_old, x_new)  # the shared "x" is kept by every particle
    u = np.asarray(tr["u"])
    w_np = np.asarray(w)
    for i in range(n):
        to_far = u[i] <= 0  # the old branch was near
        x = float(x_old[i])
        if to_far:
            want = lp(x, 5.0, 2.0) - lp(x, 0.0)
        else:
            w_old = float(np.asarray(tr[("s", "w")])[i])
            want = lp(x, 0.0) - lp(x, 5.0, 2.0) - lp(w_old, x)
        want += lp(-u[i], 0.0) - lp(u[i], 0.0)
        assert w_np[i] == pytest.approx(want, abs=1e-4), i
        # per particle: far -> near discards "w" (and "u"), near -> far only "u"
        names = sorted(map(str, discard.particle(i).addresses()))
        assert names == (["u"] if to_far else ["('s', 'w')", "u"])


def test_vmap_switch_update_between_branches_with_the_same_choices() -> None:
    idx = mx.array([0, 1, 1, 0, 1], dtype=mx.int32)
    vm_tr = Vmap(Switch(near, near)).simulate((idx,), key=K(5))
    new_idx = 1 - idx
    new, w, _, _ = vm_tr.update(None, (new_idx,), key=K(6))
    assert np.array_equal(np.asarray(new["x"]), np.asarray(vm_tr["x"]))
    assert float(w) == pytest.approx(0.0, abs=1e-6)  # same density in both branches


# ----------------------------------------------------------------- Vmap of a Switch
def test_vmap_update_with_a_per_element_switch_index_matches_map() -> None:
    idx = mx.array([0, 1, 0], dtype=mx.int32)
    new_idx = mx.array([1, 1, 0], dtype=mx.int32)
    vt = VMAP.simulate((idx,), key=K(0))
    mt = MAP.simulate((idx,), key=K(0))
    assert np.array_equal(np.asarray(vt[("s", "x")]), [float(mt[(i, "s", "x")]) for i in range(3)])
    vn, vw, _, vd = vt.update(None, (new_idx,), key=K(1))
    mn, mw, _, md = mt.update(None, (new_idx,), key=K(1))
    # element 0 moved near -> far: its "x" is kept, "w" sampled
    assert float(vn[("s", "x")][0]) == float(vt[("s", "x")][0])
    assert float(vw) == pytest.approx(float(mw), abs=1e-4)
    assert float(vn.score) == pytest.approx(float(mn.score), abs=1e-4)
    # the element masks say which elements have "w" (only those on branch 1)
    assert vn.get_choices().get_mask(("s", "w")).tolist() == [True, True, False]
    # with constraints, per element, like GenJAX's cond/vmap regression test
    cons = choicemap({("s", "x"): mx.array([1.0, 2.0, 3.0])})
    vn2, vw2, _, vd2 = vt.update(cons, (new_idx,), key=K(2))
    assert vn2[("s", "x")].tolist() == [1.0, 2.0, 3.0]
    assert np.array_equal(np.asarray(vd2[("s", "x")]), np.asarray(vt[("s", "x")]))
    assert vd.is_empty and md.is_empty  # nothing overwritten or removed


# ----------------------------------------------------------------- regenerate weights
def test_switch_regenerate_weight_derivation() -> None:
    """regenerate's weight is log p(t')/p(t) − log q(t'|t)/q(t|t') with q the prior
    draws of the selected and the new/removed choices. On a branch change the index is
    an argument, every new choice is drawn from the new branch's prior and every old one
    removed: log p(t') = log q(new), log p(t) = log q(removed), so the weight is 0."""
    tr, _ = SW.generate((0,), {"x": 0.5}, key=K(0))
    new, w, _ = SW.regenerate(tr, select(), (1,), (UnknownChange,), key=K(1))
    log_p_new, log_p_old = float(new.score), float(tr.score)
    log_q_new = float(SW.project(new, select("x", "w")))  # the prior draws of t'
    log_q_removed = float(SW.project(tr, select("x")))  # what is removed from t
    want = (log_p_new - log_p_old) - (log_q_new - log_q_removed)
    assert float(w) == pytest.approx(want, abs=1e-6) and want == pytest.approx(0.0, abs=1e-6)
    # keeping the branch: only unselected kept choices count, new − old
    tr2, _ = SW.generate((1,), {"x": 4.0, "w": 3.0}, key=K(0))
    kept, w2, _ = SW.regenerate(tr2, select("x"), key=K(2))
    x2 = float(kept["x"])
    assert float(w2) == pytest.approx(lp(3.0, x2) - lp(3.0, 4.0), abs=1e-5)


# ----------------------------------------------------------------- errors
def test_switch_index_out_of_range_names_switch_and_index() -> None:
    with pytest.raises(IndexError, match=r"Switch\(near, far\): branch index 2 out of range"):
        SW.simulate((2,), key=K(0))

    @gen
    def model():
        i = (normal(0.0, 1.0) @ "u" > 0).astype(mx.int32) * 3  # 0 or 3 (out of range)
        return SW(i) @ "s"

    with pytest.raises(NonFiniteScoreError, match=r"Switch\(near, far\): branch index \[3"):
        model.vsimulate((), 8, key=K(0))
    # compiled: nothing can raise; the particles with a bad index have a NaN score
    with config.score_checks(False):
        tr = compile(lambda k: model.vsimulate((), 8, key=k))(K(0))
    bad = np.asarray(tr["u"]) > 0
    assert (
        np.isnan(np.asarray(tr.score))[bad].all() and np.isfinite(np.asarray(tr.score))[~bad].all()
    )


@pytest.mark.parametrize("mode", ["eager", "batched", "compiled"])
def test_mix_with_the_wrong_number_of_logits_names_mix(mode: str) -> None:
    args = (mx.zeros((3,)), (), ())
    with pytest.raises(ValueError, match=r"Mix\(near, far\): logits has shape \(3,\).*2 comp"):
        if mode == "eager":
            MIX.simulate(args, key=K(0))
        elif mode == "batched":
            MIX.vsimulate(args, 4, key=K(0))
        else:
            compile(lambda k, lg: MIX.simulate((lg, (), ()), key=k).score)(K(0), args[0])


# ----------------------------------------------------------------- saving
def _traces() -> dict[str, object]:
    st = UNFOLD.vsimulate((3, mx.array(0.0)), 4, key=K(0))
    st2, _, _, _ = UNFOLD.update(st, None, (4, st.args[1]), key=K(1))  # lazy steps
    return {
        "unfold": st2,
        "unfold_one": take_particles(st2, mx.array(2)),
        "switch_batched": picker.vsimulate((), 5, key=K(0)),
        "vmap": VMAP.simulate((mx.array([0, 1, 1], dtype=mx.int32),), key=K(0)),
        "map": MAP.vsimulate((mx.array([0, 1], dtype=mx.int32),), 3, key=K(0)),
        "mix": MIX.simulate((mx.zeros((2,)), (), ()), key=K(0)),
    }


def _same(a: object, b: object) -> None:
    assert b.gen_fn is a.gen_fn  # type: ignore[attr-defined]
    ca = list(a.get_choices().masked_leaves())  # type: ignore[attr-defined]
    cb = list(b.get_choices().masked_leaves())  # type: ignore[attr-defined]
    assert [p for p, _, _ in ca] == [p for p, _, _ in cb]
    for (_, va, ma), (_, vb, mb) in zip(ca, cb):
        assert (ma is None) == (mb is None)
        if ma is not None:  # masked-out entries are placeholders: compare the others
            assert bool(mx.array_equal(ma, mb))
            m = ma.reshape(ma.shape + (1,) * (va.ndim - ma.ndim))
            va, vb = mx.where(m, va, 0), mx.where(m, vb, 0)
        assert bool(mx.array_equal(va, vb))
    assert bool(mx.allclose(a.score, b.score))  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", list(_traces()))
def test_combinator_traces_pickle_deepcopy_and_save(name: str, tmp_path: Path) -> None:
    tr = _traces()[name]
    _same(tr, pickle.loads(pickle.dumps(tr)))
    _same(tr, copy.deepcopy(tr))
    path = tmp_path / f"{name}.safetensors"
    save(path, tr)
    _same(tr, load(path))


def test_unpickled_mix_trace_still_belongs_to_the_mix() -> None:
    tr = MIX.simulate((mx.zeros((2,)), (), ()), key=K(0))
    back = pickle.loads(pickle.dumps(tr))
    cons = {("value", "x"): 0.25}
    w1 = MIX.update(tr, cons, key=K(1)).weight
    w2 = MIX.update(back, cons, key=K(1)).weight
    assert float(w1) == pytest.approx(float(w2), abs=1e-6)
    sub = back.get_subtrace("value")
    assert sub.gen_fn is MIX._switch  # the inner Switch is the Mix's own, not a copy


def test_combinator_update_with_the_wrong_number_of_arguments() -> None:
    idx = mx.array([0, 1], dtype=mx.int32)
    tr = MAP.simulate((idx,), key=K(0))
    with pytest.raises(TypeError, match=r"update on .*Map\(kernel\).*1 argument\(s\) but 2"):
        MAP.update(tr, None, (idx, idx))
    sw = SW.simulate((0,), key=K(0))
    with pytest.raises(TypeError, match=r"regenerate on .*Switch\(near, far\).*but 2"):
        SW.regenerate(sw, select("x"), (0, 1))
