"""What every torch-backed segmenter decides the same way: device, precision, numerics, and encoder counting."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from zeroshot.errors import SegmenterError

__all__ = [
    "PRECISIONS",
    "EncoderCounter",
    "encoder_counter",
    "numerics_for",
    "resolve_device",
    "resolve_precision",
    "uses_tf32",
]

#: Precision choices of the torch backends.
PRECISIONS = ("auto", "bfloat16", "float32")


def resolve_device(device: str) -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a device, checking that it exists.

    Raises
    ------
    SegmenterError
        For CUDA without a usable CUDA device, or any other device string.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SegmenterError(f"device={device!r} was requested but CUDA is not available; use 'cpu' or 'auto'")
        resolved = torch.device(device)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise SegmenterError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return resolved
    raise SegmenterError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` becomes bfloat16 on CUDA and float32 elsewhere; bfloat16 on a CPU is refused.

    Raises
    ------
    SegmenterError
        For an unknown precision or bfloat16 without CUDA.
    """
    if precision not in PRECISIONS:
        raise SegmenterError(f"precision must be 'auto', 'bfloat16' or 'float32', got {precision!r}")
    if precision == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    if precision == "bfloat16" and device.type != "cuda":
        raise SegmenterError("precision='bfloat16' needs a CUDA device; the CPU runs in float32")
    return precision


def uses_tf32(device: torch.device, precision: str) -> bool:
    """Whether float32 matrix products and cuDNN convolutions may use TF32: on CUDA in bfloat16, as the authors run.

    MedSAM2's inference scripts call ``torch.set_float32_matmul_precision("high")`` (``medsam2_infer_3D_CT.py``
    line 20) and SAM2's video notebook turns on ``torch.backends.cuda.matmul.allow_tf32`` and
    ``torch.backends.cudnn.allow_tf32``, both under bfloat16 autocast. ``precision="float32"`` on CUDA asks for
    float32 itself, so TF32 is off there; the CPU has none.
    """
    return device.type == "cuda" and precision == "bfloat16"


def numerics_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The numerics a model runs under: bfloat16 autocast with TF32 (see :func:`uses_tf32`), or plain float32.

    TF32 is process-wide state in torch: it is set on entry and the caller's settings are restored on exit.
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(_tf32(uses_tf32(device, precision)))
    if precision == "bfloat16":
        stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
    return stack


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn


class EncoderCounter:
    """How many slices one image encoder has processed, counted by a forward hook on the encoder itself.

    The counter belongs to the encoder module, not to a segmenter: every segmenter that shares the weights (an
    offloading variant made by ``with_offload()``) reads the same count, so a session started on a variant still
    counts its own encoder work. Sessions subtract the count at their start, so tests and run records can show
    that the image encoder ran once per slice per volume, however many prompt sets or click rounds followed.
    """

    def __init__(self) -> None:
        self.slices = 0

    def _hook(self, _module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
        self.slices += int(inputs[0].shape[0])


def encoder_counter(encoder: torch.nn.Module) -> EncoderCounter:
    """The :class:`EncoderCounter` of ``encoder``, registered on first use (once per module, however often asked)."""
    counter = encoder.__dict__.get("_zeroshot_encoder_counter")
    if counter is None:
        counter = EncoderCounter()
        encoder.register_forward_hook(counter._hook)
        encoder.__dict__["_zeroshot_encoder_counter"] = counter
    return counter
