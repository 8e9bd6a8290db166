"""The durable workflow engine: WorkflowRun and StepRun rows advanced by Celery tasks."""
