"""Strategy files: the shipped YAML files load, every bad key or value is a ConfigError naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zeroshot.errors import ConfigError
from zeroshot.prompts import expand_sweep, load_strategies, load_strategy, prompts_dir, strategy_from_dict

REPO_PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
REQUIRED = (
    "box-mid",
    "box-largest",
    "box-mid-jitter10",
    "point-center",
    "points-3pos-3neg",
    "box-3slices",
    "mask-mid",
    "box-every-slice",
)


def test_prompts_dir_is_the_repository_folder_by_default(monkeypatch):
    monkeypatch.delenv("ZEROSHOT_PROMPTS_DIR", raising=False)
    assert prompts_dir() == REPO_PROMPTS


@pytest.mark.parametrize("name", REQUIRED)
def test_required_strategies_load_by_name_and_by_path(name, monkeypatch):
    monkeypatch.delenv("ZEROSHOT_PROMPTS_DIR", raising=False)
    by_name = load_strategy(name)
    by_path = load_strategy(REPO_PROMPTS / f"{name}.yaml")
    assert by_name.name == by_path.name == name
    assert by_name.digest() == by_path.digest()
    assert by_name.uses_gt


def test_every_shipped_file_is_valid_and_round_trips_through_to_dict():
    files = sorted(REPO_PROMPTS.glob("*.yaml"))
    assert len(files) >= len(REQUIRED) + 1
    for path in files:
        for strategy in load_strategies(path):
            again = strategy_from_dict(strategy.to_dict())
            assert again == strategy, path
            assert again.digest() == strategy.digest()


def test_shipped_settings_mean_what_their_names_say():
    assert load_strategy("box-mid-jitter10").box.jitter_percent == 10.0
    points = load_strategy("points-3pos-3neg").points
    assert (points.positives, points.negatives) == (3, 3)
    assert load_strategy("box-3slices").key_slices.count == 3
    assert load_strategy("box-every-slice").key_slices.rule == "every"
    assert load_strategy("mask-mid").prompt_type == "mask"
    assert load_strategy("box-largest").key_slices.rule == "largest"
    assert load_strategy("point-center").prompt_type == "points"
    assert not load_strategy("box-mid-coarse").uses_gt


def test_sweep_expands_to_the_ablation_grid_and_members_load_by_name():
    strategies = load_strategies(REPO_PROMPTS / "sweep-ablation.yaml")
    names = [s.name for s in strategies]
    assert len(names) == len(set(names)) == 4 * 3 + 3
    boxes = [s for s in strategies if s.prompt_type == "box"]
    assert {s.box.jitter_percent for s in boxes} == {0.0, 5.0, 10.0, 20.0}
    assert {s.key_slices.count for s in strategies} == {1, 3, 5}
    member = load_strategy("ablation-box-j10-k3")
    assert (member.box.jitter_percent, member.key_slices.count) == (10.0, 3)
    # Same settings, same digest, whatever the name: the sweep's j0-k3 member is box-3slices.
    assert load_strategy("ablation-box-j0-k3").digest() == load_strategy("box-3slices").digest()
    assert len({s.digest() for s in strategies}) == len(strategies)


def test_a_sweep_is_not_a_single_strategy():
    with pytest.raises(ConfigError, match=r"sweep-ablation.yaml: is a sweep of 15 strategies"):
        load_strategy(REPO_PROMPTS / "sweep-ablation.yaml")


def test_env_var_selects_the_lookup_folder(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("prompt: {type: box}\nkey_slices: {rule: largest}\n")
    monkeypatch.setenv("ZEROSHOT_PROMPTS_DIR", str(tmp_path))
    assert load_strategy("mine").key_slices.rule == "largest"
    with pytest.raises(ConfigError, match=r"strategy 'box-mid' not found in .*ZEROSHOT_PROMPTS_DIR.*known: mine"):
        load_strategy("box-mid")


def test_digest_ignores_name_and_description_but_not_settings():
    a = strategy_from_dict({"prompt": {"type": "box"}}, name="a")
    b = strategy_from_dict({"description": "other words", "prompt": {"type": "box"}}, name="b")
    c = strategy_from_dict({"prompt": {"type": "box", "box": {"jitter_percent": 5}}}, name="a")
    assert a.digest() == b.digest() != c.digest()
    assert len(a.digest()) == 16
    # Integers and floats of the same value are the same setting.
    d = strategy_from_dict({"prompt": {"type": "box", "box": {"jitter_percent": 5.0}}}, name="d")
    assert d.digest() == c.digest()


def test_to_dict_lists_every_resolved_setting():
    s = strategy_from_dict({"prompt": {"type": "box+points"}}, name="bp")
    d = s.to_dict()
    assert d["source"] == {"kind": "gt", "min_volume_ml": 0.0, "on_empty": "fail"}
    assert d["prompt"]["box"]["jitter_direction"] == "both"
    assert d["prompt"]["points"]["negative_distance_mm"] == 5.0
    assert d["key_slices"] == {"rule": "middle"}


BAD = [
    ({"prompt": {"type": "box"}, "colour": 1}, r"colour: unknown key"),
    ({"name": "x y", "prompt": {"type": "box"}}, r"name: 'x y' is not a valid strategy name"),
    ({"description": 3, "prompt": {"type": "box"}}, r"description: expected text"),
    ({}, r"prompt: missing"),
    ({"prompt": {}}, r"prompt.type: missing"),
    ({"prompt": {"type": "lasso"}}, r"prompt.type: expected one of box, points, box\+points, mask, got 'lasso'"),
    ({"prompt": "box"}, r"prompt: expected a mapping of settings, got 'box'"),
    ({"prompt": {"type": "box", "components": "some"}}, r"prompt.components: expected one of all, largest"),
    ({"prompt": {"type": "points", "box": {}}}, r"prompt.box: has no effect on a 'points' prompt"),
    ({"prompt": {"type": "box", "points": {}}}, r"prompt.points: has no effect on a 'box' prompt"),
    ({"prompt": {"type": "box", "box": {"jitter": 5}}}, r"prompt.box.jitter: unknown key; expected one of"),
    ({"prompt": {"type": "box", "box": {"jitter_percent": -5}}}, r"prompt.box.jitter_percent: must be >= 0"),
    ({"prompt": {"type": "box", "box": {"jitter_percent": "5%"}}}, r"jitter_percent: expected a finite number"),
    ({"prompt": {"type": "box", "box": {"jitter_mm": True}}}, r"jitter_mm: expected a finite number, got True"),
    ({"prompt": {"type": "box", "box": {"shift_mm": float("nan")}}}, r"shift_mm: expected a finite number"),
    ({"prompt": {"type": "box", "box": {"jitter_direction": "in"}}}, r"jitter_direction: expected one of both"),
    ({"prompt": {"type": "points", "points": {"positives": 0}}}, r"prompt.points.positives: must be at least 1"),
    ({"prompt": {"type": "points", "points": {"positives": 2.5}}}, r"positives: expected a whole number"),
    ({"prompt": {"type": "points", "points": {"negatives": -1}}}, r"prompt.points.negatives: must be >= 0"),
    ({"prompt": {"type": "points", "points": {"negative_region": "far"}}}, r"negative_region: expected one of"),
    ({"prompt": {"type": "box"}, "source": {"kind": "model"}}, r"source.kind: expected one of gt, coarse, degraded"),
    ({"prompt": {"type": "box"}, "source": {"label": 2}}, r"source.label: only applies to coarse sources"),
    ({"prompt": {"type": "box"}, "source": {"margin_mm": 2}}, r"source.margin_mm: only applies to degraded"),
    ({"prompt": {"type": "box"}, "source": {"on_empty": "gt"}}, r"source.on_empty: 'gt' makes no sense"),
    ({"prompt": {"type": "box"}, "source": {"kind": "coarse", "label": 0}}, r"source.label: must be >= 1"),
    (
        {"prompt": {"type": "box"}, "source": {"kind": "degraded", "shift_mm": [1, 2]}},
        r"source.shift_mm: expected three numbers",
    ),
    (
        {"prompt": {"type": "box"}, "source": {"kind": "degraded", "shift_mm": [1, "a", 2]}},
        r"source.shift_mm\[1\]: expected a finite number",
    ),
    (
        {"prompt": {"type": "box"}, "source": {"kind": "degraded", "drop_fraction": 1.5}},
        r"source.drop_fraction: must be <= 1",
    ),
    (
        {"prompt": {"type": "box"}, "source": {"kind": "degraded", "largest_component": "yes"}},
        r"source.largest_component: expected true or false",
    ),
    ({"prompt": {"type": "box"}, "source": {"min_volume_ml": -1}}, r"source.min_volume_ml: must be >= 0"),
    ({"prompt": {"type": "box"}, "key_slices": {"rule": "first"}}, r"key_slices.rule: expected one of middle"),
    ({"prompt": {"type": "box"}, "key_slices": {"count": 3}}, r"key_slices.count: only applies to rule 'spread'"),
    ({"prompt": {"type": "box"}, "key_slices": {"index": 3}}, r"key_slices.index: only applies to rule 'index'"),
    ({"prompt": {"type": "box"}, "key_slices": {"rule": "spread"}}, r"key_slices.count: missing"),
    ({"prompt": {"type": "box"}, "key_slices": {"rule": "spread", "count": 0}}, r"key_slices.count: must be >= 1"),
    ({"prompt": {"type": "box"}, "key_slices": {"rule": "index"}}, r"key_slices.index: missing"),
    ({"prompt": {"type": "box"}, "key_slices": {"rule": "index", "index": []}}, r"expected at least one slice index"),
    ({"prompt": {"type": "box"}, "key_slices": {"rule": "index", "index": -1}}, r"key_slices.index: must be >= 0"),
    ({"prompt": {"type": "box"}, "key_slices": {1: 2}}, r"key_slices: keys must be text"),
]


@pytest.mark.parametrize(("data", "match"), BAD)
def test_bad_settings_name_the_file_and_key(data, match):
    with pytest.raises(ConfigError, match=r"^my.yaml: .*" + match):
        strategy_from_dict(data, name="my", where="my.yaml")


def test_name_must_agree_with_the_file_and_exist():
    with pytest.raises(ConfigError, match=r"name: 'other' differs from the name 'mine'"):
        strategy_from_dict({"name": "other", "prompt": {"type": "box"}}, name="mine")
    with pytest.raises(ConfigError, match=r"strategy: name: missing"):
        strategy_from_dict({"prompt": {"type": "box"}})


def test_explicit_index_list_is_sorted_and_deduplicated():
    s = strategy_from_dict({"prompt": {"type": "box"}, "key_slices": {"rule": "index", "index": [7, 3, 7]}}, name="i")
    assert s.key_slices.index == (3, 7)


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.yaml: strategy file not found"):
        load_strategy(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_strategy(_write(tmp_path, "bad.yaml", "prompt: [unclosed\n"))
    with pytest.raises(ConfigError, match=r"list.yaml: expected a mapping of settings, found list"):
        load_strategy(_write(tmp_path, "list.yaml", "- a\n- b\n"))
    with pytest.raises(ConfigError, match=r"dup.yaml: not valid YAML .*duplicate key 'prompt'"):
        load_strategy(_write(tmp_path, "dup.yaml", "prompt: {type: box}\nprompt: {type: points}\n"))
    with pytest.raises(ConfigError, match=r"latin.yaml: cannot read as UTF-8 text"):
        load_strategy(_write(tmp_path, "latin.yaml", b"description: caf\xe9\nprompt: {type: box}\n"))
    with pytest.raises(ConfigError, match=r"keys.yaml: prompt.box.jiter_percent: unknown key"):
        load_strategy(_write(tmp_path, "keys.yaml", "prompt: {type: box, box: {jiter_percent: 3}}\n"))


def test_bare_name_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSHOT_PROMPTS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"strategy name '\.hidden' is not a valid name"):
        load_strategy(".hidden")
    with pytest.raises(ConfigError, match=r"strategy 'box-mid' not found in .*nowhere.*known: none"):
        load_strategy("box-mid")


def _sweep(grids, base=None):
    return {"base": base or {"key_slices": {"rule": "spread"}}, "grids": grids}


BAD_SWEEPS = [
    ({"base": {}, "grids": []}, r"grids: expected a non-empty list"),
    ({"base": {}, "grids": [], "extra": 1}, r"extra: unknown key"),
    (_sweep([{"vary": {"prompt.type": ["box"]}}]), r"grids\[0\].name: expected a name template"),
    (_sweep([{"name": "a", "vary": {}}]), r"grids\[0\].vary: expected at least one dotted key"),
    (_sweep([{"name": "a", "vary": {"prompt.type": "box"}}]), r"grids\[0\].vary.prompt.type: expected a non-empty"),
    (_sweep([{"name": "a-{prompt.typ}", "vary": {"prompt.type": ["box"]}}]), r"placeholder \{prompt.typ\}"),
    (_sweep([{"name": "a", "vary": {"prompt.type": ["box"], "key_slices.count": [1, 2]}}]), r"made twice"),
    (_sweep([{"name": "a", "vary": {"prompt..type": ["box"]}}]), r"prompt..type: not a dotted key"),
    (
        _sweep([{"name": "a", "vary": {"key_slices.rule.x": [1]}}], base={"key_slices": {"rule": "spread"}}),
        r"key_slices.rule is not a mapping",
    ),
    (
        _sweep([{"name": "a-{key_slices.count}", "vary": {"prompt.type": ["box"], "key_slices.count": [0]}}]),
        r"grids\[0\] \(a-0\): key_slices.count: must be >= 1",
    ),
]


@pytest.mark.parametrize(("data", "match"), BAD_SWEEPS)
def test_bad_sweeps(data, match):
    with pytest.raises(ConfigError, match=r"^s.yaml: .*" + match):
        expand_sweep(data, where="s.yaml")


def test_sweep_file_round_trip(tmp_path, monkeypatch):
    sweep = _sweep(
        [
            {
                "name": "t-{prompt.type}-k{key_slices.count}",
                "vary": {"prompt.type": ["box", "mask"], "key_slices.count": [1, 2]},
            }
        ]
    )
    path = _write(tmp_path, "grid.yaml", yaml.safe_dump(sweep, sort_keys=False))
    names = [s.name for s in load_strategies(path)]
    assert names == ["t-box-k1", "t-box-k2", "t-mask-k1", "t-mask-k2"]
    monkeypatch.setenv("ZEROSHOT_PROMPTS_DIR", str(tmp_path))
    assert load_strategy("t-mask-k2").prompt_type == "mask"
