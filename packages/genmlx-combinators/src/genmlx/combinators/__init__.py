"""genmlx.combinators: generative function combinators for GenMLX.

This package will hold the combinators (``Map``, ``Vmap``, ``Repeat``, ``Unfold``,
``Scan``, ``Switch``, ``Mask``, ``Mix``, ``Recurse``, ``Dimap``), each implementing
the whole Generative Function Interface, incremental diffs and batching.

The package is reserved and intentionally empty for now: its contents land with
the combinators issue. Until then it exports nothing.
"""

__all__: list[str] = []
