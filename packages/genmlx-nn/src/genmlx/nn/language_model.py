"""``LanguageModelGF``: an autoregressive token model as a generative function.

The wrapped model is any ``mlx.nn.Module`` that maps token ids of shape ``[B, L]`` to
next-token logits of shape ``[B, L, V]``: ``logits[:, j]`` is the (unnormalised log)
distribution of the token that follows tokens ``0..j``. That is the calling convention
of mlx-lm's models (``model(inputs)`` without a cache) and of any causal network built
from ``mlx.nn`` (an RNN, a causal transformer, an MLP on a window of past tokens).

Arguments ``(prompt_ids, max_new_tokens)`` or ``(prompt_ids, max_new_tokens,
temperature)``: ``prompt_ids`` is a 1-D integer array (at least one token, e.g. a BOS
token), ``max_new_tokens`` a Python int ``n ≥ 1``. The generated token ``i``
(``0 ≤ i < n``, counted from the first generated token) is the categorical choice at
address ``("t", i)``, drawn from ``softmax(logits / temperature)`` given the prompt and
tokens ``0..i-1``. The density is

.. math::

    p(t_{0..n-1}; \\text{prompt}) = \\prod_{i} \\mathrm{softmax}(\\ell_i / T)[t_i],
    \\qquad \\ell_i = \\text{model}(\\text{prompt} \\,\\|\\, t_{0..i-1})[-1].

The return value is the ``[n]`` int32 array of generated tokens.

**End of sequence and fixed lengths.** With ``eos_id`` set, generation stops at the
first ``eos_id``: every later position holds ``eos_id`` again, with probability 1 (log
density 0), so the text is the tokens before the first EOS and its log probability is
the sum up to and including the EOS. The choice map always has the ``n`` addresses
``("t", 0..n-1)``, in a single trace and under batching alike: this is what lets ``N``
particles run in one batched forward pass per step with the stopped ones masked, and
traces of different lengths share one address structure. A constraint after the first
EOS that is not ``eos_id`` has probability 0 (its weight is ``-inf``); to score a
continuation that ends with EOS, constrain the tokens up to the EOS and leave the rest
to ``generate``, which fills them with ``eos_id`` at log density 0. Likewise, when
``update`` puts an EOS before tokens it keeps (or ``regenerate`` samples one there), the
kept tokens after it have probability 0 unless they are ``eos_id``: constrain them to
``eos_id`` too.

**Scoring and sampling.** Sampling (``simulate``, unconstrained positions of
``generate``, new or selected positions of ``update``/``regenerate``) runs the model
once per position on the growing context. Positions whose tokens are all known
(``assess``, the constrained prefix of ``generate``, rescoring in ``update``) are scored
by one forward pass over the whole sequence, which is exact because the model is
causal: the logits at position ``j`` depend only on tokens ``0..j``.

**Batching.** ``vsimulate``/``vgenerate`` and batched traces run the operation once
under ``mx.vmap``: each step is one batched forward pass of the model over all
particles (the prompt is shared). Keys are threaded explicitly (``key=``) like
everywhere in GenMLX.

**Parameters.** The model's trainable parameters are GenMLX parameters named
``f"{name}/{path}"`` (see :mod:`genmlx.nn.params`), so ``param_gradients`` of a trace
is the gradient of the log probability of its tokens (maximum-likelihood fine-tuning)
and a bound :class:`~genmlx.core.ParamStore` replaces them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from genmlx.core import (
    AddressError,
    ChoiceMap,
    ConstraintError,
    GenerativeFunction,
    MissingChoiceError,
    Selection,
    Trace,
    UnknownChange,
    format_address,
    runtime,
)
from genmlx.core.address import Address, Path, to_path
from genmlx.core.diff import Diff
from genmlx.core.gfi import AssessResult, GenerateResult, RegenerateResult, UpdateResult
from genmlx.nn.params import bound_module, check_name, module_param_names

__all__ = ["TOKEN", "LanguageModelGF", "LanguageModelTrace"]

TOKEN = "t"
"""The first component of every token address (token ``i`` is at ``("t", i)``)."""


class LanguageModelTrace(Trace):
    """The trace of a :class:`LanguageModelGF`: generated tokens and their log probabilities.

    Attributes:
        tokens: the ``[n]`` int32 tokens (``[N, n]`` for a batched trace); also the
            return value.
        log_probs: the log probability of each token given the prompt and the tokens
            before it (0 after the first EOS); ``score`` is their sum.
    """

    __slots__ = ("log_probs", "tokens")

    tokens: mx.array
    log_probs: mx.array

    def __init__(
        self,
        gen_fn: LanguageModelGF,
        args: tuple[Any, ...],
        tokens: mx.array,
        log_probs: mx.array,
        score: mx.array,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(gen_fn, args, tokens, score, batch_shape)
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "log_probs", log_probs)

    @property
    def n_tokens(self) -> int:
        """``max_new_tokens``: the number of token choices."""
        return int(self.tokens.shape[-1])

    def get_choices(self) -> ChoiceMap:
        items = (((TOKEN, i), ChoiceMap(self.tokens[..., i])) for i in range(self.n_tokens))
        return ChoiceMap.from_nodes(items, self.batch_shape)

    def __getitem__(self, addr: Address) -> Any:
        path = to_path(addr)
        i = _token_index(path)
        if i is None or i >= self.n_tokens:
            raise AddressError(
                f"the language-model trace has no choice at {format_address(addr)}; its "
                f"choices are ('t', i) for i in 0..{self.n_tokens - 1}"
            )
        return self.tokens[..., i]

    def site_scores(self) -> Any:
        for i in range(self.n_tokens):
            yield (TOKEN, i), self.log_probs[..., i]

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return [self.args, self.tokens, self.log_probs, self.score], (self.batch_shape, self.gen_fn)

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> LanguageModelTrace:
        batch_shape, gen_fn = aux
        args, tokens, log_probs, score = children
        return cls(gen_fn, args, tokens, log_probs, score, batch_shape)


def _token_index(path: Path) -> int | None:
    if len(path) == 2 and path[0] == TOKEN:
        i = path[1]
        if isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 0:
            return int(i)
    return None


class _Args(NamedTuple):
    prompt: mx.array
    n: int
    temperature: Any


class _Fixed(NamedTuple):
    """A token given by the caller; ``mask`` (if any) says where it is given."""

    value: mx.array
    mask: mx.array | None


class _Run(NamedTuple):
    tokens: mx.array  # [n] int32
    log_probs: mx.array  # [n] float32
    given: mx.array  # [n] bool: the token came from the caller (not sampled)


def _log_softmax(logits: mx.array, temperature: Any) -> mx.array:
    z = logits / temperature
    out: mx.array = z - mx.logsumexp(z, axis=-1, keepdims=True)
    return out


def _gather(log_probs: mx.array, tokens: mx.array) -> mx.array:
    """``log_probs[..., tokens]`` with ``-inf`` for ids outside ``0..V-1``."""
    v = log_probs.shape[-1]
    valid = mx.logical_and(tokens >= 0, tokens < v)
    idx = mx.clip(tokens, 0, v - 1)
    picked = mx.take_along_axis(log_probs, mx.expand_dims(idx, -1), axis=-1)[..., 0]
    out: mx.array = mx.where(valid, picked, -mx.inf)
    return out


class LanguageModelGF(GenerativeFunction):
    """An autoregressive token model as a generative function over ``("t", i)`` tokens.

    See :mod:`genmlx.nn.language_model` for the density, the EOS convention and how
    batching works. The operations follow Gen.jl's weight semantics: ``generate``'s
    weight is the log probability of the constrained tokens (given everything before
    them); ``update`` changes tokens and/or arguments and every token at or after the
    first change is rescored, with weight ``new score − old score`` (minus the log
    probability of newly sampled tokens) and the overwritten or removed tokens in
    ``discard``; ``regenerate`` resamples the selected tokens from the model, its weight
    summing ``new − old`` log probability of the kept (unselected) tokens; ``project``
    sums the selected tokens' log probabilities.

    Args:
        model: an ``mlx.nn.Module`` mapping ``[B, L]`` int token ids to ``[B, L, V]``
            logits (causal).
        name: the namespace of its parameters in a ParamStore (default: the class
            name of ``model``).
        eos_id: the end-of-sequence token, or ``None`` for fixed-length generation.
        temperature: the default sampling temperature (``> 0``); a third argument
            overrides it per call.

    Raises:
        TypeError: ``model`` is not an ``mlx.nn.Module``.
        ValueError: a non-positive temperature or a negative ``eos_id``.

    Example:
        >>> import mlx.core as mx
        >>> import mlx.nn as nn
        >>> from genmlx.core import choicemap
        >>> from genmlx.nn import LanguageModelGF
        >>> bigram = nn.Embedding(5, 5)          # token ids [B, L] -> logits [B, L, 5]
        >>> lm = LanguageModelGF(bigram, name="bigram", eos_id=4)
        >>> tr = lm.simulate((mx.array([0]), 6), key=mx.random.key(0))
        >>> tr.retval.shape, tr.get_choices().addresses()[:2]
        ((6,), [('t', 0), ('t', 1)])
        >>> cont = choicemap({("t", 0): 2, ("t", 1): 4})     # "2" then EOS
        >>> tr, w = lm.generate((mx.array([0]), 6), cont, key=mx.random.key(1))
        >>> tr.tokens.tolist()                    # after EOS every position holds EOS
        [2, 4, 4, 4, 4, 4]
        >>> bool(mx.abs(w - tr.score) < 1e-6)    # the rest has log probability 0
        True
    """

    def __init__(
        self,
        model: nn.Module,
        name: str | None = None,
        *,
        eos_id: int | None = None,
        temperature: float = 1.0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"LanguageModelGF: model must be an mlx.nn.Module mapping token ids [B, L] "
                f"to logits [B, L, V]; got {type(model).__name__}"
            )
        if eos_id is not None and (
            isinstance(eos_id, bool) or not isinstance(eos_id, (int, np.integer)) or eos_id < 0
        ):
            raise ValueError(
                f"LanguageModelGF: eos_id must be a token id >= 0 or None, got {eos_id!r}"
            )
        self.model = model
        self.name = check_name(type(model).__name__ if name is None else name, "LanguageModelGF")
        self.eos_id = None if eos_id is None else int(eos_id)
        self.temperature = _check_temperature(temperature, "LanguageModelGF")

    @property
    def module(self) -> nn.Module:
        """The wrapped model (the same object as ``model``)."""
        return self.model

    def param_names(self) -> list[str]:
        """The store names of the model's trainable parameters."""
        return module_param_names(self.name, self.model)

    # ------------------------------------------------------------------ arguments
    def _check_arity(self, trace: Trace, args: tuple[Any, ...], op: str) -> None:
        """Two or three arguments (the temperature is optional); :meth:`_args` checks."""
        self._args(args, op)

    def _args(self, args: tuple[Any, ...], op: str) -> _Args:
        if len(args) not in (2, 3):
            raise TypeError(
                f"{op} on {self.name}: a language model takes (prompt_ids, max_new_tokens) "
                f"or (prompt_ids, max_new_tokens, temperature); got {len(args)} arguments"
            )
        prompt = args[0]
        if not isinstance(prompt, mx.array):
            prompt = mx.array(np.asarray(prompt, dtype=np.int32))
        if prompt.ndim != 1 or prompt.shape[0] < 1:
            raise ValueError(
                f"{op} on {self.name}: prompt_ids must be a 1-D array of at least one token id "
                f"(e.g. a BOS token); got shape {tuple(prompt.shape)}"
            )
        if not (mx.issubdtype(prompt.dtype, mx.integer)):
            raise TypeError(
                f"{op} on {self.name}: prompt_ids must hold integer token ids, got {prompt.dtype}"
            )
        n = args[1]
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(
                f"{op} on {self.name}: max_new_tokens must be a Python int >= 1, got {n!r}"
            )
        t = self.temperature if len(args) == 2 or args[2] is None else args[2]
        return _Args(prompt.astype(mx.int32), int(n), _check_temperature(t, f"{op} on {self.name}"))

    # ------------------------------------------------------------------ the model
    def _logits(self, ids: mx.array) -> mx.array:
        out = self.model(ids[None])
        length = ids.shape[0]
        ok = isinstance(out, mx.array) and out.ndim == 3 and tuple(out.shape[:2]) == (1, length)
        if not ok:
            shape = tuple(out.shape) if isinstance(out, mx.array) else type(out).__name__
            raise ValueError(
                f"LanguageModelGF {self.name}: the model must map token ids of shape [1, L] "
                f"to next-token logits of shape [1, L, V]; for input shape (1, {length}) "
                f"it returned {shape}"
            )
        logits: mx.array = out[0].astype(mx.float32)
        return logits

    def _run(self, a: _Args, fixed: list[_Fixed | None], key: mx.array | None) -> _Run:
        """Tokens and log probabilities of one sequence, sampling where nothing is given.

        Positions before the first one that may need sampling are scored by one forward
        pass; from there on the model runs once per position on the growing context.
        """
        n, prompt, temp, eos = a.n, a.prompt, a.temperature, self.eos_id
        p_len = prompt.shape[0]
        s = next((i for i, f in enumerate(fixed) if f is None or f.mask is not None), n)
        parts_tok: list[mx.array] = []
        parts_lp: list[mx.array] = []
        given: list[mx.array] = []
        stopped: mx.array | None = None
        eos_arr = mx.array(0 if eos is None else eos, dtype=mx.int32)
        with bound_module(self.model, self.name):
            if s > 0:
                head = mx.stack([f.value for f in fixed[:s] if f is not None])
                logits = self._logits(mx.concatenate([prompt, head]))
                lp_all = _log_softmax(logits[p_len - 1 :], temp)
                head_lp = _gather(lp_all[:s], head)
                if eos is not None:
                    is_eos = (head == eos).astype(mx.int32)
                    before = (mx.cumsum(is_eos) - is_eos) > 0  # an EOS came earlier
                    after_lp = mx.where(head == eos, 0.0, -mx.inf)
                    head_lp = mx.where(before, after_lp, head_lp)
                    stopped = mx.any(head == eos)
                parts_tok.append(head)
                parts_lp.append(head_lp)
                given.append(mx.ones((s,), dtype=mx.bool_))
                next_lp = lp_all[s] if s < n else None
            else:
                next_lp = _log_softmax(self._logits(prompt)[-1], temp)
            keys = mx.random.split(key, n) if key is not None and s < n else None
            toks: list[mx.array] = []
            for i in range(s, n):
                assert next_lp is not None and keys is not None
                draw = mx.random.categorical(next_lp, key=keys[i]).astype(mx.int32)
                if stopped is not None:
                    draw = mx.where(stopped, eos_arr, draw)
                f = fixed[i]
                if f is None:
                    tok, was_given = draw, mx.array(False)
                elif f.mask is None:
                    tok, was_given = f.value, mx.array(True)
                else:
                    tok = mx.where(f.mask, f.value, draw)
                    was_given = f.mask
                lp = _gather(next_lp, tok)
                if eos is not None:
                    if stopped is not None:
                        lp = mx.where(stopped, mx.where(tok == eos, 0.0, -mx.inf), lp)
                        stopped = mx.logical_or(stopped, tok == eos)
                    else:
                        stopped = tok == eos
                toks.append(tok)
                parts_lp.append(lp[None])
                given.append(mx.broadcast_to(was_given, (1,)))
                if i + 1 < n:
                    ctx = mx.concatenate([prompt, *parts_tok, mx.stack(toks)])
                    next_lp = _log_softmax(self._logits(ctx)[-1], temp)
            if toks:
                parts_tok.append(mx.stack(toks))
        return _Run(
            mx.concatenate(parts_tok).astype(mx.int32),
            mx.concatenate(parts_lp).astype(mx.float32),
            mx.concatenate(given),
        )

    # ------------------------------------------------------------------ constraints
    def _fixed(self, cm: ChoiceMap, n: int, op: str) -> list[_Fixed | None]:
        out: list[_Fixed | None] = [None] * n
        if cm.is_empty:
            return out
        lenient = runtime.is_lenient()
        for path, v, m in cm.masked_leaves():
            i = _token_index(path)
            if i is None or i >= n:
                if lenient:
                    continue
                raise ConstraintError(
                    f"{op} on {self.name}: the value at address {format_address(path)} was not "
                    f"used — a language model's choices are ('t', i) for i in 0..{n - 1} "
                    "(max_new_tokens tokens)"
                )
            if not (mx.issubdtype(v.dtype, mx.integer) or v.dtype == mx.bool_):
                raise TypeError(
                    f"{op} on {self.name}: the token at {format_address(path)} has dtype "
                    f"{v.dtype}; tokens are integer ids"
                )
            if v.ndim != 0:
                raise ValueError(
                    f"{op} on {self.name}: the token at {format_address(path)} must be one id "
                    f"(a scalar), got shape {tuple(v.shape)}"
                )
            out[i] = _Fixed(v.astype(mx.int32), m)
        return out

    def _trace(self, a: _Args, args: tuple[Any, ...], r: _Run) -> LanguageModelTrace:
        return LanguageModelTrace(self, args, r.tokens, r.log_probs, mx.sum(r.log_probs))

    # ------------------------------------------------------------------ GFI
    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> LanguageModelTrace:
        a = self._args(args, "simulate")
        return self._trace(a, args, self._run(a, [None] * a.n, key))

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        a = self._args(args, "generate")
        r = self._run(a, self._fixed(constraints, a.n, "generate"), key)
        weight = mx.sum(mx.where(r.given, r.log_probs, 0.0))
        return GenerateResult(self._trace(a, args, r), weight)

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        a = self._args(args, "assess")
        fixed = self._fixed(choices, a.n, "assess")
        full: list[_Fixed | None] = []
        for i, f in enumerate(fixed):
            if f is None:
                if not runtime.is_lenient():
                    raise MissingChoiceError(
                        f"assess on {self.name}: no token at address ('t', {i}); assess needs "
                        f"all {a.n} tokens (after an EOS, give eos_id or use generate)"
                    )
                f = _Fixed(mx.array(0, dtype=mx.int32), None)
            full.append(_Fixed(f.value, None))  # assess uses a masked value as it is
        r = self._run(a, full, None)
        return AssessResult(mx.sum(r.log_probs), r.tokens)

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        assert isinstance(trace, LanguageModelTrace)
        a = self._args(args, "update")
        fixed = self._fixed(constraints, a.n, "update")
        n_old = trace.n_tokens
        full: list[_Fixed | None] = []
        discard: list[tuple[Path, ChoiceMap]] = []
        for i, f in enumerate(fixed):
            if i >= n_old:
                full.append(f)  # a new position: constrained, or sampled
                continue
            old = trace.tokens[i]
            if f is None:
                full.append(_Fixed(old, None))
            elif f.mask is None:
                full.append(f)
                discard.append(((TOKEN, i), ChoiceMap(old)))
            else:
                full.append(_Fixed(mx.where(f.mask, f.value, old), None))
                discard.append(((TOKEN, i), ChoiceMap(old, None, (), f.mask)))
        for i in range(a.n, n_old):  # removed positions
            discard.append(((TOKEN, i), ChoiceMap(trace.tokens[i])))
        r = self._run(a, full, key)
        weight = mx.sum(mx.where(r.given, r.log_probs, 0.0)) - trace.score
        return UpdateResult(
            self._trace(a, args, r), weight, UnknownChange, ChoiceMap.from_nodes(discard)
        )

    def _check_selection(self, sel: Selection, n_max: int, op: str) -> None:
        if runtime.is_lenient():
            return
        for path in sel.explicit_paths():
            i = _token_index(path)
            if path == (TOKEN,) or (i is not None and i < n_max):
                continue
            raise AddressError(
                f"{op} on {self.name}: the selection names address {format_address(path)}, which "
                f"is not in the trace (its choices are ('t', i) for i in 0..{n_max - 1})"
            )

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        assert isinstance(trace, LanguageModelTrace)
        a = self._args(args, "regenerate")
        n_old = trace.n_tokens
        self._check_selection(selection, max(n_old, a.n), "regenerate")
        kept = [i for i in range(min(n_old, a.n)) if not selection.contains_path((TOKEN, i))]
        fixed: list[_Fixed | None] = [None] * a.n
        for i in kept:
            fixed[i] = _Fixed(trace.tokens[i], None)
        r = self._run(a, fixed, key)
        if kept:
            idx = mx.array(kept)
            weight = mx.sum(mx.take(r.log_probs, idx) - mx.take(trace.log_probs, idx))
        else:
            weight = mx.zeros_like(trace.score)
        return RegenerateResult(self._trace(a, args, r), weight, UnknownChange)

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        assert isinstance(trace, LanguageModelTrace)
        n = trace.n_tokens
        self._check_selection(selection, n, "project")
        chosen = [i for i in range(n) if selection.contains_path((TOKEN, i))]
        if not chosen:
            return mx.zeros_like(trace.score)
        if len(chosen) == n:
            return mx.sum(trace.log_probs)
        return mx.sum(mx.take(trace.log_probs, mx.array(chosen)))

    def __repr__(self) -> str:
        return f"<LanguageModelGF {self.name}: {type(self.model).__name__}>"


def _check_temperature(t: Any, who: str) -> Any:
    if isinstance(t, mx.array):
        return t
    if (
        isinstance(t, bool)
        or not isinstance(t, (int, float, np.integer, np.floating))
        or not (float(t) > 0 and np.isfinite(float(t)))
    ):
        raise ValueError(f"{who}: temperature must be a finite number > 0, got {t!r}")
    return float(t)
