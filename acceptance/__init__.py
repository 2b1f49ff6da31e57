"""The ALICE build-cluster acceptance suite's core: inventory, targeting, node transport, API clients, check
metadata, outcomes, the checks' fixtures and the run's state (the application above it is ``alice_acceptance``)."""
