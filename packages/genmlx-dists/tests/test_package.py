"""Packaging checks for genmlx-dists.

The module imports, lists its public names, and ``genmlx`` stays a PEP 420 namespace.
"""

import genmlx
import genmlx.dists


def test_public_names_are_listed_and_defined() -> None:
    assert isinstance(genmlx.dists.__all__, list)
    for public_name in genmlx.dists.__all__:
        assert hasattr(genmlx.dists, public_name), public_name


def test_genmlx_is_a_namespace_package() -> None:
    # No distribution may ship genmlx/__init__.py (PEP 420).
    assert getattr(genmlx, "__file__", None) is None
    assert len(list(genmlx.__path__)) >= 1
