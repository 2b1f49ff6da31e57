"""The ALICE build-cluster acceptance suite: pytest plugin, inventory, targeting, node probes, check metadata."""
