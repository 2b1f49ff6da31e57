"""What report.html shows beyond pytest-html's own page, as plain values for the templates in reports/templates/.

pytest-html renders the page (its results table, filters and script); this module gives it the suite's parts:
the table's extra columns and the failure detail of a row (from a check's :class:`CheckVerdict`), and the
summary section (from the run's summary, schema 2): header, node x check matrix, root causes, remediations,
waived nodes, trend and transport. No markup here: the templates make it, with Jinja2's autoescape on, so that
every value (a discovered server may be called ``<img src=x onerror=alert(1)>``) is text.

Anchors are hashes, never names: the matrix and the trend link to ``#r-<sha1(check NUL node)[:12]>``, the id
of the row of that check and node in the results table.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template

from reports.outcomes import OUTCOMES, CheckVerdict
from reports.summary import VERDICTS, natural_key, node_sort_key

TEMPLATES = Path(__file__).parent / "templates"
STYLE = TEMPLATES / "style.css"

# outcome -> (letter in the cell, label); colours are in style.css (classes o-<outcome>)
GLYPH: dict[str, str] = {"passed": "", "failed": "F", "error": "E", "blocked": "B", "waived": "W",
                         "remediated": "R", "not_run": "?"}
LABEL: dict[str, str] = {"passed": "passed", "failed": "failed", "error": "error", "blocked": "blocked",
                         "waived": "waived", "remediated": "remediated", "not_run": "not run"}
LEGEND_ORDER = ("failed", "error", "blocked", "not_run", "waived", "remediated", "passed")
ROLE_TITLE = {"cluster": "cluster-wide", "master": "masters", "agent": "agents"}
# within an area: root checks first, then cluster-wide, then per-node ones
PREFIX_ORDER = {"api": 0, "cluster": 1, "node": 2, "master": 3, "agent": 4}
MIN_AREA = 3  # an area of fewer checks joins the group of its checks' prefix (agent, master, node, cluster)
NO_ROW = frozenset({"not_run"})  # never ran: no row in the results table to link to


@cache
def environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)


def template(name: str) -> Template:
    return environment().get_template(name)


@cache
def _module(template_name: str) -> Any:
    return template(template_name).module


def macro(template_name: str, name: str, *args: Any, **kwargs: Any) -> str:
    """One macro of a template, called: escaped HTML, one line (pytest-html reads cells by regex)."""
    rendered = getattr(_module(template_name), name)(*args, **kwargs)
    return " ".join(str(rendered).splitlines()).strip()


def macro_lines(template_name: str, name: str, *args: Any, **kwargs: Any) -> list[str]:
    """A macro that renders several one-line items (the cells of a row), one per line."""
    rendered = getattr(_module(template_name), name)(*args, **kwargs)
    return [line.strip() for line in str(rendered).splitlines() if line.strip()]


def one_line(value: Any) -> str:
    return " ".join(str(value if value is not None else "").splitlines())


def anchor(check: str, node: str) -> str:
    """The id of the row of ``check`` on ``node``: stable across runs, safe whatever the names."""
    return "r-" + hashlib.sha1(f"{check}\0{node}".encode()).hexdigest()[:12]


def outcome_class(outcome: Any) -> str:
    return f"o-{outcome}" if outcome in OUTCOMES else "o-unknown"


def area_of(check: str) -> str:
    """The subsystem of a check (``agent.units.docker`` -> units, ``api.nomad.reachable`` -> nomad); two-part
    ids keep their first part (``node.ping`` -> node)."""
    parts = check.split(".")
    return parts[1] if len(parts) >= 3 else parts[0]


def group_checks(checks: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Column groups: by area; an area of fewer than MIN_AREA checks that share one prefix joins the group named
    by that prefix (agent.cmdline.cgroup-v1 and agent.image.builder -> agent), so that no group is too narrow
    for its name. Order: node, the subsystems by name, then the prefix groups; in a group, root checks
    (api.*) first, then cluster-wide, then per node."""
    by_area: dict[str, set[str]] = defaultdict(set)
    for check in checks:
        by_area[area_of(check)].add(check)
    groups: dict[str, set[str]] = defaultdict(set)
    prefix_groups: set[str] = set()
    for area, members in by_area.items():
        prefixes = {c.split(".")[0] for c in members}
        if len(members) < MIN_AREA and len(prefixes) == 1 and area not in prefixes:
            (prefix,) = prefixes
            groups[prefix] |= members
            prefix_groups.add(prefix)
        else:
            groups[area] |= members
    order = sorted(groups, key=lambda g: (g != "node", g in prefix_groups, g))
    return [(g, sorted(groups[g], key=check_key)) for g in order]


def check_key(check: str) -> tuple[Any, ...]:
    parts = check.split(".")
    return (PREFIX_ORDER.get(parts[0], len(PREFIX_ORDER)), len(parts), natural_key(check))


def fmt_time(iso: Any) -> str:
    try:
        when = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso or "")
    offset = when.utcoffset()
    if offset is not None and offset.total_seconds() == 0:
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return when.isoformat(sep=" ")


def fmt_duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return ""
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(int(round(s)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_value(value: Any) -> str:
    """A before/after state: strings as they are, other JSON values compact."""
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def remediation_text(detail: Mapping[str, Any] | None) -> list[str]:
    """What a remediation did, in parts: action, mode, verdict, guardrail, before -> after, time taken."""
    if not detail:
        return []
    parts = [str(detail.get("action")), f"mode {detail.get('mode')}", str(detail.get("verdict"))]
    if detail.get("guardrail"):
        parts.append(f"guardrail {detail.get('guardrail')}")
    if detail.get("before") is not None or detail.get("after") is not None:
        parts.append(f"{fmt_value(detail.get('before'))} → {fmt_value(detail.get('after'))}")
    if detail.get("duration_s") is not None:
        parts.append(fmt_duration(detail.get("duration_s")))
    return parts


# --------------------------------------------------------------------------- the results table


def verdict_of_record(record: Mapping[str, Any]) -> CheckVerdict:
    """A summary record as the verdict its report carried (merged shards have records, not reports)."""
    return CheckVerdict.from_json({**record, "root": record.get("blocked_by")})


def root_anchor(v: CheckVerdict) -> str | None:
    if not v.root:
        return None
    return anchor(v.root, "cluster" if v.root.startswith("api.") else v.node)


# --------------------------------------------------------------------------- the summary section


@dataclass
class Cell:
    cls: str
    first: bool
    title: str = ""
    glyph: str = ""
    href: str = ""


@dataclass
class Row:
    name: str
    title: str
    kind: str
    waived: bool
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Group:
    title: str
    rows: list[Row] = field(default_factory=list)


@dataclass
class Matrix:
    areas: list[tuple[str, list[str]]]  # column groups in order
    groups: list[Group]
    records: dict[tuple[str, str], dict[str, Any]]  # (check, node) -> record
    nodes: list[dict[str, Any]]

    @property
    def columns(self) -> int:
        return sum(len(c) for _, c in self.areas)

    def area_label(self, area: str, checks: Sequence[str]) -> str:
        return area if len(checks) * 22 >= 7 * len(area) + 8 else ""  # no clipped names

    def href(self, check: str, node: str) -> str:
        r = self.records.get((check, node))
        if r is None or r.get("outcome") == "passed" or r.get("outcome") in NO_ROW:
            return ""
        return f"#{anchor(check, node)}"


def build_matrix(summary: Mapping[str, Any]) -> Matrix:
    records = [dict(r) for r in summary.get("records", ())]
    nodes: dict[str, dict[str, Any]] = {}
    for n in summary.get("nodes", ()):
        nodes.setdefault(str(n.get("name")), dict(n))
    for r in records:
        node = str(r.get("node"))
        if node not in nodes:
            role = "cluster" if node == "cluster" else str(r.get("role") or "")
            nodes[node] = {"name": node, "role": role, "kind": r.get("kind"), "maintenance": None}
    cells = {(str(r.get("check")), str(r.get("node"))): r for r in records}
    m = Matrix(areas=group_checks({str(r.get("check")) for r in records}), groups=[], records=cells,
               nodes=sorted(nodes.values(), key=node_sort_key))
    for n in m.nodes:
        role = str(n.get("role") or "")
        if not m.groups or m.groups[-1].title.split(" · ")[0] != ROLE_TITLE.get(role, role or "other"):
            count = sum(1 for x in m.nodes if str(x.get("role") or "") == role)
            m.groups.append(Group(f"{ROLE_TITLE.get(role, role or 'other')} · {count}"))
        name, maint = str(n.get("name")), n.get("maintenance")
        title = name + (f" — waived: {maint.get('reason')} (until {maint.get('until')})" if maint else "")
        row = Row(name=name, title=title, kind=str(n.get("kind") or ""), waived=bool(maint))
        for _area, checks in m.areas:
            for i, check in enumerate(checks):
                rec = cells.get((check, name))
                if rec is None:
                    row.cells.append(Cell(cls="na", first=i == 0))
                    continue
                outcome = str(rec.get("outcome"))
                title = f"{check} on {name}: {LABEL.get(outcome, outcome)}"
                if rec.get("message"):
                    title += f" — {rec.get('message')}"
                row.cells.append(Cell(cls=outcome_class(outcome), first=i == 0, title=title,
                                      glyph=GLYPH.get(outcome, "!") if outcome != "passed" else "",
                                      href=m.href(check, name)))
        m.groups[-1].rows.append(row)
    return m


def status(summary: Mapping[str, Any]) -> tuple[str, str]:
    """(css class, text) of the run's state."""
    if summary.get("interrupted") or (summary.get("totals") or {}).get("not_run"):
        return "incomplete", "INCOMPLETE"
    if summary.get("healthy"):
        return "ok", "HEALTHY"
    return "bad", "NOT HEALTHY"


def title(summary: Mapping[str, Any]) -> str:
    return f"{summary.get('cluster')} acceptance {summary.get('run_id')}"


def _roots(summary: Mapping[str, Any], m: Matrix) -> list[dict[str, Any]]:
    out = []
    for root, n in sorted((summary.get("blocked_by") or {}).items(), key=lambda kv: (-int(kv[1]), kv[0])):
        check, _, node = str(root).partition("[")
        out.append({"text": root, "count": n, "href": m.href(check, node.rstrip("]"))})
    return out


def _trend(summary: Mapping[str, Any], m: Matrix) -> dict[str, Any] | None:
    trend = summary.get("trend")
    if not isinstance(trend, Mapping):
        return None
    sections = []
    for key, name in (("new_failures", "New failures"), ("fixed", "Fixed"), ("still_failing", "Still failing"),
                      ("flapping", "Flapping")):
        entries = []
        for e in trend.get(key) or ():
            entry = dict(e)
            entry["href"] = m.href(str(e.get("check")), str(e.get("node")))
            entry["since"] = fmt_time(e.get("since")) if e.get("since") else ""
            entry["spark"] = list(reversed(list(e.get("history") or ())))  # oldest left, this run right
            entries.append(entry)
        sections.append({"key": key, "title": name, "entries": entries})
    return {"previous_run": trend.get("previous_run"), "compared": len(trend.get("compared_runs") or ()) + 1,
            "runs": trend.get("runs"), "flap_threshold": trend.get("flap_threshold"), "sections": sections}


def summary_context(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the summary templates show, from a summary's JSON form."""
    m = build_matrix(summary)
    totals = summary.get("totals") or {}
    shard = summary.get("shard")
    meta = [("run", summary.get("run_id")), ("moment", summary.get("moment")),
            ("started", fmt_time(summary.get("started"))), ("finished", fmt_time(summary.get("finished"))),
            ("duration", fmt_duration(summary.get("duration_s"))), ("exit status", summary.get("exit_status")),
            ("checks", sum(int(v) for v in totals.values()))]
    if shard:
        meta.append(("shard", f"{shard.get('index')}/{shard.get('count')}"))
    remediations = sorted((dict(e) for e in summary.get("remediations") or ()),
                          key=lambda e: (str(e.get("time")), natural_key(str(e.get("node")))))
    for e in remediations:
        e["time"], e["took"] = fmt_time(e.get("time")), fmt_duration(e.get("duration_s"))
        e["before"], e["after"] = fmt_value(e.get("before")), fmt_value(e.get("after"))
    counts = {v: sum(1 for e in remediations if e.get("verdict") == v) for v in VERDICTS}
    waived = [{"name": n.get("name"), "role": n.get("role"), "reason": (n.get("maintenance") or {}).get("reason"),
               "until": (n.get("maintenance") or {}).get("until"),
               "count": sum(1 for (_c, node), r in m.records.items()
                            if node == n.get("name") and r.get("outcome") == "waived")}
              for n in m.nodes if n.get("maintenance")]
    transport = summary.get("transport") or {}
    nodes = transport.get("nodes") or {}
    return {
        "summary": summary, "status": status(summary), "meta": meta, "m": m,
        "interrupted": bool(summary.get("interrupted") or totals.get("not_run")),
        "not_run": totals.get("not_run", 0),
        "chips": [(o, outcome_class(o), GLYPH[o], LABEL[o], int(totals.get(o, 0))) for o in LEGEND_ORDER],
        "legend": [(outcome_class(o), GLYPH[o], LABEL[o]) for o in LEGEND_ORDER],
        "roots": _roots(summary, m), "warnings": list(summary.get("warnings") or ()),
        "remediations": remediations, "verdict_counts": [(v, n) for v, n in counts.items() if n],
        "waived": waived, "trend": _trend(summary, m),
        "apis": sorted((transport.get("api_requests") or {}).items()),
        "transport_nodes": [(name, nodes[name] or {}) for name in sorted(nodes, key=natural_key)],
        "outcome_class": outcome_class, "label": lambda o: LABEL.get(str(o), str(o)),
    }


def summary_parts(summary: Mapping[str, Any]) -> tuple[str, str]:
    """(prefix, summary) HTML of pytest-html's summary section: the run's header, then the sections."""
    ctx = summary_context(summary)
    return template("header.jinja2").render(ctx), template("sections.jinja2").render(ctx)
