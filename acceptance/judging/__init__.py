"""Judging, not fetching: the pure functions the cluster checks (and remediation's gates) apply to the
typed snapshots of :mod:`acceptance.clients`, one module per API."""
