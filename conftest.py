"""Nothing to load here: the suite's pytest plugin (alice_acceptance.plugin) is registered by its pytest11 entry point
when the package is installed (`pip install -e .` in a checkout), so that a run from any directory collects the
same way. A `pytest_plugins` line here would break runs from outside the checkout (a non-top-level conftest)."""
