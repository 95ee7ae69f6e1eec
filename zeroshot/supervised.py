"""A small supervised baseline that trains in seconds on a CPU: the demo's stand-in for nnU-Net.

CrossPan's finding is that a supervised model segments the sequence it was trained on well and collapses on the
others, while foundation models keep some accuracy everywhere. To show that comparison without real data or
weights, the demo trains this network on the phantom's T1 training cases, predicts the test cases of every
sequence, writes the masks as NIfTI folders and scores them through ``zeroshot compare --baseline-preds``, exactly
as a user scores an nnU-Net output folder.

The recipe is nnU-Net's in spirit, scaled down until it trains in seconds on one CPU thread:

- intensities: z-score per volume over its non-zero voxels (nnU-Net's normalisation for MRI);
- network (:class:`SliceNetwork`): 2D, slice by slice; a stride-2 3×3 convolution, four residual 3×3
  convolutions dilated 1, 2, 4 and 8 at half resolution (a receptive field of about 65 pixels), squeezed to four
  channels, upsampled bilinearly and refined with the input slice by one 3×3 convolution at full resolution;
- training: Adam on random square patches; a share of them centred on a random structure pixel (the structure is
  a few percent of a slice), the rest anywhere; loss binary cross-entropy plus soft Dice;
- prediction: probability above 0.5, then the largest 3D connected component;
- determinism: seeded draws and one torch thread, so the same seed gives the same masks on any machine's CPU.

Trained on phantom data it says nothing about real scans; it exists to show the shape of the finding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from zeroshot.datasets import Case
from zeroshot.errors import ConfigError, plain
from zeroshot.prompts.regions import largest_component
from zeroshot.volume import Volume, read_label, read_volume, write_mask

__all__ = ["SliceCNN", "SliceCNNSettings", "SliceNetwork", "normalise", "train_slice_cnn", "write_predictions"]


@dataclass(frozen=True)
class SliceCNNSettings:
    """How the baseline is trained (the defaults train in about 10 s on one CPU thread).

    Attributes
    ----------
    steps : int
        Optimiser steps.
    batch : int
        Patches per step.
    patch_px : int
        Side of a square training patch in pixels (slices smaller than that are padded).
    channels : int
        Feature channels of the half-resolution layers.
    learning_rate : float
        Adam's step size.
    centred_fraction : float
        Share of patches centred on a structure pixel (0–1).
    seed : int
        Seed of the weights' initialisation and of every draw.
    """

    steps: int = 200
    batch: int = 8
    patch_px: int = 64
    channels: int = 8
    learning_rate: float = 1e-2
    centred_fraction: float = 0.7
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "patch_px", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"SliceCNNSettings.{name}: expected a positive integer, got {plain(value)}")
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"SliceCNNSettings.learning_rate: expected a positive number, got {self.learning_rate}")
        if not 0.0 <= self.centred_fraction <= 1.0:
            raise ConfigError(
                f"SliceCNNSettings.centred_fraction: expected a share between 0 and 1, got {self.centred_fraction}"
            )


class SliceNetwork(nn.Module):
    """The 2D network: ``(N, 1, Y, X)`` normalised slices in, ``(N, Y, X)`` logits out (see the module docstring)."""

    DILATIONS = (1, 2, 4, 8)

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.context = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in self.DILATIONS)
        self.squeeze = nn.Conv2d(channels, 4, 1)
        self.refine = nn.Conv2d(4 + 1, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        """Logits of the structure, one per pixel."""
        features = functional.relu(self.down(slices))
        for conv in self.context:
            features = features + functional.relu(conv(features))
        coarse = functional.interpolate(self.squeeze(features), size=slices.shape[-2:], mode="bilinear")
        return self.head(functional.relu(self.refine(torch.cat([coarse, slices], dim=1))))[:, 0]


@dataclass(frozen=True, eq=False)
class SliceCNN:
    """A trained baseline.

    Attributes
    ----------
    network : SliceNetwork
    settings : SliceCNNSettings
    train_sequence : str
        The sequence of every training case.
    train_cases : tuple of str
        Their case ids.
    """

    network: SliceNetwork
    settings: SliceCNNSettings
    train_sequence: str
    train_cases: tuple[str, ...]

    def predict(self, volume: Volume, *, slices_per_pass: int = 8) -> np.ndarray:
        """The structure in ``volume`` as a ``(Z, Y, X)`` bool mask on its grid (largest component only)."""
        array = torch.from_numpy(normalise(volume.array))[:, None]
        with _one_thread(), torch.no_grad():
            logits = [self.network(array[z : z + slices_per_pass]) for z in range(0, len(array), slices_per_pass)]
        return largest_component(torch.cat(logits).numpy() > 0.0)  # logit 0 is probability 0.5

    def describe(self) -> dict[str, object]:
        """What the predictions came from, for a record beside them."""
        return {
            "model": "zeroshot.supervised.SliceCNN",
            "train_sequence": self.train_sequence,
            "train_cases": list(self.train_cases),
            "settings": asdict(self.settings),
        }


def normalise(array: np.ndarray) -> np.ndarray:
    """Z-score of a volume over its non-zero voxels (all voxels if none is non-zero), as float32."""
    foreground = array[array != 0]
    if foreground.size == 0:
        foreground = array.ravel()
    std = float(foreground.std())
    return ((array - float(foreground.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


def train_slice_cnn(cases: Sequence[Case], settings: SliceCNNSettings | None = None, *, label: int = 1) -> SliceCNN:
    """Train the baseline on the slices of ``cases`` (all of one sequence).

    Parameters
    ----------
    cases : sequence of Case
        Training cases with labels, all of the same sequence.
    settings : SliceCNNSettings, optional
        Default :class:`SliceCNNSettings()`.
    label : int
        Label value of the structure in the label files.

    Raises
    ------
    ConfigError
        No cases, or cases of more than one sequence.
    VolumeError
        An image or label that cannot be read, or a label without the structure.
    """
    settings = settings or SliceCNNSettings()
    sequences = sorted({case.sequence for case in cases})
    if len(sequences) != 1:
        found = ", ".join(sequences) if sequences else "no cases"
        raise ConfigError(f"train_slice_cnn: expected training cases of one sequence, got {found}")
    volumes, masks = [], []
    for case in cases:
        volume = read_volume(case.image)
        masks.append(read_label(case.label, volume, label=label))
        volumes.append(normalise(volume.array))
    rng = np.random.default_rng(settings.seed)
    with _one_thread():
        torch.manual_seed(settings.seed)
        network = SliceNetwork(settings.channels)
        optimiser = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
        for _step in range(settings.steps):
            patches = [_patch(volumes, masks, settings, rng) for _ in range(settings.batch)]
            images = torch.from_numpy(np.stack([p[0] for p in patches]))[:, None]
            targets = torch.from_numpy(np.stack([p[1] for p in patches]).astype(np.float32))
            logits = network(images)
            probabilities = torch.sigmoid(logits)
            overlap = 2.0 * (probabilities * targets).sum() + 1.0
            soft_dice = 1.0 - overlap / (probabilities.sum() + targets.sum() + 1.0)
            loss = functional.binary_cross_entropy_with_logits(logits, targets) + soft_dice
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    network.eval()
    return SliceCNN(network, settings, sequences[0], tuple(case.case_id for case in cases))


def write_predictions(model: SliceCNN, cases: Sequence[Case], out: str | Path) -> Path:
    """Predict every case and write ``out/<sequence>/<case_id>.nii.gz`` (the ``--baseline-preds`` layout).

    Each mask is written on its image's grid and orientation, as :func:`zeroshot.volume.write_mask` does for
    zero-shot predictions. Returns ``out``.
    """
    out = Path(out)
    for case in cases:
        volume = read_volume(case.image)
        write_mask(out / case.sequence / f"{case.case_id}.nii.gz", model.predict(volume), volume)
    return out


def _patch(
    volumes: Sequence[np.ndarray], masks: Sequence[np.ndarray], settings: SliceCNNSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One training patch: centred on a random structure pixel (``centred_fraction`` of draws) or anywhere."""
    index = int(rng.integers(len(volumes)))
    volume, mask = volumes[index], masks[index]
    if rng.random() < settings.centred_fraction:
        z, cy, cx = (int(v) for v in np.argwhere(mask)[rng.integers(np.count_nonzero(mask))])
    else:
        z, cy, cx = (int(rng.integers(n)) for n in volume.shape)
    size = settings.patch_px
    image, label = _at_least(volume[z], size, float(volume[z].min())), _at_least(mask[z], size, False)
    height, width = image.shape
    y0 = min(max(cy - size // 2, 0), height - size)
    x0 = min(max(cx - size // 2, 0), width - size)
    return image[y0 : y0 + size, x0 : x0 + size], label[y0 : y0 + size, x0 : x0 + size]


def _at_least(slice_yx: np.ndarray, size: int, fill: float | bool) -> np.ndarray:
    """Pad a slice at its far edges to at least ``size`` × ``size`` pixels."""
    pad = ((0, max(size - slice_yx.shape[0], 0)), (0, max(size - slice_yx.shape[1], 0)))
    return np.pad(slice_yx, pad, constant_values=fill) if any(after for _, after in pad) else slice_yx


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread while training or predicting: reproducible sums, and no fight for cores with a model run."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
