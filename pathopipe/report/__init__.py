"""The throughput, storage, capacity and cost report of a run (``pathopipe report``), and the QC
pictures (``pathopipe qc``, :mod:`pathopipe.report.qc`)."""

from pathopipe.report.costs import CostProfile, load_costs
from pathopipe.report.document import format_number
from pathopipe.report.render import write_report
from pathopipe.report.summary import build_summary

__all__ = ["CostProfile", "build_summary", "format_number", "load_costs", "write_report"]
