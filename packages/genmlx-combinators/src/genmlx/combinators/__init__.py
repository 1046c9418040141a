"""genmlx.combinators: generative function combinators for GenMLX.

Each combinator builds a generative function from others and implements the whole
Generative Function Interface, incremental ``update``/``regenerate`` and batching:

- ``Map(k)(*arrays)``: ``k`` on element ``i`` of each array; choices at ``(i, addr)``.
- ``Repeat(k, n)(*args)``: ``n`` independent calls; choices at ``(i, addr)``.
- ``Vmap(k, in_axes)(*args)`` (GenJAX style): the kernel's own addresses, each with a
  leading ``[n]`` axis.
- ``Unfold(k)(T, state, *params)``: ``k(t, state, *params) -> state``; ``(t, addr)``.
- ``Scan(k)(carry, xs)``: ``k(carry, x) -> (carry, out)``; ``(t, addr)``.
- ``Switch(g0, g1, ...)(index, *args)``: the chosen branch's own addresses.
- ``Mask(g)(flag, *args)``: ``g``'s addresses, present where ``flag`` is True.
- ``Mix(c0, c1, ...)(logits, args0, args1, ...)``: ``"component"``, then
  ``("value", addr)``.
- ``Recurse(production, aggregation, max_branch)(v)``:
  ``(node, "production" | "aggregation", addr)``.
- ``Dimap(g, pre, post)(*args)``, ``Contramap(g, pre)``, ``MapRetval(g, post)``: ``g``'s
  addresses.

Indices are 0-based (Gen.jl's conventions otherwise). See the documentation's
combinator pages for examples and weights.
"""

from genmlx.combinators.dimap import Contramap, Dimap, MapRetval
from genmlx.combinators.map import Map, Repeat
from genmlx.combinators.mask import Mask, Masked
from genmlx.combinators.mix import Mix
from genmlx.combinators.recurse import Recurse
from genmlx.combinators.scan import Scan
from genmlx.combinators.switch import Switch
from genmlx.combinators.unfold import Unfold
from genmlx.combinators.vmap import Vmap

__all__ = [
    "Contramap",
    "Dimap",
    "Map",
    "MapRetval",
    "Mask",
    "Masked",
    "Mix",
    "Recurse",
    "Repeat",
    "Scan",
    "Switch",
    "Unfold",
    "Vmap",
]
