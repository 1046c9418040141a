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
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "polyreg_is",
    "vmap_operand_order",
    "dists_sampling",
    "dists_shapes",
    "mcmc",
    "unfold_extend",
    "map_vs_vector",
    "smc_filter",
    "vi_elbo",
    "distributed_scaling",
    "exact_enumeration",
    "kalman_vs_pf",
    "nuts_models",
    "first_call",
    "posteriordb_nuts",
]


def _update_readme(name: str, text: str) -> None:
    readme = HERE / "README.md"
    content = readme.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in content:
        content += f"\n{begin}\n{end}\n"
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def _header(result: dict[str, object]) -> str:
    gpu = f" ({result['gpu']})" if result.get("gpu") else ""
    return (
        f"Measured {result.get('when', '?')} on {result.get('machine', '?')}, "
        f"MLX device {result['device']}{gpu}.\n\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=BENCHMARKS)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite README tables")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where JSON goes")
    parser.add_argument("--sizes", type=int, nargs="*", help="problem sizes (where supported)")
    parser.add_argument(
        "--render",
        type=Path,
        nargs="*",
        help="render saved results (e.g. results/polyreg_is-h200.json, measured on another "
        "machine) into README sections named after the file, and run nothing",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.render:
        for path in args.render:
            result = json.loads(path.read_text())
            mod = importlib.import_module(result["name"])
            _update_readme(path.stem, _header(result) + mod.table(result))
            print(f"rendered {path} into README section {path.stem}")
        return 0
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
        gpu = os.environ.get("GENMLX_GPU_NAME")
        if gpu:
            result["gpu"] = gpu
        suffix = "-quick" if args.quick else ""
        out = args.out / f"{name}{suffix}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        text = mod.table(result)
        print(f"== {name} ({result['device']}, {result['machine']})\n{text}")
        if not args.quick and not args.no_readme:
            _update_readme(name, _header(result) + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
