"""Fused kernels: planning, switches, the graph's repr, and that CPU runs never fuse.

The formulas and the whole fused path against the direct evaluation are tested in
genmlx-dists (``test_fused_formulas.py``: generated C compiled and called through
ctypes; the reference backend); the GPU kernels themselves in ``test_fused_gpu.py``.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import analyze, choicemap, fused, gen, logdensity, rewrites
from genmlx.core.testing.models import beta, normal

XS = mx.linspace(0, 1, 30)
YS = 0.5 - 1.25 * XS + 2.0 * XS**2 + 0.05 * mx.random.normal((30,), key=mx.random.key(2))
OBS = choicemap({"ys": YS})


@gen
def poly(xs):
    w = normal(mx.zeros(3), 1.0) @ "w"
    normal(w[0] + w[1] * xs + w[2] * xs**2, 0.05) @ "ys"


@gen
def poly_latent_sigma(xs):
    w = normal(mx.zeros(3), 1.0) @ "w"
    s = beta(2.0, 2.0) @ "s"
    normal(w[0] + w[1] * xs + w[2] * xs**2, 0.05 + s) @ "ys"


@gen
def nonlinear(xs):
    a = normal(0.0, 1.0) @ "a"
    normal(mx.exp(a * xs), 0.5) @ "ys"


@gen
def per_point_latent_sigma(xs):
    w = normal(mx.zeros(2), 1.0) @ "w"
    s = beta(2.0, 2.0) @ "s"
    normal(w[0] + w[1] * xs, 0.05 + s * xs) @ "ys"


@gen
def too_wide(x):
    w = normal(mx.zeros(40), 1.0) @ "w"
    normal(x @ w, 1.0) @ "ys"


def test_cpu_runs_never_fuse() -> None:
    assert mx.default_device().type != mx.DeviceType.gpu or not (
        mx.cuda.is_available() or mx.metal.is_available()
    )
    assert fused.active_backend() is None
    g = analyze(poly, (XS,), OBS)
    assert not any(r.kind == "fused" for r in rewrites.choose(g))
    assert "fused" not in repr(g)
    with rewrites.enabled(False):
        assert rewrites.choose(g) == ()
        assert rewrites.prepare(poly, (XS,), OBS) is None
    before = fused.trace_count("reference")
    poly.vgenerate((XS,), OBS, 8, key=mx.random.key(0))
    assert fused.trace_count("reference") == before


def test_plan_with_the_switches() -> None:
    g = analyze(poly, (XS,), OBS)
    with fused.force("reference"):
        # algebraic simplification on: the affine Gaussian stays algebraic (O(p²))
        assert [r.kind for r in rewrites.choose(g)] == ["affine_gaussian"]
        with rewrites.enabled(False):
            (r,) = rewrites.choose(g)
            assert (r.kind, r.parents, r.extras, r.backend) == (
                "fused",
                (("w",),),
                ("fixed",),
                "reference",
            )
            with fused.enabled(False):
                assert rewrites.choose(g) == ()
        g2 = analyze(poly_latent_sigma, (XS,), OBS)
        with rewrites.enabled(False):
            (r,) = rewrites.choose(g2)
            assert r.kind == "fused" and r.extras == ("scalar",)
        assert fused.active_backend() == "reference"
    assert fused.active_backend() is None


def test_sites_that_are_not_fused() -> None:
    with fused.force("reference"), rewrites.enabled(False):
        for model, args in [
            (nonlinear, (XS,)),
            (per_point_latent_sigma, (XS,)),
            (too_wide, (mx.ones((30, 40)),)),
        ]:
            assert rewrites.choose(analyze(model, args, OBS)) == ()


def test_repr_lists_fused_sites() -> None:
    with fused.force("reference"), rewrites.enabled(False):
        text = repr(analyze(poly_latent_sigma, (XS,), OBS))
    assert "rewrite 'ys': affine Gaussian in 'w' (p=3, scalar scale)" in text
    assert "[rewrites off]" in text
    assert (
        "fused 'ys': fused kernel (normal, eta = c + Φθ in 'w', p=3, sigma scalar): one pass "
        "per particle, no [N, n] array" in text
    )


def test_switch_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    code = (
        "from genmlx.core import fused, rewrites; print(fused.is_enabled(), rewrites.is_enabled())"
    )
    env = {"GENMLX_FUSED": "0", "GENMLX_REWRITES": "1"}
    import os

    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert out.stdout.split() == ["False", "True"], out.stderr
    with pytest.raises(ValueError, match="unknown backend"):
        with fused.force("vulkan"):
            pass  # entering the block is what raises
    with pytest.raises(RuntimeError, match="no backend"):
        fused.loglik(
            fused.NORMAL,
            ("fixed",),
            mx.zeros(2),
            mx.zeros(1),
            mx.zeros((3, 2)),
            mx.zeros(3),
            mx.zeros(3),
            (mx.ones(3),),
        )


def test_fused_scores_equal_direct_with_the_reference_backend() -> None:
    with fused.force("reference"), rewrites.enabled(False):
        ld = logdensity(poly_latent_sigma, (XS,), OBS)
        z = 0.5 * mx.random.normal((6, ld.dim), key=mx.random.key(4))
        z = z.at[5].add(mx.inf)
        v1, g1 = ld.value_and_grad(z)
        _, w1 = poly_latent_sigma.vgenerate((XS,), OBS, 16, key=mx.random.key(7))
    with fused.enabled(False), rewrites.enabled(False):
        v0, g0 = logdensity(poly_latent_sigma, (XS,), OBS).value_and_grad(z)
        _, w0 = poly_latent_sigma.vgenerate((XS,), OBS, 16, key=mx.random.key(7))
    v1n, v0n = np.asarray(v1), np.asarray(v0)
    np.testing.assert_allclose(v1n[:5], v0n[:5], rtol=1e-5, atol=1e-3)
    assert np.isnan(v1n[5]) == np.isnan(v0n[5]) and (np.isnan(v0n[5]) or v1n[5] == v0n[5])
    np.testing.assert_allclose(np.asarray(g1)[:5], np.asarray(g0)[:5], rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(np.asarray(w1), np.asarray(w0), rtol=1e-5, atol=1e-3)


def test_vmap_rule_batches_theta_and_scalars() -> None:
    rng = np.random.default_rng(0)
    phi = mx.array(rng.standard_normal((20, 2)).astype(np.float32))
    c = mx.array(rng.standard_normal(20).astype(np.float32))
    y = mx.array(rng.standard_normal(20).astype(np.float32))
    th = mx.array(rng.standard_normal((5, 2)).astype(np.float32))
    sig = mx.array(rng.uniform(0.5, 2.0, (5, 1)).astype(np.float32))

    def f(t: mx.array, s: mx.array) -> mx.array:
        return fused.loglik(fused.NORMAL, ("scalar",), t, s, phi, c, y, backend="reference")

    def direct(t: mx.array, s: mx.array) -> mx.array:
        z = (y - (phi @ t + c)) / s[0]
        return mx.sum(-0.5 * z * z)

    got = mx.vmap(f)(th, sig)
    want = mx.vmap(direct)(th, sig)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5)
    gg = mx.vmap(mx.grad(f, argnums=(0, 1)))(th, sig)
    gw = mx.vmap(mx.grad(direct, argnums=(0, 1)))(th, sig)
    for a, b in zip(gg, gw):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    # grad of a vmapped sum (the batched op's vjp), unbatched scalar broadcast
    g1 = mx.grad(lambda t: mx.sum(mx.vmap(lambda r: f(r, sig[0]))(t)))(th)
    g2 = mx.grad(lambda t: mx.sum(mx.vmap(lambda r: direct(r, sig[0]))(t)))(th)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-4, atol=1e-5)


def _stand_in_kernel(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the ``cuda`` backend a stand-in that, like a custom kernel, has no ``vmap``
    rule (an LU factorisation node depending on θ) and records the rows of each call;
    its numbers are the reference backend's."""
    real = fused._launch
    rows: list[int] = []

    def launch(decl, kinds, backend, theta, *rest):  # type: ignore[no-untyped-def]
        if backend != "cuda":
            return real(decl, kinds, backend, theta, *rest)
        rows.append(int(theta.shape[0]))
        val, grad = real(decl, kinds, "reference", theta, *rest)
        m = mx.eye(2) + mx.stop_gradient(theta[:1, :1]) * 0.0
        probe = mx.sum(mx.linalg.lu(m, stream=mx.cpu)[2]) * 0.0  # not vmappable
        return val + probe, grad

    monkeypatch.setattr(fused, "_launch", launch)
    return rows


def test_kernels_are_never_traced_by_vmap(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mx.vmap`` maps every node of a custom function's forward, and a custom kernel
    has no ``vmap`` rule: the kernel must appear only in the batched rule's output."""
    rows = _stand_in_kernel(monkeypatch)
    analyze(poly_latent_sigma, (XS,), OBS)
    with fused.force("cuda"), rewrites.enabled(False):
        _, w1 = poly_latent_sigma.vgenerate((XS,), OBS, 16, key=mx.random.key(7))
        mx.eval(w1)
        assert rows == [16]  # one call for all particles
        ld = logdensity(poly_latent_sigma, (XS,), OBS)
        z = 0.5 * mx.random.normal((6, ld.dim), key=mx.random.key(4))
        v1, g1 = ld.value_and_grad(z)
        mx.eval(v1, g1)
    with fused.enabled(False), rewrites.enabled(False):
        _, w0 = poly_latent_sigma.vgenerate((XS,), OBS, 16, key=mx.random.key(7))
        v0, g0 = logdensity(poly_latent_sigma, (XS,), OBS).value_and_grad(z)
    np.testing.assert_allclose(np.asarray(w1), np.asarray(w0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(np.asarray(v1), np.asarray(v0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-4, atol=1e-2)


def test_nested_vmaps_stay_mappable(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _stand_in_kernel(monkeypatch)
    rng = np.random.default_rng(1)
    phi = mx.array(rng.standard_normal((20, 2)).astype(np.float32))
    c = mx.array(rng.standard_normal(20).astype(np.float32))
    y = mx.array(rng.standard_normal(20).astype(np.float32))
    th = mx.array(rng.standard_normal((3, 4, 2)).astype(np.float32))
    one = mx.ones((1,))

    def f(t: mx.array) -> mx.array:
        return fused.loglik(fused.NORMAL, ("scalar",), t, one, phi, c, y, backend="cuda")

    def inner(t: mx.array) -> mx.array:
        with fused.vmap_level():
            return mx.vmap(f)(t)

    with fused.vmap_level():
        got = mx.vmap(inner)(th)
    # the inner level stays mappable (MLX operations); the outer rule then runs all
    # 3 x 4 executions in one kernel call
    assert rows == [12]
    want = mx.vmap(mx.vmap(lambda t: mx.sum(-0.5 * (y - (phi @ t + c)) ** 2)))(th)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-4)
    with fused.vmap_level():
        got1 = mx.vmap(f)(th[0])  # one level: the kernel, once
    assert rows == [12, 4]
    np.testing.assert_allclose(np.asarray(got1), np.asarray(want[0]), rtol=1e-5, atol=1e-4)
