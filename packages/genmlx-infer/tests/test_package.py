"""Packaging checks for genmlx-infer.

The module imports, lists its public names, and ``genmlx`` stays a PEP 420 namespace.
"""

import genmlx
import genmlx.infer


def test_public_names_are_listed_and_defined() -> None:
    assert isinstance(genmlx.infer.__all__, list)
    for public_name in genmlx.infer.__all__:
        assert hasattr(genmlx.infer, public_name), public_name


def test_genmlx_is_a_namespace_package() -> None:
    # No distribution may ship genmlx/__init__.py (PEP 420).
    assert getattr(genmlx, "__file__", None) is None
    assert len(list(genmlx.__path__)) >= 1


def test_algorithms_are_registered_through_the_entry_point() -> None:
    from genmlx.core.plugins import Registry
    from genmlx.infer._plugin import INFERENCE_NAMES

    reg = Registry()  # loads installed entry points, as a user's registry() does
    assert set(INFERENCE_NAMES) <= set(reg.inference)
    for name in INFERENCE_NAMES:
        assert reg.inference.provider(name) == "infer"
        assert reg.inference[name] is getattr(genmlx.infer, name)
