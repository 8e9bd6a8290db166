from rest_framework.routers import SimpleRouter

from rollouts.api.site_actions import SiteRolloutViewSet
from rollouts.api.views import ApplicationViewSet, DriftViewSet, ReleaseViewSet, RolloutPlanViewSet, RolloutViewSet

router = SimpleRouter()
router.register("applications", ApplicationViewSet, basename="application")
router.register("releases", ReleaseViewSet, basename="release")
router.register("rollout-plans", RolloutPlanViewSet, basename="rollout-plan")
router.register("rollouts", RolloutViewSet, basename="rollout")
router.register("drift", DriftViewSet, basename="drift")
router.register("site-rollouts", SiteRolloutViewSet, basename="site-rollout")
