"""MH kernels, involutive MCMC, combinators and the chain runner.

Statistical tests run 2000 independent batched chains from fixed seeds and compare the
final states with exact conjugate posteriors: the mean within 5·sd/√N and the variance
within 5·var·√(2/(N−1)).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import mlx.core as mx
import pytest

from genmlx.core import ChoiceMap, choicemap, compile, gen, select
from genmlx.dists import bernoulli, beta, gamma, normal, poisson
from genmlx.infer.chain_runner import ChainResult, chain
from genmlx.infer.kernel_combinators import cycle, mix_kernels, repeat_kernel
from genmlx.infer.metropolis import involutive_mh, mh

N_CHAINS = 2000
YS = [0.3, 1.1, 0.7, 1.5, 0.9]
SIGMA = 0.5
POST_VAR = 1.0 / (1.0 + len(YS) / SIGMA**2)
POST_MEAN = POST_VAR * sum(YS) / SIGMA**2


@gen
def nn_model() -> None:
    mu = normal(0.0, 1.0) @ "mu"
    for i in range(len(YS)):
        normal(mu, SIGMA) @ ("y", i)


NN_OBS = choicemap({("y", i): v for i, v in enumerate(YS)})


@gen
def rw(tr: Any, s: float) -> None:
    normal(tr["mu"], s) @ "mu"


@gen
def scale_aux(tr: Any) -> None:
    normal(0.0, 0.3) @ "u"


def scale_move(t: ChoiceMap, u: ChoiceMap, _: tuple[Any, ...]) -> tuple[ChoiceMap, ChoiceMap]:
    """(mu, u) -> (mu·e^u, −u): an involution with |det J| = e^u."""
    return choicemap({"mu": t["mu"] * mx.exp(u["u"])}), choicemap({"u": -u["u"]})


def _batched_obs(obs: ChoiceMap, n: int) -> ChoiceMap:
    return obs.map(lambda v: mx.broadcast_to(v, (n, *v.shape))).with_batch_shape((n,))


def _init(n: int = N_CHAINS, key: int = 0) -> Any:
    tr, _ = nn_model.vgenerate((), NN_OBS, n, key=mx.random.key(key))
    return tr


def _assert_moments(x: mx.array, mean: float, var: float) -> None:
    n = x.size
    m = float(x.mean().item())
    v = float(x.var(ddof=1).item())
    assert abs(m - mean) < 5 * math.sqrt(var / n), (m, mean)
    assert abs(v - var) < 5 * var * math.sqrt(2.0 / (n - 1)), (v, var)


def _single(tr: Any, i: int, model: Any, obs: ChoiceMap, addr: str) -> Any:
    single, _ = model.generate((), obs.set(addr, tr[addr][i]), key=mx.random.key(0))
    return single


# ---------------------------------------------------------------- statistical tests
def test_selection_mh_normal_normal() -> None:
    res = chain(
        partial(mh, selection_or_proposal=select("mu")),
        _init(),
        200,
        key=mx.random.key(1),
        addresses=["mu"],
    )
    _assert_moments(res.trace["mu"], POST_MEAN, POST_VAR)
    rate = float(res.acceptance_rate.mean().item())
    assert 0.05 < rate < 0.6


def test_random_walk_mh_normal_normal() -> None:
    res = chain(
        partial(mh, selection_or_proposal=rw, proposal_args=(0.5,)),
        _init(),
        200,
        key=mx.random.key(2),
    )
    _assert_moments(res.trace["mu"], POST_MEAN, POST_VAR)
    assert res.samples == {}


def test_selection_mh_beta_bernoulli() -> None:
    xs = [True, True, False, True, True, False, True, True, False, True]

    @gen
    def bb() -> None:
        p = beta(2.0, 3.0) @ "p"
        for i in range(len(xs)):
            bernoulli(p) @ ("x", i)

    obs = choicemap({("x", i): v for i, v in enumerate(xs)})
    a, b = 2.0 + sum(xs), 3.0 + len(xs) - sum(xs)
    tr, _ = bb.vgenerate((), obs, N_CHAINS, key=mx.random.key(3))
    res = chain(partial(mh, selection_or_proposal=select("p")), tr, 200, key=mx.random.key(4))
    _assert_moments(res.trace["p"], a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1)))


def test_selection_mh_gamma_poisson() -> None:
    counts = [3, 5, 4, 6, 2]

    @gen
    def gp() -> None:
        lam = gamma(3.0, 1.0) @ "lam"  # shape, rate
        for i in range(len(counts)):
            poisson(lam) @ ("c", i)

    obs = choicemap({("c", i): mx.array(v) for i, v in enumerate(counts)})
    shape, rate = 3.0 + sum(counts), 1.0 + len(counts)
    tr, _ = gp.vgenerate((), obs, N_CHAINS, key=mx.random.key(5))
    res = chain(partial(mh, selection_or_proposal=select("lam")), tr, 300, key=mx.random.key(6))
    _assert_moments(res.trace["lam"], shape / rate, shape / rate**2)


def test_involutive_scale_move_normal_normal() -> None:
    # the scale move keeps the sign of mu, so start every chain at mu > 0 (the posterior
    # puts probability 4e-5 below 0); without the Jacobian term e^u it is biased
    n = N_CHAINS
    mu0 = mx.abs(mx.random.normal((n,), key=mx.random.key(7))) + 0.1
    cons = choicemap({"mu": mu0}, batch_shape=(n,)).merge(_batched_obs(NN_OBS, n))
    tr, _ = nn_model.vgenerate((), cons, n, key=mx.random.key(8))
    kernel = partial(involutive_mh, proposal=scale_aux, proposal_args=(), involution=scale_move)
    res = chain(kernel, tr, 200, key=mx.random.key(9))
    _assert_moments(res.trace["mu"], POST_MEAN, POST_VAR)


def test_mix_and_cycle_normal_normal() -> None:
    sel = partial(mh, selection_or_proposal=select("mu"))
    walk = partial(mh, selection_or_proposal=rw, proposal_args=(0.3,))
    kernel = cycle(mix_kernels([sel, walk], [0.5, 0.5]), walk)
    res = chain(kernel, _init(), 100, key=mx.random.key(10))
    _assert_moments(res.trace["mu"], POST_MEAN, POST_VAR)


# ---------------------------------------------------------------- per-chain exactness
@pytest.mark.parametrize(
    "kernel",
    [
        partial(mh, selection_or_proposal=select("mu")),
        partial(mh, selection_or_proposal=rw, proposal_args=(0.5,)),
        partial(involutive_mh, proposal=scale_aux, proposal_args=(), involution=scale_move),
    ],
    ids=["selection", "proposal", "involutive"],
)
def test_batched_chain_i_equals_single_chain(kernel: Any) -> None:
    n = 8
    tr = _init(n, key=11)
    key = mx.random.key(12)
    new, info = kernel(tr, key=key)
    assert info.accepted.shape == (n,)
    assert new.batch_shape == (n,)
    keys = mx.random.split(key, n)
    accs = []
    for i in range(n):
        single = _single(tr, i, nn_model, NN_OBS, "mu")
        s_new, s_acc_info = kernel(single, key=keys[i])
        assert s_acc_info.accepted.shape == ()
        assert s_new.batch_shape == ()
        assert bool(s_acc_info.accepted.item()) == bool(info.accepted[i].item())
        assert mx.allclose(s_new["mu"], new["mu"][i], atol=1e-5)
        assert mx.allclose(s_new.score, new.score[i], atol=1e-4)
        accs.append(bool(s_acc_info.accepted.item()))
        # a rejected chain keeps its state
        if not accs[-1]:
            assert bool((new["mu"][i] == tr["mu"][i]).item())
    # chains decide on their own: with these seeds some accept and some reject
    assert 0 < sum(accs) < n


def test_new_trace_scores_are_consistent() -> None:
    tr = _init(50, key=13)
    new, _ = mh(tr, rw, (0.5,), key=mx.random.key(14))
    mu = new["mu"]
    expect = normal.log_prob(mu, 0.0, 1.0) + sum(
        normal.log_prob(mx.array(v), mu, SIGMA) for v in YS
    )
    assert mx.allclose(new.score, expect, atol=1e-4)
    assert bool(mx.all(new[("y", 1)] == YS[1]).item())


# ---------------------------------------------------------------- compilation
@pytest.mark.parametrize(
    "kernel",
    [
        partial(mh, selection_or_proposal=select("mu")),
        partial(mh, selection_or_proposal=rw, proposal_args=(0.5,)),
        partial(involutive_mh, proposal=scale_aux, proposal_args=(), involution=scale_move),
    ],
    ids=["selection", "proposal", "involutive"],
)
def test_compiled_chain_equals_interpreted(kernel: Any) -> None:
    tr = _init(64, key=15)
    key = mx.random.key(16)

    def run(k: mx.array, t: Any) -> ChainResult:
        return chain(kernel, t, 10, key=k, addresses=["mu"])

    a = run(key, tr)
    b = compile(run)(key, tr)
    assert mx.allclose(a.samples["mu"], b.samples["mu"], atol=1e-5)
    assert mx.allclose(a.trace.score, b.trace.score, atol=1e-5)
    assert mx.array_equal(a.acceptance_rate, b.acceptance_rate)


# ---------------------------------------------------------------- involution Jacobian
def test_involution_log_det_is_automatic() -> None:
    single = _single(_init(4, key=17), 0, nn_model, NN_OBS, "mu")
    key = mx.random.key(18)
    _, info = involutive_mh(single, scale_aux, (), scale_move, key=key, check=True)
    # recompute the acceptance log ratio by hand: log α = w + u (q symmetric in ±u)
    k_prop, k_upd, k_acc = mx.random.split(key, 3)
    u = scale_aux.propose((single,), key=k_prop).choices["u"]
    new_mu = single["mu"] * mx.exp(u)
    new, w, _, _ = single.update(choicemap({"mu": new_mu}))
    log_alpha = w + u
    expect = mx.log(mx.random.uniform(shape=(), key=k_acc)) < log_alpha
    assert bool(info.accepted.item()) == bool(expect.item())


def test_involution_linear_two_dimensional() -> None:
    # (a, b, u) -> (a + u, b - 2u, -u) is an involution (twice gives (a, b, u)) with
    # |det J| = 1; q is symmetric in ±u, so log α = w.
    @gen
    def m2() -> None:
        a = normal(0.0, 1.0) @ "a"
        b = normal(0.0, 2.0) @ "b"
        normal(a + b, 0.5) @ "y"

    @gen
    def aux(tr: Any) -> None:
        normal(0.0, 0.5) @ "u"

    def shear(t: ChoiceMap, u: ChoiceMap, _: Any) -> tuple[ChoiceMap, ChoiceMap]:
        return (
            choicemap({"a": t["a"] + u["u"], "b": t["b"] - 2.0 * u["u"]}),
            choicemap({"u": -u["u"]}),
        )

    # exact posterior of a+b given y: s ~ N(0, 5); y | s ~ N(s, 0.25)
    n = N_CHAINS
    tr, _ = m2.vgenerate((), {"y": 1.0}, n, key=mx.random.key(19))
    kern = cycle(
        partial(involutive_mh, proposal=aux, proposal_args=(), involution=shear),
        partial(mh, selection_or_proposal=select("a")),
    )
    res = chain(kern, tr, 200, key=mx.random.key(20))
    s = res.trace["a"] + res.trace["b"]
    v = 1.0 / (1.0 / 5.0 + 1.0 / 0.25)
    _assert_moments(s, v * 1.0 / 0.25, v)


def test_check_rejects_non_involution() -> None:
    def not_involution(t: ChoiceMap, u: ChoiceMap, _: Any) -> tuple[ChoiceMap, ChoiceMap]:
        return choicemap({"mu": t["mu"] * mx.exp(u["u"])}), u

    tr = _init(6, key=21)
    with pytest.raises(ValueError, match="twice"):
        involutive_mh(tr, scale_aux, (), not_involution, key=mx.random.key(0), check=True)
    single = _single(tr, 0, nn_model, NN_OBS, "mu")
    with pytest.raises(ValueError, match="twice"):
        involutive_mh(single, scale_aux, (), not_involution, key=mx.random.key(0), check=True)
    # the real involution passes the check, batched too
    _, info = involutive_mh(tr, scale_aux, (), scale_move, key=mx.random.key(0), check=True)
    assert info.accepted.shape == (6,)


def test_dimension_mismatch_is_an_error() -> None:
    def drop(t: ChoiceMap, u: ChoiceMap, _: Any) -> tuple[ChoiceMap, ChoiceMap]:
        return choicemap({"mu": t["mu"] + u["u"]}), choicemap()

    single = _single(_init(2, key=22), 0, nn_model, NN_OBS, "mu")
    with pytest.raises(ValueError, match="equal dimension"):
        involutive_mh(single, scale_aux, (), drop, key=mx.random.key(0))


# ---------------------------------------------------------------- combinators/runner
def test_repeat_equals_manual_steps() -> None:
    tr = _init(16, key=23)
    k = partial(mh, selection_or_proposal=rw, proposal_args=(0.5,))
    key = mx.random.key(24)
    out, frac_info = repeat_kernel(k, 3)(tr, key=key)
    manual, total = tr, mx.zeros((16,))
    for sub in mx.random.split(key, 3):
        manual, a_info = k(manual, key=sub)
        total = total + a_info.accepted
    assert mx.array_equal(out["mu"], manual["mu"])
    assert mx.allclose(frac_info.accepted, total / 3)


def test_mix_with_degenerate_probs_picks_that_kernel() -> None:
    tr = _init(16, key=25)
    k0 = partial(mh, selection_or_proposal=select("mu"))
    k1 = partial(mh, selection_or_proposal=rw, proposal_args=(0.5,))
    key = mx.random.key(26)
    out, info = mix_kernels([k0, k1], [0.0, 1.0])(tr, key=key)
    ref, ref_acc_info = k1(tr, key=mx.random.split(key, 3)[2])
    assert mx.array_equal(out["mu"], ref["mu"])
    assert mx.array_equal(info.accepted, ref_acc_info.accepted.astype(mx.float32))
    # single traces work as well
    s = _single(tr, 0, nn_model, NN_OBS, "mu")
    s_out, s_acc_info = mix_kernels([k0, k1], [0.5, 0.5])(s, key=key)
    assert s_out.batch_shape == () and s_acc_info.accepted.shape == ()


def test_chain_burn_in_thin_and_single_trace() -> None:
    tr = _init(5, key=27)
    k = partial(mh, selection_or_proposal=rw, proposal_args=(0.5,))
    res = chain(k, tr, 11, key=mx.random.key(28), burn_in=2, thin=3, addresses=["mu", ("y", 0)])
    assert res.samples["mu"].shape == (3, 5)  # steps 2, 5, 8
    assert res.samples[("y", 0)].shape == (3, 5)
    assert res.acceptance_rate.shape == (5,)
    full = chain(k, tr, 11, key=mx.random.key(28), addresses=["mu"])
    assert mx.array_equal(full.samples["mu"][mx.array([2, 5, 8])], res.samples["mu"])
    assert mx.array_equal(full.samples["mu"][-1], full.trace["mu"])
    single = _single(tr, 0, nn_model, NN_OBS, "mu")
    s = chain(k, single, 50, key=mx.random.key(29), addresses=["mu"])
    assert s.samples["mu"].shape == (50,)
    assert s.acceptance_rate.shape == ()
    assert 0.0 < float(s.acceptance_rate.item()) < 1.0


def test_bad_arguments() -> None:
    tr = _init(4, key=30)
    key = mx.random.key(0)
    with pytest.raises(TypeError, match="Selection"):
        mh(tr, "mu", key=key)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="proposal_args"):
        mh(tr, select("mu"), (1.0,), key=key)
    with pytest.raises(TypeError, match="trace"):
        mh("not a trace", select("mu"), key=key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="proposal"):
        involutive_mh(tr, select("mu"), (), scale_move, key=key)  # type: ignore[arg-type]
    k = partial(mh, selection_or_proposal=select("mu"))
    with pytest.raises(ValueError, match="n_steps"):
        chain(k, tr, 0, key=key)
    with pytest.raises(ValueError, match="burn_in"):
        chain(k, tr, 5, key=key, burn_in=5)
    with pytest.raises(ValueError, match="thin"):
        chain(k, tr, 5, key=key, thin=0)
    with pytest.raises(ValueError, match="probs"):
        mix_kernels([k, k], [0.7, 0.7])
    with pytest.raises(ValueError, match="probability"):
        mix_kernels([k, k], [1.0])
    with pytest.raises(ValueError, match="positive"):
        repeat_kernel(k, 0)
    with pytest.raises(ValueError, match="kernel"):
        cycle()


def test_lu_log_abs_det_matches_closed_forms() -> None:
    from genmlx.infer.metropolis import _lu_log_abs_det

    # needs pivoting: zero leading entry
    perm = mx.array([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [0.5, 0.0, 0.0]])
    assert abs(float(_lu_log_abs_det(perm).item()) - math.log(3.0)) < 1e-5
    a = mx.array([[2.0, 1.0], [4.0, -3.0]])  # det = -10
    assert abs(float(_lu_log_abs_det(a).item()) - math.log(10.0)) < 1e-5
    tri = mx.array([[1.0, 5.0, -2.0], [0.0, -0.5, 7.0], [0.0, 0.0, 4.0]])  # |det| = 2
    assert abs(float(_lu_log_abs_det(tri).item()) - math.log(2.0)) < 1e-5


def test_involution_jacobian_values() -> None:
    from genmlx.infer.metropolis import _involution_jacobian

    t = choicemap({"mu": 1.3, ("y", 0): 0.3})
    u = choicemap({"u": 0.2})
    new_t, new_u, log_det = _involution_jacobian(scale_move, t, u, ())
    assert abs(float(log_det.item()) - 0.2) < 1e-5  # |det| = e^u
    assert abs(float(new_t["mu"].item()) - 1.3 * math.exp(0.2)) < 1e-5
    assert abs(float(new_u["u"].item()) + 0.2) < 1e-6

    def polar_swap(t: ChoiceMap, u: ChoiceMap, _: Any) -> tuple[ChoiceMap, ChoiceMap]:
        # (a, b) -> (2b, a/2) and the vector u: (u0, u1) -> (3 u1, u0/3); both are
        # involutions with |det| = 1
        return (
            choicemap({"a": 2.0 * t["b"], "b": t["a"] / 2.0}),
            choicemap({"v": mx.stack([3.0 * u["v"][1], u["v"][0] / 3.0])}),
        )

    t2 = choicemap({"a": 0.4, "b": -1.0})
    u2 = choicemap({"v": mx.array([0.1, 0.7])})
    _, _, ld = _involution_jacobian(polar_swap, t2, u2, ())
    assert abs(float(ld.item())) < 1e-5
