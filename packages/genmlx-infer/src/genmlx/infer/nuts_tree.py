"""Multinomial NUTS with dynamic termination on batched vectors (the eager engine).

The trajectory of every chain is built by doublings, as in Stan and NumPyro
(Hoffman & Gelman 2014; Betancourt 2017, §A.3–A.4): doubling ``j`` integrates a
subtree of ``2ʲ`` leapfrog steps in a random direction from the matching end of the
trajectory; states are weighted by ``exp(H₀ − H)``; the subtree's proposal is drawn
progressively and uniformly ∝ weight, and replaces the trajectory's with probability
``min(1, W_subtree / W_trajectory)`` (biased progressive sampling). A subtree is
rejected, and the transition ends, when a leapfrog step diverges
(``H − H₀ > 1000``) or a balanced sub-subtree makes a U-turn (the generalised
criterion ``p♯₋·ρ > 0 ∧ p♯₊·ρ > 0``, with Stan's two extra checks across the two
halves of every merge); after a merge, a U-turn of the whole trajectory ends it too.

**Dynamic termination.** Unlike a fixed unrolled tree, the loop over doublings and
over chunks of leapfrog steps runs in Python between small compiled programs (one
chunk of up to eight steps with its U-turn bookkeeping; the start of a subtree; the
merge), and stops as soon as no chain is still growing (one scalar read per doubling,
and one per chunk inside long subtrees). Chains that have stopped are masked while
others continue, so a transition costs what its longest chain needs — not
``2^max_depth − 1`` steps.

Within a subtree, leaf ``n`` closes the balanced blocks given by the trailing one bits
of ``n``; the left halves wait in one slot per level. A chunk starts at a multiple of
its length ``K``, so the bits below ``log₂K`` repeat from chunk to chunk, and only the
last leaf of a chunk closes levels above (as many as the trailing ones of the chunk's
index): one compiled program per ``(K, extra levels)``.

Every chain has its own key, threaded through the state (chain ``i`` of a batch run with
key ``k`` uses ``split(k, C)[i]``, so a chain's draws do not depend on how many chains
run beside it); the engine reads no value on the host except the two "is any chain still
running" checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core.compile import compile_function
from genmlx.infer.integrators import Metric, leapfrog

__all__ = ["NUTSState", "NutsInfo", "nuts_transition"]

MAX_DELTA_H = 1000.0
_CHUNK = 8  # leapfrog steps per compiled call inside long subtrees
_CHECK_EVERY = 1  # chunks between "does any chain still grow" checks in a subtree


class NUTSState(NamedTuple):
    """A batch of chains: positions ``[C, d]``, log densities ``[C]``, gradients ``[C, d]``."""

    position: mx.array
    logdensity: mx.array
    grad: mx.array


class NutsInfo(NamedTuple):
    """Per-chain statistics of one NUTS transition.

    Attributes:
        accept_prob: mean over the integrated states of ``min(1, exp(H₀ − H))``
            (Stan's ``accept_stat__``, the statistic dual averaging targets).
        n_leapfrog: leapfrog steps the chain used (Stan's ``n_leapfrog__``).
        depth: trajectory doublings attempted (Stan's ``treedepth__``).
        diverging: the last subtree diverged (``H − H₀ > 1000``).
        step_size: the leapfrog step size each chain used.
    """

    accept_prob: mx.array
    n_leapfrog: mx.array
    depth: mx.array
    diverging: mx.array
    step_size: mx.array | None = None

    @property
    def accepted(self) -> mx.array:
        """``True`` for every chain (NUTS has no accept/reject step), except chains whose
        step size is invalid (NaN: an array step size under ``compile`` that was not
        finite and positive), which stay where they are."""
        if self.step_size is None:
            return mx.ones(self.depth.shape, dtype=mx.bool_)
        return mx.broadcast_to(mx.logical_not(mx.isnan(self.step_size)), self.depth.shape)


class _Tree(NamedTuple):
    key: mx.array
    xl: mx.array
    pl: mx.array
    gl: mx.array
    xr: mx.array
    pr: mx.array
    gr: mx.array
    rho: mx.array
    psl: mx.array
    psr: mx.array
    x_prop: mx.array
    ld_prop: mx.array
    g_prop: mx.array
    lsw: mx.array
    h0: mx.array
    running: mx.array
    depth: mx.array
    n_leap: mx.array
    sum_acc: mx.array
    diverging: mx.array


class _Sub(NamedTuple):
    key: mx.array
    x: mx.array
    p: mx.array
    g: mx.array
    forward: mx.array
    valid: mx.array
    lsw: mx.array
    x_prop: mx.array
    ld_prop: mx.array
    g_prop: mx.array
    # waiting left blocks, one slot per level: [L, C, d] (ρ, p_first, p♯_first, p_last, p♯_last)
    lv_rho: mx.array
    lv_pf: mx.array
    lv_sf: mx.array
    lv_pl: mx.array
    lv_sl: mx.array
    # the last block closed (the whole subtree once it is complete)
    top_rho: mx.array
    top_pf: mx.array
    top_sf: mx.array
    top_pl: mx.array
    top_sl: mx.array


_Block = tuple[mx.array, mx.array, mx.array, mx.array, mx.array]


def _dot(a: mx.array, b: mx.array) -> mx.array:
    return mx.sum(a * b, axis=-1)


def _no_uturn(s_a: mx.array, s_b: mx.array, rho: mx.array) -> mx.array:
    return mx.logical_and(_dot(s_a, rho) > 0, _dot(s_b, rho) > 0)


def _merge(left: _Block, right: _Block) -> tuple[_Block, mx.array]:
    """Merge adjacent blocks (integration or physical order alike); Stan's 3 checks:
    the whole block, and each half extended by the neighbouring leaf of the other
    (six dot products, computed as one stacked reduction)."""
    lr, lpf, lsf, lpl, lsl = left
    rr, rpf, rsf, rpl, rsl = right
    rho = lr + rr
    ext_l = lr + rpf
    ext_r = rr + lpl
    a = mx.stack([lsf, rsl, lsf, rsf, lsl, rsl])
    b = mx.stack([rho, rho, ext_l, ext_l, ext_r, ext_r])
    ok = mx.all(mx.sum(a * b, axis=-1) > 0, axis=0)
    return (rho, lpf, lsf, rpl, rsl), ok


def _split_keys(keys: mx.array) -> tuple[mx.array, mx.array]:
    """Per chain: ``(next key, key to draw with)`` from keys ``[C, 2]``."""
    ks = mx.vmap(lambda k: mx.random.split(k, 2))(keys)
    return ks[:, 0], ks[:, 1]


def chain_normal(keys: mx.array, d: int) -> mx.array:
    """Standard normals ``[C, d]``, row ``i`` from key ``keys[i]``."""
    return mx.vmap(lambda k: mx.random.normal((d,), key=k))(keys)


def chain_uniform(keys: mx.array, n: int | None = None) -> mx.array:
    """Uniforms ``[C]`` (or ``[C, n]``), row ``i`` from key ``keys[i]``."""
    shape = () if n is None else (n,)
    return mx.vmap(lambda k: mx.random.uniform(shape=shape, key=k))(keys)


def _trailing_ones(n: int) -> int:
    t = 0
    while n & 1:
        n >>= 1
        t += 1
    return t


class _Engine:
    """Compiled pieces for one target ``vg`` and metric kind; cached by the caller."""

    def __init__(
        self,
        vg: Callable[..., tuple[mx.array, mx.array]],
        metric_kind: str,
        max_depth: int,
        compiled: bool = True,
    ) -> None:
        self.vg = vg
        self.compiled = compiled
        self.metric = Metric(metric_kind, ())
        self.max_depth = max_depth
        self._fns: dict[Any, Callable[..., Any]] = {}

    def _compiled(self, key: Any, build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
        fn = self._fns.get(key)
        if fn is None and not self.compiled:
            fn = self._fns[key] = build()
        if fn is None:
            fn = self._fns[key] = compile_function(build())
        return fn

    # ------------------------------------------------------------------ pieces
    def begin(self) -> Callable[..., Any]:
        metric = self.metric

        def f(
            key: mx.array, x: mx.array, ld: mx.array, g: mx.array, marr: tuple[mx.array, ...]
        ) -> Any:
            key, k = _split_keys(key)
            p = metric.momentum(chain_normal(k, x.shape[1]), marr)
            ps = metric.velocity(p, marr)
            h0 = -ld + 0.5 * _dot(p, ps)
            c = x.shape[0]
            zf = mx.zeros((c,), dtype=mx.float32)
            return _Tree(
                key,
                x,
                p,
                g,
                x,
                p,
                g,
                p,
                ps,
                ps,
                x,
                ld,
                g,
                zf,
                h0,
                mx.ones((c,), dtype=mx.bool_),
                mx.zeros((c,), dtype=mx.int32),
                zf,
                zf,
                mx.zeros((c,), dtype=mx.bool_),
            )

        return self._compiled("begin", lambda: f)

    def start_sub(self) -> Callable[..., Any]:
        levels = self.max_depth

        def f(t: _Tree) -> _Sub:
            key, k = _split_keys(t.key)
            fwd = chain_uniform(k) < 0.5
            fm = fwd[:, None]
            x = mx.where(fm, t.xr, t.xl)
            p = mx.where(fm, t.pr, t.pl)
            g = mx.where(fm, t.gr, t.gl)
            c, d = x.shape
            z = mx.zeros((levels, c, d), dtype=x.dtype)
            zb = mx.zeros((c, d), dtype=x.dtype)
            return _Sub(
                key,
                x,
                p,
                g,
                fwd,
                t.running,
                mx.full((c,), -mx.inf, dtype=mx.float32),
                x,
                t.ld_prop,
                g,
                z,
                z,
                z,
                z,
                z,
                zb,
                zb,
                zb,
                zb,
                zb,
            )

        return self._compiled("start", lambda: f)

    def chunk(self, k_steps: int, extra: int) -> Callable[..., Any]:
        metric = self.metric
        vg = self.vg
        base = int(math.log2(k_steps))
        levels = self.max_depth

        def f(
            t: _Tree,
            s: _Sub,
            eps: mx.array,
            marr: tuple[mx.array, ...],
            inputs: tuple[mx.array, ...],
        ) -> tuple[_Tree, _Sub]:
            key, k = _split_keys(s.key)
            u = mx.swapaxes(chain_uniform(k, k_steps), 0, 1)  # [K, C]
            v_eps = mx.where(s.forward, eps, -eps)
            x, p, g = s.x, s.p, s.g
            valid, lsw = s.valid, s.lsw
            xp, ldp, gp = s.x_prop, s.ld_prop, s.g_prop
            lv = [s.lv_rho, s.lv_pf, s.lv_sf, s.lv_pl, s.lv_sl]
            local: dict[int, _Block] = {}
            n_leap, sum_acc, div_all = t.n_leap, t.sum_acc, t.diverging
            top: _Block = (s.top_rho, s.top_pf, s.top_sf, s.top_pl, s.top_sl)
            for i in range(k_steps):
                active = mx.logical_and(t.running, valid)
                am = active[:, None]
                xn, pn, ldn, gn = leapfrog(vg, inputs, metric, marr, x, p, g, v_eps)
                x, p, g = mx.where(am, xn, x), mx.where(am, pn, p), mx.where(am, gn, g)
                psn = metric.velocity(pn, marr)
                delta = t.h0 - (-ldn + 0.5 * _dot(pn, psn))
                delta = mx.where(mx.isnan(delta), -mx.inf, delta)
                div = mx.logical_and(active, -delta > MAX_DELTA_H)
                div_all = mx.logical_or(div_all, div)
                sum_acc = sum_acc + mx.where(active, mx.exp(mx.minimum(delta, 0.0)), 0.0)
                n_leap = n_leap + active.astype(mx.float32)
                lsw_new = mx.logaddexp(lsw, delta)
                take = mx.logical_and(active, mx.log(u[i]) < delta - lsw_new)
                tm = take[:, None]
                xp, ldp, gp = mx.where(tm, xn, xp), mx.where(take, ldn, ldp), mx.where(tm, gn, gp)
                lsw = mx.where(active, lsw_new, lsw)
                # close the balanced blocks ending at this leaf
                ps = metric.velocity(p, marr)
                block: _Block = (p, p, ps, p, ps)
                ok = mx.logical_not(div)
                n_merge = _trailing_ones(i) if i < k_steps - 1 else base + extra
                for lev in range(n_merge):
                    if lev < base:
                        left = local[lev]
                    else:
                        left = tuple(a[lev] for a in lv)  # type: ignore[assignment]
                    block, ok_m = _merge(left, block)
                    ok = mx.logical_and(ok, ok_m)
                if n_merge < base:
                    local[n_merge] = block
                elif n_merge < levels:
                    onehot = mx.array([[[float(j == n_merge)]] for j in range(levels)]) > 0
                    lv = [mx.where(onehot, b[None], a) for a, b in zip(lv, block)]
                top = block
                valid = mx.logical_and(valid, mx.where(active, ok, True))
            t2 = t._replace(n_leap=n_leap, sum_acc=sum_acc, diverging=div_all)
            s2 = _Sub(
                key,
                x,
                p,
                g,
                s.forward,
                valid,
                lsw,
                xp,
                ldp,
                gp,
                lv[0],
                lv[1],
                lv[2],
                lv[3],
                lv[4],
                top[0],
                top[1],
                top[2],
                top[3],
                top[4],
            )
            return t2, s2

        return self._compiled(("chunk", k_steps, extra), lambda: f)

    def merge(self) -> Callable[..., Any]:
        def f(t: _Tree, s: _Sub) -> _Tree:
            key, k = _split_keys(t.key)
            u = chain_uniform(k)
            ok = mx.logical_and(t.running, s.valid)
            take = mx.logical_and(ok, mx.log(u) < s.lsw - t.lsw)
            tm = take[:, None]
            x_prop = mx.where(tm, s.x_prop, t.x_prop)
            ld_prop = mx.where(take, s.ld_prop, t.ld_prop)
            g_prop = mx.where(tm, s.g_prop, t.g_prop)
            lsw = mx.where(ok, mx.logaddexp(t.lsw, s.lsw), t.lsw)
            fwd = s.forward
            om_r = mx.logical_and(ok, fwd)[:, None]
            om_l = mx.logical_and(ok, mx.logical_not(fwd))[:, None]
            xr, pr, gr = (mx.where(om_r, a, b) for a, b in ((s.x, t.xr), (s.p, t.pr), (s.g, t.gr)))
            xl, pl, gl = (mx.where(om_l, a, b) for a, b in ((s.x, t.xl), (s.p, t.pl), (s.g, t.gl)))
            tree_blk: _Block = (t.rho, t.pl, t.psl, t.pr, t.psr)
            sub_int: _Block = (s.top_rho, s.top_pf, s.top_sf, s.top_pl, s.top_sl)
            sub_rev: _Block = (s.top_rho, s.top_pl, s.top_sl, s.top_pf, s.top_sf)
            mf, ok_f = _merge(tree_blk, sub_int)
            mb, ok_b = _merge(sub_rev, tree_blk)
            fm = fwd[:, None]
            okm = ok[:, None]
            rho = mx.where(okm, mx.where(fm, mf[0], mb[0]), t.rho)
            psl = mx.where(okm, mx.where(fm, mf[2], mb[2]), t.psl)
            psr = mx.where(okm, mx.where(fm, mf[4], mb[4]), t.psr)
            running = mx.logical_and(ok, mx.where(fwd, ok_f, ok_b))
            return t._replace(
                key=key,
                xl=xl,
                pl=pl,
                gl=gl,
                xr=xr,
                pr=pr,
                gr=gr,
                rho=rho,
                psl=psl,
                psr=psr,
                x_prop=x_prop,
                ld_prop=ld_prop,
                g_prop=g_prop,
                lsw=lsw,
                running=running,
            )

        return self._compiled("merge", lambda: f)

    def count_depth(self) -> Callable[..., Any]:
        def f(t: _Tree) -> _Tree:
            return t._replace(depth=t.depth + t.running.astype(mx.int32))

        return self._compiled("depth", lambda: f)


_ENGINES: dict[Any, _Engine] = {}


def _engine(vg: Callable[..., Any], metric_kind: str, max_depth: int, compiled: bool) -> _Engine:
    if not compiled:  # an interpreter target: a fresh function every call, run eagerly
        return _Engine(vg, metric_kind, max_depth, compiled=False)
    key = (id(vg), metric_kind, max_depth)
    e = _ENGINES.get(key)
    if e is None or e.vg is not vg:
        if len(_ENGINES) > 256:
            _ENGINES.clear()
        e = _ENGINES[key] = _Engine(vg, metric_kind, max_depth)
    return e


def nuts_transition(
    state: NUTSState,
    vg: Callable[..., tuple[mx.array, mx.array]],
    inputs: tuple[mx.array, ...],
    *,
    key: mx.array,
    step_size: mx.array,
    metric: Metric,
    max_depth: int = 10,
    compiled: bool = True,
    dynamic: bool = True,
) -> tuple[NUTSState, NutsInfo]:
    """One NUTS transition of every chain in ``state`` (dynamic termination).

    Args:
        state: positions ``[C, d]`` with their log densities and gradients.
        vg: ``vg(y, *inputs) -> (log π [C], ∇log π [C, d])``, pure and traceable.
        inputs: arrays ``vg`` reads (observations, data).
        key: PRNG key; chain ``i`` runs with ``split(key, C)[i]`` (or pass per-chain
            keys ``[C, 2]``).
        step_size: ``[C]`` (one per chain) or a scalar.
        metric: the mass matrix (:class:`~genmlx.infer.integrators.Metric`).
        max_depth: maximum number of doublings (``2^max_depth − 1`` steps at most).
        compiled: compile the pieces (``vg`` must then read arrays only through
            ``inputs``); ``False`` runs them eagerly.
        dynamic: stop as soon as no chain grows (reads two scalars per doubling).
            ``False`` runs every doubling and chunk with stopped chains masked, with
            no host reads (for use under ``mx.compile``/``vmap``); both give the same
            result for the same key.

    Returns:
        ``(new_state, info)``.
    """
    c = state.position.shape[0]
    eps = mx.broadcast_to(mx.array(step_size, dtype=mx.float32), (c,))
    eng = _engine(vg, metric.kind, max_depth, compiled)
    marr = tuple(metric.arrays)
    inp = tuple(inputs)
    keys = key if key.ndim == 2 else mx.random.split(key, c)
    tree = eng.begin()(keys, state.position, state.logdensity, state.grad, marr)
    start, merge, count = eng.start_sub(), eng.merge(), eng.count_depth()
    for j in range(max_depth):
        if dynamic and j > 0 and not bool(mx.any(tree.running).item()):
            break
        tree = count(tree)
        sub = start(tree)
        n = 2**j
        k_steps = min(n, _CHUNK)
        n_chunks = n // k_steps
        for ci in range(n_chunks):
            tree, sub = eng.chunk(k_steps, _trailing_ones(ci))(tree, sub, eps, marr, inp)
            if dynamic and ci + 1 < n_chunks and (ci + 1) % _CHECK_EVERY == 0:
                if not bool(mx.any(mx.logical_and(tree.running, sub.valid)).item()):
                    break
        tree = merge(tree, sub)
    new = NUTSState(tree.x_prop, tree.ld_prop, tree.g_prop)
    info = NutsInfo(
        tree.sum_acc / mx.maximum(tree.n_leap, 1.0),
        tree.n_leap.astype(mx.int32),
        tree.depth,
        tree.diverging,
        eps,
    )
    return new, info
