"""LanguageModelGF on a character-level GRU trained here on a tiny corpus.

The corpus is sentences ``"^" + word + " " + word + "."`` with words drawn uniformly
from ``hello``, ``help``, ``world``; ``^`` starts a sentence and ``.`` (EOS) ends it. A
one-layer GRU (mlx.nn) is trained on it for 120 Adam steps (about 3 s).

Reference values are computed independently of LanguageModelGF: the network is run on
each prefix separately and ``log_softmax`` is taken in numpy (float64), so teacher
forcing, the EOS convention and the weight bookkeeping are all checked against a plain
re-implementation of the density.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

from genmlx.core import (
    AddressError,
    ConstraintError,
    MissingChoiceError,
    Selection,
    choicemap,
    gen,
    param_gradients,
    select,
    use_params,
)
from genmlx.core.testing import check_gfi_laws
from genmlx.nn import LanguageModelGF, param_store

K = mx.random.key
CHARS = "^. dehlorwp"
IDX = {c: i for i, c in enumerate(CHARS)}
EOS = IDX["."]
WORDS = ["hello", "help", "world"]


def encode(s: str) -> list[int]:
    return [IDX[c] for c in s]


def decode(ids: Any) -> str:
    return "".join(CHARS[int(i)] for i in ids)


class CharGRU(nn.Module):
    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        self.rnn = nn.GRU(hidden, hidden)
        self.out = nn.Linear(hidden, vocab)

    def __call__(self, ids: mx.array) -> mx.array:
        return self.out(self.rnn(self.emb(ids)))


def _train() -> CharGRU:
    rng = np.random.default_rng(0)
    text = "".join("^" + " ".join(rng.choice(WORDS, size=2)) + "." for _ in range(200))
    ids = np.array(encode(text))
    mx.random.seed(0)
    model = CharGRU(len(CHARS), 24)
    opt = optim.Adam(learning_rate=1e-2)

    def loss(m: CharGRU, x: mx.array, y: mx.array) -> mx.array:
        return nn.losses.cross_entropy(m(x), y, reduction="mean")

    grad = nn.value_and_grad(model, loss)
    state = [model.state, opt.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x: mx.array, y: mx.array) -> mx.array:
        value, g = grad(model, x, y)
        opt.update(model, g)
        return value

    length, batch = 16, 32
    for _ in range(120):
        starts = rng.integers(0, len(ids) - length - 1, size=batch)
        x = mx.array(np.stack([ids[s : s + length] for s in starts]))
        y = mx.array(np.stack([ids[s + 1 : s + length + 1] for s in starts]))
        step(x, y)
        mx.eval(state)
    return model


@pytest.fixture(scope="module")
def gru() -> CharGRU:
    return _train()


@pytest.fixture(scope="module")
def lm(gru: CharGRU) -> LanguageModelGF:
    return LanguageModelGF(gru, name="gru", eos_id=EOS)


def ref_log_probs(
    model: nn.Module,
    prompt: list[int],
    tokens: list[int],
    temperature: float = 1.0,
    eos: int | None = EOS,
) -> np.ndarray:
    """Per-token log probabilities, one forward pass per prefix, log_softmax in numpy."""
    out = []
    stopped = False
    for i, t in enumerate(tokens):
        if stopped:
            out.append(0.0 if t == eos else -math.inf)
            continue
        logits = np.array(model(mx.array([prompt + tokens[:i]]))[0, -1], dtype=np.float64)
        z = logits / temperature
        lse = z.max() + math.log(np.exp(z - z.max()).sum())
        out.append(z[t] - lse)
        stopped = eos is not None and t == eos
    return np.array(out)


def cm_of(tokens: list[int]) -> Any:
    return choicemap({("t", i): t for i, t in enumerate(tokens)})


PROMPT = encode("^")
P = mx.array(PROMPT)


# --------------------------------------------------------------------------- scoring
def test_full_constraint_generate_equals_assess_equals_reference(lm: LanguageModelGF) -> None:
    tokens = encode("help world.")
    ref = ref_log_probs(lm.model, PROMPT, tokens)
    tr, w = lm.generate((P, len(tokens)), cm_of(tokens), key=K(0))
    ld, rv = lm.assess((P, len(tokens)), cm_of(tokens))
    assert tr.tokens.tolist() == tokens and rv.tolist() == tokens
    assert np.allclose(np.array(tr.log_probs), ref, atol=2e-5)
    assert abs(float(w) - ref.sum()) < 1e-4
    assert float(w) == float(tr.score) == float(ld)


def test_eos_stops_generation_and_scores_up_to_it(lm: LanguageModelGF) -> None:
    given = encode("hello help.")
    n = len(given) + 4
    tr, w = lm.generate((P, n), cm_of(given), key=K(1))
    assert decode(tr.tokens.tolist()) == "hello help." + "...."
    ref = ref_log_probs(lm.model, PROMPT, given)
    assert abs(float(w) - ref.sum()) < 1e-4
    assert np.array(tr.log_probs)[len(given) :].tolist() == [0.0] * 4
    assert float(tr.score) == float(w)  # the filled-in EOS tokens have log probability 1
    # a non-EOS token after the first EOS is impossible
    bad = cm_of(given).set(("t", len(given)), IDX["h"])
    _, w_bad = lm.generate((P, n), bad, key=K(1))
    assert float(w_bad) == -math.inf
    # simulate always pads with EOS after the first one
    trs = lm.vsimulate((P, 20), 64, key=K(2))
    toks = np.array(trs.tokens)
    for row in toks:
        hits = np.flatnonzero(row == EOS)
        if hits.size:
            assert np.all(row[hits[0] :] == EOS)


def test_partial_constraints_sample_the_rest_with_weight_of_the_constrained(
    lm: LanguageModelGF,
) -> None:
    cons = choicemap({("t", 0): IDX["w"], ("t", 6): IDX["h"]})
    tr, w = lm.generate((P, 12), cons, key=K(3))
    toks = tr.tokens.tolist()
    assert toks[0] == IDX["w"] and toks[6] == IDX["h"]
    ref = ref_log_probs(lm.model, PROMPT, toks)
    assert np.allclose(np.array(tr.log_probs), ref, atol=2e-5)
    assert abs(float(w) - (ref[0] + ref[6])) < 1e-4
    # a trained model continues "w" as "world" and "world h" as "world hel.."
    assert decode(toks[:6]) == "world "


def test_temperature_argument_rescales_the_logits(lm: LanguageModelGF) -> None:
    tokens = encode("hello world.")
    for t in (0.5, 2.0):
        ld, _ = lm.assess((P, len(tokens), t), cm_of(tokens))
        ref = ref_log_probs(lm.model, PROMPT, tokens, temperature=t)
        assert abs(float(ld) - ref.sum()) < 1e-4
    # update to a new temperature rescores every token: weight = new − old score
    tr, _ = lm.generate((P, len(tokens)), cm_of(tokens), key=K(0))
    up = lm.update(tr, None, (P, len(tokens), 2.0), key=K(1))
    new_ref = ref_log_probs(lm.model, PROMPT, tokens, temperature=2.0).sum()
    assert abs(float(up.weight) - (new_ref - float(tr.score))) < 1e-4
    assert up.trace.tokens.tolist() == tokens


# --------------------------------------------------------------------------- update etc.
def test_update_weight_is_new_minus_old_score(lm: LanguageModelGF) -> None:
    old = encode("hello world.")
    tr, _ = lm.generate((P, len(old)), cm_of(old), key=K(0))
    i = 1
    new = [*old]
    new[i] = IDX["o"]  # "hollo world." — an unlikely change early on
    up = lm.update(tr, choicemap({("t", i): IDX["o"]}), key=K(4))
    new_score = float(lm.assess((P, len(new)), cm_of(new)).log_density)
    assert up.trace.tokens.tolist() == new
    assert abs(float(up.weight) - (new_score - float(tr.score))) < 1e-5
    assert abs(float(up.weight) - float(up.trace.score - tr.score)) < 1e-6
    ref_new = ref_log_probs(lm.model, PROMPT, new)
    assert abs(new_score - ref_new.sum()) < 1e-4
    # tokens before i keep their log probabilities; those at and after i are rescored
    assert np.array_equal(np.array(up.trace.log_probs)[:i], np.array(tr.log_probs)[:i])
    assert np.allclose(np.array(up.trace.log_probs), ref_new, atol=2e-5)
    assert up.discard.addresses() == [("t", i)] and int(up.discard[("t", i)]) == old[i]
    # updating back with the discard negates the weight and restores the tokens
    back = lm.update(up.trace, up.discard, key=K(5))
    assert back.trace.tokens.tolist() == old
    assert abs(float(back.weight) + float(up.weight)) < 1e-5


def test_update_that_changes_the_length(lm: LanguageModelGF) -> None:
    tr = lm.simulate((P, 5), key=K(6))
    longer = lm.update(tr, None, (P, 9), key=K(7))
    assert longer.trace.tokens.tolist()[:5] == tr.tokens.tolist()
    # kept tokens keep their log probabilities and new ones are sampled: weight 0
    assert abs(float(longer.weight)) < 1e-6
    ref = ref_log_probs(lm.model, PROMPT, longer.trace.tokens.tolist())
    assert np.allclose(np.array(longer.trace.log_probs), ref, atol=2e-5)
    shorter = lm.update(longer.trace, None, (P, 3), key=K(8))
    removed = np.array(longer.trace.log_probs)[3:].sum()
    assert abs(float(shorter.weight) + removed) < 1e-5
    assert [a for a, _ in shorter.discard] == [("t", i) for i in range(3, 9)]
    # new positions constrained by update add their log probability
    tr4 = lm.simulate((P, 4), key=K(9))
    ext = lm.update(tr4, choicemap({("t", 5): IDX["h"]}), (P, 7), key=K(10))
    toks = ext.trace.tokens.tolist()
    ref = ref_log_probs(lm.model, PROMPT, toks)
    assert abs(float(ext.weight) - ref[5]) < 1e-4


def test_regenerate_and_project(lm: LanguageModelGF) -> None:
    old = encode("help hello.")
    tr, _ = lm.generate((P, len(old)), cm_of(old), key=K(0))
    new, w, _ = lm.regenerate(tr, select(("t", 0)), key=K(11))
    toks = new.tokens.tolist()
    ref_new = ref_log_probs(lm.model, PROMPT, toks)
    ref_old = np.array(tr.log_probs)
    assert toks[1:] == old[1:]
    # weight: new − old log probability of the kept (unselected) tokens
    assert abs(float(w) - (ref_new[1:].sum() - ref_old[1:].sum())) < 1e-4
    assert np.allclose(np.array(new.log_probs), ref_new, atol=2e-5)
    assert abs(float(lm.project(tr, select(("t", 2), ("t", 4)))) - (ref_old[2] + ref_old[4])) < 1e-6
    assert abs(float(lm.project(tr, Selection.all())) - float(tr.score)) < 1e-6
    assert float(lm.project(tr, Selection.none())) == 0.0
    with pytest.raises(AddressError, match=r"\('t', 40\)"):
        lm.regenerate(tr, select(("t", 40)), key=K(0))


def test_gfi_laws(lm: LanguageModelGF) -> None:
    check_gfi_laws(lm, (P, 6), max_examples=3)
    no_eos = LanguageModelGF(lm.model, name="gru")
    check_gfi_laws(no_eos, (mx.array(encode("^he")), 4), max_examples=2)


# --------------------------------------------------------------------------- batching
class CountingGRU(nn.Module):
    """Wraps a model and counts its calls (Python-level: one per batched step)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self._calls = [0]

    def __call__(self, ids: mx.array) -> mx.array:
        self._calls[0] += 1
        out: mx.array = self.inner(ids)
        return out


def test_batched_particles_share_one_forward_pass_per_step(gru: CharGRU) -> None:
    counting = CountingGRU(gru)
    lm = LanguageModelGF(counting, name="gru", eos_id=EOS)
    n, steps = 16, 8
    btr = lm.vsimulate((P, steps), n, key=K(12))
    assert counting._calls[0] == steps  # not n * steps: one batched call per position
    assert btr.tokens.shape == (n, steps)
    keys = mx.random.split(K(12), n)
    for i in (0, 5, 15):
        tr = lm.simulate((P, steps), key=keys[i])
        assert tr.tokens.tolist() == btr.tokens[i].tolist()
        assert abs(float(tr.score) - float(btr.score[i])) < 1e-5
    # batched update: each particle's weight equals its own unbatched update weight
    cons = choicemap({("t", 2): IDX["l"]})
    bup = lm.update(btr, cons, key=K(13))
    for i in (0, 7):
        tr = lm.simulate((P, steps), key=keys[i])
        up = lm.update(tr, cons, key=K(13))
        assert abs(float(up.weight) - float(bup.weight[i])) < 1e-5 or (
            math.isinf(float(up.weight)) and float(up.weight) == float(bup.weight[i])
        )
        assert up.trace.tokens.tolist()[:3] == bup.trace.tokens[i].tolist()[:3]
    # vgenerate with per-particle constraints scores each particle's sentence
    sentences = [encode("hello help."), encode("help world.")]
    cm = choicemap(
        {("t", i): mx.array([s[i] for s in sentences]) for i in range(11)}, batch_shape=(2,)
    )
    gtr, gw = lm.vgenerate((P, 11), cm, 2, key=K(14))
    for j, s in enumerate(sentences):
        assert abs(float(gw[j]) - ref_log_probs(gru, PROMPT, s).sum()) < 1e-4


# --------------------------------------------------------------------------- the corpus
def test_samples_reproduce_the_corpus(lm: LanguageModelGF) -> None:
    n = 400
    # After "^wor" the corpus always continues with "l". Binomial bound: even if the
    # model gave "l" only probability 0.9, P(count < 0.9n − 4·sqrt(n·0.9·0.1)) < 1e-4.
    tr = lm.vsimulate((mx.array(encode("^wor")), 1), n, key=K(15))
    count = int(mx.sum(tr.tokens[:, 0] == IDX["l"]))
    assert count >= 0.9 * n - 4 * math.sqrt(n * 0.9 * 0.1)
    # The first letter: "h" (hello/help) vs "w" (world). The sampler must match the
    # model's own probability (computed by the reference): |freq − p| < 4 SE.
    tr = lm.vsimulate((P, 1), n, key=K(16))
    freq = float(mx.mean((tr.tokens[:, 0] == IDX["h"]).astype(mx.float32)))
    p = math.exp(ref_log_probs(lm.model, PROMPT, [IDX["h"]])[0])
    assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n)
    # ... and that probability is the corpus' 2/3 (about 400 sentence starts seen)
    assert abs(p - 2 / 3) < 0.1
    # whole sentences: every sample that stops within 12 tokens is "w w." with words
    # from the corpus
    tr = lm.vsimulate((P, 12), 200, key=K(17))
    texts = [decode(row).split(".")[0] for row in np.array(tr.tokens)]
    good = sum(len(t.split(" ")) == 2 and all(w in WORDS for w in t.split(" ")) for t in texts)
    assert good >= 190


# --------------------------------------------------------------------------- parameters
def test_param_gradients_are_gradients_of_the_log_likelihood(gru: CharGRU) -> None:
    lm = LanguageModelGF(gru, name="gru", eos_id=EOS)
    tokens = encode("hello world.")
    tr, _ = lm.generate((P, len(tokens)), cm_of(tokens), key=K(0))
    store = param_store(lm)
    assert sorted(store) == sorted(lm.param_names())
    grads = param_gradients(tr, store)
    names = [k for k, _ in tree_flatten(gru.trainable_parameters())]
    own = dict(tree_flatten(gru.trainable_parameters()))

    def loglik(values: dict[str, mx.array]) -> mx.array:
        gru.update(tree_unflatten(list(values.items())))
        try:
            logits = gru(mx.array([PROMPT + tokens[:-1]]))[0]
        finally:
            gru.update(tree_unflatten(list(own.items())))
        lp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return mx.sum(mx.take_along_axis(lp, mx.array(tokens)[:, None], axis=-1))

    ref = mx.grad(loglik)({k: own[k] for k in names})
    for k in names:
        assert np.allclose(np.array(grads[f"gru/{k}"]), np.array(ref[k]), atol=1e-4), k
    assert abs(float(loglik(own)) - float(tr.score)) < 1e-4
    # a bound store's values are the ones scored
    bias = store["gru/out.bias"] + mx.eye(len(CHARS))[EOS] * 3.0
    with use_params(store.set("gru/out.bias", bias)):
        ld = float(lm.assess((P, len(tokens)), cm_of(tokens)).log_density)
    expect = float(loglik({**own, "out.bias": bias}))
    assert abs(ld - expect) < 1e-4 and abs(ld - float(tr.score)) > 0.1


def test_the_model_is_used_in_a_gen_body(lm: LanguageModelGF) -> None:
    @gen
    def chat(prompt):
        return lm(prompt, 6) @ "reply"

    tr = chat.simulate((P,), key=K(18))
    assert tr.get_choices().addresses() == [("reply", "t", i) for i in range(6)]
    tr2, w = chat.generate((P,), tr.get_choices(), key=K(19))
    assert abs(float(w) - float(tr.score)) < 1e-5


# --------------------------------------------------------------------------- errors
def test_errors_name_the_operation_and_the_address(lm: LanguageModelGF) -> None:
    with pytest.raises(ValueError, match="prompt_ids must be a 1-D array of at least one"):
        lm.simulate((mx.array([], dtype=mx.int32), 3), key=K(0))
    with pytest.raises(ValueError, match="max_new_tokens must be a Python int >= 1"):
        lm.simulate((P, 0), key=K(0))
    with pytest.raises(TypeError, match=r"takes \(prompt_ids, max_new_tokens\)"):
        lm.simulate((P,), key=K(0))
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        lm.simulate((P, 3, 0.0), key=K(0))
    with pytest.raises(ConstraintError, match=r"\('t', 7\) was not used"):
        lm.generate((P, 3), choicemap({("t", 7): 1}), key=K(0))
    with pytest.raises(ConstraintError, match="'x' was not used"):
        lm.generate((P, 3), choicemap({"x": 1}), key=K(0))
    with pytest.raises(TypeError, match=r"token at \('t', 0\) has dtype"):
        lm.generate((P, 3), choicemap({("t", 0): 1.5}), key=K(0))
    with pytest.raises(MissingChoiceError, match=r"no token at address \('t', 2\)"):
        lm.assess((P, 3), cm_of([1, 2]))
    with pytest.raises(TypeError, match=r"mlx\.nn\.Module"):
        LanguageModelGF(lambda ids: ids)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eos_id"):
        LanguageModelGF(nn.Embedding(3, 3), eos_id=-1)
    bad = LanguageModelGF(nn.Linear(1, 3), name="bad")
    with pytest.raises(ValueError, match=r"logits of shape \[1, L, V\]"):
        bad.simulate((mx.array([0]), 2), key=K(0))


def test_fixed_length_generation_without_eos(gru: CharGRU) -> None:
    lm = LanguageModelGF(gru, name="gru")  # no EOS: "." is an ordinary token
    tokens = encode("help.^world")
    ld, _ = lm.assess((P, len(tokens)), cm_of(tokens))
    ref = ref_log_probs(gru, PROMPT, tokens, eos=None)
    assert abs(float(ld) - ref.sum()) < 1e-4
    assert np.all(np.isfinite(ref))
