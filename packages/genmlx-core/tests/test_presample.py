"""Presampled Gaussian draws (genmlx.core.presample): the one-kernel path of a batched
operation gives the particles exactly the draws of their own keys.

Off a GPU the plan runs through MLX operations (``force("reference")``: bit-equal to no
presampling) or through the generated C code (``force("c")``: the Threefry words and
the key derivation must match MLX's exactly, so the normals agree to float32 rounding of
the inverse error function). GPU runs: ``tests/test_fused_gpu.py``.
"""

from __future__ import annotations

import shutil

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import batching, choicemap, gen, presample
from genmlx.core.testing.models import bernoulli, normal

HAVE_CC = shutil.which("cc") is not None


@gen
def flat(xs):
    a = normal(0.0, 1.0) @ "a"
    w = normal(mx.zeros(3), 2.0) @ "w"  # odd size: the last word uses counter (1, 0)
    v = normal(mx.zeros(4), 1.0) @ "v"  # even size
    normal(a + w[0] * xs + v[1], 0.3) @ "ys"
    return a


@gen
def inner(m):
    return normal(m, 1.0) @ "u"


@gen
def mixed(xs):
    mu = normal(0.0, 1.0) @ "mu"
    flip = bernoulli(0.3) @ "flip"  # not Gaussian: draws from its key
    tau = normal(mu, 0.5) @ "tau"  # parameters depend on an earlier choice
    sub = inner(tau) @ "sub"  # a sub-call: its own stream
    big = normal(mx.zeros(300), 1.0) @ "big"  # over MAX_NORMALS: drawn as usual
    normal(mu + tau * xs + sub + flip, 0.5) @ "ys"
    return big.sum()


XS = mx.linspace(0.0, 1.0, 7)
OBS = choicemap({"ys": mx.sin(XS)})


def _vgen(model, obs, n, key, **kw):
    tr, w = model.vgenerate((XS,), obs, n, key=key, **kw)
    mx.eval(tr.score, w)
    return tr, w


def _assert_same(t0, t1, addrs):
    for a in addrs:
        assert np.array_equal(np.array(t0[a]), np.array(t1[a])), a
    assert np.array_equal(np.array(t0.score), np.array(t1.score))


def test_plan_records_counters_and_sizes():
    assert presample.plan_for(flat, "vgenerate", (XS,), OBS) == presample.Plan(
        ((1, 1), (2, 3), (3, 4))
    )
    # vsimulate also draws the observed site (counter 4, seven values)
    assert presample.plan_for(flat, "vsimulate", (XS,)) == presample.Plan(
        ((1, 1), (2, 3), (3, 4), (4, 7))
    )
    # a non-Gaussian site takes a counter too; the sub-call and the big site are left out
    assert presample.plan_for(mixed, "vgenerate", (XS,), OBS) == presample.Plan(((1, 1), (3, 1)))
    # a constrained latent draws nothing
    obs2 = choicemap({"ys": mx.sin(XS), "a": 0.5})
    assert presample.plan_for(flat, "vgenerate", (XS,), obs2) == presample.Plan(((1, 3), (2, 4)))


@pytest.mark.parametrize("model", [flat, mixed])
def test_reference_backend_is_bit_equal(model):
    key = mx.random.key(11)
    with presample.enabled(False):
        t0, w0 = _vgen(model, OBS, 16, key)
    before = presample.stats()["presampled_sites"]
    with presample.force("reference"):
        t1, w1 = _vgen(model, OBS, 16, key)
    assert presample.stats()["presampled_sites"] > before  # the path was taken
    addrs = ["a", "w", "v"] if model is flat else ["mu", "flip", "tau", ("sub", "u"), "big"]
    _assert_same(t0, t1, addrs)
    assert np.array_equal(np.array(w0), np.array(w1))


def test_vsimulate_and_explicit_keys():
    key = mx.random.key(5)
    keys = mx.random.split(mx.random.key(6), 9)
    with presample.enabled(False):
        s0 = flat.vsimulate((XS,), 9, key=key)
        g0, gw0 = batching.vgenerate(flat, (XS,), OBS, 9, None, keys=keys)
    with presample.force("reference"):
        s1 = flat.vsimulate((XS,), 9, key=key)
        g1, gw1 = batching.vgenerate(flat, (XS,), OBS, 9, None, keys=keys)
    _assert_same(s0, s1, ["a", "w", "v", "ys"])
    _assert_same(g0, g1, ["a", "w", "v"])
    assert np.array_equal(np.array(gw0), np.array(gw1))


def test_batching_law_still_holds():
    """Particle i equals the unbatched run with split(key, n)[i]."""
    key = mx.random.key(3)
    with presample.force("reference"):
        tr, w = _vgen(flat, OBS, 5, key)
    ks = mx.random.split(key, 5)
    for i in range(5):
        t1, w1 = flat.generate((XS,), OBS, key=ks[i])
        assert np.allclose(np.array(tr["w"][i]), np.array(t1["w"]), rtol=0, atol=0)
        assert np.allclose(float(w[i]), float(w1), rtol=1e-6, atol=1e-5)


def test_compiled_signature_reuses_the_plan():
    key = mx.random.key(8)
    with presample.enabled(False):
        ref = [_vgen(flat, OBS, 32, mx.random.key(i))[1] for i in range(3)]
    with presample.force("reference"):
        got = [_vgen(flat, OBS, 32, mx.random.key(i))[1] for i in range(3)]  # 2nd+ compiled
    for a, b in zip(ref, got):
        assert np.array_equal(np.array(a), np.array(b))
    del key


def test_exceptions_leave_no_pending_stream():
    @gen
    def bad(xs):
        normal(0.0, 1.0) @ "a"
        raise RuntimeError("boom")

    with presample.force("reference"), pytest.raises(RuntimeError, match="boom"):
        bad.vsimulate((XS,), 4, key=mx.random.key(0))
    assert presample.take_pending() is None
    # a following ordinary run is unaffected
    with presample.enabled(False):
        t0 = flat.vsimulate((XS,), 4, key=mx.random.key(1))
    t1 = flat.vsimulate((XS,), 4, key=mx.random.key(1))
    _assert_same(t0, t1, ["a", "w"])


def test_off_gpu_by_default():
    assert presample.active_backend() in (None, "cuda", "metal")
    with presample.enabled(False):
        assert presample.active_backend() is None
    with pytest.raises(ValueError, match="unknown backend"):
        with presample.force("tpu"):
            pass  # entering the block is what raises


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc) to build the generated code")
@pytest.mark.parametrize("per_key", [False, True])
def test_generated_c_matches_mlx_draws(per_key):
    """The generator's C text (the CUDA/Metal kernels share its body) computes MLX's keys
    exactly and its normals to float32 rounding."""
    plan = presample.Plan(((1, 1), (2, 3), (5, 4), (9, 2)))
    n = 1000
    key = mx.random.key(123)
    src = mx.random.split(mx.random.key(9), n) if per_key else key
    pre_ref = presample.Presample(plan, "reference")
    pre_c = presample.Presample(plan, "c")
    b0, z0 = presample.draw(pre_ref, None if per_key else key, src if per_key else None, n)
    b1, z1 = presample.draw(pre_c, None if per_key else key, src if per_key else None, n)
    assert np.array_equal(np.array(b0), np.array(b1))
    z0, z1 = np.array(z0), np.array(z1)
    assert z0.shape == z1.shape == (n, plan.total)
    assert np.allclose(z0, z1, rtol=2e-6, atol=2e-6), np.abs(z0 - z1).max()
    # and they are standard normals: mean and variance within 5 standard errors
    m = n * plan.total
    assert abs(z1.mean()) < 5 / np.sqrt(m)
    assert abs(z1.var() - 1) < 5 * np.sqrt(2 / m)


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc) to build the generated code")
def test_c_backend_end_to_end():
    key = mx.random.key(21)
    with presample.enabled(False):
        t0, w0 = _vgen(flat, OBS, 64, key)
    with presample.force("c"):
        t1, w1 = _vgen(flat, OBS, 64, key)
    for a in ["a", "w", "v"]:
        assert np.allclose(np.array(t0[a]), np.array(t1[a]), rtol=2e-6, atol=2e-6)
    assert np.allclose(np.array(w0), np.array(w1), rtol=1e-5, atol=1e-4)


def test_kernel_sources_generate():
    plan = presample.Plan(((1, 1), (2, 3)))
    cu = presample.kernel_source(plan, "cuda")
    mt = presample.kernel_source(plan, "metal")
    assert "this_grid().thread_rank()" in cu and "thread_position_in_grid" in mt
    assert "erfinvf" in presample.kernel_header("cuda")
    assert "gm_erfinv" in presample.kernel_header("metal")
    with pytest.raises(ValueError):
        presample.kernel_source(plan, "vulkan")


def test_repeated_calls_reuse_one_compiled_program():
    """The plan is a static part of the compiled program's signature (compared by
    identity): repeated calls must hit the cache, not trace anew."""
    from genmlx.core import static

    @gen
    def m(xs):
        a = normal(0.0, 1.0) @ "a"
        normal(a * xs, 0.5) @ "ys"

    with presample.force("reference"):
        for i in range(6):
            _vgen(m, OBS, 16, mx.random.key(i))
        first = static.stats(m)["compiled_programs"]
        for i in range(6):
            _vgen(m, OBS, 16, mx.random.key(10 + i))
    assert 1 <= first <= 2  # (before and after the rewrite analysis: two signatures)
    assert static.stats(m)["compiled_programs"] == first
    assert presample.prepare(m, "vgenerate", (XS,), OBS) is None  # outside an operation: depth 0
