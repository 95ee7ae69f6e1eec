"""A tiny nnInteractive trained-model folder with random weights, written offline, for tests and speed checks.

The folder has the layout of the published ``nnInteractive_v1.0`` model (``plans.json``, ``dataset.json``, the
session metadata, ``fold_0/checkpoint_final.pth``, ``LICENSE``), so that the ``nninteractive`` package loads and
runs it through its own code path (``initialize_from_trained_model_folder``, its normalisation, interaction
channels, AutoZoom and refinement). The network is the published architecture class (nnU-Net's
``ResidualEncoderUNet``) shrunk to three stages of 4 to 16 features, with 1 x 1 x 1 kernels at full resolution
(3 x 3 x 3 there would double the CPU time of a forward pass over a patch).

Random weights test machinery (loading, coordinates, interaction bookkeeping, determinism, speed of the package's
own steps), never accuracy. A randomly initialised network marks most of a volume as foreground, which would make
the package refine the whole volume patch by patch; the output layer's bias is therefore set so that a fixed
share of voxels (``foreground_fraction``) of a reference input come out foreground.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from zeroshot.errors import SegmenterError

__all__ = ["RANDOM_WEIGHTS_MARKER", "write_tiny_model_folder"]

#: File that marks a folder written by :func:`write_tiny_model_folder` (its settings, as JSON).
RANDOM_WEIGHTS_MARKER = "zeroshot-random-weights.json"
#: nnInteractive's refinement covers a patch minus 24 voxels on each side; smaller patches crash its fallback.
_MIN_PATCH = 49
#: Interaction channels of the published model: previous segmentation, then (positive, negative) pairs for
#: box/lasso, points and scribbles.
_INTERACTION_CHANNELS = 7
_CONFIGURATION = "3d_tiny"
_ARCHITECTURE = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
    "arch_kwargs": {
        "n_stages": 3,
        "features_per_stage": [4, 8, 16],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 1, 1], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "n_blocks_per_stage": [1, 1, 1],
        "n_conv_per_stage_decoder": [1, 1],
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    },
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}


def write_tiny_model_folder(
    folder: str | Path,
    *,
    seed: int = 0,
    patch_size: tuple[int, int, int] = (64, 64, 64),
    foreground_fraction: float = 0.02,
    supported_interactions: Mapping[str, bool] | None = None,
) -> Path:
    """Write a tiny randomly initialised nnInteractive trained-model folder and return its path.

    Parameters
    ----------
    folder : path-like
        Created if missing; existing files of the same names are overwritten.
    seed : int
        Seed of the random initialisation (a private generator state; the caller's is left as it was).
    patch_size : (int, int, int)
        The network's patch in voxels, each above 48 (nnInteractive's refinement leaves 24-voxel margins).
    foreground_fraction : float
        Share of voxels in (0, 1) of a reference input that the random network marks as foreground.
    supported_interactions : mapping of str to bool, optional
        ``None`` writes the session metadata the published v1.0 folder has (``inference_session_class.json``:
        nnInteractive then assumes its v1 capabilities, 2D boxes but no 3D boxes); a mapping (keys ``points``,
        ``bbox2d``, ``bbox3d``, ``scribble``, ``lasso``) writes ``inference_info.json`` with those capabilities,
        e.g. to test a checkpoint that refuses a prompt kind.

    Returns
    -------
    Path
        The folder, loadable with ``build_segmenter(str(path))``.

    Raises
    ------
    SegmenterError
        For a patch size of 48 voxels or less on an axis, or a fraction outside (0, 1).
    """
    patch = [int(p) for p in patch_size]
    if len(patch) != 3 or any(p < _MIN_PATCH for p in patch):
        raise SegmenterError(f"patch_size must be three sizes of at least {_MIN_PATCH} voxels, got {patch_size!r}")
    if not 0 < foreground_fraction < 1:
        raise SegmenterError(f"foreground_fraction must lie in (0, 1), got {foreground_fraction!r}")
    folder = Path(folder)
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    plans = {
        "dataset_name": "Dataset000_zeroshotTiny",
        "plans_name": "zeroshotTinyPlans",
        "configurations": {_CONFIGURATION: {"patch_size": patch, "architecture": _ARCHITECTURE}},
    }
    _write_json(folder / "plans.json", plans)
    _write_json(
        folder / "dataset.json",
        {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "target": 1}, "numTraining": 0},
    )
    if supported_interactions is None:
        _write_json(
            folder / "inference_session_class.json",
            {"inference_class": "nnInteractiveInferenceSession", "point_radius": 4, "preferred_scribble_thickness": 2},
        )
    else:
        _write_json(
            folder / "inference_info.json",
            {
                "inference_class": "nnInteractiveInferenceSession",
                "supported_interactions": dict(supported_interactions),
            },
        )
    network = _random_network(plans, seed=seed, foreground_fraction=foreground_fraction)
    checkpoint = {
        "trainer_name": "nnInteractiveTrainer_stub",
        "init_args": {"configuration": _CONFIGURATION},
        "network_weights": network.state_dict(),
    }
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    (folder / "LICENSE").write_text("CC0-1.0\nRandom weights written by zeroshot for tests; no training data.\n")
    marker = {"seed": int(seed), "patch_size": patch, "foreground_fraction": float(foreground_fraction)}
    _write_json(folder / RANDOM_WEIGHTS_MARKER, marker)
    return folder


def _random_network(plans: dict, *, seed: int, foreground_fraction: float) -> torch.nn.Module:
    """Build the plans' network with random weights and bias its output to ``foreground_fraction``."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    configuration = PlansManager(plans).get_configuration(_CONFIGURATION)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        network = get_network_from_plans(
            configuration.network_arch_class_name,
            configuration.network_arch_init_kwargs,
            configuration.network_arch_init_kwargs_req_import,
            1 + _INTERACTION_CHANNELS,
            2,
            deep_supervision=False,
        ).eval()
        reference = torch.randn(1, 1 + _INTERACTION_CHANNELS, *configuration.patch_size)
    reference[:, 1:] = 0
    with torch.no_grad():
        logits = network(reference)[0]
        margin = (logits[1] - logits[0]).flatten()
        threshold = torch.quantile(margin, 1.0 - foreground_fraction)
        network.decoder.seg_layers[-1].bias[1] -= threshold
    return network


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")
