"""genmlx.viz: visualization for GenMLX.

This package will hold trace and posterior plots, SMC animations and ArviZ
export; every plotting function returns a matplotlib figure.

The package is reserved and intentionally empty for now: its contents land with
the visualization issue. Until then it exports nothing.
"""

__all__: list[str] = []
