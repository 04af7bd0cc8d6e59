"""The zachot backup and recovery tasks, found by `fab` in this package.

Collections stay thin: they parse arguments and hand over to fabfile.core.
"""

from invoke import Collection

from . import backup, checklist, deploy, drill, hosts, restore, status

ns = Collection(backup.ns, deploy.ns, hosts.ns, restore.ns)
ns.add_task(checklist.checklist)
ns.add_task(status.status)
ns.add_task(drill.drill)
# The inventory file; $ZACHOT_INVENTORY wins over this (see core/inventory.py).
ns.configure({"zachot": {"inventory": None}})
