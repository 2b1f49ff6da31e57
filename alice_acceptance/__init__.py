"""The application: the pytest plugin's hooks (``alice_acceptance.plugin``), the ``alice-acceptance`` command, the
three moments, the converging loop and the end-of-run reports. It sits above the core (``acceptance``), the
checks and remediation, and nothing below imports it."""
