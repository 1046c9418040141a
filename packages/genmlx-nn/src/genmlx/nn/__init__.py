"""genmlx.nn: neural networks as generative functions for GenMLX.

This package will hold ``NeuralNetGF`` (an ``mlx.nn.Module`` wrapped as a
deterministic generative function), amortized inference (VAE-style training,
neural proposals) and a language-model generative function.

The package is reserved and intentionally empty for now: its contents land with
the neural-network issue. Until then it exports nothing.
"""

__all__: list[str] = []
