"""Kalman filtering and smoothing of ``Unfold``/``Scan`` models (and EKF/UKF).

:func:`kalman_filter` takes a sequence model (an
``Unfold``/``Scan``, or a ``@gen`` model around one) whose kernel has **one latent
state choice** ``x_t`` (``normal`` — any shape, independent elements — or
``mv_normal``) that it returns as the new state, and **observed choices** that are
``normal``/``mv_normal``. What is detected, by replaying the kernel:

* the transition ``x_t ~ N(f_t(x_{t−1}), Q_t)`` — ``f_t`` is the state choice's mean as a
  function of the incoming state, ``Q_t`` its covariance;
* the emission ``y_t ~ N(h_t(x_t), R_t)`` — every observed choice's mean and covariance
  as functions of ``x_t``, stacked into one vector;
* whether the model is **linear-Gaussian**: ``f_t`` and ``h_t`` affine (their Jacobians,
  found with ``mx.jvp``, predict the means at a second point) and ``Q_t``, ``R_t``
  independent of the state. Then ``method="kalman"`` is exact: the log marginal
  likelihood, filtered and smoothed (Rauch–Tung–Striebel) posteriors and posterior
  samples (forward filtering, backward sampling) of the whole state sequence.
  Otherwise the model is *nonlinear-Gaussian* and ``method="ekf"`` (Jacobians at the
  current estimate) or ``"ukf"`` (sigma points, as a statistical linear regression)
  approximate it.

Step ``0``'s incoming state is the initial state argument, so ``x_0 ~ N(f_0(init), Q_0)``.
Time-varying kernels (reading ``t``, or ``xs[t]`` of a ``Scan``) are evaluated at every
step — vectorised over ``t`` when the kernel's Python code allows, step by step
otherwise. Missing observations (a step without ``(t, "y")``) are skipped in the
update. Batched observations (``batch_shape == (B,)``) filter ``B`` sequences at once.

The array-level :func:`kalman_filter_arrays` runs the same filter on explicit
``(F, c, Q, H, d, R)`` — the declaration API for models written without GenMLX.
:func:`rao_blackwellized_particle_filter` uses the exact Kalman step inside a particle
filter whose particles carry the kernel's *other* latent choices (switching
linear-Gaussian models).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.dists import normal
    >>> from genmlx.combinators import Unfold
    >>> @gen
    ... def step(t, x):
    ...     x = normal(0.9 * x, 1.0) @ "x"
    ...     normal(x, 0.5) @ "y"
    ...     return x
    >>> ys = [0.3, -0.2, 0.8, 1.1]
    >>> obs = choicemap({(t, "y"): ys[t] for t in range(4)})
    >>> res = kalman_filter(Unfold(step), (4, mx.array(0.0)), obs)
    >>> res.method, res.smoothed_means.shape
    ('kalman', (4, 1))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import (
    ChoiceMap,
    Distribution,
    GenerativeFunction,
    StaticModelError,
    Trace,
    runtime,
)
from genmlx.core.address import Path, format_address, from_path
from genmlx.core.checks import as_args, as_choicemap
from genmlx.core.choicemap import as_array
from genmlx.core.random import Key, resolve_key
from genmlx.core.tree import flatten
from genmlx.dists import MvNormal, Normal
from genmlx.infer._ssm import SeqModel, find_sequence, stack_steps
from genmlx.infer.smc import resample_indices

__all__ = [
    "KalmanResult",
    "LinearGaussianSSM",
    "RBPFResult",
    "kalman_filter",
    "kalman_filter_arrays",
    "rao_blackwellized_particle_filter",
]

_LOG2PI = math.log(2 * math.pi)
_TOL = 1e-3


# ---------------------------------------------------------------------------- linear algebra
def _chol(a: mx.array) -> mx.array:
    return mx.linalg.cholesky(a, stream=mx.cpu)


def _tri(L: mx.array, b: mx.array) -> mx.array:
    return mx.linalg.solve_triangular(L, b, upper=False, stream=mx.cpu)


def _chol_solve(L: mx.array, b: mx.array) -> mx.array:
    """``(L Lᵀ)⁻¹ b`` for a matrix ``b``."""
    return mx.linalg.solve_triangular(L.T, _tri(L, b), upper=True, stream=mx.cpu)


def _sym(a: mx.array) -> mx.array:
    return 0.5 * (a + mx.swapaxes(a, -1, -2))


class LinearGaussianSSM(NamedTuple):
    """An explicit linear-Gaussian state-space model (per-step arrays, leading axis ``T``).

    ``x_0 ~ N(init_mean, init_cov)``; for ``t ≥ 1``, ``x_t ~ N(F_t x_{t−1} + c_t, Q_t)``;
    ``y_t ~ N(H_t x_t + d_t, R_t)``. Row ``0`` of ``F``, ``c``, ``Q`` is unused.

    Attributes:
        F: ``[T, d, d]``. c: ``[T, d]``. Q: ``[T, d, d]``.
        H: ``[T, m, d]``. d: ``[T, m]``. R: ``[T, m, m]``.
        init_mean: ``[d]``. init_cov: ``[d, d]``.
    """

    F: mx.array
    c: mx.array
    Q: mx.array
    H: mx.array
    d: mx.array
    R: mx.array
    init_mean: mx.array
    init_cov: mx.array


class _Pass(NamedTuple):
    log_ml: mx.array
    m_f: mx.array
    P_f: mx.array
    m_p: mx.array
    P_p: mx.array
    F: mx.array


Lin = Callable[[int, mx.array, mx.array], tuple[mx.array, mx.array, mx.array]]


def _kalman_pass(
    ys: mx.array,
    mask: mx.array,
    init: tuple[mx.array, mx.array],
    trans: Lin,
    emit: Lin,
    T: int,
) -> _Pass:
    """One filtering pass. ``trans(t, m, P) -> (F, c, Q)`` linearises step ``t``'s
    transition around the filtered ``N(m, P)`` of ``x_{t−1}``; ``emit(t, m, P) -> (H, d, R)``
    the emission around the predicted ``N(m, P)`` of ``x_t``. Exact for affine models."""
    m0, P0 = init
    dim = m0.shape[0]
    eye = mx.eye(dim)
    log_ml = mx.array(0.0)
    m, P = m0, P0
    mfs, Pfs, mps, Pps, Fs = [], [], [], [], []
    for t in range(T):
        if t == 0:
            mp, Pp = m0, P0
            F = eye
        else:
            F, c, Q = trans(t, m, P)
            mp = F @ m + c
            Pp = _sym(F @ P @ F.T + Q)
        H, dvec, R = emit(t, mp, Pp)
        mk = mask[t].astype(mx.float32)
        n_obs = mx.sum(mk)
        Ht = H * mk[:, None]
        Rt = R * (mk[:, None] * mk[None, :]) + mx.diag(1.0 - mk)
        v = (ys[t] - (H @ mp + dvec)) * mk
        S = _sym(Ht @ Pp @ Ht.T + Rt)
        L = _chol(S)
        w = _tri(L, v[:, None])[:, 0]
        ll = -0.5 * (mx.sum(w * w) + 2.0 * mx.sum(mx.log(mx.diagonal(L))) + n_obs * _LOG2PI)
        log_ml = log_ml + ll
        K = _chol_solve(L, Ht @ Pp).T  # Pp Hᵀ S⁻¹
        m = mp + K @ v
        A = eye - K @ Ht
        P = _sym(A @ Pp @ A.T + K @ Rt @ K.T)
        mfs.append(m)
        Pfs.append(P)
        mps.append(mp)
        Pps.append(Pp)
        Fs.append(F)
    return _Pass(log_ml, mx.stack(mfs), mx.stack(Pfs), mx.stack(mps), mx.stack(Pps), mx.stack(Fs))


def _smooth(p: _Pass) -> tuple[mx.array, mx.array]:
    """Rauch–Tung–Striebel: smoothed means and covariances."""
    T = p.m_f.shape[0]
    ms = [p.m_f[T - 1]]
    Ps = [p.P_f[T - 1]]
    for t in range(T - 2, -1, -1):
        Fn = p.F[t + 1]
        L = _chol(p.P_p[t + 1])
        G = _chol_solve(L, Fn @ p.P_f[t]).T  # P_f Fᵀ Pp⁻¹
        m = p.m_f[t] + G @ (ms[-1] - p.m_p[t + 1])
        P = _sym(p.P_f[t] + G @ (Ps[-1] - p.P_p[t + 1]) @ G.T)
        ms.append(m)
        Ps.append(P)
    return mx.stack(ms[::-1]), mx.stack(Ps[::-1])


def _ffbs(p: _Pass, n: int, key: mx.array) -> mx.array:
    """``n`` joint posterior draws ``[n, T, d]`` by backward sampling."""
    T, d = p.m_f.shape
    keys = mx.random.split(key, T)
    L = _chol(p.P_f[T - 1] + 1e-9 * mx.eye(d))
    x = p.m_f[T - 1] + mx.random.normal((n, d), key=keys[T - 1]) @ L.T
    out = [x]
    for t in range(T - 2, -1, -1):
        Fn = p.F[t + 1]
        Lp = _chol(p.P_p[t + 1])
        G = _chol_solve(Lp, Fn @ p.P_f[t]).T
        cov = _sym(p.P_f[t] - G @ Fn @ p.P_f[t])
        Lc = _chol(cov + 1e-9 * mx.eye(d))
        mean = p.m_f[t] + (x - p.m_p[t + 1]) @ G.T
        x = mean + mx.random.normal((n, d), key=keys[t]) @ Lc.T
        out.append(x)
    return mx.stack(out[::-1], axis=1)


# ---------------------------------------------------------------------------- results
class KalmanResult:
    """Result of :func:`kalman_filter` / :func:`kalman_filter_arrays`.

    Attributes:
        log_ml: ``log p(y_{0:T−1})`` (exact for ``method="kalman"``, an approximation for
            ``"ekf"``/``"ukf"``); ``[B]`` for batched observations.
        filtered_means / filtered_covs: ``p(x_t | y_{0:t})``, ``[B?, T, d]`` / ``[B?, T, d, d]``.
        predicted_means / predicted_covs: ``p(x_t | y_{0:t−1})``.
        smoothed_means / smoothed_covs: ``p(x_t | y_{0:T−1})``.
        method: ``"kalman"``, ``"ekf"`` or ``"ukf"``.
        exact: ``method == "kalman"``.
        marginalized: ``{address: how}`` — the state choice at every step.
        weight_kind: ``"marginal"``.
        state_shape: the state choice's shape (``d`` is its size).
    """

    weight_kind = "marginal"

    def __init__(
        self,
        passes: _Pass,
        smoothed: tuple[mx.array, mx.array],
        method: str,
        batch: tuple[int, ...],
        sm: Any,
        state: Any,
    ) -> None:
        self._p = passes
        self.log_ml = passes.log_ml
        self.filtered_means, self.filtered_covs = passes.m_f, passes.P_f
        self.predicted_means, self.predicted_covs = passes.m_p, passes.P_p
        self.smoothed_means, self.smoothed_covs = smoothed
        self.method = method
        self.exact = method == "kalman"
        self.batch_shape = batch
        self._sm = sm
        self._state = state
        path = state[0] if state is not None else ("x",)
        where = format_address(path).strip("'")
        self.state_shape = state[1] if state is not None else (int(passes.m_f.shape[-1]),)
        self.marginalized = {from_path(path): f"{method} (the state {where} at every step)"}

    @property
    def log_ml_estimate(self) -> mx.array:
        """The same as :attr:`log_ml`."""
        return self.log_ml

    def sample(self, n: int, *, key: Key = None) -> mx.array:
        """``n`` draws of the whole state sequence from the (approximate, for EKF/UKF)
        posterior: ``[B?, n, T, *state_shape]``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"sample: n must be a positive int, got {n!r}")
        k = resolve_key(key)
        p = self._p
        if self.batch_shape:
            keys = mx.random.split(k, self.batch_shape[0])
            out = mx.vmap(lambda pp, kk: _ffbs(_Pass(*pp), n, kk))(tuple(p), keys)
        else:
            out = _ffbs(p, n, k)
        return out.reshape(*out.shape[:-1], *self.state_shape)

    def traces(self, n: int, *, key: Key = None) -> Trace:
        """``n`` posterior draws as one batched trace of the model."""
        if self._sm is None or self._state is None:
            raise ValueError("traces: this result was not computed from a model")
        if self.batch_shape:
            raise ValueError("traces: needs an unbatched result")
        sm = self._sm
        k1, k2 = mx.random.split(resolve_key(key))
        xs = self.sample(n, key=k1)
        nodes = []
        for t in range(sm.T):
            nodes.append((sm.address(t, self._state[0]), ChoiceMap(xs[:, t])))
            for p in sm.obs_paths:
                if bool(sm.obs_mask[p][t].item()):
                    v = sm.obs_values[p][t]
                    nodes.append((sm.address(t, p), ChoiceMap(mx.broadcast_to(v, (n, *v.shape)))))
        cm = ChoiceMap.from_nodes(nodes, (n,))
        return sm.model.vgenerate(_model_args(sm), cm, n, key=k2).trace

    def __repr__(self) -> str:
        lml = self.log_ml.tolist()
        lml_s = f"{lml:.4f}" if isinstance(lml, float) else f"[{self.log_ml.size} values]"
        T = self.filtered_means.shape[-2]
        return (
            f"KalmanResult({self.method}: log_ml={lml_s}, T={T}, d={self.filtered_means.shape[-1]})"
        )


def _model_args(sm: SeqModel) -> tuple[Any, ...]:
    return sm._model_args  # type: ignore[attr-defined, no-any-return]


def _per_step(a: Any, T: int, ndim: int, name: str) -> mx.array:
    a = as_array(a).astype(mx.float32)
    if a.ndim == ndim:
        return mx.broadcast_to(a, (T, *a.shape))
    if a.ndim == ndim + 1 and a.shape[0] == T:
        return a
    raise ValueError(
        f"kalman_filter_arrays: {name} must have {ndim} axes (shared by every step) or "
        f"{ndim + 1} with a leading step axis of {T}; got shape {tuple(a.shape)}"
    )


def kalman_filter_arrays(
    ys: Any,
    *,
    F: Any,
    Q: Any,
    H: Any,
    R: Any,
    init_mean: Any,
    init_cov: Any,
    c: Any = None,
    d: Any = None,
    mask: Any = None,
) -> KalmanResult:
    """The Kalman filter and RTS smoother on explicit matrices.

    ``x_0 ~ N(init_mean, init_cov)``, ``x_t ~ N(F x_{t−1} + c, Q)`` (``t ≥ 1``),
    ``y_t ~ N(H x_t + d, R)``. Each matrix is shared by every step or has a leading
    step axis ``T``.

    Args:
        ys: observations ``[T, m]`` (or ``[B, T, m]`` for ``B`` sequences).
        F, Q, H, R, init_mean, init_cov, c, d: the model.
        mask: ``[T, m]`` (or ``[B, T, m]``) booleans, ``False`` for a missing value.

    Example:
        >>> import mlx.core as mx
        >>> res = kalman_filter_arrays(mx.array([[0.5], [1.0]]), F=mx.eye(1), Q=mx.eye(1),
        ...                            H=mx.eye(1), R=mx.eye(1), init_mean=mx.zeros(1),
        ...                            init_cov=mx.eye(1))
        >>> round(float(res.filtered_means[0, 0]), 3)   # N(0,1) prior, y=0.5, unit noise
        0.25
    """
    y = as_array(ys).astype(mx.float32)
    if y.ndim not in (2, 3):
        raise ValueError(
            f"kalman_filter_arrays: ys must be [T, m] or [B, T, m], got {tuple(y.shape)}"
        )
    batch = (int(y.shape[0]),) if y.ndim == 3 else ()
    T, m = int(y.shape[-2]), int(y.shape[-1])
    Fm = _per_step(F, T, 2, "F")
    dim = int(Fm.shape[-1])
    Qm = _per_step(Q, T, 2, "Q")
    Hm = _per_step(H, T, 2, "H")
    Rm = _per_step(R, T, 2, "R")
    cm = _per_step(mx.zeros(dim) if c is None else c, T, 1, "c")
    dm = _per_step(mx.zeros(m) if d is None else d, T, 1, "d")
    if tuple(Hm.shape[1:]) != (m, dim) or tuple(Rm.shape[1:]) != (m, m):
        raise ValueError(
            f"kalman_filter_arrays: H must be [m, d] = [{m}, {dim}] and R [m, m]; got "
            f"{tuple(Hm.shape[1:])} and {tuple(Rm.shape[1:])}"
        )
    mk = (
        mx.ones(y.shape, dtype=mx.bool_)
        if mask is None
        else mx.broadcast_to(as_array(mask), y.shape)
    )
    m0 = as_array(init_mean).astype(mx.float32)
    P0 = as_array(init_cov).astype(mx.float32)

    def trans(t: int, mm: mx.array, P: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        return Fm[t], cm[t], Qm[t]

    def emit(t: int, mm: mx.array, P: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        return Hm[t], dm[t], Rm[t]

    def one(yy: mx.array, mm: mx.array) -> tuple[_Pass, tuple[mx.array, mx.array]]:
        p = _kalman_pass(yy, mm, (m0, P0), trans, emit, T)
        return p, _smooth(p)

    if batch:
        p, s = mx.vmap(one)(y, mk)
        p = _Pass(*p)
    else:
        p, s = one(y, mk)
    return KalmanResult(p, s, "kalman", batch, None, None)


# ---------------------------------------------------------------------------- model structure
class _GaussKernel:
    """The Gaussian transition and emission of a kernel, as functions of states."""

    def __init__(self, sm: SeqModel, op: str, sampled: tuple[Path, ...] = ()) -> None:
        self.sm = sm
        self.op = op
        lat = [s for s in sm.latent_sites if s.path not in sampled]
        if len(lat) != 1 or type(lat[0].gen_fn) not in (Normal, MvNormal):
            names = ", ".join(
                f"{format_address(s.path)} ({getattr(s.gen_fn, 'name', s.gen_fn)})" for s in lat
            )
            raise StaticModelError(
                f"{op}: the kernel must have exactly one latent state choice, normal or "
                f"mv_normal, that it returns as the new state; its latent choices are: "
                f"{names or 'none'}"
            )
        self.state = lat[0]
        self.sampled = tuple(sampled)
        self.shape = tuple(self.state.shape)
        self.d = int(math.prod(self.shape)) if self.shape else 1
        if type(self.state.gen_fn) is MvNormal and len(self.shape) != 1:
            raise StaticModelError(
                f"{op}: the mv_normal state must be a vector, got shape {self.shape}"
            )
        emis = [s for s in sm.graph.sites if s.kind == "choice" and s.observed]
        for s in emis:
            if type(s.gen_fn) not in (Normal, MvNormal):
                raise StaticModelError(
                    f"{op}: the observed choice {format_address(s.path)} is "
                    f"{getattr(s.gen_fn, 'name', s.gen_fn)}; Kalman filtering needs normal or "
                    "mv_normal observations (use the particle filter, or hmm_forward_backward "
                    "for a discrete state)"
                )
        if not emis:
            raise StaticModelError(f"{op}: the kernel has no observed choices")
        self.emis = [s.path for s in emis]
        self.sizes = [int(math.prod(s.shape)) if s.shape else 1 for s in emis]
        self.m = sum(self.sizes)

    # -- replays -----------------------------------------------------------------------
    def _carry(self, s_flat: mx.array, extra: Any = None) -> Any:
        x = s_flat.reshape(self.shape)
        return x if extra is None else extra(x)

    def _records(
        self,
        t: Any,
        carry: Any,
        x: mx.array | None,
        obs: ChoiceMap,
        sampled: dict[Path, mx.array] | None = None,
    ) -> tuple[dict[Path, Any], Any]:
        sm = self.sm
        st = self.state.path

        def provide(path: Path, dist: Distribution, params: tuple[Any, ...]) -> mx.array:
            if path == st:
                if x is None:
                    return mx.broadcast_to(as_array(params[0]).astype(mx.float32), self.shape)
                return x
            if sampled is not None and path in sampled:
                return sampled[path]
            raise StaticModelError(f"{self.op}: unexpected latent choice at {format_address(path)}")

        recs, new = sm.run(t, carry, obs, provide, self.op)
        return {r.path: r for r in recs}, new

    @staticmethod
    def _mean_cov(r: Any) -> tuple[mx.array, mx.array]:
        if type(r.dist) is MvNormal:
            mean = mx.broadcast_to(as_array(r.params[0]).astype(mx.float32), r.value.shape)
            return mean.reshape(-1), as_array(r.params[1]).astype(mx.float32)
        mu = mx.broadcast_to(as_array(r.params[0]).astype(mx.float32), r.value.shape).reshape(-1)
        sig = mx.broadcast_to(as_array(r.params[1]).astype(mx.float32), r.value.shape).reshape(-1)
        return mu, mx.diag(sig * sig)

    def trans(
        self, t: Any, carry: Any, obs: ChoiceMap, sampled: dict[Path, mx.array] | None = None
    ) -> tuple[mx.array, mx.array]:
        recs, _ = self._records(t, carry, None, obs, sampled)
        return self._mean_cov(recs[self.state.path])

    def emit(
        self,
        t: Any,
        carry: Any,
        x_flat: mx.array,
        obs: ChoiceMap,
        sampled: dict[Path, mx.array] | None = None,
    ) -> tuple[mx.array, mx.array]:
        recs, _ = self._records(t, carry, x_flat.reshape(self.shape), obs, sampled)
        means, covs = zip(*(self._mean_cov(recs[p]) for p in self.emis))
        mean = mx.concatenate(list(means))
        cov = covs[0]
        if len(covs) > 1:
            cov = _block_diag(list(covs))
        return mean, cov

    def new_carry(
        self,
        t: Any,
        carry: Any,
        x_flat: mx.array,
        obs: ChoiceMap,
        sampled: dict[Path, mx.array] | None = None,
    ) -> Any:
        _, new = self._records(t, carry, x_flat.reshape(self.shape), obs, sampled)
        return new


def _block_diag(blocks: list[mx.array]) -> mx.array:
    n = sum(int(b.shape[0]) for b in blocks)
    out = mx.zeros((n, n))
    off = 0
    for b in blocks:
        k = int(b.shape[0])
        pad = mx.pad(b, [(off, n - off - k), (off, n - off - k)])
        out = out + pad
        off += k
    return out


def _jac(fn: Callable[[mx.array], mx.array], x: mx.array) -> mx.array:
    """``∂fn/∂x`` (forward mode, one column per input element): ``[out, in]``."""
    d = x.shape[0]
    cols = mx.vmap(lambda e: mx.jvp(fn, [x], [e])[1][0])(mx.eye(d))
    return cols.T


def _check_carry(gk: _GaussKernel, op: str) -> None:
    sm = gk.sm
    obs = sm.obs_at(0)
    init = sm.init
    for k in (1, 2):
        v = mx.full((gk.d,), 0.37 * k, dtype=mx.float32)
        new = gk.new_carry(0, init, v, obs)
        leaves, _ = flatten(new)
        if (
            len(leaves) != 1
            or tuple(leaves[0].shape) != gk.shape
            or not bool(mx.allclose(leaves[0].reshape(-1).astype(mx.float32), v, atol=1e-6).item())
        ):
            raise StaticModelError(
                f"{op}: the kernel must return its state choice {format_address(gk.state.path)} "
                "as the new state (Unfold: `return x`; Scan: `return x, out`)"
            )
    il, _ = flatten(init)
    if len(il) != 1 or int(il[0].size) != gk.d:
        raise StaticModelError(
            f"{op}: the initial state must be an array of the state's shape {gk.shape}"
        )


def _extract_linear(gk: _GaussKernel, op: str) -> tuple[tuple[mx.array, ...], mx.array]:
    """Per-step ``(F, c, Q, H, d, R)`` and the largest affinity/constancy error."""
    sm = gk.sm
    init_flat = flatten(sm.init)[0][0].astype(mx.float32).reshape(-1)
    d = gk.d
    shift_s = 0.7 * mx.cos(mx.arange(d, dtype=mx.float32) * 1.3 + 0.2) + 0.5
    shift_x = 0.6 * mx.sin(mx.arange(d, dtype=mx.float32) * 0.9 + 0.4) + 0.3

    def at(t: Any) -> tuple[mx.array, ...]:
        obs = sm.obs_at(t)

        def carry(s: mx.array) -> Any:
            return s.reshape(gk.shape)

        def tmean(s: mx.array) -> mx.array:
            return gk.trans(t, carry(s), obs)[0]

        s0 = init_flat
        mean0, Q0 = gk.trans(t, carry(s0), obs)
        F = _jac(tmean, s0)
        c = mean0 - F @ s0
        s1 = s0 + shift_s
        mean1, Q1 = gk.trans(t, carry(s1), obs)
        sc = 1.0 + mx.max(mx.abs(mean1))
        err = mx.max(mx.abs(mean1 - (F @ s1 + c))) / sc
        err = mx.maximum(err, mx.max(mx.abs(Q1 - Q0)) / (1.0 + mx.max(mx.abs(Q0))))

        def emean(x: mx.array) -> mx.array:
            return gk.emit(t, carry(s0), x, obs)[0]

        x0 = mean0
        ym0, R0 = gk.emit(t, carry(s0), x0, obs)
        H = _jac(emean, x0)
        dvec = ym0 - H @ x0
        x1 = x0 + shift_x
        ym1, R1 = gk.emit(t, carry(s0), x1, obs)
        sc = 1.0 + mx.max(mx.abs(ym1))
        err = mx.maximum(err, mx.max(mx.abs(ym1 - (H @ x1 + dvec))) / sc)
        err = mx.maximum(err, mx.max(mx.abs(R1 - R0)) / (1.0 + mx.max(mx.abs(R0))))
        # the emission may read only x_t, not the incoming state
        ym2, R2 = gk.emit(t, carry(s1), x1, obs)
        err = mx.maximum(err, mx.max(mx.abs(ym2 - ym1)) / sc)
        err = mx.maximum(err, mx.max(mx.abs(R2 - R1)) / (1.0 + mx.max(mx.abs(R1))))
        return F, c, Q0, H, dvec, R0, err

    out = stack_steps(at, sm)
    return out[:6], mx.max(out[6])


def _emission_independent_of_carry(gk: _GaussKernel) -> mx.array:
    sm = gk.sm
    obs = sm.obs_at(0)
    init_flat = flatten(sm.init)[0][0].astype(mx.float32).reshape(-1)
    x = gk.trans(0, sm.init, obs)[0]
    a, _ = gk.emit(0, init_flat.reshape(gk.shape), x, obs)
    b, _ = gk.emit(0, (init_flat + 1.3).reshape(gk.shape), x, obs)
    return mx.max(mx.abs(a - b))


def _obs_matrix(
    sm: SeqModel, gk: _GaussKernel, values: dict[Path, mx.array], masks: dict[Path, mx.array]
) -> tuple[mx.array, mx.array]:
    """Stack the observed sites into ``[..., T, m]`` values and masks."""
    ys, ms = [], []
    for p, sz in zip(gk.emis, gk.sizes):
        v = values[p].astype(mx.float32)
        lead = v.shape[: v.ndim - len(gk.sm.graph.site(p).shape or ())]
        v = v.reshape(*lead, sz)
        mk = masks[p]
        mk = mx.broadcast_to(mk.reshape(*mk.shape, 1), (*mk.shape, sz))
        ys.append(v)
        ms.append(mk)
    return mx.concatenate(ys, axis=-1), mx.concatenate(ms, axis=-1)


def _batched_values(
    sm: SeqModel, obs: ChoiceMap, batch: tuple[int, ...]
) -> tuple[dict[Path, mx.array], dict[Path, mx.array]]:
    """Observation values ``[B?, T, ...]`` and masks ``[T]`` (same for every batch element)."""
    if not batch:
        return sm.obs_values, sm.obs_mask
    sub = obs.with_batch_shape(())
    if sm.prefix:
        sub = sub.get_submap(sm.prefix)
    per: dict[Path, dict[int, mx.array]] = {}
    for path, v in sub.leaves():
        per.setdefault(path[1:], {})[int(path[0])] = as_array(v)
    values = {}
    for p, dct in per.items():
        ref = next(iter(dct.values()))
        rows = [dct.get(t, mx.zeros(ref.shape, dtype=ref.dtype)) for t in range(sm.T)]
        values[p] = mx.stack(rows, axis=1)
    return values, sm.obs_mask


def _prepare(
    model: GenerativeFunction, args: Any, observations: Any, op: str
) -> tuple[SeqModel, ChoiceMap, tuple[int, ...]]:
    args = as_args(args, op)
    obs = as_choicemap(observations, op, "observations")
    batch = tuple(obs.batch_shape)
    if len(batch) > 1:
        raise ValueError(f"{op}: observations may carry one batch axis, got {batch}")
    first = obs
    if batch:
        leaves, td = flatten(obs.with_batch_shape(()))
        from genmlx.core.tree import unflatten

        first = unflatten(td, [x[0] for x in leaves])
    sm = find_sequence(model, args, first, op)
    sm._model_args = args  # type: ignore[attr-defined]
    return sm, obs, batch


def kalman_filter(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: Any,
    *,
    method: str = "auto",
) -> KalmanResult:
    """Kalman filter and smoother of a sequence model with a Gaussian state.

    Args:
        model: ``Unfold(kernel)``, ``Scan(kernel)`` or a ``@gen`` model around one (see
            the module docstring for what the kernel must look like).
        args: the model's arguments.
        observations: observed choices at ``(t, addr)`` (below the call's address for a
            ``@gen`` model); batched (``batch_shape == (B,)``) for ``B`` sequences.
        method: ``"kalman"`` (exact; the model must be linear-Gaussian), ``"ekf"``,
            ``"ukf"``, or ``"auto"`` (``"kalman"`` when linear-Gaussian, else ``"ekf"``).

    Returns:
        A :class:`KalmanResult`.

    Raises:
        StaticModelError: the kernel does not have the form described above, or
            ``method="kalman"`` on a model that is not linear-Gaussian.
    """
    op = "kalman_filter"
    if method not in ("auto", "kalman", "ekf", "ukf"):
        raise ValueError(f"{op}: method must be 'auto', 'kalman', 'ekf' or 'ukf', got {method!r}")
    sm, obs, batch = _prepare(model, args, observations, op)
    gk = _GaussKernel(sm, op)
    _check_carry(gk, op)
    values, masks = _batched_values(sm, obs, batch)
    ys, mk = _obs_matrix(sm, gk, values, masks)
    linear = None
    if method in ("auto", "kalman"):
        mats, err = _extract_linear(gk, op)
        linear = float(err) <= _TOL
        if method == "kalman" and not linear:
            raise StaticModelError(
                f"{op}: the model is not linear-Gaussian (affinity/constancy check error "
                f"{float(err):.3g}): a state or observation mean is not affine in the state, "
                "or a covariance depends on it. Use method='ekf' or 'ukf'"
            )
        if linear:
            method = "kalman"
    if method == "auto":
        method = "ekf"
    init_flat = flatten(sm.init)[0][0].astype(mx.float32).reshape(-1)
    if method == "kalman":
        F, c, Q, H, dvec, R = mats
        m0 = F[0] @ init_flat + c[0]
        P0 = Q[0]

        def trans(t: int, m: mx.array, P: mx.array) -> tuple[mx.array, mx.array, mx.array]:
            return F[t], c[t], Q[t]

        def emit(t: int, m: mx.array, P: mx.array) -> tuple[mx.array, mx.array, mx.array]:
            return H[t], dvec[t], R[t]

        def one(yy: mx.array) -> tuple[_Pass, tuple[mx.array, mx.array]]:
            p = _kalman_pass(yy, mk, (m0, P0), trans, emit, sm.T)
            return p, _smooth(p)
    else:
        if float(_emission_independent_of_carry(gk)) > _TOL:
            raise StaticModelError(
                f"{op}: the observations' distribution reads the incoming state, not only the "
                "new state; the filter needs y_t to depend on x_t alone"
            )
        lin_t, lin_e = _ekf_lin(gk) if method == "ekf" else _ukf_lin(gk)
        m0, P0 = gk.trans(0, sm.init, sm.obs_at(0))
        m0 = m0.astype(mx.float32)

        def one(yy: mx.array) -> tuple[_Pass, tuple[mx.array, mx.array]]:
            p = _kalman_pass(yy, mk, (m0, P0), lin_t, lin_e, sm.T)
            return p, _smooth(p)

    with runtime.transforming():
        if batch:
            p, s = mx.vmap(one)(ys)
            p = _Pass(*p)
        else:
            p, s = one(ys)
    res = KalmanResult(p, s, method, batch, sm, (gk.state.path, gk.shape))
    if not isinstance(sm.outer_log_prob, mx.array) or float(sm.outer_log_prob) != 0.0:
        res.log_ml = res.log_ml + sm.outer_log_prob
    return res


def _ekf_lin(gk: _GaussKernel) -> tuple[Lin, Lin]:
    sm = gk.sm

    def trans(t: int, m: mx.array, P: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        obs = sm.obs_at(t)
        fm, Q = gk.trans(t, m.reshape(gk.shape), obs)
        F = _jac(lambda s: gk.trans(t, s.reshape(gk.shape), obs)[0], m)
        return F, fm - F @ m, Q

    def emit(t: int, m: mx.array, P: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        obs = sm.obs_at(t)
        c = m.reshape(gk.shape)
        hm, R = gk.emit(t, c, m, obs)
        H = _jac(lambda x: gk.emit(t, c, x, obs)[0], m)
        return H, hm - H @ m, R

    return trans, emit


def _sigma_points(m: mx.array, P: mx.array, kappa: float) -> tuple[mx.array, mx.array]:
    n = m.shape[0]
    lam = kappa
    L = _chol((n + lam) * P + 1e-9 * mx.eye(n))
    pts = mx.concatenate([m[None], m[None] + L.T, m[None] - L.T])
    w = mx.concatenate([mx.array([lam / (n + lam)]), mx.full((2 * n,), 0.5 / (n + lam))])
    return pts, w


def _slr(
    fn: Callable[[mx.array], tuple[mx.array, mx.array]], m: mx.array, P: mx.array, kappa: float
) -> tuple[mx.array, mx.array, mx.array]:
    """Statistical linear regression of ``fn``'s mean through sigma points of ``N(m, P)``:
    ``(A, b, Ω)`` with ``E[f] ≈ A m + b`` and ``Cov[f] + noise ≈ A P Aᵀ + Ω``."""
    pts, w = _sigma_points(m, P, kappa)
    means, covs = mx.vmap(fn)(pts)
    ybar = w @ means
    dy = means - ybar
    dx = pts - m
    Pyy = (dy * w[:, None]).T @ dy
    Pxy = (dx * w[:, None]).T @ dy
    noise = mx.sum(covs * w[:, None, None], axis=0)
    L = _chol(P + 1e-9 * mx.eye(P.shape[0]))
    A = _chol_solve(L, Pxy).T
    b = ybar - A @ m
    omega = _sym(Pyy - A @ P @ A.T + noise)
    return A, b, omega


def _ukf_lin(gk: _GaussKernel, kappa: float = 2.0) -> tuple[Lin, Lin]:
    sm = gk.sm

    def trans(t: int, m: mx.array, P: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        obs = sm.obs_at(t)
        return _slr(lambda s: gk.trans(t, s.reshape(gk.shape), obs), m, P, kappa)

    def emit(t: int, m: mx.array, P: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        obs = sm.obs_at(t)
        c = m.reshape(gk.shape)
        return _slr(lambda x: gk.emit(t, c, x, obs), m, P, kappa)

    return trans, emit


# ---------------------------------------------------------------------------- RBPF
class RBPFResult(NamedTuple):
    """Result of :func:`rao_blackwellized_particle_filter`.

    Attributes:
        log_ml_estimate: ``log Ẑ`` (unbiased ``Ẑ``), the Gaussian state integrated out.
        log_weights: final normalised log weights ``[N]``.
        sampled: ``{address: [N, T, *shape]}`` the particles' sampled choices (their
            ancestral paths).
        means / covs: each particle's filtered Gaussian state ``[N, T, d]`` /
            ``[N, T, d, d]``.
        ess: the effective sample size before each resampling ``[T]``.
        marginalized: ``{address: how}``; weight_kind: ``"marginal"``.
    """

    log_ml_estimate: mx.array
    log_weights: mx.array
    sampled: dict[Any, mx.array]
    means: mx.array
    covs: mx.array
    ess: mx.array
    marginalized: dict[Any, str]
    weight_kind: str

    def filtered_mean(self) -> mx.array:
        """``E[x_t | y_{0:t}]`` ``[T, d]`` (weights of the last step on the paths)."""
        w = mx.exp(self.log_weights)
        return mx.tensordot(w, self.means, axes=1)


def rao_blackwellized_particle_filter(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: Any,
    n_particles: int,
    *,
    ess_threshold: float | None = None,
    key: Key = None,
) -> RBPFResult:
    """A particle filter over a kernel's discrete/other latent choices with the Gaussian
    state integrated out by an exact Kalman step per particle.

    The kernel has one Gaussian state choice (as for :func:`kalman_filter`) and other
    latent choices — a regime, a switch — that it may return in its state
    (``return (regime, x)``). Given a particle's sampled choices the step is
    linear-Gaussian; each particle carries a Gaussian belief and its weight grows by the
    Kalman predictive likelihood ``log p(y_t | sampled_{0:t}, y_{0:t−1})``. The sampled
    choices are proposed from the kernel's prior (bootstrap); their distribution may
    read the sampled part of the incoming state but not the Gaussian part.

    Args:
        model: an ``Unfold`` / ``Scan`` (or ``@gen`` around one).
        args: its arguments.
        observations: observed choices at ``(t, addr)``.
        n_particles: ``N``.
        ess_threshold: resample when the ESS falls below it (default ``N/2``); ``0``
            never, ``N + 1`` always.
        key: PRNG key.

    Returns:
        An :class:`RBPFResult`.
    """
    op = "rao_blackwellized_particle_filter"
    sm, obs, batch = _prepare(model, args, observations, op)
    if batch:
        raise ValueError(f"{op}: observations must be unbatched")
    if isinstance(n_particles, bool) or not isinstance(n_particles, int) or n_particles < 1:
        raise ValueError(f"{op}: n_particles must be a positive int, got {n_particles!r}")
    gauss = [s for s in sm.latent_sites if type(s.gen_fn) in (Normal, MvNormal)]
    if len(gauss) != 1:
        raise StaticModelError(
            f"{op}: the kernel needs exactly one normal/mv_normal latent state choice, found "
            f"{len(gauss)}"
        )
    sampled_sites = [s for s in sm.latent_sites if s is not gauss[0]]
    if not sampled_sites:
        raise StaticModelError(f"{op}: the kernel has no other latent choice; use kalman_filter")
    sampled_paths = tuple(s.path for s in sampled_sites)
    gk = _GaussKernel(sm, op, sampled=sampled_paths)
    n = n_particles
    thr = n / 2 if ess_threshold is None else float(ess_threshold)
    key = resolve_key(key)
    ys, mk = _obs_matrix(sm, gk, sm.obs_values, sm.obs_mask)
    init = sm.init
    g_leaf, is_g = _gauss_leaf(gk, sampled_sites)

    def split_carry(carry: Any) -> tuple[Any, mx.array]:
        leaves, td = flatten(carry)
        return (td, [lv for lv, g in zip(leaves, is_g) if not g]), leaves[g_leaf].astype(
            mx.float32
        ).reshape(-1)

    def join_carry(aux: Any, x: mx.array) -> Any:
        from genmlx.core.tree import unflatten

        td, rest = aux
        out, it = [], iter(rest)
        for g in is_g:
            out.append(x.reshape(gk.shape) if g else next(it))
        return unflatten(td, out)

    aux0, x_init = split_carry(init)
    d = gk.d
    # particle state: sampled part of the carry (leaves), Gaussian mean/cov
    rest = [mx.broadcast_to(lv, (n, *lv.shape)) for lv in aux0[1]]
    means = mx.broadcast_to(x_init, (n, d))
    covs = mx.zeros((n, d, d))
    lw = mx.zeros((n,))
    log_ml = mx.array(0.0)
    hist_s: dict[Path, list[mx.array]] = {p: [] for p in sampled_paths}
    hist_m, hist_P, ess_hist = [], [], []
    anc_paths: list[mx.array] = []
    keys = mx.random.split(key, 2 * sm.T)

    for t in range(sm.T):
        obs_t = sm.obs_at(t)
        y_t, m_t = ys[t], mk[t].astype(mx.float32)

        def one(
            k: mx.array,
            rest_i: list[mx.array],
            m_i: mx.array,
            P_i: mx.array,
            t: int = t,
            obs_t: ChoiceMap = obs_t,
            y_t: mx.array = y_t,
            m_t: mx.array = m_t,
        ) -> tuple[Any, ...]:
            carry_s = join_carry((aux0[0], rest_i), m_i)
            # draw the sampled choices from the prior (they may not read the Gaussian part)
            draws: dict[Path, mx.array] = {}
            ks = mx.random.split(k, len(sampled_paths))

            def provide(path: Path, dist: Distribution, params: tuple[Any, ...]) -> mx.array:
                if path in draws:
                    return draws[path]
                if path in sampled_paths:
                    draws[path] = dist.sample(ks[sampled_paths.index(path)], *params)
                    return draws[path]
                return mx.broadcast_to(as_array(params[0]).astype(mx.float32), gk.shape)

            sm.run(t, carry_s, obs_t, provide, op)

            def tmean(s: mx.array) -> mx.array:
                return gk.trans(t, join_carry((aux0[0], rest_i), s), obs_t, draws)[0]

            if t == 0:
                mp, Pp = gk.trans(t, carry_s, obs_t, draws)
                Pp = Pp + P_i
            else:
                F = _jac(tmean, m_i)
                fm, Q = gk.trans(t, carry_s, obs_t, draws)
                mp = fm
                Pp = _sym(F @ P_i @ F.T + Q)
            hm, R = gk.emit(t, carry_s, mp, obs_t, draws)
            H = _jac(lambda x: gk.emit(t, carry_s, x, obs_t, draws)[0], mp)
            Ht = H * m_t[:, None]
            Rt = R * (m_t[:, None] * m_t[None, :]) + mx.diag(1.0 - m_t)
            v = (y_t - hm) * m_t
            S = _sym(Ht @ Pp @ Ht.T + Rt)
            L = _chol(S)
            w = _tri(L, v[:, None])[:, 0]
            ll = -0.5 * (
                mx.sum(w * w) + 2.0 * mx.sum(mx.log(mx.diagonal(L))) + mx.sum(m_t) * _LOG2PI
            )
            K = _chol_solve(L, Ht @ Pp).T
            m_new = mp + K @ v
            A = mx.eye(d) - K @ Ht
            P_new = _sym(A @ Pp @ A.T + K @ Rt @ K.T)
            new_carry = gk.new_carry(t, carry_s, m_new, obs_t, draws)
            (_, rest_new), _ = split_carry(new_carry)
            return (ll, m_new, P_new, tuple(rest_new), tuple(draws[p] for p in sampled_paths))

        pk = mx.random.split(keys[2 * t], n)
        with runtime.transforming():
            ll, means, covs, rest_t, draws_t = mx.vmap(one)(pk, rest, means, covs)
        rest = list(rest_t)
        lw = lw + ll
        for p, v in zip(sampled_paths, draws_t):
            hist_s[p].append(v)
        hist_m.append(means)
        hist_P.append(covs)
        anc_paths.append(mx.arange(n))
        lwn = lw - mx.max(lw)
        ess = mx.exp(2.0 * mx.logsumexp(lwn) - mx.logsumexp(2.0 * lwn))
        ess_hist.append(ess)
        mx.eval(lw, means, covs, rest, ess)
        if t < sm.T - 1 and float(ess) < thr:
            idx = resample_indices(lw, "systematic", key=keys[2 * t + 1])
            log_ml = log_ml + mx.logsumexp(lw) - math.log(n)
            lw = mx.zeros((n,))
            means, covs = means[idx], covs[idx]
            rest = [r[idx] for r in rest]
            for p in sampled_paths:
                hist_s[p] = [h[idx] for h in hist_s[p]]
            hist_m = [h[idx] for h in hist_m]
            hist_P = [h[idx] for h in hist_P]
    log_ml = log_ml + mx.logsumexp(lw) - math.log(n)
    sampled = {from_path(p): mx.stack(v, axis=1) for p, v in hist_s.items()}
    where = format_address(gk.state.path).strip("'")
    return RBPFResult(
        log_ml + sm.outer_log_prob,
        lw - mx.logsumexp(lw),
        sampled,
        mx.stack(hist_m, axis=1),
        mx.stack(hist_P, axis=1),
        mx.stack(ess_hist),
        {
            from_path(
                gk.state.path
            ): f"kalman inside each particle (the state {where} at every step)"
        },
        "marginal",
    )


def _gauss_leaf(gk: _GaussKernel, sampled_sites: list[Any]) -> tuple[int, list[bool]]:
    """Which leaf of the kernel's returned state is the Gaussian state (the others must
    not depend on it)."""
    sm = gk.sm
    obs = sm.obs_at(0)
    draws0 = {s.path: mx.zeros(s.shape, dtype=s.dtype) for s in sampled_sites}
    outs = []
    for k in (1, 2):
        v = mx.full((gk.d,), 0.41 * k, dtype=mx.float32)
        new = gk.new_carry(0, sm.init, v, obs, draws0)
        outs.append(flatten(new)[0])
    a, b = outs
    is_g = []
    for la, lb in zip(a, b):
        same = tuple(la.shape) == tuple(lb.shape) and bool(mx.all(la == lb).item())
        is_g.append(not same)
    idx = [i for i, g in enumerate(is_g) if g]
    if (
        len(idx) != 1
        or int(a[idx[0]].size) != gk.d
        or not bool(
            mx.allclose(
                a[idx[0]].reshape(-1).astype(mx.float32), mx.full((gk.d,), 0.41), atol=1e-6
            ).item()
        )
    ):
        raise StaticModelError(
            "rao_blackwellized_particle_filter: the kernel must return its Gaussian state choice "
            f"{format_address(gk.state.path)} itself in its new state (other parts of the state "
            "may hold the sampled choices)"
        )
    init_leaves = flatten(sm.init)[0]
    if len(init_leaves) != len(a):
        raise StaticModelError(
            "rao_blackwellized_particle_filter: the initial state must have the same structure "
            "as the state the kernel returns"
        )
    return idx[0], is_g
