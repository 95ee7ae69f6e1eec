"""Exceptions the toolkit raises for bad input; each message names the file, case or argument at fault."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "MetricsError",
    "PromptError",
    "SegmenterError",
    "VolumeError",
    "ZeroshotError",
    "ZeroshotWarning",
]


class ZeroshotError(Exception):
    """Base class: an error the user can act on (the CLI prints its message without a traceback)."""


class VolumeError(ZeroshotError):
    """An image or label file that cannot be read as the 3D volume it should be."""


class DatasetError(ZeroshotError):
    """A dataset folder, manifest or case selection that cannot be used."""


class MetricsError(ZeroshotError):
    """Masks, spacings or result tables that cannot be scored as asked."""


class PromptError(ZeroshotError):
    """A prompt strategy or prompt source that cannot produce prompts for a case."""


class SegmenterError(ZeroshotError):
    """A model that cannot be built, loaded or run as asked."""


class CheckpointError(ZeroshotError):
    """A checkpoint that is unknown, cannot be downloaded, or fails verification."""


class ConfigError(ZeroshotError):
    """A configuration (strategy YAML, run configuration, CLI option) with unknown keys or bad values."""


class ZeroshotWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints it as a one-line note).

    Examples: label files holding several structures while the default label is scored, tree images a manifest
    leaves out, box prompts that no longer cover their structure.
    """
