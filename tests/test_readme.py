"""Every command sequence the README shows runs, in order, on the phantom.

The README's ``bash`` blocks are read as they are; only what cannot run on a test machine is substituted, each
substitution listed in :data:`SUBSTITUTIONS` and :func:`_runnable`: the dataset path becomes the phantom, models
whose weights would be downloaded are left out, and so is GrabCut (a minute on one CPU case; its tests are its
own), leaving box-fill, and ``checkpoints download`` checks
that the models it names are known instead of downloading them. A command the test does not know how to run is a
failure, so a new README example comes with its substitution.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from zeroshot.cli import main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: Text replaced in every command: placeholders of the README and paths relative to the repository.
SUBSTITUTIONS = {"benchmarks/": f"{REPO}/benchmarks/"}
#: The models kept; every other --model is left out (downloads, or minutes of CPU).
KEPT_MODELS = ("box-fill",)
#: Commands that are not the toolkit's (the Makefile's targets run the suite itself) are not run here.
NOT_ZEROSHOT = ("make",)


def readme_commands(text: str) -> list[list[str]]:
    """The commands of the README's ``bash`` blocks, one argv per command (continuations joined, comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def _runnable(argv: list[str], data: Path) -> list[str] | None:
    """The argv as this machine can run it, or ``None`` for a command that is checked another way."""
    text = " ".join(shlex.quote(a) for a in argv)
    for old, new in SUBSTITUTIONS.items():
        text = text.replace(old, new)
    text = re.sub(r"/data/[A-Za-z0-9_-]+", str(data), text)
    argv = shlex.split(text)
    if argv[:3] == ["zeroshot", "checkpoints", "download"]:
        return None
    kept: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--model" and argv[i + 1] not in KEPT_MODELS:
            skip = True
            continue
        kept.append(arg)
    return kept


def test_the_readme_shows_the_workflow_this_test_runs():
    commands = readme_commands(README.read_text(encoding="utf-8"))
    names = [argv[1] for argv in commands if argv[0] == "zeroshot"]
    assert names[:5] == ["checkpoints", "cases", "eval", "compare", "figures"]
    assert all(argv[0] in ("zeroshot", *NOT_ZEROSHOT) for argv in commands)


def test_every_readme_command_sequence_runs_on_the_phantom(phantom_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # runs/... paths of the README land here
    known = set()
    assert main(["checkpoints", "list"]) == 0
    for line in capsys.readouterr().out.splitlines()[1:]:
        if line.strip():
            known.add(line.split()[0])
    ran = []
    for argv in readme_commands(README.read_text(encoding="utf-8")):
        if argv[0] in NOT_ZEROSHOT:
            continue
        runnable = _runnable(argv, phantom_data)
        if runnable is None:  # checkpoints download NAME...: every name is one the toolkit knows
            assert set(argv[3:]) <= known, argv
            continue
        assert runnable[0] == "zeroshot", runnable
        if runnable[1] == "eval":
            runnable += ["--no-progress", "--workers", "0"]
        code = main(runnable[1:])
        captured = capsys.readouterr()
        assert code == 0, f"{' '.join(runnable)}\n{captured.err}"
        ran.append(runnable[1])
    assert ran == ["cases", "eval", "compare", "figures", "report"]
    assert (tmp_path / "runs" / "t2" / "tables" / "summary.csv").is_file()
    assert (tmp_path / "runs" / "t2" / "tables" / "published.csv").is_file()
    assert (tmp_path / "runs" / "t2" / "figures" / "zero_shot_vs_supervised.png").is_file()
    assert (tmp_path / "runs" / "t2" / "report" / "figures" / "zero_shot_vs_supervised.png").is_file()
    assert any((tmp_path / "runs" / "t2" / "report" / "cases").glob("*.png"))  # the run saved its predictions
