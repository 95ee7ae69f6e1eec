"""The list of named checkpoints (``checkpoints.txt``), parsed strictly, with errors that name the file and line.

One model per line, seven whitespace-separated columns (``-`` marks an empty field, ``#`` starts a comment)::

    name  backend  config  options  licence  sha256  url

The file's own header documents each column. The list in use is ``$ZEROSHOT_CHECKPOINTS`` when set, else
``checkpoints.txt`` at the top of the repository (a copy inside the package when installed from a wheel).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from zeroshot.bundled import bundled_path
from zeroshot.errors import CheckpointError

__all__ = [
    "BACKENDS",
    "COLUMNS",
    "ENV_CHECKPOINT_LIST",
    "FOLDER_BACKENDS",
    "CheckpointEntry",
    "HubLocation",
    "default_list_path",
    "find_entry",
    "parse_checkpoint_list",
    "parse_hub_url",
    "read_checkpoint_list",
]

COLUMNS = ("name", "backend", "config", "options", "licence", "sha256", "url")
BACKENDS = ("sam2", "transformers", "nninteractive")
#: Backends whose weights are a folder: a whole transformers repository, an nnInteractive trained-model folder.
FOLDER_BACKENDS = ("transformers", "nninteractive")
ENV_CHECKPOINT_LIST = "ZEROSHOT_CHECKPOINTS"

#: Names are typed on command lines and used as folder names; ``@`` and ``:`` are kept for ``NAME@SIZE`` and
#: ``random:CONFIG`` in the segmenter registry.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}\Z")
_OPTION_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HUB_URL = re.compile(r"hf://(?P<owner>[^/@\s]+)/(?P<repo>[^/@\s]+)(?:@(?P<revision>[^/\s]+))?(?:/(?P<path>\S+))?\Z")
_URL_SCHEMES = ("https", "http", "file", "hf")

OptionValue = bool | int | float | str


@dataclass(frozen=True)
class HubLocation:
    """A file, or a whole repository, on the Hugging Face Hub.

    Attributes
    ----------
    repo_id : str
        ``OWNER/REPO``.
    revision : str or None
        Branch, tag or commit; None means the repository's default branch.
    filename : str or None
        Path of the file inside the repository; None for the whole repository.
    """

    repo_id: str
    revision: str | None
    filename: str | None

    @property
    def page(self) -> str:
        """The repository's Hub page (``https://huggingface.co/OWNER/REPO``), where a gated licence is accepted."""
        return f"https://huggingface.co/{self.repo_id}"

    def __str__(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        path = f"/{self.filename}" if self.filename else ""
        return f"hf://{self.repo_id}{revision}{path}"


@dataclass(frozen=True)
class CheckpointEntry:
    """One line of the checkpoint list.

    Attributes
    ----------
    name : str
        The name ``build_segmenter`` and ``zeroshot checkpoints`` accept.
    backend : str
        ``"sam2"`` (official SAM2 code), ``"transformers"`` (``Sam2VideoModel``) or ``"nninteractive"`` (an
        nnInteractive trained-model folder).
    config : str or None
        sam2 Hydra config name relative to the sam2 package (e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``).
    options : tuple of (str, value) pairs
        Backend defaults such as ``("image_size", 512)``; values parsed as int, float, bool or str.
    licence : str
        SPDX identifier of the weights' licence.
    sha256 : str or None
        Lower-case hex SHA-256 of the file (of the manifest, for a repository); None when not known.
    url : str
        Where the weights come from (``https``, ``http``, ``file`` or ``hf`` scheme).
    origin : str
        ``FILE:LINE`` the entry was read from, for error messages.
    gated : bool
        A Hub repository whose owner grants access only after its licence is accepted on its page (option
        ``gated=true`` in the list, not passed to the backend): downloading needs a Hub token.
    """

    name: str
    backend: str
    config: str | None
    options: tuple[tuple[str, OptionValue], ...]
    licence: str
    sha256: str | None
    url: str
    origin: str = "<memory>"
    gated: bool = False

    @property
    def hub(self) -> HubLocation | None:
        """The Hub location for an ``hf://`` URL, else None."""
        return parse_hub_url(self.url) if self.url.startswith("hf://") else None

    @property
    def licence_page(self) -> str | None:
        """The Hub page where a gated repository's licence is accepted (``https://huggingface.co/OWNER/REPO``)."""
        hub = self.hub
        return hub.page if hub is not None else None

    @property
    def is_repository(self) -> bool:
        """True for an entry that is a whole Hub repository (a folder in the cache) rather than one file."""
        hub = self.hub
        return hub is not None and hub.filename is None

    @property
    def is_folder(self) -> bool:
        """True for an entry whose weights are a folder (see :data:`FOLDER_BACKENDS`), cached as a folder."""
        return self.backend in FOLDER_BACKENDS

    @property
    def filename(self) -> str:
        """The name the weights get in the cache: the URL's last path component (the repository's, for a repo).

        For an nnInteractive entry that is the trained-model folder's name (``nnInteractive_v1.0``).
        """
        hub = self.hub
        if hub is not None:
            return PurePosixPath(hub.filename or hub.repo_id).name
        return PurePosixPath(unquote(urlparse(self.url).path)).name

    def option_dict(self) -> dict[str, OptionValue]:
        """The options as a fresh dict."""
        return dict(self.options)


def default_list_path() -> Path:
    """The checkpoint list in use: ``$ZEROSHOT_CHECKPOINTS``, else ``checkpoints.txt`` at the repository top.

    Installed from a wheel, the package carries its own copy of ``checkpoints.txt``
    (:func:`zeroshot.bundled.bundled_path`).
    """
    override = os.environ.get(ENV_CHECKPOINT_LIST)
    if override:
        return Path(override).expanduser()
    return bundled_path("checkpoints.txt")


def read_checkpoint_list(path: str | os.PathLike[str] | None = None) -> dict[str, CheckpointEntry]:
    """Read and validate a checkpoint list.

    Parameters
    ----------
    path : path-like, optional
        The list to read; default :func:`default_list_path`.

    Returns
    -------
    dict of str to CheckpointEntry
        Entries by name, in file order.

    Raises
    ------
    CheckpointError
        If the file is missing, or a line is malformed (the message names the file and line).
    """
    list_path = Path(path) if path is not None else default_list_path()
    try:
        text = list_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint list {list_path} not found (set {ENV_CHECKPOINT_LIST} to the list to use)"
        ) from None
    return parse_checkpoint_list(text, source=str(list_path))


def parse_checkpoint_list(text: str, *, source: str = "checkpoints.txt") -> dict[str, CheckpointEntry]:
    """Parse the text of a checkpoint list; ``source`` names it in error messages."""
    entries: dict[str, CheckpointEntry] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        entry = _parse_line(line, origin=f"{source}:{number}")
        if entry.name in entries:
            raise CheckpointError(
                f"{entry.origin}: duplicate name {entry.name!r} (first defined at {entries[entry.name].origin})"
            )
        entries[entry.name] = entry
    return entries


def find_entry(name: str, entries: dict[str, CheckpointEntry] | None = None) -> CheckpointEntry:
    """The entry called ``name``; the error lists the known names when there is none."""
    entries = read_checkpoint_list() if entries is None else entries
    try:
        return entries[name]
    except KeyError:
        known = ", ".join(entries) or "none"
        raise CheckpointError(f"unknown checkpoint {name!r}; known: {known}") from None


def parse_hub_url(url: str) -> HubLocation:
    """Split ``hf://OWNER/REPO[@REVISION][/PATH]`` into a :class:`HubLocation`."""
    match = _HUB_URL.match(url)
    if match is None:
        raise CheckpointError(f"{url!r} is not a Hub URL of the form hf://OWNER/REPO[@REVISION][/PATH]")
    return HubLocation(repo_id=f"{match['owner']}/{match['repo']}", revision=match["revision"], filename=match["path"])


def _parse_line(line: str, *, origin: str) -> CheckpointEntry:
    fields = line.split()
    if len(fields) != len(COLUMNS):
        raise CheckpointError(
            f"{origin}: expected {len(COLUMNS)} columns ({' '.join(COLUMNS)}), found {len(fields)}: {line!r}"
        )
    name, backend, config, options, licence, sha256, url = fields
    if not _NAME.match(name):
        raise CheckpointError(f"{origin}: name {name!r} must be letters, digits, '.', '_', '-' or '+'")
    if backend not in BACKENDS:
        raise CheckpointError(f"{origin}: backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "sam2" and config == "-":
        raise CheckpointError(f"{origin}: a sam2 entry needs a config (e.g. configs/sam2.1/sam2.1_hiera_t.yaml)")
    if licence == "-":
        raise CheckpointError(f"{origin}: licence missing (give the weights' SPDX licence identifier)")
    if sha256 != "-" and not _SHA256.match(sha256):
        raise CheckpointError(f"{origin}: sha256 {sha256!r} is not 64 hex digits (write '-' when unknown)")
    _check_url(url, backend=backend, origin=origin)
    parsed = dict(_parse_options(options, origin=origin))
    gated = parsed.pop("gated", False)
    if not isinstance(gated, bool) or (gated and not url.startswith("hf://")):
        raise CheckpointError(f"{origin}: option gated must be true or false, and only for an hf:// URL")
    return CheckpointEntry(
        name=name,
        backend=backend,
        config=None if config == "-" else config,
        options=tuple(parsed.items()),
        gated=gated,
        licence=licence,
        sha256=None if sha256 == "-" else sha256.lower(),
        url=url,
        origin=origin,
    )


def _check_url(url: str, *, backend: str, origin: str) -> None:
    scheme = urlparse(url).scheme
    if scheme not in _URL_SCHEMES:
        raise CheckpointError(
            f"{origin}: url {url!r} must start with one of {', '.join(s + '://' for s in _URL_SCHEMES)}"
        )
    if scheme == "hf":
        try:
            hub = parse_hub_url(url)
        except CheckpointError as exc:
            raise CheckpointError(f"{origin}: {exc}") from None
        if backend == "transformers" and hub.filename is not None:
            raise CheckpointError(f"{origin}: a transformers entry is a whole repository: hf://OWNER/REPO, no file")
        if backend == "sam2" and hub.filename is None:
            raise CheckpointError(f"{origin}: a sam2 entry needs the checkpoint file: hf://OWNER/REPO/FILE.pt")
        if backend == "nninteractive" and hub.filename is None:
            raise CheckpointError(
                f"{origin}: an nninteractive entry names the trained-model folder in its repository: "
                "hf://OWNER/REPO/FOLDER (e.g. hf://MIC-DKFZ/nnInteractive/nnInteractive_v1.0)"
            )
        return
    if backend == "transformers":
        raise CheckpointError(f"{origin}: a transformers entry must be a Hub repository (hf://OWNER/REPO)")
    if backend == "nninteractive":
        raise CheckpointError(f"{origin}: an nninteractive entry must be a folder on the Hub (hf://OWNER/REPO/FOLDER)")
    path = unquote(urlparse(url).path)
    if path.endswith("/") or not PurePosixPath(path).name:
        raise CheckpointError(f"{origin}: url {url!r} does not end in a file name")


def _parse_options(text: str, *, origin: str) -> tuple[tuple[str, OptionValue], ...]:
    if text == "-":
        return ()
    options: dict[str, OptionValue] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not _OPTION_KEY.match(key) or not value:
            raise CheckpointError(f"{origin}: option {item!r} must be key=value (options are comma-separated)")
        if key in options:
            raise CheckpointError(f"{origin}: option {key!r} given twice")
        options[key] = _parse_option_value(value)
    return tuple(options.items())


def _parse_option_value(text: str) -> OptionValue:
    if text in ("true", "false"):
        return text == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text
