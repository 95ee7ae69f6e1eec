"""Prompts: typed values, their sources, key-slice rules and named strategies.

Model-free: prompts depend on a mask, the volume's grid and a seed, never on the model they are fed to.

>>> from zeroshot.prompts import load_strategy, make_prompts, prompts_to_json, prompts_from_json
"""

from zeroshot.prompts.batch import DatasetPrompts, PromptFailure, prompts_for_case, write_dataset_prompts
from zeroshot.prompts.boxes import jitter_box
from zeroshot.prompts.generate import ORACLE_FLAGS, make_prompts, prompt_rng
from zeroshot.prompts.keyslices import choose_key_slices
from zeroshot.prompts.points import (
    farthest_interior_point,
    negative_region,
    place_points,
    random_points,
    spread_points,
)
from zeroshot.prompts.regions import (
    bounding_slices,
    count_components,
    distance_from_region_mm,
    distance_to_boundary_mm,
    largest_component,
    tight_box,
)
from zeroshot.prompts.serialise import (
    mask_dir_for,
    mask_file_name,
    prompts_from_json,
    prompts_to_json,
    read_prompts_file,
    write_prompt_masks,
    write_prompts_file,
)
from zeroshot.prompts.settings import BoxSettings, KeySliceSettings, PointSettings, SourceSettings, Strategy
from zeroshot.prompts.sources import (
    degrade_mask,
    find_coarse_file,
    mask_volume_ml,
    read_coarse_mask,
    read_gt_mask,
    read_source_mask,
)
from zeroshot.prompts.strategy import (
    expand_sweep,
    load_strategies,
    load_strategy,
    prompts_dir,
    strategy_from_dict,
)
from zeroshot.prompts.types import NEGATIVE, POSITIVE, SlicePrompt, VolumePrompts

__all__ = [
    "NEGATIVE",
    "ORACLE_FLAGS",
    "POSITIVE",
    "BoxSettings",
    "DatasetPrompts",
    "KeySliceSettings",
    "PointSettings",
    "PromptFailure",
    "SlicePrompt",
    "SourceSettings",
    "Strategy",
    "VolumePrompts",
    "bounding_slices",
    "choose_key_slices",
    "count_components",
    "degrade_mask",
    "distance_from_region_mm",
    "distance_to_boundary_mm",
    "expand_sweep",
    "farthest_interior_point",
    "find_coarse_file",
    "jitter_box",
    "largest_component",
    "load_strategies",
    "load_strategy",
    "make_prompts",
    "mask_dir_for",
    "mask_file_name",
    "mask_volume_ml",
    "negative_region",
    "place_points",
    "prompt_rng",
    "prompts_dir",
    "prompts_for_case",
    "prompts_from_json",
    "prompts_to_json",
    "random_points",
    "read_coarse_mask",
    "read_gt_mask",
    "read_prompts_file",
    "read_source_mask",
    "spread_points",
    "strategy_from_dict",
    "tight_box",
    "write_dataset_prompts",
    "write_prompt_masks",
    "write_prompts_file",
]
