"""App config for the pilot: operator feedback and the pilot report (backlog story 5.4)."""
from django.apps import AppConfig


class PilotConfig(AppConfig):
    name = "pilot"
    verbose_name = "Pilot"
