"""report.html rendered from synthetic summaries (the replay through pytest-html's classes, as for merged shards):
pytest-html's page with the suite's columns, failure details and summary section; matrix, links to the rows,
escaping, self-containment and its Content-Security-Policy, sections."""

from __future__ import annotations

import base64
import hashlib
import html as htmllib
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from reports.html import render_page, with_csp, write_html
from reports.htmlview import anchor, area_of, group_checks
from reports.summary import OUTCOMES
from reports.trend import compute_trend

from .test_report_synthetic import HOSTILE, build_summary


class Page(HTMLParser):
    """Elements of a piece of HTML: tags seen with their attributes, matrix cells, and the text. What is inside
    a ``<template>`` (pytest-html's inert row and media templates, cloned by its script) is left out."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.cells: list[dict[str, str]] = []  # class, href, title of each td.c
        self.text: list[str] = []
        self._td: dict[str, str] | None = None
        self._inert = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "template":
            self._inert += 1
        if self._inert:
            return
        self.tags.append((tag, a))
        if tag == "td" and "c" in a.get("class", "").split():
            self._td = {"class": a["class"], "title": a.get("title", ""), "href": ""}
            self.cells.append(self._td)
        if tag == "a" and self._td is not None:
            self._td["href"], self._td["title"] = a.get("href", ""), a.get("title", "")

    def handle_endtag(self, tag):
        if tag == "template":
            self._inert -= 1
        if tag == "td":
            self._td = None

    def handle_data(self, data):
        self.text.append(data)

    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def blob(page: str) -> dict[str, Any]:
    """pytest-html's test data: what its script renders the results table from."""
    match = re.search(r'data-jsonblob="([^"]*)"', page)
    assert match, "no pytest-html data in the page"
    data: dict[str, Any] = json.loads(htmllib.unescape(match.group(1)))
    return data


def rows_by_anchor(page: str) -> dict[str, dict[str, Any]]:
    """The results table's rows by the anchor of their test cell (the rows that decided a check)."""
    out = {}
    for runs in blob(page)["tests"].values():
        for row in runs:
            found = re.search(r' id="(r-[0-9a-f]{12})"', row["resultsTableRow"][1])
            if found:
                out[found.group(1)] = row
    return out


def row_text(row: dict[str, Any]) -> str:
    return Page("".join(row["resultsTableRow"]) + "".join(e["content"] for e in row["extras"])).plain()


def section(page: str, name: str) -> str:
    return page.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]


@pytest.fixture(scope="module")
def data():
    return build_summary(hostile=True).to_json()


@pytest.fixture(scope="module")
def html(data):
    return render_page(data)


@pytest.fixture(scope="module")
def page(html):
    return Page(html)


@pytest.fixture(scope="module")
def rows(html):
    return rows_by_anchor(html)


def test_it_is_pytest_htmls_page_with_the_suites_columns(html, data):
    assert "by <a href=\"https://pypi.python.org/pypi/pytest-html\">pytest-html</a>" in html
    head = re.findall(r"<th[^>]*>([^<]*)</th>", html.split('id="results-table-head"')[1].split("</thead>")[0])
    assert head == ["Result", "Test", "Node", "Outcome", "Severity", "Duration", "Remediation", "Runbook", "Links"]
    tests = [row for runs in blob(html)["tests"].values() for row in runs]
    assert all(len(row["resultsTableRow"]) == len(head) for row in tests)
    assert len(tests) == len(data["records"]) - data["totals"]["not_run"]  # a check that never ran has no row
    outcomes = {re.sub(r"<[^>]+>", "", row["outcome"]) for row in tests}
    assert outcomes == {"passed", "failed", "error", "blocked", "waived", "remediated"}
    assert {row["result"] for row in tests} == {"Passed", "Failed", "Skipped"}  # pytest's, for the filters
    assert f"<title id=\"head-title\">{data['cluster']} acceptance {data['run_id']}</title>" in html


def test_one_cell_per_node_and_check_grey_where_the_check_does_not_apply(data, page):
    nodes = {n["name"] for n in data["nodes"]}
    checks = {r["check"] for r in data["records"]}
    assert len(page.cells) == len(nodes) * len(checks)
    coloured = [c for c in page.cells if "na" not in c["class"].split()]
    assert len(coloured) == len(data["records"])
    for outcome in OUTCOMES:
        n = sum(1 for c in coloured if f"o-{outcome}" in c["class"].split())
        assert n == data["totals"][outcome], outcome


def test_every_cell_that_did_not_pass_links_to_its_row(data, page, rows):
    links = [c for c in page.cells if c["href"]]
    assert len(links) == sum(n for o, n in data["totals"].items() if o not in ("passed", "not_run"))
    for r in data["records"]:
        target = anchor(r["check"], r["node"])
        if r["outcome"] == "not_run":
            assert target not in rows
            continue
        assert target in rows, r
        if r["outcome"] == "passed":
            assert not any(c["href"] == f"#{target}" for c in links)
            continue
        assert any(c["href"] == f"#{target}" for c in links)
        text = row_text(rows[target])
        for value in (r["check"], r["node"], r["severity"], r["message"], r["runbook"]):
            assert " ".join(value.split()) in text, (value, text)
        assert r["outcome"].lower() in text.lower()
        if r["blocked_by"]:
            assert f"blocked by {r['blocked_by']}[{r['node']}]" in text
        if r["remediation"]:
            assert r["remediation"] in text


def test_blocked_rows_link_to_their_root_cause(html, rows):
    root = anchor("node.ssh", "alibuild07")
    assert root in rows and "Connection timed out" in row_text(rows[root])
    assert html.count(f'href="#{root}"') == 2  # the matrix cell, the header's root causes
    blocked = [row for row in rows.values() if "o-blocked" in row["outcome"]]
    assert len(blocked) == 8
    assert all(f'href="#{root}"' in row["extras"][0]["content"] for row in blocked)


def test_hostile_names_and_messages_are_text_not_markup(data, html, page, rows):
    assert HOSTILE not in html and '<script>alert("x")' not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert [t for t, _ in page.tags if t in ("img", "script")] == ["script"]  # pytest-html's own, alone
    assert not any(k.startswith("on") and k != "onclick" for _, attrs in page.tags for k in attrs)
    assert HOSTILE in "".join(page.text)  # rendered as text
    row = rows[anchor("node.ping", HOSTILE)]
    for piece in (*row["resultsTableRow"], *(e["content"] for e in row["extras"])):
        inner = Page(piece)
        assert not {t for t, _ in inner.tags} & {"script", "img"}, piece
        assert not any(k.startswith("on") for _, attrs in inner.tags for k in attrs), piece
    assert '<script>alert("x")</script> & "quoted" \'single\'' in row_text(row)
    assert HOSTILE in row_text(row)


def test_a_message_with_a_script_tag_renders_as_text():
    data = build_summary(overrides={("node.puppet.clean", "alibuild01"): ("failed", "<script>alert(1)</script>")})
    page = render_page(data.to_json())
    assert page.count("<script>") == 1 and "alert(1)" in page
    row = rows_by_anchor(page)[anchor("node.puppet.clean", "alibuild01")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in row["extras"][0]["content"]
    assert "<script>alert(1)</script>" in row_text(row)


def test_self_contained_with_a_strict_csp(html, page):
    tags = {t for t, _ in page.tags}
    assert not tags & {"link", "img", "iframe", "object", "embed", "base"}
    for tag, attrs in page.tags:
        assert "src" not in attrs, (tag, attrs)
        if tag == "a" and attrs.get("href"):
            assert attrs["href"].startswith("#") or attrs["href"] == "https://pypi.python.org/pypi/pytest-html"
    styles = "".join(re.findall(r"<style[^>]*>(.*?)</style>", html, re.S))
    assert "--failed" in styles and not re.search(r"url\(|@import|https?://", styles)
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp.startswith("default-src 'none'; ") and f"script-src 'sha256-{digest}';" in csp
    assert "unsafe-eval" not in csp and "'unsafe-inline'" not in csp.split("style-src")[0]
    assert html.index("Content-Security-Policy") < html.index("<style")


def test_csp_is_added_once_and_first_in_head():
    page = with_csp("<html><head><title>t</title></head><body><script>1</script></body></html>")
    assert page.startswith('<html><head>\n    <meta http-equiv="Content-Security-Policy"')
    assert page.count("Content-Security-Policy") == 1


def test_header_says_what_run_this_is(data, html):
    head = html.split('<header class="acceptance"', 1)[1].split("</header>", 1)[0]
    for value in (data["cluster"], data["run_id"], "nightly", "2026-11-26 03:00:00 UTC", "3 min 03 s",
                  "exit status <b>2</b>", "INCOMPLETE", "interrupted", "node.ssh[alibuild07]"):
        assert value in head, value
    for outcome, n in data["totals"].items():
        assert re.search(rf"o-{outcome}\">[^<]*</span>[a-z ]+ <b>{n}</b>", head), outcome


def test_a_clean_run_reads_healthy_and_has_no_alert():
    clean = build_summary(scenario={}, unreachable=(), waived=(), interrupted=False).to_json()
    clean["exit_status"] = 0
    html = render_page(clean)
    assert ">HEALTHY<" in html and "NOT HEALTHY" not in html and "INCOMPLETE" not in html
    assert 'role="alert"' not in html
    assert not [c for c in Page(html).cells if c["href"]]


def test_an_interrupted_run_never_reads_healthy():
    data = build_summary(scenario={}, unreachable=(), waived=(), interrupted=True).to_json()
    data["exit_status"] = 0
    html = render_page(data)
    assert "INCOMPLETE" in html and ">HEALTHY<" not in html and 'role="alert"' in html


def test_rows_grouped_by_role_and_columns_by_area(data, html):
    groups = re.findall(r'<tr class="grp"><th colspan="\d+">([^<]+)</th>', html)
    assert groups == ["cluster-wide · 1", "masters · 3", "agents · 41"]
    rows = re.findall(r'<th class="node" scope="row" title="[^"]*">([^<]+)<', html)
    assert rows[:5] == ["cluster", "alimesos01", "alimesos02", "alimesos03", "&lt;img src=x onerror=alert(1)&gt;"]
    assert rows.index("alibuild02") < rows.index("alibuild10") < rows.index("alimetal01")
    columns = re.findall(r'<th class="chk" scope="col" title="([^"]+)">', html)
    assert len(columns) == len({r["check"] for r in data["records"]})
    assert columns[:2] == ["node.ping", "node.ssh"]  # the root checks first
    nomad = [c for c in columns if area_of(c) == "nomad"]
    assert nomad[0] == "api.nomad.reachable" and nomad[-1] == "agent.nomad.ready"
    assert columns.index(nomad[-1]) - columns.index(nomad[0]) == len(nomad) - 1  # side by side


def test_small_areas_join_their_prefix_group():
    groups = dict(group_checks(["agent.cmdline.cgroup-v1", "agent.image.builder", "node.ping", "node.puppet.clean",
                                "master.units.a", "master.units.b", "master.units.c", "cluster.drift.x"]))
    assert groups == {"node": ["node.ping", "node.puppet.clean"], "units": ["master.units.a", "master.units.b",
                      "master.units.c"], "agent": ["agent.cmdline.cgroup-v1", "agent.image.builder"],
                      "cluster": ["cluster.drift.x"]}


def test_remediations_waivers_and_warnings(data, html, rows):
    remediations = section(html, "remediations")
    for e in data["remediations"]:
        for value in (e["node"], e["check"], e["action"], e["verdict"], e["reason"]):
            assert value in remediations
    assert "workload-gate" in remediations and "absent → present" in remediations
    waived = section(html, "waived")
    assert "alibuild12" in waived and "disk swap INC0123" in waived and "2026-12-31" in waived
    assert "maintenance entry for alibuild31 expired" in html
    remediated = row_text(rows[anchor("agent.image.builder", "alibuild15")])
    assert "before remediation image registry.cern.ch/alisw/slc9-builder:latest is not present" in remediated
    assert "image.pull" in remediated and "taken" in remediated
    refused = row_text(rows[anchor("agent.cmdline.cgroup-v1", "alibuild21")])
    assert "refused" in refused and "guardrail workload-gate" in refused


def test_trend_sections(data):
    before = build_summary(run_id="20261125T030000Z-000001", started="2026-11-25T03:00:00+00:00",
                           overrides={("agent.build.free", "alibuild29"): "passed",
                                      ("node.puppet.clean", "alibuild05"): "failed"}).to_json()
    html = render_page(dict(data, trend=compute_trend(data, [before])))
    trend = section(html, "trend")
    assert "20261125T030000Z-000001" in trend
    new = trend.split('id="trend-new_failures"')[1].split("<h3")[0]
    assert "alibuild29" in new and f'href="#{anchor("agent.build.free", "alibuild29")}"' in new
    assert "alibuild05" in trend.split('id="trend-fixed"')[1].split("<h3")[0]
    assert "alimesos02" in trend.split('id="trend-still_failing"')[1].split("<h3")[0]


def test_no_trend_and_no_previous_run_are_said():
    small = build_summary(scenario={}, unreachable=(), waived=(), interrupted=False).to_json()
    small["records"] = small["records"][:5]
    assert "No trend was computed" in render_page(dict(small, trend=None))
    assert "No previous run of alice-prod (nightly)" in render_page(dict(small, trend=compute_trend(small, [])))


def test_write_html_is_atomic(tmp_path):
    small = build_summary().to_json()
    small["records"] = small["records"][:5]
    path = write_html(small, tmp_path / "r" / "report.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_unknown_outcome_values_cannot_inject_classes(data):
    hostile = dict(data, records=[dict(data["records"][0], outcome='x" onclick="alert(1)')])
    html = render_page(hostile)
    assert 'onclick="alert' not in html and "o-unknown" in html
    assert not [row for runs in blob(html)["tests"].values() for row in runs]  # no verdict, no row
