"""Robustness of genmlx.infer: degenerate weights raise (eager) or turn NaN (compiled),
every public argument of the kernels is validated at the call, chunked importance
sampling is exact, results survive pickle and save/load, and memory limits give a
MemoryError (checked in a subprocess)."""

from __future__ import annotations

import copy
import math
import os
import pickle
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.combinators import Unfold
from genmlx.core import compile, config, gen, load, param, save, select
from genmlx.dists import bernoulli, normal, uniform
from genmlx.infer import (
    DegenerateWeightsError,
    advi,
    black_box_vi,
    chain,
    elliptical_slice,
    gibbs,
    hmc,
    importance_resampling,
    importance_sampling,
    mala,
    map_optimize,
    mh,
    nuts,
    nuts_warmup,
    parallel_tempering,
    particle_filter,
    pmmh,
    repeat_kernel,
    resample_indices,
    train,
)

K = mx.random.key
XS = mx.arange(6.0)
YS = 0.7 * XS + 0.1


@gen
def line(xs):
    slope = normal(0.0, 1.0) @ "slope"
    normal(slope * xs, 1.0) @ "ys"
    return slope


@gen
def slope_proposal(xs):
    normal(0.6, 0.3) @ "slope"


@gen
def boxed():
    x = normal(0.0, 1.0) @ "x"
    uniform(x - 0.5, x + 0.5) @ "y"


@gen
def coin():
    p = bernoulli(0.3) @ "b"
    normal(mx.where(p, 1.0, -1.0), 1.0) @ "y"


@gen
def step(t, x):
    x = normal(x, 1.0) @ "x"
    uniform(x - 1.0, x + 1.0) @ "y"
    return x


CHAIN = Unfold(step)
X0 = mx.array(0.0)


# ----------------------------------------------------------------- degenerate weights
def test_importance_sampling_with_impossible_observations_raises() -> None:
    for f in (importance_sampling, importance_resampling):
        with pytest.raises(DegenerateWeightsError, match="no particle has positive weight"):
            f(boxed, (), {"y": 50.0}, 20, key=K(0))


def test_resample_indices_refuses_dead_and_nan_weights() -> None:
    for method in ("multinomial", "stratified", "systematic", "residual"):
        with pytest.raises(DegenerateWeightsError, match="resample: no particle"):
            resample_indices(mx.full((5,), -mx.inf), method, key=K(0))
        with pytest.raises(DegenerateWeightsError, match=r"NaN \(particles \[1\]\)"):
            resample_indices(mx.array([0.0, float("nan"), 1.0]), method, key=K(0))
    # a valid case still works, and dead particles are never picked
    idx = resample_indices(mx.array([0.0, -mx.inf, 0.0]), "multinomial", n_particles=200, key=K(0))
    assert not bool(mx.any(idx == 1).item())


def test_particle_filter_keeps_dead_particles_dead_and_refuses_to_resample_all_dead() -> None:
    st = particle_filter(CHAIN, (1, X0), {(0, "y"): 0.3}, 200, key=K(0))
    dead0 = np.isneginf(np.asarray(st.log_weights))
    assert dead0.any() and not dead0.all()
    st = st.step((2, X0), {(1, "y"): 0.5}, key=K(1))
    lw = np.asarray(st.log_weights)
    assert np.isneginf(lw[dead0]).all() and not np.isnan(lw).any()
    assert math.isfinite(float(st.log_ml_estimate))
    st = st.resample(key=K(2))
    st = st.step((3, X0), {(2, "y"): 100.0}, key=K(3))  # impossible for every particle
    assert float(st.log_ml_estimate) == -math.inf  # a correct estimate: Z = 0
    for f in (lambda: st.resample(key=K(4)), lambda: st.maybe_resample(100.0, key=K(4))):
        with pytest.raises(DegenerateWeightsError, match="particle filter's weights"):
            f()


def test_compiled_resampling_of_dead_weights_gives_nan_not_a_posterior() -> None:
    st = particle_filter(CHAIN, (1, X0), {(0, "y"): 0.3}, 50, key=K(0))
    st = st.step((2, X0), {(1, "y"): 100.0}, key=K(1))

    def resample(s: Any, k: mx.array) -> Any:
        return s.resample(key=k)

    with config.score_checks(False):
        out = compile(resample)(st, K(2))
    assert bool(mx.all(mx.isnan(out.log_weights)).item())
    assert not math.isfinite(float(out.log_ml_estimate))


# ----------------------------------------------------------------- chunked IS
@pytest.mark.parametrize("proposal", [None, slope_proposal])
def test_chunked_importance_sampling_equals_one_batch(proposal: Any) -> None:
    pargs = (XS,) if proposal is not None else ()
    one = importance_sampling(line, (XS,), {"ys": YS}, 1000, proposal, pargs, key=K(3))
    for chunk in (1000, 128, 999, 7):
        part = importance_sampling(
            line, (XS,), {"ys": YS}, 1000, proposal, pargs, key=K(3), chunk_size=chunk
        )
        assert part.traces.batch_shape == (1000,)
        assert np.array_equal(np.asarray(part.traces["slope"]), np.asarray(one.traces["slope"]))
        assert np.allclose(np.asarray(part.log_weights), np.asarray(one.log_weights), atol=1e-6)
        assert float(part.log_ml_estimate) == pytest.approx(float(one.log_ml_estimate), abs=1e-5)


@pytest.mark.parametrize("n_samples", [None, 7])
def test_chunked_importance_resampling_equals_one_batch(n_samples: Any) -> None:
    kw = dict(key=K(4), n_samples=n_samples, proposal=slope_proposal, proposal_args=(XS,))
    a = importance_resampling(line, (XS,), {"ys": YS}, 500, **kw)
    b = importance_resampling(line, (XS,), {"ys": YS}, 500, chunk_size=64, **kw)
    assert a.batch_shape == b.batch_shape
    assert np.array_equal(np.asarray(a["slope"]), np.asarray(b["slope"]))
    assert np.allclose(np.asarray(a.score), np.asarray(b.score), atol=1e-5)


def test_chunk_size_is_validated() -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises((ValueError, TypeError), match="chunk_size"):
            importance_sampling(line, (XS,), {"ys": YS}, 10, key=K(0), chunk_size=bad)


# ----------------------------------------------------------------- kernel arguments
def _traces() -> dict[str, Any]:
    single, _ = line.generate((XS,), {"ys": YS}, key=K(0))
    batched, _ = line.vgenerate((XS,), {"ys": YS}, 4, key=K(0))
    return {"eager": single, "batched": batched}


SEL = select("slope")
BAD_STEPS = [0.0, -0.1, float("nan"), float("inf")]


@pytest.mark.parametrize("mode", ["eager", "batched"])
@pytest.mark.parametrize("eps", BAD_STEPS)
def test_gradient_kernels_refuse_bad_step_sizes(mode: str, eps: float) -> None:
    tr = _traces()[mode]
    calls = {
        "hmc": lambda e: hmc(tr, SEL, step_size=e, n_leapfrog=3, key=K(1)),
        "nuts": lambda e: nuts(tr, SEL, step_size=e, max_depth=2, key=K(1)),
        "mala": lambda e: mala(tr, SEL, step_size=e, key=K(1)),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"{name}: step_size must be finite and positive"):
            call(eps)
        with pytest.raises(ValueError, match=f"{name}: step_size"):
            call(mx.array(eps))  # readable arrays are checked too


def test_compiled_kernels_with_bad_array_step_sizes_reject_instead_of_accepting() -> None:
    tr = _traces()["batched"]
    f_hmc = compile(lambda t, e, k: hmc(t, SEL, step_size=e, n_leapfrog=3, key=k))
    f_nuts = compile(lambda t, e, k: nuts(t, SEL, step_size=e, max_depth=2, key=k))
    for eps in BAD_STEPS:
        new, info = f_hmc(tr, mx.array(eps), K(1))
        assert not bool(mx.any(info.accepted).item())
        assert np.array_equal(np.asarray(new["slope"]), np.asarray(tr["slope"]))
        _, info = f_nuts(tr, mx.array(eps), K(1))
        assert not bool(mx.any(info.accepted).item())
    # python numbers are static under compile: refused when the function is traced
    with pytest.raises(ValueError, match="hmc: step_size"):
        compile(lambda t, k: hmc(t, SEL, step_size=0.0, n_leapfrog=3, key=k))(tr, K(1))
    # a good step size still moves
    _, info = f_hmc(tr, mx.array(0.05), K(1))
    assert bool(mx.any(info.accepted).item())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda t: hmc(t, SEL, step_size=0.1, n_leapfrog=0, key=K(1)), "n_leapfrog must be"),
        (
            lambda t: hmc(t, SEL, step_size=0.1, n_leapfrog=2.5, key=K(1)),
            "n_leapfrog must be an int",
        ),
        (lambda t: nuts(t, SEL, max_depth=-1, key=K(1)), "max_depth must be"),
        (lambda t: map_optimize(t, SEL, max_steps=-5), "max_steps must be"),
        (lambda t: map_optimize(t, SEL, step_size=0.0), "step_size must be in"),
        (lambda t: map_optimize(t, SEL, tol=-1.0), "tol must be in"),
        (lambda t: chain(partial(mh, selection_or_proposal=SEL), t, -1), "n_steps must be"),
        (lambda t: chain(partial(mh, selection_or_proposal=SEL), t, 5, burn_in=-1), "burn_in"),
        (lambda t: chain(partial(mh, selection_or_proposal=SEL), t, 5, thin=0), "thin must be"),
        (
            lambda t: chain(partial(mh, selection_or_proposal=SEL), t, 5, addresses="slope"),
            "addresses must be a list",
        ),
        (lambda t: repeat_kernel(partial(mh, selection_or_proposal=SEL), -2), "k must be"),
        (lambda t: nuts_warmup(t, SEL, 0, key=K(1)), "n_steps must be"),
        (lambda t: nuts_warmup(t, SEL, 10, key=K(1), target_accept=1.5), "target_accept"),
        (lambda t: mh(t, "slope", key=K(1)), "must be a Selection"),
        (lambda t: hmc(t, "slope", step_size=0.1, n_leapfrog=2, key=K(1)), "must be a Selection"),
        (lambda t: mh(t, SEL, key=mx.array([1.0, 2.0])), "mh: key must be a uint32"),
        (lambda t: elliptical_slice(t, "slope", 0.0, 1.0, key=K(1), max_shrinks=-1), "max_shrinks"),
        (lambda t: importance_sampling(line, (XS,), {"ys": YS}, -5), "n_particles"),
        (lambda t: importance_resampling(line, (XS,), {"ys": YS}, 5, n_samples=0), "n_samples"),
    ],
)
@pytest.mark.parametrize("mode", ["eager", "batched"])
def test_kernel_arguments_are_validated(call: Any, match: str, mode: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call(_traces()[mode])


@pytest.mark.parametrize(
    "mass, match",
    [
        (mx.array([[1.0, 0.0], [0.5, 1.0]]), "must be symmetric"),
        (mx.array([[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
        (mx.array([1.0, -1.0]), "diagonal mass must have finite positive"),
        (mx.array([[float("nan"), 0.0], [0.0, 1.0]]), "dense mass matrix"),
        (mx.ones((3,)), "shape"),
    ],
)
def test_invalid_mass_matrices_are_refused(mass: mx.array, match: str) -> None:
    @gen
    def two():
        normal(0.0, 1.0) @ "a"
        normal(0.0, 1.0) @ "b"

    tr = two.vsimulate((), 3, key=K(0))
    sel = select("a", "b")
    with pytest.raises(ValueError, match=f"hmc: .*{match}"):
        hmc(tr, sel, step_size=0.1, n_leapfrog=2, key=K(1), mass=mass)
    with pytest.raises(ValueError, match=f"nuts: .*{match}"):
        nuts(tr, sel, max_depth=2, key=K(1), mass=mass)


def test_kernels_refuse_a_nan_starting_trace_naming_the_chains() -> None:
    with config.score_checks(False):
        tr, _ = line.vgenerate((XS,), {"ys": mx.where(XS > 2, mx.nan, YS)}, 3, key=K(0))
        tr1, _ = coin.vgenerate((), {"y": float("nan")}, 3, key=K(0))
    kernels = {
        "mh": lambda: mh(tr, SEL, key=K(1)),
        "hmc": lambda: hmc(tr, SEL, step_size=0.1, n_leapfrog=2, key=K(1)),
        "nuts": lambda: nuts(tr, SEL, max_depth=2, key=K(1)),
        "mala": lambda: mala(tr, SEL, step_size=0.1, key=K(1)),
        "chain": lambda: chain(partial(mh, selection_or_proposal=SEL), tr, 3, key=K(1)),
        "elliptical_slice": lambda: elliptical_slice(tr, "slope", 0.0, 1.0, key=K(1)),
        "gibbs": lambda: gibbs(tr1, "b", key=K(1)),
    }
    for name, call in kernels.items():
        with pytest.raises(
            ValueError, match=rf"{name}: the trace's score is NaN \(chains \[0, 1, 2\]"
        ):
            call()


def test_key_is_optional_for_every_kernel() -> None:
    tr = _traces()["batched"]
    for call in (
        lambda: hmc(tr, SEL, step_size=0.05, n_leapfrog=2),
        lambda: nuts(tr, SEL, max_depth=2),
        lambda: mala(tr, SEL, step_size=0.05),
        lambda: elliptical_slice(tr, "slope", 0.0, 1.0),
    ):
        new, info = call()
        assert new.batch_shape == (4,) and info.accepted.shape == (4,)


# ----------------------------------------------------------------- saving results
def _results() -> dict[str, Any]:
    single, _ = line.generate((XS,), {"ys": YS}, key=K(0))
    batched, _ = line.vgenerate((XS,), {"ys": YS}, 8, key=K(0))
    st = particle_filter(CHAIN, (1, X0), {(0, "y"): 0.3}, 64, key=K(0))
    st = st.step((2, X0), {(1, "y"): 0.5}, key=K(1)).resample(key=K(2))
    st = st.step((3, X0), {(2, "y"): 0.4}, key=K(3))
    return {
        "is": importance_sampling(line, (XS,), {"ys": YS}, 100, key=K(1)),
        "chain_single": chain(
            partial(mh, selection_or_proposal=SEL), single, 5, key=K(2), addresses=["slope"]
        ),
        "chain_batched": chain(
            partial(mh, selection_or_proposal=SEL), batched, 5, key=K(2), addresses=["slope", "ys"]
        ),
        "pf": st,
    }


def _equal(a: Any, b: Any) -> None:
    if isinstance(a, mx.array):
        assert isinstance(b, mx.array) and a.shape == b.shape
        assert bool(mx.allclose(a, b, equal_nan=True))
    elif hasattr(a, "get_choices"):
        assert b.gen_fn is a.gen_fn and b.batch_shape == a.batch_shape
        _equal(a.score, b.score)
        for (pa, va), (pb, vb) in zip(a.get_choices().leaves(), b.get_choices().leaves()):
            assert pa == pb
            _equal(va, vb)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _equal(a[k], b[k])
    elif isinstance(a, tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _equal(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("name", ["is", "chain_single", "chain_batched", "pf"])
def test_results_round_trip_through_pickle_deepcopy_and_save(name: str, tmp_path: Path) -> None:
    res = _results()[name]
    for back in (pickle.loads(pickle.dumps(res)), copy.deepcopy(res)):
        _equal(res, back)
    path = tmp_path / f"{name}.safetensors"
    save(path, res)
    back = load(path)
    _equal(res, back)
    if name == "pf":  # the loaded filter keeps going, exactly like the original
        a = res.step((4, X0), {(3, "y"): 0.2}, key=K(9))
        b = back.step((4, X0), {(3, "y"): 0.2}, key=K(9))
        _equal(a.log_weights, b.log_weights)
        assert float(a.log_ml_estimate) == pytest.approx(float(b.log_ml_estimate))


@gen
def iid_model():
    mu = normal(0.0, 1.0) @ "mu"
    normal(mx.broadcast_to(mu, (3,)), 1.0) @ "ys"


@gen
def mu_guide():
    normal(param("m", 0.0), mx.exp(param("s", 0.0))) @ "mu"


@gen
def weight_model(x):
    normal(param("w", 0.0) * x, 1.0) @ "y"


IID_OBS = {"ys": mx.array([0.5, 1.0, 1.5])}


def _other_results() -> dict[str, Any]:
    """Builders (each result is made only when its test runs)."""
    tr, _ = iid_model.vgenerate((), IID_OBS, 8, key=K(0))
    return {
        "advi": lambda: advi(iid_model, (), IID_OBS, n_steps=20, key=K(0), compiled=False),
        "bbvi": lambda: black_box_vi(
            iid_model,
            (),
            IID_OBS,
            mu_guide,
            (),
            n_steps=10,
            key=K(0),
            params={"m": 0.0, "s": 0.0},
            compiled=False,
        ),
        "nuts": lambda: nuts(tr, select("mu"), key=K(1), max_depth=3),
        "train": lambda: train(
            weight_model,
            lambda k: ((mx.array(1.0),), {"y": 2.0}),
            {"w": 0.0},
            n_steps=5,
            key=K(0),
            compile=False,
        ),
        "tempering": lambda: parallel_tempering(
            iid_model,
            (),
            IID_OBS,
            [1.0, 0.5],
            selection=select("mu"),
            step_size=0.3,
            n_steps=5,
            key=K(0),
            addresses=["mu"],
        ),
        "pmmh": lambda: pmmh(
            lambda th, k: -mx.sum(th**2),
            lambda th: -mx.sum(th**2),
            mx.array([0.1]),
            5,
            step_size=0.3,
            key=K(0),
        ),
    }


@pytest.mark.parametrize("name", ["advi", "bbvi", "nuts", "train", "tempering", "pmmh"])
def test_other_results_round_trip(name: str, tmp_path: Path) -> None:
    res = _other_results()[name]()
    path = tmp_path / f"{name}.safetensors"
    save(path, res)
    for back in (pickle.loads(pickle.dumps(res)), copy.deepcopy(res), load(path)):
        if name in ("advi", "bbvi"):
            assert type(back) is type(res)
            a, b = res.sample(16, key=K(5)), back.sample(16, key=K(5))
            _equal(a["mu"], b["mu"])
            _equal(res.elbo_history, back.elbo_history)
        else:
            _equal(res, back)


# ----------------------------------------------------------------- memory
def test_importance_sampling_under_an_address_space_limit() -> None:
    code = """
        import resource
        lim = 3 * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        import mlx.core as mx
        from genmlx.core import gen
        from genmlx.dists import normal
        from genmlx.infer import importance_sampling, importance_resampling

        xs = mx.arange(100.0)
        @gen
        def line(xs):
            slope = normal(0.0, 1.0) @ "slope"
            normal(slope * xs, 1.0) @ "ys"
        obs = {"ys": 0.5 * xs}
        for n in (100_000_000, 4_000_000):
            try:
                importance_sampling(line, (xs,), obs, n, key=0)
                print("ok", n)
            except MemoryError as e:
                print("MemoryError", n, "chunk_size" in str(e))
        # chunks keep only the weights: far more particles than fit at once
        tr = importance_resampling(line, (xs,), obs, 4_000_000, key=0, chunk_size=500_000)
        print("resampled", round(float(tr["slope"]), 1))
    """
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-2000:]}"
    lines = res.stdout.strip().split("\n")
    assert lines[0] == "MemoryError 100000000 True"
    assert lines[1] == "MemoryError 4000000 True"
    assert lines[2] == "resampled 0.5"
