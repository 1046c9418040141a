"""Edit requests: forward and backward moves, and their weights."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import (
    ChoiceMap,
    ConstraintEdit,
    Distribution,
    EditResult,
    ProposalEdit,
    SelectionEdit,
    UnknownChange,
    choicemap,
    gen,
    select,
)
from genmlx.core.random import split2
from genmlx.core.testing.models import normal, two_normals

K = mx.random.key
TOL = {"rel": 1e-5, "abs": 1e-5}


def ln(x: float, mu: float, sigma: float) -> float:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2.0 * math.pi)


def f(x: mx.array) -> float:
    return float(x.item())


def plain(cm: ChoiceMap) -> dict:
    return {a: v.item() for a, v in cm}


@gen
def chain(n):
    mu = normal(0.0, 1.0) @ "mu"
    for i in range(n):
        normal(mu, 2.0) @ ("y", i)
    return mu


FULL3 = {"mu": 0.5, ("y", 0): 1.0, ("y", 1): -1.0, ("y", 2): 2.0}


def _tn(mu: float = 1.0, x: float = 2.0):
    tr, _ = two_normals.generate((), choicemap({"mu": mu, "x": x}), key=K(0))
    return tr


def two_normals_score(mu: float, x: float) -> float:
    return ln(mu, 0, 10) + ln(x, mu, 1)


# --------------------------------------------------------------------------- ConstraintEdit
def test_constraint_edit_forward_and_backward():
    tr, _ = chain.generate((3,), choicemap(FULL3), key=K(0))
    req = ConstraintEdit(choicemap({"mu": 1.0}), args=(2,))
    res = chain.edit(tr, req, key=K(1))
    assert isinstance(res, EditResult)
    new, w, rd, back = res
    expected = (
        (ln(1.0, 0, 1) - ln(0.5, 0, 1))
        + (ln(1.0, 1.0, 2) - ln(1.0, 0.5, 2))
        + (ln(-1.0, 1.0, 2) - ln(-1.0, 0.5, 2))
        - ln(2.0, 0.5, 2)
    )
    assert f(w) == pytest.approx(expected, **TOL)
    assert rd is UnknownChange
    assert new.args == (2,)
    assert isinstance(back, ConstraintEdit)
    assert plain(back.constraints) == {"mu": 0.5, ("y", 2): 2.0}
    assert back.args == (3,)
    assert back.argdiffs == (UnknownChange,)
    restored, w_back, _, back2 = new.edit(back, key=K(2))
    assert plain(restored.get_choices()) == FULL3
    assert restored.args == (3,)
    assert f(w) + f(w_back) == pytest.approx(0.0, abs=1e-5)
    assert f(restored.score) == pytest.approx(f(tr.score), **TOL)
    assert plain(back2.constraints) == {"mu": 1.0}


def test_constraint_edit_without_args_keeps_args():
    tr = _tn()
    new, w, _, back = two_normals.edit(tr, ConstraintEdit(choicemap({"x": -0.5})), key=K(1))
    assert f(w) == pytest.approx(ln(-0.5, 1.0, 1) - ln(2.0, 1.0, 1), **TOL)
    assert back.args is None and back.argdiffs is None
    restored, wb, _, _ = two_normals.edit(new, back, key=K(2))
    assert plain(restored.get_choices()) == {"mu": 1.0, "x": 2.0}
    assert f(w) + f(wb) == pytest.approx(0.0, abs=1e-6)


def test_constraint_edit_equals_update():
    tr, _ = chain.generate((3,), choicemap(FULL3), key=K(0))
    cons = choicemap({("y", 0): 0.0, ("y", 3): 1.0})
    new, w, _, back = chain.edit(tr, ConstraintEdit(cons, args=(4,)), key=K(3))
    un, uw, _, disc = chain.update(tr, cons, args=(4,), key=K(3))
    assert f(w) == f(uw)
    assert plain(new.get_choices()) == plain(un.get_choices())
    assert plain(back.constraints) == plain(disc)


# --------------------------------------------------------------------------- SelectionEdit
def test_selection_edit_weight_equals_regenerate():
    tr = _tn()
    new, w, rd, back = two_normals.edit(tr, SelectionEdit(select("mu")), key=K(4))
    rn, rw, rrd = two_normals.regenerate(tr, select("mu"), key=K(4))
    assert f(w) == f(rw)
    assert plain(new.get_choices()) == plain(rn.get_choices())
    mu2 = f(new["mu"])
    assert f(w) == pytest.approx(ln(2.0, mu2, 1) - ln(2.0, 1.0, 1), **TOL)
    assert isinstance(back, SelectionEdit)
    assert back.args is None
    assert "mu" in back.selection and "x" not in back.selection


def test_selection_edit_backward_restores_and_weights_cancel():
    # mu's new value depends only on the key (its prior has fixed parameters), so the
    # backward request run with the key that produced the old value restores it exactly.
    base = _tn()
    k_old, k_new = K(10), K(11)
    t0, _, _, _ = two_normals.edit(base, SelectionEdit(select("mu")), key=k_old)
    t1, w_fwd, _, back = two_normals.edit(t0, SelectionEdit(select("mu")), key=k_new)
    assert f(t1["mu"]) != f(t0["mu"])
    restored, w_bwd, _, _ = two_normals.edit(t1, back, key=k_old)
    assert plain(restored.get_choices()) == plain(t0.get_choices())
    assert f(w_fwd) + f(w_bwd) == pytest.approx(0.0, abs=1e-5)
    mu0, mu1 = f(t0["mu"]), f(t1["mu"])
    assert f(w_fwd) == pytest.approx(ln(2.0, mu1, 1) - ln(2.0, mu0, 1), **TOL)


def test_selection_edit_with_args_backward_has_old_args():
    tr, _ = chain.generate((3,), choicemap(FULL3), key=K(0))
    new, w, _, back = chain.edit(tr, SelectionEdit(select(("y", 0)), args=(2,)), key=K(5))
    assert new.args == (2,)
    assert back.args == (3,) and back.argdiffs == (UnknownChange,)
    # y0 selected (0), y1 kept with unchanged parameters (0), y2 removed (0)
    assert f(w) == 0.0
    restored, wb, _, _ = chain.edit(new, back, key=K(6))
    assert restored.args == (3,)
    assert f(restored[("y", 1)]) == -1.0
    # y2 was sampled anew on the way back: contributes 0; y0 reselected: 0
    assert f(wb) == 0.0


# --------------------------------------------------------------------------- ProposalEdit
@gen
def shift_proposal(tr, shift, scale):
    return normal(tr["mu"] + shift, scale) @ "mu"


@gen
def other_proposal(tr, shift, scale):
    return normal(tr["mu"] + shift, scale) @ "mu"


def test_proposal_edit_weight_formula_closed_form():
    tr = _tn(1.0, 2.0)
    req = ProposalEdit(shift_proposal, (0.3, 0.5), other_proposal, (-0.1, 0.8))
    new, w, rd, back = two_normals.edit(tr, req, key=K(7))
    mu2 = f(new["mu"])
    assert mu2 != 1.0 and f(new["x"]) == 2.0
    update_w = two_normals_score(mu2, 2.0) - two_normals_score(1.0, 2.0)
    log_q_bwd = ln(1.0, mu2 - 0.1, 0.8)  # backward proposal scores the discarded old mu
    log_q_fwd = ln(mu2, 1.0 + 0.3, 0.5)
    assert f(w) == pytest.approx(update_w + log_q_bwd - log_q_fwd, **TOL)
    # the backward request swaps the proposals and their arguments
    assert isinstance(back, ProposalEdit)
    assert back.proposal is other_proposal and back.proposal_args == (-0.1, 0.8)
    assert back.backward_proposal is shift_proposal and back.backward_args == (0.3, 0.5)


def test_proposal_edit_weight_equals_separate_propose_update_assess():
    tr = _tn(1.0, 2.0)
    key = K(8)
    req = ProposalEdit(shift_proposal, (0.3, 0.5), other_proposal, (-0.1, 0.8))
    new, w, _, _ = two_normals.edit(tr, req, key=key)
    k1, k2 = split2(key)
    choices, fwd, _ = shift_proposal.propose((tr, 0.3, 0.5), key=k1)
    un, uw, _, disc = two_normals.update(tr, choices, key=k2)
    bwd, _ = other_proposal.assess((un, -0.1, 0.8), disc)
    assert plain(new.get_choices()) == plain(un.get_choices())
    assert f(w) == pytest.approx(f(uw) + f(bwd) - f(fwd), **TOL)
    assert plain(disc) == {"mu": 1.0}


def test_proposal_edit_default_backward_is_the_proposal():
    tr = _tn(1.0, 2.0)
    req = ProposalEdit(shift_proposal, (0.0, 0.5))
    assert req.backward_proposal is shift_proposal and req.backward_args == (0.0, 0.5)
    new, w, _, back = two_normals.edit(tr, req, key=K(9))
    mu2 = f(new["mu"])
    # symmetric random walk: q terms cancel, weight is the model ratio
    expected = two_normals_score(mu2, 2.0) - two_normals_score(1.0, 2.0)
    assert f(w) == pytest.approx(expected, **TOL)
    assert back.proposal is shift_proposal


class PointMass(Distribution):
    """A point mass at ``v`` (log density 0 there, -inf elsewhere)."""

    name = "point_mass"

    def sample(self, key, v, *, shape=()):
        v = mx.array(v)
        return mx.broadcast_to(v, tuple(shape) + v.shape)

    def log_prob(self, value, v):
        return mx.where(mx.array(value) == mx.array(v), 0.0, -mx.inf)


point_mass = PointMass()


@gen
def negate_mu(tr):
    return point_mass(-tr["mu"]) @ "mu"


def test_deterministic_involution_edit_restores_and_weights_cancel():
    tr = _tn(1.0, 2.0)
    req = ProposalEdit(negate_mu)
    new, w, _, back = two_normals.edit(tr, req, key=K(12))
    assert plain(new.get_choices()) == {"mu": -1.0, "x": 2.0}
    expected = two_normals_score(-1.0, 2.0) - two_normals_score(1.0, 2.0)
    assert f(w) == pytest.approx(expected, **TOL)
    restored, wb, _, _ = two_normals.edit(new, back, key=K(13))
    assert plain(restored.get_choices()) == {"mu": 1.0, "x": 2.0}
    assert f(w) + f(wb) == pytest.approx(0.0, abs=1e-5)
    assert f(restored.score) == pytest.approx(two_normals_score(1.0, 2.0), **TOL)


# --------------------------------------------------------------------------- batched
def test_batched_proposal_edit_equals_per_particle():
    n = 4
    tr, _ = two_normals.vgenerate((), {"x": 2.0}, n, key=K(20))
    req = ProposalEdit(shift_proposal, (0.3, 0.5), other_proposal, (-0.1, 0.8))
    key = K(21)
    new, w, _, _ = two_normals.edit(tr, req, key=key)
    assert w.shape == (n,) and new.batch_shape == (n,)
    keys = mx.random.split(key, n)
    for i in range(n):
        ti, _ = two_normals.generate((), {"mu": tr["mu"][i], "x": 2.0}, key=K(0))
        ni, wi, _, _ = two_normals.edit(ti, req, key=keys[i])
        np.testing.assert_allclose(np.array(w[i]), np.array(wi), rtol=1e-6, atol=1e-6)
        assert new["mu"][i].item() == pytest.approx(f(ni["mu"]), rel=1e-6, abs=1e-6)


def test_batched_involution_edit_round_trip():
    n = 3
    tr, _ = two_normals.vgenerate((), {"x": 2.0}, n, key=K(22))
    new, w, _, back = two_normals.edit(tr, ProposalEdit(negate_mu), key=K(23))
    np.testing.assert_array_equal(np.array(new["mu"]), -np.array(tr["mu"]))
    restored, wb, _, _ = two_normals.edit(new, back, key=K(24))
    np.testing.assert_array_equal(np.array(restored["mu"]), np.array(tr["mu"]))
    np.testing.assert_allclose(np.array(w + wb), np.zeros(n), atol=1e-5)


def test_edit_rejects_non_requests():
    tr = _tn()
    with pytest.raises(TypeError, match="EditRequest"):
        two_normals.edit(tr, choicemap({"x": 1.0}), key=K(0))  # type: ignore[arg-type]
