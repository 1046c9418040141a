"""``Iterate``: a combinator that feeds a kernel's return value back into it."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from genmlx.core import GenerativeFunction, gen

__all__ = ["Iterate", "conformance_build", "conformance_examples"]


def Iterate(kernel: GenerativeFunction, n: int) -> GenerativeFunction:
    """``Iterate(kernel, n)(x₀)`` runs ``x_{k+1} = kernel(x_k)`` for ``k = 0..n−1``.

    The choices of step ``k`` are at ``(k, addr)`` (``kernel``'s addresses under ``k``);
    the return value is ``x_n``. Every GFI operation, batching and incremental updates
    come from the ``@gen`` body (an unchanged argument re-runs nothing).

    Args:
        kernel: a generative function of one argument returning the next one.
        n: the number of steps (``≥ 1``).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.core.testing.models import normal
        >>> @gen
        ... def jitter(x):
        ...     return normal(x, 0.1) @ "x"
        >>> tr = Iterate(jitter, 3).simulate((mx.array(0.0),), key=mx.random.key(0))
        >>> [str(a) for a in tr.get_choices().addresses()]
        ["(0, 'x')", "(1, 'x')", "(2, 'x')"]
    """
    if not isinstance(kernel, GenerativeFunction):
        raise TypeError(f"Iterate: kernel must be a generative function, got {kernel!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"Iterate: n must be a positive int, got {n!r}")

    @gen
    def iterate(x: Any) -> Any:
        for k in range(n):
            x = kernel(x) @ k
        return x

    iterate.name = f"Iterate({getattr(kernel, 'name', 'kernel')}, {n})"
    return iterate


def conformance_build(
    kernel: GenerativeFunction,
) -> list[tuple[GenerativeFunction, tuple[Any, ...]]]:
    """The combinator kit's builder: ``Iterate`` around one of its kernels (3 steps)."""
    return [(Iterate(kernel, 3), (mx.array(0.2),))]


def conformance_examples() -> list[tuple[GenerativeFunction, tuple[Any, ...]]]:
    """A fixed example for the kit: a Gaussian random walk of 4 steps."""
    from genmlx.core.testing.models import normal

    @gen
    def walk(x: Any) -> Any:
        return normal(x, 1.0) @ "x"

    return [(Iterate(walk, 4), (mx.array(0.0),))]
