"""Top-level URLs: admin, the REST API, its schema and docs (both need a login), health and metrics."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from fleet.api.health import healthz
from fleet.api.metrics import metrics
from fleet.api.throttling import throttled_admin_login

admin.site.site_header = "edgefleet"
admin.site.site_title = "edgefleet"
admin.site.index_title = "Fleet"

# A path under /api/ that matches no route (a malformed id, say) answers JSON like every other API error.
handler404 = "fleet.api.exceptions.not_found"

urlpatterns = [
    # Before the admin's own URLs, so its login form is throttled like auth/token/ (same name, same path).
    path("admin/login/", throttled_admin_login),
    path("admin/", admin.site.urls),
    path("api/v1/", include("fleet.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
]
