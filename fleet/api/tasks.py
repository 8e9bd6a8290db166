"""Celery tasks of the API: thin doors into its modules."""

from celery import shared_task

from fleet.api.idempotency import purge_expired_records


@shared_task(name="api.purge_idempotency_records", ignore_result=True)
def purge_idempotency_records_task() -> int:
    """Beat, hourly: delete Idempotency-Key records past their lifetime (expired ones are ignored already)."""
    return purge_expired_records()
