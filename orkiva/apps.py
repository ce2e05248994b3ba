"""The project app: holds the shared command base and cross-app wiring; it has no models."""
from django.apps import AppConfig


class OrkivaConfig(AppConfig):
    name = "orkiva"
    verbose_name = "Orkiva"

    def ready(self) -> None:
        from orkiva import schema  # noqa: F401  (registers the OpenAPI auth extension)
