"""Segmenters: the SAM2/MedSAM2 video predictors, the transformers backend, nnInteractive and weight-free baselines."""

from importlib import import_module
from typing import Any

from zeroshot.segmenters.base import Segmentation, Segmenter, Session

__all__ = [
    "BoxFillSegmenter",
    "GrabCutSegmenter",
    "NnInteractiveSegmenter",
    "Sam2Segmenter",
    "Segmentation",
    "Segmenter",
    "Session",
    "TransformersVideoSegmenter",
    "available_models",
    "build_segmenter",
    "cached_models",
]

#: Names resolved on first use, so that importing this package does not import torch, sam2 or Hydra.
_LAZY = {
    "BoxFillSegmenter": "zeroshot.segmenters.boxfill",
    "GrabCutSegmenter": "zeroshot.segmenters.grabcut",
    "NnInteractiveSegmenter": "zeroshot.segmenters.nninteractive",
    "Sam2Segmenter": "zeroshot.segmenters.sam2_video",
    "TransformersVideoSegmenter": "zeroshot.segmenters.transformers_video",
    "available_models": "zeroshot.segmenters.registry",
    "build_segmenter": "zeroshot.segmenters.registry",
    "cached_models": "zeroshot.segmenters.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
