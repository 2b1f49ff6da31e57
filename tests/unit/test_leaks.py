"""No secret in any output, whatever form a server echoes it in.

Real runs of the suite (its plugin, in process, on the cluster checks) against servers that answer every
request with an error quoting the secrets: the API tokens and the clouds.yaml password, with ``"``, ``\\`` and
non-ASCII in them, JSON-escaped (once and twice), URL-encoded, in base64 (alone and as ``user:password``),
unicode-escaped and HTML-escaped, after paddings that put them across every length a message is cut at. Then
every output is read: the terminal, summary.json, report.html, junit.xml, metrics.prom, the audit log, the
second run's trend, the merged report and ``lock status``."""

from __future__ import annotations

import base64
import html
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from reports.merge import main as merge_main

from .test_openstack_transport import Handler, Seen, Server

pytest_plugins = ["pytester"]

USER = "alibuild"
SECRETS = {
    # tokens travel in headers (latin-1): ASCII, but with what JSON, URLs and HTML escape
    "NOMAD_TOKEN": 'nomad-"tok\\en-0123456789',
    "CONSUL_HTTP_TOKEN": "consul-token/+= 9876543210",
    "VAULT_TOKEN": "hvs.vault'tok<en>&-42424242",
    "CONSUL_REMEDIATION_TOKEN": 'consul-remediation-"x"-13579',
    "OS_PASSWORD": 'Pä"ss\\wörd-Keystone/42 😀',  # in clouds.yaml (a JSON body): anything goes
}


def spellings(secret: str, user: str = USER) -> dict[str, str]:
    """The forms a server may echo ``secret`` in."""
    return {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "json-utf8": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json-twice": json.dumps(json.dumps(secret))[1:-1],
        "json-upper-hex": json.dumps(secret)[1:-1].replace("\\u00e4", "\\u00E4").replace("\\u00fc", "\\u00FC"),
        "url": urllib.parse.quote(secret, safe=""),
        "url-plus": urllib.parse.quote_plus(secret),
        "base64": base64.b64encode(secret.encode()).decode(),
        "basic": base64.b64encode(f"{user}:{secret}".encode()).decode(),
        "unicode-escape": secret.encode("unicode_escape").decode(),
        "html": html.escape(secret),
    }


FORMS = [(name, form) for secret in SECRETS.values() for name, form in spellings(secret).items()]
# across the lengths messages are cut at (80, 120, 200, 240, 300, 400, 500) and the excerpt's window (960)
PADDINGS = (0, 1, 37, 70, 79, 110, 117, 190, 197, 235, 290, 395, 495, 955)


def leaks(text: str) -> list[str]:
    """The secrets' forms found in ``text``, and their halves (a secret cut after a prefix)."""
    found = []
    for secret in SECRETS.values():
        for name, form in spellings(secret).items():
            if form in text:
                found.append(f"{name} of {secret!r}")
            elif len(form) >= 16 and form[: len(form) * 2 // 3] in text:
                found.append(f"two thirds of the {name} form of {secret!r}")
    return found


class Echo:
    """Every answer an error that quotes every secret in every form (rotating the status, the content type,
    the form first quoted and the padding before it)."""

    def __init__(self) -> None:
        self.n = 0

    def body(self) -> tuple[int, bytes, str]:
        self.n += 1
        start = self.n % len(FORMS)  # every form, a different one first each time
        form = " ".join(f for _, f in FORMS[start:] + FORMS[:start])
        pad = "x" * PADDINGS[self.n % len(PADDINGS)]
        status = (403, 500, 401, 400, 502)[self.n % 5]
        if self.n % 3 == 0:
            return status, f"<html><body>{pad}token {form} rejected</body></html>".encode(), "text/html"
        if self.n % 3 == 1:  # the form as the text of a JSON string, as a server writes it
            return status, ('{"error": "' + pad + " permission denied for " + form + '"}').encode(), "application/json"
        return status, f"{pad}{form}".encode(), "text/plain"

    def __call__(self, h: Handler, seen: Seen) -> None:
        if seen.path.rstrip("/") == "/v3" and seen.method == "GET":  # Keystone's version document
            base = f"http://{h.headers['Host']}"
            h.reply(200, {"version": {"id": "v3.14", "status": "stable",
                                      "links": [{"rel": "self", "href": f"{base}/v3/"}],
                                      "media-types": [{"base": "application/json",
                                                       "type": "application/vnd.openstack.identity-v3+json"}]}})
            return
        status, data, kind = self.body()
        h.reply(status, data, {"Content-Type": kind})


def test_every_message_builder_redacts_every_form_before_it_cuts() -> None:
    """Each place that makes a message of a server's words, with each form of each secret at each padding
    (across every cut): nothing of the secret is left."""
    from acceptance.clients import errors, transport
    from acceptance.outcomes import first_line
    from acceptance.redaction import remember

    for secret in SECRETS.values():
        remember(secret, user=USER)
    builders = {"excerpt": lambda t: transport.excerpt(t.encode()), "one_line": lambda t: errors.one_line(t, 200),
                "first_line": first_line, "one_line 80": lambda t: errors.one_line(t, 80)}
    cuts = sorted({p - k for p in (80, 120, 200, 500, 960) for k in range(0, 40, 3)} | set(PADDINGS))
    found = []
    for secret in SECRETS.values():
        for name, form in spellings(secret).items():
            for pad in cuts:
                body = "x" * pad + form + " and more"
                found += [f"{b}: {name} after {pad}" for b, make in builders.items() if leaks(make(body))]
    assert found == []


@pytest.fixture
def echo() -> Iterator[Server]:
    server = Server(Echo())
    yield server
    server.close()


def site(tmp_path: Path, url: str) -> Path:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(f"""clouds:
  test:
    auth: {{auth_url: "{url}/v3", username: {USER}, password: {json.dumps(SECRETS['OS_PASSWORD'], ensure_ascii=False)},
           project_name: p, user_domain_name: Default, project_domain_name: Default}}
    region_name: RegionOne
    identity_api_version: 3
""")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"""cluster: leaks
nodes:
  masters:
    - {{name: alimesos01, address: 127.0.0.1}}
    - {{name: alimesos02, address: 127.0.0.2}}
    - {{name: alimesos03, address: 127.0.0.3}}
  agents:
    - {{name: alibuild01, address: 127.0.1.1, kind: vm}}
apis:
  nomad: {{address: "{url}"}}
  consul: {{address: "{url}"}}
  vault: {{address: "{url}"}}
  prometheus: {{address: "{url}"}}
  openstack: {{cloud: test, clouds_yaml: {clouds}, timeout_s: 5}}
  timeout_s: 5
  retry_s: 1
  deadline_s: 10
""")
    return inventory


def test_no_secret_reaches_any_output(pytester: pytest.Pytester, echo: Server, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in SECRETS.items():
        if name != "OS_PASSWORD":
            monkeypatch.setenv(name, value)
    inventory, reports = site(tmp_path, echo.url), tmp_path / "reports"
    outputs: dict[str, str] = {}
    for attempt in (1, 2):  # the second run has a trend against the first
        result = pytester.runpytest(f"--inventory={inventory}", "--role=cluster", f"--report-dir={reports}",
                                    f"--junitxml={tmp_path / f'junit{attempt}.xml'}", "-p", "no:cacheprovider",
                                    "--remediate=safe")
        assert result.ret in (1, 6), result.stdout.str()[-3000:]  # failed checks (or an escalation)
        outputs[f"terminal {attempt}"] = result.stdout.str() + result.stderr.str()
    summaries = sorted(p for p in reports.glob("*/summary.json") if p.parent.name != "latest")
    assert len(summaries) == 2
    assert json.loads(summaries[1].read_text())["trend"] is not None  # the trend was computed, and read below
    merged = tmp_path / "merged"
    merge_main([str(merged), str(summaries[1]), "--history-dir", str(reports)])

    from remediation.lock import main as lock_main

    lock_main(["status", f"--inventory={inventory}"])
    captured = capsys.readouterr()
    outputs["merge and lock status"] = captured.out + captured.err
    files = [p for p in [*reports.rglob("*"), *merged.rglob("*"), *tmp_path.glob("junit*.xml")] if p.is_file()]
    kinds = {p.name for p in files}
    assert {"summary.json", "report.html", "metrics.prom", "junit1.xml", "junit2.xml"} <= kinds, kinds
    for p in files:
        outputs[str(p.relative_to(tmp_path))] = p.read_text(errors="replace")

    found = {where: leaks(text) for where, text in outputs.items() if leaks(text)}
    assert found == {}
    echoed = sum(text.count("<redacted>") for text in outputs.values())
    assert echoed > 0  # the servers' words did reach the outputs, redacted
    assert echo.seen, "the suite never asked the servers"

