"""Small random models for the conformance kit: ``[(generative_function, args), ...]``.

The plugin registers each combinator with its examples (``examples=``, :data:`EXAMPLES`)
and its kit builder (``conformance_build=``, :data:`BUILDERS`), so
``python -m genmlx.core.testing`` (and ``nox -s conformance``) checks the GFI laws on
every registered combinator, third-party ones included, the same way. The combinator
classes themselves carry no examples (so they do not import this module).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from genmlx.core import gen
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.testing.models import normal

Example = tuple[GenerativeFunction, tuple[Any, ...]]


@gen
def _element(x):
    z = normal(x, 1.0) @ "z"
    return normal(z, 0.5) @ "y"


@gen
def _step(t, state, drift):
    return normal(state + drift, 1.0) @ "x"


@gen
def _scan_step(carry, x):
    c = normal(carry + x, 1.0) @ "c"
    return c, 2.0 * c


@gen
def _near():
    return normal(0.0, 1.0) @ "x"


@gen
def _far():
    x = normal(5.0, 1.0) @ "x"
    normal(x, 2.0) @ "w"
    return x


@gen
def _production(depth):
    x = normal(0.0, 1.0) @ "x"
    return x, ([depth - 1, depth - 1] if depth > 0 else [])


@gen
def _aggregation(depth, x, children):
    total = x
    for c in children:
        total = total + c
    return normal(total, 1.0) @ "s"


def _random_index(gf: GenerativeFunction) -> GenerativeFunction:
    @gen
    def model():
        k = (normal(0.0, 1.0) @ "u" > 0).astype(mx.int32)
        return gf(k) @ "inner"

    return model


def map_examples() -> list[Example]:
    from genmlx.combinators.map import Map

    return [(Map(_element), (mx.array([0.0, 1.0, -2.0]),))]


def repeat_examples() -> list[Example]:
    from genmlx.combinators.map import Repeat

    return [(Repeat(_element, 3), (0.5,))]


def vmap_examples() -> list[Example]:
    from genmlx.combinators.vmap import Vmap

    return [(Vmap(_step, in_axes=(0, 0, None)), (mx.arange(3), mx.array([0.0, 1.0, 2.0]), 0.5))]


def unfold_examples() -> list[Example]:
    from genmlx.combinators.unfold import Unfold

    return [(Unfold(_step), (4, 0.0, 0.5))]


def scan_examples() -> list[Example]:
    from genmlx.combinators.scan import Scan

    return [(Scan(_scan_step), (0.0, mx.array([1.0, -1.0, 0.5])))]


def switch_examples() -> list[Example]:
    from genmlx.combinators.switch import Switch

    sw = Switch(_near, _far)
    return [(sw, (0,)), (sw, (1,)), (_random_index(sw), ())]


def mask_examples() -> list[Example]:
    from genmlx.combinators.mask import Mask

    m = Mask(_far)
    return [(m, (True,)), (m, (False,)), (_random_index(m), ())]


def mix_examples() -> list[Example]:
    from genmlx.combinators.mix import Mix

    return [(Mix(_near, _far), (mx.log(mx.array([0.4, 0.6])), (), ()))]


def recurse_examples() -> list[Example]:
    from genmlx.combinators.recurse import Recurse

    return [(Recurse(_production, _aggregation, max_branch=2), (1,))]


def dimap_examples() -> list[Example]:
    from genmlx.combinators.dimap import Contramap, Dimap, MapRetval

    return [
        (Dimap(_element, pre=lambda x: (2.0 * x,), post=lambda args, r: r + args[0]), (1.5,)),
        (Contramap(_element, lambda x: (x - 1.0,)), (0.5,)),
        (MapRetval(_element, lambda r: 3.0 * r), (0.5,)),
    ]


# --------------------------------------------------------------------------- kit builders
# Each ``build(kernel)`` applies one combinator to a kernel of the combinator kit's
# family (genmlx.core.testing.combinators: a generative function of one float scalar
# returning a float scalar) and returns ``[(generative_function, args), ...]``; the
# plugin registers them as ``conformance_build``. Arguments are MLX arrays where the
# combinator allows, so the kit's incremental-update law reaches the combinator.

_XS = (0.3, -1.2, 0.8)


def _shifted(kernel: GenerativeFunction) -> GenerativeFunction:
    """A second branch with other addresses: ``kernel(x + 1)`` at ``"s"``."""

    @gen
    def shifted(x):
        return kernel(x + 1.0) @ "s"

    return shifted


def _random_branch(gf: GenerativeFunction) -> GenerativeFunction:
    """``gf(k, x)`` with ``k = [u > 0]``, ``u ~ N(0, 1)``: the branch varies per particle."""

    @gen
    def model(x):
        k = (normal(0.0, 1.0) @ "u" > 0).astype(mx.int32)
        return gf(k, x) @ "inner"

    return model


def build_map(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.map import Map

    return [(Map(kernel), (mx.array(_XS),))]


def build_repeat(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.map import Repeat

    return [(Repeat(kernel, 3), (mx.array(0.4),))]


def build_vmap(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.vmap import Vmap

    return [(Vmap(kernel, in_axes=0), (mx.array(_XS),))]


def build_unfold(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.unfold import Unfold

    @gen
    def step(t, state):
        return kernel(state) @ "k"

    return [(Unfold(step), (3, mx.array(0.2)))]


def build_scan(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.scan import Scan

    @gen
    def step(carry, x):
        y = kernel(carry + x) @ "k"
        return y, 2.0 * y

    return [(Scan(step), (mx.array(0.1), mx.array([0.5, -0.5, 1.0])))]


def build_switch(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.switch import Switch

    sw = Switch(kernel, _shifted(kernel))
    x = mx.array(0.5)
    return [(sw, (0, x)), (sw, (1, x)), (_random_branch(sw), (x,))]


def build_mask(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.mask import Mask

    m = Mask(kernel)
    x = mx.array(0.5)
    return [(m, (True, x)), (m, (False, x)), (_random_branch(m), (x,))]


def build_mix(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.mix import Mix

    x = mx.array(0.5)
    return [(Mix(kernel, _shifted(kernel)), (mx.log(mx.array([0.3, 0.7])), (x,), (x,)))]


def build_recurse(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.recurse import Recurse

    @gen
    def production(depth):
        u = kernel(mx.array(float(depth))) @ "k"
        return u, ([depth - 1, depth - 1] if depth > 0 else [])

    @gen
    def aggregation(depth, u, children):
        return u + sum(children, mx.array(0.0))

    return [(Recurse(production, aggregation, max_branch=2), (1,))]


def build_dimap(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.dimap import Dimap

    return [(Dimap(kernel, pre=lambda x: (2.0 * x,), post=lambda a, r: r + a[0]), (mx.array(1.5),))]


def build_contramap(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.dimap import Contramap

    return [(Contramap(kernel, lambda x: (x - 1.0,)), (mx.array(0.5),))]


def build_mapretval(kernel: GenerativeFunction) -> list[Example]:
    from genmlx.combinators.dimap import MapRetval

    return [(MapRetval(kernel, lambda r: 3.0 * r), (mx.array(0.5),))]


BUILDERS = {
    "Map": build_map,
    "Vmap": build_vmap,
    "Repeat": build_repeat,
    "Unfold": build_unfold,
    "Scan": build_scan,
    "Switch": build_switch,
    "Mask": build_mask,
    "Mix": build_mix,
    "Recurse": build_recurse,
    "Dimap": build_dimap,
    "Contramap": build_contramap,
    "MapRetval": build_mapretval,
}
"""Combinator name → its kit builder (``conformance_build``)."""

EXAMPLES = {
    "Map": map_examples,
    "Vmap": vmap_examples,
    "Repeat": repeat_examples,
    "Unfold": unfold_examples,
    "Scan": scan_examples,
    "Switch": switch_examples,
    "Mask": mask_examples,
    "Mix": mix_examples,
    "Recurse": recurse_examples,
    "Dimap": dimap_examples,
    "Contramap": dimap_examples,
    "MapRetval": dimap_examples,
}
"""Combinator name → a function returning its fixed examples (``examples``)."""
