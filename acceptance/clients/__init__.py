"""Clients of the cluster APIs (Nomad, Consul, Vault, Prometheus, OpenStack), configured from the inventory and the
official CLIs' variables, and the typed snapshot of each API that the cluster checks share (acceptance.apiregistry)."""
