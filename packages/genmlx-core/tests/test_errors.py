"""Errors: each names the address and the operation; runs are exception-safe."""

from __future__ import annotations

import math

import mlx.core as mx
import pytest

from genmlx.core import (
    AddressError,
    BatchedControlFlowError,
    ConstraintError,
    Distribution,
    GenMLXError,
    MissingChoiceError,
    NonFiniteScoreError,
    Selection,
    choicemap,
    config,
    gen,
    runtime,
    select,
    splice,
)
from genmlx.core.testing.models import beta, beta_bernoulli, mixed, normal, two_normals

K = mx.random.key


def ln(x: float, mu: float, sigma: float) -> float:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * math.log(2.0 * math.pi)


@gen
def repeated():
    normal(0.0, 1.0) @ "x"
    normal(0.0, 1.0) @ "x"


@gen
def repeated_in_loop():
    for _ in range(2):
        normal(0.0, 1.0) @ ("y", 0)


@gen
def nested_under_choice():
    normal(0.0, 1.0) @ "x"
    normal(0.0, 1.0) @ ("x", 0)


# --------------------------------------------------------------------------- addresses
def test_repeated_address_names_it_and_the_operation():
    with pytest.raises(AddressError, match=r"simulate on repeated: address 'x' is visited twice"):
        repeated.simulate((), key=K(0))
    with pytest.raises(AddressError, match=r"generate on repeated_in_loop: address \('y', 0\)"):
        repeated_in_loop.generate((), None, key=K(0))
    with pytest.raises(AddressError, match="assess on repeated"):
        repeated.assess((), {"x": 1.0})


def test_address_beneath_a_choice_is_rejected():
    with pytest.raises(AddressError, match=r"\('x', 0\) lies beneath 'x'"):
        nested_under_choice.simulate((), key=K(0))


def test_invalid_address_components():
    @gen
    def bad_bool():
        normal(0.0, 1.0) @ True

    @gen
    def empty_addr():
        normal(0.0, 1.0) @ ()

    with pytest.raises(TypeError, match="address components must be str or int"):
        bad_bool.simulate((), key=K(0))
    with pytest.raises(AddressError, match="non-empty address"):
        empty_addr.simulate((), key=K(0))


# --------------------------------------------------------------------------- constraints
def test_unused_constraint_in_generate_names_address():
    with pytest.raises(ConstraintError, match=r"generate on two_normals: .* address 'typo'"):
        two_normals.generate((), {"typo": 1.0}, key=K(0))
    with pytest.raises(ConstraintError, match=r"'x' is a single random choice"):
        two_normals.generate((), {("x", "deeper"): 1.0}, key=K(0))


def test_unused_constraint_in_update_names_address():
    tr = two_normals.simulate((), key=K(0))
    with pytest.raises(ConstraintError, match=r"update on two_normals: .* address \('q', 1\)"):
        two_normals.update(tr, choicemap({("q", 1): 1.0}), key=K(1))


def test_constraint_beyond_loop_length_is_unused():
    @gen
    def loop(n):
        for i in range(n):
            normal(0.0, 1.0) @ ("y", i)

    tr = loop.simulate((3,), key=K(0))
    with pytest.raises(ConstraintError, match=r"\('y', 2\)"):
        loop.update(tr, choicemap({("y", 2): 0.0}), args=(1,), key=K(1))
    with pytest.raises(ConstraintError, match=r"\('y', 5\)"):
        loop.generate((3,), choicemap({("y", 5): 0.0}), key=K(1))


def test_assess_missing_choice():
    with pytest.raises(MissingChoiceError, match="'x'") as ei:
        two_normals.assess((), {"mu": 1.0})
    assert isinstance(ei.value, AddressError) and isinstance(ei.value, KeyError)
    with pytest.raises(MissingChoiceError):
        normal.assess((0.0, 1.0), choicemap())


def test_assess_extra_choice():
    with pytest.raises(ConstraintError, match=r"assess on two_normals: the choice at address 'z'"):
        two_normals.assess((), {"mu": 1.0, "x": 2.0, "z": 3.0})


def test_selection_with_unknown_address():
    tr = two_normals.simulate((), key=K(0))
    with pytest.raises(AddressError, match=r"regenerate on two_normals: .* 'typo'"):
        two_normals.regenerate(tr, select("typo"), key=K(1))
    with pytest.raises(AddressError, match=r"project on two_normals: .* \('mu', 3\)"):
        two_normals.project(tr, select(("mu", 3)) | select("nope"))
    with pytest.raises(AddressError, match="'nope'"):
        two_normals.project(tr, select("x") | select("nope"))


def test_selection_must_be_a_selection():
    tr = two_normals.simulate((), key=K(0))
    with pytest.raises(TypeError, match="selection must be a Selection"):
        two_normals.regenerate(tr, "mu", key=K(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="selection must be a Selection"):
        two_normals.project(tr, ["mu"])  # type: ignore[arg-type]


def test_trace_of_another_generative_function_is_rejected():
    @gen
    def other():
        return normal(0.0, 1.0) @ "mu"

    tr = other.simulate((), key=K(0))
    with pytest.raises(ValueError, match="not by"):
        two_normals.update(tr, None, key=K(1))
    with pytest.raises(ValueError):
        two_normals.regenerate(tr, Selection.all(), key=K(1))
    with pytest.raises(ValueError):
        two_normals.project(tr, Selection.all())


# --------------------------------------------------------------------------- scores
@gen
def bad_sigma():
    normal(0.0, 1.0) @ "ok"
    return normal(0.0, -1.0) @ "x"


@gen
def bad_nested():
    return bad_sigma() @ "sub"


def test_non_finite_score_names_the_site():
    with pytest.raises(NonFiniteScoreError, match=r"simulate on <gen bad_sigma>: .* address 'x'"):
        bad_sigma.simulate((), key=K(0))
    with pytest.raises(NonFiniteScoreError, match=r"address \('sub', 'x'\)"):
        bad_nested.simulate((), key=K(0))
    with pytest.raises(NonFiniteScoreError, match="generate") as ei:
        bad_sigma.generate((), {"x": 1.0}, key=K(0))
    assert isinstance(ei.value, FloatingPointError)
    with pytest.raises(NonFiniteScoreError, match="assess"):
        bad_sigma.assess((), {"ok": 0.0, "x": 1.0})
    with pytest.raises(NonFiniteScoreError, match="vsimulate"):
        bad_sigma.vsimulate((), 3, key=K(0))


def test_score_checks_can_be_disabled():
    with config.score_checks(False):
        assert not config.check_scores_enabled()
        tr = bad_sigma.simulate((), key=K(0))
        assert math.isnan(tr.score.item())
        ok = tr["ok"].item()
        assert math.isnan(bad_sigma.project(tr, select("x")).item())
        assert bad_sigma.project(tr, select("ok")).item() == pytest.approx(
            ln(ok, 0, 1), rel=1e-5, abs=1e-5
        )
    assert config.check_scores_enabled()
    with pytest.raises(NonFiniteScoreError):
        bad_sigma.simulate((), key=K(0))


def test_constraint_outside_support_gives_minus_inf_weight_not_an_error():
    tr, w = beta_bernoulli.generate((), {"p": 1.5}, key=K(0))
    assert w.item() == -math.inf
    ld, _ = beta_bernoulli.assess((), {"p": 1.5, "x": True})
    assert ld.item() == -math.inf


class _OutOfSupport(Distribution):
    """Samples 2.0 but gives it probability zero (a broken sampler)."""

    name = "out_of_support"

    def sample(self, key, *, shape=()):
        return mx.full(tuple(shape), 2.0)

    def log_prob(self, value):
        return mx.where(mx.array(value) < 1.0, 0.0, -mx.inf)


def test_sampled_value_outside_support_raises():
    oos = _OutOfSupport()

    @gen
    def m():
        return oos() @ "v"

    with pytest.raises(NonFiniteScoreError, match="'v'"):
        m.simulate((), key=K(0))
    with pytest.raises(NonFiniteScoreError):
        m.propose((), key=K(0))
    # a constrained value out of support is fine for generate (weight -inf)
    _, w = m.generate((), {"v": 2.0}, key=K(0))
    assert w.item() == -math.inf
    _, w = m.generate((), {"v": 0.5}, key=K(0))
    assert w.item() == 0.0


# --------------------------------------------------------------------------- batching
def test_python_branch_on_batched_value():
    with pytest.raises(BatchedControlFlowError, match="Switch") as ei:
        mixed.vsimulate((), 4, key=K(0))
    msg = str(ei.value)
    assert "Mask" in msg and "'coin'" in msg and "mx.where" in msg
    with pytest.raises(BatchedControlFlowError, match="Switch"):
        mixed.vgenerate((), {"x": 0.0}, 4, key=K(0))
    assert runtime.active_run() is None and not runtime.in_transform()
    # the same model runs unbatched
    tr = mixed.simulate((), key=K(0))
    assert set(tr.get_choices().addresses()) == {"coin", "x"}


def test_float_of_a_random_value_under_batching_names_the_last_choice():
    @gen
    def m(x):
        if float(mx.sum(x)) > 0:  # concrete argument: fine
            return normal(0.0, 1.0) @ "a"
        return normal(0.0, 1.0) @ "b"

    tr = m.vsimulate((mx.array(1.0),), 3, key=K(0))
    assert tr.get_choices().addresses() == ["a"]

    @gen
    def m2():
        v = normal(0.0, 1.0) @ "a"
        return float(v)

    with pytest.raises(BatchedControlFlowError, match="after the choice at 'a'"):
        m2.vsimulate((), 3, key=K(0))


def test_batched_constraints_of_wrong_size():
    cons = choicemap({"x": mx.zeros(3)}, batch_shape=(3,))
    with pytest.raises(ValueError, match=r"batch_shape \(3,\)"):
        two_normals.vgenerate((), cons, 4, key=K(0))
    tr = two_normals.simulate((), key=K(0))
    with pytest.raises(ValueError, match="batched"):
        two_normals.update(tr, cons, key=K(0))


def test_number_of_particles_must_be_positive_int():
    for n in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="positive int"):
            two_normals.vsimulate((), n, key=K(0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- misuse
def test_at_outside_a_body():
    with pytest.raises(GenMLXError, match="inside a @gen body"):
        normal(0.0, 1.0) @ "x"
    with pytest.raises(GenMLXError, match="inside a @gen body"):
        two_normals() @ "sub"
    with pytest.raises(GenMLXError, match="splice"):
        splice(two_normals)


def test_splice_needs_a_gen_function():
    @gen
    def m():
        return splice(normal, 0.0, 1.0)

    with pytest.raises(TypeError, match="splice needs a @gen function"):
        m.simulate((), key=K(0))
    assert runtime.active_run() is None


def test_args_must_be_a_tuple():
    with pytest.raises(TypeError, match="simulate: args must be a tuple"):
        two_normals.simulate(3, key=K(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generate: args must be a tuple"):
        two_normals.generate(mx.array([1.0]), None, key=K(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="assess: args must be a tuple"):
        two_normals.assess("x", {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="vsimulate: args must be a tuple"):
        two_normals.vsimulate(None, 3, key=K(0))  # type: ignore[arg-type]
    tr = two_normals.simulate((), key=K(0))
    with pytest.raises(TypeError, match="update: args must be a tuple"):
        two_normals.update(tr, None, args=1.0, key=K(0))  # type: ignore[arg-type]


def test_bad_keys():
    with pytest.raises(TypeError, match="key must be"):
        two_normals.simulate((), key=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be"):
        two_normals.simulate((), key=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="uint32"):
        two_normals.simulate((), key=mx.array([1, 2]))


def test_constraints_must_be_a_choicemap():
    with pytest.raises(TypeError, match="generate: constraints must be a ChoiceMap"):
        two_normals.generate((), [("x", 1.0)], key=K(0))  # type: ignore[arg-type]


def test_constraint_with_sub_addresses_at_a_single_choice():
    with pytest.raises(ConstraintError, match=r"'x' is a single random choice"):
        two_normals.generate((), {("x", 0): 1.0}, key=K(0))


def test_traced_call_used_as_a_value():
    @gen
    def m():
        if normal(0.0, 1.0):  # forgot "@ addr"
            pass  # the branch body is irrelevant: the `if` itself must raise

    with pytest.raises(TypeError, match="as a truth value without an address"):
        m.simulate((), key=K(0))


@pytest.mark.parametrize(
    "body, says",
    [
        (lambda: normal(0.0, 1.0) + 1.0, "in `\\+`"),
        (lambda: 2.0 * normal(0.0, 1.0), "in `\\*`"),
        (lambda: -normal(0.0, 1.0), "unary -"),
        (lambda: float(normal(0.0, 1.0)), "as a number"),
        (lambda: mx.ones(3) * normal(0.0, 1.0), "used as a value"),  # MLX raises first
        (lambda: mx.exp(normal(0.0, 1.0)), "used as a value"),
    ],
)
def test_traced_call_in_arithmetic_says_to_add_an_address(body, says):
    @gen
    def m():
        return body()

    with pytest.raises(TypeError, match=says) as info:
        m.simulate((), key=K(0))
    assert '@ "address"' in str(info.value)


def test_gen_applied_twice():
    with pytest.raises(TypeError, match="twice"):
        gen(two_normals)  # type: ignore[arg-type]


def test_reference_beta_rejects_non_integer_parameters():
    @gen
    def m():
        return beta(1.5, 2.0) @ "p"

    with pytest.raises(ValueError, match="integer"):
        m.simulate((), key=K(0))


# --------------------------------------------------------------------------- exception safety
@gen
def raises_midway():
    normal(0.0, 1.0) @ "first"
    raise RuntimeError("boom after the first choice")


@gen
def calls_raiser():
    normal(0.0, 1.0) @ "outer"
    return raises_midway() @ "sub"


def _check_clean_state():
    assert runtime.active_run() is None
    assert not runtime.in_transform()
    tr = two_normals.simulate((), key=K(5))
    assert tr.get_choices().addresses() == ["mu", "x"]
    mu, x = tr["mu"].item(), tr["x"].item()
    assert tr.score.item() == pytest.approx(ln(mu, 0, 10) + ln(x, mu, 1), rel=1e-5, abs=1e-5)
    # the next operation is an outermost one again: score checks run
    with pytest.raises(NonFiniteScoreError):
        bad_sigma.simulate((), key=K(0))


@pytest.mark.parametrize(
    "op",
    [
        lambda: raises_midway.simulate((), key=K(0)),
        lambda: raises_midway.generate((), {"first": 0.0}, key=K(0)),
        lambda: raises_midway.assess((), {"first": 0.0}),
        lambda: raises_midway.vsimulate((), 3, key=K(0)),
        lambda: calls_raiser.simulate((), key=K(0)),
        lambda: calls_raiser.generate((), {"outer": 1.0}, key=K(0)),
        lambda: calls_raiser.vsimulate((), 3, key=K(0)),
    ],
)
def test_a_raising_body_leaves_no_active_run(op):
    with pytest.raises(RuntimeError, match="boom"):
        op()
    _check_clean_state()


def test_raising_during_update_and_regenerate_leaves_no_active_run():
    flag = {"raise": False}

    @gen
    def m():
        a = normal(0.0, 1.0) @ "a"
        if flag["raise"]:
            raise RuntimeError("boom")
        return a

    tr = m.simulate((), key=K(0))
    flag["raise"] = True
    with pytest.raises(RuntimeError, match="boom"):
        m.update(tr, {"a": 1.0}, key=K(1))
    _check_clean_state()
    with pytest.raises(RuntimeError, match="boom"):
        m.regenerate(tr, select("a"), key=K(1))
    _check_clean_state()


def test_gfi_call_inside_a_body_does_not_leak_into_the_caller():
    @gen
    def m():
        a = normal(0.0, 1.0) @ "a"
        inner = two_normals.simulate((), key=K(3))  # a separate execution
        b = normal(a, 1.0) @ "b"  # the caller's run is active again
        return b + inner["x"]

    tr = m.simulate((), key=K(0))
    assert tr.get_choices().addresses() == ["a", "b"]
    a, b = tr["a"].item(), tr["b"].item()
    assert tr.score.item() == pytest.approx(ln(a, 0, 1) + ln(b, a, 1), rel=1e-5, abs=1e-5)
