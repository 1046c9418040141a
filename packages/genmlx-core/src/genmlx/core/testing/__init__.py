"""The conformance kits: checks that a generative function or plugin does what it says.

* distributions — :func:`check_distribution` (sampler against density, gradients,
  shapes, batching; :mod:`genmlx.core.testing.distributions`) and the GFI laws
  (:func:`check_gfi_laws`) for any generative function;
* MCMC kernels — :func:`check_kernel` (:mod:`genmlx.core.testing.kernels`): the
  posterior stays invariant on models with exact posteriors, SBC, batched against
  single chains, key determinism, acceptance info;
* combinators — :func:`check_combinator` (:mod:`genmlx.core.testing.combinators`):
  the GFI laws, batched laws and the incremental-update law around a family of kernels;
* visualizers — :func:`check_visualizer` (:mod:`genmlx.core.testing.visualizers`):
  every declared result type draws into a matplotlib figure without warnings.

Plugin authors call them in their own test suites (the pytest plugin,
:mod:`genmlx.core.testing.pytest_plugin`, gives fixtures such as ``genmlx_kernel_kit``);
``python -m genmlx.core.testing`` runs every kit over everything the plugin registry
finds.

Example:
    >>> from genmlx.core.testing import check_gfi_laws
    >>> from genmlx.core.testing.models import linear_regression
    >>> import mlx.core as mx
    >>> check_gfi_laws(linear_regression, (mx.array([1.0, 2.0]),), max_examples=2)
"""

from genmlx.core.testing.combinators import check_combinator
from genmlx.core.testing.distributions import (
    DISTRIBUTION_CHECKS,
    CheckResult,
    DistributionReport,
    check_batched_sampling,
    check_distribution,
    check_log_prob_finite,
    check_log_prob_gradients,
    check_normalized,
    check_sampler_density,
    check_shapes,
)
from genmlx.core.testing.kernels import check_kernel
from genmlx.core.testing.laws import (
    BATCHED_LAWS,
    GFI_LAWS,
    assert_close,
    assert_same_choices,
    check_gfi_laws,
    check_gfi_laws_at,
)
from genmlx.core.testing.report import KitReport
from genmlx.core.testing.visualizers import check_visualizer

__all__ = [
    "BATCHED_LAWS",
    "DISTRIBUTION_CHECKS",
    "GFI_LAWS",
    "CheckResult",
    "DistributionReport",
    "KitReport",
    "assert_close",
    "assert_same_choices",
    "check_batched_sampling",
    "check_combinator",
    "check_distribution",
    "check_gfi_laws",
    "check_gfi_laws_at",
    "check_kernel",
    "check_log_prob_finite",
    "check_log_prob_gradients",
    "check_normalized",
    "check_sampler_density",
    "check_shapes",
    "check_visualizer",
    "conformance_targets",
]


def conformance_targets() -> list[tuple[str, str, object, list[tuple[object, tuple[object, ...]]]]]:
    """``(kind, name, object, examples)`` for every registered distribution and combinator.

    The examples are those registered with the object (``register(obj, examples=...)``:
    parameter tuples for a distribution, ``[(generative_function, args), ...]`` for a
    combinator; see :meth:`~genmlx.core.plugins.registry.Entry.examples`).
    """
    from genmlx.core.plugins.registry import registry

    reg = registry()
    out: list[tuple[str, str, object, list[tuple[object, tuple[object, ...]]]]] = []
    for entry in reg.distributions.entries():
        params = entry.examples()
        out.append(("distribution", entry.name, entry.obj, [(entry.obj, tuple(p)) for p in params]))
    for entry in reg.combinators.entries():
        out.append(("combinator", entry.name, entry.obj, entry.examples()))
    return out
