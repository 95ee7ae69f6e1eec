"""The identity of a run (:class:`RunIdentity`): what every row it holds was computed from.

``run.json`` stores it under ``identity`` as JSON (``fixed``, ``cases``, ``models``, ``strategies``, ``seeds``
and, for interactive runs, ``click_rounds``); this frozen value reads and writes that document, checks a new
configuration against it (:meth:`RunIdentity.check_compatible`: ``zeroshot eval`` resuming, ``zeroshot merge``)
and combines two (:meth:`RunIdentity.union`). The rules are those of :mod:`zeroshot.runner.config`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from zeroshot.errors import ConfigError
from zeroshot.store.records import json_default

__all__ = ["EVAL_REMEDY", "RunIdentity"]

#: What ``zeroshot eval`` tells the user to do when a run directory holds another configuration.
EVAL_REMEDY = (
    "Its rows would not be comparable with new ones. Pass --new-run to start over (the existing run is kept, renamed "
    "with a .previous-<time> suffix), or choose another --out."
)
_SECTIONS = (("models", "model"), ("strategies", "strategy"), ("cases", "case"))  # the order problems are named


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(json.loads(json.dumps(dict(value), default=json_default)))


@dataclass(frozen=True)
class RunIdentity:
    """What identifies the rows of a run (JSON values throughout, so it compares as ``run.json`` stores it).

    Attributes
    ----------
    fixed : mapping or None
        Settings every row shares (label value, tolerances, image size, the click rule); ``None`` where unknown
        (a partial identity, e.g. one model's), which then is not compared.
    cases, models, strategies : mapping of str to mapping
        Each component's identity by name (``sequence/case_id`` for cases).
    seeds : tuple of int
    click_rounds : int or None
        The largest click budget asked of an interactive run.
    """

    fixed: Mapping[str, Any] | None = None
    cases: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    strategies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()
    click_rounds: int | None = None

    def __post_init__(self) -> None:
        fixed = _with_click_protocol(self.fixed)
        object.__setattr__(self, "fixed", None if fixed is None else _frozen(fixed))
        for section, _ in _SECTIONS:
            items = sorted(dict(getattr(self, section)).items())
            object.__setattr__(self, section, MappingProxyType({k: _frozen(v) for k, v in items}))
        object.__setattr__(self, "seeds", tuple(sorted({int(s) for s in self.seeds})))

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | None) -> RunIdentity:
        """The identity of a ``run.json`` ``identity`` document (absent sections are empty)."""
        document = document or {}
        return cls(
            fixed=document.get("fixed"),
            cases=document.get("cases", {}),
            models=document.get("models", {}),
            strategies=document.get("strategies", {}),
            seeds=tuple(document.get("seeds", ())),
            click_rounds=document.get("click_rounds"),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``identity`` document of ``run.json``."""
        document: dict[str, Any] = {"fixed": _thawed(self.fixed or {})}
        for section in ("cases", "models", "strategies"):
            document[section] = {name: _thawed(value) for name, value in getattr(self, section).items()}
        document["seeds"] = list(self.seeds)
        if self.click_rounds is not None:
            document["click_rounds"] = self.click_rounds
        return document

    def sha256(self) -> str:
        """SHA-256 of the identity in canonical JSON (sorted keys, no whitespace): ``config_sha256`` in run.json."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def with_model(self, name: str, identity: Mapping[str, Any]) -> RunIdentity:
        """The identity with model ``name`` recorded (call :meth:`check_compatible` first)."""
        return replace(self, models={**self.models, name: identity})

    def check_compatible(self, current: RunIdentity, *, where: str, remedy: str = EVAL_REMEDY) -> None:
        """Raise :class:`ConfigError` if ``current`` contradicts this (recorded) identity where they overlap.

        Parameters
        ----------
        current : RunIdentity
        where : str
            What this identity belongs to (a run directory), named in the message.
        remedy : str
            What the user can do about it, ending the message (default: ``zeroshot eval``'s options).
        """
        problems = []
        if self.fixed is not None and current.fixed is not None:
            problems += [f"settings: {d}" for d in _differences(self.fixed, current.fixed)]
        for section, noun in _SECTIONS:
            old, new = getattr(self, section), getattr(current, section)
            for name in sorted(set(old) & set(new)):
                problems += [f"{noun} {name!r}: {d}" for d in _differences(old[name], new[name])]
        if problems:
            shown = "\n  ".join(problems[:12])
            more = f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else ""
            raise ConfigError(
                f"{where} holds results of a different configuration (was -> now):\n  {shown}{more}\n{remedy}"
            )

    def union(self, current: RunIdentity) -> RunIdentity:
        """The identity of a run holding both (call :meth:`check_compatible` first; this one's entries win)."""
        rounds = [r for r in (self.click_rounds, current.click_rounds) if r is not None]
        return RunIdentity(
            fixed=self.fixed if self.fixed is not None else current.fixed,
            cases={**current.cases, **self.cases},
            models={**current.models, **self.models},
            strategies={**current.strategies, **self.strategies},
            seeds=(*self.seeds, *current.seeds),
            click_rounds=max(rounds) if rounds else None,
        )


def _thawed(value: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(value), default=lambda v: dict(v)))


def _with_click_protocol(fixed: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``fixed`` with ``clicks.protocol`` set to ``zeroshot`` where an interactive run predates protocols.

    Runs made before the click protocols existed record a click rule without ``protocol``: theirs was the rule now
    named ``zeroshot``, so they resume and merge as such.
    """
    clicks = (fixed or {}).get("clicks")
    if not isinstance(clicks, Mapping) or "protocol" in clicks:
        return fixed
    return {**fixed, "clicks": {**clicks, "protocol": "zeroshot"}}


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                found.append(f"{name}: (absent) -> {_short(new[key])}")
            elif key not in new:
                found.append(f"{name}: {_short(old[key])} -> (absent)")
            else:
                found += _differences(old[key], new[key], name)
        return found
    if old != new:
        return [f"{prefix or 'value'}: {_short(old)} -> {_short(new)}"]
    return []


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
