"""ChoiceMap: construction, reading, building, filtering, conversion, trees."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genmlx.core import AddressError, ChoiceMap, Selection, choicemap, select
from genmlx.core.tree import flatten, unflatten

SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _val(x: mx.array) -> object:
    return x.tolist()


def _as_plain(cm: ChoiceMap) -> dict:
    """{address: python value} of a choice map's leaves."""
    return {a: _val(v) for a, v in cm}


# --------------------------------------------------------------------------- construction
def test_from_flat_dict_with_tuple_addresses():
    cm = choicemap({"a": 1.0, ("y", 0): 2.0, ("y", 1): 3.0})
    assert float(cm["a"]) == 1.0
    assert float(cm[("y", 0)]) == 2.0
    assert float(cm[("y", 1)]) == 3.0
    assert len(cm) == 3


def test_from_nested_dict_equals_tuple_addresses():
    nested = choicemap({"a": 1.0, "y": {0: 2.0, 1: {"z": 4.0}}})
    flat = choicemap({"a": 1.0, ("y", 0): 2.0, ("y", 1, "z"): 4.0})
    assert _as_plain(nested) == _as_plain(flat) == {"a": 1.0, ("y", 0): 2.0, ("y", 1, "z"): 4.0}


def test_kwargs_and_mapping_combine():
    cm = choicemap({"x": 1.0, "sub": {"y": 2.0}}, z=3.0)
    assert _as_plain(cm) == {"x": 1.0, ("sub", "y"): 2.0, "z": 3.0}


def test_kwargs_only():
    cm = choicemap(a=1.0, b=2.0)
    assert _as_plain(cm) == {"a": 1.0, "b": 2.0}


def test_choicemap_as_value_becomes_submap():
    inner = choicemap({"u": 5.0, "v": 6.0})
    cm = choicemap({"sub": inner, "w": 7.0})
    assert _as_plain(cm) == {("sub", "u"): 5.0, ("sub", "v"): 6.0, "w": 7.0}


def test_same_address_given_twice_raises_naming_it():
    with pytest.raises(AddressError, match="'a'"):
        choicemap({"a": 1.0}, a=2.0)
    with pytest.raises(AddressError, match="'y' given twice"):
        choicemap({("y", 0): 1.0, "y": {0: 2.0}})
    with pytest.raises(AddressError, match=r"\('y', 0\) given twice"):
        choicemap({"y": {0: 2.0}, ("y", 0): 1.0})


def test_choice_beneath_a_value_raises():
    with pytest.raises(AddressError, match=r"\('y', 0\)"):
        choicemap({"y": 1.0, ("y", 0): 2.0})


def test_choicemap_of_a_choicemap_is_identity_and_rebatches():
    cm = choicemap({"a": mx.array([1.0, 2.0])})
    assert choicemap(cm) is cm
    b = choicemap(cm, batch_shape=(2,))
    assert b.batch_shape == (2,)
    assert cm.batch_shape == ()
    assert b["a"].tolist() == [1.0, 2.0]


def test_invalid_address_component_rejected():
    with pytest.raises(TypeError):
        choicemap({1.5: 1.0})
    with pytest.raises(TypeError):
        choicemap({True: 1.0})
    with pytest.raises(TypeError):
        choicemap({("y", None): 1.0})


def test_invalid_value_rejected():
    with pytest.raises(TypeError, match="mx.array"):
        choicemap({"a": "not a number"})


# --------------------------------------------------------------------------- reading
def test_getitem_get_submap_contains_has_value():
    cm = choicemap({"a": 1.0, ("y", 0): 2.0, ("y", 1): 3.0})
    sub = cm.get_submap("y")
    assert _as_plain(sub) == {0: 2.0, 1: 3.0}
    assert float(sub[1]) == 3.0
    assert "a" in cm and "y" in cm and ("y", 0) in cm
    assert "z" not in cm and ("y", 2) not in cm and ("a", 0) not in cm
    assert [1, 2] not in cm  # an unhashable/invalid address is simply absent
    assert cm.has_value("a") and cm.has_value(("y", 1))
    assert not cm.has_value("y")  # a sub-map, not a value
    assert not cm.has_value("z")
    assert cm.get_submap("missing").is_empty
    assert len(cm.get_submap("missing")) == 0
    assert cm.get("z", 42) == 42
    assert float(cm.get("a")) == 1.0


def test_one_component_tuple_is_the_bare_address():
    cm = choicemap({("a",): 1.0})
    assert float(cm["a"]) == 1.0
    assert list(a for a, _ in cm) == ["a"]


def test_get_submap_keeps_batch_shape():
    cm = choicemap({("y", 0): mx.array([1.0, 2.0, 3.0])}, batch_shape=(3,))
    assert cm.get_submap("y").batch_shape == (3,)
    assert cm.get_submap("nothing").batch_shape == (3,)


def test_missing_value_error_names_address():
    cm = choicemap({"a": 1.0, ("y", 0): 2.0})
    with pytest.raises(AddressError, match="'zz'") as ei:
        cm["zz"]
    assert isinstance(ei.value, KeyError)
    with pytest.raises(AddressError, match=r"\('y', 7\)"):
        cm[("y", 7)]


def test_submap_vs_value_error_names_address():
    cm = choicemap({("y", 0): 2.0})
    with pytest.raises(AddressError, match=r"sub-map, not a value, at 'y'"):
        cm["y"]
    with pytest.raises(AddressError):
        _ = choicemap({"a": 1.0}).value  # root of a map of addresses is not a value


def test_iteration_order_and_address_forms():
    cm = choicemap({"b": 1.0, ("y", 1): 2.0, "a": 3.0, ("y", 0): 4.0, ("q", "r", 2): 5.0})
    # depth-first over the trie, children in first-insertion order
    assert cm.addresses() == ["b", ("y", 1), ("y", 0), "a", ("q", "r", 2)]
    assert [(a, _val(v)) for a, v in cm] == [
        ("b", 1.0),
        (("y", 1), 2.0),
        (("y", 0), 4.0),
        ("a", 3.0),
        (("q", "r", 2), 5.0),
    ]
    # leaves() always gives tuple paths
    assert [p for p, _ in cm.leaves()] == [("b",), ("y", 1), ("y", 0), ("a",), ("q", "r", 2)]
    assert [(c, len(s)) for c, s in cm.items_shallow()] == [("b", 1), ("y", 2), ("a", 1), ("q", 1)]


def test_to_dict():
    cm = choicemap({"a": 1.0, ("y", 0): 2.0, ("y", 1, "z"): 3})
    d = cm.to_dict()
    assert set(d) == {"a", "y"}
    assert float(d["a"]) == 1.0
    assert float(d["y"][0]) == 2.0
    assert int(d["y"][1]["z"]) == 3
    assert ChoiceMap.leaf(4.5).to_dict().item() == 4.5
    assert ChoiceMap.empty().to_dict() == {}


def test_len_and_emptiness():
    assert len(ChoiceMap.empty()) == 0
    assert not ChoiceMap.empty()
    assert ChoiceMap.empty().is_empty
    assert len(ChoiceMap.leaf(1.0)) == 1
    cm = choicemap({"a": 1.0, ("y", 0): 2.0, ("y", 1): 3.0, ("y", 2, "w"): 4.0})
    assert len(cm) == 4
    assert bool(cm)


# --------------------------------------------------------------------------- leaf maps
def test_leaf_map():
    leaf = ChoiceMap.leaf(2.5)
    assert leaf.has_root_value
    assert leaf.value.item() == 2.5
    assert leaf[()].item() == 2.5
    assert [(a, _val(v)) for a, v in leaf] == [((), 2.5)]
    assert [p for p, _ in leaf.leaves()] == [()]
    assert "x" not in leaf
    assert leaf.get_submap("x").is_empty
    with pytest.raises(AddressError, match="'x'"):
        leaf["x"]
    with pytest.raises(AddressError):
        leaf.set("x", 1.0)  # a choice beneath a value
    b = ChoiceMap.leaf(mx.array([1.0, 2.0]), batch_shape=(2,))
    assert b.batch_shape == (2,)


# --------------------------------------------------------------------------- building
def test_set_returns_new_map_and_keeps_original():
    cm = choicemap({"a": 1.0, ("y", 0): 2.0})
    cm2 = cm.set(("y", 1), 5.0).set("a", -1.0)
    assert _as_plain(cm) == {"a": 1.0, ("y", 0): 2.0}
    assert _as_plain(cm2) == {"a": -1.0, ("y", 0): 2.0, ("y", 1): 5.0}
    # replacing a value keeps its position
    assert cm2.addresses() == ["a", ("y", 0), ("y", 1)]
    # a ChoiceMap value replaces the whole sub-map
    cm3 = cm2.set("y", choicemap({"k": 9.0}))
    assert _as_plain(cm3) == {"a": -1.0, ("y", "k"): 9.0}
    # set at the root of an empty map gives a leaf map
    assert ChoiceMap.empty().set((), 3.0).value.item() == 3.0


def test_merge_disjoint():
    a = choicemap({"a": 1.0, ("y", 0): 2.0})
    b = choicemap({"b": 3.0, ("y", 1): 4.0})
    m = a.merge(b)
    assert _as_plain(m) == {"a": 1.0, ("y", 0): 2.0, ("y", 1): 4.0, "b": 3.0}
    assert m.addresses() == ["a", ("y", 0), ("y", 1), "b"]
    assert _as_plain(a | b) == _as_plain(m)
    assert _as_plain(a | ChoiceMap.empty()) == _as_plain(a)
    assert _as_plain(ChoiceMap.empty() | b) == _as_plain(b)
    # operands unchanged
    assert _as_plain(a) == {"a": 1.0, ("y", 0): 2.0}


def test_merge_conflict_names_address():
    a = choicemap({"a": 1.0, ("y", 0): 2.0})
    with pytest.raises(AddressError, match=r"\('y', 0\)"):
        a.merge(choicemap({("y", 0): 5.0}))
    with pytest.raises(AddressError, match="'a'"):
        a | choicemap({"a": 5.0})
    # a value in one map and a sub-map in the other also conflict
    with pytest.raises(AddressError, match="'a'"):
        a | choicemap({("a", 0): 5.0})


def test_merge_keeps_batch_shape():
    a = choicemap({"a": mx.array([1.0, 2.0])}, batch_shape=(2,))
    b = choicemap({"b": mx.array([3.0, 4.0])}, batch_shape=(2,))
    assert (a | b).batch_shape == (2,)
    assert (ChoiceMap.empty() | b).batch_shape == (2,)


def test_map_applies_to_every_leaf():
    cm = choicemap({"a": 1.0, ("y", 0): 2.0})
    assert _as_plain(cm.map(lambda v: v * 10)) == {"a": 10.0, ("y", 0): 20.0}


# --------------------------------------------------------------------------- filter/exclude
def test_filter_and_exclude():
    cm = choicemap({"a": 1.0, ("y", 0): 2.0, ("y", 1): 3.0, "b": 4.0})
    assert _as_plain(cm.filter(select("y"))) == {("y", 0): 2.0, ("y", 1): 3.0}
    assert _as_plain(cm.filter(select(("y", 1), "b"))) == {("y", 1): 3.0, "b": 4.0}
    assert _as_plain(cm.exclude(select("y"))) == {"a": 1.0, "b": 4.0}
    assert _as_plain(cm.exclude(select(("y", 0)))) == {"a": 1.0, ("y", 1): 3.0, "b": 4.0}
    assert _as_plain(cm.filter(Selection.all())) == _as_plain(cm)
    assert len(cm.filter(Selection.none())) == 0
    assert _as_plain(cm.exclude(Selection.none())) == _as_plain(cm)
    assert len(cm.exclude(Selection.all())) == 0
    assert _as_plain(cm.filter(~select("a", "b"))) == {("y", 0): 2.0, ("y", 1): 3.0}
    assert _as_plain(cm.filter(select("a", "y") & select("y"))) == {("y", 0): 2.0, ("y", 1): 3.0}


def test_exclude_keeps_a_leaf_when_the_selection_names_only_paths_beneath_it():
    # ("y",) is not in select(("y", 0)) (only its descendants are), so it is in the
    # complement: exclude must keep the leaf "y" (and filter must drop it).
    s = select(("y", 0))
    assert "y" in ~s
    cm = choicemap({"y": 1.0, "z": 2.0})
    assert _as_plain(cm.filter(s)) == {}
    assert _as_plain(cm.exclude(s)) == {"y": 1.0, "z": 2.0}
    # the same at the root: a leaf map has address (), which ~select("a") contains
    assert _as_plain(ChoiceMap.leaf(1.0).exclude(select("a"))) == {(): 1.0}


# --------------------------------------------------------------------------- conversion
def test_value_conversion_dtypes():
    cm = choicemap({"f": 1.5, "i": 3, "b": True, "l": [1.0, 2.0], "li": [1, 2]})
    assert cm["f"].dtype == mx.float32 and cm["f"].item() == 1.5
    assert cm["i"].dtype == mx.int32 and cm["i"].item() == 3
    assert cm["b"].dtype == mx.bool_ and cm["b"].item() is True
    assert cm["l"].dtype == mx.float32 and cm["l"].tolist() == [1.0, 2.0]
    assert cm["li"].dtype == mx.int32


def test_numpy_value_conversion():
    cm = choicemap(
        {
            "f64": np.float64(2.5),
            "a64": np.array([1.0, 2.0], dtype=np.float64),
            "i64": np.array([1, 2], dtype=np.int64),
            "ni": np.int64(7),
            "nb": np.bool_(False),
        }
    )
    assert cm["f64"].dtype == mx.float32 and cm["f64"].item() == 2.5
    assert cm["a64"].dtype == mx.float32 and cm["a64"].tolist() == [1.0, 2.0]
    assert cm["i64"].dtype == mx.int32 and cm["i64"].tolist() == [1, 2]
    assert cm["ni"].dtype == mx.int32 and cm["ni"].item() == 7
    assert cm["nb"].dtype == mx.bool_ and cm["nb"].item() is False


def test_mlx_values_are_stored_as_is():
    x = mx.array([1, 2], dtype=mx.int16)
    cm = choicemap({"x": x})
    assert cm["x"] is x


# --------------------------------------------------------------------------- immutability
def test_immutable():
    cm = choicemap({"a": 1.0})
    with pytest.raises(AttributeError, match="immutable"):
        cm.batch_shape = (3,)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cm._value = mx.array(1.0)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cm.anything = 1  # type: ignore[attr-defined]
    assert cm.batch_shape == ()
    assert float(cm["a"]) == 1.0


def test_node_cannot_hold_value_and_children():
    with pytest.raises(ValueError):
        ChoiceMap(mx.array(1.0), {"a": ChoiceMap.leaf(1.0)})


def test_repr_names_addresses():
    r = repr(choicemap({"a": 1.0, ("y", 0): 2.0}))
    assert "'a': 1.0" in r and "('y', 0): 2.0" in r
    assert repr(ChoiceMap.leaf(2.0)) == "ChoiceMap.leaf(2.0)"


# --------------------------------------------------------------------------- trees
def test_tree_round_trip_keeps_batch_shape_and_paths():
    cm = choicemap({"a": mx.array([1.0, 2.0]), ("y", 0): mx.array([3.0, 4.0])}, batch_shape=(2,))
    leaves, td = flatten({"cm": cm, "tag": "t"})
    assert len(leaves) == 2
    out = unflatten(td, [x * 2 for x in leaves])
    assert out["tag"] == "t"
    assert out["cm"].batch_shape == (2,)
    assert _as_plain(out["cm"]) == {"a": [2.0, 4.0], ("y", 0): [6.0, 8.0]}
    # a leaf map round-trips as a leaf map
    lv, td2 = flatten(ChoiceMap.leaf(5.0))
    back = unflatten(td2, lv)
    assert back.has_root_value and back.value.item() == 5.0


# --------------------------------------------------------------------------- properties
_component = st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(0, 2))
_path = st.lists(_component, min_size=1, max_size=3).map(tuple)
_value = st.floats(-1e3, 1e3, allow_nan=False, width=32)


def _prefix_free(paths: list[tuple]) -> list[tuple]:
    out: list[tuple] = []
    for p in paths:
        if any(p[: len(q)] == q or q[: len(p)] == p for q in out):
            continue
        out.append(p)
    return out


@st.composite
def _choice_dicts(draw):
    paths = _prefix_free(draw(st.lists(_path, min_size=0, max_size=8)))
    vals = draw(st.lists(_value, min_size=len(paths), max_size=len(paths)))
    return {(p[0] if len(p) == 1 else p): v for p, v in zip(paths, vals)}


@SETTINGS
@given(_choice_dicts())
def test_prop_round_trip_through_iteration(d):
    cm = choicemap(d)
    assert len(cm) == len(d)
    got = {a: v.item() for a, v in cm}
    assert got == d
    # rebuilding from the iteration gives the same map, in the same order
    again = choicemap(dict(cm))
    assert [(a, v.item()) for a, v in again] == [(a, v.item()) for a, v in cm]
    for a, v in d.items():
        assert a in cm and cm.has_value(a) and cm[a].item() == v


@SETTINGS
@given(_choice_dicts(), st.data())
def test_prop_merge_of_disjoint_maps_contains_both(d, data):
    keys = list(d)
    mask = data.draw(st.lists(st.booleans(), min_size=len(keys), max_size=len(keys)))
    left = {k: d[k] for k, m in zip(keys, mask) if m}
    right = {k: d[k] for k, m in zip(keys, mask) if not m}
    merged = choicemap(left) | choicemap(right)
    assert len(merged) == len(d)
    assert {a: v.item() for a, v in merged} == d


@SETTINGS
@given(_choice_dicts(), st.lists(_path, min_size=0, max_size=3))
def test_prop_filter_union_exclude_is_original(d, sel_paths):
    cm = choicemap(d)
    s = select(*sel_paths)
    kept, dropped = cm.filter(s), cm.exclude(s)
    kept_d = {a: v.item() for a, v in kept}
    dropped_d = {a: v.item() for a, v in dropped}
    assert not set(kept_d) & set(dropped_d)
    assert {a: v.item() for a, v in kept | dropped} == d
    for a in d:
        assert (a in kept_d) == (a in s)
        assert (a in dropped_d) == (a in ~s)


@SETTINGS
@given(_choice_dicts())
def test_prop_flatten_unflatten_round_trip(d):
    cm = choicemap(d)
    leaves, td = flatten(cm)
    assert len(leaves) == len(d)
    back = unflatten(td, leaves)
    assert isinstance(back, ChoiceMap)
    assert [(a, v.item()) for a, v in back] == [(a, v.item()) for a, v in cm]
    # same structure ⇒ equal TreeDefs (what the compile cache relies on)
    assert flatten(choicemap(d))[1] == td
    assert all(math.isfinite(x.item()) for x in leaves)


# ---------------------------------------------------------------------------- masks
def test_mask_and_particle() -> None:
    import mlx.core as mx

    from genmlx.core import ChoiceMap, choicemap

    cm = choicemap(
        {"x": mx.array([1.0, 2.0, 3.0]), "y": mx.array([4.0, 5.0, 6.0])}, batch_shape=(3,)
    )
    m = cm.mask(mx.array([True, False, True]))
    assert m.is_masked and not cm.is_masked
    assert m.get_mask("x").tolist() == [True, False, True]
    assert m.mask(mx.array([False, False, True])).get_mask("y").tolist() == [False, False, True]
    p1 = m.particle(1)
    assert p1.is_empty
    p2 = m.particle(2)
    assert float(p2["x"]) == 3.0 and p2.batch_shape == () and not p2.is_masked
    assert ChoiceMap.leaf(1.0, mask=mx.array(False)).unmasked().is_empty
    assert float(ChoiceMap.leaf(1.0, mask=mx.array(True)).unmasked().value) == 1.0


def test_masked_map_flattens_through_vmap() -> None:
    import mlx.core as mx

    from genmlx.core import choicemap
    from genmlx.core.tree import flatten, unflatten

    cm = choicemap({"a": 1.0, ("b", 0): 2.0}).mask(mx.array(False))
    leaves, td = flatten(cm)
    assert len(leaves) == 4
    back = unflatten(td, leaves)
    assert back.get_mask(("b", 0)).item() is False and float(back["a"]) == 1.0


def test_where_combines_branches() -> None:
    import mlx.core as mx

    from genmlx.core import ChoiceMap, choicemap

    idx = mx.array([0, 1, 1])
    b0 = choicemap(
        {"x": mx.array([1.0, 1.0, 1.0]), "z": mx.array([7.0, 7.0, 7.0])}, batch_shape=(3,)
    )
    b1 = choicemap({"x": mx.array([2.0, 2.0, 2.0])}, batch_shape=(3,))
    u = ChoiceMap.where(idx, [b0, b1])
    assert u["x"].tolist() == [1.0, 2.0, 2.0]
    assert u.get_mask("x").tolist() == [True, True, True]
    assert u.get_mask("z").tolist() == [True, False, False]
    assert sorted(map(str, u.particle(1).addresses())) == ["x"]


def test_where_rejects_shape_conflicts() -> None:
    import mlx.core as mx
    import pytest

    from genmlx.core import ChoiceMap, choicemap
    from genmlx.core.errors import AddressError

    with pytest.raises(AddressError, match="different shapes"):
        ChoiceMap.where(0, [choicemap({"x": 1.0}), choicemap({"x": mx.array([1.0, 2.0])})])


def test_from_nodes_builds_and_rejects_conflicts() -> None:
    import pytest

    from genmlx.core import ChoiceMap, choicemap
    from genmlx.core.errors import AddressError

    cm = ChoiceMap.from_nodes([(("a", 0), ChoiceMap.leaf(1.0)), (("a", 1), ChoiceMap.leaf(2.0))])
    assert float(cm[("a", 1)]) == 2.0 and len(cm) == 2
    with pytest.raises(AddressError, match="given twice"):
        choicemap({"b": 1.0, ("b",): 3.0})
    with pytest.raises(AddressError, match="already holds a value"):
        choicemap({"a": 1.0, ("a", 0): 2.0})
    big = choicemap({("d", i, "y"): float(i) for i in range(2000)})
    assert float(big[("d", 1999, "y")]) == 1999.0
