"""The report in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by
selenium through /usr/bin/chromedriver, nothing downloaded. pytest-html's script runs under the page's
Content-Security-Policy (the results table is rendered, with the suite's columns), the matrix is visible, a
failed cell is red, its link targets the check's row in the results table (``:target``, in the viewport, with
its failure detail), a hostile node name stays text; screenshots are saved under the test's tmp dir.

Never skipped: without Chromium the test fails and says which packages to install.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reports.html import write_html
from reports.htmlview import anchor

from .test_report_synthetic import HOSTILE, build_summary

CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000", "--hide-scrollbars"]


@contextmanager
def chromium(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium driven through Debian's chromedriver; pytest.fail (not skip, not error) without it."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).is_file() and os.access(p, os.X_OK))]
    if missing:
        pytest.fail(f"Chromium is needed for the report's browser test and {', '.join(missing)} is missing: "
                    f"{INSTALL} (or set CHROMIUM_BIN / CHROMEDRIVER_BIN)", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.fail(f"selenium is needed for the report's browser test ({exc}): pip install -e '.[dev]'",
                    pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(10)
        yield driver
    finally:
        driver.quit()


def rgb(css: str) -> tuple[int, ...]:
    """'rgb(224, 49, 49)' or 'rgba(…)' -> (224, 49, 49)."""
    inside = css[css.index("(") + 1: css.index(")")]
    return tuple(int(float(v)) for v in inside.split(",")[:3])


def in_viewport(driver: Any, element: Any) -> bool:
    return bool(driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.top < window.innerHeight && r.left >= 0 && r.left < window.innerWidth;",
        element))


def test_report_in_chromium(tmp_path: Path) -> None:
    report = write_html(build_summary(hostile=True).to_json(), tmp_path / "report.html")
    with chromium(tmp_path) as driver:
        look_at_the_report(driver, report, tmp_path)
    for name in ("report-top.png", "report-target.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name


def look_at_the_report(driver: Any, report: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.get(report.as_uri())
    assert "alice-prod" in driver.title

    # pytest-html's script ran under the CSP: the results table has its rows, with the suite's columns
    head = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#results-table-head th")]
    assert head[:5] == ["Result", "Test", "Node", "Outcome", "Severity"] and "Runbook" in head, head
    assert len(driver.find_elements(By.CSS_SELECTOR, "#results-table tbody.results-table-row")) > 600
    blocked = driver.find_elements(By.CSS_SELECTOR, "#results-table td.col-outcome .o-blocked")
    waived = driver.find_elements(By.CSS_SELECTOR, "#results-table td.col-outcome .o-waived")
    assert len(blocked) == 8 and len(waived) == 14

    # the matrix is on the page as the summary, near the top
    matrix = driver.find_element(By.CSS_SELECTOR, "table.matrix")
    assert matrix.is_displayed() and matrix.size["width"] > 600 and matrix.size["height"] > 600
    assert driver.execute_script("return arguments[0].getBoundingClientRect().top", matrix) < 1000
    driver.execute_script("arguments[0].scrollIntoView()", matrix)
    driver.save_screenshot(str(tmp_path / "report-top.png"))

    # a failed cell is red, an error cell red too but another red, a passed one green
    target = anchor("agent.cmdline.cgroup-v1", "alibuild03")
    link = driver.find_element(By.CSS_SELECTOR, f'td.c a[href="#{target}"]')
    cell = link.find_element(By.XPATH, "..")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
    assert "o-failed" in cell.get_attribute("class")
    assert in_viewport(driver, cell)
    r, g, b = rgb(cell.value_of_css_property("background-color"))
    assert r >= 180 and g <= 90 and b <= 90, f"failed cell is not red: {(r, g, b)}"
    error = driver.find_element(By.CSS_SELECTOR, "td.c.o-error")
    er, eg, eb = rgb(error.value_of_css_property("background-color"))
    assert er > eg and er > eb and abs(er - r) + abs(eg - g) + abs(eb - b) > 60, f"error {(er, eg, eb)} vs failed"
    passed = driver.find_element(By.CSS_SELECTOR, "td.c.o-passed")
    pr, pg, pb = rgb(passed.value_of_css_property("background-color"))
    assert pg > pr and pg > pb, f"passed cell is not green: {(pr, pg, pb)}"
    # nothing covers the cell: a click lands on its link
    assert driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2) === arguments[0];", link)

    # the hostile node name is text: no element was made of it, no script ran (an alert would fail the next call)
    assert driver.execute_script("return document.scripts.length") == 1
    assert driver.execute_script("return document.querySelectorAll('img[src=x], img[onerror]').length") == 0
    rows = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "th.node")]
    assert any(text.startswith(HOSTILE) for text in rows)
    nodes = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#results-table td.col-node")]
    assert HOSTILE in nodes

    # following the link targets the check's row in the results table and brings it into view
    link.click()
    assert driver.execute_script("return location.hash") == f"#{target}"
    assert driver.execute_script("const t = document.querySelector(':target'); return t && t.id") == target
    entry = driver.find_element(By.ID, target)
    assert in_viewport(driver, entry)
    body = entry.find_element(By.XPATH, "ancestor::tbody")
    assert "agent.cmdline.cgroup-v1" in body.text and "alibuild03" in body.text
    assert "systemd.unified_cgroup_hierarchy=0" in body.text and "Creating a agent" in body.text
    assert "node.reboot-for-cmdline" in body.text
    row = entry.find_element(By.XPATH, "..")
    assert rgb(row.find_element(By.CSS_SELECTOR, "td.col-node").value_of_css_property("background-color")) \
        != (255, 255, 255), "the :target row is not highlighted"
    driver.save_screenshot(str(tmp_path / "report-target.png"))
