"""Build the network an nnU-Net v2 plans file describes, without importing nnunetv2.

Why: nnU-Net stores the architecture as a class path plus keyword arguments; rebuilding it from
`dynamic_network_architectures` (the package nnU-Net itself uses) keeps the state dict keys equal.
"""
from __future__ import annotations

import importlib

import torch

# Only classes from these packages may be named by a plans file: it is data, not code to run.
_ALLOWED_PREFIXES = ("dynamic_network_architectures.", "torch.nn.")


class UnsupportedModel(ValueError):
    """The model folder asks for something this engine refuses to guess at."""


def locate(path: str):
    """Import `package.module.Name` from an allowed package, with a clear error otherwise."""
    if not path.startswith(_ALLOWED_PREFIXES):
        raise UnsupportedModel(f"plans name a class outside dynamic_network_architectures/torch.nn: {path}")
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnsupportedModel(f"cannot import {path} ({exc}); is dynamic-network-architectures installed?") from exc


def build_network(architecture: dict, input_channels: int, num_classes: int) -> torch.nn.Module:
    """Instantiate the plans' `architecture` entry (class name, kwargs, kwargs that are imports)."""
    kwargs = dict(architecture["arch_kwargs"])
    for key in architecture.get("_kw_requires_import", []):
        if kwargs.get(key) is not None:
            kwargs[key] = locate(kwargs[key])
    cls = locate(architecture["network_class_name"])
    if "deep_supervision" in cls.__init__.__code__.co_varnames:
        kwargs["deep_supervision"] = False
    return cls(input_channels=input_channels, num_classes=num_classes, **kwargs)
