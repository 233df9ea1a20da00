"""Packages that re-export lazily still hand out the object they name, whatever was imported before."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

LAZY_PACKAGES = ("producers.imap", "producers.msgraph")


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_every_export_is_the_named_object_even_after_every_submodule_is_loaded(name: str) -> None:
    package = importlib.import_module(name)
    exports: dict[str, str] = package._EXPORTS
    assert sorted(exports) == sorted(package.__all__)
    # Importing a submodule binds it on the package; an export of the same name would then be shadowed.
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{name}.{info.name}")
    for export, module in exports.items():
        assert getattr(package, export) is getattr(importlib.import_module(module), export), export
