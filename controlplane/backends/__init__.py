"""Sandbox engines behind one contract (``base.Backend``), picked by name through a lazy registry.

Importing this package imports no engine client: ``get_backend("docker")`` imports docker-py only when
asked for, and says which extra to install when the client library is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from controlplane.core.errors import BackendNotInstalled

if TYPE_CHECKING:
    from controlplane.backends.base import Backend
    from controlplane.core.settings import Settings

_REGISTRY: dict[str, tuple[str, str, str]] = {
    # name: (module, class, pip requirement that provides the engine client)
    "docker": ("controlplane.backends.docker.backend", "DockerBackend", "docker"),
    "kubernetes": ("controlplane.backends.kubernetes.backend", "KubernetesBackend", "kubernetes_asyncio"),
    "fake": ("controlplane.backends.fake", "FakeBackend", ""),
}


def available() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str, settings: Settings, **kwargs: Any) -> Backend:
    try:
        module_name, class_name, requirement = _REGISTRY[name]
    except KeyError:
        raise BackendNotInstalled(f"unknown backend {name!r}; choose one of {', '.join(available())}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if requirement and exc.name and exc.name.split(".")[0] == requirement:
            raise BackendNotInstalled(
                f"backend {name!r} needs the {requirement!r} package: pip install 'controlplane[{name}]'"
            ) from exc
        raise
    cls = getattr(module, class_name)
    backend: Backend = cls(settings, **kwargs)
    return backend
