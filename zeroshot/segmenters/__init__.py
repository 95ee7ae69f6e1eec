"""Segmenters: the SAM2/MedSAM2 video predictors, the transformers backend and weight-free baselines."""

from zeroshot.segmenters.base import Segmentation, Segmenter, Session

__all__ = ["Segmentation", "Segmenter", "Session"]
