"""Sequential Monte Carlo: a vectorised particle filter.

A particle filter tracks a sequence of targets ``p(x_{0:t} | y_{0:t}; args_t)`` with
``N`` weighted particles. All ``N`` particles live in one *batched* trace
(``batch_shape == (N,)``), so initialising and extending them runs the model body once
for all particles (:meth:`~genmlx.core.GenerativeFunction.vgenerate`, batched
``update``); there is no Python loop over particles. With a model built from
``Unfold``/``Scan``, extending the trace by a step runs only the new step (prefix
skipping), so a step runs the kernel body once whatever ``t`` is.

Weights and the marginal likelihood, as Gen.jl defines them:

* **initialise** (:func:`particle_filter`): ``(x_i, w_i) = generate(args_0, y_0)``, so
  ``log w_i = log p(y_0 | x_i)`` for the prior proposal, or
  ``log w_i = log p(x_i, y_0) - log q(x_i)`` for a custom proposal ``q``.
* **step** (:meth:`ParticleFilterState.step`): ``(x'_i, u_i, ...) = update(x_i, y_t,
  args_t)`` and ``log w_i += u_i`` — the update weight
  ``log p(x'_i, y_{0:t}; args_t) - log p(x_i, y_{0:t-1}; args_{t-1})`` over what
  changed, i.e. ``log p(y_t | ...)`` under the bootstrap proposal; with a custom
  proposal ``c_i ~ q(·; x_i, ...)`` merged into the constraints,
  ``log w_i += u_i - log q(c_i; x_i, ...)``.
* **resample** (:meth:`ParticleFilterState.resample`): before the weights are reset to
  0, ``log Ẑ_acc += logsumexp_i(log w_i) - log N``; then particles are drawn by index
  with probabilities ``w_i / Σ_j w_j``.
* **estimate** (:attr:`ParticleFilterState.log_ml_estimate`):
  ``log Ẑ = log Ẑ_acc + logsumexp_i(log w_i) - log N``. ``Ẑ`` is an unbiased estimate of
  the marginal likelihood ``p(y_{0:t}; args_t)`` (on the linear scale) for every ``N``
  and every resampling scheme here, since each gives particle ``i`` an expected
  ``N w_i / Σ_j w_j`` offspring.

**The compiled path.** When the model is an ``Unfold``/``Scan`` whose kernel is a static
``@gen`` function without ``param`` (:func:`genmlx.core.analyze`), or a static ``@gen``
model whose body makes one such call (last) besides random choices of its own,
:func:`particle_filter` returns a state kept as plain arrays: every step's batched
kernel trace, the ancestor indices of each resampling (the history is never copied),
the particles' carried state and scores, the weights. A bootstrap :meth:`~ParticleFilterState.step`
that adds one step — together with the resampling requested before it
(:meth:`~ParticleFilterState.resample`, or the ESS-triggered
:meth:`~ParticleFilterState.maybe_resample`, decided with ``mx.where``) — runs as one
compiled program per step signature, with no host synchronisation. The numbers are
the interpreted path's, bit for bit (the same keys and operations). ``.traces`` is
built from the arrays when read (``O(1)``); moves that need a trace (rejuvenation,
SMCP3 edits, custom proposals, updates that are not a one-step extension) run on it
and the next bootstrap step returns to the compiled path. An ``Unfold`` kernel may
compare ``t`` with numbers (``if t == 0``); a kernel that computes with ``t`` runs on
the interpreted path. Non-finite scores are reported when results are first read
(``ess``, ``log_ml_estimate``, ``normalized_weights``, ``traces``) instead of at every
step. ``genmlx.core.static.auto_compile(False)`` turns the compiled path off.

Resampling algorithms (:func:`resample_indices`), all vectorised with a cumulative sum
and a sorted search: ``multinomial`` (i.i.d. draws), ``stratified`` (one uniform per
stratum ``[j/N, (j+1)/N)``), ``systematic`` (one uniform shared by the strata: each
particle gets ``⌊N w̄_i⌋`` or ``⌈N w̄_i⌉`` offspring), ``residual`` (``⌊N w̄_i⌋`` copies,
the rest multinomial on the remainders), with ``w̄`` the normalised weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Trace, config
from genmlx.core.batching import vmap_traces
from genmlx.core.deprecation import MethodNowProperty, renamed_arguments
from genmlx.core.diff import Diff, diff_args
from genmlx.core.edit import EditRequest, ProposalEdit
from genmlx.core.random import Key
from genmlx.infer import _checks as checks
from genmlx.infer import _sharding
from genmlx.infer.importance import _check_inputs, _index_trace, _raw_weights

if TYPE_CHECKING:
    from genmlx.infer.distributed.smc import ShardedParticleFilterState

__all__ = [
    "RESAMPLING_METHODS",
    "ParticleFilterState",
    "particle_filter",
    "resample_indices",
]

RESAMPLING_METHODS = ("multinomial", "stratified", "systematic", "residual")
"""The resampling schemes :func:`resample_indices` knows."""


# ---------------------------------------------------------------------- resampling
def _searchsorted_merge(cdf: mx.array, u: mx.array) -> mx.array:
    """``#{i : cdf_i <= u_j}`` for every ``u_j`` by sorting ``cdf`` and ``u`` together.

    A fallback for MLX builds without ``mx.searchsorted``; ``u`` need not be sorted.
    """
    n, m = cdf.shape[0], u.shape[0]
    # tie-break: a cdf value equal to a u value sorts first (counts as <= u)
    vals = mx.concatenate([cdf, u])
    order = mx.argsort(vals)
    sorted_vals = vals[order]
    is_cdf = (order < n).astype(mx.int32)
    # among equal values put cdf entries before u entries: count cdf entries <= value
    # as (#cdf entries strictly before) + (#cdf entries equal), via a right-sided count
    before = mx.cumsum(is_cdf)
    # handle ties robustly: for a run of equal values take the count at its last element
    nxt = mx.concatenate([sorted_vals[1:], mx.array([mx.inf], dtype=sorted_vals.dtype)])
    last_of_run = sorted_vals != nxt
    idx = mx.arange(n + m)
    run_end = mx.where(last_of_run, idx, n + m)
    # index of the last element of each element's run: reverse cumulative minimum
    run_end = mx.cummin(run_end, reverse=True)
    counts_sorted = before[run_end]
    pos_u = mx.where(order >= n, order - n, m)  # cdf entries scatter to a dummy slot
    out = mx.zeros((m + 1,), dtype=mx.int32).at[pos_u].add(mx.where(order >= n, counts_sorted, 0))
    return out[:m]


def _searchsorted_right(cdf: mx.array, u: mx.array) -> mx.array:
    """``#{i : cdf_i <= u_j}`` for each ``u_j`` (``cdf`` ascending), as int32."""
    ss = getattr(mx, "searchsorted", None)
    if ss is not None:
        return ss(cdf, u, side="right").astype(mx.int32)
    return _searchsorted_merge(cdf, u)


def _normalised(log_weights: mx.array) -> mx.array:
    lw = log_weights.astype(mx.float32)
    return mx.exp(lw - mx.logsumexp(lw))


def _cdf(w: mx.array) -> mx.array:
    c = mx.cumsum(w)
    c = c / c[-1]
    # the last entry is exactly 1, so every u in [0, 1) finds a particle
    return mx.concatenate([c[:-1], mx.ones((1,), dtype=c.dtype)])


def _invert(w: mx.array, u: mx.array) -> mx.array:
    n = w.shape[0]
    return mx.minimum(_searchsorted_right(_cdf(w), u), n - 1)


@renamed_arguments(n="n_particles")
def resample_indices(
    log_weights: mx.array,
    method: str = "systematic",
    *,
    n_particles: int | None = None,
    key: Key = None,
    step: str = "",
) -> mx.array:
    """Ancestor indices drawn from the (unnormalised) log weights, vectorised.

    Every method is unbiased: with ``w̄_i = exp(lw_i) / Σ_j exp(lw_j)``, particle
    ``i``'s expected number of offspring is ``n · w̄_i``.

    * ``"multinomial"``: ``n`` i.i.d. draws from ``Categorical(w̄)``.
    * ``"stratified"``: ``u_j = (j + U_j) / n`` with independent ``U_j ~ U[0, 1)``.
    * ``"systematic"``: ``u_j = (j + U) / n`` with one ``U ~ U[0, 1)``; particle ``i``
      gets ``⌊n w̄_i⌋`` or ``⌈n w̄_i⌉`` offspring.
    * ``"residual"``: ``⌊n w̄_i⌋`` deterministic copies of particle ``i``, and the
      remaining ``R = n - Σ_i ⌊n w̄_i⌋`` slots drawn i.i.d. with probabilities
      proportional to ``n w̄_i - ⌊n w̄_i⌋``.

    For the stratified, systematic and multinomial schemes, ``u_j`` is mapped to the
    particle whose cumulative-weight interval contains it (a sorted search on the
    cumulative sum), so the cost is ``O(n log N)`` array work.

    Args:
        log_weights: ``[N]`` log weights (need not be normalised).
        method: one of :data:`RESAMPLING_METHODS`.
        n_particles: ``n``, the number of indices to draw (default ``N``; ``n=`` is
            the deprecated name).
        key: PRNG key.

    Returns:
        ``[n]`` int32 indices into the particles.

        step: what produced the weights, named in errors.

    Raises:
        ValueError: an unknown method, or ``log_weights`` is not one-dimensional.
        DegenerateWeightsError: every log weight is -inf (no particle has positive
            weight) or one is NaN. Under ``mx.compile`` nothing can be raised; callers
            there get indices but should check their weights (the particle filter turns
            its weights into NaN).

    Example:
        >>> import mlx.core as mx
        >>> lw = mx.log(mx.array([0.1, 0.6, 0.3]))
        >>> idx = resample_indices(lw, "systematic", n_particles=10, key=mx.random.key(0))
        >>> [int((idx == i).sum()) for i in range(3)]   # 10·w = 1, 6, 3 exactly
        [1, 6, 3]
    """
    if method not in RESAMPLING_METHODS:
        raise ValueError(
            f"resample: unknown method {method!r}; choose one of {', '.join(RESAMPLING_METHODS)}"
        )
    if not isinstance(log_weights, mx.array) or log_weights.ndim != 1:
        raise ValueError("resample: log_weights must be a one-dimensional MLX array")
    big_n = log_weights.shape[0]
    if big_n == 0:
        raise ValueError("resample: log_weights is empty; there is no particle to resample")
    n = big_n if n_particles is None else n_particles
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"resample: n_particles must be a positive int, got {n!r}")
    key = checks.key(key, "resample")
    checks.weights(log_weights, "resample", step)
    w = _normalised(log_weights)
    j = mx.arange(n, dtype=mx.float32)
    if method == "multinomial":
        return _invert(w, mx.random.uniform(shape=(n,), key=key))
    if method == "stratified":
        return _invert(w, (j + mx.random.uniform(shape=(n,), key=key)) / n)
    if method == "systematic":
        return _invert(w, (j + mx.random.uniform(shape=(), key=key)) / n)
    # residual
    scaled = n * w
    copies = mx.floor(scaled)
    n_det = mx.minimum(mx.sum(copies), n).astype(mx.int32)
    # slot j < n_det belongs to the particle whose copy block [cum_{i-1}, cum_i) holds j
    det = mx.minimum(_searchsorted_right(mx.cumsum(copies), j), big_n - 1)
    rem = mx.maximum(scaled - copies, 0.0)
    total = mx.sum(rem)
    rem = mx.where(total > 0, rem, mx.ones_like(rem))  # nothing left over: unused
    extra = _invert(rem / mx.sum(rem), mx.random.uniform(shape=(n,), key=key))
    slot = mx.arange(n, dtype=mx.int32)
    # slot j >= n_det takes the (j - n_det)-th i.i.d. draw: the draws are independent,
    # so any fixed n - n_det of them form a multinomial sample of that size
    return mx.where(slot < n_det, det, extra)


def _ess(log_weights: mx.array) -> mx.array:
    """Kish effective sample size of unnormalised log weights."""
    lw = log_weights.astype(mx.float32)
    lw = lw - mx.max(lw)
    return mx.exp(2.0 * mx.logsumexp(lw) - mx.logsumexp(2.0 * lw))


# ---------------------------------------------------------------------- the state
class ParticleFilterState(NamedTuple):
    """The immutable state of a particle filter (see :func:`particle_filter`).

    Every operation returns a new state.

    Attributes:
        traces: the particles as one batched trace (``batch_shape == (N,)``).
        log_weights: unnormalised log weights, shape ``[N]`` (0 right after resampling).
        log_ml_accumulated: ``Σ (logsumexp(log w) - log N)`` over the resampling steps so
            far (Gen.jl's ``log_ml_est``), a scalar.
    """

    traces: Trace
    log_weights: mx.array
    log_ml_accumulated: mx.array

    @property
    def n_particles(self) -> int:
        """The number of particles ``N``."""
        return int(self.log_weights.shape[0])

    def normalized_weights(self) -> mx.array:
        """``w̄_i = exp(log w_i) / Σ_j exp(log w_j)``, shape ``[N]``."""
        return _normalised(self.log_weights)

    def ess(self) -> mx.array:
        """Kish effective sample size ``1 / Σ_i w̄_i²`` (between 1 and ``N``)."""
        return _ess(self.log_weights)

    @property
    def log_ml_estimate(self) -> mx.array:
        """``log Ẑ = log Ẑ_acc + logsumexp_i(log w_i) - log N`` (a property; calling it
        like the method it used to be still works, with a ``DeprecationWarning``).

        ``Ẑ`` is an unbiased estimate of the marginal likelihood of the observations so
        far (``E[Ẑ] = p(y_{0:t}; args_t)``); ``log Ẑ`` is biased low by about
        ``Var(log Ẑ) / 2``.
        """
        value = (
            self.log_ml_accumulated + mx.logsumexp(self.log_weights) - math.log(self.n_particles)
        )
        return MethodNowProperty(value, "ParticleFilterState.log_ml_estimate")

    # ------------------------------------------------------------------ step
    def step(
        self,
        new_args: tuple[Any, ...],
        observations: ChoiceMap | Mapping[Any, Any] | None,
        *,
        argdiffs: tuple[Diff, ...] | None = None,
        proposal: GenerativeFunction | None = None,
        proposal_args: tuple[Any, ...] = (),
        key: Key = None,
    ) -> ParticleFilterState:
        """Extend every particle to ``new_args`` and the new ``observations``.

        Bootstrap (``proposal=None``): one batched ``update`` of all particles,
        ``(x'_i, u_i, _, _) = update(x_i, y_t, new_args, argdiffs)`` with new latent
        choices drawn from the model, and ``log w_i += u_i``.

        Custom proposal: ``proposal(trace_i, *proposal_args)`` proposes choices
        ``c_i`` (new latent addresses of the model) for each particle, and
        ``(x'_i, u_i, _, _) = update(x_i, c_i ∪ y_t, new_args, argdiffs)``,
        ``log w_i += u_i - log q(c_i; x_i, ...)`` — all particles in one vectorised
        computation.

        Args:
            new_args: the model's new arguments, e.g. ``(t + 1, init, *params)`` for an
                ``Unfold``; arguments that are the same objects as before, or arrays equal
                to them, count as unchanged, so only the new step runs.
            observations: the new observed values (shared by all particles).
            argdiffs: change hints for ``new_args`` (default: ``NoChange`` for
                arguments that are the same objects or equal arrays — compared in one
                evaluation — and ``UnknownChange`` otherwise).
            proposal: ``None`` (bootstrap) or a generative function
                ``(trace, *proposal_args)`` proposing new latent choices.
            proposal_args: the proposal's extra arguments.
            key: PRNG key.

        Returns:
            The new state (weights not normalised; no resampling).
        """
        obs = _check_inputs(
            self.traces.gen_fn, new_args, observations, self.n_particles, proposal, "step"
        )
        if not isinstance(proposal_args, (tuple, list)):
            raise TypeError("step: proposal_args must be a tuple")
        key = checks.key(key, "step")
        if argdiffs is None:
            # arguments passed as fresh but equal arrays (e.g. ``mx.array(0.0)`` built
            # anew each step) count as unchanged: one evaluation compares them, and the
            # step stays incremental (and on the compiled path)
            argdiffs = diff_args(self.traces.args, tuple(new_args), compare_arrays=True)
        if proposal is None and type(self) is ParticleFilterState:
            from genmlx.infer import _smc_fast

            fast = _smc_fast.from_trace(self.traces, self.log_weights, self.log_ml_accumulated)
            if fast is not None:
                out = _smc_fast._step(fast, tuple(new_args), obs, argdiffs, key)
                if out is not None:
                    return out
        return self._interpreted_step(
            tuple(new_args), obs, argdiffs, proposal, tuple(proposal_args), key
        )

    def _interpreted_step(
        self,
        new_args: tuple[Any, ...],
        obs: ChoiceMap,
        argdiffs: tuple[Diff, ...] | None,
        proposal: GenerativeFunction | None,
        proposal_args: tuple[Any, ...],
        key: mx.array,
    ) -> ParticleFilterState:
        """:meth:`step` through the batched ``update`` (validated inputs)."""
        tr = self.traces
        model = tr.gen_fn
        if argdiffs is None:
            argdiffs = diff_args(tr.args, new_args)
        # dead particles (log weight -inf) may have -inf scores whose update weight is
        # NaN (-inf - -inf); they stay dead, and only live particles are checked
        with self._dead_particles_allowed():
            if proposal is None:
                new, w, _, _ = model.update(tr, obs, new_args, argdiffs, key=key)
            else:
                new, w = _proposal_update(
                    model, tr, obs, new_args, tuple(argdiffs), proposal, tuple(proposal_args), key
                )
        return ParticleFilterState(new, self._add_weights(w, "step"), self.log_ml_accumulated)

    def _dead_particles_allowed(self) -> Any:
        """Score checks off when some particle is dead (its checks happen here)."""
        got = checks.evaluable(mx.any(self.log_weights == -mx.inf))
        return config.score_checks(False) if got is not None and bool(got) else nullcontext()

    def _add_weights(self, w: mx.array, op: str) -> mx.array:
        lw = self.log_weights
        return _no_nan(mx.where(lw == -mx.inf, -mx.inf, lw + w), op)

    # ------------------------------------------------------------------ SMCP3
    def edit(self, request: EditRequest, *, key: Key = None) -> ParticleFilterState:
        """Apply an edit request to every particle at once; ``log w_i +=`` its weight.

        This is the general SMC move of SMCP3: the request's weight is the incremental
        importance weight of the move from the current target to the edited one. A
        :class:`~genmlx.core.edit.ConstraintEdit` with new arguments and observations
        is a bootstrap step, a :class:`~genmlx.core.edit.SelectionEdit` a
        resample-move from the model's prior, a :class:`~genmlx.core.edit.ProposalEdit`
        an SMCP3 move with forward and backward kernels (see :meth:`smcp3_step`). All
        particles run in one batched edit.
        """
        if not isinstance(request, EditRequest):
            raise TypeError(f"edit: request must be an EditRequest, got {type(request).__name__}")
        key = checks.key(key, "edit")
        with self._dead_particles_allowed():
            new, w, _, _ = self.traces.gen_fn.edit(self.traces, request, key=key)
        return ParticleFilterState(new, self._add_weights(w, "edit"), self.log_ml_accumulated)

    def smcp3_step(
        self,
        forward: GenerativeFunction,
        forward_args: tuple[Any, ...] = (),
        backward: GenerativeFunction | None = None,
        backward_args: tuple[Any, ...] = (),
        *,
        new_args: tuple[Any, ...] | None = None,
        observations: ChoiceMap | Mapping[Any, Any] | None = None,
        argdiffs: tuple[Diff, ...] | None = None,
        key: Key = None,
    ) -> ParticleFilterState:
        """An SMCP3 step (Lew et al., 2023) with forward kernel ``K`` and backward kernel ``L``.

        For each particle ``x``: ``c ~ K(·; x, *forward_args)`` proposes new values —
        for the new step's latents, and possibly new values for old latents (a move
        that also improves the past); ``x' = update(x, c ∪ y, new_args)`` with the
        overwritten old values ``d`` in the discard; and

            ``log w += log p(x', y_{0:t}; new_args) - log p(x, y_{0:t-1}; args)
            + log L(d; x', *backward_args) - log K(c; x, *forward_args)``.

        ``L`` is a generative function of the new trace that proposes exactly the
        addresses the move overwrote (the reverse move); without overwrites no
        ``L`` is needed and this is a custom-proposal particle filter step. With the
        optimal pair — ``K`` the new target's conditional and ``L`` the old target's
        conditional — every particle gets the same weight. Batched: one edit for all
        particles (:meth:`edit` with a :class:`~genmlx.core.edit.ProposalEdit`).

        Args:
            forward: ``K(trace, *forward_args)``, a generative function.
            forward_args: its extra arguments.
            backward: ``L(new_trace, *backward_args)`` or ``None``.
            backward_args: its extra arguments.
            new_args: the model's new arguments (default: unchanged).
            observations: the new observations (shared by all particles).
            argdiffs: change hints for ``new_args``.
            key: PRNG key.
        """
        request = _smcp3_request(
            self.traces,
            self.n_particles,
            forward,
            forward_args,
            backward,
            backward_args,
            new_args,
            observations,
            argdiffs,
        )
        return self.edit(request, key=key)

    # ------------------------------------------------------------------ resample
    def resample(
        self,
        method: str = "systematic",
        *,
        ess_threshold: float | None = None,
        key: Key = None,
    ) -> ParticleFilterState:
        """Resample the particles and reset the weights to 0.

        First ``log Ẑ_acc += logsumexp(log w) - log N`` (so :attr:`log_ml_estimate` is
        unchanged by resampling), then ancestors ``a_1..a_N`` are drawn with
        :func:`resample_indices` and every leaf of the batched trace is gathered
        along its particle axis.

        With ``ess_threshold`` the resampling happens only where ``ess() <
        ess_threshold`` (see :meth:`maybe_resample`).

        Args:
            method: one of :data:`RESAMPLING_METHODS`.
            ess_threshold: ``None`` (always resample) or an ESS in particles.
            key: PRNG key.
        """
        if ess_threshold is not None:
            return self.maybe_resample(ess_threshold, method, key=key)
        key = checks.key(key, "resample")
        n = self.n_particles
        lw = self.log_weights
        idx = resample_indices(lw, method, key=key, step="(the particle filter's weights)")
        lse = mx.logsumexp(lw)
        return ParticleFilterState(
            _index_trace(self.traces, idx),
            _reset_weights(lw),
            self.log_ml_accumulated + lse - math.log(n),
        )

    def maybe_resample(
        self, ess_threshold: float, method: str = "systematic", *, key: Key = None
    ) -> ParticleFilterState:
        """Resample only when ``ess() < ess_threshold`` (Gen.jl's ``maybe_resample!``).

        The choice is made without leaving MLX (``mx.where`` on the ancestor indices,
        the weights and the accumulated log ML), so a loop of filter steps can be
        compiled; the particle gather runs in both cases (identity indices when no
        resampling happens).

        Args:
            ess_threshold: resample when the ESS is below this many particles (e.g.
                ``N / 2``).
            method: one of :data:`RESAMPLING_METHODS`.
            key: PRNG key.
        """
        if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, (int, float)):
            raise TypeError(
                f"maybe_resample: ess_threshold must be a number, got {ess_threshold!r}"
            )
        checks.number(ess_threshold, "ess_threshold", "maybe_resample", low=0.0)
        key = checks.key(key, "maybe_resample")
        n = self.n_particles
        do = self.ess() < ess_threshold
        idx = resample_indices(
            self.log_weights, method, key=key, step="(the particle filter's weights)"
        )
        idx = mx.where(do, idx, mx.arange(n, dtype=idx.dtype))
        lse = mx.logsumexp(self.log_weights)
        lw = mx.where(do, _reset_weights(self.log_weights), self.log_weights)
        acc = mx.where(do, self.log_ml_accumulated + lse - math.log(n), self.log_ml_accumulated)
        return ParticleFilterState(_index_trace(self.traces, idx), lw, acc)

    # ------------------------------------------------------------------ rejuvenate
    def rejuvenate(
        self,
        kernel: Callable[..., tuple[Trace, Any]],
        *args: Any,
        key: Key = None,
        **kwargs: Any,
    ) -> ParticleFilterState:
        """Apply an MCMC kernel to every particle; the weights are unchanged.

        ``kernel(traces, *args, key=key, **kwargs) -> (new_traces, info)`` is any
        kernel of :mod:`genmlx.infer` (``mh``, ``mala``, ``hmc``, ``gibbs``, a
        ``cycle``/``repeat_kernel`` of them, ...) run on the batched trace, each particle as
        its own chain. A kernel that leaves the current target
        ``p(x_{0:t} | y_{0:t})`` invariant keeps the weighted particle system (and the
        log ML estimate) valid.

        Example:
            ``state.rejuvenate(mh, select((t, "x")), key=k)``.
        """
        if not callable(kernel):
            raise TypeError(
                f"rejuvenate: kernel must be a kernel function (mh, hmc, ...), got "
                f"{type(kernel).__name__}"
            )
        key = checks.key(key, "rejuvenate")
        new, _ = kernel(self.traces, *args, key=key, **kwargs)
        if not isinstance(new, Trace) or new.batch_shape != self.traces.batch_shape:
            raise ValueError(
                "rejuvenate: the kernel must return (trace, info) with the particles' "
                f"batch shape {self.traces.batch_shape}"
            )
        return self._replace(traces=new)


def _smcp3_request(
    traces: Trace,
    n_particles: int,
    forward: GenerativeFunction,
    forward_args: tuple[Any, ...],
    backward: GenerativeFunction | None,
    backward_args: tuple[Any, ...],
    new_args: tuple[Any, ...] | None,
    observations: ChoiceMap | Mapping[Any, Any] | None,
    argdiffs: tuple[Diff, ...] | None,
) -> ProposalEdit:
    """The :class:`~genmlx.core.edit.ProposalEdit` of an SMCP3 step (validated)."""
    model = traces.gen_fn
    args = traces.args if new_args is None else tuple(new_args)
    obs = _check_inputs(model, args, observations, n_particles, forward, "smcp3_step")
    if forward is None:
        raise TypeError("smcp3_step: forward must be a generative function K(trace, ...)")
    if backward is not None and not isinstance(backward, GenerativeFunction):
        raise TypeError(
            "smcp3_step: backward must be a generative function L(new_trace, ...) or None, "
            f"got {type(backward).__name__}"
        )
    if argdiffs is None and new_args is not None:
        argdiffs = diff_args(traces.args, args)
    request = ProposalEdit(
        forward,
        tuple(forward_args),
        backward,
        tuple(backward_args),
        args=None if new_args is None else args,
        argdiffs=argdiffs,
        constraints=obs,
    )
    return request


def _no_nan(lw: mx.array, op: str) -> mx.array:
    """NaN log weights after a step are always a bug: raise (or, under a transform,
    leave them NaN for the caller to see)."""
    got = checks.evaluable(mx.any(mx.isnan(lw)))
    if got is not None and bool(got):
        checks.weights(lw, op, "after this step")
    return lw


def _reset_weights(lw: mx.array) -> mx.array:
    """Zeros after resampling; NaN when the weights were degenerate (only reachable
    under a transform, where :func:`resample_indices` could not raise)."""
    bad = mx.logical_or(mx.any(mx.isnan(lw)), mx.all(lw == -mx.inf))
    return mx.where(bad, mx.nan, mx.zeros_like(lw))


def _proposal_update(
    model: GenerativeFunction,
    traces: Trace,
    obs: ChoiceMap,
    new_args: tuple[Any, ...],
    argdiffs: tuple[Diff, ...],
    proposal: GenerativeFunction,
    pargs: tuple[Any, ...],
    key: mx.array,
    keys: mx.array | None = None,
) -> tuple[Trace, mx.array]:
    """Per particle (vmapped): ``c ~ q(·; x, *pargs)``, ``update(x, c ∪ y)``, weight
    ``u - log q(c)``. Particle ``i`` uses ``keys[i]`` (default: ``split(key, n)``; a
    sharded filter passes its particles' global keys)."""

    def one(
        k: mx.array, t: Trace, na: tuple[Any, ...], y: ChoiceMap, pa: Any
    ) -> tuple[Trace, mx.array]:
        k_prop, k_upd = mx.random.split(k, 2)
        choices, log_q, _ = proposal.propose((t, *pa), key=k_prop)
        cons = choices if y.is_empty else choices.merge(y)
        new, u, _, _ = model.update(t, cons, na, argdiffs, key=k_upd)
        return new, u - log_q

    new, w = vmap_traces(
        one, traces, (new_args, obs, pargs), key=key, keys=keys, result_args=tuple(new_args)
    )
    return new, w


# ---------------------------------------------------------------------- entry point
@overload
def particle_filter(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    n_particles: int,
    *,
    proposal: GenerativeFunction | None = ...,
    proposal_args: tuple[Any, ...] = ...,
    key: Key = ...,
    group: None = ...,
    mode: str = ...,
) -> ParticleFilterState: ...


@overload
def particle_filter(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    n_particles: int,
    *,
    proposal: GenerativeFunction | None = ...,
    proposal_args: tuple[Any, ...] = ...,
    key: Key = ...,
    group: mx.distributed.Group,
    mode: str = ...,
) -> ShardedParticleFilterState: ...


def particle_filter(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    n_particles: int,
    *,
    proposal: GenerativeFunction | None = None,
    proposal_args: tuple[Any, ...] = (),
    key: Key = None,
    group: Any = None,
    mode: str = "global",
) -> ParticleFilterState | ShardedParticleFilterState:
    """Initialise a particle filter of ``n_particles`` particles (one batched trace).

    ``(x_i, log w_i) = generate(args, observations)`` for all particles in one batched
    run of the model: ``log w_i = Σ log p`` of the observed choices for the prior
    proposal, or ``log p(x_i, y_0) - log q(x_i)`` with ``x_i ~ proposal(*proposal_args)``.
    The accumulated log ML starts at 0, so ``log_ml_estimate`` is the importance
    sampling estimate ``logsumexp(log w) - log N`` until the first resampling.

    Then alternate :meth:`~ParticleFilterState.step`,
    :meth:`~ParticleFilterState.resample` (or ``maybe_resample``) and optionally
    :meth:`~ParticleFilterState.rejuvenate`.

    Args:
        model: the model (typically an ``Unfold``/``Scan`` or a ``@gen`` function whose
            arguments grow with time).
        args: the model's arguments for the first step.
        observations: the first observations (ChoiceMap or dict), shared by all
            particles.
        n_particles: ``N``.
        proposal: ``None`` (the prior) or a generative function proposing latents.
        proposal_args: the proposal's arguments.
        key: PRNG key (with ``group``: the same key on every process).
        group: an ``mx.distributed`` group to shard the particles over (default: the
            :func:`~genmlx.infer.distributed.use_group` default, else none).
        mode: with ``group``: ``"global"`` (resampling over all particles, the
            single-process filter) or ``"island"`` (each process resamples its own
            particles; see :mod:`genmlx.infer.distributed.smc`).

    Returns:
        A :class:`ParticleFilterState`; with ``group``, a
        :class:`~genmlx.infer.distributed.ShardedParticleFilterState` holding this
        process's particles (the same methods, with global meaning).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.dists import normal
        >>> from genmlx.combinators import Unfold
        >>> @gen
        ... def kernel(t, x):
        ...     x = normal(x, 1.0) @ "x"
        ...     normal(x, 0.5) @ "y"
        ...     return x
        >>> model = Unfold(kernel)
        >>> x0 = mx.array(0.0)
        >>> ys = [0.3, 0.8, 1.1]
        >>> keys = mx.random.split(mx.random.key(0), 2 * len(ys))
        >>> state = particle_filter(model, (1, x0), {(0, "y"): ys[0]}, 1000, key=keys[0])
        >>> for t in range(1, len(ys)):
        ...     state = state.maybe_resample(500, key=keys[2 * t - 1])
        ...     state = state.step((t + 1, x0), {(t, "y"): ys[t]}, key=keys[2 * t])
        >>> state.traces.batch_shape, state.log_ml_estimate.shape
        ((1000,), ())
    """
    g = _sharding.group_for(group, "particle_filter")
    if g is not None:
        from genmlx.infer.distributed.smc import particle_filter as sharded

        return sharded(
            model, args, observations, n_particles, proposal=proposal,
            proposal_args=proposal_args, key=key, group=g, mode=mode,
        )
    if mode not in ("global", "island"):
        raise ValueError(f"particle_filter: mode must be 'global' or 'island', got {mode!r}")
    obs = _check_inputs(model, args, observations, n_particles, proposal, "particle_filter")
    if not isinstance(proposal_args, (tuple, list)):
        raise TypeError("particle_filter: proposal_args must be a tuple")
    key = checks.key(key, "particle_filter")
    tr, lw = _raw_weights(model, tuple(args), obs, n_particles, proposal, tuple(proposal_args), key)
    lw = _no_nan(lw, "particle_filter")
    acc = mx.array(0.0, dtype=lw.dtype)
    from genmlx.infer import _smc_fast

    fast = _smc_fast.from_trace(tr, lw, acc)
    return fast if fast is not None else ParticleFilterState(tr, lw, acc)
