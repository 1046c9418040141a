"""Fused log-density kernels, checked without a GPU.

(a) The generated plain-C version of each kernel (the same loop the CUDA/Metal kernels
run) is compiled with the system C compiler, called through ``ctypes`` on random ``θ``
batches, and compared with the *direct* MLX log density of the distribution (values) and
``mx.grad`` of it (gradients in ``θ`` and in per-execution scalar parameters), including
the data split into chunks. (b) The whole fused path (planning, constants, the batched
custom op with its vmap/vjp rules, compiled log density) run on the CPU through the
reference backend equals the direct path for IS weights, ``assess`` and the log
density's value and gradient, also for non-finite ``θ``.
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import choicemap, fused, gen, logdensity, rewrites
from genmlx.dists import bernoulli, cauchy, gamma, laplace, normal, poisson, student_t

CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

# (distribution, declaration, kinds of the extras, extra-parameter sampler, data sampler)
CASES: list[tuple[Any, fused.FusedLogProb, tuple[str, ...]]] = [
    (normal, fused.NORMAL, ("fixed",)),
    (normal, fused.NORMAL, ("scalar",)),
    (bernoulli, fused.BERNOULLI_LOGIT, ()),
    (poisson, fused.POISSON_LOG, ()),
    (laplace, fused.LAPLACE, ("scalar",)),
    (laplace, fused.LAPLACE, ("fixed",)),
    (cauchy, fused.CAUCHY, ("fixed",)),
    (cauchy, fused.CAUCHY, ("scalar",)),
    (student_t, fused.STUDENT_T, ("fixed", "scalar")),
    (student_t, fused.STUDENT_T, ("scalar", "scalar")),
]


def _compile(decl: fused.FusedLogProb, p: int, kinds: tuple[str, ...], tmp: Any) -> Any:
    src = tmp / "k.c"
    src.write_text(fused.c_library_source(decl, p, kinds))
    lib = tmp / "k.so"
    r = subprocess.run(
        [
            CC,
            "-O2",
            "-std=c99",
            "-Werror=implicit-function-declaration",
            "-shared",
            "-fPIC",
            "-o",
            str(lib),
            str(src),
            "-lm",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return getattr(ctypes.CDLL(str(lib)), fused.c_function_name(decl, p, kinds))


def _data(dist: Any, rng: np.random.Generator, n: int) -> np.ndarray:
    if dist is bernoulli:
        return (rng.uniform(size=n) < 0.4).astype(np.float32)
    if dist is poisson:
        return rng.poisson(3.0, size=n).astype(np.float32)
    return (3.0 * rng.standard_normal(n)).astype(np.float32)


def _run_c(fn: Any, arrays: list[np.ndarray], n_part: int, n: int, s: int, chunk: int, width: int):
    val = np.zeros(s * n_part, np.float32)
    grad = np.zeros(s * n_part * width, np.float32)
    sstride = 1 if arrays[1].shape[0] == n_part else 0
    dims = np.array([n_part, n, s, chunk, sstride], np.int32)
    ptrs = [np.ascontiguousarray(a).ctypes.data_as(ctypes.c_void_p) for a in [*arrays, dims]]
    fn(*ptrs, val.ctypes.data_as(ctypes.c_void_p), grad.ctypes.data_as(ctypes.c_void_p))
    return val.reshape(s, n_part).sum(0), grad.reshape(s, n_part, width).sum(0)


@pytest.mark.skipif(CC is None, reason="no C compiler (cc/gcc/clang) to build the C kernels")
@pytest.mark.parametrize("case", range(len(CASES)))
def test_generated_c_kernel_equals_direct_log_density(case: int, tmp_path: Any) -> None:
    dist, decl, kinds = CASES[case]
    rng = np.random.default_rng(case)
    p, n_part, n = 4, 7, 90
    fn = _compile(decl, p, kinds, tmp_path)
    theta = (0.5 * rng.standard_normal((n_part, p))).astype(np.float32)
    phi = rng.standard_normal((n, p)).astype(np.float32)
    c = (0.3 * rng.standard_normal(n)).astype(np.float32)
    y = _data(dist, rng, n)
    ks = sum(k == "scalar" for k in kinds)
    # df in [1, 6], scales in [0.5, 2]
    scal_vals = np.stack(
        [
            rng.uniform(1.0, 6.0, n_part) if name == "df" else rng.uniform(0.5, 2.0, n_part)
            for name, k in zip(decl.extras, kinds)
            if k == "scalar"
        ]
        or [np.zeros(n_part)],
        axis=1,
    ).astype(np.float32)
    fixed_vals = [
        (rng.uniform(1.0, 6.0, n) if name == "df" else rng.uniform(0.5, 2.0, n)).astype(np.float32)
        for name, k in zip(decl.extras, kinds)
        if k == "fixed"
    ]

    # the direct log density of the site, per particle, and its gradient
    def direct(th: mx.array, sc: mx.array) -> mx.array:
        eta = mx.array(phi) @ th + mx.array(c)
        param = {None: eta, "Sigmoid": mx.sigmoid(eta), "Exp": mx.exp(eta)}[decl.link]
        it_s, it_f, params = 0, 0, []
        for j in range(len(decl.extras) + 1):
            if j == decl.loc:
                params.append(param)
                continue
            if kinds[j if j < decl.loc else j - 1] == "scalar":
                params.append(sc[it_s])
                it_s += 1
            else:
                params.append(mx.array(fixed_vals[it_f]))
                it_f += 1
        value = mx.array(y).astype(mx.bool_) if dist is bernoulli else mx.array(y)
        return mx.sum(dist.log_prob(value, *params))

    want_v, want_g = [], []
    for i in range(n_part):
        v, (gt, gs) = mx.value_and_grad(direct, argnums=(0, 1))(
            mx.array(theta[i]), mx.array(scal_vals[i])
        )
        want_v.append(float(v))
        want_g.append(np.concatenate([np.asarray(gt), np.asarray(gs)[:ks]]))
    # the kernel part plus what is added outside the kernel (normaliser, data term)
    norm = np.zeros(n_part)
    if decl.normaliser == "mode":
        for i in range(n_part):
            it_s, it_f, params = 0, 0, []
            for j, k in enumerate(kinds):
                del j
                if k == "scalar":
                    params.append(mx.array(scal_vals[i, it_s]))
                    it_s += 1
                else:
                    params.append(mx.array(fixed_vals[it_f]))
                    it_f += 1
            params.insert(decl.loc, mx.array(0.0))
            lp0 = dist.log_prob(mx.array(0.0), *params)
            norm[i] = float(mx.sum(mx.broadcast_to(lp0, (n,))))
    data = decl.data_term(y.astype(np.float64)) if decl.data_term else 0.0
    width = p + ks
    arrays = [theta, scal_vals, phi, c, y, *fixed_vals]
    for s, chunk in [(1, n), fused.layout(n_part, n), (4, 23)]:
        got_v, got_g = _run_c(fn, arrays, n_part, n, s, chunk, width)
        total = got_v + norm + data
        np.testing.assert_allclose(total, want_v, rtol=2e-5, atol=2e-4 * math.sqrt(n))
        # the normaliser's gradient in the scalars is added by MLX outside the kernel:
        # compare the kernel's gradient with the direct one minus the normaliser's
        for i in range(n_part):
            g_norm = np.zeros(width)
            if decl.normaliser == "mode" and ks:

                def nrm(sc: mx.array, i: int = i) -> mx.array:
                    it_s, it_f, params = 0, 0, []
                    for k in kinds:
                        if k == "scalar":
                            params.append(sc[it_s])
                            it_s += 1
                        else:
                            params.append(mx.array(fixed_vals[it_f]))
                            it_f += 1
                    params.insert(decl.loc, mx.array(0.0))
                    return mx.sum(mx.broadcast_to(dist.log_prob(mx.array(0.0), *params), (n,)))

                g_norm[p:] = np.asarray(mx.grad(nrm)(mx.array(scal_vals[i])))
            scale = np.abs(want_g[i]).max() + 1.0
            np.testing.assert_allclose(got_g[i] + g_norm, want_g[i], rtol=1e-4, atol=2e-5 * scale)


def test_cuda_and_metal_sources_share_the_loop() -> None:
    for _, decl, kinds in CASES:
        cu = fused.kernel_source(decl, 5, kinds, "cuda")
        mt = fused.kernel_source(decl, 5, kinds, "metal")
        c = fused.c_library_source(decl, 5, kinds)
        assert "cooperative_groups::this_grid().thread_rank()" in cu
        assert "thread_position_in_grid.x" in mt
        body = cu.split("RETURN_OR_CONTINUE return\n", 1)[1]
        # the same statements in all three, up to the math functions' spellings
        assert body.replace("log1pf", "GM").replace("logf", "GM").count("\n") == mt.split(
            "RETURN_OR_CONTINUE return\n", 1
        )[1].count("\n")
        assert body.split("#undef")[0] in c.replace("  #define RETURN_OR_CONTINUE continue\n", "")
        assert "GM_" not in cu + mt + c


def test_layout_splits_the_data_only_for_few_particles() -> None:
    assert fused.layout(10**6, 200) == (1, 200)
    s, chunk = fused.layout(1, 200)
    assert s * chunk >= 200 and chunk >= fused.MIN_CHUNK and s > 1
    s, chunk = fused.layout(100, 10**5)
    assert s > 1 and (s - 1) * chunk < 10**5 <= s * chunk


def test_bad_layouts_raise() -> None:
    with pytest.raises(ValueError, match="p=40"):
        fused.kernel_source(fused.NORMAL, 40, ("fixed",), "cuda")
    with pytest.raises(ValueError, match="extras"):
        fused.kernel_source(fused.NORMAL, 3, (), "cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        fused.kernel_source(fused.NORMAL, 3, ("fixed",), "vulkan")


# ----------------------------------------------------------------- the whole path (CPU)
RNG = np.random.default_rng(0)
X = mx.array(RNG.standard_normal((60, 3)).astype(np.float32))


@gen
def linreg_latent_scale(x):
    w = normal(mx.zeros(3), 1.0) @ "w"
    s = gamma(2.0, 2.0) @ "s"
    normal(x @ w + 0.5, s) @ "y"


@gen
def logreg(x):
    w = normal(mx.zeros(3), 1.0) @ "w"
    b = normal(0.0, 1.0) @ "b"
    bernoulli(mx.sigmoid(x @ w + b)) @ "y"


@gen
def poisreg(x):
    w = normal(mx.zeros(3), 0.3) @ "w"
    poisson(mx.exp(x @ w + 0.2)) @ "y"


@gen
def robust(x):
    w = normal(mx.zeros(3), 1.0) @ "w"
    s = gamma(2.0, 2.0) @ "s"
    student_t(4.0, x @ w, s) @ "y"


@gen
def lad(x):
    w = normal(mx.zeros(3), 1.0) @ "w"
    laplace(x @ w, 0.7 + 0.1 * mx.abs(x[:, 0])) @ "y"


@gen
def cauchy_reg(x):
    w = normal(mx.zeros(3), 1.0) @ "w"
    s = gamma(2.0, 2.0) @ "s"
    cauchy(x @ w, s) @ "y"


MODELS = {
    "linreg_latent_scale": (linreg_latent_scale, RNG.standard_normal(60).astype(np.float32)),
    "logreg": (logreg, RNG.uniform(size=60) < 0.4),
    "poisreg": (poisreg, RNG.poisson(1.5, size=60).astype(np.int32)),
    "robust": (robust, RNG.standard_normal(60).astype(np.float32)),
    "lad": (lad, RNG.standard_normal(60).astype(np.float32)),
    "cauchy_reg": (cauchy_reg, RNG.standard_normal(60).astype(np.float32)),
}


def _close(a: mx.array, b: mx.array, rtol: float = 1e-5, atol: float = 1e-3) -> None:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same_nonfinite = (
        ~np.isfinite(a64)
        & ~np.isfinite(b64)
        & (np.isnan(a64) == np.isnan(b64))
        & ((a64 == b64) | np.isnan(a64))
    )
    ok = same_nonfinite | (np.abs(a64 - b64) <= atol + rtol * np.abs(b64))
    assert np.all(ok), (a64[~ok][:5], b64[~ok][:5])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fused_path_equals_direct_path(name: str) -> None:
    model, ys = MODELS[name]
    obs = choicemap({"y": mx.array(ys)})
    before = fused.trace_count("reference")
    with rewrites.enabled(False), fused.force("reference"):
        _, w1 = model.vgenerate((X,), obs, 32, key=mx.random.key(1))
        ld = logdensity(model, (X,), obs)
        z = 0.7 * mx.random.normal((5, ld.dim), key=mx.random.key(3))
        z = mx.concatenate([z, mx.full((1, ld.dim), mx.nan)])
        v1, g1 = ld.value_and_grad(z)
        v1s = ld(z[0])
    assert fused.trace_count("reference") > before  # the fused path ran
    with rewrites.enabled(False), fused.enabled(False):
        _, w0 = model.vgenerate((X,), obs, 32, key=mx.random.key(1))
        ld0 = logdensity(model, (X,), obs)
        v0, g0 = ld0.value_and_grad(z)
    _close(w1, w0)
    _close(v1, v0)
    _close(v1s, v0[0])
    _close(g1[:5], g0[:5], rtol=1e-4, atol=1e-3)


def test_fused_under_user_compile_and_grad() -> None:
    model, ys = MODELS["robust"]
    obs = choicemap({"y": mx.array(ys)})
    with rewrites.enabled(False), fused.force("reference"):
        ld = logdensity(model, (X,), obs)
        fn, inputs = ld.pure("vg")
        z = 0.5 * mx.random.normal((4, ld.dim), key=mx.random.key(5))
        v1, g1 = mx.compile(lambda zz: fn(zz, *inputs))(z)
    with fused.enabled(False):
        v0, g0 = logdensity(model, (X,), obs).value_and_grad(z)
    _close(v1, v0)
    _close(g1, g0, rtol=1e-4)


def test_glm_is_replaced_and_data_outside_the_domain_is_not_fused() -> None:
    from genmlx.core import analyze

    model, ys = MODELS["logreg"]
    with fused.force("reference"):
        text = repr(analyze(model, (X,), choicemap({"y": mx.array(ys)})))
        assert "[replaced by the fused kernel]" in text
        assert "fused 'y': fused kernel (bernoulli_logit through sigmoid" in text
        # counts that are not integers: the Poisson formula does not apply; the direct
        # evaluation gives its answer (-inf)
        bad = choicemap({"y": mx.array(np.full(60, 1.5, np.float32))})
        w = poisreg.assess((X,), bad.merge(choicemap({"w": mx.zeros(3)})))[0]
    assert float(w) == -math.inf
