"""The throughput, storage, capacity and cost report of a run (``pathopipe report``)."""

from pathopipe.report.costs import CostProfile, load_costs
from pathopipe.report.render import format_number, write_report
from pathopipe.report.summary import build_summary

__all__ = ["CostProfile", "build_summary", "format_number", "load_costs", "write_report"]
