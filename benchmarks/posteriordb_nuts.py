"""NUTS on six posteriordb posteriors: genmlx.infer.mcmc next to NumPyro's NUTS.

Models: the six of ``examples/posteriordb/`` (eight schools non-centred, kidiq, the GP
Poisson regression, arK, GARCH(1,1), the two-component Gaussian mixture), written once
in GenMLX (the example modules) and once in NumPyro (below, the same densities up to
constants). Same settings on both sides: ``C`` chains run together (NumPyro
``chain_method="vectorized"``), ``W`` warm-up transitions with Stan's windowed
adaptation (step size by dual averaging, diagonal mass), ``D`` draws, the reference
run's target acceptance (Stan's ``adapt_delta``) and tree depth (10; 15 for the GP), on
the CPU. GenMLX adapts per chain (its default), NumPyro pools over its vectorised
chains (its only mode).

**Compilation is excluded from the timings and reported on its own**: each side runs
the whole thing twice with the same settings and different seeds, and the second run is
timed (warm-up and sampling separately). GenMLX keeps its compiled programs per model
and argument shapes across calls, so its second run compiles nothing and its compile
time is ``first − second``. NumPyro builds a new jitted loop for every ``warmup()`` /
``run()`` call, so it compiles in the second run too: JAX's own compile-time events
(``jax.monitoring``: tracing, lowering, backend compilation) are summed, reported as
its compile time (first run) and subtracted from its wall times.

Reported per model and side: compile, warm-up and sampling seconds, the minimum bulk
ESS over the reference parameters (:func:`genmlx.infer.ess_bulk` on both sides),
ESS/s of sampling, the number of divergences, and the largest ``|z|`` against
posteriordb's reference means (``z = (mean − ref) / (ref_sd / √ESS)``) with the
largest ``|sd/ref_sd − 1|`` — so a fast but wrong sampler shows.

NumPyro and JAX are benchmark-only dependencies (``nox -s bench`` installs them; they
are not dependencies of any GenMLX package). The data are looked up as in the examples
(``GENMLX_POSTERIORDB``, ...); without them the benchmark reports that and runs nothing.

    python benchmarks/run.py posteriordb_nuts            # 4 chains, 1000 + 1000
    python benchmarks/run.py posteriordb_nuts --quick    # 2 chains, 50 + 50, depth 6 (smoke)
    GENMLX_PDB_MODELS=eight_schools,garch python benchmarks/run.py posteriordb_nuts
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.infer import ess_bulk

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "posteriordb"
_PKG = "genmlx_posteriordb_examples"
MAX_DEPTH = {"gp_pois_regr": 15}


def _examples() -> ModuleType:
    if _PKG not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            _PKG, EXAMPLES / "__init__.py", submodule_search_locations=[str(EXAMPLES)]
        )
        assert spec is not None and spec.loader is not None
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[_PKG] = pkg
        spec.loader.exec_module(pkg)
    return sys.modules[_PKG]


def _module(name: str) -> ModuleType:
    _examples()
    return importlib.import_module(f"{_PKG}.{name}")


# ----------------------------------------------------------------------- NumPyro
def _numpyro_models() -> dict[str, Any] | None:
    """``{name: (model_fn, kwargs_from_data, draws_to_stan_names, needs_x64)}``."""
    try:
        import jax

        jax.config.update("jax_platform_name", "cpu")
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist
        from jax.scipy.linalg import cholesky as jchol
        from numpyro.distributions import constraints as nc
    except ImportError:
        return None

    def eight_schools(sigma: Any, y: Any = None) -> None:
        tt = numpyro.sample("theta_trans", dist.Normal(jnp.zeros(sigma.shape[0]), 1.0).to_event(1))
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        numpyro.sample("y", dist.Normal(tt * tau + mu, sigma).to_event(1), obs=y)

    def kidiq(mom_iq: Any, kid_score: Any = None) -> None:
        beta = numpyro.sample("beta", dist.ImproperUniform(nc.real, (), (2,)))
        sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
        numpyro.sample("kid_score", dist.Normal(beta[0] + beta[1] * mom_iq, sigma).to_event(1),
                       obs=kid_score)

    def gp_pois_regr(x: Any, k: Any = None) -> None:
        rho = numpyro.sample("rho", dist.Gamma(25.0, 4.0))
        alpha = numpyro.sample("alpha", dist.HalfNormal(2.0))
        ft = numpyro.sample("f_tilde", dist.Normal(jnp.zeros(x.shape[0]), 1.0).to_event(1))
        d2 = (x[:, None] - x[None, :]) ** 2
        cov = alpha**2 * jnp.exp(-0.5 * d2 / rho**2) + 1e-10 * jnp.eye(x.shape[0])
        f = jchol(cov, lower=True) @ ft
        numpyro.sample("k", dist.Poisson(jnp.exp(f)).to_event(1), obs=k)

    def ark(lags: Any, y: Any = None) -> None:
        alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
        beta = numpyro.sample("beta", dist.Normal(jnp.zeros(lags.shape[1]), 10.0).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
        numpyro.sample("y", dist.Normal(alpha + lags @ beta, sigma).to_event(1), obs=y)

    def garch(y: Any, sigma1: Any) -> None:
        mu = numpyro.sample("mu", dist.ImproperUniform(nc.real, (), ()))
        alpha0 = numpyro.sample("alpha0", dist.ImproperUniform(nc.positive, (), ()))
        alpha1 = numpyro.sample("alpha1", dist.Uniform(0.0, 1.0))
        beta1 = numpyro.sample("beta1", dist.Uniform(0.0, 1.0 - alpha1))
        numpyro.factor("flat_beta1", jnp.log1p(-alpha1))

        def step(s: Any, e: Any) -> tuple[Any, Any]:
            s_new = jnp.sqrt(alpha0 + alpha1 * (e - mu) ** 2 + beta1 * s**2)
            return s_new, s_new

        _, rest = jax.lax.scan(step, sigma1, y[:-1])
        sig = jnp.concatenate([jnp.reshape(sigma1, (1,)), rest])
        numpyro.sample("y", dist.Normal(mu, sig).to_event(1), obs=y)

    def low_dim_gauss_mix(y: Any) -> None:
        mu = numpyro.sample("mu", dist.ImproperUniform(nc.ordered_vector, (), (2,)))
        numpyro.factor("mu_prior", dist.Normal(0.0, 2.0).log_prob(mu).sum())
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0 * jnp.ones(2)).to_event(1))
        theta = numpyro.sample("theta", dist.Beta(5.0, 5.0))
        mix = dist.MixtureSameFamily(
            dist.Categorical(probs=jnp.stack([theta, 1.0 - theta])), dist.Normal(mu, sigma)
        )
        numpyro.sample("y", mix.expand([y.shape[0]]).to_event(1), obs=y)

    f32 = np.float32

    def lags_of(d: dict[str, Any]) -> dict[str, Any]:
        y = np.asarray(d["y"], dtype=np.float64)
        k = int(d["K"])
        lm = _module("arK").lag_matrix(y, k)
        return {"lags": jnp.asarray(lm.astype(f32)), "y": jnp.asarray(y[k:].astype(f32))}

    def es_out(s: dict[str, np.ndarray], d: dict[str, Any]) -> dict[str, np.ndarray]:
        th = s["theta_trans"] * s["tau"][..., None] + s["mu"][..., None]
        out = {f"theta[{i + 1}]": th[..., i] for i in range(th.shape[-1])}
        return {**out, "mu": s["mu"], "tau": s["tau"]}

    def gp_out(s: dict[str, np.ndarray], d: dict[str, Any]) -> dict[str, np.ndarray]:
        x = np.asarray(d["x"], dtype=np.float64)
        f = _module("gp_pois_regr").f_numpy(x, s["alpha"], s["rho"], s["f_tilde"])
        return {"rho": s["rho"], "alpha": s["alpha"],
                **{f"f[{i + 1}]": f[..., i] for i in range(f.shape[-1])}}

    def vec_out(*names: str) -> Any:
        def out(s: dict[str, np.ndarray], d: dict[str, Any]) -> dict[str, np.ndarray]:
            res: dict[str, np.ndarray] = {}
            for n in names:
                a = s[n]
                if a.ndim == 2:
                    res[n] = a
                else:
                    res.update({f"{n}[{i + 1}]": a[..., i] for i in range(a.shape[-1])})
            return res

        return out

    return {
        "eight_schools": (
            eight_schools,
            lambda d: {"sigma": jnp.asarray(np.asarray(d["sigma"], f32)),
                       "y": jnp.asarray(np.asarray(d["y"], f32))},
            es_out, False,
        ),
        "kidiq": (
            kidiq,
            lambda d: {"mom_iq": jnp.asarray(np.asarray(d["mom_iq"], f32)),
                       "kid_score": jnp.asarray(np.asarray(d["kid_score"], f32))},
            vec_out("beta", "sigma"), False,
        ),
        "gp_pois_regr": (
            gp_pois_regr,
            lambda d: {"x": jnp.asarray(np.asarray(d["x"], np.float64)),
                       "k": jnp.asarray(np.asarray(d["k"], np.int32))},
            gp_out, True,  # float64 for the Cholesky of an ill-conditioned kernel
        ),
        "arK": (ark, lags_of, vec_out("alpha", "beta", "sigma"), False),
        "garch": (
            garch,
            lambda d: {"y": jnp.asarray(np.asarray(d["y"], f32)), "sigma1": f32(d["sigma1"])},
            vec_out("mu", "alpha0", "alpha1", "beta1"), False,
        ),
        "low_dim_gauss_mix": (
            low_dim_gauss_mix,
            lambda d: {"y": jnp.asarray(np.asarray(d["y"], f32))},
            vec_out("mu", "sigma", "theta"), False,
        ),
    }


def _numpyro_run(
    name: str, spec: Any, data: dict[str, Any], chains: int, warmup: int, draws: int,
    target: float, depth: int,
) -> dict[str, Any]:
    import contextlib

    import jax
    from numpyro.infer import MCMC, NUTS

    model, kwargs_of, to_stan, x64 = spec
    _listen_to_jax_compiles()
    x64_ctx = getattr(jax, "enable_x64", None)
    if x64_ctx is None:  # older JAX
        x64_ctx = jax.experimental.enable_x64
    ctx = x64_ctx(True) if x64 else contextlib.nullcontext()
    with ctx:
        kw = kwargs_of(data)
        mcmc = MCMC(NUTS(model, target_accept_prob=target, max_tree_depth=depth),
                    num_warmup=warmup, num_samples=draws, num_chains=chains,
                    chain_method="vectorized", progress_bar=False, jit_model_args=True)
        phases = []
        for seed in (1, 2):  # the first run compiles; the second is timed
            c0, t0 = _JAX_COMPILE_S[0], time.perf_counter()
            mcmc.warmup(jax.random.PRNGKey(seed), **kw, extra_fields=("diverging",))
            jax.block_until_ready(mcmc.post_warmup_state)
            c1, t1 = _JAX_COMPILE_S[0], time.perf_counter()
            mcmc.run(mcmc.post_warmup_state.rng_key, **kw, extra_fields=("diverging",))
            samples = mcmc.get_samples(group_by_chain=True)
            jax.block_until_ready(samples)
            c2, t2 = _JAX_COMPILE_S[0], time.perf_counter()
            phases.append(((t1 - t0, c1 - c0), (t2 - t1, c2 - c1)))
        div = int(np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"]).sum())
        s = {k: np.asarray(v, dtype=np.float64) for k, v in samples.items()}
    first, (warm, samp) = phases
    # NumPyro builds a new jitted loop for every warmup()/run() call, so even the second
    # run compiles: JAX reports the time it spends tracing, lowering and compiling
    # (jax.monitoring), and it is taken out of the wall times
    return {
        "compile_s": first[0][1] + first[1][1],
        "compile_s_second_run": warm[1] + samp[1],
        "warmup_s": max(warm[0] - warm[1], 0.0),
        "sampling_s": max(samp[0] - samp[1], 0.0),
        "divergences": div,
        "draws": to_stan(s, data),
    }


_JAX_COMPILE_S = [0.0]
_JAX_LISTENING = [False]


def _listen_to_jax_compiles() -> None:
    """Accumulate JAX's tracing, lowering and backend-compilation durations."""
    if _JAX_LISTENING[0]:
        return
    import jax

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event.startswith("/jax/core/compile/"):
            _JAX_COMPILE_S[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    _JAX_LISTENING[0] = True


# ----------------------------------------------------------------------- GenMLX
def _genmlx_run(
    name: str, data_path: Path, chains: int, warmup: int, draws: int, target: float, depth: int
) -> dict[str, Any]:
    m = _module(name)
    common = _module("_common")
    times = []
    res = None
    for seed in (1, 2):  # the first run compiles; the second is timed
        t0 = time.perf_counter()
        res, out = common.run(m, path=data_path, n_chains=chains, n_warmup=warmup,
                              n_samples=draws, key=seed, warn=False, target_accept=target,
                              max_depth=depth, dense_mass=False)
        t = time.perf_counter() - t0
        times.append((t, res.timing["warmup_s"], res.timing["sampling_s"]))
    assert res is not None
    (t_first, _, _), (t_second, w2, s2) = times
    div = int(mx.sum(res.stats["diverging"]).item()) if "diverging" in res.stats else 0
    return {
        "compile_s": max(t_first - t_second, 0.0),
        "warmup_s": w2,
        "sampling_s": s2,
        "divergences": div,
        "draws": out,
    }


def _score(draws: dict[str, np.ndarray], ref: dict[str, Any]) -> dict[str, float]:
    ess_min, zmax, sdmax = math.inf, 0.0, 0.0
    for p, r in ref["params"].items():
        a = np.asarray(draws[p], dtype=np.float64)
        ess = float(ess_bulk(mx.array(a.astype(np.float32)), layout="chain_draw"))
        ess_min = min(ess_min, ess)
        z = (a.mean() - r["mean"]) / (r["sd"] / math.sqrt(max(ess, 1.0)))
        zmax = max(zmax, abs(z))
        sdmax = max(sdmax, abs(a.std(ddof=1) / r["sd"] - 1.0))
    return {"ess_bulk_min": ess_min, "max_abs_z": zmax, "max_sd_rel_err": sdmax}


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    """``sizes`` (optional): ``[chains, warmup, draws]``."""
    chains, warmup, draws = (2, 50, 50) if quick else (4, 1000, 1000)
    if sizes:
        chains, warmup, draws = [*sizes, warmup, draws][:3]
    common = _module("_common")
    out: dict[str, Any] = {
        "name": "posteriordb_nuts",
        "description": "NUTS on six posteriordb posteriors, genmlx.infer.mcmc vs NumPyro",
        "device": str(mx.default_device()),
        "settings": {"chains": chains, "warmup": warmup, "draws": draws},
        "models": [],
    }
    try:
        data_path = common.data_dir()
    except common.DataNotFoundError as e:
        out["skipped"] = str(e)
        return out
    names = _examples().MODULES
    if os.environ.get("GENMLX_PDB_MODELS"):
        names = tuple(n for n in os.environ["GENMLX_PDB_MODELS"].split(",") if n)
    numpyro_models = _numpyro_models()
    for name in names:
        m = _module(name)
        ref = common.reference(m.POSTERIOR, data_path)
        target = float(ref["reference_inference"]["method_arguments"]["control"]["adapt_delta"])
        depth = MAX_DEPTH.get(name, 10) if not quick else 6  # a smoke run: short trees
        data = common.load_data(m.DATA, data_path)
        row: dict[str, Any] = {"model": name, "target_accept": target, "max_depth": depth}
        g = _genmlx_run(name, data_path, chains, warmup, draws, target, depth)
        row["genmlx"] = {**{k: v for k, v in g.items() if k != "draws"}, **_score(g["draws"], ref)}
        if numpyro_models is None:
            row["numpyro"] = None
        else:
            n = _numpyro_run(name, numpyro_models[name], data, chains, warmup, draws, target, depth)
            row["numpyro"] = {**{k: v for k, v in n.items() if k != "draws"},
                              **_score(n["draws"], ref)}
        for side in ("genmlx", "numpyro"):
            r = row.get(side)
            if r:
                r["ess_per_s"] = r["ess_bulk_min"] / max(r["sampling_s"], 1e-9)
        if row.get("numpyro"):
            row["ratio_ess_per_s"] = row["genmlx"]["ess_per_s"] / row["numpyro"]["ess_per_s"]
        out["models"].append(row)
        print(f"  {name}: done", flush=True)
    return out


def table(result: dict[str, Any]) -> str:
    s = result["settings"]
    if result.get("skipped"):
        return f"Not run: {result['skipped']}"
    lines = [
        f"{s['chains']} chains × {s['draws']} draws after {s['warmup']} warm-up; compile "
        "excluded from the timings (second run timed), reported separately; ESS: minimum "
        "bulk ESS over the reference parameters; z, sd: largest |z| and |sd/ref_sd − 1| "
        "against posteriordb's reference.",
        "",
        "| model | sampler | compile (s) | warm-up (s) | sampling (s) | ESS | ESS/s | "
        "divergences | max abs z | max sd err |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["models"]:
        for side in ("genmlx", "numpyro"):
            r = row.get(side)
            if r is None:
                lines.append(f"| {row['model']} | {side} | not installed | | | | | | | |")
                continue
            lines.append(
                f"| {row['model']} | {side} | {r['compile_s']:.1f} | {r['warmup_s']:.2f} | "
                f"{r['sampling_s']:.2f} | {r['ess_bulk_min']:.0f} | {r['ess_per_s']:,.1f} | "
                f"{r['divergences']} | {r['max_abs_z']:.2f} | {r['max_sd_rel_err']:.3f} |"
            )
        if row.get("ratio_ess_per_s") is not None:
            lines.append(
                f"| {row['model']} | **genmlx / numpyro ESS/s** | | | | | "
                f"**{row['ratio_ess_per_s']:.2f}** | | | |"
            )
    return "\n".join(lines)
