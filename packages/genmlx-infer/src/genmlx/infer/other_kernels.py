"""Deprecated module: :func:`~genmlx.infer.elliptical_slice` moved to
:mod:`genmlx.infer.slice_sampling` and :func:`~genmlx.infer.gibbs` to
:mod:`genmlx.infer.gibbs_enumeration`; importing them from here warns for one release."""

from __future__ import annotations

from genmlx.core.deprecation import moved

__getattr__ = moved(
    __name__,
    {
        "elliptical_slice": "genmlx.infer.slice_sampling",
        "gibbs": "genmlx.infer.gibbs_enumeration",
    },
)
