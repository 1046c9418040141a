"""``python -m genmlx.core plugins``: list what the installed plugins register."""

from __future__ import annotations

import sys

from genmlx.core.plugins.registry import registry


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["plugins"]:
        print("usage: python -m genmlx.core plugins", file=sys.stderr)
        return 2
    print(registry().summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
