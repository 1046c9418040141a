"""Reversible-jump moves (split/merge, birth/death) as involutive MCMC on a
fixed-structure model.

Reversible-jump MCMC (Green 1995) moves between models of different dimension, e.g. a
mixture with one component mean ``μ`` and one with two means ``(μ₁, μ₂)``. Written as
involutive MCMC (:func:`genmlx.infer.involutive_mh`), a jump is an involution
``f(t, u) = (t', u')`` on the trace choices and auxiliary choices, whose continuous
part must map ``d`` numbers to ``d`` numbers (dimension matching).

**Fixed structure.** :func:`~genmlx.infer.involutive_mh` changes a trace with
``update(t, new_choices)`` and computes the Jacobian over the addresses the involution
*writes*; it has no way to delete addresses. Batched chains (one vectorised GFI call
for all chains) also need every chain to have the same addresses. So the model is
written with a *fixed* address structure: the model indicator ``k`` and **all** the
latents of both models are always present, and ``k`` decides which latents the
likelihood uses. The unused ("parked") latents are drawn from their prior, so the
marginal of ``(k, active latents)`` is exactly the variable-dimension posterior
(the parked latents integrate out to 1) — the "pseudo-prior" construction of
Carlin & Chib (1995) with the prior as pseudo-prior. A jump then exchanges which
latents are active; the parked values it needs are auxiliary choices.

**Split/merge involution.** With merged latent ``m``, split latents ``(s₁, s₂)`` and
auxiliary choices ``(a, b)``:

* split (from ``k = merged``): ``a = u ~ N(0, σ_split)``, ``b ~ N(c, τ)``;

  .. math:: (m, s_1, s_2, a, b) \\mapsto (b,\\; m - a,\\; m + a,\\; s_1,\\; s_2),

  the new parked ``m`` is ``b`` and the old parked ``s₁, s₂`` become the backward
  auxiliary choices; ``|det J| = 2``.
* merge (from ``k = split``): ``a ~ N(c, τ)``, ``b ~ N(c, τ)`` (new parked values);

  .. math:: (m, s_1, s_2, a, b) \\mapsto
     \\big(\\tfrac{s_1 + s_2}{2},\\; a,\\; b,\\; \\tfrac{s_2 - s_1}{2},\\; m\\big),

  ``|det J| = 1/2``.

Applying one branch and then the other returns the input, so ``f`` is an involution;
``k`` flips between its two values. ``(c, τ)`` (``park_mean``, ``park_sd``) is the
distribution of newly parked values: any choice gives a correct kernel, and the
latents' prior makes the parked terms cancel in the acceptance ratio.

**Birth/death** (:func:`birth_death_move`) keeps ``s₁ = m`` and draws the newborn
``s₂`` from ``N(birth_mean, birth_sd)``; its maps are permutations (``|det J| = 1``),
see :func:`birth_death_kernel`.

**What mh.py would need for variable structure.** A model whose addresses depend on
``k`` (``mu`` only when ``k = 1``, ``mu1, mu2`` only when ``k = 2``) would need
:func:`~genmlx.infer.involutive_mh` to (1) let the involution name addresses to
*remove* (e.g. return a selection of deleted addresses, applied with an edit that
deletes them and returns their values in the discard), (2) take the Jacobian over the
removed continuous values as inputs and the added ones as outputs, and (3) batch only
chains that share one structure. The fixed-structure formulation used here avoids all
three and keeps chains batched.

All branches are selected with ``mx.where`` (no Python decision), so the move works on
single and batched traces and inside :func:`genmlx.core.compile`.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Trace, choicemap, gen
from genmlx.core.address import Address
from genmlx.core.random import Key
from genmlx.dists import normal
from genmlx.infer.kernel_info import MHInfo
from genmlx.infer.metropolis import Involution, involutive_mh

__all__ = [
    "birth_death_kernel",
    "birth_death_move",
    "split_merge_kernel",
    "split_merge_move",
]


def _aux_proposal(
    k_address: Address,
    merged: Address,
    merged_value: int,
    jump_mean: float,
    jump_sd: float,
    park_mean: float,
    park_sd: float,
) -> GenerativeFunction:
    """Auxiliary choices ``a ~ N(jump_mean, jump_sd)`` from the merged state and
    ``N(park_mean, park_sd)`` from the split state; ``b ~ N(park_mean, park_sd)``."""

    @gen
    def jump_aux(tr: Trace) -> None:
        zero = 0.0 * tr[merged]  # the latent's shape; no constant arrays (see below)
        from_merged = (tr[k_address] == merged_value).astype(mx.float32)
        # Written as arithmetic on trace values: constant parameter arrays (mx.full,
        # zeros_like + mx.where) made mx.compile (MLX 0.32) fail with "_Map_base::at"
        # on chains of 3 or more steps.
        normal(
            zero + park_mean + (jump_mean - park_mean) * from_merged,
            zero + park_sd + (jump_sd - park_sd) * from_merged,
        ) @ "a"
        normal(zero + park_mean, zero + park_sd) @ "b"

    return jump_aux


def split_merge_kernel(
    k_address: Address,
    merged: Address,
    split: tuple[Address, Address],
    *,
    merged_value: int = 0,
    split_value: int = 1,
    split_scale: float = 1.0,
    park_mean: float = 0.0,
    park_sd: float = 1.0,
) -> tuple[GenerativeFunction, Involution]:
    """The auxiliary proposal and the involution of the split/merge move.

    See the module docstring for the maps. The pair is what
    :func:`~genmlx.infer.involutive_mh` takes (its ``proposal_args`` are ``()``).

    Args:
        k_address: address of the model indicator (an integer choice).
        merged: address of the latent used when ``k == merged_value``.
        split: addresses ``(s1, s2)`` of the latents used when ``k == split_value``.
        merged_value: the value of the choice at ``k_address`` meaning "one latent".
        split_value: the value meaning "two latents".
        split_scale: standard deviation ``σ_split`` of the split offset ``u``
            (``s₁ = m − u``, ``s₂ = m + u``).
        park_mean: mean ``c`` of newly parked latents' values.
        park_sd: standard deviation ``τ`` of newly parked latents' values (use the
            latents' prior).

    Returns:
        ``(proposal, involution)``: the proposal is a generative function of the trace
        with choices ``"a"`` and ``"b"``.

    Example:
        >>> q, f = split_merge_kernel("k", "mu", ("mu1", "mu2"), park_sd=2.0)
    """
    if merged_value == split_value:
        raise ValueError("split_merge_kernel: merged_value and split_value must differ")
    if not split_scale > 0 or not park_sd > 0:
        raise ValueError("split_merge_kernel: split_scale and park_sd must be positive")
    s1_addr, s2_addr = split

    split_merge_aux = _aux_proposal(
        k_address, merged, merged_value, 0.0, split_scale, park_mean, park_sd
    )

    def involution(
        t: ChoiceMap, u: ChoiceMap, _args: tuple[Any, ...]
    ) -> tuple[ChoiceMap, ChoiceMap]:
        k = t[k_address]
        m, s1, s2 = t[merged], t[s1_addr], t[s2_addr]
        a, b = u["a"], u["b"]
        is_merged = k == merged_value
        new_k = mx.where(is_merged, split_value, merged_value).astype(k.dtype)
        new_m = mx.where(is_merged, b, 0.5 * (s1 + s2))
        new_s1 = mx.where(is_merged, m - a, a)
        new_s2 = mx.where(is_merged, m + a, b)
        new_a = mx.where(is_merged, s1, 0.5 * (s2 - s1))
        new_b = mx.where(is_merged, s2, m)
        new_t = choicemap({k_address: new_k, merged: new_m, s1_addr: new_s1, s2_addr: new_s2})
        return new_t, choicemap({"a": new_a, "b": new_b})

    return split_merge_aux, involution


def split_merge_move(
    trace: Trace,
    k_address: Address,
    merged: Address,
    split: tuple[Address, Address],
    *,
    key: Key = None,
    merged_value: int = 0,
    split_value: int = 1,
    split_scale: float = 1.0,
    park_mean: float = 0.0,
    park_sd: float = 1.0,
    check: bool = False,
) -> tuple[Trace, MHInfo]:
    """One reversible-jump split/merge step (involutive MH) on a fixed-structure model.

    A chain at ``k = merged_value`` proposes to split ``m`` into
    ``(s₁, s₂) = (m − u, m + u)``, ``u ~ N(0, σ_split)``; a chain at
    ``k = split_value`` proposes to merge ``(s₁, s₂)`` into ``m = (s₁ + s₂)/2``.
    The acceptance ratio is the involutive-MH one,

    .. math::

        \\log α = \\log p(t') − \\log p(t) + \\log q(u'; t') − \\log q(u; t)
                  + \\log |\\det J_f|,

    with ``|det J_f| = 2`` for a split and ``1/2`` for a merge (computed automatically).
    The model must contain all of ``k_address``, ``merged`` and ``split`` in every
    trace (unused latents drawn from their prior), see the module docstring.

    Args:
        trace: the current state, single or batched (independent chains).
        k_address: address of the model indicator.
        merged: address of the one-component latent.
        split: addresses of the two-component latents.
        key: PRNG key.
        merged_value: value at ``k_address`` for the one-latent model.
        split_value: value at ``k_address`` for the two-latent model.
        split_scale: standard deviation of the split offset.
        park_mean: mean of newly parked latents.
        park_sd: standard deviation of newly parked latents.
        check: verify the involution is self-inverse on this step (evaluates arrays;
            not for compiled chains).

    Returns:
        ``(new_trace, info)`` with ``info`` an :class:`~genmlx.infer.kernel_info.MHInfo`.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import categorical, normal
        >>> @gen
        ... def model(n):
        ...     k = categorical(mx.array([0.5, 0.5])) @ "k"
        ...     mu = normal(0.0, 2.0) @ "mu"
        ...     mu1 = normal(0.0, 2.0) @ "mu1"
        ...     mu2 = normal(0.0, 2.0) @ "mu2"
        ...     for i in range(n):
        ...         c = categorical(mx.array([0.5, 0.5])) @ ("c", i)
        ...         mean = mx.where(k == 0, mu, mx.where(c == 0, mu1, mu2))
        ...         normal(mean, 1.0) @ ("y", i)
        >>> obs = {("y", 0): -1.0, ("y", 1): 1.2}
        >>> tr, _ = model.vgenerate((2,), obs, 8, key=mx.random.key(0))
        >>> tr, info = split_merge_move(tr, "k", "mu", ("mu1", "mu2"),
        ...                             park_sd=2.0, key=mx.random.key(1))
        >>> info.accepted.shape
        (8,)
    """
    proposal, involution = split_merge_kernel(
        k_address,
        merged,
        split,
        merged_value=merged_value,
        split_value=split_value,
        split_scale=split_scale,
        park_mean=park_mean,
        park_sd=park_sd,
    )
    return involutive_mh(trace, proposal, (), involution, key=key, check=check)


def birth_death_kernel(
    k_address: Address,
    merged: Address,
    split: tuple[Address, Address],
    *,
    merged_value: int = 0,
    split_value: int = 1,
    birth_mean: float = 0.0,
    birth_sd: float = 1.0,
    park_mean: float = 0.0,
    park_sd: float = 1.0,
) -> tuple[GenerativeFunction, Involution]:
    """The auxiliary proposal and the involution of the birth/death move.

    Birth keeps the existing latent and adds a new one drawn from
    ``N(birth_mean, birth_sd)``; death removes the second latent. With merged latent
    ``m``, split latents ``(s₁, s₂)`` and auxiliary choices ``(a, b)``:

    * birth (from ``k = merged``): ``a ~ N(birth_mean, birth_sd)`` (the newborn),
      ``b ~ N(c, τ)`` (the new parked ``m``);

      .. math:: (m, s_1, s_2, a, b) \\mapsto (b,\\; m,\\; a,\\; s_1,\\; s_2);

    * death (from ``k = split``): ``a, b ~ N(c, τ)`` (new parked ``s₁, s₂``);

      .. math:: (m, s_1, s_2, a, b) \\mapsto (s_1,\\; a,\\; b,\\; s_2,\\; m).

    Both are permutations (``|det J| = 1``) and each undoes the other. The backward
    density of the killed latent ``s₂`` is ``N(s₂; birth_mean, birth_sd)``, so the
    acceptance ratio of a death compares the posterior with and without ``s₂`` against
    the birth proposal, as in Green (1995).

    Args:
        k_address: address of the model indicator (an integer choice).
        merged: address of the latent used when ``k == merged_value``.
        split: addresses ``(s1, s2)`` of the latents used when ``k == split_value``.
        merged_value: value at ``k_address`` for the one-latent model.
        split_value: value at ``k_address`` for the two-latent model.
        birth_mean: mean of a newborn latent.
        birth_sd: standard deviation of a newborn latent.
        park_mean: mean ``c`` of newly parked latents' values.
        park_sd: standard deviation ``τ`` of newly parked latents' values.

    Returns:
        ``(proposal, involution)`` for :func:`~genmlx.infer.involutive_mh`.

    Example:
        >>> q, f = birth_death_kernel("k", "mu", ("mu1", "mu2"), birth_sd=2.0, park_sd=2.0)
    """
    if merged_value == split_value:
        raise ValueError("birth_death_kernel: merged_value and split_value must differ")
    if not birth_sd > 0 or not park_sd > 0:
        raise ValueError("birth_death_kernel: birth_sd and park_sd must be positive")
    s1_addr, s2_addr = split
    aux = _aux_proposal(k_address, merged, merged_value, birth_mean, birth_sd, park_mean, park_sd)

    def involution(
        t: ChoiceMap, u: ChoiceMap, _args: tuple[Any, ...]
    ) -> tuple[ChoiceMap, ChoiceMap]:
        k = t[k_address]
        m, s1, s2 = t[merged], t[s1_addr], t[s2_addr]
        a, b = u["a"], u["b"]
        is_merged = k == merged_value
        new_k = mx.where(is_merged, split_value, merged_value).astype(k.dtype)
        new_t = choicemap(
            {
                k_address: new_k,
                merged: mx.where(is_merged, b, s1),
                s1_addr: mx.where(is_merged, m, a),
                s2_addr: mx.where(is_merged, a, b),
            }
        )
        new_u = choicemap({"a": mx.where(is_merged, s1, s2), "b": mx.where(is_merged, s2, m)})
        return new_t, new_u

    return aux, involution


def birth_death_move(
    trace: Trace,
    k_address: Address,
    merged: Address,
    split: tuple[Address, Address],
    *,
    key: Key = None,
    merged_value: int = 0,
    split_value: int = 1,
    birth_mean: float = 0.0,
    birth_sd: float = 1.0,
    park_mean: float = 0.0,
    park_sd: float = 1.0,
    check: bool = False,
) -> tuple[Trace, MHInfo]:
    """One reversible-jump birth/death step (involutive MH) on a fixed-structure model.

    A chain at ``k = merged_value`` proposes a second latent ``s₂ ~ N(birth_mean,
    birth_sd)`` next to ``s₁ = m``; a chain at ``k = split_value`` proposes to drop
    ``s₂`` and keep ``m = s₁``. The maps are in :func:`birth_death_kernel`; the
    acceptance ratio is involutive MH's with ``|det J| = 1``. The model must hold all of
    ``k_address``, ``merged`` and ``split`` in every trace (see the module docstring).

    Args:
        trace: the current state, single or batched (independent chains).
        k_address: address of the model indicator.
        merged: address of the one-component latent.
        split: addresses of the two-component latents.
        key: PRNG key.
        merged_value: value at ``k_address`` for the one-latent model.
        split_value: value at ``k_address`` for the two-latent model.
        birth_mean: mean of a newborn latent.
        birth_sd: standard deviation of a newborn latent.
        park_mean: mean of newly parked latents.
        park_sd: standard deviation of newly parked latents.
        check: verify the involution is self-inverse on this step (evaluates arrays;
            not for compiled chains).

    Returns:
        ``(new_trace, info)`` with ``info`` an :class:`~genmlx.infer.kernel_info.MHInfo`.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import categorical, normal
        >>> @gen
        ... def model():
        ...     k = categorical(mx.array([0.5, 0.5])) @ "k"
        ...     mu = normal(0.0, 2.0) @ "mu"
        ...     mu1 = normal(0.0, 2.0) @ "mu1"
        ...     mu2 = normal(0.0, 2.0) @ "mu2"
        ...     normal(mx.where(k == 0, mu, 0.5 * (mu1 + mu2)), 1.0) @ "y"
        >>> tr, _ = model.vgenerate((), {"y": 0.7}, 8, key=mx.random.key(0))
        >>> tr, info = birth_death_move(tr, "k", "mu", ("mu1", "mu2"), birth_sd=2.0,
        ...                             park_sd=2.0, key=mx.random.key(1))
        >>> info.accepted.shape
        (8,)
    """
    proposal, involution = birth_death_kernel(
        k_address,
        merged,
        split,
        merged_value=merged_value,
        split_value=split_value,
        birth_mean=birth_mean,
        birth_sd=birth_sd,
        park_mean=park_mean,
        park_sd=park_sd,
    )
    return involutive_mh(trace, proposal, (), involution, key=key, check=check)
