"""A dataset preview: one slice per sequence with the label's contour, for a few cases (read from the files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zeroshot.datasets import SEQUENCES, Case
from zeroshot.errors import DatasetError
from zeroshot.volume import read_label, read_volume

__all__ = ["write_montage"]


def write_montage(cases: Sequence[Case], out: str | Path, *, label: int, max_subjects: int = 3) -> Path:
    """Draw a grid (subjects × sequences) of each case's largest-label slice with the label contour; save a PNG.

    Cases of one subject share a ``case_id`` across sequences; up to ``max_subjects`` subjects are shown, each
    row the same subject in every sequence present. Intensities are windowed to the 0.5–99.5 percentiles of
    the slice's non-zero pixels. Slices are shown as stored (radiological view: anterior up, patient's right
    on the image's left).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labelled = [c for c in cases if c.label is not None]
    if not labelled:
        raise DatasetError("no labelled case to show in a montage")
    sequences = [s for s in SEQUENCES if any(c.sequence == s for c in labelled)]
    sequences += sorted({c.sequence for c in labelled} - set(sequences))
    subjects = list(dict.fromkeys(c.case_id for c in labelled))[:max_subjects]
    by_key = {(c.case_id, c.sequence): c for c in labelled}
    fig, axes = plt.subplots(
        len(subjects), len(sequences), figsize=(2.4 * len(sequences), 2.2 * len(subjects)), squeeze=False
    )
    for row, subject in enumerate(subjects):
        for col, sequence in enumerate(sequences):
            ax = axes[row, col]
            ax.set_axis_off()
            case = by_key.get((subject, sequence))
            if case is None:
                continue
            volume = read_volume(case.image)
            mask = read_label(case.label, volume, label=label, require_label=False)
            z = int(np.argmax(mask.sum(axis=(1, 2)))) if mask.any() else volume.num_slices // 2
            image = volume.array[z]
            nonzero = image[image > 0]
            lo, hi = np.percentile(nonzero, [0.5, 99.5]) if nonzero.size else (0.0, 1.0)
            sy, sx = volume.spacing_mm[1:]
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, aspect=sy / sx, interpolation="nearest")
            if mask[z].any():
                ax.contour(mask[z].astype(float), levels=[0.5], colors=["#E69F00"], linewidths=0.9)
            if row == 0:
                ax.set_title(sequence, fontsize=10)
            ax.text(2, 6, f"{subject}  z={z}", color="white", fontsize=6, va="top")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, metadata={"Software": None})
    plt.close(fig)
    return out
