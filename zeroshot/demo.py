"""``zeroshot demo``: the whole pipeline on synthetic data in a few minutes on a laptop CPU.

It writes a phantom dataset (:mod:`zeroshot.phantom`), evaluates the weight-free baselines (``grabcut``,
``box-fill``) and every SAM2/MedSAM2 checkpoint already in the local cache under a few prompt strategies on every
sequence, writes the run's tables, the comparison tables and the figures, and prints mean Dice per sequence x
model x strategy. Running it again resumes: finished rows are kept.

The phantom tests the machinery, not accuracy on real scans: its numbers say nothing about how a model does on
patients.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from zeroshot.runner import EvalConfig, RunSummary, run_eval
from zeroshot.runner.summary import format_summary

__all__ = ["BASELINE_MODELS", "DEMO_STRATEGIES", "DemoResult", "demo_models", "run_demo"]

#: Weight-free models that run anywhere.
BASELINE_MODELS = ("box-fill", "grabcut")
#: Strategies shipped in ``prompts/``: the common peer protocol, its jittered variant, and one click.
DEMO_STRATEGIES = ("box-mid", "box-mid-jitter10", "point-center")


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
    """

    data: Path
    run: RunSummary
    compare: Path | None
    figures: Path | None


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
    progress: bool | None = None,
) -> DemoResult:
    """Write the phantom, evaluate, compare, draw; print the summary.

    Parameters
    ----------
    out : path
        Folder for everything: ``data/`` (phantom), ``run/`` (run directory), ``compare/``, ``figures/``.
    cases : int
        Phantom subjects (each scanned with T1, T2 and OOP).
    seed : int
        Phantom seed (the prompts use seed 0).
    models : sequence of str or None
        Default: :func:`demo_models`.
    strategies : sequence of str
        Strategy names or files.
    device, image_size, workers :
        As for ``zeroshot eval``.
    figures : bool
        Also write the comparison tables and figures.
    progress : bool or None
        Progress bar (``None``: when stderr is a terminal).
    """
    from zeroshot.phantom import write_phantom_dataset

    out = Path(out)
    data = out / "data"
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        print(f"writing a phantom dataset of {cases} subject(s) x 3 sequences to {data}", file=sys.stderr)
        manifest = write_phantom_dataset(data, cases=cases, seed=seed)
    chosen = list(models) if models else demo_models()
    print(f"evaluating {', '.join(chosen)} under {', '.join(strategies)}", file=sys.stderr)
    config = EvalConfig(
        data=manifest,
        out=out / "run",
        models=tuple(chosen),
        strategies=tuple(strategies),
        seeds=(0,),
        device=device,
        image_size=image_size,
        workers=workers,
        save_pred=True,
    )
    summary = run_eval(config, progress=progress)
    compare_dir = figures_dir = None
    if figures:
        compare_dir = _step("compare", lambda: _compare(summary.out, out / "compare"))
        figures_dir = _step("figures", lambda: _figures(summary.out, out / "figures", compare_dir))
    print(format_summary(summary))
    print(
        "\nSynthetic phantom: these numbers test the machinery, not accuracy on patients. "
        f"Tables: {summary.out}/results.csv"
        + (f"; comparison: {compare_dir}" if compare_dir else "")
        + (f"; figures: {figures_dir}" if figures_dir else "")
    )
    return DemoResult(data=manifest, run=summary, compare=compare_dir, figures=figures_dir)


def _compare(run: Path, out: Path) -> Path:
    """``zeroshot compare RUN --out OUT`` with its defaults, as a library call; lists the files written."""
    from zeroshot.compare import BootstrapOptions, compare_runs

    output = compare_runs([run], out, options=BootstrapOptions())
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
