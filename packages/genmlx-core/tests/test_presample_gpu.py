"""Presampled Gaussian draws on a GPU (CUDA or Metal): the kernel against MLX's own
draws, and batched operations with and without presampling.

Skipped without a CUDA/Metal GPU (the CPU checks of the generated code are in
``test_presample.py``). Runs standalone with genmlx-core on ``PYTHONPATH``::

    PYTHONPATH=<mlx site>:packages/genmlx-core/src \\
        python -m pytest -q packages/genmlx-core/tests/test_presample_gpu.py
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import batching, choicemap, gen, presample

BACKEND = presample.active_backend()
if BACKEND not in ("cuda", "metal"):
    pytest.skip(
        "no CUDA/Metal GPU (presampling runs only there; the default device is "
        f"{mx.default_device()})",
        allow_module_level=True,
    )

from genmlx.core.testing.models import bernoulli, normal  # noqa: E402


@gen
def poly(xs):
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    c = normal(0.0, 1.0) @ "c"
    normal(a + b * xs + c * xs**2, 0.05) @ "ys"


@gen
def mixed(xs):
    mu = normal(0.0, 1.0) @ "mu"
    flip = bernoulli(0.3) @ "flip"
    w = normal(mx.zeros(5), 1.0) @ "w"
    tau = normal(mu, 0.5) @ "tau"
    normal(mu + tau * xs + w[2] + flip, 0.5) @ "ys"


XS = mx.linspace(0.0, 1.0, 50)
OBS = choicemap({"ys": 0.5 - 1.25 * XS + 2.0 * XS**2})


@pytest.mark.parametrize("per_key", [False, True])
@pytest.mark.parametrize("n", [1, 1000, 100_003])
def test_kernel_equals_mlx_draws(per_key: bool, n: int) -> None:
    plan = presample.Plan(((1, 1), (2, 3), (5, 4), (9, 2)))
    key = mx.random.key(123)
    keys = mx.random.split(mx.random.key(9), n) if per_key else None
    b0, z0 = presample.draw(presample.Presample(plan, "reference"), key, keys, n)
    b1, z1 = presample.draw(presample.Presample(plan, BACKEND), key, keys, n)
    assert np.array_equal(np.array(b0), np.array(b1))
    z0, z1 = np.array(z0), np.array(z1)
    assert np.allclose(z0, z1, rtol=2e-6, atol=2e-6), np.abs(z0 - z1).max()


@pytest.mark.parametrize(
    "model,addrs", [(poly, ["a", "b", "c"]), (mixed, ["mu", "flip", "w", "tau"])]
)
@pytest.mark.parametrize("n", [7, 10_000])
def test_vgenerate_presampled_equals_plain(model, addrs, n: int) -> None:
    before = presample.stats()["kernel_calls"]
    for i in range(3):  # interpreted, then compiled
        key = mx.random.key(i)
        with presample.enabled(False):
            t0, w0 = model.vgenerate((XS,), OBS, n, key=key)
        t1, w1 = model.vgenerate((XS,), OBS, n, key=key)
        for a in addrs:
            assert np.allclose(np.array(t0[a]), np.array(t1[a]), rtol=2e-6, atol=2e-6), a
        assert np.allclose(np.array(w0), np.array(w1), rtol=1e-4, atol=1e-2)
        assert np.allclose(np.array(t0.score), np.array(t1.score), rtol=1e-4, atol=1e-2)
    assert presample.stats()["kernel_calls"] > before


def test_vsimulate_and_keys_presampled_equals_plain() -> None:
    keys = mx.random.split(mx.random.key(4), 333)
    with presample.enabled(False):
        s0 = poly.vsimulate((XS,), 333, key=mx.random.key(3))
        g0, _ = batching.vgenerate(mixed, (XS,), OBS, 333, None, keys=keys)
    s1 = poly.vsimulate((XS,), 333, key=mx.random.key(3))
    g1, _ = batching.vgenerate(mixed, (XS,), OBS, 333, None, keys=keys)
    for a in ["a", "b", "c", "ys"]:
        assert np.allclose(np.array(s0[a]), np.array(s1[a]), rtol=2e-6, atol=2e-6), a
    for a in ["mu", "w", "tau"]:
        assert np.allclose(np.array(g0[a]), np.array(g1[a]), rtol=2e-6, atol=2e-6), a
