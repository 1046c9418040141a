"""Single-trace (unbatched) posterior tests of the MCMC kernels.

Model (normal–normal): ``mu ~ N(0, 1)``, ``y_i ~ N(mu, σ²)`` with ``σ = 0.5`` and five
fixed observations, so ``mu | y ~ N(m, v)`` with ``v = 1 / (1 + n/σ²)`` and
``m = v Σy / σ²``. Each kernel runs ONE long chain from a single (unbatched) trace, with
a fixed seed; after burn-in the draws ``x_1..x_D`` must satisfy

* ``|mean(x) − m| < 5 √(v / ESS₁)``, ``ESS₁ = ess_bulk(x)``;
* ``|var(x) − v| < 5 v √(2 / (ESS₂ − 1))``, ``ESS₂ = ess_bulk((x − mean(x))²)``,

with ``ess_bulk`` from :mod:`genmlx.infer.diagnostics` on the chain reshaped to
``[1, D]``. The variance uses the ESS of the squared deviations: an HMC/NUTS chain can be
anti-correlated in ``x`` (ESS₁ > D) while ``x²`` is not, and the variance's error
follows the latter. The chain lengths keep each fast case at a few seconds on CPU
(single-trace steps are dominated by per-step overhead, NUTS most of all); the long
chains are behind ``slow``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import mlx.core as mx
import pytest

from genmlx.core import choicemap, gen, select
from genmlx.dists import normal
from genmlx.infer import chain, mh, nuts
from genmlx.infer.diagnostics import ess_bulk
from genmlx.infer.gradient_kernels import hmc, mala

YS = [0.3, 1.1, 0.7, 1.5, 0.9]
SIGMA = 0.5
POST_VAR = 1.0 / (1.0 + len(YS) / SIGMA**2)  # 1/21, posterior sd ≈ 0.218
POST_MEAN = POST_VAR * sum(YS) / SIGMA**2
BURN = 50


@gen
def nn_model() -> None:
    mu = normal(0.0, 1.0) @ "mu"
    for i in range(len(YS)):
        normal(mu, SIGMA) @ ("y", i)


@gen
def rw(tr: Any, s: float) -> None:
    """Symmetric Gaussian random-walk proposal for ``mu``."""
    normal(tr["mu"], s) @ "mu"


OBS = choicemap({("y", i): v for i, v in enumerate(YS)})
SEL = select("mu")

# name -> (kernel, fast chain length, slow chain length). HMC: ε·L = 0.36 turns the
# phase of the posterior's oscillator (frequency 1/0.218) by ≈ π/2, near-independent
# draws. NUTS is ~10–20 ms a single-trace step here, hence its short fast chain.
KERNELS: dict[str, tuple[Any, int, int]] = {
    "mh_selection": (partial(mh, selection_or_proposal=SEL), 3000, 5000),
    "mh_random_walk": (
        partial(mh, selection_or_proposal=rw, proposal_args=(0.4,)),
        2000,
        5000,
    ),
    "hmc": (partial(hmc, selection=SEL, step_size=0.12, n_leapfrog=3), 1200, 5000),
    "mala": (partial(mala, selection=SEL, step_size=0.3), 1500, 5000),
    "nuts": (partial(nuts, selection=SEL, step_size=0.2, max_depth=3), 300, 2000),
}


def _run_single_chain(kernel: Any, n_steps: int, seed: int) -> tuple[mx.array, float]:
    tr, _ = nn_model.generate((), OBS, key=mx.random.key(seed))
    assert tr.batch_shape == ()
    res = chain(kernel, tr, n_steps, key=mx.random.key(seed + 1), burn_in=BURN, addresses=["mu"])
    assert res.trace.batch_shape == ()
    x = res.samples["mu"]
    assert x.shape == (n_steps - BURN,)
    return x, float(res.acceptance_rate.item())


def _assert_posterior(x: mx.array) -> None:
    d = x.size
    m = float(x.mean().item())
    v = float(x.var(ddof=1).item())
    ess_mean = float(ess_bulk(x.reshape(1, d), layout="chain_draw").item())
    ess_var = float(ess_bulk(((x - x.mean()) ** 2).reshape(1, d), layout="chain_draw").item())
    # the chain must actually mix for the bounds to mean anything
    assert ess_mean > 50 and ess_var > 50, (ess_mean, ess_var)
    se_mean = math.sqrt(POST_VAR / ess_mean)
    se_var = POST_VAR * math.sqrt(2.0 / (ess_var - 1.0))
    assert abs(m - POST_MEAN) < 5 * se_mean, (m, POST_MEAN, se_mean, ess_mean)
    assert abs(v - POST_VAR) < 5 * se_var, (v, POST_VAR, se_var, ess_var)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_single_chain_posterior(name: str) -> None:
    kernel, n_fast, _ = KERNELS[name]
    x, acc = _run_single_chain(kernel, n_fast, seed=7)
    assert 0.05 < acc <= 1.0, acc
    _assert_posterior(x)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_single_chain_posterior_long(name: str) -> None:
    kernel, _, n_slow = KERNELS[name]
    x, acc = _run_single_chain(kernel, n_slow, seed=11)
    assert 0.05 < acc <= 1.0, acc
    _assert_posterior(x)


def test_single_chain_starts_at_generated_trace_and_keeps_observations() -> None:
    """Every kernel keeps the observations fixed and moves ``mu`` on a single trace."""
    for name, (kernel, _, _) in sorted(KERNELS.items()):
        tr, _ = nn_model.generate((), OBS, key=mx.random.key(3))
        res = chain(kernel, tr, 20, key=mx.random.key(4), addresses=["mu"])
        for i, y in enumerate(YS):
            assert abs(float(res.trace[("y", i)].item()) - y) < 1e-7, name
        assert res.samples["mu"].shape == (20,), name
        moved = mx.any(res.samples["mu"] != tr["mu"]).item()
        assert moved, name
