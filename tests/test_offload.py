"""Out-of-memory fallback on the real torch segmenters: ``with_offload()`` and the runner's retry.

A CUDA out-of-memory error is simulated on the CPU: one inner step of the real session raises
``torch.cuda.OutOfMemoryError`` once, on the segmenter that does not offload. Random tiny weights: machinery only.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_runner import write_strategies, write_tiny_dataset

from zeroshot.prompts import SlicePrompt, VolumePrompts
from zeroshot.runner import EvalConfig, run_eval
from zeroshot.runner.work import offload_variant
from zeroshot.segmenters import build_segmenter
from zeroshot.segmenters.sam2_session import Sam2Session
from zeroshot.segmenters.transformers_video import TransformersBackend
from zeroshot.volume import volume_from_array

SHAPE = (10, 32, 40)
MODELS = {"sam2": "random:sam2.1_hiera_t@64", "transformers": "random:transformers-tiny@64"}


@pytest.fixture(scope="module", params=sorted(MODELS))
def segmenter(request, one_torch_thread):
    return build_segmenter(MODELS[request.param], device="cpu")


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    array = rng.normal(100.0, 10.0, size=(6, 40, 48))
    array[:, 12:28, 14:34] += 80.0
    return volume_from_array(array, (3.0, 1.5, 1.5))


PROMPTS = VolumePrompts("tiny", "test", 0, "gt", (SlicePrompt(z=3, box=(14, 12, 33, 27)),))


def test_with_offload_shares_the_weights_and_counts_its_own_encoder_work(segmenter, volume):
    variant = segmenter.with_offload()
    assert variant.model is segmenter.model
    assert all(a is b for a, b in zip(variant.model.parameters(), segmenter.model.parameters(), strict=True))
    assert variant.options.offload_video_to_cpu and variant.options.offload_state_to_cpu
    assert not segmenter.options.offload_state_to_cpu  # the original is untouched
    assert variant.describe()["offload_state_to_cpu"] and not segmenter.describe()["offload_state_to_cpu"]
    assert variant.with_offload() is None and offload_variant(variant) is None

    expected = segmenter.prepare(volume).segment(PROMPTS)
    with variant.prepare(volume) as session:
        first = session.segment(PROMPTS)
        again = session.segment(PROMPTS)
    # The copy.copy the runner made before read 0 here: the encoder's hook counted on the original.
    assert first.info["encoder_slices_total"] == volume.num_slices == again.info["encoder_slices_total"]
    assert again.info["encoder_slices_segment"] == 0
    np.testing.assert_array_equal(first.mask, expected.mask)
    np.testing.assert_allclose(first.probabilities, expected.probabilities, rtol=0, atol=1e-6)


def _raise_once_unless_offloaded(monkeypatch, backend: str, raised: list[str]) -> None:
    """Make one inner propagation step of the real session raise a CUDA out-of-memory error once per case."""
    if backend == "sam2":
        propagate = Sam2Session._propagate_lockstep

        def lockstep(self, prompt_sets):
            if not self.options.offload_state_to_cpu:
                raised.append("lockstep")
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return propagate(self, prompt_sets)

        monkeypatch.setattr(Sam2Session, "_propagate_lockstep", lockstep)
    else:
        step_pass = TransformersBackend.step_pass

        def step(self, start, *, reverse):
            if not self.options.offload_state_to_cpu:
                raised.append("step_pass")
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return step_pass(self, start, reverse=reverse)

        monkeypatch.setattr(TransformersBackend, "step_pass", step)


@pytest.mark.parametrize("backend", sorted(MODELS))
def test_the_runner_retries_a_real_segmenter_offloaded_after_out_of_memory(backend, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    manifest = write_tiny_dataset(tmp_path / "data", subjects=1, shape=SHAPE)
    tight, _ = write_strategies(tmp_path / "strategies")
    name = MODELS[backend]

    def config(out: str) -> EvalConfig:
        return EvalConfig(
            data=manifest, out=tmp_path / out, models=(name,), strategies=(str(tight),), seeds=(0,), workers=0
        )

    plain = run_eval(config("plain"), progress=False, build=lambda _: build_segmenter(name, device="cpu"))
    raised: list[str] = []
    _raise_once_unless_offloaded(monkeypatch, backend, raised)
    built: list[object] = []

    def build(_name: str):
        built.append(build_segmenter(name, device="cpu"))
        return built[-1]

    retried = run_eval(config("oom"), progress=False, build=build)
    assert len(raised) == 3  # once per case (T1, T2, OOP), each then retried on the variant
    results = retried.results.sort_values("sequence").reset_index(drop=True)
    assert len(results) == 3 and not results["failed"].any() and results["offloaded"].all()
    expected = plain.results.sort_values("sequence").reset_index(drop=True)
    assert not expected["offloaded"].any()
    pd.testing.assert_series_equal(results["dice"], expected["dice"], rtol=0, atol=1e-9)
    assert not built[0].options.offload_state_to_cpu  # the variant never replaced the built segmenter
    for row_file in (tmp_path / "oom" / "rows").rglob("seed0.json"):
        info = json.loads(row_file.read_text())["info"]
        assert info["encoder_slices_total"] == SHAPE[0]
        assert info["model"] == name
