"""Celery tasks: thin, each calls the service of the same name."""

from celery import shared_task
from django.db import OperationalError

from . import reply


# A database that just dropped its connections (a restart, a failover) makes the claim fail while the
# pool replaces them: the task is tried again shortly, rather than left to the reaper minutes later.
@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    retry_backoff_max=8,
    max_retries=5,
)
def reply_generate(message_id: int) -> None:
    # Redelivery-safe: reply.reply_generate claims the reply by compare-and-set.
    reply.reply_generate(message_id=message_id)


@shared_task(ignore_result=True)
def reply_reap() -> None:
    reply.reply_reap()
