"""Throughput of the main job: ``zeroshot eval`` end to end on CrossPan-like volumes, against its ceilings.

Writes a phantom dataset with CrossPan-like sizes (one sequence per subject; 256-448 px, 40-96 slices by default,
or ``--slices``/``--width`` for a small CPU run), then times on the same volumes and prompts:

* ``eval``: ``run_eval`` as ``zeroshot eval`` runs it (random MedSAM2 weights, 3 strategies, reading, prompting,
  scoring in worker processes, row writing, tables), with prompt sets batched per case (``--batch-prompts``);
* ``eval-unbatched``: the same with ``--no-batch-prompts`` (one ``segment`` call per prompt set);
* ``eval-inflight<N>`` (with ``--cases-in-flight N``): the eval with the prompt sets of N cases propagating in
  one lockstep call;
* ``engine``: prepare + one ``segment_many`` of the 3 prompt sets per volume, volumes and prompts in memory;
* ``engine-inflight<N>`` (with ``--cases-in-flight N``): prepare N volumes, then one ``segment_volumes`` call;
* ``encoder``: ``prepare`` alone (the image encoder: no volume can go faster than this, the ceiling);
* ``reference``: MedSAM2's script's loop: per volume, one strategy after another, each its own prepared session and
  propagation with the ``reference`` engine (SAM2's own predictor).

It prints volumes/s, slice-propagations/s (slices x prompt sets, per second of wall time), the share of the eval's
wall time the model was busy (``seconds_prepare`` + ``seconds_segment`` of its rows), and the projection to
CrossPan's 1,386 volumes x 3 strategies. Random weights: speed only, never accuracy.

    .venv/bin/python benchmarks/sweep_speed.py --device cpu --cases 3 --image-size 128 --slices 24 --width 160
    .venv/bin/python benchmarks/sweep_speed.py --device cpu --cases 6 --image-size 128 --slices 24 --width 160 \
        --cases-in-flight 3 --skip eval-unbatched,reference           # one case at a time vs 3 in flight
    python benchmarks/sweep_speed.py --device cuda --cases 24            # GPU: realistic sizes, MedSAM2 at 512 px
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # SAM2's predictor draws a progress bar per pass

import nibabel as nib
import numpy as np
import torch

from zeroshot.phantom import make_phantom_case
from zeroshot.runner import EvalConfig, RunDir, run_eval
from zeroshot.runner.work import read_case
from zeroshot.segmenters import build_segmenter

STRATEGIES = ("box-mid", "box-mid-jitter10", "box-largest")
#: CrossPan: 1,386 volumes; x 3 strategies about 170k slice-propagations (issue 14), i.e. ~41 slices per volume.
CROSSPAN_VOLUMES = 1386
CROSSPAN_SLICE_PROPAGATIONS = 170_000
PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"


def add_sweep_arguments(parser: argparse.ArgumentParser, *, cases: int) -> None:
    """The options of an eval over phantom volumes that this benchmark and ``postprocess_speed.py`` share."""
    parser.add_argument("--model", default="random:medsam2", help="default random:medsam2 (MedSAM2's recipe)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cases", type=int, default=cases, help="volumes (one sequence of each phantom subject)")
    parser.add_argument("--image-size", type=int, default=512, help="model input size (default 512)")
    parser.add_argument("--slices", type=int, default=None, help="slices per volume (default: realistic, 40-96)")
    parser.add_argument("--width", type=int, default=None, help="in-plane width with --slices (default 256)")
    parser.add_argument("--workers", type=int, default=2, help="scoring processes of the eval (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--work", type=Path, default=None, help="keep the data and runs here (default: a temp dir)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sweep_arguments(parser, cases=24)
    parser.add_argument(
        "--cases-in-flight", type=int, default=1, help="also time the eval and the engine with N cases in flight"
    )
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: eval-unbatched,reference")
    return parser.parse_args(argv)


def write_dataset(root: Path, args: argparse.Namespace) -> tuple[Path, list[int]]:
    """Phantom volumes (the T2 of each subject) and a manifest; returns it and the slice count of each volume."""
    root.mkdir(parents=True, exist_ok=True)
    lines, depths = ["case_id,image,label,sequence,center,split"], []
    for index in range(args.cases):
        shape = None
        if args.slices is not None:
            width = args.width or 256
            shape = (args.slices, round(width * 0.85), width)
        case = make_phantom_case(0, index=index, shape=shape, size="realistic")
        volume = case.volumes["T2"]
        affine = np.diag([volume.spacing_mm[2], volume.spacing_mm[1], volume.spacing_mm[0], 1.0])
        image, label = root / f"{case.case_id}_0000.nii.gz", root / f"{case.case_id}.nii.gz"
        pixels = np.clip(np.rint(volume.array), 0, np.iinfo(np.int16).max).astype(np.int16)
        nib.save(nib.Nifti1Image(np.transpose(pixels, (2, 1, 0)), affine), image)
        nib.save(nib.Nifti1Image(np.transpose(case.label, (2, 1, 0)).astype(np.uint8), affine), label)
        lines.append(f"{case.case_id},{image.name},{label.name},T2,center-{index % 3},test")
        depths.append(volume.shape[0])
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, depths


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sweep_config(manifest: Path, out: Path, args: argparse.Namespace, **options: Any) -> EvalConfig:
    """The eval these benchmarks time: the model on the manifest's volumes under the three strategies."""
    return EvalConfig(
        data=manifest,
        out=out,
        models=(args.model,),
        strategies=tuple(str(PROMPTS_DIR / f"{name}.yaml") for name in STRATEGIES),
        image_size=args.image_size,
        device=args.device,
        workers=args.workers,
        **options,
    )


def timed_eval(
    manifest: Path, out: Path, args: argparse.Namespace, *, batch: bool, cases_in_flight: int = 1
) -> dict[str, Any]:
    """``run_eval`` end to end; wall time and the model-busy seconds its rows record."""
    config = sweep_config(manifest, out, args, batch_prompts=batch, cases_in_flight=cases_in_flight)
    start = time.perf_counter()
    summary = run_eval(config, progress=False)
    wall = time.perf_counter() - start
    rows = summary.results
    if rows["failed"].any():
        raise SystemExit(f"eval rows failed: {rows.loc[rows['failed'], 'error'].unique().tolist()}")
    busy = rows.groupby("case_id")["seconds_prepare"].first().sum() + rows["seconds_segment"].sum()
    read = rows.groupby("case_id")["seconds_read"].first().sum()
    return {"wall_s": wall, "busy_s": float(busy), "rows": len(rows), "read_s": float(read)}


def engine_times(manifest: Path, rundir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Encoder-only, engine-only (batched) and the reference loop on the eval's volumes and prompts, in memory."""
    from zeroshot.datasets import discover
    from zeroshot.prompts.strategy import load_strategy

    cases = sorted(discover(manifest.parent), key=lambda c: c.key)
    strategies = {name: load_strategy(PROMPTS_DIR / f"{name}.yaml") for name in STRATEGIES}
    tasks = [(name, 0) for name in STRATEGIES]
    inputs = [read_case(c, tasks, strategies, RunDir(rundir), label=1) for c in cases]
    prompt_sets = [[i.prompts[t] for t in tasks] for i in inputs]
    segmenter = build_segmenter(args.model, device=args.device, image_size=args.image_size)
    device = segmenter.device
    with segmenter.prepare(inputs[0].volume) as warm:  # warm-up: kernels, allocator
        warm.segment_many(prompt_sets[0])
    encoder = engine = 0.0
    for case_inputs, sets in zip(inputs, prompt_sets, strict=True):
        _sync(device)
        t0 = time.perf_counter()
        session = segmenter.prepare(case_inputs.volume)
        _sync(device)
        t1 = time.perf_counter()
        session.segment_many(sets)
        _sync(device)
        t2 = time.perf_counter()
        session.close()
        encoder += t1 - t0
        engine += t2 - t0
    result = {"encoder_s": encoder, "engine_s": engine}
    if args.cases_in_flight > 1:
        from zeroshot.segmenters.video_core import segment_volumes

        group = args.cases_in_flight
        _sync(device)
        t0 = time.perf_counter()
        for first in range(0, len(inputs), group):
            sessions = [segmenter.prepare(i.volume) for i in inputs[first : first + group]]
            segment_volumes(list(zip(sessions, prompt_sets[first : first + group], strict=True)))
            for session in sessions:
                session.close()
        _sync(device)
        result["engine_inflight_s"] = time.perf_counter() - t0
    if "reference" not in args.skip.split(","):
        reference = build_segmenter(args.model, device=args.device, image_size=args.image_size, engine="reference")
        with reference.prepare(inputs[0].volume) as warm:
            warm.segment(prompt_sets[0][0])
        _sync(device)
        t0 = time.perf_counter()
        for case_inputs, sets in zip(inputs, prompt_sets, strict=True):
            for prompts in sets:  # one strategy after another, as separate runs of the script would
                with reference.prepare(case_inputs.volume) as session:
                    session.segment(prompts)
        _sync(device)
        result["reference_s"] = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sweep-speed-") as temporary:
        work = args.work or Path(temporary)
        manifest, depths = write_dataset(work / "data", args)
        volumes, k = len(depths), len(STRATEGIES)
        propagations = sum(depths) * k
        print(
            f"{volumes} volumes, {min(depths)}-{max(depths)} slices (sum {sum(depths)}), {k} strategies: "
            f"{propagations} slice-propagations; model {args.model} @ {args.image_size} px, device {args.device}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        )
        timed = {"eval": timed_eval(manifest, work / "eval", args, batch=True)}
        if "eval-unbatched" not in args.skip.split(","):
            timed["eval-unbatched"] = timed_eval(manifest, work / "eval-unbatched", args, batch=False)
        in_flight = f"inflight{args.cases_in_flight}"
        if args.cases_in_flight > 1:
            timed[f"eval-{in_flight}"] = timed_eval(
                manifest, work / f"eval-{in_flight}", args, batch=True, cases_in_flight=args.cases_in_flight
            )
        engine = engine_times(manifest, work / "eval", args)
    figures: dict[str, Any] = {"volumes": volumes, "slices": depths, "strategies": list(STRATEGIES)}
    rows = []
    for name, t in timed.items():
        rows.append((name, t["wall_s"]))
        figures[name] = {**t, "device_busy_share": t["busy_s"] / t["wall_s"]}
    rows.append(("engine", engine["engine_s"]))
    if "engine_inflight_s" in engine:
        rows.append((f"engine-{in_flight}", engine["engine_inflight_s"]))
    if "reference_s" in engine:
        rows.append(("reference", engine["reference_s"]))
    print(f"{'part':<16}{'seconds':>10}{'volumes/s':>11}{'slice-prop/s':>14}{'projected 1386x3':>18}")
    for name, seconds in rows:
        rate = propagations / seconds
        projected = CROSSPAN_SLICE_PROPAGATIONS / rate
        figures.setdefault(name, {}).update(
            seconds=seconds, volumes_per_s=volumes / seconds, slice_propagations_per_s=rate, projected_s=projected
        )
        print(f"{name:<16}{seconds:>10.2f}{volumes / seconds:>11.3f}{rate:>14.1f}{projected / 60:>14.1f} min")
    encoder_rate = sum(depths) / engine["encoder_s"]
    ceiling = volumes / engine["encoder_s"]
    figures["encoder"] = {"seconds": engine["encoder_s"], "slices_per_s": encoder_rate, "volumes_per_s": ceiling}
    print(
        f"{'encoder':<16}{engine['encoder_s']:>10.2f}{ceiling:>11.3f}{'':>14}{'':>18}  ({encoder_rate:.1f} slices "
        "encoded/s: the ceiling)"
    )
    e2e = figures["eval"]
    print(
        f"eval: {e2e['volumes_per_s'] / ceiling:.0%} of the encoder-only ceiling, model busy "
        f"{e2e['device_busy_share']:.0%} of wall time (reading {e2e['read_s']:.1f} s off the critical path)"
    )
    if "eval-unbatched" in figures:
        print(f"batched / unbatched eval: {figures['eval-unbatched']['seconds'] / e2e['seconds']:.2f}x")
    if f"eval-{in_flight}" in figures:
        together, engine_together = figures[f"eval-{in_flight}"]["seconds"], figures[f"engine-{in_flight}"]["seconds"]
        print(
            f"{args.cases_in_flight} cases in flight / one at a time: eval {e2e['seconds'] / together:.2f}x, engine "
            f"{figures['engine']['seconds'] / engine_together:.2f}x; eval seconds per case "
            f"{e2e['seconds'] / volumes:.3f} (one at a time) vs {together / volumes:.3f} (in flight)"
        )
    if "reference" in figures:
        print(f"eval / reference loop: {figures['reference']['seconds'] / e2e['seconds']:.2f}x")
    print(f"projection: {CROSSPAN_VOLUMES} volumes x {k} strategies ~ {CROSSPAN_SLICE_PROPAGATIONS} slice-propagations")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
