"""The Docker backend: one fresh, hardened container per run on this machine."""

from controlplane.backends.docker.backend import DockerBackend

__all__ = ["DockerBackend"]
