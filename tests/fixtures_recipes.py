"""The authors' inference steps restated for tests: oracles that use none of zeroshot's segmenter code.

MedSAM2's 3D inference (bowang-lab/MedSAM2 332f30d, ``medsam2_infer_3D_CT.py`` with the MR intensity step of
``examples/infer_CT_LUNA25.py``) is a script, not an importable library; its steps are restated here line by
line, with the same NumPy / torch / Pillow calls and dtypes. SAM2's own video predictor is used as it is, built by
``sam2.build_sam.build_sam2_video_predictor`` with its post-processing (``fill_hole_area=8``); only its CUDA
connected-components kernel is replaced, by :func:`flood_fill_components` (SciPy's labelling).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def medsam2_window(image: np.ndarray) -> np.ndarray:
    """MedSAM2's MR step (``examples/infer_CT_LUNA25.py`` ``preprocess``, modality MR), on the raw array."""
    lower_bound, upper_bound = np.percentile(image[image > 0], 0.5), np.percentile(image[image > 0], 99.5)
    image_data_pre = np.clip(image, lower_bound, upper_bound)
    image_data_pre = (
        (image_data_pre - np.min(image_data_pre)) / (np.max(image_data_pre) - np.min(image_data_pre)) * 255.0
    )
    image_data_pre[image == 0] = 0
    return image_data_pre


def medsam2_images(image: np.ndarray, image_size: int) -> torch.Tensor:
    """``resize_grayscale_to_rgb_and_resize``, ``/ 255.0`` and the normalisation of ``medsam2_infer_3D_CT.py``.

    Returns the float64 ``(N, 3, S, S)`` tensor MedSAM2 hands to ``init_state`` (SAM2 reads a slice as float32).
    """
    from PIL import Image

    array = medsam2_window(image)
    resized_array = np.zeros((array.shape[0], 3, image_size, image_size))
    for i in range(array.shape[0]):
        img_pil = Image.fromarray(array[i].astype(np.uint8))
        resized_array[i] = np.array(img_pil.convert("RGB").resize((image_size, image_size))).transpose(2, 0, 1)
    img_resized = torch.from_numpy(resized_array / 255.0)
    img_resized -= torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    img_resized /= torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    return img_resized


def get_largest_cc(segmentation: np.ndarray) -> np.ndarray:
    """MedSAM2's ``getLargestCC`` (skimage's full connectivity)."""
    from skimage import measure

    labels = measure.label(segmentation)
    return labels == np.argmax(np.bincount(labels.flat)[1:]) + 1


@dataclass
class FloodFillComponents:
    """Stand-in for ``sam2.utils.misc.get_connected_components`` (its CUDA kernel), counting what it labels.

    Same contract: ``(N, 1, H, W)`` binary masks in, ``(labels, areas)`` out, 8-connectivity, 0 on background.
    """

    small_pixels: int = 0
    calls: int = 0

    def __call__(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels = np.zeros(mask.shape, dtype=np.int32)
        areas = np.zeros(mask.shape, dtype=np.int32)
        for index, image in enumerate(mask.cpu().numpy().astype(bool)):
            labelled, _ = ndimage.label(image[0], structure=np.ones((3, 3), dtype=bool))
            sizes = np.bincount(labelled.ravel())
            sizes[0] = 0
            labels[index, 0] = labelled
            areas[index, 0] = sizes[labelled]
        self.calls += 1
        self.small_pixels += int(((areas > 0) & (areas <= 8)).sum())
        return torch.from_numpy(labels).to(mask.device), torch.from_numpy(areas).to(mask.device)


@contextmanager
def flood_fill_components() -> Iterator[FloodFillComponents]:
    """Replace SAM2's CUDA connected components by :class:`FloodFillComponents` while the block runs."""
    import sam2.utils.misc as misc

    original = misc.get_connected_components
    stand_in = FloodFillComponents()
    misc.get_connected_components = stand_in
    try:
        yield stand_in
    finally:
        misc.get_connected_components = original


@dataclass
class OfficialRun:
    """What MedSAM2's 3D inference produces: union logits per slice, the mask, and the largest component."""

    logits: np.ndarray
    mask: np.ndarray
    largest: np.ndarray


def medsam2_3d_inference(
    predictor: torch.nn.Module, images: torch.Tensor, box: np.ndarray, key_slice: int, shape_yx: tuple[int, int]
) -> OfficialRun:
    """MedSAM2's ``medsam2_infer_3D_CT.py`` lines 256-286 on SAM2's predictor (CPU: no autocast).

    ``init_state(images, H, W)`` is MedSAM2's fork of the predictor's; SAM2's own ``init_state`` is given the
    images the same way, through the frame loader it calls.
    """
    import sam2.sam2_video_predictor as video_predictor

    height, width = shape_yx
    loader = video_predictor.load_video_frames
    video_predictor.load_video_frames = lambda **_: (images, height, width)
    try:
        with torch.inference_mode():
            inference_state = predictor.init_state("volume-in-memory")
    finally:
        video_predictor.load_video_frames = loader
    depth = images.shape[0]
    segs_3d = np.zeros((depth, height, width), dtype=np.uint8)
    logits = np.full((depth, height, width), -np.inf, dtype=np.float32)
    with torch.inference_mode():
        for reverse in (False, True):
            predictor.add_new_points_or_box(inference_state=inference_state, frame_idx=key_slice, obj_id=1, box=box)
            for frame, _obj_ids, mask_logits in predictor.propagate_in_video(inference_state, reverse=reverse):
                segs_3d[frame, (mask_logits[0] > 0.0).cpu().numpy()[0]] = 1
                logits[frame] = np.maximum(logits[frame], mask_logits[0, 0].float().cpu().numpy())
            predictor.reset_state(inference_state)
    largest = get_largest_cc(segs_3d) if segs_3d.max() > 0 else segs_3d.astype(bool)
    return OfficialRun(logits=logits, mask=segs_3d.astype(bool), largest=largest)
