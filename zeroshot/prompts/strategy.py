"""Named prompt strategies: YAML files in the top-level ``prompts/`` folder, validated into frozen settings.

A strategy file says where prompts come from (``source``), on which slices (``key_slices``) and what they are
(``prompt``); every setting it leaves out takes the default documented on the dataclasses of
:mod:`zeroshot.prompts.settings`::

    # box-mid-jitter10.yaml
    description: Box on the middle slice, each side moved by up to 10 % of the box size.
    source: {kind: gt}
    key_slices: {rule: middle}
    prompt:
      type: box
      box: {jitter_percent: 10}

A strategy's name is its file's stem. A *sweep* file (it has a ``grids`` key) expands a ``base`` strategy into
one named strategy per combination of the values it varies, for ablation grids::

    base: {source: {kind: gt}, key_slices: {rule: spread}}
    grids:
      - name: abl-box-j{prompt.box.jitter_percent}-k{key_slices.count}
        vary: {prompt.type: [box], prompt.box.jitter_percent: [0, 10], key_slices.count: [1, 3]}

Settings that would have no effect (box jitter on a points strategy, a slice count for the middle rule) are
errors, so a file always means what it says. Every error is a :class:`~zeroshot.errors.ConfigError` naming the
file and the key.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from zeroshot.bundled import bundled_path
from zeroshot.errors import ConfigError, plain
from zeroshot.prompts.checks import boolean, choice, integer, known_keys, mapping, number
from zeroshot.prompts.settings import (
    COMPONENTS,
    JITTER_DIRECTIONS,
    KEY_SLICE_RULES,
    NEGATIVE_REGIONS,
    ON_EMPTY,
    PLACEMENTS,
    PROMPT_TYPES,
    SOURCE_KINDS,
    BoxSettings,
    KeySliceSettings,
    PointSettings,
    SourceSettings,
    Strategy,
)

__all__ = [
    "PROMPTS_DIR_ENV",
    "Strategy",
    "expand_sweep",
    "load_strategies",
    "load_strategy",
    "prompts_dir",
    "strategy_from_dict",
]

#: Environment variable naming the folder where bare strategy names are looked up.
PROMPTS_DIR_ENV = "ZEROSHOT_PROMPTS_DIR"

#: Largest box jitter or shift in % of the box size: a side moving by more than the box's own size leaves the
#: structure behind (millimetre amounts are not bounded; every prompt records the fraction of the structure its
#: box still covers, and runs warn about boxes covering less than half).
MAX_PERCENT = 100.0

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def prompts_dir() -> Path:
    """The folder where bare strategy names are looked up.

    ``$ZEROSHOT_PROMPTS_DIR`` if set, else the ``prompts/`` folder at the top of the repository (in a checkout)
    or its copy inside the installed package (:func:`zeroshot.bundled.bundled_path`).
    """
    env = os.environ.get(PROMPTS_DIR_ENV)
    if env:
        return Path(env)
    return bundled_path("prompts")


def load_strategy(path_or_name: str | os.PathLike[str]) -> Strategy:
    """Load one strategy from a YAML file, or by name.

    Parameters
    ----------
    path_or_name : path or str
        A path to a strategy file, or a bare name (``box-mid``): the file ``<name>.yaml`` in :func:`prompts_dir`,
        or a member of a sweep file there.

    Raises
    ------
    ConfigError
        If the file or name is not found, the file is a sweep (use :func:`load_strategies`), or a key or value
        is not valid.
    """
    strategies = load_strategies(path_or_name)
    if len(strategies) != 1:
        names = ", ".join(s.name for s in strategies[:5])
        raise ConfigError(
            f"{path_or_name}: is a sweep of {len(strategies)} strategies ({names}, ...); name one of them or use "
            "load_strategies"
        )
    return strategies[0]


def load_strategies(path_or_name: str | os.PathLike[str]) -> list[Strategy]:
    """Load every strategy a file or name stands for: one for a strategy file or sweep member, all of a sweep.

    Raises
    ------
    ConfigError
        As :func:`load_strategy`.
    """
    text = os.fspath(path_or_name)
    looks_like_path = isinstance(path_or_name, os.PathLike) or "/" in text or text.endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{path}: strategy file not found")
        return _load_file(path)
    if not _SAFE_NAME.match(text):
        raise ConfigError(f"strategy name {text!r} is not a valid name (letters, digits, '.', '_', '+', '-')")
    folder = prompts_dir()
    for suffix in (".yaml", ".yml"):
        candidate = folder / f"{text}{suffix}"
        if candidate.is_file():
            return _load_file(candidate)
    available = []
    for path in _yaml_files(folder):
        data = _read_yaml(path)
        if not _is_sweep(data):
            available.append(path.stem)
            continue
        for strategy in expand_sweep(data, where=path):
            if strategy.name == text:
                return [strategy]
            available.append(strategy.name)
    shown = ", ".join(sorted(available)[:40]) or "none"
    raise ConfigError(
        f"strategy {text!r} not found in {folder} (set ${PROMPTS_DIR_ENV} to look elsewhere); known: {shown}"
    )


def strategy_from_dict(data: Mapping[str, Any], *, name: str | None = None, where: object = "strategy") -> Strategy:
    """Validate a strategy's settings (as read from YAML) into a :class:`Strategy`.

    Parameters
    ----------
    data : mapping
        The keys of a strategy file; ``name`` may be among them (as :meth:`Strategy.to_dict` writes it).
    name : str or None
        The strategy's name; required unless ``data`` has one, and must agree with it if both are given.
    where : object
        Named in error messages (the file, or the file and sweep member).

    Raises
    ------
    ConfigError
        An unknown or misplaced key, a value of the wrong type or out of range, or a setting that would have no
        effect for the chosen kind, rule or type.
    """
    data = mapping(data, where, "")
    known_keys(data, ("name", "description", "source", "key_slices", "prompt"), where, "")
    given = data.get("name")
    if given is not None:
        given = _name(given, where, "name")
        if name is not None and given != name:
            raise ConfigError(f"{where}: name: {given!r} differs from the name {name!r} it is loaded under")
    name = given if given is not None else name
    if name is None:
        raise ConfigError(f"{where}: name: missing")
    name = _name(name, where, "name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description: expected text, got {description!r}")
    if "prompt" not in data:
        raise ConfigError(f"{where}: prompt: missing (say at least `prompt: {{type: box}}`)")
    prompt = mapping(data["prompt"], where, "prompt")
    known_keys(prompt, ("type", "components", "box", "points", "z_extent"), where, "prompt")
    if "type" not in prompt:
        raise ConfigError(f"{where}: prompt.type: missing; choose one of {', '.join(PROMPT_TYPES)}")
    prompt_type = choice(prompt["type"], PROMPT_TYPES, where, "prompt.type")
    components = choice(prompt.get("components", "all"), COMPONENTS, where, "prompt.components")
    uses_box = prompt_type in ("box", "box+points")
    uses_points = prompt_type in ("points", "box+points")
    if "box" in prompt and not uses_box:
        raise ConfigError(f"{where}: prompt.box: has no effect on a {prompt_type!r} prompt; remove it")
    if "points" in prompt and not uses_points:
        raise ConfigError(f"{where}: prompt.points: has no effect on a {prompt_type!r} prompt; remove it")
    return Strategy(
        name=name,
        prompt_type=prompt_type,
        source=_source(data.get("source", {}), where),
        key_slices=_key_slices(data.get("key_slices", {}), where),
        components=components,
        box=_box(prompt.get("box", {}), where),
        points=_points(prompt.get("points", {}), where),
        z_extent=boolean(prompt.get("z_extent", False), where, "prompt.z_extent"),
        description=description,
    )


def expand_sweep(data: Mapping[str, Any], *, where: object = "sweep") -> list[Strategy]:
    """Expand a sweep (``base`` settings and ``grids`` of values to vary) into named strategies.

    Each grid is ``{name: TEMPLATE, vary: {dotted.key: [values, ...]}}``; every combination of the values,
    written into a copy of ``base`` at the dotted keys, becomes the strategy named by ``TEMPLATE`` with each
    ``{dotted.key}`` replaced by its value (numbers written without a trailing ``.0``).

    Raises
    ------
    ConfigError
        Unknown keys, an empty grid, a placeholder that is not varied, duplicate names, or any error of
        :func:`strategy_from_dict` in a member.
    """
    data = mapping(data, where, "")
    known_keys(data, ("description", "base", "grids"), where, "")
    base = mapping(data.get("base", {}), where, "base")
    grids = data.get("grids")
    if not isinstance(grids, list) or not grids:
        raise ConfigError(f"{where}: grids: expected a non-empty list of {{name, vary}} entries")
    strategies: list[Strategy] = []
    seen: dict[str, str] = {}
    for index, grid in enumerate(grids):
        key = f"grids[{index}]"
        grid = mapping(grid, where, key)
        known_keys(grid, ("name", "vary"), where, key)
        template = grid.get("name")
        if not isinstance(template, str) or not template:
            raise ConfigError(
                f"{where}: {key}.name: expected a name template such as 'abl-j{{prompt.box.jitter_percent}}'"
            )
        vary = mapping(grid.get("vary"), where, f"{key}.vary")
        if not vary:
            raise ConfigError(f"{where}: {key}.vary: expected at least one dotted key with a list of values")
        for dotted, values in vary.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: {key}.vary.{dotted}: expected a non-empty list of values")
        for placeholder in _PLACEHOLDER.findall(template):
            if placeholder not in vary:
                raise ConfigError(f"{where}: {key}.name: placeholder {{{placeholder}}} is not a key under vary")
        keys = list(vary)
        for combination in itertools.product(*(vary[k] for k in keys)):
            values = dict(zip(keys, combination, strict=True))
            member = copy.deepcopy(dict(base))
            for dotted, value in values.items():
                _set_dotted(member, dotted, value, where, f"{key}.vary")
            name = _PLACEHOLDER.sub(lambda m, values=values: _format_value(values[m.group(1)]), template)
            member_where = f"{where}: {key} ({name})"
            strategy = strategy_from_dict(member, name=name, where=member_where)
            if name in seen:
                raise ConfigError(f"{where}: {key}: name {name!r} is made twice (also by {seen[name]})")
            seen[name] = key
            strategies.append(strategy)
    return strategies


def _load_file(path: Path) -> list[Strategy]:
    data = _read_yaml(path)
    if _is_sweep(data):
        return expand_sweep(data, where=path)
    return [strategy_from_dict(data, name=path.stem, where=path)]


def _is_sweep(data: object) -> bool:
    return isinstance(data, Mapping) and "grids" in data


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (plain PyYAML silently keeps the last one)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = set()
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read as UTF-8 text ({exc})") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings, found {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Sections


def _source(value: object, where: object) -> SourceSettings:
    data = mapping(value, where, "source")
    degraded_keys = ("margin_mm", "shift_mm", "drop_fraction", "largest_component")
    known_keys(data, ("kind", "label", "min_volume_ml", "on_empty", *degraded_keys), where, "source")
    kind = choice(data.get("kind", "gt"), SOURCE_KINDS, where, "source.kind")
    if "label" in data and kind != "coarse":
        raise ConfigError(f"{where}: source.label: only applies to coarse sources (kind is {kind!r})")
    for key in degraded_keys:
        if key in data and kind != "degraded":
            raise ConfigError(f"{where}: source.{key}: only applies to degraded sources (kind is {kind!r})")
    on_empty = choice(data.get("on_empty", "fail"), ON_EMPTY, where, "source.on_empty")
    if on_empty == "gt" and kind == "gt":
        raise ConfigError(f"{where}: source.on_empty: 'gt' makes no sense when the source is the ground truth")
    shift = data.get("shift_mm", [0.0, 0.0, 0.0])
    if not isinstance(shift, list) or len(shift) != 3:
        raise ConfigError(f"{where}: source.shift_mm: expected three numbers [z, y, x] in mm, got {plain(shift)}")
    return SourceSettings(
        kind=kind,
        label=integer(data["label"], where, "source.label", minimum=1) if "label" in data else None,
        min_volume_ml=number(data.get("min_volume_ml", 0.0), where, "source.min_volume_ml", minimum=0.0),
        on_empty=on_empty,
        margin_mm=number(data.get("margin_mm", 0.0), where, "source.margin_mm"),
        shift_mm=tuple(number(v, where, f"source.shift_mm[{i}]") for i, v in enumerate(shift)),  # type: ignore[arg-type]
        drop_fraction=number(data.get("drop_fraction", 0.0), where, "source.drop_fraction", minimum=0.0, maximum=1.0),
        largest_component=boolean(data.get("largest_component", False), where, "source.largest_component"),
    )


def _key_slices(value: object, where: object) -> KeySliceSettings:
    data = mapping(value, where, "key_slices")
    known_keys(data, ("rule", "count", "index"), where, "key_slices")
    rule = choice(data.get("rule", "middle"), KEY_SLICE_RULES, where, "key_slices.rule")
    if "count" in data and rule != "spread":
        raise ConfigError(f"{where}: key_slices.count: only applies to rule 'spread' (rule is {rule!r})")
    if "index" in data and rule != "index":
        raise ConfigError(f"{where}: key_slices.index: only applies to rule 'index' (rule is {rule!r})")
    index: tuple[int, ...] = ()
    if rule == "index":
        if "index" not in data:
            raise ConfigError(f"{where}: key_slices.index: missing; rule 'index' needs a slice index or a list")
        raw = data["index"] if isinstance(data["index"], list) else [data["index"]]
        if not raw:
            raise ConfigError(f"{where}: key_slices.index: expected at least one slice index")
        index = tuple(sorted({integer(v, where, "key_slices.index", minimum=0) for v in raw}))
    count = integer(data.get("count", 1), where, "key_slices.count", minimum=1)
    if rule == "spread" and "count" not in data:
        raise ConfigError(f"{where}: key_slices.count: missing; rule 'spread' needs the number of slices")
    return KeySliceSettings(rule=rule, count=count, index=index)


def _box(value: object, where: object) -> BoxSettings:
    data = mapping(value, where, "prompt.box")
    keys = ("jitter_percent", "jitter_mm", "jitter_direction", "shift_percent", "shift_mm", "outward_256px")
    known_keys(data, keys, where, "prompt.box")
    return BoxSettings(
        jitter_percent=number(
            data.get("jitter_percent", 0.0), where, "prompt.box.jitter_percent", minimum=0.0, maximum=MAX_PERCENT
        ),
        jitter_mm=number(data.get("jitter_mm", 0.0), where, "prompt.box.jitter_mm", minimum=0.0),
        jitter_direction=choice(
            data.get("jitter_direction", "both"), JITTER_DIRECTIONS, where, "prompt.box.jitter_direction"
        ),
        shift_percent=number(
            data.get("shift_percent", 0.0), where, "prompt.box.shift_percent", minimum=0.0, maximum=MAX_PERCENT
        ),
        shift_mm=number(data.get("shift_mm", 0.0), where, "prompt.box.shift_mm", minimum=0.0),
        outward_256px=integer(data.get("outward_256px", 0), where, "prompt.box.outward_256px", minimum=0),
    )


def _points(value: object, where: object) -> PointSettings:
    data = mapping(value, where, "prompt.points")
    defaults = PointSettings()
    known_keys(data, tuple(defaults.to_dict()), where, "prompt.points")
    positives = integer(data.get("positives", defaults.positives), where, "prompt.points.positives", minimum=0)
    negatives = integer(data.get("negatives", defaults.negatives), where, "prompt.points.negatives", minimum=0)
    if positives == 0:
        raise ConfigError(f"{where}: prompt.points.positives: must be at least 1 (the interior point comes first)")
    return PointSettings(
        positives=positives,
        negatives=negatives,
        positive_placement=choice(
            data.get("positive_placement", defaults.positive_placement),
            PLACEMENTS,
            where,
            "prompt.points.positive_placement",
        ),
        negative_region=choice(
            data.get("negative_region", defaults.negative_region),
            NEGATIVE_REGIONS,
            where,
            "prompt.points.negative_region",
        ),
        negative_placement=choice(
            data.get("negative_placement", defaults.negative_placement),
            PLACEMENTS,
            where,
            "prompt.points.negative_placement",
        ),
        negative_distance_mm=number(
            data.get("negative_distance_mm", defaults.negative_distance_mm),
            where,
            "prompt.points.negative_distance_mm",
            minimum=0.0,
        ),
        ring_width_mm=number(
            data.get("ring_width_mm", defaults.ring_width_mm), where, "prompt.points.ring_width_mm", minimum=0.0
        ),
    )


# ---------------------------------------------------------------------------------------------------------------
# Strategy names (the value checks shared with prompt files live in zeroshot.prompts.checks)


def _name(value: object, where: object, key: str) -> str:
    if not isinstance(value, str) or not _SAFE_NAME.match(value):
        raise ConfigError(
            f"{where}: {key}: {value!r} is not a valid strategy name (letters, digits, '.', '_', '+', '-'; "
            "starting with a letter or digit)"
        )
    return value


def _set_dotted(data: dict[str, Any], dotted: str, value: object, where: object, key: str) -> None:
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"{where}: {key}.{dotted}: not a dotted key such as prompt.box.jitter_percent")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{where}: {key}.{dotted}: {'.'.join(parts[: depth + 1])} is not a mapping")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _format_value(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
