"""``zeroshot eval``: evaluate models zero-shot on a dataset under prompt strategies and seeds, resumably."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from zeroshot.cli.options import add_label_option, seed

if TYPE_CHECKING:
    from zeroshot.interactive import ClickSettings

#: ``--click-protocol`` choices (``zeroshot.interactive.PROTOCOLS``, spelled out so ``--help`` imports nothing).
PROTOCOL_NAMES = ("zeroshot", "cvpr25", "microsam", "radioactive")

EPILOG = """\
Run directory: run.json (provenance and identity), store/ (every row and prompt set: an append-only log per
writer, compacted into Parquet parts; docs/run-store.md), predictions/ (--save-pred), results.csv/.parquet,
failures.csv, slices.parquet. Runs written with one file per row (rows/) are converted by `zeroshot migrate RUN`.

The same command again resumes: finished rows are skipped, and a run that is complete builds no model. A changed
configuration that would change results (a strategy's settings, a model's checkpoint or image size, a case file,
the label value, tolerances) is refused; new cases, models, strategies or seeds extend the run. --new-run moves the
old run aside.

The structure (--label) is chosen once per run and recorded: ground truth, coarse masks, `zeroshot compare`'s
supervised baselines and `zeroshot figures`' overlays all read it. A label file that lacks it (but holds other
structures) fails its case with the values it holds; a strategy whose own source.label differs is refused.

Interactive evaluation (--clicks N and/or --click-protocol P): a simulated user corrects each prediction for N
rounds (default: the protocol's own). Protocols (docs/interactive.md):
  zeroshot     (default, 8 rounds) one click per round at the deepest point of the largest 2D error region, on
               the slice with the most error
  cvpr25       (5) CVPR 2025 interactive 3D challenge: deepest voxel of the largest 3D error component; use it
               with --strategy cvpr25-box (2D box on the middle slice + the GT z-extent) for its full protocol
  microsam     (7 after the initial prompt = micro-sam's 8 iterations) one positive and one negative voxel drawn
               from the false negatives / false positives
  radioactive  (5) RadioActive: sign drawn with p = FP/(FP+FN); positives at the largest false-negative
               component's centre on each slice it spans, negatives along a contour scribble (one point per pixel)
The image encoder runs once per case; each round re-propagates with every click so far. One row per round (0 =
the strategy's prompts alone) with `round`, `n_clicks`, `clicks` (every click so far: round, z, x, y, label) and
`click_protocol`, so a curve replays exactly. A killed run resumes at the round where it stopped; a larger N
extends every curve, a changed click rule is refused. `zeroshot compare` reports Dice after k clicks, NoC and the
CVPR25 AUCs; `zeroshot figures` draws the curves.

Job arrays: `--shard $I/$N --out runs/x/shard-$I`, then `zeroshot merge runs/x/shard-* --out runs/x/all`.
Ray: `--executor ray` (pip install 'zeroshot[ray]'; RAY_ADDRESS selects a cluster, else a local one starts).

Examples:
  zeroshot eval --data crosspan/ --sequence T2 --split test --model sam2.1-tiny --model medsam2 \\
      --strategy box-mid --strategy prompts/box-mid-jitter10.yaml --seeds 0 1 2 --out runs/t2-zeroshot
  zeroshot eval --data crosspan/ --sequence T1 --model medsam2 --strategy box-mid --clicks 8 --out runs/t1-clicks
  zeroshot eval --data crosspan/ --sequence T2 --model medsam2 --strategy cvpr25-box --click-protocol cvpr25 \
      --out runs/t2-cvpr25
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand.

    Long because it lists every option of the command in the order ``--help`` shows them.
    """
    parser = subparsers.add_parser(
        "eval",
        help="evaluate models on a dataset under prompt strategies and seeds (resumable run directory)",
        description=(
            "Evaluate every selected case x model x strategy x seed: prompts (cached), prediction, metrics row. "
            "Each model is loaded once; each case is prepared (image encoder) once per model and segmented under "
            "every strategy and seed."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, required=True, help="dataset folder or manifest CSV")
    data.add_argument("--layout", choices=("crosspan", "nnunet", "manifest"), help="dataset layout (default: detect)")
    data.add_argument("--sequence", action="extend", nargs="+", default=[], help="sequences (T1 T2 OOP; default all)")
    data.add_argument("--center", action="extend", nargs="+", default=[], help="centers (default all)")
    data.add_argument("--split", action="extend", nargs="+", default=[], help="splits (train val test; default all)")
    data.add_argument("--case", action="extend", nargs="+", default=[], help="case ids (default all)")
    add_label_option(data)
    data.add_argument(
        "--coarse", type=Path, help="folder of coarse masks for strategies whose source is 'coarse' (<seq>/<id>.nii.gz)"
    )
    what = parser.add_argument_group("what to run")
    what.add_argument("--model", action="append", required=True, help="model name (repeatable); see registry")
    what.add_argument(
        "--strategy", action="append", required=True, help="prompt strategy: name or YAML file (repeatable)"
    )
    # extend, like every list option here: `--seeds 0 --seeds 1` (or argparse's abbreviation `--seed`) means both
    what.add_argument(
        "--seeds", type=seed, action="extend", nargs="+", default=None, help="prompt seeds, 0 to 2**63 - 1 (default 0)"
    )
    what.add_argument("--image-size", type=int, help="model input size in pixels (default: each model's own)")
    what.add_argument(
        "--tolerance-mm", type=float, action="extend", nargs="+", default=None, help="NSD tolerances in mm (default 2)"
    )
    clicks = parser.add_argument_group("corrective clicks (interactive evaluation)")
    clicks.add_argument(
        "--clicks",
        type=int,
        metavar="N",
        help="simulate N rounds of corrective clicks after the initial prompts (one row per round; default with "
        "--click-protocol: the protocol's own)",
    )
    clicks.add_argument(
        "--click-protocol",
        choices=PROTOCOL_NAMES,
        help="the simulated user: zeroshot (default), cvpr25, microsam or radioactive (see below)",
    )
    clicks.add_argument(
        "--click-slice",
        choices=("largest-error", "key-slice"),
        help="click on the slice with the most error (default) or only on the prompted key slices",
    )
    clicks.add_argument(
        "--clicks-per-round",
        choices=("one", "both"),
        help="one click on the larger error region (default), or one positive and one negative",
    )
    clicks.add_argument(
        "--feed-mask",
        action="store_true",
        default=None,
        help="also give the previous round's mask of each clicked slice as a mask prompt",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, required=True, help="run directory (created; resumed if it exists)")
    out.add_argument("--save-pred", action="store_true", help="write predictions as NIfTI overlaying the input")
    out.add_argument("--new-run", action="store_true", help="if --out holds another configuration, move it aside")
    out.add_argument("--retry-failed", action="store_true", help="compute failed rows again")
    out.add_argument("--strict", action="store_true", help="exit with status 1 if any selected row failed")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    run_group = parser.add_argument_group("execution")
    run_group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    run_group.add_argument("--shard", help="evaluate part i of n of the cases (0-based), e.g. 0/4")
    run_group.add_argument("--executor", choices=("local", "ray"), default="local", help="default local")
    run_group.add_argument(
        "--workers",
        type=int,
        help="local: scoring processes (default 1; 0 scores in-process); ray: model actors (default: one per GPU)",
    )
    run_group.add_argument(
        "--batch-prompts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="segment every prompt set of a case (each click round of every curve) in one lockstep call where the "
        "model can (default on; rows are the same either way)",
    )
    run_group.add_argument(
        "--cases-in-flight",
        type=int,
        default=1,
        metavar="N",
        help="local executor: propagate the prompt sets of up to N cases together in one lockstep call, as free GPU "
        "memory allows (default 1; rows are the same either way; interactive runs take one case at a time)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the configuration, run it, print a summary; 1 with --strict if any row failed."""
    from zeroshot.compare.summary import format_summary
    from zeroshot.runner import EvalConfig, Shard, run_eval
    from zeroshot.structure import find_dataset_json, resolve_structure

    workers = args.workers if args.workers is not None else (0 if args.executor == "ray" else 1)
    clicks = click_settings(args)
    structure = resolve_structure(args.label, dataset_json=find_dataset_json(args.data))
    config = EvalConfig(
        data=args.data,
        out=args.out,
        models=tuple(args.model),
        strategies=tuple(args.strategy),
        seeds=tuple(args.seeds or [0]),
        sequences=tuple(args.sequence),
        centers=tuple(args.center),
        splits=tuple(args.split),
        case_ids=tuple(args.case),
        layout=args.layout,
        label=structure.value if structure.given else None,
        label_name=structure.name,
        tolerances_mm=tuple(args.tolerance_mm or [2.0]),
        image_size=args.image_size,
        device=args.device,
        save_pred=args.save_pred,
        strict=args.strict,
        shard=Shard.parse(args.shard) if args.shard else None,
        executor=args.executor,
        workers=workers,
        batch_prompts=args.batch_prompts,
        cases_in_flight=args.cases_in_flight,
        new_run=args.new_run,
        retry_failed=args.retry_failed,
        coarse_dir=args.coarse,
        clicks=clicks,
    )
    summary = run_eval(config, progress=False if args.no_progress else None)
    print(format_summary(summary))
    if summary.rows_failed:
        print(f"{summary.rows_failed} row(s) failed; reasons in {summary.out / 'failures.csv'}", file=sys.stderr)
        if config.strict:
            return 1
    return 0


def click_settings(args: argparse.Namespace) -> ClickSettings | None:
    """The click settings the options ask for; ``None`` without ``--clicks`` and ``--click-protocol``.

    Raises
    ------
    ConfigError
        If a click option is given without ``--clicks`` or ``--click-protocol``, ``--clicks`` is below 1, or an
        option of the ``zeroshot`` protocol is given with another protocol.
    """
    from zeroshot.errors import ConfigError
    from zeroshot.interactive import ClickSettings

    options = {"slice_rule": args.click_slice, "per_round": args.clicks_per_round, "feed_mask": args.feed_mask}
    given = {name: value for name, value in options.items() if value is not None}
    flags = {"slice_rule": "--click-slice", "per_round": "--clicks-per-round", "feed_mask": "--feed-mask"}
    protocol = getattr(args, "click_protocol", None)
    if args.clicks is None and protocol is None:
        if given:
            named = ", ".join(flags[name] for name in given)
            raise ConfigError(f"{named}: only with --clicks N (the number of correction rounds) or --click-protocol")
        return None
    if args.clicks is not None and args.clicks < 1:
        raise ConfigError(f"--clicks: expected 1 or more rounds, got {args.clicks} (leave it out for no clicks)")
    if protocol not in (None, "zeroshot") and {"slice_rule", "per_round"} & set(given):
        named = ", ".join(flags[name] for name in ("slice_rule", "per_round") if name in given)
        raise ConfigError(
            f"{named}: options of the zeroshot protocol; --click-protocol {protocol} places clicks by its own rule"
        )
    return ClickSettings(rounds=args.clicks, protocol=protocol or "zeroshot", **given)
