"""Conformance and correctness tests of the example plugin's Gompertz distribution."""

from __future__ import annotations

import importlib.metadata

import mlx.core as mx
import numpy as np
import pytest
from genmlx_gompertz import EXAMPLES, gompertz
from scipy import stats

from genmlx.core import gen
from genmlx.core.testing import check_distribution, check_gfi_laws


@pytest.mark.parametrize("params", EXAMPLES, ids=["scalar", "batched"])
def test_conformance_kit(params: tuple) -> None:
    # sampler vs density, gradients, shapes, batching, and the GFI laws
    check_distribution(gompertz, params, max_examples=2)


@pytest.mark.parametrize("params", EXAMPLES, ids=["scalar", "batched"])
def test_gfi_laws(params: tuple) -> None:
    check_gfi_laws(gompertz, params, max_examples=3)


def test_log_prob_matches_scipy() -> None:
    eta = np.array([0.1, 1.0, 3.0])[:, None]
    b = np.array([0.5, 2.0])[:, None, None]
    x = np.array([0.0, 0.01, 0.5, 1.0, 3.0, 8.0], dtype=np.float32)
    ours = np.array(gompertz.log_prob(mx.array(x), mx.array(eta, dtype=mx.float32),
                                      mx.array(b, dtype=mx.float32)))
    ref = stats.gompertz.logpdf(x.astype(np.float64), eta, scale=1.0 / b)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_out_of_support_and_invalid_parameters() -> None:
    assert float(gompertz.log_prob(-1.0, 1.0, 1.0)) == -np.inf
    assert float(gompertz.log_prob(1.0, mx.array(-1.0), 1.0)) == -np.inf
    with pytest.raises(ValueError, match="eta"):
        gompertz.log_prob(1.0, -1.0, 1.0)


def test_usable_in_a_model() -> None:
    @gen
    def model():
        return gompertz(0.5, 1.0) @ "t"

    tr = model.simulate((), key=mx.random.key(0))
    assert float(tr.score) == pytest.approx(float(gompertz.log_prob(tr["t"], 0.5, 1.0)))


def test_entry_point_is_declared() -> None:
    eps = importlib.metadata.entry_points(group="genmlx")
    assert any(ep.name == "gompertz" and ep.value == "genmlx_gompertz.plugin" for ep in eps)


def test_registry_finds_it() -> None:
    from genmlx.core import registry

    reg = registry()
    assert reg.distributions["gompertz"] is gompertz
    assert reg.distributions.provider("gompertz") == "gompertz"
