"""Runtime backends: one module each behind `base.Backend`, imported only when chosen.

BACKENDS            name -> "module:Class" (the registry; adding a backend is one line here)
get_backend(name)   the Backend class (imports its module, not its package)
available_backends() names whose package is installed, checked without importing it
choose_backend(kind, requested) the backend for a model file kind ("tflite"/"onnx"/"keras")
installed_backends(kind) the installed backends `auto` may use for a kind, fastest first
"""

from __future__ import annotations

import importlib

from ..errors import InputError, MissingDependencyError
from .base import MAX_THREADS, Backend, check_threads, default_threads

BACKENDS: dict[str, str] = {
    "tflite": "edgecnn.runtime.backends.tflite:TFLiteBackend",
    "onnx": "edgecnn.runtime.backends.onnx:OnnxBackend",
    "opencv": "edgecnn.runtime.backends.opencv:OpenCVBackend",
    "keras": "edgecnn.runtime.backends.keras:KerasBackend",
}
BACKEND_CHOICES = ("auto", *BACKENDS)

# What `auto` tries for each file kind, fastest first.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "tflite": ("tflite",),
    "onnx": ("onnx", "opencv"),
    "keras": ("keras",),
}
_EXTRA_FOR_KIND = {"tflite": "tflite", "onnx": "onnx", "keras": "train"}
_PACKAGE_FOR_KIND = {
    "tflite": "ai-edge-litert (LiteRT)",
    "onnx": "onnxruntime",
    "keras": "tensorflow/keras",
}


def get_backend(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_CHOICES)}")
    module_name, cls_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def available_backends() -> list[str]:
    """Backends whose package is installed (without importing any of them)."""
    return [name for name in BACKENDS if get_backend(name).is_available()]


def backends_for(kind: str) -> list[str]:
    """Every backend that can run a model file of this kind, installed or not."""
    return [name for name in BACKENDS if kind in get_backend(name).kinds]


def installed_backends(kind: str) -> list[type[Backend]]:
    """The installed backends `auto` may use for a file kind, fastest first (none imported)."""
    return [cls for cls in map(get_backend, AUTO_ORDER[kind]) if cls.is_available()]


def choose_backend(kind: str, requested: str = "auto", *, path: object = "") -> type[Backend]:
    """The backend class for a file kind: `requested`, or the fastest installed one for `auto`.

    Raises InputError when the requested backend cannot run this kind of file, and
    MissingDependencyError (naming the pip extra) when nothing installed can."""
    where = f"{path}: " if path else ""
    if requested == "auto":
        installed = installed_backends(kind)
        if installed:
            return installed[0]
        raise MissingDependencyError(
            _PACKAGE_FOR_KIND[kind], _EXTRA_FOR_KIND[kind], f"running .{kind} files"
        )
    cls = get_backend(requested)
    if kind not in cls.kinds:
        raise InputError(
            f"{where}backend {requested!r} cannot run .{kind} files; "
            f"use one of {', '.join(backends_for(kind))} (or auto)"
        )
    if not cls.is_available():
        raise MissingDependencyError(cls.packages[0], cls.extra, f"the {requested} backend")
    return cls


__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "BACKEND_CHOICES",
    "MAX_THREADS",
    "Backend",
    "available_backends",
    "backends_for",
    "check_threads",
    "choose_backend",
    "default_threads",
    "get_backend",
    "installed_backends",
]
