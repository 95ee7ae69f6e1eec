"""The numerics segmenters run under: TF32 and bfloat16 autocast on CUDA as the authors run, float32 elsewhere."""

from __future__ import annotations

import warnings

import pytest
import torch

from zeroshot.segmenters.runtime import numerics_for, uses_tf32

CUDA = torch.device("cuda")


def test_tf32_only_on_cuda_in_bfloat16():
    assert uses_tf32(CUDA, "bfloat16")
    assert not uses_tf32(CUDA, "float32")
    assert not uses_tf32(torch.device("cpu"), "float32")


@pytest.mark.parametrize(("precision", "inside"), [("bfloat16", ("high", True)), ("float32", ("highest", False))])
def test_cuda_numerics_set_tf32_and_restore_the_callers_settings(precision, inside):
    """The settings are torch's process-wide state (set even where no GPU is, so this runs on a CPU)."""
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("medium")
    torch.backends.cudnn.allow_tf32 = not inside[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # autocast warns when CUDA is absent
            with numerics_for(CUDA, precision):
                assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == inside
        assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == ("medium", not inside[1])
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


def test_cpu_numerics_change_nothing():
    before = torch.get_float32_matmul_precision()
    with numerics_for(torch.device("cpu"), "float32"):
        assert torch.get_float32_matmul_precision() == before
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bfloat16_autocast_on_cuda():
    with numerics_for(CUDA, "bfloat16"):
        assert torch.is_autocast_enabled("cuda")
        assert (torch.ones(2, 2, device=CUDA) @ torch.ones(2, 2, device=CUDA)).dtype == torch.bfloat16
