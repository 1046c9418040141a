"""Fused log-density kernels on a GPU (CUDA or Metal): the kernels against the reference
(MLX operations) and the whole fused path against the unfused one.

Skipped without a CUDA/Metal GPU. Runs standalone with genmlx-core and genmlx-dists on
``PYTHONPATH`` (no installed packages or entry points needed)::

    PYTHONPATH=<mlx site>:packages/genmlx-core/src:packages/genmlx-dists/src \\
        python -m pytest -q packages/genmlx-core/tests/test_fused_gpu.py
"""

from __future__ import annotations

import math
import os

# The unfused path evaluates the models' own ``x @ w``, which MLX runs as TF32 on CUDA
# GPUs by default (about 1e-3 relative error); the comparisons need float32 on both
# sides. MLX reads the switch at its first matrix product.
os.environ["MLX_ENABLE_TF32"] = "0"

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import fused

BACKEND = fused.active_backend()
if BACKEND not in ("cuda", "metal"):
    pytest.skip(
        "no CUDA/Metal GPU (fused kernels run only there; the default device is "
        f"{mx.default_device()})",
        allow_module_level=True,
    )

dists = pytest.importorskip("genmlx.dists", reason="genmlx-dists is not importable")

from genmlx.core import choicemap, gen, logdensity, rewrites  # noqa: E402
from genmlx.core.graph import structural_graph  # noqa: E402

normal, bernoulli, poisson = dists.normal, dists.bernoulli, dists.poisson
laplace, cauchy, student_t, gamma = dists.laplace, dists.cauchy, dists.student_t, dists.gamma

RNG = np.random.default_rng(0)
N_DATA = 200
X = mx.array(RNG.standard_normal((N_DATA, 5)).astype(np.float32))
XS = mx.linspace(0, 1, 50)


@gen
def poly(xs):
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    c = normal(0.0, 1.0) @ "c"
    normal(a + b * xs + c * xs**2, 0.05) @ "ys"


@gen
def linreg_latent_scale(x):
    w = normal(mx.zeros(5), 1.0) @ "w"
    s = gamma(2.0, 2.0) @ "s"
    normal(x @ w + 0.5, s) @ "y"


@gen
def logreg(x):
    w = normal(mx.zeros(5), 1.0) @ "w"
    b = normal(0.0, 1.0) @ "b"
    bernoulli(mx.sigmoid(x @ w + b)) @ "y"


@gen
def poisreg(x):
    w = normal(mx.zeros(5), 0.3) @ "w"
    poisson(mx.exp(x @ w + 0.2)) @ "y"


_TRUE_W = np.array([1.0, -0.5, 0.8, 0.0, -1.2], np.float32)
_ETA = np.asarray(X) @ _TRUE_W
CASES = {
    "poly": (
        poly,
        (XS,),
        "ys",
        mx.array(
            (
                0.5
                - 1.25 * np.asarray(XS)
                + 2.0 * np.asarray(XS) ** 2
                + 0.05 * RNG.standard_normal(50)
            ).astype(np.float32)
        ),
    ),
    "linreg_latent_scale": (
        linreg_latent_scale,
        (X,),
        "y",
        mx.array((_ETA + 0.5 + 0.3 * RNG.standard_normal(N_DATA)).astype(np.float32)),
    ),
    "logreg": (
        logreg,
        (X,),
        "y",
        mx.array(RNG.uniform(size=N_DATA) < 1 / (1 + np.exp(-(_ETA + 0.3)))),
    ),
    "poisreg": (
        poisreg,
        (X,),
        "y",
        mx.array(RNG.poisson(np.exp(0.3 * _ETA + 0.2)).astype(np.int32)),
    ),
}


def _close(a: mx.array, b: mx.array, rtol: float = 2e-5, atol: float = 2e-3) -> None:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both_nan = np.isnan(a64) & np.isnan(b64)
    same_inf = np.isinf(a64) & (a64 == b64)
    ok = both_nan | same_inf | (np.abs(a64 - b64) <= atol + rtol * np.abs(b64))
    assert np.all(ok), (np.flatnonzero(~ok)[:5], a64[~ok][:5], b64[~ok][:5])


# ------------------------------------------------------------------ kernels vs reference
FORMULAS = [
    (fused.NORMAL, ("fixed",)),
    (fused.NORMAL, ("scalar",)),
    (fused.BERNOULLI_LOGIT, ()),
    (fused.POISSON_LOG, ()),
    (fused.LAPLACE, ("scalar",)),
    (fused.CAUCHY, ("fixed",)),
    (fused.STUDENT_T, ("fixed", "scalar")),
]


@pytest.mark.parametrize("i", range(len(FORMULAS)))
@pytest.mark.parametrize(("n_part", "n"), [(1, 200), (7, 1000), (4096, 200), (100_000, 50)])
def test_kernel_equals_reference(i: int, n_part: int, n: int) -> None:
    decl, kinds = FORMULAS[i]
    rng = np.random.default_rng(i)
    p = 6
    theta = mx.array((0.4 * rng.standard_normal((n_part, p))).astype(np.float32))
    phi = mx.array(rng.standard_normal((n, p)).astype(np.float32))
    c = mx.array((0.2 * rng.standard_normal(n)).astype(np.float32))
    if decl is fused.BERNOULLI_LOGIT:
        y = (rng.uniform(size=n) < 0.4).astype(np.float32)
    elif decl is fused.POISSON_LOG:
        y = rng.poisson(2.0, size=n).astype(np.float32)
    else:
        y = (2.0 * rng.standard_normal(n)).astype(np.float32)
    ks = sum(k == "scalar" for k in kinds)
    scal = mx.array(rng.uniform(1.0, 3.0, (n_part, max(ks, 1))).astype(np.float32))
    fixed = tuple(
        mx.array(rng.uniform(1.0, 3.0, n).astype(np.float32)) for k in kinds if k == "fixed"
    )
    args = (theta, scal, phi, c, mx.array(y), fixed)
    v, g = fused._launch(decl, kinds, BACKEND, *args)
    with mx.stream(mx.cpu):  # float32 matrix products on the GPU may run as TF32
        vr, gr = fused._launch(decl, kinds, "reference", *args)
        mx.eval(vr, gr)
    _close(v, vr, rtol=1e-5, atol=1e-3 * math.sqrt(n))
    _close(g, gr, rtol=1e-4, atol=1e-3 * math.sqrt(n))


# ------------------------------------------------------------------ the whole path
def _weights(model, args, obs, n, *, rw: bool, fz: bool):
    with rewrites.enabled(rw), fused.enabled(fz):
        tr, w = model.vgenerate(args, obs, n, key=mx.random.key(11))
    return w, tr


def _unsaturated(name: str, tr, w: mx.array) -> mx.array:
    """The direct evaluation of logistic/Poisson regression computes ``sigmoid(η)`` /
    ``exp(η)`` in float32 and then its log, which saturates for large ``|η|`` (prior
    draws far in the tails), while the fused and rewritten paths work in ``η`` (stable):
    compare only where the direct path is exact to float32."""
    if name not in ("logreg", "poisreg"):
        return w
    wv = np.asarray(tr["w"], np.float64).reshape(-1, 5)
    eta = wv @ np.asarray(X, np.float64).T
    if name == "logreg":
        eta = eta + np.asarray(tr["b"], np.float64).reshape(-1, 1)
    # 1 - sigmoid(η) in float32 has an absolute resolution of ~6e-8: beyond |η| ≈ 8
    # its log is off by more than the tolerance (at η = 15 by ~20 % per data point)
    bad = np.max(np.abs(eta), axis=1) > (8.0 if name == "logreg" else 30.0)
    return mx.where(mx.array(bad), mx.array(0.0), w)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("n", [1, 1000, 100_000])
def test_vgenerate_fused_equals_unfused(name: str, n: int) -> None:
    model, args, addr, ys = CASES[name]
    obs = choicemap({addr: ys})
    # rewrites apply from the second call of a model (the first analyses it): analyse now
    structural_graph(model, args)
    before = fused.trace_count(BACKEND)
    w_fused, tr = _weights(model, args, obs, n, rw=False, fz=True)
    assert fused.trace_count(BACKEND) > before, "the fused kernel was not used"
    w_direct = _weights(model, args, obs, n, rw=False, fz=False)[0]
    w_rewrite = _weights(model, args, obs, n, rw=True, fz=False)[0]
    w_default = _weights(model, args, obs, n, rw=True, fz=True)[0]
    keep = lambda w: _unsaturated(name, tr, w)  # noqa: E731  (same keys: same latents)
    _close(keep(w_fused), keep(w_direct))
    _close(keep(w_rewrite), keep(w_direct))
    _close(keep(w_default), keep(w_direct))
    _close(keep(w_default), keep(w_fused))


@pytest.mark.parametrize("name", sorted(CASES))
def test_logdensity_value_and_grad_fused_equals_unfused(name: str) -> None:
    model, args, addr, ys = CASES[name]
    obs = choicemap({addr: ys})
    # rewrites apply from the second call of a model (the first analyses it): analyse now
    structural_graph(model, args)
    with rewrites.enabled(False), fused.enabled(False):
        ld0 = logdensity(model, args, obs)
    z = 0.5 * mx.random.normal((64, ld0.dim), key=mx.random.key(2))
    z = mx.concatenate([z, mx.full((1, ld0.dim), mx.nan), mx.full((1, ld0.dim), mx.inf)])
    with rewrites.enabled(False), fused.enabled(False):
        v0, g0 = ld0.value_and_grad(z)
        s0 = ld0(z[0])
    for rw in (False, True):
        with rewrites.enabled(rw), fused.enabled(True):
            ld = logdensity(model, args, obs)
            v1, g1 = ld.value_and_grad(z)
            s1 = ld(z[0])
            fn, inputs = ld.pure("vg")
            vc, gc = mx.compile(lambda zz, fn=fn, inputs=inputs: fn(zz, *inputs))(z[:64])
        _close(v1[:65], v0[:65])  # finite rows and the NaN row
        # an infinite θ: the answer for a NaN parameter (the rewrites' convention; the
        # direct evaluation gives -inf or NaN there, depending on the data)
        assert not np.isfinite(np.asarray(v0[65])) and not np.isfinite(np.asarray(v1[65]))
        assert not np.asarray(v1[65]) > 0
        _close(s1, s0)
        _close(g1[:64], g0[:64], rtol=1e-4, atol=1e-2)
        _close(vc, v0[:64])
        _close(gc, g0[:64], rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("name", sorted(CASES))
def test_assess_fused_equals_unfused(name: str) -> None:
    model, args, addr, ys = CASES[name]
    obs = choicemap({addr: ys})
    # rewrites apply from the second call of a model (the first analyses it): analyse now
    structural_graph(model, args)
    tr, _ = model.generate(args, obs, key=mx.random.key(5))
    choices = tr.get_choices()  # the latents drawn, the observations given
    with rewrites.enabled(False), fused.enabled(False):
        w0 = model.assess(args, choices)[0]
    with rewrites.enabled(False), fused.enabled(True):
        w1 = model.assess(args, choices)[0]
    _close(w1, w0)
