"""Export to ArviZ: chains and weighted particles as ``InferenceData``.

ArviZ is an optional dependency (``pip install "genmlx-viz[arviz]"``), imported only
when :func:`to_inference_data` runs. Variables are named by their address with the
components joined by dots (``"mu"``, ``("y", 3)`` → ``"y.3"``: ``/`` is not allowed in
the names of ArviZ 1's ``DataTree`` nor of netCDF files; rename with ``var_names=``); a
vector-valued choice keeps its shape as extra dimensions ``<name>_dim_0, ...``
(ArviZ's convention).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from genmlx.viz._inputs import (
    Chains,
    Samples,
    as_numpy,
    collect_chains,
    collect_samples,
)

__all__ = ["systematic_resample", "to_inference_data", "var_name"]

_OP = "to_inference_data"


def _import_arviz() -> Any:
    try:
        import arviz
    except ImportError as e:  # an optional extra, so the error says what to install
        raise ImportError(
            'to_inference_data needs ArviZ: pip install "genmlx-viz[arviz]" (or pip install arviz)'
        ) from e
    return arviz


def systematic_resample(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling: ``n`` particle indices with one uniform draw.

    With ``u ~ U(0, 1)``, index ``k`` is the particle ``i`` whose cumulative-weight
    interval ``[W_{i-1}, W_i)`` holds ``(u + k)/n``. Each particle is copied
    ``⌊n w_i⌋`` or ``⌈n w_i⌉`` times, so the copies' empirical distribution is an
    unbiased, low-variance estimate of the weighted one.

    Args:
        weights: normalised weights ``[N]``.
        n: how many indices to draw.
        rng: a NumPy generator.

    Returns:
        Sorted indices ``[n]`` (int64).

    Example:
        >>> w = np.array([0.5, 0.25, 0.25])
        >>> systematic_resample(w, 4, np.random.default_rng(0)).tolist()
        [0, 0, 1, 2]
    """
    cdf = np.cumsum(weights)
    cdf[-1] = 1.0
    positions = (rng.uniform() + np.arange(n)) / n
    idx = np.searchsorted(cdf, positions, side="right")
    return np.minimum(idx, weights.size - 1).astype(np.int64)


def _dataset(
    arrays: Mapping[str, np.ndarray], coords_chain: int, coords_draw: int, dims: tuple[str, ...]
) -> Any:
    import xarray as xr

    data_vars = {}
    for name, arr in arrays.items():
        extra = tuple(f"{name}_dim_{k}" for k in range(arr.ndim - len(dims)))
        data_vars[name] = (dims + extra, arr)
    coords = {"chain": np.arange(coords_chain), "draw": np.arange(coords_draw)}
    coords = {k: v for k, v in coords.items() if k in dims}
    return xr.Dataset(data_vars, coords=coords, attrs={"inference_library": "genmlx"})


def _wrap(az: Any, groups: Mapping[str, Any]) -> Any:
    """ArviZ < 1: ``InferenceData``; ArviZ >= 1: an ``xarray.DataTree`` (its successor)."""
    major = int(str(getattr(az, "__version__", "0")).split(".")[0] or 0)
    if major < 1:
        return az.InferenceData(**groups)
    import xarray as xr

    return xr.DataTree.from_dict(dict(groups))


def var_name(addr: Any) -> str:
    """The ArviZ variable name of an address: its components joined by dots.

    Example:
        >>> var_name("mu"), var_name(("y", 3))
        ('mu', 'y.3')
    """
    if isinstance(addr, tuple):
        return ".".join(str(c) for c in addr) if addr else "root"
    return str(addr)


def _rename(labels: Mapping[str, Any], var_names: Mapping[Any, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for label, addr in labels.items():
        name = var_name(addr)
        if var_names:
            if label in var_names:
                name = var_names[label]
            elif addr in var_names:
                name = var_names[addr]
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(
                f"{_OP}: variable names must be non-empty strings without '/', got {name!r}"
            )
        if name in out.values():
            raise ValueError(f"{_OP}: two variables are both named {name!r}; pass var_names=")
        out[label] = name
    return out


def _extra_group(
    values: Mapping[Any, Any] | None, group: str, lead: tuple[int, ...], index: Any
) -> dict[str, np.ndarray]:
    """User arrays for ``log_likelihood``/``sample_stats``, checked and laid out."""
    out: dict[str, np.ndarray] = {}
    for k, v in (values or {}).items():
        arr = as_numpy(v)
        if index is not None:  # particles: [N, ...] -> [1, N, ...] (resampled if asked)
            if arr.shape[:1] != (lead[0],):
                raise ValueError(
                    f"{_OP}: {group}[{k!r}] must have one entry per particle "
                    f"(leading axis {lead[0]}), got shape {arr.shape}"
                )
            arr = arr[index][None]
        elif arr.shape[:2] != lead:
            raise ValueError(
                f"{_OP}: {group}[{k!r}] must be [chains, draws, ...] = {list(lead)}, "
                f"got shape {arr.shape}"
            )
        out[var_name(k)] = arr
    return out


def _particle_arrays(samples: Samples) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for label, arr in samples.arrays.items():
        mask = samples.masks.get(label)
        if mask is not None:  # absent choices become NaN
            arr = arr.astype(np.float64)
            arr[~mask] = np.nan
        out[label] = arr
    return out


def to_inference_data(
    results: Any,
    addresses: Any = None,
    *,
    weights: Any = None,
    resample: bool = False,
    n_samples: int | None = None,
    seed: int = 0,
    log_likelihood: Mapping[Any, Any] | None = None,
    sample_stats: Mapping[Any, Any] | None = None,
    var_names: Mapping[Any, str] | None = None,
) -> Any:
    """Convert MCMC chains or (weighted) particles to ArviZ ``InferenceData``.

    **Chains** — a chain result of ``genmlx.infer.chain`` (its trace's batch axis
    holds the chains; ``samples[a]`` is ``[draws, chains, ...]``) or a dict
    ``{address: [chains, draws, ...]}``: the ``posterior`` group holds every address
    with dims ``(chain, draw, ...)``, values exactly as given (dtype kept). A chain
    result's per-chain ``acceptance_rate`` goes to ``sample_stats`` with dims
    ``(chain,)``.

    **Particles** — a batched trace, a list of traces, a ChoiceMap with batched
    leaves, a weighted collection (``.traces`` and ``.log_weights``: ``ISResult``,
    ``ParticleFilterState``) or a dict ``{address: [N, ...]}`` given with
    ``weights=``. ArviZ has no notion of weights, so pick one of:

    * ``resample=False`` (default): ``posterior`` holds the ``N`` particles as one
      chain of ``N`` draws, exactly, and ``sample_stats`` holds their normalised
      weights ``w̄_i`` (``weight``) and ``log w̄_i`` (``log_weight``). ArviZ's own
      summaries then treat the draws as equally weighted; use the weights yourself
      (``Σ w̄_i x_i``) or resample.
    * ``resample=True``: ``posterior`` holds ``n_samples`` (default ``N``) equally
      weighted draws by systematic resampling (:func:`systematic_resample`, seeded by
      ``seed``), so ArviZ's means estimate the weighted posterior means; the source
      particle of each draw is in ``sample_stats["particle_index"]``.

    Choices that are absent for some particles (masked ``Switch`` branches) become
    NaN there.

    Args:
        results: chains or particles, as above.
        addresses: an address or a list of them (default: every one).
        weights: non-negative particle weights ``[N]`` (a dict input becomes particles).
        resample: resample weighted particles to equal weights.
        n_samples: how many draws to resample (default ``N``).
        seed: seed of the resampling's uniform draw.
        log_likelihood: optional ``{name: array}``, ``[chains, draws, ...]`` for chains
            or ``[N, ...]`` for particles, for the ``log_likelihood`` group.
        sample_stats: optional extra ``{name: array}`` (e.g. per-draw acceptance
            flags), laid out like ``log_likelihood``.
        var_names: ``{address or plot label: name}`` to rename variables (default
            :func:`var_name`: ``("y", 3)`` → ``"y.3"``).

    Returns:
        ``arviz.InferenceData`` (ArviZ < 1; with ArviZ >= 1, the ``xarray.DataTree``
        that replaces it, with the same groups).

    Raises:
        ImportError: ArviZ is not installed (``pip install "genmlx-viz[arviz]"``).

    Example:
        >>> import numpy as np
        >>> draws = np.random.default_rng(0).normal(size=(2, 100))
        >>> idata = to_inference_data({"mu": draws})
        >>> idata.posterior["mu"].dims, bool((idata.posterior["mu"].values == draws).all())
        (('chain', 'draw'), True)
    """
    az = _import_arviz()
    is_particles = weights is not None or not (
        isinstance(results, Mapping)
        or (isinstance(getattr(results, "samples", None), Mapping) and hasattr(results, "trace"))
    )
    groups: dict[str, Any] = {}
    if not is_particles:
        if resample:
            raise ValueError(f"{_OP}: resample=True applies to weighted particles, not chains")
        ch: Chains = collect_chains(results, addresses, _OP)
        names = _rename(ch.addresses, var_names)
        c, d = ch.n_chains, ch.n_draws
        post = {names[k]: v for k, v in ch.arrays.items()}
        groups["posterior"] = _dataset(post, c, d, ("chain", "draw"))
        stats = _extra_group(sample_stats, "sample_stats", (c, d), None)
        ll = _extra_group(log_likelihood, "log_likelihood", (c, d), None)
        stats_ds = _dataset(stats, c, d, ("chain", "draw"))
        if ch.acceptance_rate is not None:
            if ch.acceptance_rate.shape != (c,):
                raise ValueError(
                    f"{_OP}: acceptance_rate has shape {ch.acceptance_rate.shape}, expected ({c},)"
                )
            stats_ds = stats_ds.assign(
                acceptance_rate=(("chain",), ch.acceptance_rate)
            ).assign_coords(chain=np.arange(c))
        if stats_ds.data_vars:
            groups["sample_stats"] = stats_ds
        if ll:
            groups["log_likelihood"] = _dataset(ll, c, d, ("chain", "draw"))
        return _wrap(az, groups)

    samples = collect_samples(results, addresses, weights, _OP)
    names = _rename(samples.addresses, var_names)
    n = samples.n
    w = samples.weights if samples.weights is not None else np.full(n, 1.0 / n)
    arrays = _particle_arrays(samples)
    if resample:
        m = n if n_samples is None else n_samples
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"{_OP}: n_samples must be a positive int, got {n_samples!r}")
        index: Any = systematic_resample(w, m, np.random.default_rng(seed))
        stats = {"particle_index": index[None]}
    else:
        if n_samples is not None:
            raise ValueError(f"{_OP}: n_samples applies only with resample=True")
        index = slice(None)
        m = n
        with np.errstate(divide="ignore"):
            stats = {"weight": w[None], "log_weight": np.log(w)[None]}
    post = {names[k]: v[index][None] for k, v in arrays.items()}
    stats.update(_extra_group(sample_stats, "sample_stats", (n,), index))
    ll = _extra_group(log_likelihood, "log_likelihood", (n,), index)
    groups["posterior"] = _dataset(post, 1, m, ("chain", "draw"))
    groups["sample_stats"] = _dataset(stats, 1, m, ("chain", "draw"))
    if ll:
        groups["log_likelihood"] = _dataset(ll, 1, m, ("chain", "draw"))
    return _wrap(az, groups)
