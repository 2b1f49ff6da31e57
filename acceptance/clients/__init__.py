"""Clients of the cluster APIs (Nomad, Consul, Vault, Prometheus, OpenStack), configured from the inventory and the
official CLIs' variables, and the once-per-run snapshot of each API that the cluster checks share."""
