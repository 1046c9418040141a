"""SMCP3: edit-based SMC moves with forward and backward kernels, against exact answers.

The model is a two-step linear-Gaussian chain whose posteriors and marginal
likelihoods are closed-form. With the optimal kernels — the forward kernel ``K`` drawing
``(x0', x1')`` from the new posterior ``p(x0, x1 | y0, y1)`` and the backward kernel
``L`` drawing the old ``x0`` from the old posterior ``p(x0 | y0)`` — the SMCP3
incremental weight is ``log p(y1 | y0)`` for *every* particle, so the test can demand
equality to float precision; a wrong backward kernel breaks that. A suboptimal pair
gives an unbiased marginal-likelihood estimate, checked against the exact value with a
bound from the runs' standard error.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import choicemap, gen
from genmlx.core.batching import take_particles
from genmlx.core.edit import ProposalEdit
from genmlx.dists import normal
from genmlx.infer import particle_filter

A, Q, R = 0.8, 0.7, 0.5
Y0, Y1 = 0.9, -0.4


def log_n(x: float, mu: float, var: float) -> float:
    return -0.5 * (x - mu) ** 2 / var - 0.5 * math.log(2 * math.pi * var)


# closed forms (plain math)
P0 = 1.0 + 1.0 / R**2  # precision of p(x0 | y0)
M0, S0 = (Y0 / R**2) / P0, math.sqrt(1.0 / P0)
P01 = 1.0 + 1.0 / R**2 + A**2 / (Q**2 + R**2)  # precision of p(x0 | y0, y1)
M01, S01 = (Y0 / R**2 + A * Y1 / (Q**2 + R**2)) / P01, math.sqrt(1.0 / P01)
P1 = 1.0 / Q**2 + 1.0 / R**2  # precision of p(x1 | x0, y1)
LOG_P_Y0 = log_n(Y0, 0.0, 1.0 + R**2)
LOG_P_Y1_GIVEN_Y0 = log_n(Y1, A * M0, A**2 * S0**2 + Q**2 + R**2)


@gen
def chain(T: int) -> None:
    x0 = normal(0.0, 1.0) @ "x0"
    normal(x0, R) @ "y0"
    if T > 1:
        x1 = normal(A * x0, Q) @ "x1"
        normal(x1, R) @ "y1"


@gen
def post0() -> None:
    normal(M0, S0) @ "x0"


@gen
def forward_opt(tr: Any) -> None:
    """K: (x0', x1') ~ p(x0, x1 | y0, y1), whatever the old x0."""
    x0 = normal(M01, S01) @ "x0"
    normal((A * x0 / Q**2 + Y1 / R**2) / P1, math.sqrt(1.0 / P1)) @ "x1"


@gen
def backward_opt(tr: Any) -> None:
    """L: the old x0 ~ p(x0 | y0)."""
    normal(M0, S0) @ "x0"


@gen
def backward_wrong(tr: Any) -> None:
    normal(M0, 2.0 * S0) @ "x0"


def _init(n: int, seed: int) -> Any:
    return particle_filter(chain, (1,), {"y0": Y0}, n, proposal=post0, key=mx.random.key(seed))


def test_optimal_smcp3_kernels_give_every_particle_the_exact_weight() -> None:
    state = _init(500, 0)
    np.testing.assert_allclose(np.asarray(state.log_weights), LOG_P_Y0, atol=1e-5)
    state = state.smcp3_step(
        forward_opt,
        backward=backward_opt,
        new_args=(2,),
        observations={"y1": Y1},
        key=mx.random.key(1),
    )
    expect = LOG_P_Y0 + LOG_P_Y1_GIVEN_Y0
    np.testing.assert_allclose(np.asarray(state.log_weights), expect, atol=2e-5)
    assert abs(float(state.log_ml_estimate) - expect) < 2e-5
    # the particles are exact posterior draws: the moments match within 4 SE
    x0 = np.asarray(state.traces["x0"])
    assert abs(x0.mean() - M01) < 4 * S01 / math.sqrt(500)


def test_a_wrong_backward_kernel_shows_in_the_weights() -> None:
    state = _init(500, 0).smcp3_step(
        forward_opt,
        backward=backward_wrong,
        new_args=(2,),
        observations={"y1": Y1},
        key=mx.random.key(1),
    )
    assert float(np.std(np.asarray(state.log_weights))) > 0.1


def test_an_overwriting_move_without_backward_kernel_is_refused() -> None:
    with pytest.raises(ValueError, match="backward_proposal"):
        _init(10, 0).smcp3_step(
            forward_opt, new_args=(2,), observations={"y1": Y1}, key=mx.random.key(1)
        )


@gen
def forward_rw(tr: Any, step: float) -> None:
    """A suboptimal K: jitter the old x0, draw x1 from its prior."""
    x0 = normal(tr["x0"], step) @ "x0"
    normal(A * x0, Q) @ "x1"


@gen
def backward_rw(tr: Any, step: float) -> None:
    """Its reverse: the old x0 around the new one (the same symmetric jitter)."""
    normal(tr["x0"], step) @ "x0"


def test_suboptimal_smcp3_move_is_unbiased_for_the_marginal_likelihood() -> None:
    # Ẑ is unbiased: over R runs, |mean(Ẑ)/Z - 1| < 4 sd(Ẑ/Z)/sqrt(R)
    runs = 30
    z = math.exp(LOG_P_Y0 + LOG_P_Y1_GIVEN_Y0)
    ratios = []
    for r in range(runs):
        state = particle_filter(chain, (1,), {"y0": Y0}, 100, key=mx.random.key(100 + r))
        state = state.smcp3_step(
            forward_rw,
            (0.3,),
            backward_rw,
            (0.3,),
            new_args=(2,),
            observations={"y1": Y1},
            key=mx.random.key(200 + r),
        )
        ratios.append(math.exp(float(state.log_ml_estimate)) / z)
    ratios_np = np.array(ratios)
    se = ratios_np.std(ddof=1) / math.sqrt(runs)
    assert abs(ratios_np.mean() - 1.0) < 4 * se + 1e-3
    assert se < 0.05  # the check has teeth: a 20% bias would fail


def test_batched_smcp3_edit_equals_per_particle_edits() -> None:
    n = 6
    state = _init(n, 3)
    key = mx.random.key(4)
    obs = choicemap({"y1": Y1})
    req = ProposalEdit(forward_opt, (), backward_opt, (), args=(2,), constraints=obs)
    new, w, _, _ = chain.edit(state.traces, req, key=key)
    keys = mx.random.split(key, n)
    for i in range(n):
        one = take_particles(state.traces, mx.array(i))
        new_i, w_i, _, back = chain.edit(one, req, key=keys[i])
        assert float(w_i) == pytest.approx(float(w[i]), abs=1e-6)
        assert float(new_i["x1"]) == pytest.approx(float(new["x1"][i]), abs=1e-6)
    assert isinstance(back, ProposalEdit) and back.args == (1,)


def test_edit_with_a_constraint_edit_is_a_bootstrap_step() -> None:
    from genmlx.core.edit import ConstraintEdit

    state = particle_filter(chain, (1,), {"y0": Y0}, 50, key=mx.random.key(0))
    via_edit = state.edit(ConstraintEdit(choicemap({"y1": Y1}), (2,)), key=mx.random.key(1))
    via_step = state.step((2,), {"y1": Y1}, key=mx.random.key(1))
    np.testing.assert_allclose(
        np.asarray(via_edit.log_weights), np.asarray(via_step.log_weights), atol=1e-6
    )


def test_the_bearings_only_example_tracks_and_the_tutorial_snippet_runs() -> None:
    import runpy
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    example = root / "examples" / "bearings_only.py"
    tutorial = root / "docs" / "tutorial-smc.rst"
    if not example.is_file() or not tutorial.is_file():
        pytest.skip("examples/ and docs/ are not in this checkout (an installed package)")
    ns = runpy.run_path(str(example))
    out = ns["main"](["--quick"])
    # the filter follows the target: its error is far below the target's range
    assert out["rmse"] < 0.5 * out["mean_range"]
    assert out["ess"] > 1
    text = tutorial.read_text()
    block = text.split(".. code-block:: python\n", 1)[1].split("\nParticle MCMC", 1)[0]
    code = "\n".join(line[4:] for line in block.splitlines())
    exec(compile(code, str(tutorial), "exec"), {})
