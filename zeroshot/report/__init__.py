"""``zeroshot report``: one HTML page to browse a run, from disk with no network.

The page holds the runs' provenance, the tables of ``zeroshot compare`` (sortable, filterable by sequence, model,
strategy, center and metric), the figures of ``zeroshot figures``, a case browser (one entry per case x model x
strategy x seed x round, with its metrics, slice images and per-slice Dice along z) and the failed rows with their
reasons. :mod:`zeroshot.report.sources` is the only module that reads run outputs. See docs/report.md.
"""

from zeroshot.report.build import BUDGET_MB_PER_100_ENTRIES, ReportOutput, write_report

__all__ = ["BUDGET_MB_PER_100_ENTRIES", "ReportOutput", "write_report"]
