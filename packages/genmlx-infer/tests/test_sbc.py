"""Simulation-based calibration (Talts et al. 2018) of the MH, HMC, MALA and NUTS kernels.

Model: ``mu ~ N(0, 1)``, ``y_i ~ N(mu, 1)`` for 3 observations. For ``L`` replicates
(one batched chain each) draw ``(mu*, y) ~ p`` with ``vsimulate``, start chain ``l`` at
``vgenerate`` constrained on replicate ``l``'s ``y`` (per-chain constraints,
``choicemap(..., batch_shape=(L,))``), run the kernel, thin to roughly independent draws
and keep ``M`` of them. If the kernel leaves ``p(mu | y)`` invariant and mixes, the rank
``#{m : mu_m < mu*}`` is uniform on ``{0, …, M}``; we test that with Pearson's
chi-square over the ``M + 1`` rank values, its p-value from the Wilson–Hilferty
normal approximation (no scipy), and require ``p > 0.001`` (fixed seeds).

Power: a kernel targeting the wrong posterior, ``p(mu) p(y | mu)²`` (MH that counts the
likelihood twice, so its draws are too narrow), fails with ``p < 1e-6``. (An MH whose
acceptance *ignores* the likelihood would pass: it samples the prior, and prior draws
are calibrated against ``mu*`` by construction — SBC's known blind spot.)
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
from genmlx.infer.gradient_kernels import hmc, mala
from genmlx.infer.tempering import tempered_rw_mh

N_OBS = 3
L = 500  # replicates
M = 19  # posterior draws per replicate -> 20 rank values, 25 expected per value


@gen
def model() -> None:
    mu = normal(0.0, 1.0) @ "mu"
    for i in range(N_OBS):
        normal(mu, 1.0) @ ("y", i)


def chi2_sf_wilson_hilferty(x: float, k: int) -> float:
    """``P(χ²_k > x)`` by Wilson–Hilferty: ``(X/k)^{1/3} ≈ N(1 − 2/(9k), 2/(9k))``."""
    z = ((x / k) ** (1.0 / 3.0) - (1.0 - 2.0 / (9.0 * k))) / math.sqrt(2.0 / (9.0 * k))
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def sbc_p_value(kernel: Any, *, thin: int, burn: int, seed: int) -> float:
    k_prior, k_init, k_run = mx.random.split(mx.random.key(seed), 3)
    prior = model.vsimulate((), L, key=k_prior)
    mu_star = prior["mu"]
    cons = choicemap({("y", i): prior[("y", i)] for i in range(N_OBS)}, batch_shape=(L,))
    tr, _ = model.vgenerate((), cons, L, key=k_init)
    n_steps = burn + thin * M
    res = chain(
        kernel, tr, n_steps, key=k_run, burn_in=burn + thin - 1, thin=thin, addresses=["mu"]
    )
    draws = res.samples["mu"]  # [M, L]
    assert draws.shape == (M, L)
    ranks = mx.sum(draws < mu_star[None, :], axis=0)  # [L] in 0..M
    counts = [int(c) for c in mx.sum(ranks[:, None] == mx.arange(M + 1)[None, :], axis=0).tolist()]
    expected = L / (M + 1)
    stat = sum((c - expected) ** 2 / expected for c in counts)
    return chi2_sf_wilson_hilferty(stat, M)


def test_wilson_hilferty_accuracy() -> None:
    # reference values of the chi-square survival function (df = 19)
    assert abs(chi2_sf_wilson_hilferty(30.1435, 19) - 0.05) < 0.002
    assert abs(chi2_sf_wilson_hilferty(36.1909, 19) - 0.01) < 0.001
    assert abs(chi2_sf_wilson_hilferty(18.3377, 19) - 0.5) < 0.005


def test_batched_constraints_condition_each_chain() -> None:
    prior = model.vsimulate((), 5, key=mx.random.key(0))
    cons = choicemap({("y", i): prior[("y", i)] for i in range(N_OBS)}, batch_shape=(5,))
    tr, _ = model.vgenerate((), cons, 5, key=mx.random.key(1))
    for i in range(N_OBS):
        assert mx.array_equal(tr[("y", i)], prior[("y", i)]).item()


# (kernel, thinning). The posterior sd is 0.5 (precision 4, frequency 2): HMC's
# trajectory length 0.2·4 = 0.8 turns the phase by 1.6 rad ≈ π/2, nearly independent
# draws; a length of 0.3·5 = 1.5 (a phase of 3 ≈ π) would make successive HMC draws
# antithetic and thin=2 would return the chain to its start, which SBC rightly rejects.
# NUTS (ε = 0.3, at most 2⁴ − 1 = 15 leapfrog steps) stops near a half period and its
# successive draws are somewhat anti-correlated (thin=1 gives p ≈ 0.002), so it is
# thinned by 2 as well.
KERNELS = {
    "mh": (partial(mh, selection_or_proposal=select("mu")), 5),
    "hmc": (partial(hmc, selection=select("mu"), step_size=0.2, n_leapfrog=4), 2),
    "mala": (partial(mala, selection=select("mu"), step_size=0.6), 5),
    "nuts": (partial(nuts, selection=select("mu"), step_size=0.3, max_depth=4), 2),
    # the default depth (10) with dynamic termination: the trajectory stops at the U-turn
    "nuts_default_depth": (partial(nuts, selection=select("mu"), step_size=0.3), 2),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_sbc_calibrated(name: str) -> None:
    kernel, thin = KERNELS[name]
    p = sbc_p_value(kernel, thin=thin, burn=50, seed=2018)
    assert p > 1e-3, p


def test_sbc_detects_wrong_kernel() -> None:
    wrong = partial(
        tempered_rw_mh,
        selection=select("mu"),
        observed=select(*[("y", i) for i in range(N_OBS)]),
        beta=2.0,
        step_size=0.5,
    )
    p = sbc_p_value(lambda tr, *, key: wrong(tr, key=key), thin=5, burn=50, seed=2018)
    assert p < 1e-6, p
