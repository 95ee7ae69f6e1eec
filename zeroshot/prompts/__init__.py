"""Prompts: typed values, their sources, key-slice rules and named strategies."""

from zeroshot.prompts.types import NEGATIVE, POSITIVE, SlicePrompt, VolumePrompts

__all__ = ["NEGATIVE", "POSITIVE", "SlicePrompt", "VolumePrompts"]
