"""Report writers: summary.json, report.html, metrics.prom, junit.xml, the trend, the merge of shards, and the
report folder's history (index.html, retention).

The plugin hands a :class:`reports.summary.Summary` (or its JSON form) to :func:`write_all` at the end of a
run; output goes to ``reports/out/`` (git-ignored). Format: reports/SCHEMA.md. This package never imports
``acceptance``: data flows one way, from the plugin to the writers.
"""

from reports.write import write_all, write_reports

__all__ = ["write_all", "write_reports"]
