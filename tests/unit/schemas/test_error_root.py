"""Every exception class rcaflow defines hangs under ``RcaflowError``, so boundaries can map errors by type."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

from schemas.errors import RcaflowError, SchemaError

PACKAGES = ("schemas", "policies", "producers", "executors", "streams")


def _modules() -> list[ModuleType]:
    """Every module of our packages that imports in this venv (optional extras may be missing)."""
    found: list[ModuleType] = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            try:
                found.append(importlib.import_module(info.name))
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] in PACKAGES:
                    raise  # one of ours is broken: that is a failure, not an optional extra
                continue  # an optional integration not installed here (STYLE.md §8)
    return found


def _exception_classes() -> list[type[BaseException]]:
    classes: dict[str, type[BaseException]] = {}
    for module in _modules():
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.split(".")[0] in PACKAGES:
                classes[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [classes[key] for key in sorted(classes)]


EXCEPTIONS = _exception_classes()


def test_the_walk_finds_the_package_trees() -> None:
    names = {cls.__name__ for cls in EXCEPTIONS}
    # One per layer, so a broken walk (nothing imported) cannot pass the checks below vacuously.
    assert {"SchemaError", "PolicyError", "MailParseError", "ExecutorError", "ConfigurationError"} <= names
    assert len(EXCEPTIONS) > 40, sorted(names)


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_error_is_an_rcaflow_error_with_a_boolean_retriable(cls: type[BaseException]) -> None:
    assert issubclass(cls, RcaflowError), f"{cls.__module__}.{cls.__qualname__} does not subclass RcaflowError"
    assert isinstance(cls.retriable, bool), f"{cls.__qualname__}.retriable is {cls.retriable!r}"


def test_the_root_carries_one_message_and_a_per_instance_retriable() -> None:
    err = SchemaError("registry unreachable", retriable=True)
    assert (err.message, str(err), err.retriable) == ("registry unreachable", "registry unreachable", True)
    assert SchemaError("bad bytes").retriable is False
    assert SchemaError.retriable is False
