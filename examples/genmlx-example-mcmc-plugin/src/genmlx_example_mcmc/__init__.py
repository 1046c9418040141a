"""An example GenMLX plugin with one of each non-distribution kind of plugin object.

* :func:`barker` — an MCMC kernel: the Barker proposal (Livingstone & Zanella 2022), a
  gradient-informed random walk that is robust to the step size;
* :func:`Iterate` — a combinator: ``Iterate(kernel, n)(x)`` feeds ``kernel``'s return
  value back into it ``n`` times;
* :func:`plot_autocorrelation` — a visualizer: the autocorrelation of each chain of a
  chain result, lag by lag.

Installed, they appear in ``genmlx.core.registry()`` (``.inference["barker"]``,
``.combinators["Iterate"]``, ``.visualizers["plot_autocorrelation"]``) and
``python -m genmlx.core.testing --only barker Iterate plot_autocorrelation`` checks
each with its conformance kit.
"""

from genmlx_example_mcmc.autocorrelation import autocorrelation, plot_autocorrelation
from genmlx_example_mcmc.barker import barker
from genmlx_example_mcmc.iterate import Iterate

__all__ = ["Iterate", "autocorrelation", "barker", "plot_autocorrelation"]
