"""Packaging checks for genmlx-nn.

The module imports, lists its public names, and ``genmlx`` stays a PEP 420 namespace.
"""

import genmlx
import genmlx.nn


def test_public_names_are_listed_and_defined() -> None:
    assert isinstance(genmlx.nn.__all__, list)
    for public_name in genmlx.nn.__all__:
        assert hasattr(genmlx.nn, public_name), public_name


def test_genmlx_is_a_namespace_package() -> None:
    # No distribution may ship genmlx/__init__.py (PEP 420).
    assert getattr(genmlx, "__file__", None) is None
    assert len(list(genmlx.__path__)) >= 1


def test_generative_functions_are_registered_through_the_entry_point() -> None:
    from genmlx.core.plugins import Registry
    from genmlx.nn._plugin import NN_NAMES

    reg = Registry()  # loads installed entry points, as a user's registry() does
    assert set(NN_NAMES) <= set(reg.nn)
    for name in NN_NAMES:
        assert reg.nn.provider(name) == "nn"
        assert reg.nn[name] is getattr(genmlx.nn, name)
