"""The decision report of a run (``pathopipe report``): what a workload needs and costs to
buy, rent or own, from measured throughput, storage and capacity; and the QC pictures
(``pathopipe qc``, :mod:`pathopipe.report.qc`)."""

from pathopipe.report.costs import CostProfile, load_costs
from pathopipe.report.numbers import format_number
from pathopipe.report.render import write_report
from pathopipe.report.sizing import SizingAssumptions
from pathopipe.report.summary import SUMMARY_SCHEMA_VERSION, build_summary, load_cohort

__all__ = [
    "SUMMARY_SCHEMA_VERSION",
    "CostProfile",
    "SizingAssumptions",
    "build_summary",
    "format_number",
    "load_cohort",
    "load_costs",
    "write_report",
]
