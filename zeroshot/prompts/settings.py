"""What a prompt strategy says: frozen, fully resolved settings, their plain-dict form and a stable digest.

:mod:`zeroshot.prompts.strategy` reads and validates them from YAML files; the prompt rules
(:mod:`~zeroshot.prompts.keyslices`, :mod:`~zeroshot.prompts.boxes`, :mod:`~zeroshot.prompts.points`) read
their own section.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COMPONENTS",
    "JITTER_DIRECTIONS",
    "KEY_SLICE_RULES",
    "NEGATIVE_REGIONS",
    "ON_EMPTY",
    "PLACEMENTS",
    "PROMPT_TYPES",
    "SCHEMA_VERSION",
    "SOURCE_KINDS",
    "BoxSettings",
    "KeySliceSettings",
    "PointSettings",
    "SourceSettings",
    "Strategy",
]

SOURCE_KINDS = ("gt", "coarse", "degraded")
ON_EMPTY = ("fail", "gt", "volume-middle-box")
KEY_SLICE_RULES = ("middle", "occupied-median", "largest", "centroid", "spread", "every", "index")
PROMPT_TYPES = ("box", "points", "box+points", "mask")
COMPONENTS = ("all", "largest")
JITTER_DIRECTIONS = ("both", "outward")
PLACEMENTS = ("spread", "random")
NEGATIVE_REGIONS = ("ring", "background")

#: Bumped when the meaning of a setting changes, so that digests of old and new strategies never collide.
SCHEMA_VERSION = "zeroshot-prompts/1"


@dataclass(frozen=True)
class SourceSettings:
    """Where the structure that prompts are derived from comes from.

    Attributes
    ----------
    kind : {"gt", "coarse", "degraded"}
        ``gt``: the label. ``coarse``: a mask from elsewhere (another model's prediction), one file per case in
        a folder given at run time. ``degraded``: the label altered by the settings below (robustness ablations).
    label : int or None
        Label value of the coarse mask files (``coarse`` only). ``None`` (the default): the run's label, the
        structure every reader of masks takes from the run; a value given here must equal it (the runner refuses
        a strategy that disagrees with its run).
    min_volume_ml : float
        A source mask smaller than this (in ml; an empty one always) cannot be prompted from: ``on_empty`` decides.
    on_empty : {"fail", "gt", "volume-middle-box"}
        ``fail``: the case fails with the reason. ``gt``: prompt from the label instead (an oracle, flagged).
        ``volume-middle-box``: a box over the whole middle slice of the volume (uses nothing of the label).
    margin_mm : float
        ``degraded``: grow (positive) or shrink (negative) the label by this distance in mm.
    shift_mm : (float, float, float)
        ``degraded``: move the label by this many mm along ``(z, y, x)`` (rounded to whole voxels).
    drop_fraction : float
        ``degraded``: fraction of the label's slices emptied, drawn at random from the seed.
    largest_component : bool
        ``degraded``: keep only the largest 3D connected component (applied last).
    """

    kind: str = "gt"
    label: int | None = None
    min_volume_ml: float = 0.0
    on_empty: str = "fail"
    margin_mm: float = 0.0
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    drop_fraction: float = 0.0
    largest_component: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The settings that apply to this kind of source, as plain JSON-ready values."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "coarse" and self.label is not None:
            out["label"] = self.label
        out["min_volume_ml"] = self.min_volume_ml
        out["on_empty"] = self.on_empty
        if self.kind == "degraded":
            out.update(
                margin_mm=self.margin_mm,
                shift_mm=list(self.shift_mm),
                drop_fraction=self.drop_fraction,
                largest_component=self.largest_component,
            )
        return out


@dataclass(frozen=True)
class KeySliceSettings:
    """Which slices carry the prompt, chosen from the source mask.

    Attributes
    ----------
    rule : {"middle", "occupied-median", "largest", "centroid", "spread", "every", "index"}
        ``middle``: ``floor((z_min + z_max) / 2)`` of the source's z-extent. ``occupied-median``: entry
        ``n // 2`` of the ``n`` slices holding structure in ascending order (the CVPR 2025 challenge's ``z_mid``;
        the upper of the two middle slices of an even extent). ``largest``: the slice with the most
        source pixels (the lowest such z on ties). ``centroid``: the slice nearest the source's centre of mass.
        ``spread``: ``count`` slices at the centres of ``count`` equal parts of the z-extent (``count=1`` is
        ``middle``). ``every``: every slice holding the structure (2D mode). ``index``: the slices in ``index``.
        A chosen slice without structure (a gap in the source) moves to the nearest one that has some.
    count : int
        Number of slices for ``spread``.
    index : tuple of int
        Slice indices for ``index``.
    """

    rule: str = "middle"
    count: int = 1
    index: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The settings that apply to this rule."""
        out: dict[str, Any] = {"rule": self.rule}
        if self.rule == "spread":
            out["count"] = self.count
        if self.rule == "index":
            out["index"] = list(self.index)
        return out


@dataclass(frozen=True)
class BoxSettings:
    """How a box is drawn around a slice's structure.

    The box starts tight (inclusive extreme pixels). Each side then moves by a random amount up to
    ``jitter_percent`` % of the box's size along that axis plus ``jitter_mm`` (converted with that axis's
    spacing), inwards or outwards (``both``) or outwards only; then the whole box moves by up to
    ``shift_percent`` % of its size plus ``shift_mm`` along x and y independently. The result is rounded to
    whole pixels and clipped to the slice; the box actually used is recorded.

    Attributes
    ----------
    jitter_percent, jitter_mm : float
        Largest move of each side, in % of the box size and in mm.
    jitter_direction : {"both", "outward"}
    shift_percent, shift_mm : float
        Largest move of the whole box along each in-plane axis, in % of the box size and in mm.
    outward_256px : int
        MedSAM's and the CVPR 2025 challenge's box perturbation: all four sides move outwards together by ``k``
        pixels at 256 px, ``k`` drawn uniformly from ``0 .. outward_256px``, i.e. ``int(k * X / 256)`` columns
        and ``int(k * Y / 256)`` rows on a ``(Y, X)`` slice (the challenge uses 5). 0: none.
    """

    jitter_percent: float = 0.0
    jitter_mm: float = 0.0
    jitter_direction: str = "both"
    shift_percent: float = 0.0
    shift_mm: float = 0.0
    outward_256px: int = 0

    def to_dict(self) -> dict[str, Any]:
        """All settings as plain values (``outward_256px`` only when used, so older digests stay valid)."""
        out: dict[str, Any] = {
            "jitter_percent": self.jitter_percent,
            "jitter_mm": self.jitter_mm,
            "jitter_direction": self.jitter_direction,
            "shift_percent": self.shift_percent,
            "shift_mm": self.shift_mm,
        }
        if self.outward_256px:
            out["outward_256px"] = self.outward_256px
        return out


@dataclass(frozen=True)
class PointSettings:
    """How clicks are placed on a slice.

    The first positive is the interior point farthest from the boundary (distance transform in mm). Further
    positives are ``spread`` (each maximises the smaller of its distance to the boundary and to the points
    already placed) or ``random`` (uniform over the structure). Negatives come from a ``ring`` of pixels between
    ``negative_distance_mm`` and ``negative_distance_mm + ring_width_mm`` from the structure, or from the
    ``background`` at least ``negative_distance_mm`` away; placed ``random``-ly or ``spread`` (each farthest from
    every point already placed). Where a region has fewer pixels than points asked for, fewer are placed and the
    counts are recorded.

    Attributes
    ----------
    positives, negatives : int
    positive_placement, negative_placement : {"spread", "random"}
    negative_region : {"ring", "background"}
    negative_distance_mm, ring_width_mm : float
    """

    positives: int = 1
    negatives: int = 0
    positive_placement: str = "spread"
    negative_region: str = "ring"
    negative_placement: str = "random"
    negative_distance_mm: float = 5.0
    ring_width_mm: float = 5.0

    def to_dict(self) -> dict[str, Any]:
        """All settings as plain values."""
        return {
            "positives": self.positives,
            "negatives": self.negatives,
            "positive_placement": self.positive_placement,
            "negative_region": self.negative_region,
            "negative_placement": self.negative_placement,
            "negative_distance_mm": self.negative_distance_mm,
            "ring_width_mm": self.ring_width_mm,
        }


@dataclass(frozen=True)
class Strategy:
    """A named, fully resolved way of prompting a volume.

    Attributes
    ----------
    name : str
        The strategy's name (a file stem or a sweep member's name); recorded with every prompt and result.
    prompt_type : {"box", "points", "box+points", "mask"}
    source : SourceSettings
    key_slices : KeySliceSettings
    components : {"all", "largest"}
        On a slice where the structure is in several pieces: prompt around all of them (default) or only the
        largest (negatives always stay clear of every piece).
    box : BoxSettings
        Used by ``box`` and ``box+points``.
    points : PointSettings
        Used by ``points`` and ``box+points``.
    z_extent : bool
        Also give the model the source's z-extent ``[z_min, z_max]`` (``VolumePrompts.details["z_extent"]``): the
        runner clears every prediction outside it, and from the ground truth it is the ``gt_z_range`` oracle.
        The CVPR 2025 challenge's box is a 2D box on the middle slice plus this extent.
    description : str
        Free text; not part of the digest.
    """

    name: str
    prompt_type: str
    source: SourceSettings = field(default_factory=SourceSettings)
    key_slices: KeySliceSettings = field(default_factory=KeySliceSettings)
    components: str = "all"
    box: BoxSettings = field(default_factory=BoxSettings)
    points: PointSettings = field(default_factory=PointSettings)
    z_extent: bool = False
    description: str = ""

    @property
    def uses_box(self) -> bool:
        """Whether prompts carry a box."""
        return self.prompt_type in ("box", "box+points")

    @property
    def uses_points(self) -> bool:
        """Whether prompts carry points."""
        return self.prompt_type in ("points", "box+points")

    @property
    def uses_gt(self) -> bool:
        """Whether prompts may be derived from the ground truth (then they are flagged as an oracle)."""
        return self.source.kind in ("gt", "degraded") or self.source.on_empty == "gt"

    def settings(self) -> dict[str, Any]:
        """Every setting that changes the prompts (no name, no description), as plain JSON-ready values."""
        out: dict[str, Any] = {
            "source": self.source.to_dict(),
            "key_slices": self.key_slices.to_dict(),
        }
        prompt: dict[str, Any] = {"type": self.prompt_type, "components": self.components}
        if self.uses_box:
            prompt["box"] = self.box.to_dict()
        if self.uses_points:
            prompt["points"] = self.points.to_dict()
        if self.z_extent:  # only when used, so the digests of strategies without it are unchanged
            prompt["z_extent"] = True
        out["prompt"] = prompt
        return out

    def to_dict(self) -> dict[str, Any]:
        """The strategy as a strategy file would spell it out in full: name, description and every setting.

        ``strategy_from_dict(s.to_dict())`` gives back an equal strategy.
        """
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out.update(self.settings())
        return out

    def digest(self) -> str:
        """A 16-hex-digit SHA-256 of the settings (not the name or description), stable across runs and machines.

        Two strategies with the same digest make the same prompts for the same case and seed; use it in cache keys.
        """
        payload = json.dumps({"schema": SCHEMA_VERSION, **self.settings()}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
