"""App config of the supervisor: the runtime registry and the wake chain (django-q2)."""
from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SupervisorConfig(AppConfig):
    name = "supervisor"
    verbose_name = "Supervisor"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_after_migrate, sender=self, dispatch_uid="supervisor.after_migrate")


def _after_migrate(sender, using="default", **kwargs) -> None:
    """`migrate` (and test database creation) also makes the shared cache table and the
    supervisor's periodic schedule, so a fresh `migrate` is all a deployment needs."""
    from django.core.management import call_command

    from supervisor.tasks import schedules_ensure

    call_command("createcachetable", database=using, verbosity=0)
    schedules_ensure(using=using)
