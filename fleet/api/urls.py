"""Everything under /api/v1/: one router assembled from each app's routes."""

from django.urls import include, path

from fleet.api.routers import FleetRouter
from fleet.api.token_views import ApiTokenDetailView, ApiTokenListView, ObtainTokenView
from fleet.audit.api.urls import router as audit_router
from fleet.workflows.api.urls import router as workflows_router
from rollouts.api.urls import router as rollouts_router
from sites.api.urls import router as sites_router

router = FleetRouter()
for app_router in (sites_router, audit_router, rollouts_router, workflows_router):
    router.registry.extend(app_router.registry)

urlpatterns = [
    path("auth/token/", ObtainTokenView.as_view(), name="auth-token"),
    path("auth/tokens/", ApiTokenListView.as_view(), name="auth-tokens"),
    path("auth/tokens/<int:pk>/", ApiTokenDetailView.as_view(), name="auth-token-detail"),
    path("", include(router.urls)),
]
