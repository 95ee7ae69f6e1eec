"""Segmenters by name: ``build_segmenter("medsam2")``, ``build_segmenter("box-fill")``, and the names in between.

A name is one of, tried in this order:

``box-fill``, ``grabcut``
    Weight-free baselines (:mod:`zeroshot.segmenters.boxfill`, :mod:`zeroshot.segmenters.grabcut`); they run
    on the CPU whatever ``device`` says.
``random:CONFIG[@SIZE]``, ``random:ENTRY[@SIZE]``
    A SAM2 model built from a real config (``random:sam2.1_hiera_t@256``: SAM2.1-tiny at 256 px), or from the
    config and options of a sam2 entry of the checkpoint list (``random:medsam2``: MedSAM2's recipe), with random
    weights drawn from ``seed`` (default 0). ``random:transformers-tiny[@SIZE]`` is a small random
    ``Sam2VideoModel`` (about 4 M parameters, 128 px by default) and ``random:sam3[@SIZE]`` a small random
    ``Sam3TrackerVideoModel`` (SAM 3's tracker, about 6 M parameters, 56 px by default), both on the transformers
    backend. For tests and speed measurements: they measure the machinery, never accuracy, and their
    ``describe()`` says so.
``NAME[@SIZE]``
    An entry of the checkpoint list (``zeroshot checkpoints list``): its cached file, verified against its
    SHA-256 now, with the entry's backend, config and options (``medsam2``, ``sam2.1-tiny@512``, ``sam3``). An
    entry not yet downloaded is an error that gives the ``zeroshot checkpoints download NAME`` command. ``@SIZE``
    on a transformers entry runs it at that size where its layout allows
    (:func:`~zeroshot.segmenters.transformers_video.resize_video_config`). SAM 3.1 is refused with the reason
    (no ``transformers`` release loads it).
``PATH`` of a folder holding ``config.json`` (a ``transformers`` model folder, e.g. one ``save_pretrained`` wrote)
    Loaded by the transformers backend like a local ``.pt`` by the sam2 backend (``PATH@SIZE`` as above).
``PATH`` (a file that exists, or a name ending in ``.pt`` / ``.pth``)
    A local SAM2-format checkpoint; ``config=`` (CLI ``--config``) names its SAM2 config, or a sam2 entry of the
    checkpoint list whose config and options it runs with (``config="medsam2"``: a MedSAM2 file held locally
    runs MedSAM2's recipe). Its SHA-256 is recorded in ``describe()``, but nothing is known to check it against.
``nninteractive:PATH``, or ``PATH`` of a folder holding ``plans.json`` and ``dataset.json``
    A local nnInteractive trained-model folder (:mod:`zeroshot.segmenters.nninteractive`); the SHA-256 of its
    file manifest is recorded in ``describe()``.

``@SIZE`` sets ``image_size`` (the memory-attention RoPE sizes follow). Keyword options go to the backend and
override the entry's options. This module imports no model code until a model is built.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroshot.checkpoints import (
    CheckpointEntry,
    checkpoint_status,
    read_checkpoint_list,
    resolve_checkpoint,
)
from zeroshot.errors import SegmenterError
from zeroshot.segmenters.base import Segmenter

__all__ = [
    "BACKENDS",
    "BASELINES",
    "RANDOM_EXAMPLES",
    "Backend",
    "available_models",
    "build_segmenter",
    "cached_models",
]


@dataclass(frozen=True)
class Backend:
    """How the registry builds one backend's segmenter.

    Attributes
    ----------
    module, cls : str
        Where the segmenter class lives (imported only when a model is built).
    weights_argument : str
        The constructor argument that takes the cached weights (a file, or a folder for transformers).
    sha256_attribute : str
        The segmenter attribute holding the SHA-256 of the weights it loaded.
    """

    module: str
    cls: str
    weights_argument: str
    sha256_attribute: str


#: Weight-free baselines: name -> (module, class).
BASELINES = {
    "box-fill": ("zeroshot.segmenters.boxfill", "BoxFillSegmenter"),
    "grabcut": ("zeroshot.segmenters.grabcut", "GrabCutSegmenter"),
}
#: Backends of checkpoint-list entries.
BACKENDS = {
    "sam2": Backend("zeroshot.segmenters.sam2_video", "Sam2Segmenter", "checkpoint", "checkpoint_sha256"),
    "transformers": Backend(
        "zeroshot.segmenters.transformers_video", "TransformersVideoSegmenter", "model_id_or_path", "weights_sha256"
    ),
    "nninteractive": Backend(
        "zeroshot.segmenters.nninteractive", "NnInteractiveSegmenter", "model_folder", "checkpoint_sha256"
    ),
}
#: ``nninteractive:PATH`` names a local nnInteractive trained-model folder.
NNINTERACTIVE_PREFIX = "nninteractive:"
#: Files that make a local folder an nnInteractive trained-model folder.
_NNINTERACTIVE_FILES = ("plans.json", "dataset.json")
#: The transformers backend's random models, ``NAME[@SIZE]``: the builder in transformers_video.
RANDOM_TRANSFORMERS = {
    "random:transformers-tiny": "tiny_sam2_video_model",
    "random:sam3": "tiny_sam3_tracker_video_model",
}
#: Models asked for by name that no installed backend can run, with the reason.
UNSUPPORTED = {
    "sam3.1": (
        "SAM 3.1 (facebook/sam3.1) is not supported: its Hub repository ships only Meta's own checkpoint format "
        "and transformers has no SAM 3.1 model to load it (transformers 5.24 ships SAM 3's tracker: use 'sam3')"
    ),
}
#: Random-weight names listed by :func:`available_models` (any sam2 config name or sam2 entry works after ``random:``).
RANDOM_EXAMPLES = (
    "random:sam2.1_hiera_t@256",
    "random:sam2.1_hiera_t@512",
    "random:medsam2",
    "random:transformers-tiny@128",
    "random:sam3@56",
)

_SIZE_SUFFIX = re.compile(r"(?P<base>.+)@(?P<size>\d+)\Z")
_CHECKPOINT_SUFFIXES = (".pt", ".pth")


def build_segmenter(name: str, *, device: str = "auto", **options: Any) -> Segmenter:
    """Build the segmenter called ``name`` (see the module docstring for the forms a name takes).

    Parameters
    ----------
    name : str
        ``box-fill``, ``grabcut``, ``random:CONFIG[@SIZE]``, ``random:transformers-tiny[@SIZE]``, a
        checkpoint-list entry ``NAME[@SIZE]``, the path of a local SAM2 checkpoint (with ``config=``), or of a
        local nnInteractive trained-model folder (``nninteractive:PATH`` or ``PATH``).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ignored by the baselines.
    **options
        Backend keyword options (e.g. ``propagation="continuous"``, ``largest_component=True``, ``seed=1``).

    Returns
    -------
    Segmenter

    Raises
    ------
    SegmenterError
        For a name that is none of the above (the message lists the available names), ``@SIZE`` on a baseline,
        a transformers entry or an nnInteractive model, a path without ``config=``, ``config=`` or
        ``checkpoint=`` given for a named entry (the entry fixes them), an option the backend does not take, or
        a backend that is not installed.
    CheckpointError
        For a named entry that is not downloaded (the message gives the download command) or whose file fails
        verification.
    """
    if name in BASELINES:
        return _build(*BASELINES[name], what=f"baseline {name!r}", **options)
    base, image_size = _split_size(name)
    if base in BASELINES:
        raise SegmenterError(f"{name!r}: the {base} baseline has no image size (drop '@{image_size}')")
    if _is_nninteractive(base) and image_size is not None:
        raise SegmenterError(f"{name!r}: nnInteractive works in the volume's own voxels; drop '@{image_size}'")
    unsupported = UNSUPPORTED.get(base.removeprefix("random:"))
    if unsupported is not None:
        raise SegmenterError(f"{name!r}: {unsupported}")
    if image_size is not None:
        options = {**options, "image_size": image_size}
    sam2 = BACKENDS["sam2"]
    if base in RANDOM_TRANSFORMERS:
        return _build_random_transformers(base, name=name, device=device, options=options)
    if base.startswith(NNINTERACTIVE_PREFIX):
        return _build_nninteractive(Path(base.removeprefix(NNINTERACTIVE_PREFIX)), device=device, options=options)
    entries = read_checkpoint_list()
    if base.startswith("random:"):
        recipe = _sam2_recipe(base.removeprefix("random:"), entries, options)
        return _build(
            sam2.module, sam2.cls, what="sam2 backend", checkpoint=None, device=device, **{"name": name, **recipe}
        )
    if base in entries:
        return _build_entry(entries[base], name=name, device=device, options=options)
    if _is_nninteractive(name):
        return _build_nninteractive(Path(name).expanduser(), device=device, options=options)
    if _is_transformers_folder(base):
        transformers = BACKENDS["transformers"]
        folder = Path(base).expanduser()
        return _build(
            transformers.module,
            transformers.cls,
            what="transformers backend",
            model_id_or_path=folder,
            device=device,
            **{"name": folder.resolve().name, **options},
        )
    path = Path(name).expanduser()
    if path.is_file() or path.suffix in _CHECKPOINT_SUFFIXES:
        if "config" not in options:
            raise SegmenterError(
                f"checkpoint path {name!r} needs its SAM2 config: config='sam2.1_hiera_t', or a sam2 entry of the "
                "checkpoint list whose recipe it follows, config='medsam2' (CLI: --config)"
            )
        recipe = _sam2_recipe(str(options.pop("config")), entries, options)
        return _build(
            sam2.module, sam2.cls, what="sam2 backend", checkpoint=path, device=device, **{"name": path.stem, **recipe}
        )
    raise SegmenterError(f"unknown segmenter {name!r}; available: {', '.join(available_models())}")


def available_models() -> tuple[str, ...]:
    """Names for ``--help`` texts: the baselines, every checkpoint-list entry, and random-weight examples."""
    return (*BASELINES, *read_checkpoint_list(), *RANDOM_EXAMPLES)


def cached_models(*, backend: str | None = None) -> tuple[str, ...]:
    """Checkpoint-list entries whose weights are in the cache and were verified there (e.g. for the demo).

    Uses the fingerprint of the last verification (no re-hashing), so it is quick; building the segmenter
    re-hashes the file. ``backend`` keeps only entries of that backend (``"sam2"`` or ``"transformers"``).
    """
    return tuple(
        entry.name
        for entry in read_checkpoint_list().values()
        if (backend is None or entry.backend == backend) and checkpoint_status(entry, rehash=False).verified
    )


def _build_entry(entry: CheckpointEntry, *, name: str, device: str, options: dict[str, Any]) -> Segmenter:
    backend = BACKENDS[entry.backend]
    fixed = sorted({"config", "checkpoint", backend.weights_argument} & set(options))
    if fixed:
        raise SegmenterError(
            f"{name!r} is a checkpoint-list entry ({entry.origin}), which fixes {' and '.join(fixed)}; "
            "give a checkpoint path instead to use other weights or configs"
        )
    if entry.backend == "nninteractive" and "image_size" in options:
        raise SegmenterError(
            f"{name!r}: nnInteractive works in the volume's own voxels; it has no image size (drop --image-size)"
        )
    resolved = resolve_checkpoint(entry)
    backend_options = {**entry.option_dict(), **options, backend.weights_argument: resolved.path}
    if entry.config is not None:
        backend_options["config"] = entry.config
    segmenter = _build(
        backend.module, backend.cls, what=f"{entry.backend} backend", device=device, **{"name": name, **backend_options}
    )
    loaded_sha256 = getattr(segmenter, backend.sha256_attribute, resolved.sha256)
    if loaded_sha256 != resolved.sha256:
        raise SegmenterError(
            f"{resolved.path} changed while {name!r} was being built (SHA-256 {loaded_sha256}, verified "
            f"{resolved.sha256} just before); refusing it"
        )
    return segmenter


def _sam2_recipe(config: str, entries: dict[str, CheckpointEntry], options: dict[str, Any]) -> dict[str, Any]:
    """Backend options for a SAM2 model built from ``config``: a config name, or a sam2 checkpoint-list entry.

    An entry contributes its config and its options (the recipe its authors run, e.g. MedSAM2's); ``options``
    override them. The list is the one source of these recipes.
    """
    entry = entries.get(config)
    if entry is None or entry.backend != "sam2" or entry.config is None:
        return {**options, "config": config}
    return {**entry.option_dict(), **options, "config": entry.config}


def _build_random_transformers(base: str, *, name: str, device: str, options: dict[str, Any]) -> Segmenter:
    backend = BACKENDS["transformers"]
    _require(backend.module, what="transformers backend")
    builder = getattr(importlib.import_module(backend.module), RANDOM_TRANSFORMERS[base])
    options = dict(options)
    sized = {"image_size": options.pop("image_size")} if "image_size" in options else {}
    model = builder(seed=options.pop("seed", 0), **sized)
    return _build(
        backend.module,
        backend.cls,
        what="transformers backend",
        model=model,
        device=device,
        **{"name": name, **options},
    )


def _is_transformers_folder(name: str) -> bool:
    """Whether ``name`` is a local folder holding a ``transformers`` model (its ``config.json``)."""
    path = Path(name).expanduser()
    return path.is_dir() and (path / "config.json").is_file()


def _is_nninteractive(name: str) -> bool:
    """Whether ``name`` is ``nninteractive:PATH`` or a local folder with nnInteractive's plans and dataset files."""
    if name.startswith(NNINTERACTIVE_PREFIX):
        return True
    path = Path(name).expanduser()
    return path.is_dir() and all((path / file).is_file() for file in _NNINTERACTIVE_FILES)


def _build_nninteractive(path: Path, *, device: str, options: dict[str, Any]) -> Segmenter:
    backend = BACKENDS["nninteractive"]
    path = path.expanduser()
    if "image_size" in options:
        raise SegmenterError(
            f"{str(path)!r}: nnInteractive works in the volume's own voxels; it has no image size (drop --image-size)"
        )
    return _build(
        backend.module,
        backend.cls,
        what="nninteractive backend",
        model_folder=path,
        device=device,
        **{"name": path.resolve().name, **options},
    )


def _build(module: str, cls: str, *, what: str, **kwargs: Any) -> Segmenter:
    """Import ``module.cls`` and construct it, naming the segmenter in the error for an unknown option."""
    _require(module, what=what)
    factory = getattr(importlib.import_module(module), cls)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise SegmenterError(f"{what}: {exc} (options given: {', '.join(sorted(kwargs)) or 'none'})") from None
    return factory(**kwargs)


def _require(module: str, *, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise SegmenterError(f"the {what} is not available in this installation ({module} is missing)")


def _split_size(name: str) -> tuple[str, int | None]:
    match = _SIZE_SUFFIX.match(name)
    if match is None or Path(name).expanduser().is_file():
        return name, None
    return match["base"], int(match["size"])
