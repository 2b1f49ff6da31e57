"""The README's least-privilege policies are the files the lab makes its tokens from (deploy/policies/), byte for
byte, and the lab reads them into the emulators' rule syntax as Nomad and Consul would."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab import configs, policies

REPO = Path(__file__).resolve().parents[2]
FILES = sorted(p.stem for p in (REPO / "deploy" / "policies").glob("*.hcl"))


def test_every_token_policy_is_a_file():
    assert FILES == ["consul-dns", "consul-read", "consul-remediation", "nomad-read", "vault-read",
                     "vault-remediation"]


@pytest.mark.parametrize("name", FILES)
def test_the_readme_shows_the_file_byte_for_byte(name):
    readme = (REPO / "README.md").read_text()
    assert f"```hcl\n{policies.text(name)}```\n" in readme, f"README.md does not show deploy/policies/{name}.hcl"


def test_the_lab_reads_the_files_into_rules():
    assert policies.rules("nomad-read") == {"namespace": {"default": {"capabilities": ["list-jobs", "read-job"]}},
                                            "node": {"policy": "read"}, "operator": {"policy": "read"}}
    assert policies.rules("consul-remediation") == {
        "session_prefix": {"": {"policy": "write"}}, "key_prefix": {"alice-acceptance/": {"policy": "write"}},
        "operator": "write"}
    sec = {k: f"secret-{k}" for k in configs.SECRET_KEYS}
    acl = configs.acl_config(sec)
    assert acl["nomad"]["policies"]["alice-acceptance-read"] == policies.rules("nomad-read")
    assert acl["consul"]["policies"]["alice-acceptance-read"] == policies.rules("consul-read")
    assert acl["consul"]["policies"]["alice-acceptance-remediation"] == policies.rules("consul-remediation")
    assert acl["consul"]["policies"]["alice-acceptance-dns"] == policies.rules("consul-dns")
    assert acl["consul"]["dns_token"] == sec["consul_dns"]
