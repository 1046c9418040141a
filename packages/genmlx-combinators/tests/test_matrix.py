"""The operation matrix: every combinator × every GFI operation, unbatched and batched.

Each combinator's registered examples (small random models) go through every
GFI law of :mod:`genmlx.core.testing.laws` (simulate/assess, generate full and empty,
propose, update noop/full/roundtrip, regenerate none/all, project, edit roundtrip) and the
batched laws; then, called from a ``@gen`` model (so batched runs go three levels deep:
model → combinator → kernel → distribution), batched ``update`` and ``regenerate`` are
checked particle by particle against their closed forms.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import pytest

from genmlx.combinators._examples import EXAMPLES as REGISTERED
from genmlx.combinators._plugin import COMBINATOR_NAMES
from genmlx.core import Selection, gen
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.testing.laws import BATCHED_LAWS, GFI_LAWS, assert_close

LAWS = {**GFI_LAWS, **BATCHED_LAWS}
EXAMPLES = [
    pytest.param(gf, args, id=f"{name}-{j}")
    for name in COMBINATOR_NAMES
    for j, (gf, args) in enumerate(REGISTERED.get(name, list)())
]


def test_every_combinator_has_examples() -> None:
    for name in COMBINATOR_NAMES:
        assert REGISTERED[name](), name


@pytest.mark.parametrize("law", sorted(LAWS))
@pytest.mark.parametrize(("gf", "args"), EXAMPLES)
def test_law(gf: GenerativeFunction, args: tuple[Any, ...], law: str) -> None:
    for seed in (0, 1):
        LAWS[law](gf, args, mx.random.key(seed))


def _outer(gf: GenerativeFunction, args: tuple[Any, ...]) -> GenerativeFunction:
    @gen
    def model():
        return gf(*args) @ "c"

    return model


@pytest.mark.parametrize(("gf", "args"), EXAMPLES)
def test_batched_update_and_regenerate(gf: GenerativeFunction, args: tuple[Any, ...]) -> None:
    n = 4
    model = _outer(gf, args)
    t1 = model.vsimulate((), n, key=mx.random.key(10))
    t2 = model.vsimulate((), n, key=mx.random.key(11))
    new, w, _, discard = model.update(t1, t2.get_choices(), key=mx.random.key(12))
    assert new.batch_shape == (n,) and w.shape == (n,)
    assert_close(w, t2.score - t1.score, "batched update: weight vs s2 - s1")
    assert_close(new.score, t2.score, "batched update: score")
    back, w2, _, _ = model.update(new, discard, key=mx.random.key(13))
    assert_close(w2, -w, "batched update: round trip weight")
    assert_close(back.score, t1.score, "batched update: round trip score")
    reg, wr, _ = model.regenerate(t1, Selection.all(), key=mx.random.key(14))
    assert_close(wr, mx.zeros((n,)), "batched regenerate all: weight")
    ld, _ = model.assess((), reg.get_choices())
    assert_close(reg.score, ld, "batched regenerate all: score vs assess")
    for i in range(n):  # each particle's choices are a complete execution
        ld_i, _ = model.assess((), reg.get_choices().particle(i))
        assert_close(ld_i, reg.score[i], f"batched regenerate: particle {i}")
