"""Checks of values read from strategy YAML and prompt JSON: each returns the value, typed, or raises naming where.

Every message reads ``{where}: {key}: expected ..., got ...`` so a user finds the file and the dotted key at once.
The error class is the caller's: :class:`~zeroshot.errors.ConfigError` for settings (the default),
:class:`~zeroshot.errors.PromptError` for prompt files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zeroshot.errors import ConfigError, ZeroshotError, plain

__all__ = ["boolean", "choice", "int_tuple", "integer", "known_keys", "mapping", "number", "of_type"]

Error = type[ZeroshotError]


def mapping(value: object, where: object, key: str, *, error: Error = ConfigError) -> dict[str, Any]:
    """A mapping with text keys (``None`` reads as an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise error(f"{where}: {key or 'top level'}: expected a mapping of settings, got {value!r}")
    for k in value:
        if not isinstance(k, str):
            raise error(f"{where}: {key or 'top level'}: keys must be text, got {k!r}")
    return dict(value)


def known_keys(
    data: Mapping[str, Any], allowed: tuple[str, ...], where: object, key: str, *, error: Error = ConfigError
) -> None:
    """Refuse the first key of ``data`` outside ``allowed``, listing the allowed ones with their dotted prefix."""
    unknown = [k for k in data if k not in allowed]
    if unknown:
        prefix = f"{key}." if key else ""
        raise error(
            f"{where}: {prefix}{unknown[0]}: unknown key; expected one of {', '.join(prefix + a for a in allowed)}"
        )


def choice(value: object, choices: tuple[str, ...], where: object, key: str, *, error: Error = ConfigError) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise error(f"{where}: {key}: expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def number(
    value: object,
    where: object,
    key: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    error: Error = ConfigError,
) -> float:
    """A finite number (not a boolean) within ``[minimum, maximum]``, as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise error(f"{where}: {key}: expected a finite number, got {plain(value)}")
    if minimum is not None and value < minimum:
        raise error(f"{where}: {key}: must be >= {minimum:g}, got {plain(value)}")
    if maximum is not None and value > maximum:
        raise error(f"{where}: {key}: must be <= {maximum:g}, got {plain(value)}")
    return float(value)


def integer(value: object, where: object, key: str, *, minimum: int | None = None, error: Error = ConfigError) -> int:
    """A whole number (not a boolean) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where}: {key}: expected a whole number, got {plain(value)}")
    if minimum is not None and value < minimum:
        raise error(f"{where}: {key}: must be >= {minimum}, got {plain(value)}")
    return int(value)


def boolean(value: object, where: object, key: str, *, error: Error = ConfigError) -> bool:
    """``true`` or ``false`` (not 0/1)."""
    if not isinstance(value, bool):
        raise error(f"{where}: {key}: expected true or false, got {value!r}")
    return value


def of_type(value: Any, kind: type, where: object, key: str, *, error: Error = ConfigError) -> Any:
    """A value of JSON type ``kind`` (``int`` refuses booleans), named by the type in the message."""
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        raise error(f"{where}: {key}: expected {kind.__name__}, got {value!r}")
    return value


def int_tuple(value: object, length: int, where: object, key: str, *, error: Error = ConfigError) -> tuple[int, ...]:
    """A list of exactly ``length`` integers, as a tuple."""
    if not isinstance(value, list) or len(value) != length:
        raise error(f"{where}: {key}: expected a list of {length} integers, got {value!r}")
    return tuple(of_type(v, int, where, key, error=error) for v in value)


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))
