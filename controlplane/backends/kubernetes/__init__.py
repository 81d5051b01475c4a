"""The Kubernetes backend: one batch/v1 Job per run."""

from controlplane.backends.kubernetes.backend import KubernetesBackend

__all__ = ["KubernetesBackend"]
