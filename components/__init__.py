"""Reusable Pulumi components and the pure helpers (config, names, policies) they are built from."""

from __future__ import annotations

from components.image_pipeline import ImagePipeline, ImagePipelineArgs

__all__ = ["ImagePipeline", "ImagePipelineArgs"]
