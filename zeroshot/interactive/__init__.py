"""Simulated corrective clicks: how many corrections a segmenter needs on each sequence, under whose user model.

A simulated user starts from any strategy's initial prompts. Each round it compares the current 3D prediction with
the ground truth and clicks by one of four protocols (``ClickSettings.protocol``; sources, rules and code lines in
``docs/interactive.md``):

``zeroshot`` (default, :mod:`~zeroshot.interactive.worst_slice`)
    the deepest point (in mm) of the largest 2D error region on the slice with the most error; one click per round
    (or one of each sign).
``cvpr25`` (:mod:`~zeroshot.interactive.cvpr25`)
    the CVPR 2025 interactive 3D challenge: the deepest voxel (EDT in voxels, ties drawn with seed 42) of the
    largest 3D error component, its sign from the ground truth there; 5 rounds.
``microsam`` (:mod:`~zeroshot.interactive.microsam`)
    micro-sam's iterative prompt generator: one positive voxel drawn from the false negatives and one negative
    from the false positives per round, with its fallbacks; 7 rounds after the initial prompt (8 predictions).
``radioactive`` (:mod:`~zeroshot.interactive.radioactive`)
    RadioActive's 2D interactive prompter: a sign drawn with probability FP / (FP + FN), positives at the centre of
    the largest false-negative component on every slice it spans, negatives along a contour scribble (one point
    per scribble pixel); 5 rounds.

The segmenter then re-propagates from the prompts plus every click so far, on its existing session. Every click
``(round, z, x, y, label)`` is recorded, so a curve can be replayed exactly, and a run killed mid-curve resumes at
the round where it stopped: the recorded clicks rebuild the prompts of that round, and each round's random draws
come from its own stream (seed, case, round).
"""

from zeroshot.interactive.choose import RULES, choose_clicks
from zeroshot.interactive.clicks import Click, add_clicks, clicks_from_records
from zeroshot.interactive.loop import Round, replay, simulate
from zeroshot.interactive.settings import DEFAULT_ROUNDS, PROTOCOLS, ClickSettings, click_rng

__all__ = [
    "DEFAULT_ROUNDS",
    "PROTOCOLS",
    "RULES",
    "Click",
    "ClickSettings",
    "Round",
    "add_clicks",
    "choose_clicks",
    "click_rng",
    "clicks_from_records",
    "replay",
    "simulate",
]
