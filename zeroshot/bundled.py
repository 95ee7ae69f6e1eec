"""Files the package reads from the top of the repository: the strategy folder ``prompts/`` and ``checkpoints.txt``.

In a checkout (or an editable install) they are read in place. A wheel carries copies made at build time
(``setup.py`` puts them in ``zeroshot/_bundled/``), so a plain ``pip install`` finds them too; the top-level files
stay the single source of truth.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["bundled_path"]

_PACKAGE = Path(__file__).resolve().parent
_BUNDLED = _PACKAGE / "_bundled"
_REPOSITORY = _PACKAGE.parent


def bundled_path(name: str) -> Path:
    """Where the top-level file or folder ``name`` is: in the installed package, else at the repository top.

    Parameters
    ----------
    name : str
        ``"prompts"`` or ``"checkpoints.txt"`` (what ``setup.py`` bundles).

    Returns
    -------
    Path
        ``zeroshot/_bundled/<name>`` when the package was installed from a wheel, else ``<repository>/<name>``
        (which may not exist: the caller's own error then names that path).
    """
    bundled = _BUNDLED / name
    return bundled if bundled.exists() else _REPOSITORY / name
