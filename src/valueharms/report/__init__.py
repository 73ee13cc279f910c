"""HTML report for Study A (see render.build_report)."""

from valueharms.report.render import build_report

__all__ = ["build_report"]
