"""report.html: one self-contained page per run, for people.

On top a node x check matrix (rows: the pseudo-node ``cluster``, masters, agents; columns: checks grouped by
area), one colour and one letter per outcome; every cell that did not pass links to its entry below
(check, node, outcome, message, blocked by, severity, runbook section, remediation). Then the remediation
decisions, the waived nodes, what changed since the previous runs, and the transport figures.

Self-contained: inline CSS, no script, no external resource; a Content-Security-Policy forbids any. Every
value that comes from the summary goes through :func:`esc` (a discovered server may be called
``<img src=x onerror=alert(1)>``); anchors are hashes, never names.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from reports.summary import OUTCOMES, RANK, VERDICTS, as_json, atomic_write, natural_key, node_sort_key

# outcome -> (letter in the cell, label); colours are in the CSS (classes o-<outcome>)
GLYPH: dict[str, str] = {"passed": "", "failed": "F", "error": "E", "blocked": "B", "waived": "W",
                         "remediated": "R", "not_run": "?"}
LABEL: dict[str, str] = {"passed": "passed", "failed": "failed", "error": "error", "blocked": "blocked",
                         "waived": "waived", "remediated": "remediated", "not_run": "not run"}
LEGEND_ORDER = ("failed", "error", "blocked", "not_run", "waived", "remediated", "passed")
ROLE_TITLE = {"cluster": "cluster-wide", "master": "masters", "agent": "agents"}
# within an area: root checks first, then cluster-wide, then per-node ones
PREFIX_ORDER = {"api": 0, "cluster": 1, "node": 2, "master": 3, "agent": 4}

CSS = """
:root { --passed:#8fd19e; --failed:#e03131; --error:#a61e4d; --blocked:#f59f00; --waived:#91a7ff;
  --remediated:#0ca678; --not_run:#adb5bd; --na:#eceef1; --ink:#212529; --muted:#6c757d; --line:#dee2e6; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  color: var(--ink); background: #fff; }
main { padding: 16px 24px 48px; max-width: 1800px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
a { color: #1864ab; }
.meta { display: flex; flex-wrap: wrap; gap: 4px 22px; color: var(--muted); margin: 4px 0 10px; }
.meta b { color: var(--ink); font-weight: 600; }
.status { display: inline-block; padding: 2px 10px; border-radius: 4px; font-weight: 700; color: #fff;
  vertical-align: 3px; font-size: 13px; margin-left: 8px; }
.status.ok { background: #2b8a3e; } .status.bad { background: var(--failed); }
.status.incomplete { background: #495057; }
.banner { padding: 10px 14px; border-radius: 6px; margin: 10px 0; font-weight: 600; }
.banner.interrupted { background: #fff4e6; border: 2px solid #e8590c; color: #a33a00; }
.banner.warn { background: #fff9db; border: 1px solid #fcc419; font-weight: 400; }
.banner ul { margin: 4px 0 0 18px; padding: 0; }
.chips { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0; }
.chip { display: inline-flex; align-items: center; gap: 6px; padding: 3px 10px 3px 4px; border-radius: 14px;
  background: #f8f9fa; border: 1px solid var(--line); font-size: 13px; }
.chip b { font-size: 14px; } .chip.zero { opacity: .45; }
.sw { display: inline-block; width: 18px; height: 18px; border-radius: 3px; text-align: center;
  font: 700 11px/18px system-ui, "DejaVu Sans", sans-serif; color: #fff; }
.o-passed { background: var(--passed); } .o-failed { background: var(--failed); color: #fff; }
.o-error { background: var(--error); color: #fff; } .o-blocked { background: var(--blocked); color: #3b2600; }
.o-waived { background: var(--waived); color: #1b2a6b; } .o-remediated { background: var(--remediated); color: #fff; }
.o-not_run { background: var(--not_run); color: #212529; }
.o-unknown { background: #000; color: #fff; }
.roots { margin: 6px 0; color: var(--muted); } .roots a { font-family: ui-monospace, monospace; }
.matrixwrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; padding: 6px 6px 2px;
  background: #fff; }
table.matrix { border-collapse: separate; border-spacing: 0; }
table.matrix th, table.matrix td { padding: 0; }
table.matrix thead th.area { font-size: 11px; font-weight: 600; color: #495057; text-align: left;
  padding: 0 2px 2px 4px; border-left: 2px solid #fff; border-bottom: 2px solid #868e96; white-space: nowrap;
  overflow: hidden; max-width: 0; }
table.matrix thead th.chk { vertical-align: bottom; height: 170px; font-weight: 400; }
table.matrix thead th.chk span { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap;
  font: 11.5px/20px ui-monospace, "DejaVu Sans Mono", monospace; color: #343a40; padding: 4px 0; display: block;
  width: 20px; }
table.matrix th.node { position: sticky; left: 0; z-index: 1; background: #fff; text-align: left;
  font: 12.5px/18px ui-monospace, "DejaVu Sans Mono", monospace; padding: 0 10px 0 2px; white-space: nowrap;
  max-width: 260px; overflow: hidden; text-overflow: ellipsis; }
table.matrix th.node .tag { font: 10.5px/1 system-ui, sans-serif; color: var(--muted); margin-left: 4px; }
table.matrix th.node .tag.w { color: #364fc7; font-weight: 700; }
table.matrix tr:hover th.node { background: #fff3bf; }
table.matrix tr.grp th { text-align: left; font-size: 12px; text-transform: uppercase; letter-spacing: .06em;
  color: #495057; padding: 8px 2px 2px; background: #fff; position: sticky; left: 0; }
td.c { width: 20px; min-width: 20px; height: 20px; border: 1px solid #fff; text-align: center;
  font: 700 11px/18px system-ui, "DejaVu Sans", sans-serif; }
td.c.first { border-left: 3px solid #fff; }
td.c.na { background: var(--na); }
td.c a { display: block; width: 100%; height: 18px; color: inherit; text-decoration: none; }
td.c a:hover, td.c a:focus { outline: 2px solid #1c7ed6; outline-offset: -1px; }
td.c.o-passed { background: var(--passed); }
td.c.o-waived { background: var(--waived); }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 10px 0 4px; font-size: 13px; color: #343a40; }
.legend span.item { display: inline-flex; gap: 6px; align-items: center; }
.legend .na { background: var(--na); border: 1px solid var(--line); }
.nodehead { margin: 22px 0 6px; font-size: 15px; }
.nodehead .mono { font-size: 14px; font-weight: 700; }
.nodehead .sub { color: var(--muted); font-weight: 400; font-size: 13px; }
.entry { border: 1px solid var(--line); border-left: 6px solid var(--not_run); border-radius: 5px;
  padding: 5px 10px; margin: 4px 0; scroll-margin-top: 12px; background: #fff; }
.entry.o-failed { border-left-color: var(--failed); } .entry.o-error { border-left-color: var(--error); }
.entry.o-blocked { border-left-color: var(--blocked); } .entry.o-waived { border-left-color: var(--waived); }
.entry.o-remediated { border-left-color: var(--remediated); }
.entry.o-failed, .entry.o-error, .entry.o-blocked, .entry.o-waived, .entry.o-remediated, .entry.o-not_run {
  background: #fff; color: var(--ink); }
.entry:target { outline: 3px solid #1c7ed6; background: #e7f5ff; }
.entry .head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 2px 10px; }
.entry .head code.chk { font-size: 13.5px; font-weight: 700; }
.entry .qmsg { color: #495057; }
.entry .meta2 { display: flex; flex-wrap: wrap; gap: 0 18px; margin-top: 2px; font-size: 12.5px; }
.entry .meta2 .k { color: var(--muted); }
.entry .meta2 .mono { font-size: 12px; }
.badge { display: inline-block; padding: 0 7px; border-radius: 3px; font-size: 12px; font-weight: 700;
  line-height: 19px; text-transform: uppercase; letter-spacing: .03em; }
.sev { font-size: 12px; color: var(--muted); } .sev.critical { color: #c92a2a; font-weight: 700; }
.msg { margin: 4px 0 2px; white-space: pre-wrap; word-break: break-word;
  font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; background: #f8f9fa; padding: 4px 8px;
  border-radius: 4px; }
table.list { border-collapse: collapse; font-size: 13px; margin: 4px 0 8px; }
table.list th { text-align: left; color: #495057; font-weight: 600; border-bottom: 2px solid var(--line);
  padding: 4px 10px 4px 0; }
table.list td { border-bottom: 1px solid var(--line); padding: 3px 10px 3px 0; vertical-align: top; }
table.list td.mono, table.list td.num, table.list .badge, table.list code { white-space: nowrap; }
table.list td.num { text-align: right; }
.v-taken { background: var(--remediated); color: #fff; } .v-refused { background: var(--blocked); color: #3b2600; }
.v-failed { background: var(--failed); color: #fff; } .v-escalated { background: var(--error); color: #fff; }
.v-planned { background: #d0ebff; color: #1864ab; }
.spark { display: inline-flex; gap: 2px; vertical-align: middle; }
.spark i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; }
.spark i.none { background: var(--na); border: 1px solid var(--line); }
.muted { color: var(--muted); }
details > summary { cursor: pointer; color: #1864ab; margin: 6px 0; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value (None -> empty); quotes too, so it is safe inside attributes."""
    if value is None:
        return ""
    return escape(value if isinstance(value, str) else str(value), quote=True)


def anchor(check: str, node: str) -> str:
    """The id of the detail entry of ``check`` on ``node``: stable across runs, safe whatever the names."""
    return "r-" + hashlib.sha1(f"{check}\0{node}".encode()).hexdigest()[:12]


def outcome_class(outcome: Any) -> str:
    return f"o-{outcome}" if outcome in OUTCOMES else "o-unknown"


MIN_AREA = 3  # an area of fewer checks joins the group of its checks' prefix (agent, master, node, cluster)


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
    return [(g, sorted(groups[g], key=_check_key)) for g in order]


def _check_key(check: str) -> tuple[Any, ...]:
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


def _value(value: Any) -> str:
    """A before/after state: strings as they are, other JSON values compact."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return esc(value)
    return esc(json.dumps(value, sort_keys=True, ensure_ascii=False))


@dataclass
class Matrix:
    nodes: list[dict[str, Any]]  # in row order, grouped by role
    areas: list[tuple[str, list[str]]]  # column groups in order
    cells: dict[tuple[str, str], dict[str, Any]]  # (check, node) -> record


def build_matrix(summary: Mapping[str, Any]) -> Matrix:
    records = list(summary.get("records", ()))
    nodes: dict[str, dict[str, Any]] = {}
    for n in summary.get("nodes", ()):
        nodes.setdefault(str(n.get("name")), dict(n))
    for r in records:
        node = str(r.get("node"))
        if node not in nodes:
            role = "cluster" if node == "cluster" else str(r.get("role") or "")
            nodes[node] = {"name": node, "role": role, "kind": r.get("kind"), "maintenance": None}
    areas = group_checks({str(r.get("check")) for r in records})
    cells = {(str(r.get("check")), str(r.get("node"))): dict(r) for r in records}
    return Matrix(nodes=sorted(nodes.values(), key=node_sort_key), areas=areas, cells=cells)


def _cell_title(check: str, node: str, r: Mapping[str, Any]) -> str:
    text = f"{check} on {node}: {LABEL.get(str(r.get('outcome')), r.get('outcome'))}"
    if r.get("message"):
        text += f" — {r.get('message')}"
    return esc(text)


def render_matrix(m: Matrix) -> str:
    out: list[str] = ['<div class="matrixwrap"><table class="matrix" aria-label="node by check matrix">']
    out.append('<thead><tr><th class="node" rowspan="2"></th>')
    for area, checks in m.areas:
        label = esc(area) if len(checks) * 22 >= 7 * len(area) + 8 else ""  # no clipped names
        out.append(f'<th class="area" colspan="{len(checks)}" title="{esc(area)}">{label}</th>')
    out.append("</tr><tr>")
    for _area, checks in m.areas:
        for check in checks:
            out.append(f'<th class="chk" scope="col" title="{esc(check)}"><span>{esc(check)}</span></th>')
    out.append("</tr></thead><tbody>")
    columns = sum(len(c) for _, c in m.areas)
    role = None
    for n in m.nodes:
        name = str(n.get("name"))
        if n.get("role") != role:
            role = n.get("role")
            count = sum(1 for x in m.nodes if x.get("role") == role)
            title = ROLE_TITLE.get(str(role), str(role or "other"))
            out.append(f'<tr class="grp"><th colspan="{columns + 1}">{esc(title)} · {count}</th></tr>')
        maint = n.get("maintenance")
        tags = f'<span class="tag">{esc(n.get("kind"))}</span>' if n.get("kind") else ""
        if maint:
            tags += '<span class="tag w">waived</span>'
        row_title = name + (f" — waived: {maint.get('reason')} (until {maint.get('until')})" if maint else "")
        out.append(f'<tr><th class="node" scope="row" title="{esc(row_title)}">{esc(name)}{tags}</th>')
        for _area, checks in m.areas:
            for i, check in enumerate(checks):
                first = " first" if i == 0 else ""
                r = m.cells.get((check, name))
                if r is None:
                    out.append(f'<td class="c na{first}"></td>')
                    continue
                outcome = r.get("outcome")
                cls = outcome_class(outcome)
                title = _cell_title(check, name, r)
                if outcome == "passed":
                    out.append(f'<td class="c {cls}{first}" title="{title}"></td>')
                else:
                    glyph = esc(GLYPH.get(str(outcome), "!"))
                    out.append(f'<td class="c {cls}{first}"><a href="#{anchor(check, name)}" '
                               f'title="{title}">{glyph}</a></td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def render_legend() -> str:
    items = [f'<span class="item"><span class="sw {outcome_class(o)}">{esc(GLYPH[o])}</span>{esc(LABEL[o])}</span>'
             for o in LEGEND_ORDER]
    items.append('<span class="item"><span class="sw na"></span>does not apply</span>')
    return f'<div class="legend" aria-label="legend">{"".join(items)}</div>'


def _status(summary: Mapping[str, Any]) -> str:
    if summary.get("interrupted") or (summary.get("totals") or {}).get("not_run"):
        return '<span class="status incomplete">INCOMPLETE</span>'
    if summary.get("healthy"):
        return '<span class="status ok">HEALTHY</span>'
    return '<span class="status bad">NOT HEALTHY</span>'


def render_header(summary: Mapping[str, Any]) -> str:
    t = summary.get("totals") or {}
    shard = summary.get("shard")
    meta = [("run", f'<span class="mono">{esc(summary.get("run_id"))}</span>'),
            ("moment", esc(summary.get("moment"))),
            ("started", esc(fmt_time(summary.get("started")))),
            ("finished", esc(fmt_time(summary.get("finished")))),
            ("duration", esc(fmt_duration(summary.get("duration_s")))),
            ("exit status", esc(summary.get("exit_status"))),
            ("checks", esc(sum(int(v) for v in t.values())))]
    if shard:
        meta.append(("shard", f"{esc(shard.get('index'))}/{esc(shard.get('count'))}"))
    out = [f'<header><h1>{esc(summary.get("cluster"))} — acceptance report {_status(summary)}</h1>',
           '<div class="meta">' + "".join(f"<span>{k} <b>{v}</b></span>" for k, v in meta) + "</div>"]
    if summary.get("interrupted") or t.get("not_run"):
        out.append(f'<div class="banner interrupted" role="alert">This run was interrupted: '
                   f'{esc(t.get("not_run", 0))} checks did not run. It says nothing about them, and the cluster '
                   "must not be read as healthy from it.</div>")
    chips = []
    for o in LEGEND_ORDER:
        n = int(t.get(o, 0))
        chips.append(f'<span class="chip{" zero" if n == 0 else ""}"><span class="sw {outcome_class(o)}">'
                     f'{esc(GLYPH[o])}</span>{esc(LABEL[o])} <b>{n}</b></span>')
    out.append(f'<div class="chips">{"".join(chips)}</div>')
    roots = summary.get("blocked_by") or {}
    if roots:
        links = []
        for root, n in sorted(roots.items(), key=lambda kv: (-int(kv[1]), kv[0])):
            check, _, node = str(root).partition("[")
            links.append(f'<a href="#{anchor(check, node.rstrip("]"))}">{esc(root)}</a> blocked {esc(n)}')
        out.append(f'<div class="roots">Root causes: {"; ".join(links)}</div>')
    warnings = summary.get("warnings") or []
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
        out.append(f'<div class="banner warn">Warnings<ul>{items}</ul></div>')
    out.append("</header>")
    return "".join(out)


def _remediation_dd(d: Mapping[str, Any]) -> str:
    parts = [f"<code>{esc(d.get('action'))}</code>", f"mode {esc(d.get('mode'))}",
             f'<span class="badge v-{esc(d.get("verdict"))}">{esc(d.get("verdict"))}</span>']
    if d.get("guardrail"):
        parts.append(f"guardrail {esc(d.get('guardrail'))}")
    if d.get("before") is not None or d.get("after") is not None:
        parts.append(f"{_value(d.get('before'))} → {_value(d.get('after'))}")
    if d.get("duration_s") is not None:
        parts.append(esc(fmt_duration(d.get("duration_s"))))
    return " · ".join(parts)


QUIET = frozenset({"blocked", "waived", "not_run"})  # their message is short: it goes on the first line


def render_entry(r: Mapping[str, Any], present: set[tuple[str, str]]) -> str:
    """One record: badge, check, node and severity; the message; then blocked by, runbook and remediation."""
    check, node, outcome = str(r.get("check")), str(r.get("node")), r.get("outcome")
    cls = outcome_class(outcome)
    sev = str(r.get("severity") or "")
    quiet = outcome in QUIET
    head = [f'<span class="badge {cls}">{esc(LABEL.get(str(outcome), outcome))}</span>',
            f'<code class="chk">{esc(check)}</code>', f'<span class="on">on <b class="mono">{esc(node)}</b></span>',
            f'<span class="sev {esc(sev)}">{esc(sev)}</span>']
    if quiet and r.get("message"):
        head.append(f'<span class="qmsg">{esc(r.get("message"))}</span>')
    msg = f'<p class="msg">{esc(r.get("message"))}</p>' if r.get("message") and not quiet else ""
    meta: list[tuple[str, str]] = []
    if r.get("blocked_by"):
        root = str(r.get("blocked_by"))
        root_node = "cluster" if root.startswith("api.") else node
        target = f"<code>{esc(root)}[{esc(root_node)}]</code>"
        if (root, root_node) in present:
            target = f'<a href="#{anchor(root, root_node)}">{target}</a>'
        meta.append(("blocked by", target))
    if r.get("first_message"):
        meta.append(("before remediation", f'<span class="mono">{esc(r.get("first_message"))}</span>'))
    detail = r.get("remediation_detail")
    if isinstance(detail, Mapping):
        meta.append(("remediation", _remediation_dd(detail)))
    else:
        meta.append(("remediation", f"<code>{esc(r.get('remediation'))}</code>" if r.get("remediation")
                     else '<span class="muted">none</span>'))
    meta.append(("runbook", f"<i>{esc(r.get('runbook'))}</i>" if r.get("runbook") else '<span class="muted">—</span>'))
    if r.get("test_id") and not quiet:
        meta.append(("test", f'<span class="mono">{esc(r.get("test_id"))}</span>'))
    body = "".join(f'<span class="kv"><span class="k">{k}</span> {v}</span>' for k, v in meta)
    return (f'<article class="entry {cls}" id="{anchor(check, node)}"><div class="head">{"".join(head)}</div>'
            f'{msg}<div class="meta2">{body}</div></article>')


def render_details(m: Matrix, summary: Mapping[str, Any]) -> str:
    present = set(m.cells)
    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (_check, node), r in m.cells.items():
        if r.get("outcome") != "passed":
            by_node[node].append(r)
    out = ['<section id="details"><h2>Checks that did not pass</h2>']
    if not by_node:
        out.append('<p class="muted">Every check passed.</p>')
    for n in m.nodes:
        name = str(n.get("name"))
        entries = by_node.get(name)
        if not entries:
            continue
        entries.sort(key=lambda r: (-RANK.get(str(r.get("outcome")), 7), _check_key(str(r.get("check")))))
        counts: dict[str, int] = defaultdict(int)
        for r in entries:
            counts[str(r.get("outcome"))] += 1
        sub = ", ".join(f"{c} {LABEL.get(o, o)}" for o, c in sorted(counts.items(), key=lambda kv: -RANK.get(kv[0], 7)))
        role = " · ".join(esc(x) for x in (n.get("role"), n.get("kind")) if x)
        out.append(f'<h3 class="nodehead"><span class="mono">{esc(name)}</span> '
                   f'<span class="sub">{role} — {esc(sub)}</span></h3>')
        out.extend(render_entry(r, present) for r in entries)
    out.append("</section>")
    return "".join(out)


def render_remediations(summary: Mapping[str, Any]) -> str:
    entries = list(summary.get("remediations") or ())
    out = ['<section id="remediations"><h2>Remediations</h2>']
    if not entries:
        out.append('<p class="muted">No remediation was planned or taken in this run.</p></section>')
        return "".join(out)
    counts: dict[str, int] = defaultdict(int)
    for e in entries:
        counts[str(e.get("verdict"))] += 1
    out.append("<p>" + ", ".join(f'<span class="badge v-{esc(v)}">{esc(v)}</span> {counts[v]}'
                                 for v in VERDICTS if counts.get(v)) + "</p>")
    out.append('<table class="list"><thead><tr><th>time</th><th>node</th><th>check</th><th>action</th>'
               "<th>mode</th><th>verdict</th><th>guardrail</th><th>reason</th><th>before → after</th>"
               "<th>took</th></tr></thead><tbody>")
    for e in sorted(entries, key=lambda e: (str(e.get("time")), natural_key(str(e.get("node"))))):
        verdict = str(e.get("verdict"))
        out.append(
            f'<tr><td class="mono">{esc(fmt_time(e.get("time")))}</td><td class="mono">{esc(e.get("node"))}</td>'
            f'<td><code>{esc(e.get("check"))}</code></td><td><code>{esc(e.get("action"))}</code></td>'
            f'<td>{esc(e.get("mode"))}</td><td><span class="badge v-{esc(verdict)}">{esc(verdict)}</span></td>'
            f'<td class="mono">{esc(e.get("guardrail"))}</td><td>{esc(e.get("reason"))}</td>'
            f'<td class="mono">{_value(e.get("before"))} → {_value(e.get("after"))}</td>'
            f'<td class="num">{esc(fmt_duration(e.get("duration_s")))}</td></tr>')
    out.append("</tbody></table></section>")
    return "".join(out)


def render_waived(m: Matrix) -> str:
    waived = [n for n in m.nodes if n.get("maintenance")]
    out = ['<section id="waived"><h2>Waived nodes</h2>']
    if not waived:
        out.append('<p class="muted">No node is in maintenance.</p></section>')
        return "".join(out)
    out.append('<table class="list"><thead><tr><th>node</th><th>role</th><th>reason</th><th>until</th>'
               "<th>checks waived</th></tr></thead><tbody>")
    for n in waived:
        name = str(n.get("name"))
        maint = n.get("maintenance") or {}
        count = sum(1 for (_c, node), r in m.cells.items() if node == name and r.get("outcome") == "waived")
        out.append(f'<tr><td class="mono">{esc(name)}</td><td>{esc(n.get("role"))}</td>'
                   f'<td>{esc(maint.get("reason"))}</td><td>{esc(maint.get("until"))}</td>'
                   f'<td class="num">{count}</td></tr>')
    out.append("</tbody></table></section>")
    return "".join(out)


def _spark(history: Iterable[Any]) -> str:
    marks = []
    for o in reversed(list(history)):  # oldest left, this run right
        if o is None:
            marks.append('<i class="none" title="no record"></i>')
        else:
            marks.append(f'<i class="{outcome_class(o)}" title="{esc(o)}"></i>')
    return f'<span class="spark">{"".join(marks)}</span>'


def _trend_table(entries: Sequence[Mapping[str, Any]], present: set[tuple[str, str]],
                 columns: Sequence[tuple[str, Any]]) -> str:
    head = "".join(f"<th>{esc(title)}</th>" for title, _ in columns)
    rows = []
    for e in entries:
        check, node = str(e.get("check")), str(e.get("node"))
        name = f"<code>{esc(check)}</code>"
        if (check, node) in present:
            name = f'<a href="#{anchor(check, node)}">{name}</a>'
        cells = "".join(f"<td>{fn(e)}</td>" for _, fn in columns)
        rows.append(f'<tr><td class="mono">{esc(node)}</td><td>{name}</td>{cells}</tr>')
    return (f'<table class="list"><thead><tr><th>node</th><th>check</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _badge(outcome: Any) -> str:
    if outcome is None:
        return '<span class="muted">no record</span>'
    return f'<span class="badge {outcome_class(outcome)}">{esc(LABEL.get(str(outcome), outcome))}</span>'


def render_trend(summary: Mapping[str, Any], m: Matrix) -> str:
    trend = summary.get("trend")
    out = ['<section id="trend"><h2>Since the previous run</h2>']
    if not isinstance(trend, Mapping):
        out.append('<p class="muted">No trend was computed for this run.</p></section>')
        return "".join(out)
    if not trend.get("previous_run"):
        out.append(f'<p class="muted">No previous run of {esc(summary.get("cluster"))} '
                   f'({esc(summary.get("moment"))}) to compare with.</p></section>')
        return "".join(out)
    present = {k for k, r in m.cells.items() if r.get("outcome") != "passed"}
    compared = list(trend.get("compared_runs") or ())
    out.append(f'<p class="muted">Compared with <span class="mono">{esc(trend.get("previous_run"))}</span>; '
               f"flapping: at least {esc(trend.get('flap_threshold'))} changes over the last "
               f"{esc(len(compared) + 1)} runs (window {esc(trend.get('runs'))}).</p>")
    sections: list[tuple[str, str, Sequence[tuple[str, Any]]]] = [
        ("new_failures", "New failures", [("now", lambda e: _badge(e.get("outcome"))),
                                          ("before", lambda e: _badge(e.get("previous")))]),
        ("fixed", "Fixed", [("before", lambda e: _badge(e.get("previous"))),
                            ("now", lambda e: _badge(e.get("outcome")))]),
        ("still_failing", "Still failing", [
            ("now", lambda e: _badge(e.get("outcome"))),
            ("runs in a row", lambda e: esc(e.get("failing_runs"))),
            ("since", lambda e: esc(fmt_time(e.get("since"))))]),
        ("flapping", "Flapping", [("changes", lambda e: esc(e.get("changes"))),
                                  ("outcomes, oldest → now", lambda e: _spark(e.get("history") or ()))]),
    ]
    for key, title, columns in sections:
        entries = list(trend.get(key) or ())
        out.append(f'<h3 id="trend-{key}">{esc(title)} <span class="muted">({len(entries)})</span></h3>')
        if entries:
            out.append(_trend_table(entries, present, columns))
        else:
            out.append('<p class="muted">None.</p>')
    out.append("</section>")
    return "".join(out)


def render_transport(summary: Mapping[str, Any]) -> str:
    transport = summary.get("transport") or {}
    nodes = transport.get("nodes") or {}
    apis = transport.get("api_requests") or {}
    if not nodes and not apis:
        return ""
    out = ['<section id="transport"><h2>Transport</h2><details><summary>ssh and API traffic of this run</summary>']
    if apis:
        out.append('<table class="list"><thead><tr><th>API</th><th>requests</th></tr></thead><tbody>')
        out.extend(f'<tr><td>{esc(k)}</td><td class="num">{esc(v)}</td></tr>' for k, v in sorted(apis.items()))
        out.append("</tbody></table>")
    if nodes:
        out.append('<table class="list"><thead><tr><th>node</th><th>connections</th><th>round trips</th>'
                   "<th>commands</th><th>live commands</th></tr></thead><tbody>")
        for name in sorted(nodes, key=natural_key):
            t = nodes[name] or {}
            out.append(f'<tr><td class="mono">{esc(name)}</td>'
                       + "".join(f'<td class="num">{esc(t.get(k))}</td>'
                                 for k in ("connections", "round_trips", "commands", "live_commands"))
                       + "</tr>")
        out.append("</tbody></table>")
    out.append("</details></section>")
    return "".join(out)


def render_html(summary: Mapping[str, Any]) -> str:
    """The report page of one summary (its JSON form, schema 2)."""
    data = as_json(summary)
    m = build_matrix(data)
    title = f"{data.get('cluster')} acceptance {data.get('run_id')}"
    body = [
        render_header(data),
        '<section id="matrix"><h2>Nodes × checks</h2>',
        render_legend(),
        render_matrix(m) if m.cells else '<p class="muted">No check ran.</p>',
        "</section>",
        render_details(m, data),
        render_remediations(data),
        render_waived(m),
        render_trend(data, m),
        render_transport(data),
        f'<footer>summary schema {esc(data.get("schema"))} · inventory <span class="mono">'
        f'{esc(data.get("inventory"))}</span></footer>',
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f'<body><main>{"".join(body)}</main></body></html>\n')


def write_html(summary: Mapping[str, Any], path: Path) -> Path:
    """Write the report page of ``summary`` to ``path`` atomically."""
    return atomic_write(path, render_html(summary))

