"""The fault and abuse suite (issue 7): faults injected into the sandbox fleet.

`invoke faults` runs it with the report plugin (report.py), one row per fault class.
"""
