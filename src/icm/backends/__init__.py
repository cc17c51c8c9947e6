"""Backends turn (image, policy) into verdicts; resolved by name from the registry."""

from icm.backends.base import REGISTRY, Backend, BackendError, load_backend

__all__ = ["REGISTRY", "Backend", "BackendError", "load_backend"]
