"""Deprecated module: its contents moved.

* :func:`~genmlx.infer.mh` and :func:`~genmlx.infer.involutive_mh`:
  :mod:`genmlx.infer.metropolis`;
* :func:`~genmlx.infer.cycle`, :func:`~genmlx.infer.mix_kernels`,
  :func:`~genmlx.infer.repeat_kernel`: :mod:`genmlx.infer.kernel_combinators`;
* :func:`~genmlx.infer.chain` and :class:`~genmlx.infer.ChainResult`:
  :mod:`genmlx.infer.chain_runner`.

Importing a name from here still works for one release, with a ``DeprecationWarning``
naming its new module (``genmlx.infer.mh`` itself is the function).
"""

from __future__ import annotations

from genmlx.core.deprecation import moved

__getattr__ = moved(
    __name__,
    {
        "mh": "genmlx.infer.metropolis",
        "involutive_mh": "genmlx.infer.metropolis",
        "Involution": "genmlx.infer.metropolis",
        "Kernel": "genmlx.infer.kernel_combinators",
        "cycle": "genmlx.infer.kernel_combinators",
        "mix": "genmlx.infer.kernel_combinators:mix_kernels",
        "repeat": "genmlx.infer.kernel_combinators:repeat_kernel",
        "ChainResult": "genmlx.infer.chain_runner",
        "chain": "genmlx.infer.chain_runner",
    },
)
