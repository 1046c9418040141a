"""``python -m genmlx.core.testing``: run every conformance kit over the plugin registry.

* **distributions** — :func:`~genmlx.core.testing.check_distribution` (sampler against
  density, gradients, shapes, batching, GFI laws) on each ``example_params`` tuple;
* **combinators** — the combinator kit
  (:func:`~genmlx.core.testing.combinators.check_combinator`) around every kernel of
  its family through ``conformance_build``, and on ``conformance_examples()``;
* **kernels** — the kernel kit (:func:`~genmlx.core.testing.kernels.check_kernel`) on
  every inference entry that declares ``conformance_kernel`` (the others are
  algorithms, not kernels, and are listed as such);
* **visualizers** — the visualizer kit
  (:func:`~genmlx.core.testing.visualizers.check_visualizer`) on every visualizer that
  declares ``accepts``.

A distribution without examples, or a combinator without a builder or examples, fails;
a visualizer without ``accepts`` is skipped (a failure with ``--strict``). Exits 1 when
anything fails, else 0.

Usage::

    python -m genmlx.core.testing [MAX_EXAMPLES] [--n N] [--laws-only]
        [--only NAME ...] [--kits KIT ...] [--thorough] [--strict]

``MAX_EXAMPLES`` (default 5) is the number of hypothesis-drawn keys per law and exact
check; ``--n`` the sample size of the distributions' statistical tests (default
20000); ``--laws-only`` skips the distribution checks other than the GFI laws;
``--only`` restricts the run to the named objects; ``--kits`` to some kits
(``distributions combinators kernels visualizers``); ``--thorough`` runs the kernel
kit's larger experiments.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from genmlx.core.plugins.registry import Registry, registry

KITS: tuple[str, ...] = ("distributions", "combinators", "kernels", "visualizers")
"""The kits, in the order they run."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m genmlx.core.testing",
        description="Run the GenMLX conformance kits over every registered plugin object.",
    )
    p.add_argument("max_examples", nargs="?", type=int, default=5, help="keys per law")
    p.add_argument("--n", type=int, default=20000, help="samples per statistical test")
    p.add_argument("--laws-only", action="store_true", help="distributions: run only the GFI laws")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="objects to check")
    p.add_argument("--kits", nargs="+", default=list(KITS), choices=KITS, help="kits to run")
    p.add_argument("--thorough", action="store_true", help="larger kernel-kit experiments")
    p.add_argument("--strict", action="store_true", help="objects the kits skip fail")
    return p


class _Tally:
    def __init__(self) -> None:
        self.failures = 0
        self.skips = 0

    def ok(self, kind: str, name: str, provider: str, extra: str = "") -> None:
        print(f"ok   {kind} {name} ({provider}){extra}", flush=True)

    def fail(self, kind: str, name: str, provider: str, why: str) -> None:
        self.failures += 1
        print(f"FAIL {kind} {name} ({provider}){why}", flush=True)

    def skip(self, kind: str, name: str, provider: str, why: str) -> None:
        self.skips += 1
        print(f"skip {kind} {name} ({provider}): {why}", flush=True)


def _indent(text: str) -> str:
    return "\n" + "\n".join("     " + line for line in text.splitlines())


def _distributions(
    reg: Registry, args: argparse.Namespace, wanted: set[str] | None, t: _Tally
) -> None:
    from genmlx.core.testing import check_distribution, check_gfi_laws

    for entry in reg.distributions.entries():
        if wanted is not None and entry.name not in wanted:
            continue
        params = entry.examples()
        if not params:
            t.fail("distribution", entry.name, entry.plugin, ": no conformance examples provided")
            continue
        batched = bool(entry.info("conformance_batched", True))
        for p in params:
            p = tuple(p)
            try:
                if args.laws_only:
                    check_gfi_laws(entry.obj, p, max_examples=args.max_examples, batched=batched)
                else:
                    check_distribution(entry.obj, p, n=args.n, max_examples=args.max_examples)
            except Exception as e:  # report every failure, not just the first
                t.fail("distribution", entry.name, entry.plugin, f" args={p!r}: {e}")
            else:
                t.ok("distribution", entry.name, entry.plugin, f" args={p!r}")


def _combinators(
    reg: Registry, args: argparse.Namespace, wanted: set[str] | None, t: _Tally
) -> None:
    from genmlx.core.testing.combinators import check_combinator

    for entry in reg.combinators.entries():
        if wanted is not None and entry.name not in wanted:
            continue
        build = entry.info("conformance_build")
        examples = entry.examples()
        if build is None:
            t.fail(
                "combinator",
                entry.name,
                entry.plugin,
                ": declares no conformance_build(kernel) (register(..., conformance_build=...)"
                " or an attribute), so the kit cannot apply it to its kernel family",
            )
            continue
        report = check_combinator(
            build,
            name=entry.name,
            examples=examples,
            max_examples=args.max_examples,
            batched=bool(entry.info("conformance_batched", True)),
            raise_on_failure=False,
        )
        if report.passed:
            t.ok("combinator", entry.name, entry.plugin, f": {len(report.results)} checks")
        else:
            t.fail("combinator", entry.name, entry.plugin, _indent(str(report)))


def _kernels(reg: Registry, args: argparse.Namespace, wanted: set[str] | None, t: _Tally) -> None:
    from genmlx.core.testing.kernels import QUICK, THOROUGH, check_kernel

    others = []
    for entry in reg.inference.entries():
        if wanted is not None and entry.name not in wanted:
            continue
        factory = entry.info("conformance_kernel")
        if factory is None:
            others.append(entry.name)
            continue
        t0 = time.perf_counter()
        report = check_kernel(
            factory,
            name=entry.name,
            settings=THOROUGH if args.thorough else QUICK,
            info_fields=tuple(entry.info("info_fields", ()) or ()),
            raise_on_failure=False,
        )
        secs = time.perf_counter() - t0
        if report.passed:
            t.ok("kernel", entry.name, entry.plugin, f": {len(report.results)} checks, {secs:.1f}s")
        else:
            t.fail("kernel", entry.name, entry.plugin, _indent(str(report)))
    if others:
        print(
            f"note {len(others)} inference entries declare no conformance_kernel (algorithms, "
            f"not kernels; not checked by the kernel kit): {', '.join(sorted(others))}"
        )


def _visualizers(
    reg: Registry, args: argparse.Namespace, wanted: set[str] | None, t: _Tally
) -> None:
    entries = [e for e in reg.visualizers.entries() if wanted is None or e.name in wanted]
    checkable = []
    for entry in entries:
        if entry.info("accepts"):
            checkable.append(entry)
        else:
            t.skip(
                "visualizer",
                entry.name,
                entry.plugin,
                "declares no accepts= (the result types it draws), so the kit cannot call it",
            )
    if not checkable:
        return
    import matplotlib

    matplotlib.use("Agg")  # draw off-screen whatever the user's backend
    from genmlx.core.testing.visualizers import check_visualizer

    for entry in checkable:
        report = check_visualizer(
            entry.obj,
            tuple(entry.info("accepts")),
            name=entry.name,
            call=entry.info("conformance_call"),
            raise_on_failure=False,
        )
        if report.passed:
            t.ok("visualizer", entry.name, entry.plugin, f": {len(report.results)} checks")
        else:
            t.fail("visualizer", entry.name, entry.plugin, _indent(str(report)))


def main(argv: Sequence[str] | None = None, reg: Registry | None = None) -> int:
    """Command-line entry point (``reg``: the registry to check, default the global one)."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    reg = registry() if reg is None else reg
    wanted = set(args.only) if args.only else None
    tally = _Tally()
    counts = {
        k: len(reg.category(k).entries())
        for k in ("distributions", "combinators", "inference", "visualizers")
    }
    print(
        "conformance kits over the registry: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + f" (kits: {', '.join(args.kits)})"
    )
    runners = {
        "distributions": _distributions,
        "combinators": _combinators,
        "kernels": _kernels,
        "visualizers": _visualizers,
    }
    for kit in KITS:
        if kit in args.kits:
            runners[kit](reg, args, wanted, tally)
    failures = tally.failures + (tally.skips if args.strict else 0)
    print(f"{tally.failures} failure(s), {tally.skips} skipped")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
