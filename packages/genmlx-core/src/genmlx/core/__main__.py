"""``python -m genmlx.core plugins``: list what the installed plugins register.

Exits with status 1 when a plugin could not be loaded (it is listed under "skipped
plugins"), so that CI notices a broken installation.
"""

from __future__ import annotations

import sys

from genmlx.core.plugins.registry import registry


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["plugins"]:
        print("usage: python -m genmlx.core plugins", file=sys.stderr)
        return 2
    reg = registry()
    print(reg.summary())
    if reg.load_errors:
        print(
            f"error: {len(reg.load_errors)} plugin(s) could not be loaded (listed above)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
