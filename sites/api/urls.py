from rest_framework.routers import SimpleRouter

from sites.api.alerts import AlertViewSet
from sites.api.bootstrap import BootstrapTokenViewSet
from sites.api.device import DeviceHeartbeatViewSet, DeviceRegisterViewSet
from sites.api.k3s_versions import K3sVersionsViewSet
from sites.api.views import NodeViewSet, SiteViewSet

router = SimpleRouter()
router.register("sites", SiteViewSet, basename="site")
router.register(
    r"sites/(?P<site_code>[A-Za-z0-9-]+)/bootstrap-tokens", BootstrapTokenViewSet, basename="bootstrap-token"
)
router.register("nodes", NodeViewSet, basename="node")
router.register("alerts", AlertViewSet, basename="alert")
router.register("k3s-versions", K3sVersionsViewSet, basename="k3s-version")
# Machines' endpoints: `device/register/` and `device/heartbeat/` (each a POST to its list route).
router.register("device/register", DeviceRegisterViewSet, basename="device-register")
router.register("device/heartbeat", DeviceHeartbeatViewSet, basename="device-heartbeat")
