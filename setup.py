"""One build step on top of ``pyproject.toml``: the wheel carries the top-level ``prompts/`` and ``checkpoints.txt``.

They stay where a reader looks for them (the top of the repository, the single source of truth); building a wheel
copies them into ``zeroshot/_bundled/`` of the build tree, never of the source tree. A checkout or an editable
install reads them in place (``zeroshot/bundled.py`` finds either). The sdist carries them through ``MANIFEST.in``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: Top-level files and folders the package reads at run time, copied to ``zeroshot/_bundled/<name>``.
BUNDLED = ("prompts", "checkpoints.txt")


class BuildPyWithBundledFiles(build_py):
    """``build_py`` that also copies :data:`BUNDLED` into the package of the build tree."""

    def run(self) -> None:
        """Build the package as usual, then copy the bundled files (not for an editable install)."""
        super().run()
        if self.editable_mode:  # an editable install reads the top-level files in place
            return
        target = Path(self.build_lib) / "zeroshot" / "_bundled"
        for name in BUNDLED:
            source = ROOT / name
            if source.is_dir():
                self.copy_tree(str(source), str(target / name))
            elif source.is_file():
                self.mkpath(str(target))
                self.copy_file(str(source), str(target / name))
            else:
                raise FileNotFoundError(f"{source}: missing; the wheel must ship it (is it in MANIFEST.in?)")


setup(cmdclass={"build_py": BuildPyWithBundledFiles})
