"""``python -m genmlx.core.testing``: run the conformance kit over the plugin registry.

Every registered distribution and combinator must ship conformance examples
(``example_params`` / ``conformance_examples()``). Each distribution runs
:func:`~genmlx.core.testing.check_distribution` (sampler against density, gradients,
shapes, batching, and the GFI laws) on each of its parameter tuples; each combinator
example runs the GFI laws. Exits non-zero when anything fails.

Usage::

    python -m genmlx.core.testing [MAX_EXAMPLES] [--n N] [--laws-only] [--only NAME ...]

``MAX_EXAMPLES`` (default 5) is the number of hypothesis-drawn keys per law and exact
check; ``--n`` the sample size of the statistical tests (default 20000);
``--laws-only`` skips the distribution checks other than the GFI laws; ``--only``
restricts the run to the named objects.
"""

from __future__ import annotations

import argparse
import sys

from genmlx.core.distribution import Distribution
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.plugins.registry import registry
from genmlx.core.testing import check_distribution, check_gfi_laws, conformance_targets


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m genmlx.core.testing",
        description="Run the GenMLX conformance kit over every registered plugin object.",
    )
    p.add_argument("max_examples", nargs="?", type=int, default=5, help="keys per law")
    p.add_argument("--n", type=int, default=20000, help="samples per statistical test")
    p.add_argument("--laws-only", action="store_true", help="distributions: run only the GFI laws")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="objects to check")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    targets = conformance_targets()
    if args.only:
        targets = [t for t in targets if t[1] in set(args.only)]
    failures = 0
    print(f"conformance kit over {len(targets)} registered objects")
    for kind, name, _obj, examples in targets:
        provider = (
            registry().distributions.provider(name)
            if kind == "distribution"
            else registry().combinators.provider(name)
        )
        if not examples:
            failures += 1
            print(f"FAIL {kind} {name} ({provider}): no conformance examples provided")
            continue
        for gf, gf_args in examples:
            assert isinstance(gf, GenerativeFunction)
            batched = getattr(gf, "conformance_batched", True)
            try:
                if isinstance(gf, Distribution) and not args.laws_only:
                    check_distribution(gf, gf_args, n=args.n, max_examples=args.max_examples)
                else:
                    check_gfi_laws(gf, gf_args, max_examples=args.max_examples, batched=batched)
            except Exception as e:  # report every failure, not just the first
                failures += 1
                print(f"FAIL {kind} {name} ({provider}) args={gf_args!r}: {e}")
            else:
                print(f"ok   {kind} {name} ({provider}) args={gf_args!r}", flush=True)
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
