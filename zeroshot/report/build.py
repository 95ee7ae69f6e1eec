"""Write the report: ``index.html`` with everything inline but the images, which sit beside it.

Layout of the report folder::

    index.html        the page: styles and script inline, no network
    cases/            e<NNNN>-z<ZZZ>.png: the slice images of each case entry
    figures/          copies of the PNG (and PDF) files of ``zeroshot figures``
    tables/           copies of the CSV tables of ``zeroshot compare`` (each table's download link)

The same runs give the same bytes: entries are sorted, images are encoded without metadata, the page holds no
time but the runs' own, and paths in it are relative to the folder (so a report can be moved or zipped).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zeroshot import __version__
from zeroshot.atomic import write_atomic
from zeroshot.datasets import SEQUENCES
from zeroshot.errors import ZeroshotError, ZeroshotWarning
from zeroshot.report.cases import IMAGE_FOLDER, CaseEntry, case_entries
from zeroshot.report.provenance import run_provenance
from zeroshot.report.sources import ReportSources, find_figures, read_compare_tables, read_sources
from zeroshot.report.tables import FILTERS, Cell, HtmlTable, Row, format_number, html_table, row_filters

__all__ = ["BUDGET_MB_PER_100_ENTRIES", "ReportOutput", "write_report"]

#: The size the report holds: at most this many MB (10^6 bytes) per 100 case entries of slice images and page (the
#: copied figures and tables are a fixed few MB aside). At most four small palette PNGs per entry; measured in
#: docs/report.md (demo and realistic-size phantom). A report above it says so (a note).
BUDGET_MB_PER_100_ENTRIES = 4.0
_OWN_FOLDERS = (IMAGE_FOLDER, "figures", "tables")
_TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class ReportOutput:
    """What :func:`write_report` wrote.

    Attributes
    ----------
    index : Path
        ``out/index.html``.
    entries : int
        Case entries in the browser.
    images : int
        Slice images written.
    bytes_entries : int
        Size of the slice images and the page: what grows with the entries.
    bytes_total : int
        Size of every file of the report (with the copied figures and tables).
    """

    index: Path
    entries: int
    images: int
    bytes_entries: int
    bytes_total: int

    @property
    def mb_per_100_entries(self) -> float:
        """Images and page per 100 case entries, in MB (10^6 bytes): what :data:`BUDGET_MB_PER_100_ENTRIES` bounds."""
        return self.bytes_entries / 1e6 * 100 / max(self.entries, 1)


def _prepare_folder(out: Path) -> None:
    """Create ``out``, or clear the files of an earlier report there; refuse a folder holding something else."""
    if out.exists() and not out.is_dir():
        raise ZeroshotError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "index.html").is_file():
            raise ZeroshotError(
                f"--out {out}: the folder holds files but no report (index.html); choose a new or empty folder"
            )
        for name in _OWN_FOLDERS:  # an earlier report's images: stale ones must not linger beside the new page
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _case_table(entries: Sequence[CaseEntry], metrics: Sequence[str], *, runs: int) -> HtmlTable:
    interactive = any(entry.round is not None for entry in entries)
    columns = ["sequence", "center", "case_id", "model", "strategy", "seed"]
    columns += ["round"] * interactive + ["run"] * (runs > 1)
    rows = []
    for entry in entries:
        values: list[object] = [entry.sequence, entry.center, entry.case_id, entry.model, entry.strategy]
        cells = [Cell(str(v)) for v in values] + [format_number(entry.seed)]
        if interactive:
            cells.append(format_number(entry.round) if entry.round is not None else Cell("–", ""))
        if runs > 1:
            cells.append(format_number(entry.run + 1))
        cells += [format_number(value) for _, value in entry.metrics]
        flags = [*entry.flags, *(["no prediction"] if entry.note else [])]
        cells.append(Cell(", ".join(flags)))
        rows.append(Row(tuple(cells), row_filters(columns[:5], values), entry.entry_id))
    names = (*columns, *metrics, "flags")
    numeric = tuple(name not in ("sequence", "center", "case_id", "model", "strategy", "flags") for name in names)
    return HtmlTable("case-table", "Case entries", names, numeric, tuple(rows))


def _failures_table(sources: ReportSources) -> HtmlTable:
    frame = sources.failures.copy()
    if len(sources.runs.roots) > 1:
        frame["run"] = frame["run"] + 1
    else:
        frame = frame.drop(columns="run")
    return html_table("failures-table", "Failed rows and their reasons", frame)


def _filter_values(tables: Sequence[HtmlTable]) -> list[tuple[str, list[str]]]:
    found: dict[str, set[str]] = {name: set() for name, _ in FILTERS}
    for table in tables:
        for row in table.rows:
            for name, value in row.filters:
                found[name].update(value.split("|"))

    def order(name: str, value: str) -> tuple:
        return (SEQUENCES.index(value), "") if name == "sequence" and value in SEQUENCES else (len(SEQUENCES), value)

    return [(name, sorted(values, key=lambda v, n=name: order(n, v))) for name, values in found.items() if values]


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    environment = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters["number"] = lambda value: format_number(value).text
    return environment


def write_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    compare_dir: str | Path | None = None,
    figures_dir: str | Path | None = None,
    note: str = "",
    progress: bool | None = None,
) -> ReportOutput:
    """Write the report of one or more runs into ``out`` (see the module docstring for its files).

    Parameters
    ----------
    run_dirs : sequence of path
        Run directories (``zeroshot eval --out``; merged shards are one run).
    out : path
        Report folder: created, or an earlier report's folder (rewritten).
    compare_dir : path, optional
        Output of ``zeroshot compare`` whose tables to show.
    figures_dir : path, optional
        Output of ``zeroshot figures`` whose figures to show.
    note : str
        A sentence shown under the title (the demo says its data are synthetic).
    progress : bool or None
        Progress bar over the case entries (``None``: when stderr is a terminal).

    Raises
    ------
    ZeroshotError
        A run that cannot be read (as ``zeroshot compare``), a ``compare_dir`` or ``figures_dir`` without its
        files, or an ``out`` folder that holds something other than a report.
    """
    sources = read_sources([Path(p) for p in run_dirs])
    tables = read_compare_tables(Path(compare_dir)) if compare_dir is not None else ()
    figures = find_figures(Path(figures_dir)) if figures_dir is not None else ()
    out = Path(out)
    _prepare_folder(out)
    entries, metrics = case_entries(sources, out, progress=progress)
    page_tables = []
    for table in tables:
        copy = out / "tables" / table.path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(table.path, copy)
        title = f"{table.name} ({table.path.name})"
        page_tables.append(html_table(f"table-{table.name}", title, table.frame, download=f"tables/{copy.name}"))
    page_figures = []
    for figure in figures:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(figure.png, out / "figures" / figure.png.name)
        pdf = None
        if figure.pdf is not None:
            shutil.copyfile(figure.pdf, out / "figures" / figure.pdf.name)
            pdf = f"figures/{figure.pdf.name}"
        page_figures.append({"name": figure.name, "png": f"figures/{figure.png.name}", "pdf": pdf})
    case_table = _case_table(entries, metrics, runs=len(sources.runs.roots))
    failures = _failures_table(sources)
    roots = [str(root) for root in sources.runs.roots]
    environment = _environment()
    page = environment.get_template("index.html.j2").render(
        title=f"zeroshot report: {', '.join(Path(r).name or r for r in roots)}",
        version=__version__,
        note=note,
        css=(_TEMPLATES / "report.css").read_text(encoding="utf-8"),
        js=(_TEMPLATES / "report.js").read_text(encoding="utf-8"),
        runs=[run_provenance(root, info) for root, info in zip(roots, sources.runs.infos, strict=True)],
        tables=page_tables,
        figures=page_figures,
        case_table=case_table,
        entries=entries,
        failures=failures,
        interactive=any(entry.round is not None for entry in entries),
        filters=_filter_values([*page_tables, case_table, failures]),
    )
    index = write_atomic(out / "index.html", page)
    sizes = {path: path.stat().st_size for path in out.rglob("*") if path.is_file()}
    output = ReportOutput(
        index=index,
        entries=len(entries),
        images=sum(len(entry.slices) for entry in entries),
        bytes_entries=sizes[index] + sum(size for path, size in sizes.items() if path.parent == out / IMAGE_FOLDER),
        bytes_total=sum(sizes.values()),
    )
    if output.entries and output.mb_per_100_entries > BUDGET_MB_PER_100_ENTRIES:
        warnings.warn(
            ZeroshotWarning(
                f"the report takes {output.mb_per_100_entries:.1f} MB per 100 case entries, above its budget of "
                f"{BUDGET_MB_PER_100_ENTRIES:.0f} MB (large crops: a prediction far from the structure?)"
            ),
            stacklevel=2,
        )
    return output
