"""The project app: holds the shared command base and cross-app wiring; it has no models."""
from django.apps import AppConfig, apps


class OrkivaConfig(AppConfig):
    name = "orkiva"
    verbose_name = "Orkiva"

    def ready(self) -> None:
        from orkiva import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from orkiva.observability import check_metrics_mode

        check_metrics_mode()
        if apps.is_installed("django_q"):
            from orkiva import jobs

            jobs.connect()  # jobs log with the request id of the request that enqueued them
