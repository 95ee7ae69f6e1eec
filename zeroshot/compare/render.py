"""Write tables as CSV (numbers, full precision), Markdown and LaTeX (booktabs) for reading and for papers.

The CSV is the numeric table itself; Markdown and LaTeX show a display version whose cells are already formatted
text (``0.812 ± 0.060``, ``0.805 [0.780, 0.829]``), so the same strings appear in both. Files are written to a
temporary name and renamed (:func:`zeroshot.atomic.write_atomic`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from zeroshot.atomic import write_atomic
from zeroshot.compare.tables import KIND_SUPERVISED, higher_is_better, sequence_order
from zeroshot.csv_text import to_csv

__all__ = [
    "auc_display",
    "clicks_display",
    "cross_sequence_display",
    "format_ci",
    "format_p",
    "format_value",
    "noc_display",
    "paired_display",
    "published_display",
    "summary_display",
    "to_latex",
    "to_markdown",
    "write_table",
]

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "→": r"$\to$",
    "<": r"$<$", ">": r"$>$", "≤": r"$\le$", "≥": r"$\ge$", "–": "--", "—": "---",
}  # fmt: skip
NOT_AVAILABLE = "–"


def _digits(metric: str) -> int:
    return 3 if higher_is_better(metric) or metric == "rel_vol_err" else 1


def format_value(value: float, metric: str) -> str:
    """A metric value with the digits its scale needs (3 for fractions, 1 for mm); ``–`` for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_AVAILABLE
    return f"{value:.{_digits(metric)}f}"


def format_ci(low: float, high: float, metric: str) -> str:
    """``[low, high]``, or ``–`` when the interval is undefined."""
    if any(v is None or math.isnan(v) for v in (low, high)):
        return NOT_AVAILABLE
    return f"[{format_value(low, metric)}, {format_value(high, metric)}]"


def format_p(p: float) -> str:
    """A p-value: three significant digits, ``< 0.001`` below that, ``–`` when the test was not defined."""
    if p is None or math.isnan(p):
        return NOT_AVAILABLE
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


def _method(row: Mapping[str, object]) -> str:
    if row.get("kind") == KIND_SUPERVISED:
        return f"{row['model']} (trained on {row['train_sequence']})"
    text = f"{row['model']} / {row['strategy']}"
    if "round" in row and pd.notna(row["round"]):
        text += f", round {row['round']}"
    return text


def summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """One line per group x method x metric: n, failed/empty counts, mean ± SD, median [IQR], CI of the mean."""
    if summary.empty:
        return pd.DataFrame()
    level = f"{summary['confidence'].iloc[0] * 100:g} % CI ({summary['ci_method'].iloc[0]})"
    lines = []
    for row in summary.to_dict("records"):  # plain dicts: iterrows builds a Series per row
        metric = row["metric"]
        line = {"sequence": row["sequence"]}
        if "center" in row:
            line["center"] = row["center"]
        line.update(
            {
                "method": _method(row),
                "metric": metric,
                "n": int(row["n_cases"]),
                "failed / missed": f"{int(row['n_failed'])} / {int(row['n_missed'])}",
                "mean ± SD": f"{format_value(row['mean'], metric)} ± {format_value(row['sd'], metric)}",
                "median [IQR]": (f"{format_value(row['median'], metric)} {format_ci(row['q1'], row['q3'], metric)}"),
                level: format_ci(row["ci_low"], row["ci_high"], metric),
            }
        )
        lines.append(line)
    return pd.DataFrame(lines)


def cross_sequence_display(cross: pd.DataFrame) -> pd.DataFrame:
    """Rows: methods with their train sequence; columns: test sequences; cells: ``mean [CI]``."""
    if cross.empty:
        return pd.DataFrame()
    metric = cross["metric"].iloc[0]
    records = cross.to_dict("records")
    frame = cross.assign(
        method=[_method(row) for row in records],
        train=cross["train_sequence"].replace({"none": "zero-shot"}),
        cell=[f"{format_value(r['mean'], metric)} {format_ci(r['ci_low'], r['ci_high'], metric)}" for r in records],
    )
    order = list(dict.fromkeys(frame["method"]))
    unique = pd.Series(frame["test_sequence"].unique())
    tests = unique.iloc[np.argsort(sequence_order(unique).to_numpy(), kind="stable")].tolist()
    wide = frame.pivot_table(index=["method", "train"], columns="test_sequence", values="cell", aggfunc="first")
    wide = wide.reindex(sorted(wide.index, key=lambda key: order.index(key[0])))[tests]
    wide.columns = [f"test {c}" for c in wide.columns]
    return wide.reset_index().rename(columns={"train": "trained on"}).fillna(NOT_AVAILABLE)


def _click_method(row: pd.Series) -> str:
    return f"{row['model']} / {row['strategy']}"


def _clicks_heading(k: int) -> str:
    return f"{k} click" if k == 1 else f"{k} clicks"


def clicks_display(clicks: pd.DataFrame) -> pd.DataFrame:
    """Rows: sequence x method with its click budget; columns: ``k clicks``, cells ``mean [CI]`` of the metric.

    A k beyond a method's budget is ``–`` (the table clips it to the budget, which has its own column).
    """
    if clicks.empty:
        return pd.DataFrame()
    metric = clicks["metric"].iloc[0]
    frame = clicks.assign(
        method=[_click_method(row) for _, row in clicks.iterrows()],
        column=[_clicks_heading(k) for k in clicks["clicks"]],
        cell=[
            f"{format_value(r['mean'], metric)} {format_ci(r['ci_low'], r['ci_high'], metric)}"
            for _, r in clicks.iterrows()
        ],
    )
    columns = [_clicks_heading(k) for k in sorted(clicks["clicks"].unique())]
    index = ["sequence", "method", "budget_clicks"]
    wide = frame.pivot_table(index=index, columns="column", values="cell", aggfunc="first", sort=False)
    first = frame.loc[frame["clicks"] == 0].set_index(index)["n_cases"]
    wide = wide.reindex(columns=columns).fillna(NOT_AVAILABLE)
    wide.insert(0, "n", first.reindex(wide.index).fillna(0).astype(int))
    return wide.reset_index().rename(columns={"budget_clicks": "budget (clicks)"})


#: Column headings of the CVPR25 curve values.
AUC_HEADINGS = {
    "dsc_auc": "DSC_AUC",
    "nsd_auc": "NSD_AUC",
    "dsc_auc_norm": "DSC_AUC / (R−1)",
    "nsd_auc_norm": "NSD_AUC / (R−1)",
    "dsc_final": "DSC final",
    "nsd_final": "NSD final",
}


def auc_display(auc: pd.DataFrame) -> pd.DataFrame:
    """Rows: sequence x method with its rounds R; columns: the CVPR25 curve values, cells ``mean [CI]``."""
    if auc.empty:
        return pd.DataFrame()
    lines: dict[tuple[str, str], dict[str, object]] = {}
    for _, row in auc.iterrows():
        key = (row["sequence"], _click_method(row))
        line = lines.setdefault(
            key, {"sequence": key[0], "method": key[1], "R (rounds)": int(row["rounds"]), "n": int(row["n_cases"])}
        )
        if row["n_over_time_cap"]:
            line["over time cap"] = int(row["n_over_time_cap"])
        cell = NOT_AVAILABLE if math.isnan(row["mean"]) else f"{row['mean']:.3f}"
        if not math.isnan(row["ci_low"]):
            cell += f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        line[AUC_HEADINGS[row["measure"]]] = cell
    return pd.DataFrame(list(lines.values()))


def noc_display(noc: pd.DataFrame) -> pd.DataFrame:
    """Rows: sequence x method; per threshold, NoC ``mean [CI]`` and the cases that never reach it, ``n (share)``."""
    if noc.empty:
        return pd.DataFrame()
    lines: dict[tuple[str, str], dict[str, object]] = {}
    for _, row in noc.iterrows():
        key = (row["sequence"], _click_method(row))
        line = lines.setdefault(
            key, {"sequence": key[0], "method": key[1], "budget (clicks)": int(row["budget_clicks"])}
        )
        name = f"NoC@{row['threshold'] * 100:g}"
        mean, low, high = (
            NOT_AVAILABLE if math.isnan(row[c]) else f"{row[c]:.1f}" for c in ("mean", "ci_low", "ci_high")
        )
        line[name] = f"{mean} [{low}, {high}]" if low != NOT_AVAILABLE else mean
        share = row["share_never_reached"]
        line[f"not reached @{row['threshold'] * 100:g}"] = (
            f"{int(row['n_never_reached'])} / {int(row['n_cases'])} ({share * 100:.0f} %)"
            if not math.isnan(share)
            else NOT_AVAILABLE
        )
    return pd.DataFrame(list(lines.values()))


def paired_display(paired: pd.DataFrame) -> pd.DataFrame:
    """One line per comparison: Δ mean [CI], median Δ, Wilcoxon p, Holm-adjusted p."""
    if paired.empty:
        return pd.DataFrame()
    lines = []
    for row in paired.to_dict("records"):
        metric = row["metric"]
        lines.append(
            {
                "sequence": row["sequence"],
                "metric": metric,
                "A": row["method_a"],
                "B": row["method_b"],
                "n": int(row["n_common"]),
                "Δ mean (A − B) [CI]": (
                    f"{format_value(row['mean_diff'], metric)} {format_ci(row['ci_low'], row['ci_high'], metric)}"
                ),
                "median Δ": format_value(row["median_diff"], metric),
                "p (Wilcoxon)": format_p(row["p_value"]),
                "p (Holm)": format_p(row["p_holm"]),
            }
        )
    return pd.DataFrame(lines)


def published_display(published: pd.DataFrame) -> pd.DataFrame:
    """The cited numbers as printed in their sources (bounds stay bounds)."""
    if published.empty:
        return pd.DataFrame()
    from zeroshot.compare.baselines import published_rows

    lines = []
    for metric in dict.fromkeys(published["metric"]):
        for _, row in published_rows(published, metric).iterrows():
            seqs = [s if isinstance(s, str) and s else "?" for s in (row["train_sequence"], row["test_sequence"])]
            lines.append(
                {
                    "model": row["model"],
                    "setting": row["setting"],
                    "train → test": " → ".join(seqs) if seqs != ["?", "?"] else NOT_AVAILABLE,
                    "data": row["dataset"],
                    "metric": metric,
                    "value": row["cell"],
                    "n": str(int(row["n"])) if pd.notna(row["n"]) else NOT_AVAILABLE,
                    "source": row["source"],
                }
            )
    return pd.DataFrame(lines)


def _escape_markdown(text: object) -> str:
    return str(text).replace("|", r"\|").replace("\n", " ")


def to_markdown(display: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (text columns left-aligned, counts right-aligned)."""
    header = [_escape_markdown(c) for c in display.columns]
    align = ["---:" if pd.api.types.is_numeric_dtype(display[c]) else ":---" for c in display.columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for row in display.itertuples(index=False):
        lines.append("| " + " | ".join(_escape_markdown(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _escape_latex(text: object) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(display: pd.DataFrame, *, caption: str = "", label: str = "") -> str:
    """A booktabs ``table`` environment (needs the booktabs package), every cell escaped for LaTeX."""
    spec = "".join("r" if pd.api.types.is_numeric_dtype(display[c]) else "l" for c in display.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{_escape_latex(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(_escape_latex(c) for c in display.columns) + r" \\")
    lines.append(r"\midrule")
    for row in display.itertuples(index=False):
        lines.append(" & ".join(_escape_latex(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


#: How the CSV files write floats: ten significant digits, enough for every statistic and short to read.
FLOAT_FORMAT = "%.10g"


def write_table(
    numeric: pd.DataFrame,
    display: pd.DataFrame,
    out: Path,
    stem: str,
    *,
    caption: str = "",
) -> Sequence[Path]:
    """Write ``stem.csv`` (numeric), ``stem.md`` and ``stem.tex`` (display) into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{stem}.csv"
    write_atomic(csv_path, to_csv(numeric, float_format=FLOAT_FORMAT))
    title = f"**{caption}**\n\n" if caption else ""
    markdown = title + (to_markdown(display) if not display.empty else "_(no rows)_\n")
    md_path = write_atomic(out / f"{stem}.md", markdown)
    latex = to_latex(display, caption=caption, label=f"tab:{stem}") if not display.empty else "% (no rows)\n"
    tex_path = write_atomic(out / f"{stem}.tex", latex)
    return (csv_path, md_path, tex_path)
