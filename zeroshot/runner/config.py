"""What a run is asked to do (:class:`EvalConfig`), what identifies its results, and the provenance it records.

A run directory is a set of rows, each determined by its *identity*: the case (its files' SHA-256, center, split),
the model (``describe()``: architecture, checkpoint SHA-256, image size, dtype, options), the prompt strategy (its
resolved settings), the seed, and the settings every row shares (label value, metric tolerances, image size).
``run.json`` records the identity of every case, model and strategy the directory holds. Resuming compares it
with the current configuration component by component:

* a component present in both with a different identity (an edited strategy YAML, another checkpoint, a changed
  image, other tolerances) is refused, naming every difference, unless ``--new-run`` starts over;
* new cases, models, strategies or seeds *extend* the run: their rows are added beside the existing ones;
* in an interactive run (``--clicks``) the click rule (protocol, slice rule, clicks per round, mask feedback) is a
  shared setting, while more rounds extend every curve from where it ends (``identity["click_rounds"]`` records
  the largest budget asked for); a run with clicks and one without never share a directory; a run recorded before
  protocols existed (no ``protocol`` in its click rule) was made by the ``zeroshot`` protocol;
* what cannot change results is not part of the identity: the data folder's path (files are identified by
  content), the worker count, the executor, the shard, ``--save-pred``, and the device index (``cuda:1`` is
  ``cuda``; ``cpu`` versus ``cuda`` *is* part of it, since kernels and dtypes differ).

Shards of one job array and runs extended this way can be combined with ``zeroshot merge`` by the same rules,
which :class:`zeroshot.runner.identity.RunIdentity` implements.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroshot.errors import ConfigError, plain
from zeroshot.interactive import ClickSettings
from zeroshot.structure import DEFAULT_LABEL, Structure, check_label_value

__all__ = [
    "MANIFEST_FORMAT",
    "EvalConfig",
    "Shard",
    "case_identity",
    "check_seed",
    "dataset_conflict",
    "file_sha256",
    "model_identity",
    "provenance",
    "strategy_identity",
]

MANIFEST_FORMAT = 1
EXECUTORS = ("local", "ray")
#: Seeds are drawn into numpy's ``SeedSequence`` and stored as 64-bit integers in the result tables.
MAX_SEED = 2**63 - 1
#: describe() keys that say where the weights lie, which library versions ran (recorded with each invocation) or
#: where tensors are kept, not what a model computes; left out of its identity.
VOLATILE_MODEL_KEYS = frozenset(
    {
        "checkpoint",
        "checkpoint_path",
        "cache_dir",
        "device_index",
        "device_name",
        "host",
        "seconds_load",
        "torch_version",
        "sam2_version",
        "transformers_version",
        "nninteractive_version",
        "offload_video_to_cpu",
        "offload_state_to_cpu",
    }
)
#: Packages whose versions every run records.
RECORDED_PACKAGES = (
    "zeroshot",
    "torch",
    "torchvision",
    "sam2",
    "transformers",
    "nninteractive",
    "numpy",
    "pillow",
    "scipy",
    "scikit-image",
    "opencv-python-headless",
    "opencv-python",
    "nibabel",
    "pandas",
    "pyarrow",
    "ray",
)


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` of a case list, for job arrays (``--shard i/n``, ``0 <= i < n``).

    The partition is round-robin over the case list sorted by key (``sequence/case_id``): every case lands in
    exactly one shard, shard sizes differ by at most one, and the same selection gives the same partition on
    every machine. Shards of one array must use the same case selection (``zeroshot merge`` checks the rest).
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard {self.index}/{self.count}: expected i/n with n >= 1 and 0 <= i < n")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``"i/n"``."""
        index, sep, count = str(text).partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4 for the first of four shards")
        return cls(int(index), int(count))

    def select(self, cases: Sequence[Any]) -> list[Any]:
        """The cases (anything with a ``key``) of this shard."""
        ordered = sorted(cases, key=lambda c: c.key)
        return ordered[self.index :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class EvalConfig:
    """Everything ``zeroshot eval`` is asked to do.

    Attributes
    ----------
    data : Path
        Dataset folder or manifest CSV (see :func:`zeroshot.datasets.discover`).
    out : Path
        Run directory.
    models : tuple of str
        Registry names (:func:`zeroshot.segmenters.build_segmenter`), e.g. ``grabcut``, ``sam2.1_hiera_t``.
    strategies : tuple of str
        Prompt strategies: YAML paths or names (:func:`zeroshot.prompts.load_strategy`).
    seeds : tuple of int
        Seeds of the prompt draws; every strategy runs with every seed.
    sequences, centers, splits, case_ids : tuple of str
        Case selection (empty keeps all).
    layout : str or None
        Dataset layout; ``None`` detects it.
    label : int or None
        Label value of the structure in the label files (and coarse masks). ``None``: value 1, CrossPan's
        pancreas, with a notice when the label files hold several structures.
    label_name : str or None
        The structure's name (``--label pancreas`` through the dataset's ``dataset.json``), recorded in
        ``run.json``; the value alone is its identity.
    tolerances_mm : tuple of float
        NSD tolerances in mm (one ``nsd_<t>mm`` column each).
    image_size : int or None
        Model input size in pixels (passed to every model that has one); ``None`` keeps each model's own.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    save_pred : bool
        Write each prediction as NIfTI overlaying its input image.
    strict : bool
        Failed rows make the command exit non-zero.
    shard : Shard or None
        Evaluate one part of the selected cases.
    executor : {"local", "ray"}
    workers : int
        Local: scoring processes (0 scores in the main process). Ray: model actors (0 uses one per GPU, or
        one per two CPUs without GPUs).
    batch_prompts : bool
        Segment every prompt set of a case in one ``segment_many`` call (each round of every click curve
        together); rows are those of one call per prompt set, so this is recorded with each invocation but is no
        part of the run's identity.
    cases_in_flight : int
        Local executor: cases whose prompt sets propagate together in one call (SAM2's lockstep engine batches
        every volume's passes in the same steps), bounded by free GPU memory. Rows are those of one case at a
        time, so this is recorded with each invocation but is no part of the run's identity. Interactive runs,
        runs without ``batch_prompts`` and the Ray executor take one case at a time.
    new_run : bool
        If ``out`` holds a run of another configuration, move it aside (``<out>.previous-<time>``) and start over.
    retry_failed : bool
        Compute failed rows again instead of keeping them as finished.
    coarse_dir : Path or None
        Coarse masks (``<dir>/<sequence>/<case_id>.nii.gz`` or ``<dir>/<case_id>.nii.gz``) for strategies whose
        source is ``coarse``; their SHA-256 joins each case's identity.
    model_options : mapping
        Extra keyword options for every model's builder.
    clicks : ClickSettings or None
        Simulate corrective clicks (:mod:`zeroshot.interactive`): one row per case x model x strategy x seed x
        round, rounds 0 (the strategy's prompts alone) to ``clicks.rounds``. ``None``: one row per case x model x
        strategy x seed, as without clicks.
    """

    data: Path
    out: Path
    models: tuple[str, ...]
    strategies: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    sequences: tuple[str, ...] = ()
    centers: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    case_ids: tuple[str, ...] = ()
    layout: str | None = None
    label: int | None = None
    label_name: str | None = None
    tolerances_mm: tuple[float, ...] = (2.0,)
    image_size: int | None = None
    device: str = "auto"
    save_pred: bool = False
    strict: bool = False
    shard: Shard | None = None
    executor: str = "local"
    workers: int = 1
    batch_prompts: bool = True
    cases_in_flight: int = 1
    new_run: bool = False
    retry_failed: bool = False
    coarse_dir: Path | None = None
    model_options: Mapping[str, Any] = field(default_factory=dict)
    clicks: ClickSettings | None = None

    def __post_init__(self) -> None:
        _require_unique_nonempty(self.models, "--model")
        _require_unique_nonempty(self.strategies, "--strategy")
        _require_unique_nonempty(self.seeds, "--seeds")
        for seed in self.seeds:
            check_seed(seed, "--seeds")
        if self.label is not None:
            check_label_value(self.label, "--label")
        if not self.tolerances_mm or any(not (math.isfinite(t) and t > 0) for t in self.tolerances_mm):
            raise ConfigError(f"--tolerance-mm: expected positive mm values, got {plain(list(self.tolerances_mm))}")
        if self.image_size is not None and self.image_size < 16:
            raise ConfigError(f"--image-size: expected at least 16 pixels, got {self.image_size}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor {self.executor!r}: choose one of {', '.join(EXECUTORS)}")
        if self.workers < 0:
            raise ConfigError(f"--workers: expected 0 or more, got {self.workers}")
        if self.cases_in_flight < 1:
            raise ConfigError(f"--cases-in-flight: expected 1 or more, got {self.cases_in_flight}")

    @property
    def structure(self) -> Structure:
        """The run's structure: ``label`` (default 1) with its name, and whether the user chose it."""
        value = DEFAULT_LABEL if self.label is None else self.label
        return Structure(value, self.label_name, given=self.label is not None)

    def fixed_identity(self) -> dict[str, Any]:
        """The settings every row of a run shares and that change its results.

        An interactive run adds ``clicks``: the click rule without the number of rounds (a longer curve has the
        same earlier rounds, so more rounds extend a run instead of conflicting with it).
        """
        fixed: dict[str, Any] = {
            "label": self.structure.value,
            "tolerances_mm": [float(t) for t in self.tolerances_mm],
            "image_size": self.image_size,
        }
        if self.clicks is not None:
            fixed["clicks"] = {k: v for k, v in self.clicks.to_dict().items() if k != "rounds"}
        return fixed

    def selection(self) -> dict[str, Any]:
        """The case selection as asked (recorded with each invocation)."""
        return {
            "data": str(Path(self.data).resolve()),
            "layout": self.layout,
            "sequences": list(self.sequences),
            "centers": list(self.centers),
            "splits": list(self.splits),
            "case_ids": list(self.case_ids),
            "shard": str(self.shard) if self.shard else None,
            "coarse_dir": str(Path(self.coarse_dir).resolve()) if self.coarse_dir else None,
        }


def check_seed(seed: object, option: str = "--seeds") -> int:
    """Return ``seed`` if it is a whole number in ``[0, 2**63)``, else raise naming ``option``.

    Raises
    ------
    ConfigError
        A negative, too large or non-integer seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{option}: seeds are whole numbers from 0 to 2**63 - 1 = {MAX_SEED}, got {plain(seed)}")
    return seed


def _require_unique_nonempty(values: Sequence[Any], option: str) -> None:
    if not values:
        raise ConfigError(f"{option}: give at least one")
    duplicates = sorted({str(v) for v in values if list(values).count(v) > 1})
    if duplicates:
        raise ConfigError(f"{option}: given more than once: {', '.join(duplicates)}")


def _as_json_types(value: Any) -> Any:
    """``value`` as plain JSON types (a JSON round trip), so identities compare the way run.json stores them."""
    from zeroshot.store.records import json_default

    return json.loads(json.dumps(value, default=json_default, sort_keys=True))


def model_identity(description: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a model's ``describe()`` that determines its predictions.

    The device keeps only its type (``cuda:1`` -> ``cuda``); keys in :data:`VOLATILE_MODEL_KEYS` (where the
    checkpoint lies, library versions, memory placement) are dropped, and so is the free-text ``weights`` of a
    model with a ``checkpoint_sha256``: the checkpoint's SHA-256 identifies the weights wherever they lie.
    """
    identity = {k: v for k, v in _as_json_types(dict(description)).items() if k not in VOLATILE_MODEL_KEYS}
    if identity.get("checkpoint_sha256"):
        identity.pop("weights", None)
    if isinstance(identity.get("device"), str):
        identity["device"] = identity["device"].split(":")[0]
    return identity


def strategy_identity(strategy: Any) -> dict[str, Any]:
    """The resolved settings of a prompt strategy: what changes its prompts, not its name or description.

    Uses the strategy's ``settings()`` (``to_dict()`` or ``as_dict()`` where it has none, else its dataclass
    fields).
    """
    import dataclasses

    for method in ("settings", "to_dict", "as_dict"):
        if callable(getattr(strategy, method, None)):
            return _as_json_types(getattr(strategy, method)())
    if dataclasses.is_dataclass(strategy) and not isinstance(strategy, type):
        return _as_json_types(dataclasses.asdict(strategy))
    raise ConfigError(f"cannot record the settings of strategy {strategy!r}: it has no settings() and is no dataclass")


def case_identity(
    case: Any, image_sha256: str | None, label_sha256: str | None, coarse_sha256: str | None = None
) -> dict[str, Any]:
    """What identifies a case's inputs: its files' content, center and split (not where the files lie)."""
    identity = {"image_sha256": image_sha256, "label_sha256": label_sha256, "center": case.center, "split": case.split}
    if coarse_sha256 is not None:
        identity["coarse_sha256"] = coarse_sha256
    return identity


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (the data fingerprint; hashlib releases the GIL, so threads hash in parallel)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_conflict(first: Mapping[str, Any], second: Mapping[str, Any]) -> str | None:
    """Why two runs (their ``run.json`` documents) are on different datasets, or ``None`` if they may be the same.

    Two runs are on the same dataset when they record a dataset path in common (every invocation records its
    ``selection.data``), or share a case (``sequence/case_id``) whose image has the same SHA-256: shards and runs
    of one dataset on other sequences record its path, and a dataset moved between runs is recognised by a case
    they share. A run that records no dataset path is not held against the other.
    """
    paths = [_data_paths(document) for document in (first, second)]
    if not paths[0] or not paths[1] or paths[0] & paths[1]:
        return None
    images = [_case_images(document) for document in (first, second)]
    if any(images[0][key] == images[1][key] for key in set(images[0]) & set(images[1])):
        return None
    return f"{', '.join(sorted(paths[0]))} and {', '.join(sorted(paths[1]))}, with no case in common"


def _data_paths(document: Mapping[str, Any]) -> set[str]:
    """The dataset paths a ``run.json`` records (each invocation's ``selection.data``)."""
    invocations = document.get("invocations")
    found = set()
    for invocation in invocations if isinstance(invocations, list) else []:
        selection = invocation.get("selection") if isinstance(invocation, Mapping) else None
        data = selection.get("data") if isinstance(selection, Mapping) else None
        if isinstance(data, str) and data:
            found.add(data)
    return found


def _case_images(document: Mapping[str, Any]) -> dict[str, str]:
    identity = document.get("identity")
    cases = identity.get("cases") if isinstance(identity, Mapping) else None
    if not isinstance(cases, Mapping):
        return {}
    return {
        str(key): str(value["image_sha256"])
        for key, value in cases.items()
        if isinstance(value, Mapping) and value.get("image_sha256")
    }


def provenance(argv: Iterable[str] | None = None) -> dict[str, Any]:
    """Where and with what a run is made: time, host, Python, package versions, git revision, command line."""
    return {
        "started": now_utc(),
        "host": socket.gethostname(),
        "user": _user(),
        "pid": os.getpid(),
        "argv": list(sys.argv if argv is None else argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_revision(Path(__file__).resolve().parents[2]),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def now_utc() -> str:
    """The current time, ISO 8601 in UTC with seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`RECORDED_PACKAGES` (absent packages are left out)."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_revision(folder: Path) -> dict[str, Any] | None:
    """The commit and dirty state of the git checkout holding ``folder``; ``None`` outside a checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
