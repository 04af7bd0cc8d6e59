"""The five figures of issue 4, one module each; FIGURES maps the figure number to it."""

from . import backup_all, fleet, logs, memory, pull

FIGURES = {1: backup_all, 2: pull, 3: logs, 4: fleet, 5: memory}
