from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    name = "rollouts"
    verbose_name = "Releases and rollouts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # sites re-hydrates replacement machines but may not import rollouts (rollouts -> sites): it asks
        # the provider registered here which image restores an application, and in which namespace.
        from rollouts.base_stack import render_base_stack
        from rollouts.restore import restore_targets
        from sites.base_stack import register_base_stack
        from sites.rehydration import register_restore_targets

        register_restore_targets(restore_targets)
        # Onboarding (sites) commits the base stack, a release of the platform's application: rendered here.
        register_base_stack(render_base_stack)
