"""Presampled Gaussian draws: the particles' keys and normal draws in one GPU kernel.

A batched operation (``vgenerate``, ``vsimulate``) gives particle ``i`` the key
``split(key, N)[i]``; the particle's body hashes it into the base of its key stream
(:class:`~genmlx.core.random.KeyStream`) and gives its ``c``-th random choice the key
``base + (0, c)``. Drawing a Gaussian choice then costs MLX several kernels per site
(the key arithmetic, ``RandomBits`` over ``N`` keys, the uniform-to-normal transform), and
on a GPU that bookkeeping, not the arithmetic, is most of an importance-sampling call.

This module computes **the same numbers in one kernel**: for every particle, its key, its
stream's base and, for each site of a *plan* — the counters ``c`` and sizes ``d`` of the
Gaussian draws the model's body makes — the ``d`` standard normals MLX's
``mx.random.normal((d,), key=base + (0, c))`` returns: the Threefry-2x32 words laid out
as MLX's ``RandomBits`` lays them out, mapped to ``(-1, 1)`` as ``mx.random.uniform``
does and through the inverse error function (CUDA's ``erfinvf``, the one MLX's CUDA
backend calls; elsewhere a single-precision polynomial of the same accuracy). The body then
runs as usual under ``mx.vmap``; a Gaussian site whose counter and size are in the plan
takes its standard normals from the kernel's output instead of drawing them (the
distribution maps them to its value with its own parameters, so parameters may depend on
earlier choices), and every other site draws from its key as before. The batching law
holds by construction: particle ``i`` still equals the unbatched run with key
``split(key, N)[i]`` (to float32 rounding of the inverse error function).

The plan comes from one unbatched run of the body (a *probe*, cached per model, argument
signature and constraint structure) that records which counters draw Gaussians of which
size. A plan entry the batched run does not meet, or meets with another size, only costs
the kernel some work: such a site draws from its key as usual. Distributions opt in by
defining ``standard_normal_shape(*params)`` and ``from_standard_normal(z, *params)``
(the normal, half-normal and log-normal of ``genmlx.dists`` do).

Used automatically on a GPU with a custom-kernel backend (CUDA: ``mx.fast.cuda_kernel``;
Apple GPUs: ``mx.fast.metal_kernel``, same generator; Metal has not been run yet) by
top-level ``vgenerate`` and ``vsimulate`` calls of ``@gen`` models, compiled or not, and by
the particle filter's compiled step (:func:`kernel_plan`). Switch it off with
``GENMLX_PRESAMPLE=0`` or ``with presample.enabled(False):``. On a CPU it is not used (MLX
has no custom CPU kernels); :func:`force` runs the plan through MLX operations (the same
draws, bit for bit) or, for eager calls in tests, through the generated C code.

Measured on an H100 (``benchmarks/README.md``): the kernel computes the keys and three
normals per particle in 0.09 ms at N = 1e6 (0.32 ms at 1e7) where MLX's path takes 0.40
(2.29) ms; importance sampling gains 0.2 ms at 1e6 and about 1 ms at 1e7.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def line(xs):
    ...     w = normal(mx.zeros(2), 1.0) @ "w"
    ...     s = normal(0.0, 1.0) @ "s"
    ...     normal(w[0] + w[1] * xs, 0.5) @ "ys"
    >>> xs = mx.linspace(0, 1, 5)
    >>> obs = choicemap({"ys": xs})
    >>> plan_for(line, "vgenerate", (xs,), obs)
    Plan(sites=((1, 2), (2, 1)))
    >>> with enabled(False):
    ...     t0, w0 = line.vgenerate((xs,), obs, 4, key=mx.random.key(0))
    >>> with force("reference"):
    ...     t1, w1 = line.vgenerate((xs,), obs, 4, key=mx.random.key(0))
    >>> bool(mx.all(t0["w"] == t1["w"])) and bool(mx.all(w0 == w1))
    True
    >>> "threefry" in kernel_source(Plan(((1, 2), (2, 1))), "cuda")
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from genmlx.core import runtime

__all__ = [
    "MAX_NORMALS",
    "Plan",
    "Presample",
    "active_backend",
    "c_library_source",
    "draw",
    "enabled",
    "force",
    "kernel_plan",
    "kernel_source",
    "pending",
    "plan_for",
    "prepare",
    "rows",
    "stats",
]

#: The most standard normals per particle a plan holds (larger sites draw as usual).
MAX_NORMALS = 256

_ON: ContextVar[bool] = ContextVar(
    "genmlx_presample", default=os.environ.get("GENMLX_PRESAMPLE", "1") != "0"
)
_FORCE: ContextVar[str | None] = ContextVar("genmlx_presample_force", default=None)
_STATS = {"kernel_calls": 0, "presampled_sites": 0, "probes": 0}


def enabled(on: bool) -> contextlib.AbstractContextManager[None]:
    """Turn presampling on or off inside a ``with`` block."""
    return runtime.scoped(_ON, on)


def force(backend: str = "reference") -> contextlib.AbstractContextManager[None]:
    """Presample as on a GPU, with ``backend`` computing the draws — for tests on machines
    without one: ``"reference"`` (MLX operations: the same draws as without
    presampling, bit for bit), ``"c"`` (the generated C code, compiled with the system
    compiler), ``"cuda"``/``"metal"`` (need that GPU)."""
    if backend not in ("reference", "c", "cuda", "metal"):
        raise ValueError(
            f"presample.force: unknown backend {backend!r} (reference, c, cuda, metal)"
        )
    return runtime.scoped(_FORCE, backend)


def active_backend() -> str | None:
    """The backend presampling uses now, or ``None`` (off, or not on a GPU)."""
    if not _ON.get():
        return None
    forced = _FORCE.get()
    if forced is not None:
        return forced
    from genmlx.core.fused import _gpu_backend

    return _gpu_backend()


def stats() -> dict[str, int]:
    """Counters: kernel launches (or reference evaluations) built, sites that took
    presampled draws while a body was traced, probes run."""
    return dict(_STATS)


# ---------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class Plan:
    """The Gaussian draws of one execution: ``(counter, size)`` per site, in order."""

    sites: tuple[tuple[int, int], ...]

    @property
    def total(self) -> int:
        """Standard normals per particle."""
        return sum(d for _, d in self.sites)

    def offsets(self) -> dict[int, tuple[int, int]]:
        """``counter -> (offset, size)`` into a particle's row of draws."""
        out: dict[int, tuple[int, int]] = {}
        off = 0
        for c, d in self.sites:
            out[c] = (off, d)
            off += d
        return out


@dataclass(frozen=True)
class Presample:
    """What a batched operation needs to presample: the plan and the backend (static)."""

    plan: Plan
    backend: str


class _Recorder:
    """Collects ``(counter, size)`` of the Gaussian draws of a probe run."""

    def __init__(self) -> None:
        self.sites: list[tuple[int, int]] = []
        self.total = 0

    def take(self, n: int, gf: Any, args: tuple[Any, ...]) -> mx.array | None:
        shape = gf.standard_normal_shape(*args)
        if shape is None:
            return None
        d = math.prod(shape)
        if 0 < d and self.total + d <= MAX_NORMALS:
            self.sites.append((n, d))
            self.total += d
        return None


class _Rows:
    """One particle's presampled draws inside the traced body."""

    def __init__(self, z: mx.array, plan: Plan) -> None:
        self.z = z
        self.where = plan.offsets()

    def take(self, n: int, gf: Any, args: tuple[Any, ...]) -> mx.array | None:
        hit = self.where.get(n)
        if hit is None:
            return None
        got = gf.standard_normal_shape(*args)
        if got is None:
            return None
        shape = tuple(got)
        off, d = hit
        if math.prod(shape) != d:
            return None
        _STATS["presampled_sites"] += 1
        z = self.z[off : off + d].reshape(shape)
        out: mx.array = gf.from_standard_normal(z, *args)
        return out


# The stream the next KeyStream.start() of this context hands out: (base or None, source).
_PENDING: ContextVar[list[Any] | None] = ContextVar("genmlx_presample_pending", default=None)


@contextlib.contextmanager
def pending(base: mx.array | None, source: Any) -> Iterator[None]:
    """The next :meth:`KeyStream.start <genmlx.core.random.KeyStream.start>` in this
    block (the top-level body's) returns a stream whose Gaussian sites consult
    ``source``; ``base`` replaces the stream's hashed base when given (the kernel
    computed it)."""
    token = _PENDING.set([(base, source)])
    try:
        yield
    finally:
        _PENDING.reset(token)


def take_pending() -> tuple[mx.array | None, Any] | None:
    """Used by ``KeyStream.start``: the pending stream, once."""
    box = _PENDING.get()
    if box is None or box[0] is None:
        return None
    out: tuple[mx.array | None, Any] = box[0]
    box[0] = None
    return out


def presampled(source: Any, n: int, gf: Any, args: tuple[Any, ...]) -> mx.array | None:
    """The value of the Gaussian site with counter ``n`` from ``source``, or ``None``
    (the site draws from its key)."""
    if source is None:
        return None
    try:
        out: mx.array | None = source.take(n, gf, args)
    except (ValueError, TypeError):  # parameters whose shape is not known here
        return None
    return out


_PLANS: dict[Any, Plan | None] = {}


def plan_for(gf: Any, op: str, args: tuple[Any, ...], constraints: Any = None) -> Plan | None:
    """The plan of ``gf``'s top-level Gaussian draws for ``op`` (``"vgenerate"`` or
    ``"vsimulate"``) with these arguments and constraints (cached per argument signature
    and constraint addresses and shapes), or ``None`` when the body draws none."""
    from genmlx.core.graph import _arg_signature

    cons_sig: Any = ()
    if constraints is not None:
        cons_sig = tuple(
            (tuple(p), tuple(v.shape) if isinstance(v, mx.array) else type(v).__name__)
            for p, v in constraints.leaves()
        )
    key = (id(gf), op, _arg_signature(args), cons_sig)
    if key in _PLANS:
        return _PLANS[key]
    rec = _Recorder()
    _STATS["probes"] += 1
    try:
        with pending(None, rec):
            if op == "vgenerate":
                gf._generate(args, constraints, mx.random.key(0))
            else:
                gf._simulate(args, mx.random.key(0))
        plan = Plan(tuple(rec.sites)) if rec.sites else None
    except Exception:
        plan = None
    if len(_PLANS) > 256:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[key] = plan
    return plan


def kernel_plan(gf: Any, args: tuple[Any, ...], constraints: Any = None) -> Presample | None:
    """For code that runs ``gf.generate(args, constraints, key=k)`` for every particle
    under its own ``vmap`` (a combinator's particle step): how to presample it
    (``None``: not on this device, not a ``@gen`` function, or no Gaussian draws).
    ``args`` are one particle's concrete arguments. Use it as ``vgenerate`` does::

        base, z = draw(pre, None, keys, n)            # keys: [n, 2], outside the vmap
        # inside the vmapped function, for particle (k, b, zz):
        with pending(b, rows(zz, pre.plan)):
            tr, w = gf.generate(args, constraints, key=k)
    """
    from genmlx.core.dsl import DynamicGenerativeFunction

    backend = active_backend()
    if backend is None or not isinstance(gf, DynamicGenerativeFunction):
        return None
    if constraints is not None and (constraints.batch_shape or constraints.is_masked):
        return None
    try:
        plan = plan_for(gf, "vgenerate", args, constraints)
    except TypeError:
        return None
    return None if plan is None else _presample(plan, backend)


def _presample(plan: Plan, backend: str) -> Presample:
    """One object per plan and backend: it is a static part of compiled programs'
    signatures, which compare such objects by identity."""
    key = (plan, backend)
    out = _PRESAMPLES.get(key)
    if out is None:
        out = _PRESAMPLES[key] = Presample(plan, backend)
    return out


_PRESAMPLES: dict[tuple[Plan, str], Presample] = {}


def rows(z: mx.array, plan: Plan) -> Any:
    """The source :func:`pending` takes for one particle's row ``z`` of :func:`draw`'s
    normals."""
    return _Rows(z, plan)


def prepare(gf: Any, op: str, args: tuple[Any, ...], constraints: Any = None) -> Presample | None:
    """Whether and how a top-level batched ``op`` on ``gf`` presamples (``None``: not)."""
    from genmlx.core import runtime
    from genmlx.core.dsl import DynamicGenerativeFunction

    backend = active_backend()
    if backend is None or runtime.in_transform() or runtime.operation_depth() > 1:
        return None
    if not isinstance(gf, DynamicGenerativeFunction):
        return None
    if constraints is not None and (constraints.batch_shape or constraints.is_masked):
        return None
    try:
        plan = plan_for(gf, op, args, constraints)
    except TypeError:  # arguments without a signature
        return None
    return None if plan is None else _presample(plan, backend)


# ---------------------------------------------------------------------------- kernels
# Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random numbers: as easy as
# 1, 2, 3", 2011), the variant and round constants MLX's RandomBits uses.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry_source(backend: str) -> str:
    u = "uint" if backend == "metal" else "unsigned int"
    fn = (
        "inline"
        if backend == "metal"
        else ("__device__ inline" if backend == "cuda" else "static inline")
    )
    rounds = []
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            rounds.append(f"  x0 += x1; x1 = (x1 << {r}) | (x1 >> {32 - r}); x1 ^= x0;")
        rounds.append(f"  x0 += ks[{(i + 1) % 3}]; x1 += ks[{(i + 2) % 3}] + {i + 1}u;")
    body = "\n".join(rounds)
    return (
        (
            f"{fn} void gm_threefry({u} k0, {u} k1, {u} c0, {u} c1, thread_out0, thread_out1) {{\n"
            f"  {u} ks[3] = {{k0, k1, k0 ^ k1 ^ 0x1BD11BDAu}};\n"
            f"  {u} x0 = c0 + ks[0];\n"
            f"  {u} x1 = c1 + ks[1];\n"
            f"{body}\n"
            "  *o0 = x0; *o1 = x1;\n"
            "}\n"
        )
        .replace("thread_out0", f"{'thread ' if backend == 'metal' else ''}{u}* o0")
        .replace("thread_out1", f"{'thread ' if backend == 'metal' else ''}{u}* o1")
    )


# Single-precision inverse error function (M. Giles, "Approximating the erfinv
# function", GPU Computing Gems, 2011), for backends without one.
_ERFINV_POLY = """{fn} float gm_erfinv(float x) {{
  float w = -{log}((1.0f - x) * (1.0f + x));
  float p;
  if (w < 5.0f) {{
    w = w - 2.5f;
    p = 2.81022636e-08f;
    p = 3.43273939e-07f + p * w;
    p = -3.5233877e-06f + p * w;
    p = -4.39150654e-06f + p * w;
    p = 0.00021858087f + p * w;
    p = -0.00125372503f + p * w;
    p = -0.00417768164f + p * w;
    p = 0.246640727f + p * w;
    p = 1.50140941f + p * w;
  }} else {{
    w = {sqrt}(w) - 3.0f;
    p = -0.000200214257f;
    p = 0.000100950558f + p * w;
    p = 0.00134934322f + p * w;
    p = -0.00367342844f + p * w;
    p = 0.00573950773f + p * w;
    p = -0.0076224613f + p * w;
    p = 0.00943887047f + p * w;
    p = 1.00167406f + p * w;
    p = 2.83297682f + p * w;
  }}
  return p * x;
}}
"""


def kernel_header(backend: str) -> str:
    """Helper functions placed before the kernel body (Threefry, the inverse error
    function where the backend has none, the bits-to-normal map)."""
    u = "uint" if backend == "metal" else "unsigned int"
    if backend == "cuda":
        fn, erfinv = "__device__ inline", "erfinvf"
        extra = ""
    elif backend == "metal":
        fn, erfinv = "inline", "gm_erfinv"
        extra = _ERFINV_POLY.format(fn=fn, log="metal::log", sqrt="metal::sqrt")
    elif backend == "c":
        fn, erfinv = "static inline", "gm_erfinv"
        extra = _ERFINV_POLY.format(fn=fn, log="logf", sqrt="sqrtf")
    else:
        raise ValueError(f"presample: unknown backend {backend!r} (cuda, metal, c)")
    # mx.random.normal: bits -> float32 / 2^32 (exact), capped below 1, mapped to
    # [-1 + 2^-24, 1) as 2u + lo (2u is exact), then sqrt(2) * erfinv.
    normal = (
        f"{fn} float gm_normal({u} bits) {{\n"
        "  float u = (float)bits * 2.3283064365386963e-10f;\n"
        "  u = u < 0.99999994f ? u : 0.99999994f;\n"
        "  float s = 2.0f * u + (-0.99999994f);\n"
        f"  return 1.41421354f * {erfinv}(s);\n"
        "}\n"
    )
    return _threefry_source(backend) + extra + normal


def _body(plan: Plan, backend: str) -> str:
    """The per-particle code: ``i`` is the particle; writes ``out_base`` and ``out_z``."""
    u = "uint" if backend == "metal" else "unsigned int"
    ref = "&"
    lines = [
        "  const long n = (long)in_dims[0];",
        "  if (i >= n) RETURN_OR_CONTINUE;",
        f"  {u} k0, k1, h0, h1;",
        "  if (in_dims[1]) {",
        "    k0 = in_key[2 * i]; k1 = in_key[2 * i + 1];",
        "  } else {",
        "    // split(key, n)[i]: words 2i and 2i + 1 of RandomBits(key, (n, 2)), whose",
        "    // word w < n is hash(key, (w, w + n)).x and word w >= n is hash(key, (w - n, w)).y",
        "    long w = 2 * i;",
        "    for (int j = 0; j < 2; ++j, ++w) {",
        f"      {u} c0 = ({u})(w < n ? w : w - n);",
        f"      {u} c1 = ({u})(w < n ? w + n : w);",
        f"      gm_threefry(in_key[0], in_key[1], c0, c1, {ref}h0, {ref}h1);",
        "      if (j == 0) k0 = (w < n) ? h0 : h1; else k1 = (w < n) ? h0 : h1;",
        "    }",
        "  }",
        "  // the stream's base: split(k, 2)[0] = (hash(k, (0, 2)).x, hash(k, (1, 3)).x)",
        f"  {u} b0, b1;",
        f"  gm_threefry(k0, k1, 0u, 2u, {ref}b0, {ref}h1);",
        f"  gm_threefry(k0, k1, 1u, 3u, {ref}b1, {ref}h1);",
        "  out_base[2 * i] = b0; out_base[2 * i + 1] = b1;",
    ]
    off = 0
    for c, d in plan.sites:
        half, odd = d // 2, d % 2
        gy = half + odd
        lines.append(f"  {{ // site counter {c}: {d} normals from key base + (0, {c})")
        lines.append(f"    const {u} s1 = b1 + {c}u;")
        if half:
            lines.append(f"    for ({u} y = 0; y < {half}u; ++y) {{")
            lines.append(f"      gm_threefry(b0, s1, y, y + {gy}u, {ref}h0, {ref}h1);")
            lines.append(f"      out_z[({off} + (long)y) * n + i] = gm_normal(h0);")
            lines.append(f"      out_z[({off + gy} + (long)y) * n + i] = gm_normal(h1);")
            lines.append("    }")
        if odd:
            lines.append(f"    gm_threefry(b0, s1, {half}u, 0u, {ref}h0, {ref}h1);")
            lines.append(f"    out_z[{off + half}L * n + i] = gm_normal(h0);")
        lines.append("  }")
        off += d
    return "\n".join(lines) + "\n"


def kernel_source(plan: Plan, backend: str) -> str:
    """The kernel body for ``backend`` (``"cuda"``, ``"metal"``); inputs ``in_key``
    (``uint32 [2]`` or ``[N, 2]``) and ``in_dims`` (``int32 [N, keys given]``), outputs
    ``out_base`` (``uint32 [N, 2]``) and ``out_z`` (``float32 [total, N]``)."""
    if backend == "cuda":
        index = "(long)cooperative_groups::this_grid().thread_rank()"
    elif backend == "metal":
        index = "(long)thread_position_in_grid.x"
    else:
        raise ValueError(f"presample.kernel_source: unknown backend {backend!r} (cuda, metal)")
    return (
        "  // presampled normals (threefry keys, one thread per particle)\n"
        f"  const long i = {index};\n"
        "  #define RETURN_OR_CONTINUE return\n"
        + _body(plan, backend)
        + "  #undef RETURN_OR_CONTINUE\n"
    )


def _kernel_id(plan: Plan) -> str:
    return hashlib.sha1(repr(plan.sites).encode()).hexdigest()[:12]


def c_function_name(plan: Plan) -> str:
    """The name of the function :func:`c_library_source` defines."""
    return "genmlx_presample_" + _kernel_id(plan)


def c_library_source(plan: Plan) -> str:
    """The same code as plain C, for checking the generator without a GPU (compile with
    ``cc -shared`` and call through ``ctypes``): ``void f(const unsigned int* in_key,
    const int* in_dims, unsigned int* out_base, float* out_z)``."""
    return (
        "#include <math.h>\n\n"
        + kernel_header("c")
        + f"\nvoid {c_function_name(plan)}(const unsigned int* in_key, const int* in_dims, "
        "unsigned int* out_base, float* out_z) {\n"
        "  for (long i = 0; i < (long)in_dims[0]; ++i) {\n"
        "  #define RETURN_OR_CONTINUE continue\n"
        + _body(plan, "c")
        + "  #undef RETURN_OR_CONTINUE\n  }\n}\n"
    )


_KERNELS: dict[tuple[Plan, str], Any] = {}


def _gpu_kernel(plan: Plan, backend: str) -> Any:
    k = _KERNELS.get((plan, backend))
    if k is None:
        name = "genmlx_presample_" + _kernel_id(plan)
        src = kernel_source(plan, backend)
        if backend == "cuda":
            k = mx.fast.cuda_kernel(
                name,
                ["in_key", "in_dims"],
                ["out_base", "out_z"],
                src,
                header=kernel_header(backend),
            )
        else:
            k = mx.fast.metal_kernel(
                name,
                ["in_key", "in_dims"],
                ["out_base", "out_z"],
                src,
                header=kernel_header(backend),
            )
        _KERNELS[(plan, backend)] = k
    return k


_C_LIBS: dict[Plan, Any] = {}


def _c_draw(plan: Plan, key: mx.array, n: int, per_key: bool) -> tuple[mx.array, mx.array]:
    """Run the generated C code (tests): compiled once per plan with the system compiler."""
    import ctypes
    import subprocess
    import tempfile

    import numpy as np

    lib = _C_LIBS.get(plan)
    if lib is None:
        d = tempfile.mkdtemp(prefix="genmlx_presample_")
        src, so = os.path.join(d, "k.c"), os.path.join(d, "k.so")
        with open(src, "w") as f:
            f.write(c_library_source(plan))
        subprocess.run(
            ["cc", "-O2", "-ffp-contract=off", "-shared", "-fPIC", src, "-o", so, "-lm"],
            check=True,
            capture_output=True,
        )
        lib = ctypes.CDLL(so)
        _C_LIBS[plan] = lib
    k = np.ascontiguousarray(np.array(key, dtype=np.uint32))
    dims = np.array([n, 1 if per_key else 0], dtype=np.int32)
    base = np.zeros((n, 2), dtype=np.uint32)
    z = np.zeros((plan.total, n), dtype=np.float32)
    fn = getattr(lib, c_function_name(plan))
    ptr = ctypes.c_void_p
    fn(ptr(k.ctypes.data), ptr(dims.ctypes.data), ptr(base.ctypes.data), ptr(z.ctypes.data))
    return mx.array(base), mx.array(z)


def _reference_draw(plan: Plan, key: mx.array, n: int, per_key: bool) -> tuple[mx.array, mx.array]:
    """The same draws with MLX operations (what the body would draw itself)."""
    ks = key if per_key else mx.random.split(key, n)
    base = mx.vmap(lambda k: mx.random.split(k, 2)[0])(ks)
    cols = []
    for c, d in plan.sites:
        off = mx.array([0, c], dtype=mx.uint32)
        cols.append(mx.vmap(lambda b, d=d, off=off: mx.random.normal((d,), key=b + off))(base))
    return base, mx.concatenate(cols, axis=1).T


def draw(
    pre: Presample, key: mx.array | None, keys: mx.array | None, n: int
) -> tuple[mx.array, mx.array]:
    """The particles' stream bases ``[n, 2]`` and presampled normals ``[n, total]``
    (a transposed view of the kernel's ``[total, n]`` output) for the operation key
    ``key`` (or the particles' keys ``keys``)."""
    per_key = keys is not None
    src = keys if per_key else key
    assert src is not None
    _STATS["kernel_calls"] += 1
    if pre.backend == "reference":
        base, z = _reference_draw(pre.plan, src, n, per_key)
    elif pre.backend == "c":
        base, z = _c_draw(pre.plan, src, n, per_key)
    else:
        kern = _gpu_kernel(pre.plan, pre.backend)
        dims = mx.array([n, 1 if per_key else 0], dtype=mx.int32)
        base, z = kern(
            inputs=[src.astype(mx.uint32), dims],
            grid=(n, 1, 1),
            threadgroup=(256, 1, 1),
            output_shapes=[(n, 2), (pre.plan.total, n)],
            output_dtypes=[mx.uint32, mx.float32],
        )
    return base, z.T
