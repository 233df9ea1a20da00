"""A lazy name → "module:Class" registry, so adding a tool is one file plus one entry in ``schemas.operations``.

Like faust's ``FactoryMapping``: nothing is imported until an action names the
operation, so an optional SDK missing for one tool cannot break the others.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Any

from executors.base import ActionSpec, Executor
from executors.errors import ToolNotConfiguredError, UnknownToolError
from schemas.operations import ACTIONS

logger = logging.getLogger(__name__)

#: The actions (``tool.operation`` → ``"module:Class"``) the policy file, the executors and the executor
#: consumer agree on, read from the one catalogue in ``schemas.operations``.
DEFAULT_TOOLS: Mapping[str, str] = {op.name: op.implementation for op in ACTIONS}


def resolve(target: str) -> object:
    """The attribute a ``"module:Class"`` string names, importing its module now (``None`` if it has no such name).

    Raises ImportError when the module (or an optional SDK it needs) is not installed.
    """
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr, None)


class ToolRegistry:
    """Resolves ``tool.operation`` to a ready executor, handing it its backend by injection.

    ``backends`` maps a backend key to the object the operations of that family
    take: ``"k8s"`` → :class:`executors.tools.k8s.K8sApi` (also used by
    ``diagnostics``), ``"http"`` → :class:`executors.tools.http_reload.ReloadEndpoints`,
    ``"alertmanager"`` → :class:`executors.tools.alertmanager.AlertmanagerApi`.
    A missing key means "not configured here": dry runs still describe, real runs fail.
    """

    def __init__(
        self,
        backends: Mapping[str, object] | None = None,
        tools: Mapping[str, str] = DEFAULT_TOOLS,
    ) -> None:
        self._backends = dict(backends or {})
        self._tools = dict(tools)
        self._instances: dict[str, Executor[Any]] = {}

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def executor_class(self, name: str) -> type[Executor[Any]]:
        try:
            target = self._tools[name]
        except KeyError:
            raise UnknownToolError(
                f"no tool registered for {name!r}; known: {', '.join(self.names())}"
            ) from None
        try:
            cls = resolve(target)
        except ImportError as exc:
            raise ToolNotConfiguredError(f"{name} is not available in this installation: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Executor)):
            raise UnknownToolError(f"registry entry {name!r} -> {target!r} is not an Executor")
        if cls.spec.name != name:
            raise UnknownToolError(f"registry entry {name!r} -> {target!r} declares {cls.spec.name!r}")
        return cls

    def spec(self, name: str) -> ActionSpec:
        return self.executor_class(name).spec

    def specs(self) -> list[ActionSpec]:
        """Every registered operation's declaration (e.g. for an LLM-facing catalogue)."""
        return [self.spec(name) for name in self.names()]

    async def aclose(self) -> None:
        """Close the backends that hold connections (HTTP clients); the registry is done after this."""
        for backend in self._backends.values():
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()

    def get(self, name: str) -> Executor[Any]:
        """The executor for ``name``, built once with its backend (``None`` when not configured)."""
        if name not in self._instances:
            cls = self.executor_class(name)
            backend = self._backends.get(cls.backend) if cls.backend else None
            self._instances[name] = cls.from_backend(backend)
        return self._instances[name]
