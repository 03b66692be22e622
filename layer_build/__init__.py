"""Reproducible, Docker-free build of the Pillow Lambda layer for each supported runtime and architecture.

The public API the Pulumi program uses: ``ensure_layer`` (build or reuse), ``artifact_for``
(describe a prebuilt zip), and ``RUNTIMES``/``ARCHITECTURES``, the one definition of what
config may ask for.
"""

from __future__ import annotations

from layer_build.build import (
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    LayerArtifact,
    artifact_for,
    check_size,
    ensure_layer,
)
from layer_build.runtimes import (
    ARCHITECTURES,
    RUNTIMES,
    LayerBuildError,
    RuntimeInfo,
    UnsupportedTargetError,
)

__all__ = [
    "ARCHITECTURES",
    "LAMBDA_UNZIPPED_LIMIT_BYTES",
    "RUNTIMES",
    "LayerArtifact",
    "LayerBuildError",
    "RuntimeInfo",
    "UnsupportedTargetError",
    "artifact_for",
    "check_size",
    "ensure_layer",
]
