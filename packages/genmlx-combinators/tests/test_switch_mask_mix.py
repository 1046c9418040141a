"""Switch, Mask and Mix: Gen.jl weights in closed form, batching by masking, laws, errors."""

from __future__ import annotations

import math

import mlx.core as mx
import pytest

from genmlx.combinators.mask import Mask, Masked
from genmlx.combinators.mix import Mix, categorical
from genmlx.combinators.switch import Switch
from genmlx.core import ChoiceMap, Selection, choicemap, gen, runtime, select
from genmlx.core.errors import ConstraintError, NonFiniteScoreError
from genmlx.core.testing import check_gfi_laws
from genmlx.core.testing.models import normal


def lp(x: float, mu: float, sigma: float = 1.0) -> float:
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


@gen
def near():
    return normal(0.0, 1.0) @ "x"


@gen
def far():
    x = normal(10.0, 1.0) @ "x"
    normal(x, 2.0) @ "z"
    return x


SW = Switch(near, far)


@gen
def switch_model():
    u = normal(0.0, 1.0) @ "u"
    k = (u > 0).astype(mx.int32)
    return SW(k) @ "s"


def close(a: object, b: float, tol: float = 1e-4) -> None:
    assert abs(float(a) - b) < tol, (float(a), b)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- Switch
def test_switch_assess_each_branch() -> None:
    close(SW.assess((0,), choicemap({"x": -1.0})).log_density, lp(-1.0, 0.0))
    close(
        SW.assess((1,), choicemap({"x": 9.0, "z": 8.0})).log_density,
        lp(9.0, 10.0) + lp(8.0, 9.0, 2.0),
    )


def test_switch_generate_partial_and_choices_not_namespaced() -> None:
    tr, w = SW.generate((1,), choicemap({"x": 10.5}), key=mx.random.key(0))
    close(w, lp(10.5, 10.0))
    assert sorted(map(str, tr.get_choices().addresses())) == ["x", "z"]
    close(tr.score, lp(10.5, 10.0) + lp(float(tr["z"]), 10.5, 2.0))


def test_switch_update_same_branch_and_branch_change() -> None:
    tr, _ = SW.generate((1,), choicemap({"x": 10.5, "z": 9.0}), key=mx.random.key(0))
    new, w, _, disc = SW.update(tr, choicemap({"x": 11.0}))
    close(w, lp(11.0, 10.0) + lp(9.0, 11.0, 2.0) - lp(10.5, 10.0) - lp(9.0, 10.5, 2.0))
    assert float(disc["x"]) == 10.5 and "z" not in disc
    # changing the branch generates the new one under the constraints: w_gen - old score
    new, w, _, disc = SW.update(tr, choicemap({"x": 0.25}), (0,))
    close(w, lp(0.25, 0.0) - float(tr.score))
    assert sorted(map(str, disc.addresses())) == ["x", "z"] and float(disc["x"]) == 10.5
    close(new.score, lp(0.25, 0.0))
    back, w2, _, _ = SW.update(new, disc, (1,))
    close(w2, -float(w))


def test_switch_regenerate_and_project() -> None:
    tr, _ = SW.generate((1,), choicemap({"x": 10.5, "z": 9.0}), key=mx.random.key(0))
    new, w, _ = SW.regenerate(tr, select("x"), key=mx.random.key(1))
    x = float(new["x"])
    close(w, lp(9.0, x, 2.0) - lp(9.0, 10.5, 2.0))  # z kept, x resampled
    new, w, _ = SW.regenerate(tr, Selection.none(), (0,), key=mx.random.key(2))
    assert float(w) == 0.0 and sorted(map(str, new.get_choices().addresses())) == ["x"]
    close(SW.project(tr, select("z")), lp(9.0, 10.5, 2.0))


def test_switch_batched_per_particle_index() -> None:
    n = 64
    cons = choicemap({("s", "x"): 0.5})
    tr, w = switch_model.vgenerate((), cons, n, key=mx.random.key(3))
    u = tr["u"]
    # particles on branch 0 weigh N(0.5; 0, 1), on branch 1 N(0.5; 10, 1)
    expected = mx.where(u > 0, lp(0.5, 10.0), lp(0.5, 0.0))
    assert mx.allclose(w, expected, atol=1e-5).item()
    cm = tr.get_choices()
    assert cm.get_mask(("s", "z")).tolist() == (u > 0).tolist()
    # particle i equals the unbatched run with key i
    keys = mx.random.split(mx.random.key(3), n)
    for i in (0, 1, 2, 5):
        t1, w1 = switch_model.generate((), cons, key=keys[i])
        assert abs(float(w1) - float(w[i])) < 1e-5
        assert sorted(map(str, t1.get_choices().addresses())) == sorted(
            map(str, cm.particle(i).addresses())
        )
        close(t1.score, float(tr.score[i]), 1e-4)


def test_switch_batched_update_changes_branch_per_particle() -> None:
    n = 32
    tr = switch_model.vsimulate((), n, key=mx.random.key(4))
    u_old = tr["u"]
    x_old = tr[("s", "x")]
    z_old = tr[("s", "z")]
    new, w, _, disc = switch_model.update(
        tr, choicemap({"u": -u_old, ("s", "x"): mx.full((n,), 1.0)}, batch_shape=(n,))
    )
    for i in range(n):
        u, x, z = float(u_old[i]), float(x_old[i]), float(z_old[i])
        d_u = lp(-u, 0.0) - lp(u, 0.0)
        if u > 0:  # far -> near: generate near with x=1, minus far's old score
            expected = d_u + lp(1.0, 0.0) - (lp(x, 10.0) + lp(z, x, 2.0))
            assert bool(disc.get_mask(("s", "z"))[i])
        else:  # near -> far: generate far with x=1 (z sampled), minus near's old score
            expected = d_u + lp(1.0, 10.0) - lp(x, 0.0)
            assert not bool(disc.get_mask(("s", "z"))[i])
        assert abs(float(w[i]) - expected) < 1e-3, (i, float(w[i]), expected)
        assert float(disc[("s", "x")][i]) == x


def test_switch_errors() -> None:
    with pytest.raises(IndexError, match="out of range"):
        SW.simulate((2,), key=mx.random.key(0))
    with pytest.raises(ValueError, match="single integer"):
        SW.simulate((mx.array([0, 1]),), key=mx.random.key(0))
    with pytest.raises(ConstraintError, match="nope"):
        switch_model.vgenerate((), choicemap({("s", "nope"): 1.0}), 4, key=mx.random.key(0))
    with pytest.raises(ConstraintError):
        SW.generate((0,), choicemap({"z": 1.0}), key=mx.random.key(0))  # branch 0 has no z


def test_switch_laws() -> None:
    check_gfi_laws(SW, (0,), max_examples=2)
    check_gfi_laws(SW, (1,), max_examples=2)
    check_gfi_laws(switch_model, (), max_examples=3)


# ---------------------------------------------------------------------------- Mask
M = Mask(far)


@gen
def mask_model():
    u = normal(0.0, 1.0) @ "u"
    return M(u > 0) @ "m"


def test_mask_on_off_scores() -> None:
    cm = choicemap({"x": 9.0, "z": 8.0})
    close(M.assess((True,), cm).log_density, lp(9.0, 10.0) + lp(8.0, 9.0, 2.0))
    ld, rv = M.assess((False,), choicemap({}))
    assert float(ld) == 0.0 and isinstance(rv, Masked) and float(rv.value) == 0.0
    tr = M.simulate((False,), key=mx.random.key(0))
    assert float(tr.score) == 0.0 and tr.get_choices().is_empty
    with pytest.raises(ConstraintError, match="flag is False"):
        M.generate((False,), cm, key=mx.random.key(0))


def test_mask_update_switches_on_and_off() -> None:
    tr, _ = M.generate((True,), choicemap({"x": 9.0, "z": 8.0}), key=mx.random.key(0))
    off, w, _, disc = M.update(tr, None, (False,))
    close(w, -(lp(9.0, 10.0) + lp(8.0, 9.0, 2.0)))
    assert float(disc["x"]) == 9.0 and float(disc["z"]) == 8.0 and not disc.is_masked
    on, w2, _, disc2 = M.update(off, choicemap({"x": 9.0, "z": 8.0}), (True,))
    close(w2, lp(9.0, 10.0) + lp(8.0, 9.0, 2.0))
    assert disc2.is_empty


def test_mask_batched_flags() -> None:
    n = 64
    tr, w = mask_model.vgenerate((), choicemap({("m", "x"): 10.0}), n, key=mx.random.key(5))
    u = tr["u"]
    assert mx.allclose(w, mx.where(u > 0, lp(10.0, 10.0), 0.0), atol=1e-6).item()
    assert tr.get_choices().get_mask(("m", "x")).tolist() == (u > 0).tolist()
    check_gfi_laws(mask_model, (), max_examples=3)
    check_gfi_laws(M, (True,), max_examples=2)
    check_gfi_laws(M, (False,), max_examples=2)


# ---------------------------------------------------------------------------- Mix
@gen
def bump(mu):
    return normal(mu, 1.0) @ "x"


MIX = Mix(bump, far)
MIX_ARGS = (mx.log(mx.array([0.3, 0.7])), (0.0,), ())


def test_mix_assess_and_layout() -> None:
    ld, _ = MIX.assess(MIX_ARGS, choicemap({"component": 0, ("value", "x"): 0.5}))
    close(ld, math.log(0.3) + lp(0.5, 0.0))
    ld, _ = MIX.assess(
        MIX_ARGS, choicemap({"component": 1, ("value", "x"): 9.0, ("value", "z"): 8.0})
    )
    close(ld, math.log(0.7) + lp(9.0, 10.0) + lp(8.0, 9.0, 2.0))


def test_mix_batched_component_frequency() -> None:
    n = 4000
    tr = MIX.vsimulate(MIX_ARGS, n, key=mx.random.key(6))
    p_hat = float(mx.mean(tr["component"].astype(mx.float32)))
    se = math.sqrt(0.7 * 0.3 / n)
    assert abs(p_hat - 0.7) < 4 * se
    check_gfi_laws(MIX, MIX_ARGS, max_examples=3)


def test_categorical_matches_softmax() -> None:
    lg = mx.array([0.1, -1.0, 2.0])
    lps = categorical.log_prob(mx.arange(3), lg)
    ref = [v - math.log(sum(math.exp(t) for t in (0.1, -1.0, 2.0))) for v in (0.1, -1.0, 2.0)]
    assert all(abs(a - b) < 1e-6 for a, b in zip(lps.tolist(), ref))
    assert float(categorical.log_prob(mx.array(3), lg)) == -math.inf


# ---------------------------------------------------------------------------- safety
def test_failing_branch_leaves_no_state() -> None:
    @gen
    def bad():
        normal(0.0, 1.0) @ "x"
        raise RuntimeError("boom")

    sw = Switch(near, bad)
    with pytest.raises(RuntimeError, match="boom"):
        sw.simulate((1,), key=mx.random.key(0))
    assert runtime.active_run() is None and not runtime.is_lenient()

    @gen
    def outer():
        k = (normal(0.0, 1.0) @ "u" > 0).astype(mx.int32)
        return sw(k) @ "s"

    with pytest.raises(RuntimeError, match="boom"):
        outer.vsimulate((), 4, key=mx.random.key(0))
    assert runtime.active_run() is None and not runtime.is_lenient()


def test_out_of_range_index_under_batching_is_reported() -> None:
    @gen
    def outer():
        k = (normal(0.0, 1.0) @ "u" > 0).astype(mx.int32) + 1  # 1 or 2: 2 is out of range
        return SW(k) @ "s"

    with pytest.raises(NonFiniteScoreError):
        outer.vsimulate((), 16, key=mx.random.key(0))
    assert isinstance(ChoiceMap.empty(), ChoiceMap)
