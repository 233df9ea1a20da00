"""Lazy package exports: a package names what it re-exports, and each module loads on first use.

Settings and ``rcaflow --help`` import the configuration models of several
packages; with eager ``__init__`` re-exports that pulled in the Kafka client,
the IMAP client and every executor. PEP 562's module ``__getattr__`` keeps
``from executors import ToolRegistry`` working while importing only what is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``: ``exports`` maps an exported name to the module defining it."""

    def load(name: str) -> object:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # the next access is a plain attribute lookup
        return value

    return load
