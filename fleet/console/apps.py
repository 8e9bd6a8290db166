"""The admin, with the console's site (fleet.console.site) as `admin.site`: INSTALLED_APPS names this
config instead of `django.contrib.admin`, so every `@admin.register` lands on the console's site."""

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    default_site = "fleet.console.site.ConsoleAdminSite"
