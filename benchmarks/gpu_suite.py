"""One GPU session, side by side: importance sampling vs GenJAX and hand-written JAX/MLX,
and NUTS with many chains vs NumPyro.

Run on the GPU machine (MLX's CUDA backend staged as ``../shared/gpu/README.md`` says)::

    XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=<mlx site>:packages/genmlx-core/src:... \
        python benchmarks/gpu_suite.py --out $OUT/gpu_suite.json

It also runs on a CPU (with ``--quick``) to check the script. Every timing is the minimum
over repetitions of a compiled program that was run once before (compile excluded);
compile/first-call times are reported separately. Peers (GenJAX, JAX, NumPyro) are
optional: missing ones are reported as such.

* ``is_poly``: polynomial regression (``a, b, c ~ N(0, 1)``, 50 points, noise 0.05),
  ``log Ẑ = logsumexp(w) − log N`` from ``N`` prior particles. GenMLX ``vgenerate`` with
  the affine-Gaussian rewrite on (its default), rewrite off with the fused kernel
  (:mod:`genmlx.core.fused`, GPU only), and neither; hand-written MLX (one broadcast
  likelihood, compiled); GenJAX ``init`` (jitted); hand-written JAX (jitted).
* ``is_logreg``: logistic regression (200 points, 5 coefficients + intercept), the same
  estimator: the generalised-linear matrix-product path (fused off) vs the fused
  kernel (the GPU default).

Fused columns read "n/a (no GPU)" where the default device has no CUDA/Metal backend.

* ``nuts``: ``mcmc`` (GenMLX) vs NumPyro's NUTS kernel in a jitted scan, logistic
  regression, ``C`` chains.
* ``smc`` (:mod:`gpu_smc`): steps/s of a bootstrap particle filter (systematic
  resampling before every step, ``T = 30`` steps) on ``smc_filter``'s HMM (3 states) and
  linear-Gaussian models at N = 1e3..1e6: GenMLX's ``particle_filter`` as a user calls
  it, hand-written MLX (compiled step), hand-written JAX (one jit of a ``lax.scan``),
  GenJAX's ``init``/``resample``/``extend`` in a jitted scan, and GenJAX's
  ``rejuvenation_smc`` (ESS-triggered resampling; N ≤ 1e4). Each side's ``log Ẑ`` is
  checked against the exact log marginal likelihood (forward algorithm / Kalman filter).
* ``samplers`` (:mod:`gpu_samplers`): samples/s of ``genmlx.dists`` samplers (eager and
  under ``mx.compile``) vs ``jax.random`` (jitted) at N = 1e6, 1e7: normal, uniform,
  exponential, gamma, beta, Poisson, binomial, Student-t, Dirichlet (K = 3), categorical
  (K = 3).

``--only`` picks sections (``--only smc samplers``); without it the suite runs ``is``
and ``nuts``. A section that fails records its error in the JSON and the others run;
the JSON is written after every section (and after every row of ``smc``/``samplers``,
marked ``partial``), the tables to ``<out>.md`` at the end. ``--smc-budget-s`` /
``--sampler-budget-s`` stop starting new cells once a section has run that long (the
cells left are listed as skipped).

Example (the GPU run of the two newer sections, about 4 minutes at most)::

    bash benchmarks/gpu_run.sh --only smc samplers --smc-budget-s 100 --sampler-budget-s 60
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import choicemap, fused, gen, presample, rewrites
from genmlx.dists import bernoulli, normal

REPS = 20
SKIP_NUMPYRO = False
SKIP_LOGREG = False


def _best(
    fn: Callable[[int], Any], block: Callable[[Any], None], reps: int = REPS
) -> tuple[float, float]:
    """(first call seconds, best of ``reps`` seconds) of ``fn(i)``."""
    t0 = time.perf_counter()
    block(fn(0))
    first = time.perf_counter() - t0
    block(fn(1))
    best = math.inf
    for i in range(reps):
        t0 = time.perf_counter()
        block(fn(i + 2))
        best = min(best, time.perf_counter() - t0)
    return first, best


def _mx_block(x: Any) -> None:
    mx.eval(x)


# ---------------------------------------------------------------------------- data
XS_NP = np.linspace(0, 1, 50).astype(np.float32)
YS_NP = (
    0.5 - 1.25 * XS_NP + 2.0 * XS_NP**2 + 0.05 * np.random.default_rng(0).standard_normal(50)
).astype(np.float32)
_rng = np.random.default_rng(1)
LR_X = _rng.standard_normal((200, 5)).astype(np.float32)
LR_Y = _rng.uniform(size=200) < 1 / (
    1 + np.exp(-(LR_X @ np.array([1.0, -0.5, 0.8, 0.0, -1.2]) + 0.3))
)


@gen
def poly(xs):
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    c = normal(0.0, 1.0) @ "c"
    normal(a + b * xs + c * xs**2, 0.05) @ "ys"


@gen
def logreg(x):
    w = normal(mx.zeros(5), 1.0) @ "w"
    b = normal(0.0, 1.0) @ "b"
    bernoulli(mx.sigmoid(x @ w + b)) @ "y"


def _genmlx_is(
    model: Any,
    args: tuple[Any, ...],
    obs: Any,
    n: int,
    rw: bool,
    fz: bool = False,
    ps: bool = True,
) -> dict[str, Any]:
    if fz and fused.active_backend() is None:
        return {"na": "n/a (no GPU)"}

    def one(i: int) -> mx.array:
        with rewrites.enabled(rw), fused.enabled(fz), presample.enabled(ps):
            _, w = model.vgenerate(args, obs, n, key=mx.random.key(i))
        return mx.logsumexp(w) - math.log(n)

    first, best = _best(one, _mx_block)
    return {"first_s": first, "ms": best * 1e3, "log_ml": float(one(123).item())}


def _hand_mlx_poly(n: int) -> dict[str, float]:
    xs, ys = mx.array(XS_NP), mx.array(YS_NP)

    def f(key: mx.array) -> mx.array:
        z = mx.random.normal((3, n), key=key)
        mu = z[0][:, None] + z[1][:, None] * xs + z[2][:, None] * xs * xs
        r = (ys - mu) / 0.05
        ll = mx.sum(-0.5 * r * r, axis=1) - 50 * (math.log(0.05) + 0.5 * math.log(2 * math.pi))
        return mx.logsumexp(ll) - math.log(n)

    cf = mx.compile(f)
    first, best = _best(lambda i: cf(mx.random.key(i)), _mx_block)
    return {"first_s": first, "ms": best * 1e3}


def _hand_mlx_logreg(n: int) -> dict[str, float]:
    x, y = mx.array(LR_X), mx.array(LR_Y.astype(np.float32))

    def f(key: mx.array) -> mx.array:
        z = mx.random.normal((n, 6), key=key)
        eta = z[:, :5] @ x.T + z[:, 5:]
        ll = mx.sum(y * eta - mx.logaddexp(0.0, eta), axis=1)
        return mx.logsumexp(ll) - math.log(n)

    cf = mx.compile(f)
    first, best = _best(lambda i: cf(mx.random.key(i)), _mx_block)
    return {"first_s": first, "ms": best * 1e3}


def _jax_side(n: int, which: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {"jax": None, "genjax": None}

    def jblock(x: Any) -> None:
        jax.block_until_ready(x)

    if which == "poly":
        xs, ys = jnp.asarray(XS_NP), jnp.asarray(YS_NP)

        def hand(key: Any) -> Any:
            z = jax.random.normal(key, (3, n))
            mu = z[0][:, None] + z[1][:, None] * xs + z[2][:, None] * xs * xs
            r = (ys - mu) / 0.05
            ll = jnp.sum(-0.5 * r * r, axis=1) - 50 * (math.log(0.05) + 0.5 * math.log(2 * math.pi))
            return jax.nn.logsumexp(ll) - math.log(n)
    else:
        x, y = jnp.asarray(LR_X), jnp.asarray(LR_Y.astype(np.float32))

        def hand(key: Any) -> Any:
            z = jax.random.normal(key, (n, 6))
            eta = z[:, :5] @ x.T + z[:, 5:]
            ll = jnp.sum(y * eta - jnp.logaddexp(0.0, eta), axis=1)
            return jax.nn.logsumexp(ll) - math.log(n)

    jh = jax.jit(hand)
    first, best = _best(lambda i: jh(jax.random.PRNGKey(i)), jblock)
    out["jax"] = {"first_s": first, "ms": best * 1e3}
    try:
        import genjax
        from genjax import const, seed
    except ImportError:
        out["genjax"] = None
        return out
    if which == "poly":

        @genjax.gen
        def gpoly(xs: Any) -> None:
            a = genjax.normal(0.0, 1.0) @ "a"
            b = genjax.normal(0.0, 1.0) @ "b"
            c = genjax.normal(0.0, 1.0) @ "c"
            # a vector observation is a vmapped normal in GenJAX (a plain vector-valued
            # normal scores per element and would not sum the weights)
            genjax.normal.vmap(in_axes=(0, None))(a + b * xs + c * xs**2, 0.05) @ "ys"

        model, args, cons = gpoly, (jnp.asarray(XS_NP),), {"ys": jnp.asarray(YS_NP)}
    else:

        @genjax.gen
        def glogreg(x: Any) -> None:
            # scalar coefficients: GenJAX 1.0.14's Vmap fails under init's particle vmap
            # when its vmapped arguments are constants (jnp.zeros(5))
            w = jnp.stack([genjax.normal(0.0, 1.0) @ f"w{i}" for i in range(5)])
            b = genjax.normal(0.0, 1.0) @ "b"
            genjax.flip.vmap(in_axes=(0,))(jax.nn.sigmoid(x @ w + b)) @ "y"

        model, args, cons = glogreg, (jnp.asarray(LR_X),), {"y": jnp.asarray(LR_Y)}

    def gj(key: Any, cons: Any) -> Any:
        pc = seed(lambda: genjax.init(model, args, const(n), cons))(key)
        return pc.log_marginal_likelihood()

    jg = jax.jit(gj)
    try:
        first, best = _best(lambda i: jg(jax.random.PRNGKey(i), cons), jblock)
        out["genjax"] = {
            "first_s": first,
            "ms": best * 1e3,
            "log_ml": float(jg(jax.random.PRNGKey(123), cons)),
        }
    except Exception as e:
        out["genjax"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return out


def run_is(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    xs = mx.array(XS_NP)
    poly_obs = choicemap({"ys": mx.array(YS_NP)})
    lr_x = mx.array(LR_X)
    lr_obs = choicemap({"y": mx.array(LR_Y)})
    for n in sizes:
        row: dict[str, Any] = {"n": n}
        row["poly_genmlx"] = _genmlx_is(poly, (xs,), poly_obs, n, True)
        row["poly_genmlx_fused"] = _genmlx_is(poly, (xs,), poly_obs, n, False, True)
        row["poly_genmlx_no_rewrite"] = _genmlx_is(poly, (xs,), poly_obs, n, False)
        row["poly_genmlx_nopre"] = _genmlx_is(poly, (xs,), poly_obs, n, True, False, False)
        row["poly_genmlx_fused_nopre"] = _genmlx_is(poly, (xs,), poly_obs, n, False, True, False)
        row["poly_mlx"] = _hand_mlx_poly(n)
        row.update({f"poly_{k}": v for k, v in _jax_side(n, "poly").items()})
        if n <= 10**6 and not SKIP_LOGREG:
            row["logreg_genmlx"] = _genmlx_is(logreg, (lr_x,), lr_obs, n, True)
            row["logreg_genmlx_fused"] = _genmlx_is(logreg, (lr_x,), lr_obs, n, True, True)
            row["logreg_genmlx_fused_nopre"] = _genmlx_is(
                logreg, (lr_x,), lr_obs, n, True, True, False
            )
            row["logreg_mlx"] = _hand_mlx_logreg(n)
            row.update({f"logreg_{k}": v for k, v in _jax_side(n, "logreg").items()})
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def run_nuts(chains: int, warmup: int, draws: int) -> dict[str, Any]:
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    import nuts_models as nm

    out: dict[str, Any] = {"chains": chains, "warmup": warmup, "draws": draws}
    out["genmlx"] = nm.run_genmlx("logreg", chains, warmup, draws, seed=0)
    out["numpyro"] = (
        None if SKIP_NUMPYRO else nm.run_numpyro("logreg", chains, warmup, draws, seed=0)
    )
    print(json.dumps({k: v for k, v in out.items()}, default=str)[:2000], flush=True)
    return out


def _section(res: dict[str, Any], name: str, out: str, fn: Callable[[], Any]) -> None:
    """Run one section; its error (if any) goes into the JSON, which is written after it."""
    t0 = time.perf_counter()
    try:
        res[name] = fn()
    except Exception as e:  # one failing section must not lose the others
        import traceback

        traceback.print_exc()
        res[name] = {"error": f"{type(e).__name__}: {e}"[:1000]}
    res.setdefault("section_s", {})[name] = time.perf_counter() - t0
    print(f"section {name}: {res['section_s'][name]:.1f} s", flush=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1, default=str)


def _saver(res: dict[str, Any], name: str, out: str) -> Callable[[dict[str, Any]], None]:
    """Save a section's partial result (so a run stopped from outside keeps its rows)."""

    def save(part: dict[str, Any]) -> None:
        res[name] = {**part, "partial": True}
        with open(out, "w") as f:
            json.dump(res, f, indent=1, default=str)

    return save


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu_suite.json")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip-nuts", action="store_true")
    p.add_argument("--chains", type=int, default=1000)
    p.add_argument("--sizes", type=int, nargs="*")
    p.add_argument("--skip-numpyro", action="store_true")
    p.add_argument("--skip-logreg", action="store_true")
    p.add_argument(
        "--only",
        nargs="+",
        choices=["is", "nuts", "smc", "samplers"],
        help="run only these sections (default: is and nuts)",
    )
    p.add_argument("--smc-sizes", type=int, nargs="*", help="particle counts of the smc section")
    p.add_argument("--smc-steps", type=int, help="filter steps T of the smc section")
    p.add_argument("--smc-reps", type=int, help="timed filters per cell (smc)")
    p.add_argument("--skip-genjax", action="store_true", help="smc: no GenJAX columns")
    p.add_argument("--sampler-sizes", type=int, nargs="*", help="N of the samplers section")
    p.add_argument("--sampler-reps", type=int, help="timed calls per cell (samplers)")
    p.add_argument(
        "--smc-budget-s", type=float, help="smc: start no new cell after this many seconds"
    )
    p.add_argument(
        "--sampler-budget-s",
        type=float,
        help="samplers: start no new cell after this many seconds",
    )
    a = p.parse_args()
    sizes = a.sizes or ([10**3, 10**4] if a.quick else [10**4, 10**5, 10**6, 10**7])
    only = set(a.only or ["is", "nuts"])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    global SKIP_NUMPYRO, SKIP_LOGREG
    SKIP_NUMPYRO, SKIP_LOGREG = a.skip_numpyro, a.skip_logreg
    res: dict[str, Any] = {
        "name": "gpu_suite",
        "device": str(mx.default_device()),
        "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
        "gpu": os.environ.get("GENMLX_GPU_NAME", ""),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "fused_backend": fused.active_backend(),
        "versions": _versions(),
    }
    if "is" in only:
        _section(res, "is", a.out, lambda: run_is(sizes))
    if "smc" in only:
        import gpu_smc

        _section(
            res,
            "smc",
            a.out,
            lambda: gpu_smc.run(
                a.smc_sizes or ([10**3, 10**4] if a.quick else [10**3, 10**4, 10**5, 10**6]),
                steps=a.smc_steps or (10 if a.quick else 30),
                reps=a.smc_reps or (3 if a.quick else 5),
                genjax_on=not a.skip_genjax,
                rsmc_max_n=10**3 if a.quick else 10**4,
                budget_s=a.smc_budget_s,
                progress=_saver(res, "smc", a.out),
            ),
        )
    if "samplers" in only:
        import gpu_samplers

        _section(
            res,
            "samplers",
            a.out,
            lambda: gpu_samplers.run(
                a.sampler_sizes or ([10**4, 10**5] if a.quick else [10**6, 10**7]),
                reps=a.sampler_reps or (3 if a.quick else 5),
                budget_s=a.sampler_budget_s,
                progress=_saver(res, "samplers", a.out),
            ),
        )
    if "nuts" in only and not a.skip_nuts:
        _section(
            res,
            "nuts",
            a.out,
            lambda: run_nuts(a.chains, 100 if a.quick else 300, 100 if a.quick else 500),
        )
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1, default=str)
    text = table(res)
    md = os.path.splitext(a.out)[0] + ".md"
    with open(md, "w") as f:
        f.write(text + "\n")
    print(text, flush=True)
    print(f"wrote {a.out} and {md}", flush=True)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("mlx", "jax", "jaxlib", "genjax", "numpyro"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def table(result: dict[str, Any]) -> str:
    """README tables of a gpu_suite result."""

    def ms(row: dict[str, Any], k: str) -> str:
        v = row.get(k)
        if isinstance(v, dict) and "na" in v:
            return str(v["na"])
        return f"{v['ms']:.3f}" if isinstance(v, dict) and "ms" in v else "—"

    def ratio(row: dict[str, Any], a: str, b: str) -> str:
        x, y = row.get(a), row.get(b)
        if isinstance(x, dict) and isinstance(y, dict) and "ms" in x and "ms" in y:
            return f"**{x['ms'] / y['ms']:.2f}**"
        return "—"

    lines: list[str] = []
    for name in ("is", "nuts", "smc", "samplers"):
        v = result.get(name)
        if isinstance(v, dict) and "error" in v:
            lines += [f"Section `{name}` failed: {v['error']}", ""]
    if isinstance(result.get("is"), list) and result["is"]:
        lines += _is_tables(result["is"], ms, ratio)
    n = result.get("nuts")
    if isinstance(n, dict) and "genmlx" in n:
        lines += _nuts_table(n)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    for name in ("smc", "samplers"):
        v = result.get(name)
        if isinstance(v, dict) and "rows" in v:
            mod = __import__(f"gpu_{name}")
            lines += ["", mod.table(v)] if lines else [mod.table(v)]
    return "\n".join(lines)


def _is_tables(
    rows_all: list[dict[str, Any]],
    ms: Callable[[dict[str, Any], str], str],
    ratio: Callable[[dict[str, Any], str, str], str],
) -> list[str]:
    lines = [
        "Importance sampling, polynomial regression (ms per call, best of 20, compile excluded):",
        "",
        "| N | GenMLX (rewrite) | GenMLX (no rewrite, fused) | GenMLX (neither) | hand MLX "
        "| hand JAX | GenJAX | GenMLX / GenJAX (rewrite, fused, neither) "
        "| without presampling: rewrite, fused |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows_all:
        lines.append(
            f"| {r['n']:.0e} | {ms(r, 'poly_genmlx')} | {ms(r, 'poly_genmlx_fused')} | "
            f"{ms(r, 'poly_genmlx_no_rewrite')} | "
            f"{ms(r, 'poly_mlx')} | {ms(r, 'poly_jax')} | {ms(r, 'poly_genjax')} | "
            f"{ratio(r, 'poly_genmlx', 'poly_genjax')}, "
            f"{ratio(r, 'poly_genmlx_fused', 'poly_genjax')}, "
            f"{ratio(r, 'poly_genmlx_no_rewrite', 'poly_genjax')} | "
            f"{ms(r, 'poly_genmlx_nopre')}, {ms(r, 'poly_genmlx_fused_nopre')} |"
        )
    rows = [r for r in rows_all if "logreg_genmlx" in r]
    if rows:
        lines += [
            "",
            "Importance sampling, logistic regression (200 points, 6 coefficients):",
            "",
            "| N | GenMLX (matrix product) | GenMLX (fused) | hand MLX | hand JAX | GenJAX "
            "| GenMLX / GenJAX (matrix product, fused) | fused, without presampling |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['n']:.0e} | {ms(r, 'logreg_genmlx')} | {ms(r, 'logreg_genmlx_fused')} | "
                f"{ms(r, 'logreg_mlx')} | {ms(r, 'logreg_jax')} | {ms(r, 'logreg_genjax')} | "
                f"{ratio(r, 'logreg_genmlx', 'logreg_genjax')}, "
                f"{ratio(r, 'logreg_genmlx_fused', 'logreg_genjax')} | "
                f"{ms(r, 'logreg_genmlx_fused_nopre')} |"
            )
    return lines


def _nuts_table(n: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if n:
        lines += [
            "",
            f"NUTS on the logistic regression, {n['chains']} chains, {n['warmup']} warm-up + "
            f"{n['draws']} draws:",
            "",
            "| sampler | ESS | sampling (s) | ESS/s | warm-up (s) | compile (s) | leapfrog/draw |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for side in ("genmlx", "numpyro"):
            m = n.get(side)
            if not m:
                continue
            lines.append(
                f"| {side} | {m['ess']:,.0f} | {m['sampling_s']:.2f} | {m['ess_per_s']:,.0f} | "
                f"{m['warmup_s']:.2f} | {m['compile_s']:.1f} | {m['mean_leapfrog']:.1f} |"
            )
        if n.get("numpyro"):
            lines.append("")
            ratio_nuts = n["genmlx"]["ess_per_s"] / n["numpyro"]["ess_per_s"]
            lines.append(f"ESS/s ratio GenMLX / NumPyro: **{ratio_nuts:.2f}**")
    return lines


if __name__ == "__main__":
    main()
