"""How the simulated user corrects: the protocol, its budget, and the random stream of each round."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from zeroshot.errors import ConfigError, plain
from zeroshot.prompts import prompt_rng

__all__ = ["DEFAULT_ROUNDS", "PROTOCOLS", "ClickSettings", "click_rng"]

#: The click protocols (see ``docs/interactive.md``): ours, the CVPR 2025 challenge's, micro-sam's, RadioActive's.
PROTOCOLS = ("zeroshot", "cvpr25", "microsam", "radioactive")
#: Rounds of clicks after the initial prompts that each protocol's own code makes: CVPR25 5 clicks after the box;
#: micro-sam ``n_iterations=8`` predictions, the first from the initial prompt; RadioActive ``interactive_max_iter=5``.
DEFAULT_ROUNDS = {"zeroshot": 8, "cvpr25": 5, "microsam": 7, "radioactive": 5}
#: Purpose number of the click streams beside the prompt streams (0 source, 1 box, 2 points) of one case and seed.
CLICK_PURPOSE = 3


@dataclass(frozen=True)
class ClickSettings:
    """How the simulated user corrects.

    Attributes
    ----------
    rounds : int or None
        Number of correction rounds after the initial prompts; ``None`` takes the protocol's own
        (:data:`DEFAULT_ROUNDS`: 8 for ``zeroshot``, 5 for ``cvpr25``, 7 for ``microsam``, 5 for ``radioactive``).
    protocol : {"zeroshot", "cvpr25", "microsam", "radioactive"}
        Which simulated user (see :mod:`zeroshot.interactive`).
    slice_rule : {"largest-error", "key-slice"}
        ``zeroshot`` only: click on the slice with the most misclassified area (in mm²), or only on the prompted key
        slices (the one of them with the largest error). With ``"key-slice"`` clicks never add conditioning slices.
    per_round : {"one", "both"}
        ``zeroshot`` only: one click on the larger of the two error regions, or a positive and a negative click
        (where each exists).
    feed_mask : bool
        Also give the previous round's mask of each clicked slice as a mask prompt on that slice, so the model
        refines its own answer instead of starting over from the points (any protocol).
    """

    rounds: int | None = None
    protocol: str = "zeroshot"
    slice_rule: Literal["largest-error", "key-slice"] = "largest-error"
    per_round: Literal["one", "both"] = "one"
    feed_mask: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"clicks: protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.rounds is None:
            object.__setattr__(self, "rounds", DEFAULT_ROUNDS[self.protocol])
        if not isinstance(self.rounds, int) or isinstance(self.rounds, bool) or self.rounds < 0:
            raise ConfigError(f"clicks: rounds must be a whole number >= 0, got {plain(self.rounds)}")
        if self.slice_rule not in ("largest-error", "key-slice"):
            raise ConfigError(f"clicks: slice_rule must be 'largest-error' or 'key-slice', got {self.slice_rule!r}")
        if self.per_round not in ("one", "both"):
            raise ConfigError(f"clicks: per_round must be 'one' or 'both', got {self.per_round!r}")
        if self.protocol != "zeroshot" and (self.slice_rule, self.per_round) != ("largest-error", "one"):
            raise ConfigError(
                f"clicks: slice_rule and per_round belong to the zeroshot protocol; protocol {self.protocol!r} "
                "places its clicks by its own rule (leave --click-slice and --clicks-per-round out)"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded in a run's configuration."""
        return dataclasses.asdict(self)


def click_rng(seed: int, case_id: str, round_index: int) -> np.random.Generator:
    """The random stream of one round of one curve: seeded by ``(seed, crc32(case_id), 3, round)``.

    Each round has its own stream, so a curve resumed after round r draws what the uninterrupted curve drew.
    """
    return prompt_rng(seed, case_id, CLICK_PURPOSE, round_index)
