"""The zachot backup and recovery tasks, found by `fab` in this package.

Collections stay thin: they parse arguments and hand over to fabfile.core.
"""

from invoke import Collection

from . import backup, checklist, deploy, drill, hosts, restore, status

ns = Collection(backup.ns, deploy.ns, hosts.ns, restore.ns)
ns.add_task(checklist.checklist)
ns.add_task(status.status)
ns.add_task(drill.drill)
# Each config default once (Invoke config, FABRIC_* env vars or -f override them); host
# specific defaults (wheelhouse, off-site box, lock timeout) live in the inventory instead.
ns.configure(
    {
        # The inventory file; $ZACHOT_INVENTORY wins over this (see core/inventory.py).
        "zachot": {"inventory": None},
        # Seconds each service may take to pass its health gate after a start: restores,
        # deploys, drill and checklist --guided.
        "restore": {"health_timeout": 60},
    }
)
