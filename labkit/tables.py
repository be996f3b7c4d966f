"""Markdown tables (placeholder; replaced by the tables module)."""

from labkit.throughput import markdown_table

__all__ = ["markdown_table"]
