"""The figures of issues 4 (1-5), 5 (6: RTO), 12 (7: WAN and history) and 11 (8: S3 against
SFTP), one module each; FIGURES maps number to module."""

from . import backup_all, fleet, logs, memory, pull, rto, s3, wan

FIGURES = {1: backup_all, 2: pull, 3: logs, 4: fleet, 5: memory, 6: rto, 7: wan, 8: s3}
