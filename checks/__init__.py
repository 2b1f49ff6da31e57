"""The runbook's checklists as pytest tests, one module per area (see acceptance.checkspec.check)."""
