"""The documentation tells the truth: every code block of the README and of the
tutorial and guide pages runs, prints what the page says it prints, and stays within
its time budget.

Blocks, per page and in page order, sharing one namespace per page (as a reader who
pastes them one after the other):

* ``>>>`` examples: run as doctests (``ELLIPSIS``, ``NORMALIZE_WHITESPACE``); their
  output must match;
* ``.. code-block:: python`` blocks (and README ```` ```python ```` fences): executed;
* ``.. literalinclude::`` of a Python file and ``.. plot::`` of a gallery script: the
  whole file is run once (as ``__main__`` when it is a script), so every excerpt shown
  is code that runs, and its globals join the page's namespace (a later snippet may
  use what the script above it made);
* blocks in other languages (``console``, ``bash``, ``text``, ``toml``, ``json``) are shown, not
  run. A bare ``::`` literal block fails the test: its language must be said, so that
  no Python block escapes.

Budget: each block must finish within ``DEFAULT_BUDGET_S`` seconds of wall time, with
MLX's kernel cache cold or warm, unless the page says before the block what it costs,
with a comment the reader does not see: ``.. budget: 60 s`` for the next block,
``.. budget-page: 120 s`` for every later block of the page (the prose next to it
says why). ``GENMLX_DOCS_BUDGET_SCALE`` multiplies every budget (for slow machines).

Pages whose blocks train models with compiled steps (``SLOW_PAGES``: the first
compilation on Linux builds C++ kernels, minutes on a cold cache) are marked ``slow``
and run by ``nox -s tests-slow``; the others run in the default test run.

The combinator pages (``docs/combinators/``) are run by genmlx-combinators' own tests.
"""

from __future__ import annotations

import doctest
import os
import re
import runpy
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")  # the gallery scripts draw figures

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [
    *sorted(p.relative_to(ROOT).as_posix() for p in DOCS.glob("*.rst")),
    "docs/tutorial-adev.inc",
    "README.md",
]
SLOW_PAGES = {
    "docs/tutorial-vi.rst",
    "docs/tutorial-adev.inc",
    "docs/tutorial-learning.rst",
    "docs/tutorial-amortized.rst",
}
DEFAULT_BUDGET_S = 30.0
SCALE = float(os.environ.get("GENMLX_DOCS_BUDGET_SCALE", "1"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
RUN_LANGUAGES = {"python", "py", "python3", "pycon"}
SHOW_LANGUAGES = {"console", "bash", "sh", "shell", "text", "toml", "none", "ini", "rst", "json"}


@dataclass
class Block:
    kind: str  # "doctest", "python", "include"
    line: int
    source: str
    budget: float = DEFAULT_BUDGET_S
    path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _indented_body(lines: list[str], start: int, base: int) -> tuple[str, int]:
    """The block indented deeper than ``base`` from ``start`` (options skipped)."""
    i = start
    while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):  # directive options
        i += 1
    body: list[str] = []
    while i < len(lines):
        line = lines[i]
        if line.strip() and (len(line) - len(line.lstrip())) <= base:
            break
        body.append(line)
        i += 1
    while body and not body[-1].strip():
        body.pop()
    text = "\n".join(body)
    indent = min((len(x) - len(x.lstrip()) for x in body if x.strip()), default=0)
    return "\n".join(x[indent:] for x in text.splitlines()), i


def rst_blocks(path: Path) -> tuple[list[Block], list[int]]:
    """The runnable blocks of an rst page and the line numbers of bare ``::`` blocks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    bare: list[int] = []
    page_budget = DEFAULT_BUDGET_S
    budget = page_budget
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        m_page = re.match(r"^\.\. budget-page: (\d+(?:\.\d+)?) s$", stripped)
        if m_page:
            page_budget = budget = float(m_page.group(1))
            i += 1
            continue
        base = len(line) - len(line.lstrip())
        m_budget = re.match(r"^\.\. budget: (\d+(?:\.\d+)?) s$", stripped)
        m_code = re.match(r"^\.\. (?:code-block|code|sourcecode):: *(\S*)", stripped)
        m_inc = re.match(r"^\.\. (?:literalinclude|plot):: *(\S+)", stripped)
        if m_budget:
            budget = float(m_budget.group(1))
            i += 1
        elif m_code:
            lang = m_code.group(1) or "python"
            body, i = _indented_body(lines, i + 1, base)
            if lang in RUN_LANGUAGES:
                blocks.append(Block("python", i, body, budget))
                budget = page_budget
            elif lang not in SHOW_LANGUAGES:
                raise AssertionError(f"{path}:{i}: unknown code-block language {lang!r}")
        elif m_inc:
            target = (path.parent / m_inc.group(1)).resolve()
            _, i = _indented_body(lines, i + 1, base)
            if target.suffix == ".py":
                if not any(b.kind == "include" and b.path == target for b in blocks):
                    blocks.append(Block("include", i, "", budget, target))
                budget = page_budget
        elif stripped.startswith(">>>"):
            start = i
            while i < len(lines) and lines[i].strip():
                i += 1
            src = "\n".join(x[base:] for x in lines[start:i])
            blocks.append(Block("doctest", start + 1, src, budget))
            budget = page_budget
        elif stripped.endswith("::") and not stripped.startswith(".."):
            _, nxt = _indented_body(lines, i + 1, base)
            if nxt > i + 1:
                bare.append(i + 1)
            i = max(nxt, i + 1)
        else:
            i += 1
    return blocks, bare


def markdown_blocks(path: Path) -> list[Block]:
    """```python fences of a Markdown file (a ``<!-- budget: N s -->`` line before one
    sets its budget)."""
    text = path.read_text(encoding="utf-8")
    blocks: list[Block] = []
    budget = DEFAULT_BUDGET_S
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m_budget = re.match(r"^<!-- budget: (\d+(?:\.\d+)?) s -->$", lines[i].strip())
        m = re.match(r"^```(\w*)", lines[i])
        if m_budget:
            budget = float(m_budget.group(1))
            i += 1
        elif m:
            lang = m.group(1)
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            if lang in RUN_LANGUAGES:
                blocks.append(Block("python", i + 1, "\n".join(lines[i + 1 : j]), budget))
                budget = DEFAULT_BUDGET_S
            i = j + 1
        else:
            i += 1
    return blocks


def page_blocks(page: str) -> tuple[list[Block], list[int]]:
    path = ROOT / page
    if path.suffix == ".md":
        return markdown_blocks(path), []
    return rst_blocks(path)


def run_block(block: Block, namespace: dict[str, object], name: str) -> None:
    if block.kind == "python":
        exec(compile(block.source, f"{name} line {block.line}", "exec"), namespace)
    elif block.kind == "doctest":
        parser = doctest.DocTestParser()
        label = f"{name}:{block.line}"  # unique: doctest's linecache patch keys on it
        test = parser.get_doctest(block.source, namespace, label, name, block.line)
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        out: list[str] = []
        runner.run(test, out=out.append, clear_globs=False)
        namespace.update(test.globs)
        if runner.failures:
            raise AssertionError("".join(out))
    else:
        assert block.path is not None
        sys.path.insert(0, str(block.path.parent))
        argv, sys.argv = sys.argv, [str(block.path)]  # a script parses its own arguments
        try:
            script = "__name__ == \"__main__\"" in block.path.read_text(encoding="utf-8")
            made = runpy.run_path(
                str(block.path), run_name="__main__" if script else "docs_include"
            )
            namespace.update({k: v for k, v in made.items() if not k.startswith("__")})
        finally:
            sys.argv = argv
            sys.path.remove(str(block.path.parent))


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=pytest.mark.slow) if p in SLOW_PAGES else p for p in PAGES]
)
def test_page_blocks_run_within_budget(page: str, tmp_path: Path, monkeypatch) -> None:
    blocks, bare = page_blocks(page)
    assert not bare, (
        f"{page}: bare '::' literal blocks at lines {bare}; write "
        "'.. code-block:: python' (run by this test) or console/text/toml (shown only)"
    )
    monkeypatch.chdir(tmp_path)  # files the blocks write (plots, GIFs) go here
    namespace: dict[str, object] = {"__name__": "__docs__"}
    slow: list[str] = []
    for block in blocks:
        t0 = time.perf_counter()
        run_block(block, namespace, page)
        took = time.perf_counter() - t0
        if took > block.budget * SCALE:
            slow.append(f"line {block.line}: {took:.1f} s > budget {block.budget:.0f} s")
    assert not slow, f"{page}: blocks over their time budget: {slow}"


def test_every_page_is_checked() -> None:
    runnable = [p for p in PAGES if page_blocks(p)[0]]
    for page in ("README.md", "docs/getting-started.rst", "docs/tutorial-inference.rst"):
        assert page in runnable, f"{page} has no runnable block"
