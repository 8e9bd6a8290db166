from rest_framework.routers import SimpleRouter

from sites.api.views import NodeViewSet, SiteViewSet

router = SimpleRouter()
router.register("sites", SiteViewSet, basename="site")
router.register("nodes", NodeViewSet, basename="node")
