"""The conformance kit: checks that a generative function or plugin obeys the GFI.

Plugin authors run :func:`check_gfi_laws` on their generative functions (and
distributions) and :func:`check_distribution` on their distributions (sampler against
density, gradients, shapes, batching; see :mod:`genmlx.core.testing.distributions`) in
their own test suites; ``python -m genmlx.core.testing`` runs the kit over everything
the plugin registry finds.

Example:
    >>> from genmlx.core.testing import check_gfi_laws
    >>> from genmlx.core.testing.models import linear_regression
    >>> import mlx.core as mx
    >>> check_gfi_laws(linear_regression, (mx.array([1.0, 2.0]),), max_examples=2)
"""

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
from genmlx.core.testing.laws import (
    BATCHED_LAWS,
    GFI_LAWS,
    assert_close,
    assert_same_choices,
    check_gfi_laws,
    check_gfi_laws_at,
)

__all__ = [
    "BATCHED_LAWS",
    "DISTRIBUTION_CHECKS",
    "GFI_LAWS",
    "CheckResult",
    "DistributionReport",
    "assert_close",
    "assert_same_choices",
    "check_batched_sampling",
    "check_distribution",
    "check_gfi_laws",
    "check_gfi_laws_at",
    "check_log_prob_finite",
    "check_log_prob_gradients",
    "check_normalized",
    "check_sampler_density",
    "check_shapes",
    "conformance_targets",
]


def conformance_targets() -> list[tuple[str, str, object, list[tuple[object, tuple[object, ...]]]]]:
    """``(kind, name, object, examples)`` for every registered distribution and combinator.

    A distribution provides examples through an ``example_params`` attribute (a list of
    parameter tuples); a combinator through a ``conformance_examples()`` callable
    returning ``[(generative_function, args), ...]``.
    """
    from genmlx.core.plugins.registry import registry

    reg = registry()
    out: list[tuple[str, str, object, list[tuple[object, tuple[object, ...]]]]] = []
    for entry in reg.distributions.entries():
        params = getattr(entry.obj, "example_params", None) or []
        out.append(("distribution", entry.name, entry.obj, [(entry.obj, tuple(p)) for p in params]))
    for entry in reg.combinators.entries():
        make = getattr(entry.obj, "conformance_examples", None)
        examples = list(make()) if callable(make) else []
        out.append(("combinator", entry.name, entry.obj, examples))
    return out
