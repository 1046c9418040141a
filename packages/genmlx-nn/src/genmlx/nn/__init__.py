"""genmlx.nn: neural networks as generative functions for GenMLX.

* :class:`NeuralNetGF` — any ``mlx.nn.Module`` as a deterministic generative function
  (no choices, score 0) whose trainable parameters are GenMLX parameters named
  ``f"{name}/{path}"``, so models that mix networks and random choices train end to
  end with ``param_gradients``/``mx.value_and_grad`` and ``mlx.optimizers``;
  :func:`param_store` and :func:`load_params` move parameters between modules and a
  :class:`~genmlx.core.ParamStore`.
* amortized inference — :func:`elbo` (reparameterised ELBO of an encoder and a model,
  batched over data), :func:`amortized_elbo_objective` (it as an objective for
  :func:`genmlx.infer.optimize`), :func:`make_elbo_step` and :func:`train_amortized`
  (VAE-style training through the one optimisation loop); a trained encoder is a neural proposal for
  ``genmlx.infer.importance_sampling``.
* :class:`LanguageModelGF` — an autoregressive token model (mlx-lm's calling
  convention) as a generative function whose tokens are categorical choices at
  ``("t", i)``, with EOS handling, scoring of constrained continuations, rescoring
  updates and batched generation.

The package registers ``NeuralNetGF`` and ``LanguageModelGF`` with the plugin registry
(``genmlx.core.registry().nn``) through the ``genmlx`` entry point.
"""

from genmlx.nn.amortized import (
    AmortizedFit,
    amortized_elbo_objective,
    elbo,
    make_elbo_step,
    train_amortized,
)
from genmlx.nn.language_model import LanguageModelGF, LanguageModelTrace
from genmlx.nn.network import NeuralNetGF
from genmlx.nn.params import load_params, param_store

__all__ = [
    "AmortizedFit",
    "LanguageModelGF",
    "LanguageModelTrace",
    "NeuralNetGF",
    "amortized_elbo_objective",
    "elbo",
    "load_params",
    "make_elbo_step",
    "param_store",
    "train_amortized",
]
