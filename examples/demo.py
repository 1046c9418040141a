"""GenMLX demo: a Bayesian regression through simulate, generate and vectorised
importance sampling, checked against the exact answers.

Model: a, b, c ~ N(0, 1); y_i ~ N(a + b·x_i + c·x_i², 0.3) for 20 points. The prior is
Gaussian and the likelihood linear-Gaussian, so the log marginal likelihood and the
posterior mean have closed forms, printed next to the Monte Carlo estimates with their
standard errors.

Run it with ``python3 -m nox -s demo`` (or ``python examples/demo.py`` where genmlx is
installed).
"""

from __future__ import annotations

import math
import time
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import choicemap, gen
from genmlx.dists import normal

NOISE = 0.3
XS = mx.linspace(-1.0, 1.0, 20)


@gen
def regression(xs: mx.array) -> Any:
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    c = normal(0.0, 1.0) @ "c"
    normal(a + b * xs + c * xs**2, NOISE) @ "ys"
    return a + b * xs + c * xs**2


def exact_answers(xs: np.ndarray, ys: np.ndarray) -> tuple[float, np.ndarray]:
    """log p(ys) and E[a, b, c | ys] for the linear-Gaussian model."""
    phi = np.stack([np.ones_like(xs), xs, xs**2], axis=1)
    cov_y = phi @ phi.T + NOISE**2 * np.eye(len(xs))
    _, logdet = np.linalg.slogdet(cov_y)
    log_ml = -0.5 * (ys @ np.linalg.solve(cov_y, ys) + logdet + len(xs) * math.log(2 * math.pi))
    precision = phi.T @ phi / NOISE**2 + np.eye(3)
    post_mean = np.linalg.solve(precision, phi.T @ ys / NOISE**2)
    return float(log_ml), post_mean


def main() -> None:
    key = mx.random.key(2026)
    k_data, k_sim, k_gen, k_is = mx.random.split(key, 4)

    # 1. simulate: a synthetic data set from the model itself
    truth = regression.simulate((XS,), key=k_data)
    ys = truth["ys"]
    print(
        "simulate: true coefficients a, b, c =",
        [round(float(truth[a].item()), 3) for a in ("a", "b", "c")],
    )
    print(f"          trace score log p(a, b, c, ys) = {float(truth.score.item()):.3f}")

    # 2. generate: one trace consistent with the observations
    observations = choicemap({"ys": ys})
    tr, w = regression.generate((XS,), observations, key=k_gen)
    print(f"generate: one prior particle, weight log p(ys | a, b, c) = {float(w.item()):.3f}")

    # 3. vectorised importance sampling: one batched run of the body for all particles
    n = 400_000
    t0 = time.perf_counter()
    traces, log_w = regression.vgenerate((XS,), observations, n, key=k_is)
    log_ml = mx.logsumexp(log_w) - math.log(n)
    probs = mx.softmax(log_w)
    coefs = mx.stack([traces["a"], traces["b"], traces["c"]], axis=1)
    post_mean = mx.sum(probs[:, None] * coefs, axis=0)
    mx.eval(log_ml, post_mean)
    elapsed = time.perf_counter() - t0

    ess = float(1.0 / mx.sum(probs**2).item())
    # standard errors: delta method for log Z; self-normalised IS for the means
    wn = np.asarray(mx.exp(log_w - mx.max(log_w)), dtype=np.float64)
    se_log_ml = float(np.std(wn) / (np.mean(wn) * math.sqrt(n)))
    p = np.asarray(probs, dtype=np.float64)
    th = np.asarray(coefs, dtype=np.float64)
    pm = np.asarray(post_mean, dtype=np.float64)
    se_mean = np.sqrt(np.sum(p[:, None] ** 2 * (th - pm) ** 2, axis=0))

    exact_log_ml, exact_mean = exact_answers(np.asarray(XS, np.float64), np.asarray(ys, np.float64))
    print(f"\nimportance sampling: {n} particles in {elapsed * 1e3:.0f} ms, ESS = {ess:.0f}")
    print(
        f"  log marginal likelihood  estimate {float(log_ml.item()):9.4f} ± {se_log_ml:.4f}"
        f"   exact {exact_log_ml:9.4f}"
    )
    for i, name in enumerate("abc"):
        print(
            f"  posterior mean of {name}      estimate {pm[i]:9.4f} ± {se_mean[i]:.4f}"
            f"   exact {exact_mean[i]:9.4f}"
        )
    worst = max(
        abs(float(log_ml.item()) - exact_log_ml) / se_log_ml,
        *(abs(pm[i] - exact_mean[i]) / se_mean[i] for i in range(3)),
    )
    print(f"  largest error: {worst:.1f} standard errors")


if __name__ == "__main__":
    main()
