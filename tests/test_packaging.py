"""A plain (non-editable) install works: the wheel ships ``prompts/`` and ``checkpoints.txt``, and builds quietly.

The install test (about 12 s) builds an sdist from a copy of the checkout (so ``MANIFEST.in`` is exercised), a
wheel from that sdist, installs it into a fresh virtual environment that borrows this environment's packages
(torch is not installed twice), and runs the CLI from a folder outside the checkout with no ``ZEROSHOT_*``
variables and no ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from zeroshot.bundled import bundled_path
from zeroshot.checkpoints import default_list_path
from zeroshot.prompts import prompts_dir

REPO = Path(__file__).resolve().parents[1]
#: What must not travel into the copy the sdist is built from (local environments, outputs, caches).
NOT_SOURCES = (".git", ".venv", "runs", "phantom-data", "build", "dist", "*.egg-info", "__pycache__", "_bundled",
               ".pytest_cache", ".ruff_cache", ".hypothesis")  # fmt: skip


def test_license_is_an_spdx_expression() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"


def test_a_checkout_reads_the_top_level_files_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZEROSHOT_PROMPTS_DIR", raising=False)
    monkeypatch.delenv("ZEROSHOT_CHECKPOINTS", raising=False)
    assert bundled_path("prompts") == REPO / "prompts" == prompts_dir()
    assert default_list_path() == REPO / "checkpoints.txt"


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("ZEROSHOT_")}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, env=clean_environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_a_wheel_installed_in_a_fresh_environment_finds_strategies_and_checkpoints(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    hook = "import sys; from setuptools import build_meta as b; print(b.{}(sys.argv[1]))"
    sdist = run([sys.executable, "-c", hook.format("build_sdist"), str(tmp_path / "dist")], source)
    sdist_path = tmp_path / "dist" / sdist.stdout.strip().splitlines()[-1]
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = run([*pip_wheel, "-w", str(tmp_path / "dist"), str(sdist_path)], tmp_path)
    build_log = (sdist.stderr + built.stdout + built.stderr).lower()
    # A clean install log: no deprecation (the license table gave four) and no other warning from our packaging.
    assert "deprecat" not in build_log and "warning" not in build_log, build_log

    (wheel,) = (tmp_path / "dist").glob("zeroshot-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("zeroshot/_bundled/checkpoints.txt") == (REPO / "checkpoints.txt").read_bytes()
        shipped = {Path(n).name for n in archive.namelist() if n.startswith("zeroshot/_bundled/prompts/")}
        templates = {Path(n).name for n in archive.namelist() if n.startswith("zeroshot/report/templates/")}
    # The report's page template, style and script travel in the wheel (package data), through the sdist.
    assert templates == {p.name for p in (REPO / "zeroshot" / "report" / "templates").iterdir()}
    assert shipped == {p.name for p in (REPO / "prompts").glob("*.yaml")}

    env_dir = tmp_path / "env"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip()
    )
    # This environment's packages (torch, pip, ...) are visible after the fresh one's own, which gets zeroshot.
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = run([str(python), "-c", "import zeroshot.bundled as b; print(b.bundled_path('prompts'))"], outside)
    assert Path(where.stdout.strip()).is_relative_to(site)
    zeroshot = str(env_dir / "bin" / "zeroshot")
    listing = run([zeroshot, "checkpoints", "list"], outside)
    assert "medsam2" in listing.stdout and "sam2.1-tiny" in listing.stdout

    from zeroshot.phantom import write_phantom_dataset

    manifest = write_phantom_dataset(outside / "data", cases=1, seed=0)
    out = outside / "prompts.jsonl"
    run([zeroshot, "prompts", "--data", str(manifest), "--sequence", "T1", "--strategy", "box-mid", "--out", str(out),
         "--no-progress"], outside)  # fmt: skip
    lines = out.read_text().splitlines()
    assert lines and all('"strategy": "box-mid"' in line for line in lines)
