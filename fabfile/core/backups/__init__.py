"""Backups of one host, one kind per module (env, units, logs), planned then run."""
