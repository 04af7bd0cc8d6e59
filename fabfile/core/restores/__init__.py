"""Recoveries, one module per runbook scenario, built from the shared steps."""
