"""Selections: select semantics, complement/union/intersection, all/none, explicit paths."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genmlx.core import Selection, select

SETTINGS = settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def test_select_addresses_and_descendants():
    s = select("a", ("y", 0))
    assert "a" in s
    assert ("a",) in s
    assert ("a", 3, "deep") in s  # descendants of a selected address
    assert ("y", 0) in s
    assert ("y", 0, "z") in s
    assert ("y", 1) not in s
    assert "y" not in s  # a strict prefix of a selected address is not selected
    assert "b" not in s
    assert () not in s


def test_select_prefix_selects_all_beneath():
    s = select("y")
    for a in [("y", 0), ("y", 1), ("y", 2, "z"), "y"]:
        assert a in s
    assert "x" not in s


def test_select_prefix_absorbs_longer_paths_in_either_order():
    for s in (select("y", ("y", 0)), select(("y", 0), "y")):
        assert ("y", 5) in s and ("y", 0) in s and "y" in s
        assert s.explicit_paths() == [("y",)]


def test_select_empty_path_is_all():
    s = select(())
    assert "anything" in s and () in s


def test_select_nothing_is_empty():
    s = select()
    assert s.is_none()
    assert "a" not in s and () not in s
    assert s.explicit_paths() == []


def test_all_and_none():
    a, n = Selection.all(), Selection.none()
    assert "q" in a and ("q", 1) in a and () in a
    assert "q" not in n and ("q", 1) not in n and () not in n
    assert a.selects_root() and not n.selects_root()
    assert n.is_none() and not a.is_none()
    assert a.explicit_paths() == [] and n.explicit_paths() == []
    assert "q" not in ~a and "q" in ~n
    inner = select("a")
    assert ~~inner is inner  # the complement of a complement is its inner selection
    assert a.child("x") is a and n.child("x") is n


def test_complement():
    s = ~select("a", ("y", 0))
    assert "a" not in s and ("a", 1) not in s
    assert ("y", 0) not in s and ("y", 0, 1) not in s
    assert ("y", 1) in s and "b" in s
    assert "y" in s  # y itself is not selected by the inner selection
    assert (~s).explicit_paths() == [("a",), ("y", 0)]
    assert s.explicit_paths() == [("a",), ("y", 0)]


def test_union_and_intersection():
    s, t = select("a", ("y", 0)), select(("y",), "b")
    u, i = s | t, s & t
    for a in ["a", "b", ("y", 0), ("y", 3)]:
        assert a in u
    assert "c" not in u
    assert ("y", 0) in i and ("y", 0, "k") in i
    assert ("y", 1) not in i and "a" not in i and "b" not in i
    assert u.explicit_paths() == [("a",), ("y", 0), ("y",), ("b",)]
    assert i.explicit_paths() == [("a",), ("y", 0), ("y",), ("b",)]


def test_child_restricts_to_subtree():
    s = select(("y", 0), ("y", 1, "z"), "a")
    c = s.child("y")
    assert 0 in c and (0, "w") in c
    assert (1, "z") in c and 1 not in c and (1, "q") not in c
    assert 2 not in c
    assert s.child("a").selects_root()
    assert s.child("nope").is_none()


def test_explicit_paths_nested():
    s = select(("y", 0), ("y", 1, "z"), "a")
    assert s.explicit_paths() == [("y", 0), ("y", 1, "z"), ("a",)]


def test_invalid_address_rejected():
    with pytest.raises(TypeError):
        select(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        select(("y", True))


def test_repr():
    assert repr(select("a", ("y", 0))) == "select('a', ('y', 0))"
    assert repr(Selection.all()) == "Selection.all()"
    assert repr(~Selection.none()) == "~Selection.none()"


# --------------------------------------------------------------------------- properties
_component = st.one_of(st.sampled_from(["a", "b"]), st.integers(0, 1))
_path = st.lists(_component, min_size=0, max_size=3).map(tuple)
_nonempty_path = st.lists(_component, min_size=1, max_size=3).map(tuple)


def _base() -> st.SearchStrategy[Selection]:
    return st.one_of(
        st.lists(_nonempty_path, max_size=3).map(lambda ps: select(*ps)),
        st.just(Selection.all()),
        st.just(Selection.none()),
    )


_selection = st.recursive(
    _base(),
    lambda inner: st.one_of(
        inner.map(lambda s: ~s),
        st.tuples(inner, inner).map(lambda t: t[0] | t[1]),
        st.tuples(inner, inner).map(lambda t: t[0] & t[1]),
    ),
    max_leaves=4,
)


def _walk_contains(s: Selection, path: tuple) -> bool:
    """Membership computed only through selects_root/child (the interface filter uses)."""
    for c in path:
        if s.selects_root():
            return True
        s = s.child(c)
    return s.selects_root()


@SETTINGS
@given(_selection, _selection, st.lists(_path, min_size=1, max_size=6))
def test_prop_de_morgan(s, t, paths):
    for p in paths:
        assert (p in ~(s | t)) == (p in (~s & ~t))
        assert (p in ~(s & t)) == (p in (~s | ~t))
        assert (p in (s | t)) == ((p in s) or (p in t))
        assert (p in (s & t)) == ((p in s) and (p in t))
        assert (p in ~s) != (p in s)


@SETTINGS
@given(_selection, st.lists(_path, min_size=1, max_size=6))
def test_prop_complement_involution(s, paths):
    for p in paths:
        assert (p in ~~s) == (p in s)
        assert (p in ~(~(~s))) == (p in ~s)


@SETTINGS
@given(st.lists(_nonempty_path, max_size=4), st.lists(_path, min_size=1, max_size=6))
def test_prop_select_is_prefix_closed(sel_paths, paths):
    s = select(*sel_paths)
    for p in paths:
        expected = any(p[: len(q)] == q for q in sel_paths)
        assert (p in s) == expected
        # the trie walk agrees with membership
        assert _walk_contains(s, p) == expected


@SETTINGS
@given(_selection, st.lists(_path, min_size=1, max_size=6))
def test_prop_selects_root_implies_membership_of_everything_below(s, paths):
    # selects_root() is a sound under-approximation: when it says "all", every path is in
    for p in paths:
        sub = s
        for c in p:
            sub = sub.child(c)
        if sub.selects_root():
            assert p in s
