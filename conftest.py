"""Thin: loads the suite's pytest plugin (also registered as a pytest11 entry point, under the same name)."""

pytest_plugins = ["acceptance.plugin"]
