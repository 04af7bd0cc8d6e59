"""Deploys of one host: the history it keeps, the target a rollback picks, the plans."""
