"""``zeroshot demo``: the whole pipeline on synthetic data in a few minutes on a laptop CPU.

It writes a phantom dataset (:mod:`zeroshot.phantom`) and asks CrossPan's question of it: it evaluates the
weight-free baselines (``grabcut``, ``box-fill``) and every SAM2/MedSAM2 checkpoint already in the local cache under
a few prompt strategies on the test cases of every sequence; trains a small supervised model on the T1 training
cases (:mod:`zeroshot.supervised`) and scores its predictions on the same test cases through the path users take
for nnU-Net (``--baseline-preds phantom-cnn-T1=DIR``); then writes the run's tables, the comparison tables (the
train x test sequence table shows the supervised model's in-sequence success and cross-sequence collapse beside the
zero-shot rows) and the figures, prints mean Dice per sequence x model x strategy and that table, and ends by
writing the report (:mod:`zeroshot.report`: one HTML page to browse the run) and printing its path. Running it
again resumes: finished rows and a finished supervised baseline are kept.

The phantom tests the machinery, not accuracy on real scans: its numbers say nothing about how a model does on
patients.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from zeroshot.atomic import write_atomic
from zeroshot.compare.summary import format_summary
from zeroshot.errors import ZeroshotError, plain
from zeroshot.runner import EvalConfig, RunSummary, run_eval

__all__ = [
    "BASELINE_MODELS",
    "DEMO_STRATEGIES",
    "SUBJECTS_PER_TEST_CASE",
    "SUPERVISED_MODEL",
    "SUPERVISED_TRAIN_SEQUENCE",
    "DemoResult",
    "demo_models",
    "run_demo",
]

#: Weight-free models that run anywhere.
BASELINE_MODELS = ("box-fill", "grabcut")
#: Strategies shipped in ``prompts/``: the common peer protocol, its jittered variant, and one click.
DEMO_STRATEGIES = ("box-mid", "box-mid-jitter10", "point-center")
#: The phantom's split cycle is train, train, train, val, test: five subjects give one test case per sequence.
SUBJECTS_PER_TEST_CASE = 5
#: The supervised baseline as the tables name it (``phantom-cnn-T1``): trained on phantom data, labelled so.
SUPERVISED_MODEL = "phantom-cnn"
SUPERVISED_TRAIN_SEQUENCE = "T1"


@dataclass(frozen=True, eq=False)
class DemoResult:
    """What the demo wrote.

    Attributes
    ----------
    data : Path
        The phantom dataset (its ``manifest.csv``).
    run : RunSummary
        The evaluation run (``run.out`` is the run directory).
    compare : Path or None
        The comparison tables' folder (``None`` if that step was unavailable or failed).
    figures : Path or None
        The figures' folder (``None`` if that step was unavailable or failed).
    supervised : Path or None
        The supervised baseline's predictions (``<sequence>/<case_id>.nii.gz``; ``None`` if not asked or failed).
    report : Path or None
        The report's page, ``report/index.html`` (``None`` if not asked or failed).
    """

    data: Path
    run: RunSummary
    compare: Path | None
    figures: Path | None
    supervised: Path | None = None
    report: Path | None = None


def demo_models() -> list[str]:
    """The baselines plus every model whose checkpoint is already in the local cache (nothing is downloaded)."""
    from zeroshot.segmenters.registry import cached_models

    models = list(BASELINE_MODELS)
    for name in cached_models():
        if name not in models:
            models.append(name)
    return models


def run_demo(
    out: str | Path,
    *,
    cases: int = 3,
    seed: int = 0,
    models: Sequence[str] | None = None,
    strategies: Sequence[str] = DEMO_STRATEGIES,
    device: str = "auto",
    image_size: int | None = None,
    workers: int = 1,
    figures: bool = True,
    supervised: bool = True,
    report: bool = True,
    progress: bool | None = None,
) -> DemoResult:
    """Write the phantom, evaluate, train the supervised baseline, compare, draw; print the summary.

    Parameters
    ----------
    out : path
        Folder for everything: ``data/`` (phantom), ``run/`` (run directory), ``supervised/`` (the supervised
        baseline's predictions), ``compare/``, ``figures/``, ``report/``.
    cases : int
        Test cases per sequence. The phantom gets ``5 * cases`` subjects, each scanned with T1, T2 and OOP (its
        split cycle is train, train, train, val, test): ``3 * cases`` train the supervised baseline on T1, and
        the models are evaluated on the ``cases`` test subjects of every sequence.
    seed : int
        Phantom seed (the prompts and the supervised baseline use seed 0).
    models : sequence of str or None
        Default: :func:`demo_models`.
    strategies : sequence of str
        Strategy names or files.
    device, image_size, workers :
        As for ``zeroshot eval``.
    figures : bool
        Also write the comparison tables and figures.
    supervised : bool
        With ``figures``, also train the supervised baseline and put it in the tables and figures.
    report : bool
        End by writing the report (with the tables and figures, where written) and printing its path.
    progress : bool or None
        Progress bar (``None``: when stderr is a terminal).

    Raises
    ------
    ZeroshotError
        ``cases`` below 1, or an ``out/data`` written by an older demo that has no test cases.
    """
    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 1:
        raise ZeroshotError(f"--cases: expected at least 1 test case per sequence, got {plain(cases)}")
    out = Path(out)
    manifest = _phantom(out / "data", subjects=SUBJECTS_PER_TEST_CASE * cases, seed=seed)
    chosen = list(models) if models else demo_models()
    print(f"evaluating {', '.join(chosen)} under {', '.join(strategies)} on the test cases", file=sys.stderr)
    config = EvalConfig(
        data=manifest,
        out=out / "run",
        models=tuple(chosen),
        strategies=tuple(strategies),
        seeds=(0,),
        splits=("test",),
        device=device,
        image_size=image_size,
        workers=workers,
        save_pred=True,
    )
    compare_dir = figures_dir = supervised_dir = None
    # The supervised baseline needs only the phantom: it trains in a process of its own (one torch thread) while
    # the zero-shot models run, so it adds little to the demo's time on any machine with two cores.
    pool = multiprocessing.get_context("spawn").Pool(1) if figures and supervised else None
    with pool or contextlib.nullcontext():  # leaving the block ends the process, also on an error or Ctrl-C
        training = pool.apply_async(_supervised, (manifest, out / "supervised")) if pool else None
        summary = run_eval(config, progress=progress)
        if training is not None:
            supervised_dir = _step("supervised baseline", training.get)
    if figures:
        baselines = [f"{SUPERVISED_MODEL}-{SUPERVISED_TRAIN_SEQUENCE}={supervised_dir}"] if supervised_dir else []
        compare_dir = _step("compare", lambda: _compare(summary.out, out / "compare", baselines))
        figures_dir = _step("figures", lambda: _figures(summary.out, out / "figures", compare_dir))
    print(format_summary(summary))
    if compare_dir is not None:
        print("\n" + (compare_dir / "cross_sequence.md").read_text().rstrip())
    print(
        "\nSynthetic phantom: these numbers test the machinery, not accuracy on patients"
        + (f" ({SUPERVISED_MODEL}: a tiny network trained on phantom T1 cases, not nnU-Net)" if supervised_dir else "")
        + f". Tables: {summary.out}/results.csv"
        + (f"; comparison: {compare_dir}" if compare_dir else "")
        + (f"; figures: {figures_dir}" if figures_dir else "")
    )
    page = None
    if report:
        page = _step("report", lambda: _report(summary.out, out / "report", compare_dir, figures_dir, progress))
        if page is not None:
            print(f"Report: {page} (open it in a browser; it needs no network)")
    return DemoResult(
        data=manifest,
        run=summary,
        compare=compare_dir,
        figures=figures_dir,
        supervised=supervised_dir,
        report=page,
    )


def _phantom(data: Path, *, subjects: int, seed: int) -> Path:
    """The phantom's manifest: written unless ``data`` holds one, which must then have test cases."""
    from zeroshot.phantom import write_phantom_dataset

    manifest = data / "manifest.csv"
    if not manifest.is_file():
        print(f"writing a phantom dataset of {subjects} subject(s) x 3 sequences to {data}", file=sys.stderr)
        return write_phantom_dataset(data, cases=subjects, seed=seed)
    from zeroshot.datasets import discover

    if not any(case.split == "test" for case in discover(manifest)):
        raise ZeroshotError(
            f"{manifest}: this phantom has no test cases (written by an older zeroshot demo?); remove {data} or "
            "choose another --out"
        )
    return manifest


def _supervised(manifest: Path, out: Path) -> Path:
    """Train the baseline on the T1 training cases and predict every test case, unless ``out`` already holds that."""
    from zeroshot.datasets import discover, select
    from zeroshot.supervised import SliceCNNSettings, train_slice_cnn, write_predictions

    cases = discover(manifest)
    train = select(cases, sequences=[SUPERVISED_TRAIN_SEQUENCE], splits=["train"])
    test = select(cases, splits=["test"])
    record_path = out / "baseline.json"
    wanted = {
        "train_sequence": SUPERVISED_TRAIN_SEQUENCE,
        "train_cases": [c.case_id for c in train],
        "settings": asdict(SliceCNNSettings()),
        "predicted": sorted(f"{c.sequence}/{c.case_id}" for c in test),
    }
    if record_path.is_file() and json.loads(record_path.read_text()).get("identity") == wanted:
        return out  # a finished baseline of the same data and settings: resume without retraining
    print(
        f"training {SUPERVISED_MODEL} on {len(train)} {SUPERVISED_TRAIN_SEQUENCE} training case(s), predicting "
        f"{len(test)} test case(s)",
        file=sys.stderr,
    )
    model = train_slice_cnn(train)
    write_predictions(model, test, out)
    write_atomic(record_path, json.dumps({"identity": wanted, "model": model.describe()}, indent=1) + "\n")
    return out


def _compare(run: Path, out: Path, baselines: Sequence[str]) -> Path:
    """``zeroshot compare RUN [--baseline-preds ...] --out OUT`` with its defaults; lists the files written."""
    from zeroshot.compare import BootstrapOptions, compare_runs

    output = compare_runs([run], out, baseline_predictions=baselines, options=BootstrapOptions())
    for path in output.files:
        print(path)
    return out


def _figures(run: Path, out: Path, compare_dir: Path | None) -> Path:
    """``zeroshot figures RUN [--compare DIR] --out OUT`` with its defaults; lists the files and the skipped."""
    from zeroshot.compare import BASELINE_RESULTS
    from zeroshot.figures import make_figures

    with_baselines = compare_dir is not None and (compare_dir / BASELINE_RESULTS).is_file()
    report = make_figures([run], out, compare_dir=compare_dir if with_baselines else None)
    for path in report.files:
        print(path)
    for name, reason in report.skipped:
        print(f"skipped {name}: {reason}")
    return out


def _report(run: Path, out: Path, compare_dir: Path | None, figures_dir: Path | None, progress: bool | None) -> Path:
    """``zeroshot report RUN [--compare DIR] [--figures DIR] --out OUT``; the path of its page."""
    from zeroshot.report import write_report

    output = write_report(
        [run],
        out,
        compare_dir=compare_dir,
        figures_dir=figures_dir,
        note="Synthetic phantom data: these numbers test the machinery, not accuracy on patients.",
        progress=progress,
    )
    return output.index


def _step(name: str, action: Callable[[], Path]) -> Path | None:
    """Run one step after the evaluation; its output folder, or ``None`` (reported) if it failed."""
    try:
        return action()
    except Exception as exc:  # the demo's own results are safe on disk; report the step and go on
        print(
            f"zeroshot demo: {name} failed ({type(exc).__name__}: {exc}); the run's tables are complete",
            file=sys.stderr,
        )
        return None
