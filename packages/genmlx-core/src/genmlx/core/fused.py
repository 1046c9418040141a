"""Fused log-density kernels: one GPU pass per particle over the observed data.

An observed site whose distribution parameter is (a link of) an affine function of latent
values, ``η = c + Φθ`` per data point (the same ``Φ`` and ``c`` the algebraic rewrites of
:mod:`genmlx.core.rewrites` compute), has a log-likelihood that MLX would evaluate as an
``[N, n]`` array (``N`` executions, ``n`` data points) before reducing it. On a GPU this
module evaluates it with **one kernel**: each thread keeps one particle's ``θ`` row in
registers (unrolled, ``p ≤`` :data:`MAX_P`), loops over its share of the data reading
``Φ``, ``c``, ``y`` (and fixed per-point parameters), and accumulates the log density
(Kahan-compensated float32) **and its gradient** in ``θ`` and in the per-execution
scalar parameters. Nothing of size ``[N, n]`` exists.

The per-element formula comes from the distribution: :attr:`Distribution.fused_log_prob
<genmlx.core.Distribution.fused_log_prob>` is a :class:`FusedLogProb` — C statements in
the value ``y``, the linear predictor ``eta`` and named extra parameters that set ``lp``
and its derivatives (``d_eta``, ``d_<extra>``), plus an MLX version of the same
expression (used off the GPU and for batched data). Declarations are provided here for
the normal (:data:`NORMAL`), Bernoulli with the logit link (:data:`BERNOULLI_LOGIT`),
Poisson with the log link (:data:`POISSON_LOG`), Laplace (:data:`LAPLACE`), Cauchy
(:data:`CAUCHY`) and Student's t (:data:`STUDENT_T`, location affine). Terms that depend
only on the extra parameters (the normaliser: the log density at the mode) or only on
the data (``log y!``) are added outside the kernel, by the distribution's own
``log_prob``, once per execution or once per data set.

One generator (:func:`kernel_source`) emits the CUDA (``mx.fast.cuda_kernel``), Metal
(``mx.fast.metal_kernel``) and plain C text of the same loop; only the thread index and
the math-function spellings differ. Layout: one thread per (particle, chunk of the
data); with many particles a thread takes all the data (one chunk), with few the data
are split so that the GPU still has ``≥ 2¹⁶`` threads, and the ``S`` partial sums are
added by MLX (``[S, N]``, small).

:func:`loglik` is the batched operation (an ``mx.custom_function``): a ``.vmap`` rule
turns a batch of ``θ`` rows ``[N, p]`` into one kernel call giving ``[N]`` values and
``[N, p]`` gradients, and a ``.vjp`` multiplies the cotangent by the kernel's gradient
output — so it works under ``vmap``, ``mx.compile`` and ``mx.grad`` (first derivatives;
second derivatives through a fused site are not available: switch fused kernels off for
Hessians).

:mod:`genmlx.core.rewrites` uses it automatically (the ``"fused"`` rewrite kind) when the
default device is a GPU with a custom-kernel backend (CUDA or Metal), for the affine
observed sites the algebraic simplification does not remove — and for every such site
when the simplification is switched off. Generalised linear sites (logistic, Poisson
regression) are fused on a GPU instead of the matrix-product path. Switch the kernels
off with ``GENMLX_FUSED=0`` or ``with fused.enabled(False):``; the algebraic rewrites
have their own switch (``GENMLX_REWRITES=0``).

On a CPU the kernels are not used; :func:`kernel_source` shows what a GPU would run,
and :func:`force` runs the same plan through MLX ops, for testing.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap, analyze
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def line(xs):
    ...     w = normal(mx.zeros(2), 1.0) @ "w"
    ...     normal(w[0] + w[1] * xs, 0.1) @ "ys"
    >>> xs = mx.linspace(0, 1, 20)
    >>> obs = choicemap({"ys": 1.0 + 2.0 * xs})
    >>> "this_grid().thread_rank()" in kernel_source(NORMAL, 2, ("fixed",), "cuda")
    True
    >>> from genmlx.core import rewrites
    >>> with rewrites.enabled(False), force("reference"):
    ...     print(repr(analyze(line, (xs,), obs)).splitlines()[-1])
    ...     _, w1 = line.vgenerate((xs,), obs, 8, key=mx.random.key(0))
      fused 'ys': fused kernel (normal, eta = c + Φθ in 'w', p=2, sigma fixed): one pass ...
    >>> with rewrites.enabled(False), enabled(False):
    ...     _, w0 = line.vgenerate((xs,), obs, 8, key=mx.random.key(0))
    >>> bool(mx.allclose(w0, w1, rtol=1e-4, atol=1e-2))
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import runtime

__all__ = [
    "BERNOULLI_LOGIT",
    "CAUCHY",
    "LAPLACE",
    "MAX_P",
    "NORMAL",
    "POISSON_LOG",
    "STUDENT_T",
    "FusedLogProb",
    "active_backend",
    "c_library_source",
    "enabled",
    "force",
    "input_names",
    "is_enabled",
    "kernel_source",
    "loglik",
    "trace_count",
    "vmap_level",
]

#: The largest number of latent coefficients a fused kernel keeps in registers.
MAX_P = 32
#: Threads a launch aims for (the data are split into chunks when there are fewer
#: particles).
TARGET_THREADS = 1 << 16
#: The smallest chunk of data points one thread takes.
MIN_CHUNK = 32

_ON: ContextVar[bool] = ContextVar(
    "genmlx_fused", default=os.environ.get("GENMLX_FUSED", "1") != "0"
)
_FORCE: ContextVar[str | None] = ContextVar("genmlx_fused_force", default=None)


def is_enabled() -> bool:
    """Whether fused kernels may be used (``GENMLX_FUSED=0`` or ``enabled(False)``
    turn them off)."""
    return _ON.get()


def enabled(on: bool) -> contextlib.AbstractContextManager[None]:
    """Turn fused kernels on or off inside a ``with`` block."""
    return runtime.scoped(_ON, on)


def force(backend: str = "reference") -> contextlib.AbstractContextManager[None]:
    """Plan fused sites as on a GPU, evaluated by ``backend`` — for tests on machines
    without one. ``"reference"`` computes the kernel's outputs with MLX operations (it
    materialises ``[N, n]``; same numbers, no speed-up); ``"cuda"``/``"metal"`` need
    that GPU."""
    if backend not in ("reference", "cuda", "metal"):
        raise ValueError(f"fused.force: unknown backend {backend!r} (reference, cuda, metal)")
    return runtime.scoped(_FORCE, backend)


def _gpu_backend() -> str | None:
    if mx.default_device().type != mx.DeviceType.gpu:
        return None
    if mx.cuda.is_available():
        return "cuda"
    if mx.metal.is_available():
        return "metal"
    return None


def active_backend() -> str | None:
    """The backend fused sites are evaluated with now (``"cuda"``, ``"metal"``, or
    ``"reference"`` when forced), or ``None``: fused kernels are not used (switched off,
    or the default device is not a GPU with a custom-kernel backend)."""
    if not _ON.get():
        return None
    forced = _FORCE.get()
    return forced if forced is not None else _gpu_backend()


# ---------------------------------------------------------------------------- formulas
@dataclass(frozen=True)
class FusedLogProb:
    """How a distribution's log density is evaluated inside a fused kernel.

    The site's log density is ``Σᵢ K(yᵢ, ηᵢ, eᵢ) + Σᵢ N(eᵢ) + D(y)``: the kernel part
    ``K`` (this declaration), the normaliser ``N`` (the distribution's ``log_prob`` at the
    mode when :attr:`normaliser` is ``"mode"``) and a data-only constant ``D``.

    Attributes:
        name: a short identifier (part of the kernel's name).
        loc: the position of the parameter given by the linear predictor.
        link: the graph's name of its link (``None``: the parameter is ``η`` itself;
            ``"Sigmoid"``: ``p = σ(η)``; ``"Exp"``: ``λ = exp(η)``).
        extras: C names of the other parameters, in parameter order.
        code: C statements reading ``float y, eta`` and the extras and setting ``lp``
            (the kernel part), ``d_eta`` (its derivative in ``eta``) and ``d_<extra>``
            for every extra. Math functions are spelled ``GM_EXP``, ``GM_LOG``,
            ``GM_LOG1P``, ``GM_ABS``, ``GM_SQRT``, ``GM_MAX`` (mapped per backend).
        reference: the kernel part with MLX operations, ``reference(y, eta, *extras)``
            (elementwise, broadcasting): used off the GPU and where data are batched.
        normaliser: ``"mode"`` (location families: ``N(e) = log_prob(0; loc=0, e)``, so
            ``K`` vanishes at ``y = η``) or ``"none"``.
        data_term: ``D(y)`` from the data (float64 NumPy), or ``None`` (zero).
        data_ok: whether the observed data are in the formula's domain (else the site
            is evaluated directly).
    """

    name: str
    loc: int
    link: str | None
    extras: tuple[str, ...]
    code: str
    reference: Callable[..., mx.array] = field(compare=False)
    normaliser: str = "mode"
    data_term: Callable[[np.ndarray], float] | None = field(default=None, compare=False)
    data_ok: Callable[[np.ndarray], bool] | None = field(default=None, compare=False)

    def eta_at_zero_param(self) -> float:
        """The parameter value at ``η = 0`` (used for a valid placeholder)."""
        return {None: 0.0, "Sigmoid": 0.5, "Exp": 1.0}[self.link]


def _finite_data(y: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(y)))


def _zero_one(y: np.ndarray) -> bool:
    return bool(np.all((y == 0) | (y == 1)))


def _counts(y: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(y)) and np.all(y >= 0) and np.all(y == np.floor(y)))


def _neg_lfact(y: np.ndarray) -> float:
    return -float(sum(math.lgamma(float(v) + 1.0) for v in y.reshape(-1)))


def _ref_normal(y: mx.array, eta: mx.array, sigma: mx.array) -> mx.array:
    z = (y - eta) / sigma
    out: mx.array = -0.5 * z * z
    return out


def _ref_bernoulli(y: mx.array, eta: mx.array) -> mx.array:
    out: mx.array = y * eta - mx.logaddexp(0.0, eta)
    return out


def _ref_poisson(y: mx.array, eta: mx.array) -> mx.array:
    out: mx.array = y * eta - mx.exp(eta)
    return out


def _ref_laplace(y: mx.array, eta: mx.array, scale: mx.array) -> mx.array:
    out: mx.array = -mx.abs(y - eta) / scale
    return out


def _ref_cauchy(y: mx.array, eta: mx.array, scale: mx.array) -> mx.array:
    z = (y - eta) / scale
    out: mx.array = -mx.log1p(z * z)
    return out


def _ref_student(y: mx.array, eta: mx.array, df: mx.array, scale: mx.array) -> mx.array:
    z = (y - eta) / scale
    out: mx.array = -(0.5 * df + 0.5) * mx.log1p(z * z / df)
    return out


#: Normal, mean affine: ``K = −z²/2``, ``z = (y − η)/σ``; σ fixed or per execution.
NORMAL = FusedLogProb(
    name="normal",
    loc=0,
    link=None,
    extras=("sigma",),
    code=(
        "float inv = 1.0f / sigma;\n"
        "float z = (y - eta) * inv;\n"
        "lp = -0.5f * z * z;\n"
        "d_eta = z * inv;\n"
        "d_sigma = z * z * inv;\n"
    ),
    reference=_ref_normal,
    data_ok=_finite_data,
)

#: Bernoulli through the logit link: ``K = y η − softplus(η)`` (stable).
BERNOULLI_LOGIT = FusedLogProb(
    name="bernoulli_logit",
    loc=0,
    link="Sigmoid",
    extras=(),
    code=(
        "float a = GM_ABS(eta);\n"
        "float e = GM_EXP(-a);\n"
        "lp = y * eta - (GM_MAX(eta, 0.0f) + GM_LOG1P(e));\n"
        "float sig = eta >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);\n"
        "d_eta = y - sig;\n"
    ),
    reference=_ref_bernoulli,
    normaliser="none",
    data_ok=_zero_one,
)

#: Poisson through the log link: ``K = y η − exp(η)``; ``D = −Σ log y!``.
POISSON_LOG = FusedLogProb(
    name="poisson_log",
    loc=0,
    link="Exp",
    extras=(),
    code=("float lam = GM_EXP(eta);\nlp = y * eta - lam;\nd_eta = y - lam;\n"),
    reference=_ref_poisson,
    normaliser="none",
    data_term=_neg_lfact,
    data_ok=_counts,
)

#: Laplace, location affine: ``K = −|y − η| / b``.
LAPLACE = FusedLogProb(
    name="laplace",
    loc=0,
    link=None,
    extras=("scale",),
    code=(
        "float inv = 1.0f / scale;\n"
        "float d = y - eta;\n"
        "float ad = GM_ABS(d);\n"
        "lp = -ad * inv;\n"
        "d_eta = (d > 0.0f ? inv : (d < 0.0f ? -inv : 0.0f));\n"
        "d_scale = ad * inv * inv;\n"
    ),
    reference=_ref_laplace,
    data_ok=_finite_data,
)

#: Cauchy, location affine: ``K = −log(1 + z²)`` (no overflow for large ``|z|``).
CAUCHY = FusedLogProb(
    name="cauchy",
    loc=0,
    link=None,
    extras=("scale",),
    code=(
        "float inv = 1.0f / scale;\n"
        "float z = (y - eta) * inv;\n"
        "float t = GM_ABS(z);\n"
        "float w;\n"
        "if (t > 1.0f) {\n"
        "  float r = 1.0f / t;\n"
        "  lp = -(2.0f * GM_LOG(t) + GM_LOG1P(r * r));\n"
        "  w = 1.0f / (1.0f + r * r);\n"
        "  d_eta = 2.0f * (r / (1.0f + r * r)) * (z > 0.0f ? 1.0f : -1.0f) * inv;\n"
        "} else {\n"
        "  lp = -GM_LOG1P(z * z);\n"
        "  w = z * z / (1.0f + z * z);\n"
        "  d_eta = 2.0f * z / (1.0f + z * z) * inv;\n"
        "}\n"
        "d_scale = 2.0f * w * inv;\n"
    ),
    reference=_ref_cauchy,
    data_ok=_finite_data,
)

#: Student's t, location (the second parameter) affine:
#: ``K = −(ν + 1)/2 · log(1 + z²/ν)``.
STUDENT_T = FusedLogProb(
    name="student_t",
    loc=1,
    link=None,
    extras=("df", "scale"),
    code=(
        "float inv = 1.0f / scale;\n"
        "float z = (y - eta) * inv;\n"
        "float q = z * z / df;\n"
        "float h = 0.5f * df + 0.5f;\n"
        "lp = -h * GM_LOG1P(q);\n"
        "float u = 2.0f * h / (df * (1.0f + q));\n"
        "d_eta = u * z * inv;\n"
        "d_scale = u * z * z * inv;\n"
        "d_df = -0.5f * GM_LOG1P(q) + h * q / (df * (1.0f + q));\n"
    ),
    reference=_ref_student,
    data_ok=_finite_data,
)


# ---------------------------------------------------------------------------- generator
_MATH = {
    "c": {
        "GM_EXP": "expf",
        "GM_LOG": "logf",
        "GM_LOG1P": "log1pf",
        "GM_ABS": "fabsf",
        "GM_SQRT": "sqrtf",
        "GM_MAX": "fmaxf",
    },
    "cuda": {
        "GM_EXP": "expf",
        "GM_LOG": "logf",
        "GM_LOG1P": "log1pf",
        "GM_ABS": "fabsf",
        "GM_SQRT": "sqrtf",
        "GM_MAX": "fmaxf",
    },
    "metal": {
        "GM_EXP": "metal::exp",
        "GM_LOG": "metal::log",
        "GM_LOG1P": "gm_log1p",
        "GM_ABS": "metal::abs",
        "GM_SQRT": "metal::sqrt",
        "GM_MAX": "metal::max",
    },
}

_METAL_HEADER = """
// log(1 + x) accurate near 0 (Metal has no log1p): Kahan's correction of log(u)
inline float gm_log1p(float x) {
  float u = 1.0f + x;
  if (u == 1.0f) return x;
  if (metal::isinf(u)) return metal::log(u);
  return metal::log(u) * (x / (u - 1.0f));
}
"""


def _check_layout(decl: FusedLogProb, p: int, kinds: tuple[str, ...]) -> None:
    if not 1 <= p <= MAX_P:
        raise ValueError(f"fused kernel: p={p} coefficients (1..{MAX_P} are fused)")
    if len(kinds) != len(decl.extras) or any(k not in ("fixed", "scalar") for k in kinds):
        raise ValueError(
            f"fused kernel for {decl.name}: extras {kinds!r} must be 'fixed' or 'scalar' "
            f"for each of {decl.extras!r}"
        )


def _loop_body(decl: FusedLogProb, p: int, kinds: tuple[str, ...], backend: str) -> str:
    """The per-thread statements (thread index ``t``), shared by every backend."""
    scal = [e for e, k in zip(decl.extras, kinds) if k == "scalar"]
    fixed = [e for e, k in zip(decl.extras, kinds) if k == "fixed"]
    ks = len(scal)
    width = p + ks
    code = decl.code
    table = _MATH[backend]

    def spell(m: re.Match[str]) -> str:
        try:
            return table[m.group(0)]
        except KeyError:
            raise ValueError(
                f"fused formula {decl.name}: unknown math function {m.group(0)} "
                f"(one of {', '.join(sorted(table))})"
            ) from None

    code = re.sub(r"\bGM_[A-Z0-9_]+\b", spell, code)
    code = "\n".join("      " + line for line in code.splitlines())
    lines = [
        "  const int N = in_dims[0];",
        "  const int n = in_dims[1];",
        "  const int S = in_dims[2];",
        "  const int chunk = in_dims[3];",
        "  const int sstride = in_dims[4];",
        "  if (t >= (long)N * (long)S) RETURN_OR_CONTINUE;",
        "  const int i = (int)(t % N);",
        "  const int s = (int)(t / N);",
    ]
    lines += [f"  const float th{k} = in_theta[(long)i * {p} + {k}];" for k in range(p)]
    for j, e in enumerate(scal):
        lines.append(f"  const float {e} = in_scal[(long)i * sstride * {max(ks, 1)} + {j}];")
    lines += [f"  float g{k} = 0.0f;" for k in range(p)]
    lines += [f"  float gs_{e} = 0.0f;" for e in scal]
    lines += [
        "  float acc = 0.0f;",
        "  float comp = 0.0f;",
        "  const int lo = s * chunk;",
        "  const int hi = (lo + chunk < n) ? lo + chunk : n;",
        "  for (int j = lo; j < hi; ++j) {",
        f"    const long row = (long)j * {p};",
        "    float eta = in_c[j];",
    ]
    lines += [f"    eta += in_phi[row + {k}] * th{k};" for k in range(p)]
    lines.append("    const float y = in_y[j];")
    lines += [f"    const float {e} = in_x_{e}[j];" for e in fixed]
    lines += ["    float lp = 0.0f;", "    float d_eta = 0.0f;"]
    lines += [f"    float d_{e} = 0.0f;" for e in decl.extras]
    lines += ["    {", code, "    }"]
    lines += [f"    (void)d_{e};" for e in fixed]
    lines += [
        "    {",
        "      const float yk = lp - comp;",
        "      const float tk = acc + yk;",
        "      comp = (tk - acc) - yk;",
        "      acc = tk;",
        "    }",
    ]
    lines += [f"    g{k} += d_eta * in_phi[row + {k}];" for k in range(p)]
    lines += [f"    gs_{e} += d_{e};" for e in scal]
    lines.append("  }")
    lines.append("  out_val[t] = acc;")
    lines += [f"  out_grad[(long)t * {width} + {k}] = g{k};" for k in range(p)]
    lines += [f"  out_grad[(long)t * {width} + {p + j}] = gs_{e};" for j, e in enumerate(scal)]
    return "\n".join(lines)


def input_names(decl: FusedLogProb, kinds: tuple[str, ...]) -> list[str]:
    """The kernel's inputs, in order."""
    fixed = [e for e, k in zip(decl.extras, kinds) if k == "fixed"]
    return [
        "in_theta",
        "in_scal",
        "in_phi",
        "in_c",
        "in_y",
        *[f"in_x_{e}" for e in fixed],
        "in_dims",
    ]


def kernel_source(decl: FusedLogProb, p: int, kinds: tuple[str, ...], backend: str) -> str:
    """The kernel body for ``backend`` (``"cuda"``, ``"metal"``): what goes into
    ``mx.fast.cuda_kernel``/``metal_kernel`` as ``source`` (the signature is generated
    by MLX from :func:`input_names` and the outputs ``out_val``, ``out_grad``)."""
    _check_layout(decl, p, kinds)
    if backend == "cuda":
        index = "(long)cooperative_groups::this_grid().thread_rank()"
    elif backend == "metal":
        index = "(long)thread_position_in_grid.x"
    else:
        raise ValueError(f"fused.kernel_source: unknown backend {backend!r} (cuda, metal)")
    head = (
        "  // fused log density: one thread per (particle, chunk of the data)\n"
        f"  const long t = {index};\n"
        "  #define RETURN_OR_CONTINUE return\n"
    )
    body = _loop_body(decl, p, kinds, backend)
    return head + body + "\n  #undef RETURN_OR_CONTINUE\n"


def kernel_header(backend: str) -> str:
    """Helper definitions placed before the kernel."""
    return _METAL_HEADER if backend == "metal" else ""


def c_function_name(decl: FusedLogProb, p: int, kinds: tuple[str, ...]) -> str:
    """The name of the plain-C function :func:`c_library_source` defines."""
    return "genmlx_fused_" + _kernel_id(decl, p, kinds)


def c_library_source(decl: FusedLogProb, p: int, kinds: tuple[str, ...]) -> str:
    """The same loop as plain C (one function, looping over the threads ``t``), for
    checking the generator on a machine without a GPU (compile it with ``cc -shared``
    and call it through ``ctypes``). Its signature is
    ``void f(const float* in_theta, const float* in_scal, const float* in_phi,
    const float* in_c, const float* in_y, [const float* in_x_<fixed extra>, ...]
    const int* in_dims, float* out_val, float* out_grad)``."""
    _check_layout(decl, p, kinds)
    names = input_names(decl, kinds)
    params = [f"const {'int' if nm == 'in_dims' else 'float'}* {nm}" for nm in names] + [
        "float* out_val",
        "float* out_grad",
    ]
    body = _loop_body(decl, p, kinds, "c")
    return (
        "#include <math.h>\n\n"
        f"void {c_function_name(decl, p, kinds)}({', '.join(params)}) {{\n"
        "  const long total = (long)in_dims[0] * (long)in_dims[2];\n"
        "  for (long t = 0; t < total; ++t) {\n"
        "  #define RETURN_OR_CONTINUE continue\n" + body + "\n  #undef RETURN_OR_CONTINUE\n  }\n}\n"
    )


def _kernel_id(decl: FusedLogProb, p: int, kinds: tuple[str, ...]) -> str:
    h = hashlib.sha1(f"{decl.name}|{decl.code}|{p}|{kinds}".encode()).hexdigest()[:10]
    return f"{decl.name}_p{p}_{''.join(k[0] for k in kinds)}_{h}"


def layout(n_particles: int, n_data: int) -> tuple[int, int]:
    """``(S, chunk)``: the number of data chunks per particle and their length."""
    if n_data <= 0:
        return 1, 1
    s = max(1, min(n_data // MIN_CHUNK, -(-TARGET_THREADS // max(n_particles, 1))))
    chunk = -(-n_data // s)
    return -(-n_data // chunk), chunk


# ---------------------------------------------------------------------------- launching
_KERNELS: dict[tuple[Any, ...], Any] = {}


def _kernel(decl: FusedLogProb, p: int, kinds: tuple[str, ...], backend: str) -> Any:
    key = (decl, p, kinds, backend)
    k = _KERNELS.get(key)
    if k is None:
        name = "genmlx_fused_" + _kernel_id(decl, p, kinds)
        src = kernel_source(decl, p, kinds, backend)
        names = input_names(decl, kinds)
        if backend == "cuda":
            k = mx.fast.cuda_kernel(name, names, ["out_val", "out_grad"], src)
        else:
            k = mx.fast.metal_kernel(
                name, names, ["out_val", "out_grad"], src, header=kernel_header(backend)
            )
        _KERNELS[key] = k
    return k


def _launch(
    decl: FusedLogProb,
    kinds: tuple[str, ...],
    backend: str,
    theta: mx.array,
    scal: mx.array,
    phi: mx.array,
    c: mx.array,
    y: mx.array,
    fixed: tuple[mx.array, ...],
) -> tuple[mx.array, mx.array]:
    """Values ``[N]`` and gradients ``[N, p + ks]`` for ``θ`` rows ``[N, p]`` and
    per-execution scalars ``scal`` (``[N, ks]`` or ``[1, ks]``)."""
    n_part, p = theta.shape
    n = y.shape[0]
    ks = sum(1 for k in kinds if k == "scalar")
    width = p + ks
    if backend == "reference":
        return _reference(decl, kinds, theta, scal, phi, c, y, fixed)
    s, chunk = layout(n_part, n)
    sstride = 1 if scal.shape[0] == n_part and n_part > 1 else 0
    dims = mx.array([n_part, n, s, chunk, sstride], dtype=mx.int32)
    kern = _kernel(decl, p, kinds, backend)
    val, grad = kern(
        inputs=[theta, scal, phi, c, y, *fixed, dims],
        grid=(n_part * s, 1, 1),
        threadgroup=(256, 1, 1),
        output_shapes=[(s, n_part), (s, n_part, width)],
        output_dtypes=[mx.float32, mx.float32],
    )
    if s == 1:
        return val[0], grad[0]
    return mx.sum(val, axis=0), mx.sum(grad, axis=0)


def _reference(
    decl: FusedLogProb,
    kinds: tuple[str, ...],
    theta: mx.array,
    scal: mx.array,
    phi: mx.array,
    c: mx.array,
    y: mx.array,
    fixed: tuple[mx.array, ...],
) -> tuple[mx.array, mx.array]:
    """The kernel's outputs with MLX operations (materialises ``[N, n]``)."""
    n_part, p = theta.shape
    ks = sum(1 for k in kinds if k == "scalar")
    sc = mx.broadcast_to(scal, (n_part, scal.shape[1]))

    def total(eta: mx.array, sc: mx.array) -> mx.array:
        args: list[mx.array] = []
        it_s, it_f = 0, 0
        for k in kinds:
            if k == "scalar":
                args.append(sc[:, it_s : it_s + 1])
                it_s += 1
            else:
                args.append(fixed[it_f][None, :])
                it_f += 1
        lp = decl.reference(y[None, :], eta, *args)
        return mx.sum(lp, axis=1)

    eta = theta @ phi.T + c
    val = total(eta, sc)
    d_eta, d_sc = mx.grad(lambda e, s_: mx.sum(total(e, s_)), argnums=(0, 1))(eta, sc)
    grad = d_eta @ phi
    if ks:
        grad = mx.concatenate([grad, d_sc[:, :ks]], axis=1)
    return val, grad


# ---------------------------------------------------------------------------- the op
_OPS: dict[tuple[Any, ...], Any] = {}
_TRACES: dict[str, int] = {}


def trace_count(backend: str) -> int:
    """How many times a fused site was put into a computation with ``backend`` (at
    trace time: a compiled program counts once) — to check that a path is fused."""
    return _TRACES.get(backend, 0)


_VMAP_LEVEL: ContextVar[int] = ContextVar("genmlx_fused_vmap_level", default=0)


@contextlib.contextmanager
def vmap_level() -> Iterator[None]:
    """Mark a GenMLX ``mx.vmap`` (entered by :func:`genmlx.core.batching.vmap_call`):
    inside two or more of them, batched fused sites use MLX operations, because the
    outer ``vmap`` would have to map the inner one's kernel (a custom kernel has no
    ``vmap`` rule in MLX)."""
    token = _VMAP_LEVEL.set(_VMAP_LEVEL.get() + 1)
    try:
        yield
    finally:
        _VMAP_LEVEL.reset(token)


def _rows(
    theta: mx.array, scal: mx.array, p: int
) -> tuple[tuple[int, ...], mx.array, mx.array]:
    """``(batch, θ [rows, p], scalars [rows or 1, ks])`` of possibly batched inputs."""
    batch = tuple(theta.shape[:-1])
    sbatch = tuple(scal.shape[:-1])
    if sbatch and sbatch != batch:  # a batched scalar with an unbatched θ
        batch = tuple(np.broadcast_shapes(batch, sbatch))
        theta = mx.broadcast_to(theta, (*batch, p))
    n_part = int(np.prod(batch)) if batch else 1
    th = theta.astype(mx.float32).reshape(n_part, p)
    if sbatch:
        sc = mx.broadcast_to(scal, (*batch, scal.shape[-1])).reshape(n_part, -1)
    else:
        sc = scal.reshape(1, -1)
    return batch, th, sc.astype(mx.float32)


def _op(decl: FusedLogProb, p: int, kinds: tuple[str, ...], backend: str) -> Any:
    """The per-execution op: its forward uses MLX operations (``mx.vmap`` traces a
    custom function's forward at one execution's shapes and maps every node of it, and
    a custom kernel has no ``vmap`` rule), its ``vmap`` rule runs all executions in one
    kernel call (:func:`_batched_op`)."""
    key = (decl, p, kinds, backend)
    hit = _OPS.get(key)
    if hit is not None:
        return hit
    n_fixed = sum(1 for k in kinds if k == "fixed")
    kop = _batched_op(decl, p, kinds, backend)

    def forward(theta: mx.array, scal: mx.array, *data: mx.array) -> tuple[mx.array, mx.array]:
        phi, c, y, *fixed = data
        batch, th, sc = _rows(theta, scal, p)
        be = backend if th.shape[0] > 1 and _VMAP_LEVEL.get() == 0 else "reference"
        val, grad = _launch(decl, kinds, be, th, sc, phi, c, y, tuple(fixed))
        return val.reshape(batch), grad.reshape(*batch, grad.shape[-1])

    op: Any = mx.custom_function(forward)

    def _vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        return _vjp_rule(p, primals, cotangents, outputs)

    def _vmap(inputs: Any, axes: Any) -> Any:
        theta, scal, *data = inputs
        at, as_, *ad = axes
        if any(a is not None for a in ad):  # batched data: MLX operations, vmapped
            return _batched_data_fallback(decl, kinds, p, inputs, axes)
        th = mx.moveaxis(theta, at, 0) if at is not None else theta
        sc = mx.moveaxis(scal, as_, 0) if as_ is not None else scal
        if at is None:  # only the scalars are batched
            th = mx.broadcast_to(th, (sc.shape[0], *th.shape))
        if as_ is None and sc.ndim > 1:
            sc = mx.broadcast_to(sc, (*th.shape[:-1], sc.shape[-1]))
        if _VMAP_LEVEL.get() > 1:  # inside an outer vmap: stay mappable
            val, grad = op(th, sc, *data)
        else:
            val, grad = kop(th, sc, *data)
        return (val, grad), (0, 0)

    op = op.vjp(_vjp)
    op = op.vmap(_vmap)
    del n_fixed
    _OPS[key] = op
    return op


def _vjp_rule(p: int, primals: Any, cotangents: Any, outputs: Any) -> Any:
    theta, scal, *data = primals
    cot = cotangents[0][..., None]
    grad = outputs[1]
    g_theta = _unbroadcast(cot * grad[..., :p], theta.shape)
    if grad.shape[-1] > p:
        g_scal = _unbroadcast(cot * grad[..., p:], scal.shape)
    else:
        g_scal = mx.zeros_like(scal)
    return (g_theta, g_scal, *[mx.zeros_like(d) for d in data])


_BATCHED: dict[tuple[Any, ...], Any] = {}


def _batched_op(decl: FusedLogProb, p: int, kinds: tuple[str, ...], backend: str) -> Any:
    """All executions ``θ [..., p]`` in one kernel call, with the kernel's gradient as
    the ``vjp``. Never traced by ``mx.vmap`` (see :func:`_op`)."""
    key = (decl, p, kinds, backend)
    hit = _BATCHED.get(key)
    if hit is not None:
        return hit

    def forward(theta: mx.array, scal: mx.array, *data: mx.array) -> tuple[mx.array, mx.array]:
        phi, c, y, *fixed = data
        batch, th, sc = _rows(theta, scal, p)
        val, grad = _launch(decl, kinds, backend, th, sc, phi, c, y, tuple(fixed))
        return val.reshape(batch), grad.reshape(*batch, grad.shape[-1])

    kop: Any = mx.custom_function(forward)

    def _vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        return _vjp_rule(p, primals, cotangents, outputs)

    kop = kop.vjp(_vjp)
    _BATCHED[key] = kop
    return kop


def _unbroadcast(g: mx.array, shape: tuple[int, ...]) -> mx.array:
    """Sum ``g`` down to ``shape`` (undo a broadcast of leading axes)."""
    shape = tuple(shape)
    extra = g.ndim - len(shape)
    if extra > 0:
        g = mx.sum(g, axis=tuple(range(extra)))
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    if axes:
        g = mx.sum(g, axis=axes, keepdims=True)
    return g.reshape(shape)


def _batched_data_fallback(
    decl: FusedLogProb, kinds: tuple[str, ...], p: int, inputs: Any, axes: Any
) -> Any:
    def one(theta: mx.array, scal: mx.array, *data: mx.array) -> tuple[mx.array, mx.array]:
        phi, c, y, *fixed = data
        val, grad = _reference(
            decl,
            kinds,
            theta.reshape(1, p),
            scal.reshape(1, -1),
            phi,
            c,
            y,
            tuple(fixed),
        )
        return val[0], grad[0]

    out = mx.vmap(one, in_axes=tuple(axes))(*inputs)
    return out, (0, 0)


def loglik(
    decl: FusedLogProb,
    kinds: tuple[str, ...],
    theta: mx.array,
    scal: mx.array,
    phi: mx.array,
    c: mx.array,
    y: mx.array,
    fixed: tuple[mx.array, ...] = (),
    backend: str | None = None,
) -> mx.array:
    """``Σⱼ K(yⱼ, ηⱼ, eⱼ)`` with ``η = c + Φθ`` (the kernel part of the log density).

    Args:
        decl: the distribution's :class:`FusedLogProb`.
        kinds: per extra parameter, ``"fixed"`` (a per-point array in ``fixed``) or
            ``"scalar"`` (one number per execution, a column of ``scal``).
        theta: ``[..., p]`` coefficients (leading axes: executions).
        scal: ``[..., ks]`` per-execution scalars (``[1]`` zeros when there are none).
        phi: ``[n, p]``. c: ``[n]``. y: ``[n]`` float32 values.
        fixed: the fixed extras, ``[n]`` each, in parameter order.
        backend: ``"cuda"``, ``"metal"`` or ``"reference"`` (default:
            :func:`active_backend`).

    Returns:
        ``[...]`` values; differentiable in ``theta`` and ``scal`` (``mx.grad``,
        ``mx.vjp``), batched by ``mx.vmap`` into one kernel call.
    """
    be = backend if backend is not None else active_backend()
    if be is None:
        raise RuntimeError(
            "fused.loglik: no backend (fused kernels are off or the default device is not "
            "a CUDA/Metal GPU); pass backend='reference' or use fused.force()"
        )
    p = int(theta.shape[-1])
    op = _op(decl, p, tuple(kinds), be)
    _TRACES[be] = _TRACES.get(be, 0) + 1
    out: mx.array = op(theta, scal, phi, c, y, *fixed)[0]
    return out
