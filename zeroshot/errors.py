"""Exceptions the toolkit raises for bad input; each message names the file, case or argument at fault.

Messages show values with :func:`plain`, so a spacing read by numpy reads ``(0.0, 1.3, 1.0)``, not
``(np.float64(0.0), np.float64(1.3), np.float64(1.0))``.
"""

from __future__ import annotations

import numpy as np

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
    "plain",
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


def plain(value: object) -> str:
    """``value`` as an error message shows it: numbers plain, whatever type holds them.

    Like ``repr`` (text keeps its quotes, a tuple its parentheses), except that numpy scalars and arrays, also
    inside tuples and lists, print as the numbers they hold, each at its own precision (a float32 1.3 is ``1.3``).

    Examples
    --------
    >>> plain((np.float64(0.0), np.float32(1.3), 1.0))
    '(0.0, 1.3, 1.0)'
    >>> plain([np.int64(2), "T1", np.array([0.5, 1.0]), (np.bool_(True),)])
    "[2, 'T1', [0.5, 1.0], (True,)]"
    """
    if isinstance(value, np.ndarray):
        return plain(value[()]) if value.ndim == 0 else plain(list(value))
    if isinstance(value, np.bool_):
        return repr(bool(value))
    if isinstance(value, np.integer):
        return repr(int(value))
    if isinstance(value, np.floating):
        return str(value)  # numpy's shortest text that reads back as the same value of its own type
    if type(value) is tuple:
        items = [plain(item) for item in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if type(value) is list:
        return f"[{', '.join(plain(item) for item in value)}]"
    return repr(value)
