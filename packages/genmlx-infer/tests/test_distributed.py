"""Sharded inference (genmlx.infer.distributed).

* ``test_two_processes_agree_with_one``: launches two processes with
  ``mlx.launch -n 2 --backend ring`` and checks sharded importance sampling, SMC and
  many-chain MCMC against single-process runs (see ``_distributed_worker.py``).
* The rest run in this process: layouts and exchange plans (pure index arithmetic, for
  any number of processes), the one-process group (``mx.distributed.init()`` under plain
  ``python``) against the unsharded functions, the ``use_group`` default, and errors.
"""

from __future__ import annotations

import doctest
import json
import os
import signal
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from genmlx.combinators import Unfold
from genmlx.core import gen, select
from genmlx.dists import normal
from genmlx.infer import (
    chain,
    effective_sample_size_weights,
    importance_resampling,
    importance_sampling,
    mh,
    particle_filter,
    rhat,
)
from genmlx.infer.distributed import (
    Layout,
    ShardedParticleFilterState,
    current_group,
    use_group,
    vgenerate,
    vsimulate,
)
from genmlx.infer.distributed._exchange import plan

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_distributed_worker.py"

XS = mx.linspace(-1.0, 1.0, 8)
OBS = {"ys": 0.5 * XS + 0.2}


@gen
def regression(xs: mx.array) -> None:
    slope = normal(0.0, 1.0) @ "slope"
    normal(slope * xs, 0.5) @ "ys"


@gen
def step_kernel(t: int, x: mx.array) -> mx.array:
    x = normal(0.9 * x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


SSM = Unfold(step_kernel)
X0 = mx.array(0.0)
YS = [0.3, 0.8, 1.1, 0.2]


@pytest.fixture(scope="module")
def solo() -> mx.distributed.Group:
    g = mx.distributed.init()
    assert g.size() == 1
    return g


# ---------------------------------------------------------------------- layouts, plans
def test_balanced_layout_covers_every_index_once() -> None:
    for n in (5, 10, 101):
        for p in (1, 2, 3, 4):
            sizes = Layout.balanced(n, p, 0).sizes
            assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
            for r in range(p):
                lay = Layout.balanced(n, p, r)
                assert (lay.lo, lay.hi) == ((r * n) // p, ((r + 1) * n) // p)
            owners = Layout.balanced(n, p, 0).owner(np.arange(n))
            assert owners.tolist() == sorted(owners.tolist()) and set(owners) == set(range(p))


@pytest.mark.parametrize("sizes", [(3, 3, 4), (1, 5, 2), (4, 4)])
def test_exchange_plan_delivers_the_wanted_particles(sizes: tuple[int, ...]) -> None:
    """Simulate the exchange with numpy: every process ends up with exactly the particles
    it asked for, and only particles owned elsewhere travel (each once per owner)."""
    rng = np.random.default_rng(len(sizes))
    n = sum(sizes)
    payload = rng.normal(size=n)  # particle i's data
    lay = Layout(sizes, 0)
    wanted = [np.sort(rng.integers(0, n, size=s)) for s in sizes]
    p = plan(lay, wanted)
    starts = lay.starts
    buffers = []
    for s, e in enumerate(p.exports):
        assert np.all(lay.owner(e) == s) and len(np.unique(e)) == len(e)
        buf = np.zeros(p.width)
        buf[: e.size] = payload[e]
        buffers.append(buf)
    gathered = np.concatenate(buffers)
    for r in range(len(sizes)):
        own = payload[starts[r] : starts[r] + sizes[r]]
        got = np.concatenate([own, gathered])[p.source[r]]
        np.testing.assert_array_equal(got, payload[wanted[r]])
        assert p.imports[r] == bool((lay.owner(wanted[r]) != r).any())
    needed = {int(i) for r in range(len(sizes)) for i in wanted[r] if lay.owner(i) != r}
    assert needed == {int(i) for e in p.exports for i in e}


def test_exchange_plan_moves_nothing_when_nothing_crosses() -> None:
    lay = Layout((3, 2), 1)
    p = plan(lay, [np.array([0, 0, 2]), np.array([4, 3])])
    assert p.width == 0 and p.imports == [False, False]


def test_packed_gather_round_trips_every_dtype(solo: mx.distributed.Group) -> None:
    from genmlx.infer.distributed._comm import gather_packed

    leaves = [
        mx.zeros((3, 0)),
        mx.array([[1.5, -2.0], [3.0, 4.0], [5.0, 6.0]]),
        mx.array([True, False, True]),
        mx.arange(3, dtype=mx.int32),
        mx.array([1, 2, 3], dtype=mx.uint32),
        mx.array([[0.5], [0.25], [2.0]], dtype=mx.float16),
    ]
    for got, want in zip(gather_packed(leaves, 3, solo), leaves):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert mx.array_equal(got, want)


# ---------------------------------------------------------------------- one process
def test_one_process_importance_sampling_is_the_unsharded_run(solo: mx.distributed.Group) -> None:
    ref = importance_sampling(regression, (XS,), OBS, 50, key=mx.random.key(0))
    res = importance_sampling(regression, (XS,), OBS, 50, key=mx.random.key(0), group=solo)
    assert mx.array_equal(res.traces["slope"], ref.traces["slope"])
    assert mx.array_equal(res.traces.score, ref.traces.score)
    assert mx.allclose(res.log_weights, ref.log_weights, atol=1e-6)
    assert abs(res.log_ml_estimate.item() - ref.log_ml_estimate.item()) < 1e-5
    ess = effective_sample_size_weights(res.log_weights, group=solo)
    assert abs(ess.item() - effective_sample_size_weights(ref.log_weights).item()) < 1e-3
    one = importance_resampling(regression, (XS,), OBS, 50, key=mx.random.key(1), group=solo)
    assert one["slope"].item() == importance_resampling(
        regression, (XS,), OBS, 50, key=mx.random.key(1)
    )["slope"].item()


def test_one_process_particle_filter_is_the_unsharded_run(solo: mx.distributed.Group) -> None:
    def run(**kw: object) -> object:
        keys = mx.random.split(mx.random.key(3), 3 * len(YS))
        st = particle_filter(SSM, (1, X0), {(0, "y"): YS[0]}, 30, key=keys[0], **kw)
        for t in range(1, len(YS)):
            st = st.resample(key=keys[3 * t])
            st = st.step((t + 1, X0), {(t, "y"): YS[t]}, key=keys[3 * t + 1])
            st = st.rejuvenate(mh, select((t, "x")), key=keys[3 * t + 2])
        return st

    ref = run()
    for mode in ("global", "island"):
        st = run(group=solo, mode=mode)
        assert isinstance(st, ShardedParticleFilterState)
        assert (st.n_particles, st.n_local, st.offset) == (30, 30, 0)
        for t in range(len(YS)):
            assert mx.array_equal(st.traces[(t, "x")], ref.traces[(t, "x")])
        assert mx.array_equal(st.log_ml_accumulated, ref.log_ml_accumulated)
        assert abs(st.log_ml_estimate.item() - ref.log_ml_estimate.item()) < 1e-5
        assert abs(st.ess().item() - ref.ess().item()) < 1e-3
        assert mx.allclose(st.normalized_weights(), ref.normalized_weights(), atol=1e-6)
        full = st.gather()
        assert mx.array_equal(full.log_weights, ref.log_weights)


def test_one_process_chains_are_the_batched_mh_chains(solo: mx.distributed.Group) -> None:
    tr, _ = regression.vgenerate((XS,), OBS, 6, key=mx.random.key(4))
    assert mx.array_equal(
        vgenerate(regression, (XS,), OBS, 6, key=mx.random.key(4), group=solo)["slope"],
        tr["slope"],
    )
    assert mx.array_equal(
        vsimulate(regression, (XS,), 6, key=mx.random.key(4), group=solo)["slope"],
        regression.vsimulate((XS,), 6, key=mx.random.key(4))["slope"],
    )
    k = partial(mh, selection_or_proposal=select("slope"))
    ref = chain(k, tr, 25, key=mx.random.key(5), addresses=["slope"], burn_in=5, thin=2)
    res = chain(k, tr, 25, key=mx.random.key(5), addresses=["slope"], burn_in=5, thin=2,
                group=solo)
    assert mx.array_equal(res.samples["slope"], ref.samples["slope"])
    assert mx.array_equal(res.acceptance_rate, ref.acceptance_rate)
    draws = ref.samples["slope"].T
    assert rhat(draws, layout="chain_draw", group=solo).item() == rhat(
        draws, layout="chain_draw"
    ).item()
    assert rhat(res, group=solo).item() == rhat(ref).item()


def test_one_process_single_trace_is_one_chain(solo: mx.distributed.Group) -> None:
    tr, _ = regression.generate((XS,), OBS, key=mx.random.key(6))
    k = partial(mh, selection_or_proposal=select("slope"))
    res = chain(k, tr, 10, key=mx.random.key(7), addresses=["slope"], group=solo)
    assert res.trace.batch_shape == () and res.samples["slope"].shape == (10,)
    assert res.acceptance_rate.shape == ()


def test_use_group_is_the_default_and_nests(solo: mx.distributed.Group) -> None:
    assert current_group() is None
    with use_group(solo):
        assert current_group() is solo
        st = particle_filter(SSM, (1, X0), {(0, "y"): YS[0]}, 10, key=mx.random.key(8))
        assert isinstance(st, ShardedParticleFilterState)
    assert current_group() is None
    st = particle_filter(SSM, (1, X0), {(0, "y"): YS[0]}, 10, key=mx.random.key(8))
    assert not isinstance(st, ShardedParticleFilterState)


@pytest.mark.parametrize(
    "module",
    ["genmlx.infer.distributed._comm", "genmlx.infer.distributed._exchange",
     "genmlx.infer.distributed.mcmc"],
)
def test_docstring_examples_run(module: str) -> None:
    import importlib

    result = doctest.testmod(importlib.import_module(module), verbose=False)
    assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------- errors
def test_bad_groups_and_modes_are_rejected(solo: mx.distributed.Group) -> None:
    with pytest.raises(TypeError, match="mlx.core.distributed.Group"):
        importance_sampling(regression, (XS,), OBS, 10, key=mx.random.key(0), group="ring")
    with pytest.raises(TypeError, match="use_group"), use_group(3):
        pass
    with pytest.raises(ValueError, match="mode"):
        particle_filter(SSM, (1, X0), {(0, "y"): YS[0]}, 10, key=mx.random.key(0),
                        group=solo, mode="archipelago")
    with pytest.raises(ValueError, match="mode"):
        particle_filter(SSM, (1, X0), {(0, "y"): YS[0]}, 10, key=mx.random.key(0), mode="x")
    st = particle_filter(SSM, (1, X0), {(0, "y"): YS[0]}, 10, key=mx.random.key(0), group=solo)
    with pytest.raises(ValueError, match="unknown method"):
        st.resample("bogus", key=mx.random.key(1))
    with pytest.raises(TypeError, match="ess_threshold"):
        st.maybe_resample("half", key=mx.random.key(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_samples"):
        importance_resampling(regression, (XS,), OBS, 10, key=mx.random.key(0), n_samples=0,
                              group=solo)
    tr, _ = regression.vgenerate((XS,), OBS, 2, key=mx.random.key(0))

    def reads_values(t: object, *, key: mx.array) -> tuple[object, mx.array]:
        flag = t["slope"].item() > 0  # type: ignore[index]
        return t, mx.array(flag)

    with pytest.raises(ValueError, match="must not read values in Python"):
        chain(reads_values, tr, 2, key=mx.random.key(0), group=solo)
    with pytest.raises(ValueError, match="n_steps"):
        chain(partial(mh, selection_or_proposal=select("slope")), tr, 0, key=mx.random.key(0),
              group=solo)


# ---------------------------------------------------------------------- two processes
def _free_ports(n: int) -> int:
    """A port p with p..p+n-1 free on 127.0.0.1 (mlx.launch's ring uses consecutive ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        if start + n >= 65535:
            continue
        try:
            socks = []
            for i in range(n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", start + i))
            return start
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no free ports for the ring backend")


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own session; on timeout end that session's processes."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=HERE)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} timed out after {timeout}s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _launcher() -> list[str]:
    script = Path(sys.executable).parent / "mlx.launch"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from mlx._distributed_utils.launch import main; main()"]


def test_two_processes_agree_with_one(tmp_path: Path) -> None:
    ref = tmp_path / "reference.npz"
    done = _run([sys.executable, str(WORKER), "reference", str(ref)], timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
    reports = tmp_path / "reports"
    cmd = [*_launcher(), "-n", "2", "--backend", "ring", "--starting-port",
           str(_free_ports(2)), sys.executable, str(WORKER), "compare", str(ref), str(reports)]
    done = _run(cmd, timeout=300)
    failures = []
    for rank in (0, 1):
        path = reports / f"rank{rank}.json"
        assert path.exists(), f"rank {rank} wrote no report:\n{done.stdout[-4000:]}"
        for name, res in json.loads(path.read_text())["checks"].items():
            if not res["ok"]:
                failures.append(f"rank {rank}, {name}: {res['error']}\n{res['traceback']}")
    assert not failures, "\n".join(failures)
    assert done.returncode == 0, done.stdout[-4000:]
    expected = {"is_prior", "is_proposal", "sir", "smc_global", "smc_plain_model",
                "smc_island", "mcmc_mh",
                "mcmc_hmc", "nuts_pooled", "nuts_batched", "nuts_unpooled", "errors",
                "fresh_keys"}
    assert set(json.loads((reports / "rank0.json").read_text())["checks"]) == expected
