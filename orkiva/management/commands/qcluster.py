"""`manage.py qcluster`: django-q2's, stopping promptly when a signal reaches its whole process group.

systemd's default (`KillMode=control-group`) and a shell's `kill %job` send SIGTERM to every
process of the cluster at once. django-q2's sentinel and workers then die at once (their SIGTERM
is the default action), but the main process's handler sets the stop event, a multiprocessing
Event whose `set()` waits for the waiter it wakes, the sentinel, which is gone: it hangs forever
(django-q2 1.11.1). Here the main process first gives the sentinel a moment to end by itself; if it
does, there is nobody left to stop, and the command returns. A SIGTERM to the main process alone
(`kill <pid>`, systemd's `KillMode=mixed`) still stops the cluster in order: the sentinel is told
to stop, lets its workers finish their tasks, then ends.
"""
from __future__ import annotations

import structlog
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand

logger = structlog.get_logger("orkiva")

# How long a signalled sentinel may take to die before the orderly stop is asked of it.
_SENTINEL_GRACE_SECONDS = 0.5


class PromptCluster(Cluster):
    def stop(self) -> bool:
        if self.sentinel is not None and self.sentinel.is_alive():
            self.sentinel.join(_SENTINEL_GRACE_SECONDS)
        if self.sentinel is None or not self.sentinel.is_alive():
            # The signal reached the whole group: the sentinel and its workers are gone already.
            logger.info("qcluster_stopped", how="its processes were signalled with it")
            self.start_event = None
            self.stop_event = None
            return False
        return super().stop()


class Command(DjangoQCommand):
    def handle(self, *args, **options):
        import django_q.management.commands.qcluster as qcluster

        original = qcluster.Cluster
        qcluster.Cluster = PromptCluster
        try:
            super().handle(*args, **options)
        finally:
            qcluster.Cluster = original
