"""The durable workflow engine: WorkflowRun and StepRun rows advanced by Celery tasks."""

from django.apps import AppConfig
from django.conf import settings
from django.utils.module_loading import autodiscover_modules


class WorkflowsConfig(AppConfig):
    name = "fleet.workflows"
    label = "workflows"
    verbose_name = "Workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process (web, beat, workers) imports the same definitions: each installed app's
        # `workflows` module, plus the engine's own built-in kinds.
        from fleet.workflows import builtin  # noqa: F401

        if settings.FLEET_ENV == "test":
            # Kinds that block on files the tests control; registered only where FLEET_ENV=test, so a
            # test's Celery worker knows them and production never does.
            from fleet.workflows import testing  # noqa: F401
        autodiscover_modules("workflows")
