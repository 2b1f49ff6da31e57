"""report.html from synthetic summaries: matrix, links to the entries, escaping, self-containment, sections."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from reports.html import anchor, area_of, group_checks, render_html, write_html
from reports.summary import OUTCOMES
from reports.trend import compute_trend

from .test_report_synthetic import HOSTILE, build_summary


class Page(HTMLParser):
    """Elements of the page: tags seen, attributes, matrix cells, entries and their text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.cells: list[dict[str, str]] = []  # class, href, title of each td.c
        self.entries: dict[str, list[str]] = {}  # id -> its text
        self.text: list[str] = []
        self._td: dict[str, str] | None = None
        self._entry: str | None = None
        self._depth = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "td" and "c" in a.get("class", "").split():
            self._td = {"class": a["class"], "title": a.get("title", ""), "href": ""}
            self.cells.append(self._td)
        if tag == "a" and self._td is not None:
            self._td["href"], self._td["title"] = a.get("href", ""), a.get("title", "")
        if tag == "article":
            self._entry, self._depth = a.get("id", ""), 0
            self.entries[self._entry] = []
        if self._entry is not None:
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "td":
            self._td = None
        if self._entry is not None:
            self._depth -= 1
            if tag == "article":
                self._entry = None

    def handle_data(self, data):
        self.text.append(data)
        if self._entry is not None:
            self.entries[self._entry].append(data)

    def entry_text(self, check: str, node: str) -> str:
        return " ".join(" ".join(self.entries[anchor(check, node)]).split())


@pytest.fixture(scope="module")
def data():
    return build_summary(hostile=True).to_json()


@pytest.fixture(scope="module")
def html(data):
    return render_html(data)


@pytest.fixture(scope="module")
def page(html):
    return Page(html)


def test_one_cell_per_node_and_check_grey_where_the_check_does_not_apply(data, page):
    nodes = {n["name"] for n in data["nodes"]}
    checks = {r["check"] for r in data["records"]}
    assert len(page.cells) == len(nodes) * len(checks)
    coloured = [c for c in page.cells if "na" not in c["class"].split()]
    assert len(coloured) == len(data["records"])
    for outcome in OUTCOMES:
        n = sum(1 for c in coloured if f"o-{outcome}" in c["class"].split())
        assert n == data["totals"][outcome], outcome


def test_every_cell_that_did_not_pass_links_to_its_entry(data, page):
    links = [c for c in page.cells if c["href"]]
    assert len(links) == sum(n for o, n in data["totals"].items() if o != "passed")
    for r in data["records"]:
        target = anchor(r["check"], r["node"])
        if r["outcome"] == "passed":
            assert target not in page.entries
            continue
        assert {"href": f"#{target}"}.items() <= next(c for c in links if c["href"] == f"#{target}").items()
        text = page.entry_text(r["check"], r["node"])
        for value in (r["check"], r["node"], r["severity"], r["message"], r["runbook"]):
            assert " ".join(value.split()) in text, (value, text)
        assert r["outcome"].replace("_", " ").lower() in text.lower()
        if r["blocked_by"]:
            assert f"blocked by {r['blocked_by']}[{r['node']}]" in text
        if r["remediation"]:
            assert r["remediation"] in text


def test_blocked_entries_link_to_their_root_cause(html):
    root = anchor("node.ssh", "alibuild07")
    assert html.count(f'href="#{root}"') >= 1 + 8  # the matrix cell, the header's root causes, 8 blocked entries
    assert f'id="{root}"' in html


def test_hostile_names_and_messages_are_text_not_markup(data, html, page):
    assert HOSTILE not in html and "<script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    tags = {t for t, _ in page.tags}
    assert "img" not in tags and "script" not in tags
    assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs)
    assert HOSTILE in "".join(page.text)  # rendered as text
    text = page.entry_text("node.ping", HOSTILE)
    assert '<script>alert("x")</script> & "quoted" \'single\'' in text


def test_self_contained(html, page):
    tags = {t for t, _ in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert "<style>" in html
    for _tag, attrs in page.tags:
        for key in ("href", "src", "action"):
            assert not attrs.get(key) or attrs[key].startswith("#"), attrs
    assert not re.search(r"url\(|@import|https?://", html.split("</style>")[0])
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_header_says_what_run_this_is(data, html):
    head = html.split('<section id="matrix"', 1)[0]
    for value in (data["cluster"], data["run_id"], "nightly", "2026-11-26 03:00:00 UTC", "3 min 03 s",
                  "exit status <b>2</b>", "INCOMPLETE", "interrupted", "node.ssh[alibuild07]"):
        assert value in head, value
    for outcome, n in data["totals"].items():
        assert re.search(rf"o-{outcome}\">[^<]*</span>[a-z ]+ <b>{n}</b>", head), outcome


def test_a_clean_run_reads_healthy_and_has_no_alert():
    clean = build_summary(scenario={}, unreachable=(), waived=(), interrupted=False).to_json()
    clean["exit_status"] = 0
    html = render_html(clean)
    assert "HEALTHY" in html and "NOT HEALTHY" not in html and "INCOMPLETE" not in html
    assert 'role="alert"' not in html and "Every check passed." in html


def test_an_interrupted_run_never_reads_healthy():
    data = build_summary(scenario={}, unreachable=(), waived=(), interrupted=True).to_json()
    data["exit_status"] = 0
    html = render_html(data)
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


def test_remediations_waivers_and_warnings(data, html):
    section = html.split('<section id="remediations">', 1)[1].split("</section>", 1)[0]
    for e in data["remediations"]:
        for value in (e["node"], e["check"], e["action"], e["verdict"], e["reason"]):
            assert value in section
    assert "workload-gate" in section and "absent → present" in section
    waived = html.split('<section id="waived">', 1)[1].split("</section>", 1)[0]
    assert "alibuild12" in waived and "disk swap INC0123" in waived and "2026-12-31" in waived
    assert "maintenance entry for alibuild31 expired" in html
    remediated = Page(html).entry_text("agent.image.builder", "alibuild15")
    assert "before remediation image registry.cern.ch/alisw/slc9-builder:latest is not present" in remediated
    assert "image.pull" in remediated and "taken" in remediated


def test_trend_sections(data):
    before = build_summary(run_id="20261125T030000Z-000001", started="2026-11-25T03:00:00+00:00",
                           overrides={("agent.build.free", "alibuild29"): "passed",
                                      ("node.puppet.clean", "alibuild05"): "failed"}).to_json()
    data = dict(data, trend=compute_trend(data, [before]))
    html = render_html(data)
    section = html.split('<section id="trend">', 1)[1].split("</section>", 1)[0]
    assert "20261125T030000Z-000001" in section
    new = section.split('id="trend-new_failures"')[1].split("<h3")[0]
    assert "alibuild29" in new and f'href="#{anchor("agent.build.free", "alibuild29")}"' in new
    assert "alibuild05" in section.split('id="trend-fixed"')[1].split("<h3")[0]
    assert "alimesos02" in section.split('id="trend-still_failing"')[1].split("<h3")[0]


def test_no_trend_and_no_previous_run_are_said(data):
    assert "No trend was computed" in render_html(dict(data, trend=None))
    assert "No previous run of alice-prod (nightly)" in render_html(dict(data, trend=compute_trend(data, [])))


def test_write_html_is_atomic(tmp_path, data):
    path = write_html(data, tmp_path / "r" / "report.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_unknown_outcome_values_cannot_inject_classes(data):
    hostile = dict(data, records=[dict(data["records"][0], outcome='x" onclick="alert(1)')])
    html = render_html(hostile)
    assert 'onclick="' not in html and "o-unknown" in html
