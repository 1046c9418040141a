"""Shared pieces of the posteriordb examples: finding the data, loading the reference
summaries, running :func:`genmlx.infer.mcmc` and checking a run against the reference.

The data and reference summaries are not part of the repository. They are looked up in
this order: the ``path`` argument, the ``GENMLX_POSTERIORDB`` environment variable (the
folder holding ``data/`` and ``reference/ref_summary.json``), ``$GENMLX_SHARED_DIR/
posteriordb`` and ``../shared/posteriordb`` next to the repository.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

__all__ = [
    "Check",
    "DataNotFoundError",
    "check",
    "data_dir",
    "load_data",
    "reference",
    "run",
]

_REPO = Path(__file__).resolve().parents[2]


class DataNotFoundError(FileNotFoundError):
    """The posteriordb data folder is not where the examples look for it."""


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``data/<name>.json`` and ``reference/ref_summary.json``.

    Raises:
        DataNotFoundError: none of the places in the module docstring has it.
    """
    tried: list[Path] = []
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    if os.environ.get("GENMLX_POSTERIORDB"):
        candidates.append(Path(os.environ["GENMLX_POSTERIORDB"]))
    if os.environ.get("GENMLX_SHARED_DIR"):
        candidates.append(Path(os.environ["GENMLX_SHARED_DIR"]) / "posteriordb")
    candidates.append(_REPO.parent / "shared" / "posteriordb")
    for c in candidates:
        tried.append(c)
        if (c / "data").is_dir() and (c / "reference" / "ref_summary.json").is_file():
            return c
    raise DataNotFoundError(
        "posteriordb data not found (looked in "
        + ", ".join(str(t) for t in tried)
        + "). Set GENMLX_POSTERIORDB to the folder holding data/<name>.json and "
        "reference/ref_summary.json (posteriordb's data and reference posteriors), or "
        "pass its path"
    )


def load_data(name: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """posteriordb's data set ``name`` (``data/<name>.json``) as a dict."""
    f = data_dir(path) / "data" / f"{name}.json"
    if not f.is_file():
        raise DataNotFoundError(f"posteriordb data set {name!r} not found: no file {f}")
    with f.open() as fh:
        out: dict[str, Any] = json.load(fh)
    return out


def reference(posterior: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The reference summary of ``posterior`` (``"<data>-<model>"``)."""
    with (data_dir(path) / "reference" / "ref_summary.json").open() as fh:
        table = json.load(fh)
    if posterior not in table:
        raise KeyError(f"no reference posterior {posterior!r}; known: {sorted(table)}")
    out: dict[str, Any] = table[posterior]
    return out


def as_f32(x: Any) -> mx.array:
    """A float32 MLX array."""
    return mx.array(np.asarray(x, dtype=np.float32))


def stan_names(name: str, draws: mx.array) -> dict[str, np.ndarray]:
    """``{name[1]: ..., name[2]: ...}`` (Stan's 1-based names) for the last axis of
    ``[chain, draw, k]`` draws, or ``{name: ...}`` for ``[chain, draw]``."""
    a = np.asarray(draws, dtype=np.float64)
    if a.ndim == 2:
        return {name: a}
    return {f"{name}[{i + 1}]": a[..., i] for i in range(a.shape[-1])}


@dataclass
class Check:
    """One parameter against the reference: ``z = (mean - ref_mean) / (ref_sd / √ESS)``
    with the run's bulk ESS, and ``sd_ratio = sd / ref_sd``."""

    name: str
    mean: float
    sd: float
    ess: float
    ref_mean: float
    ref_sd: float

    @property
    def z(self) -> float:
        return (self.mean - self.ref_mean) / (self.ref_sd / math.sqrt(max(self.ess, 1.0)))

    @property
    def sd_ratio(self) -> float:
        return self.sd / self.ref_sd

    def ok(self, z_max: float = 5.0, sd_tol: float = 0.15) -> bool:
        return abs(self.z) <= z_max and abs(self.sd_ratio - 1.0) <= sd_tol

    def __str__(self) -> str:
        return (
            f"{self.name:10s} mean {self.mean:9.4f} (ref {self.ref_mean:9.4f}, z {self.z:6.2f})"
            f"  sd {self.sd:8.4f} (ref {self.ref_sd:8.4f}, ratio {self.sd_ratio:5.3f})"
            f"  ess {self.ess:7.0f}"
        )


def check(draws: Mapping[str, np.ndarray], ref: Mapping[str, Any]) -> list[Check]:
    """Every reference parameter of ``ref`` (a :func:`reference` entry) against
    ``draws`` (``{stan name: [chain, draw]}``)."""
    from genmlx.infer import ess_bulk

    out = []
    for name, r in ref["params"].items():
        if name not in draws:
            raise KeyError(f"the run has no draws of {name!r} (it has {sorted(draws)})")
        a = np.asarray(draws[name], dtype=np.float64)
        ess = float(ess_bulk(mx.array(a.astype(np.float32)), layout="chain_draw"))
        out.append(Check(name, float(a.mean()), float(a.std(ddof=1)), ess, r["mean"], r["sd"]))
    return out


def run(
    module: Any,
    *,
    path: str | os.PathLike[str] | None = None,
    n_chains: int = 4,
    n_warmup: int = 1000,
    n_samples: int = 1000,
    key: Any = 0,
    **kwargs: Any,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Sample ``module``'s posterior with ``mcmc``: ``(result, {stan name: draws})``."""
    from genmlx.infer import mcmc

    data = load_data(module.DATA, path)
    args, obs = module.inputs(data)
    opts = {**getattr(module, "MCMC_OPTIONS", {}), **kwargs}
    res = mcmc(
        module.model,
        args,
        obs,
        n_chains=n_chains,
        n_warmup=n_warmup,
        n_samples=n_samples,
        key=mx.random.key(key) if isinstance(key, int) else key,
        **opts,
    )
    return res, module.parameters(res.samples, data)


def main(module: Any, argv: list[str] | None = None) -> int:
    """Command line of each example: sample, print the summary and the comparison with
    the reference posterior."""
    import argparse

    p = argparse.ArgumentParser(description=(module.__doc__ or "").split("\n")[0])
    p.add_argument("--data", help="the posteriordb folder (else GENMLX_POSTERIORDB, ...)")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        res, draws = run(module, path=a.data, n_chains=a.chains, n_warmup=a.warmup,
                         n_samples=a.samples, key=a.seed, progress=True)
    except DataNotFoundError as e:
        print(e)
        return 2
    res.print_summary()
    print(f"\nagainst the reference posterior {module.POSTERIOR}:")
    checks = check(draws, reference(module.POSTERIOR, a.data))
    for c in checks:
        print(("  ok " if c.ok() else "  !! ") + str(c))
    return 0 if all(c.ok() for c in checks) else 1


Parameters = Callable[[Mapping[Any, mx.array], Mapping[str, Any]], dict[str, np.ndarray]]
