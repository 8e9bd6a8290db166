"""The admin site of the support console: the fleet dashboard as its home page, a live fragment of it, one
search box, and an app list that puts what support uses first.

It is `admin.site` (fleet.console.apps.ConsoleAdminConfig), so every app's `@admin.register` lands here.
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path

# The app list, in the order support staff use it; apps not named here come after, then LAST.
APP_ORDER = ("sites", "rollouts", "workflows", "audit")
LAST = ("api", "auth", "django_celery_beat")
# Within Sites: the pages answering "what is wrong where" before the device API's bookkeeping.
MODEL_ORDER = {
    "sites": ("Site", "Node", "Alert", "Cluster", "Backup", "BootstrapToken", "NodeCredential"),
    "rollouts": ("Rollout", "RolloutPlan", "Release", "Application"),
}
REFRESH_SECONDS = 5


def _rank(order: tuple[str, ...], name: str, last: tuple[str, ...] = ()) -> tuple[int, int, str]:
    if name in order:
        return (0, order.index(name), name)
    if name in last:
        return (2, last.index(name), name)
    return (1, 0, name)


class ConsoleAdminSite(admin.AdminSite):
    site_header = "edgefleet"
    site_title = "edgefleet"
    index_title = "Fleet"
    index_template = "admin/console_index.html"

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        apps = super().get_app_list(request, app_label)
        apps.sort(key=lambda app: _rank(APP_ORDER, app["app_label"], LAST))
        for app in apps:
            order = MODEL_ORDER.get(app["app_label"], ())
            app["models"].sort(key=lambda model: _rank(order, model["object_name"]))
        return apps

    def get_urls(self) -> list[URLResolver | URLPattern]:
        own = [
            path("console/live/", self.admin_view(self.dashboard_live), name="console_live"),
            path("console/search/", self.admin_view(self.search_view), name="console_search"),
        ]
        return own + super().get_urls()

    def _dashboard_context(self, request: HttpRequest) -> dict[str, Any]:
        from fleet.console.dashboard import dashboard

        user = request.user
        return {
            "board": dashboard(),
            "refresh_seconds": REFRESH_SECONDS,
            "can_see": {
                "sites": user.has_perm("sites.view_site"),
                "rollouts": user.has_perm("rollouts.view_rollout"),
                "runs": user.has_perm("workflows.view_workflowrun"),
            },
        }

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        return super().index(request, {**self._dashboard_context(request), **(extra_context or {})})

    def dashboard_live(self, request: HttpRequest) -> HttpResponse:
        """The dashboard's body alone, for the home page to swap in every few seconds."""
        return TemplateResponse(request, "console/dashboard_body.html", self._dashboard_context(request))

    def search_view(self, request: HttpRequest) -> HttpResponse:
        """One result: its page. Several: a short list. None: the list says so."""
        from fleet.console.search import search

        user = request.user
        kinds = frozenset(
            kind
            for kind, perm in (
                ("site", "sites.view_site"),
                ("node", "sites.view_node"),
                ("rollout", "rollouts.view_rollout"),
            )
            if user.has_perm(perm)
        )
        query = request.GET.get("q", "")
        hits = search(query, kinds=kinds)
        if len(hits) == 1:
            return HttpResponseRedirect(hits[0].url)
        context = {**self.each_context(request), "title": f"Search: {query}", "query": query, "hits": hits}
        return TemplateResponse(request, "console/search.html", context)
