"""The report every kit returns: one :class:`CheckResult` per check, and timings.

Example:
    >>> from genmlx.core.testing.report import CheckResult, KitReport
    >>> r = KitReport("kernel", "my_kernel", [CheckResult("info[discrete]", True, "ok")])
    >>> r.passed, str(r).splitlines()[1]
    (True, '  ok   info[discrete]: ok')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from genmlx.core.testing.distributions import CheckResult

__all__ = ["CheckResult", "KitReport"]


@dataclass
class KitReport:
    """The results of one kit on one object (a kernel, a combinator, a visualizer).

    Attributes:
        kit: which kit (``"kernel"``, ``"combinator"``, ``"visualizer"``).
        subject: the object's name.
        results: one entry per check (and test model, where a check runs on several).
        seconds: wall time of each check.
        notes: what the kit skipped and why (e.g. models the kernel does not apply to).
    """

    kit: str
    subject: str
    results: list[CheckResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No check failed (and at least one ran)."""
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        """The checks that failed."""
        return [r for r in self.results if not r.passed]

    def run(self, name: str, fn: Callable[[], CheckResult]) -> CheckResult:
        """Run one check, recording an exception it raises as a failure."""
        import time

        t0 = time.perf_counter()
        try:
            res = fn()
        except Exception as e:  # a crash is a failed check, reported with the rest
            res = CheckResult(name, False, f"raised {type(e).__name__}: {e}")
        self.seconds[name] = time.perf_counter() - t0
        self.results.append(res)
        return res

    def __str__(self) -> str:
        lines = [f"{self.kit} kit: {self.subject}"]
        if not self.results:
            lines.append("  FAIL nothing was checked")
        for r in self.results:
            lines.append(f"  {'ok  ' if r.passed else 'FAIL'} {r.name}: {r.detail}")
        for n in self.notes:
            lines.append(f"  note {n}")
        return "\n".join(lines)
