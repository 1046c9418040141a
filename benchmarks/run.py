"""Run GenMLX's benchmarks, write JSON results and the tables in benchmarks/README.md.

    python benchmarks/run.py            # every benchmark, full sizes
    python benchmarks/run.py --quick    # smaller sizes (a smoke run)
    python benchmarks/run.py polyreg_is # one benchmark

Each benchmark module exposes ``run(quick) -> dict`` and ``table(result) -> str``.
Results go to ``benchmarks/results/<name>.json``; the README section between
``<!-- <name>:begin -->`` and ``<!-- <name>:end -->`` is replaced by the new table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["polyreg_is", "vmap_operand_order"]


def _update_readme(name: str, text: str) -> None:
    readme = HERE / "README.md"
    content = readme.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in content:
        content += f"\n{begin}\n{end}\n"
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=BENCHMARKS)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite README tables")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where JSON goes")
    parser.add_argument("--sizes", type=int, nargs="*", help="problem sizes (where supported)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        mod = importlib.import_module(name)
        kwargs = {"sizes": args.sizes} if args.sizes else {}
        result = mod.run(quick=args.quick, **kwargs)
        result["when"] = datetime.now(UTC).isoformat(timespec="seconds")
        result["machine"] = (
            f"{platform.machine()} {platform.system()}, python {platform.python_version()}"
        )
        result["quick"] = args.quick
        suffix = "-quick" if args.quick else ""
        out = args.out / f"{name}{suffix}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        text = mod.table(result)
        print(f"== {name} ({result['device']}, {result['machine']})\n{text}")
        if not args.quick and not args.no_readme:
            header = (
                f"Measured {result['when']} on {result['machine']}, "
                f"MLX device {result['device']}.\n\n"
            )
            _update_readme(name, header + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
