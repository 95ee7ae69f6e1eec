"""zeroshot: zero-shot evaluation of segmentation foundation models on 3D pancreas MRI."""

__version__ = "0.1.0"
