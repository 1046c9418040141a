"""``python -m genmlx.core.testing``: run the conformance kit over the plugin registry.

Every registered distribution and combinator must ship conformance examples
(``example_params`` / ``conformance_examples()``) and pass the GFI laws on them.
Exits non-zero when anything fails.
"""

from __future__ import annotations

import sys

from genmlx.core.gfi import GenerativeFunction
from genmlx.core.plugins.registry import registry
from genmlx.core.testing import check_gfi_laws, conformance_targets


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    argv = sys.argv[1:] if argv is None else argv
    max_examples = int(argv[0]) if argv else 5
    targets = conformance_targets()
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
        for gf, args in examples:
            assert isinstance(gf, GenerativeFunction)
            batched = getattr(gf, "conformance_batched", True)
            try:
                check_gfi_laws(gf, args, max_examples=max_examples, batched=batched)
            except Exception as e:  # report every failure, not just the first
                failures += 1
                print(f"FAIL {kind} {name} ({provider}) args={args!r}: {e}")
            else:
                print(f"ok   {kind} {name} ({provider}) args={args!r}")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
