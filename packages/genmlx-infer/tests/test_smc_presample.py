"""The particle filter's compiled step with presampled Gaussian draws
(genmlx.core.presample; on a GPU by default): the same filter, bit for bit, when the
draws are computed by MLX operations (``force("reference")``)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from genmlx.combinators import Unfold
from genmlx.core import gen, presample
from genmlx.dists import categorical, normal
from genmlx.infer import particle_filter


@gen
def lg_kernel(t, x):
    x = normal(0.9 * x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


@gen
def mixed_kernel(t, x):
    s = categorical(mx.array([0.5, 0.5])) @ "s"
    v = normal(mx.zeros(3), 1.0) @ "v"  # a vector site (odd size)
    x = normal(0.9 * x + 0.1 * v[1] + 0.2 * s, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


YS = [0.3, -0.1, 0.4, 1.2, 0.8, 0.2, -0.5, 0.1]
X0 = mx.array(0.0)  # one object: a changed argument would leave the compiled path


def _filter(kernel, n=48):
    model = Unfold(kernel)
    keys = mx.random.split(mx.random.key(1), 2 * len(YS) + 2)
    st = particle_filter(model, (1, X0), {(0, "y"): YS[0]}, n, key=keys[0])
    for t in range(1, len(YS)):
        st = st.resample(key=keys[2 * t])
        st = st.step((t + 1, X0), {(t, "y"): YS[t]}, key=keys[2 * t + 1])
    return np.array(st.log_weights), float(st.log_ml_estimate), np.array(st.traces[(5, "x")])


@pytest.mark.parametrize("kernel", [lg_kernel, mixed_kernel])
def test_filter_with_presampled_steps_is_bit_equal(kernel):
    with presample.enabled(False):
        w0, ml0, x0 = _filter(kernel)
    before = presample.stats()["kernel_calls"]
    with presample.force("reference"):
        w1, ml1, x1 = _filter(kernel)
    assert presample.stats()["kernel_calls"] > before  # the step used the plan
    assert np.array_equal(w0, w1)
    assert ml0 == ml1
    assert np.array_equal(x0, x1)
