"""ADVI's messages about latent choices it cannot fit.

The constraining transforms themselves come from the distributions' declared domains
and :mod:`genmlx.core.bijectors` (see :mod:`genmlx.infer._unconstrained`).
"""

from __future__ import annotations

from genmlx.core.address import format_address
from genmlx.infer._vi_sites import Site

__all__ = ["discrete_message"]


def discrete_message(site: Site) -> str:
    """The error for a discrete latent choice, pointing to the methods that handle it."""
    name = site.dist.name if site.dist is not None else f"dtype {site.value.dtype}"
    return (
        f"advi: the latent choice at {format_address(site.path)} is discrete ({name}); ADVI "
        "fits a Gaussian to continuous choices only. Observe or marginalise it, or fit a "
        "guide with a discrete choice using black_box_vi(..., estimator='reinforce') / "
        "black_box_vimco (score-function gradients) or ADEV (genmlx.infer.adev)"
    )
