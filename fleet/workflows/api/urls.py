from rest_framework.routers import SimpleRouter

from fleet.workflows.api.views import WorkflowRunViewSet

router = SimpleRouter()
router.register("workflow-runs", WorkflowRunViewSet, basename="workflow-run")
