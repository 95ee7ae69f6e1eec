"""What produced a run, from its ``run.json``.

Models (checkpoint SHA-256, licence), strategies, seeds, versions, device, git revision, and every invocation with
its status.

``run.json`` nests its sections and grows with the runner; this module picks the fields a reader looks for first
and shows each section's settings flattened (``key.subkey = value``), so that a field added later still appears.
The whole file is shown too (without the per-case file hashes, which only its own tools need).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zeroshot.compare.runs import find_key
from zeroshot.errors import ZeroshotError

__all__ = ["Invocation", "ModelRecord", "RunProvenance", "run_provenance"]

#: Settings shown with a model before its other settings, where recorded.
_MODEL_HEADLINE = ("backend", "weights", "checkpoint", "checkpoint_sha256", "sha256", "licence", "license", "device",
                   "precision", "image_size")  # fmt: skip
_NO_WEIGHTS = "none (weight-free baseline)"


@dataclass(frozen=True)
class ModelRecord:
    """A model as the run recorded it: headline fields first, then every other setting flattened."""

    name: str
    licence: str
    checkpoint_sha256: str
    headline: tuple[tuple[str, str], ...]
    settings: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Invocation:
    """One ``zeroshot eval`` invocation that wrote to the run."""

    started: str
    ended: str
    status: str
    host: str
    git: str
    device: str
    command: str
    shard: str
    rows_computed: str


@dataclass(frozen=True)
class RunProvenance:
    """The provenance of one run, as the page shows it."""

    root: str
    created: str
    config_sha256: str
    fixed: tuple[tuple[str, str], ...]
    seeds: str
    models: tuple[ModelRecord, ...]
    strategies: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    invocations: tuple[Invocation, ...]
    packages: tuple[tuple[str, str], ...]
    platform: str
    n_cases: int
    raw_json: str


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, value as text)`` pairs of a JSON value, in document order; lists of scalars stay one value."""
    if isinstance(value, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, item in value.items():
            pairs += flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return pairs or [(prefix, "{}")]
    if isinstance(value, list) and any(isinstance(item, (Mapping, list)) for item in value):
        pairs = []
        for index, item in enumerate(value):
            pairs += flatten(item, f"{prefix}[{index}]")
        return pairs
    return [(prefix, _text(value))]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _licences() -> dict[str, str]:
    """Licences of the named checkpoints in the checkpoint list (for runs that did not record them)."""
    try:
        from zeroshot.checkpoints import read_checkpoint_list

        return {name: entry.licence for name, entry in read_checkpoint_list().items()}
    except (ZeroshotError, OSError):  # a report is still worth writing when the list cannot be read
        return {}


def _model(name: str, record: Mapping[str, Any], licences: Mapping[str, str]) -> ModelRecord:
    recorded = {key: record[key] for key in _MODEL_HEADLINE if key in record and record[key] is not None}
    sha = next((str(v) for v in find_key(record, "checkpoint_sha256") + find_key(record, "sha256") if v), "")
    licence = str(recorded.get("licence") or recorded.get("license") or "")
    if not licence and name in licences:
        licence = f"{licences[name]} (from the checkpoint list)"
    if not licence and not sha and record.get("checkpoint") is None and record.get("model") is None:
        licence = sha = _NO_WEIGHTS
    headline = tuple((key, _text(value)) for key, value in recorded.items())
    settings = tuple(pair for pair in flatten(record) if pair[0] not in recorded)
    return ModelRecord(name, licence or "not recorded", sha or "not recorded", headline, settings)


def _invocation(record: Mapping[str, Any]) -> Invocation:
    git = record.get("git") if isinstance(record.get("git"), Mapping) else {}
    revision = str(git.get("commit") or "not recorded")
    if git.get("dirty"):
        revision += " (uncommitted changes)"
    argv = [str(a) for a in record.get("argv") or []]
    if argv:  # the program as a name: the console script or ``python -m zeroshot.cli`` is ``zeroshot``
        program = argv[0].replace("\\", "/")
        cli = program.endswith("/zeroshot") or program == "zeroshot" or program.endswith("zeroshot/cli/__main__.py")
        argv[0] = "zeroshot" if cli else program.rsplit("/", 1)[-1]
    command = shlex.join(argv)
    selection = record.get("selection") if isinstance(record.get("selection"), Mapping) else {}
    devices = sorted({str(v) for v in find_key(record.get("models", {}), "device") if v})
    device = str(record.get("device", ""))
    if devices:
        device += f" (models ran on {', '.join(devices)})"
    rows = record.get("rows_computed")
    return Invocation(
        started=str(record.get("started", "")),
        ended=str(record.get("ended", "")),
        status=str(record.get("status", "not recorded")),
        host=str(record.get("host", "")),
        git=revision,
        device=device,
        command=command,
        shard=str(selection.get("shard") or ""),
        rows_computed="" if rows is None else str(rows),
    )


def run_provenance(root: str, info: Mapping[str, Any]) -> RunProvenance:
    """The provenance of the run at ``root`` from its ``run.json`` (``info``; empty where the run has none)."""
    identity = info.get("identity") if isinstance(info.get("identity"), Mapping) else {}
    invocations = [i for i in info.get("invocations", []) if isinstance(i, Mapping)]
    models = identity.get("models") if isinstance(identity.get("models"), Mapping) else {}
    licences = _licences() if models else {}
    strategies = identity.get("strategies") if isinstance(identity.get("strategies"), Mapping) else {}
    last = invocations[-1] if invocations else {}
    packages = last.get("packages") if isinstance(last.get("packages"), Mapping) else {}
    cases = identity.get("cases") if isinstance(identity.get("cases"), Mapping) else {}
    shown = dict(info)
    if cases:
        shown["identity"] = {**identity, "cases": f"{len(cases)} cases' file hashes: see run.json"}
    return RunProvenance(
        root=root,
        created=str(info.get("created", "not recorded")),
        config_sha256=str(info.get("config_sha256", "not recorded")),
        fixed=tuple(flatten(identity.get("fixed", {}))) if identity.get("fixed") else (),
        seeds=", ".join(str(s) for s in identity.get("seeds", [])),
        models=tuple(
            _model(str(name), record, licences) for name, record in models.items() if isinstance(record, Mapping)
        ),
        strategies=tuple((str(name), tuple(flatten(settings))) for name, settings in strategies.items()),
        invocations=tuple(_invocation(record) for record in invocations),
        packages=tuple((str(k), str(v)) for k, v in packages.items()),
        platform=" ".join(str(last.get(k, "")) for k in ("python", "platform") if last.get(k)),
        n_cases=len(cases),
        raw_json=json.dumps(shown, indent=1, ensure_ascii=False) if info else "",
    )
