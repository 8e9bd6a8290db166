from django.apps import AppConfig


class FleetConfig(AppConfig):
    """The project package as an app, so its management commands (ensure_admin) are found."""

    name = "fleet"
    verbose_name = "edgefleet"
