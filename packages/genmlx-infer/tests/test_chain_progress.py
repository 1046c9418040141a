"""chain(progress=True): a tqdm bar when tqdm is installed, a clear error otherwise."""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import mlx.core as mx
import pytest

from genmlx.core import gen, select
from genmlx.dists import normal
from genmlx.infer import chain, mh


@gen
def model() -> Any:
    mu = normal(0.0, 1.0) @ "mu"
    normal(mu, 1.0) @ "y"


def _run(progress: bool) -> Any:
    tr, _ = model.vgenerate((), {"y": 1.0}, 8, key=mx.random.key(0))
    kernel = partial(mh, selection_or_proposal=select("mu"))
    return chain(kernel, tr, 12, key=mx.random.key(1), addresses=["mu"], progress=progress)


def test_progress_bar_gives_the_same_chain(capsys: pytest.CaptureFixture[str]) -> None:
    with_bar = _run(True)
    without = _run(False)
    assert mx.array_equal(with_bar.samples["mu"], without.samples["mu"]).item()
    assert "chain" in capsys.readouterr().err  # tqdm writes to stderr


def test_progress_without_tqdm_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install tqdm"):
        _run(True)
