"""backup.*: pull backups into the operator's store, and look after them there."""

from invoke import Collection

from . import listing, pull

ns = Collection("backup", pull.env, pull.units, pull.logs, pull.all_, listing.list_)
ns.configure({"backup": {"parallel": 1}})
