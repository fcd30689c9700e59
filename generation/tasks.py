"""Celery tasks: thin, each calls the service of the same name."""

from celery import shared_task

from . import reply


@shared_task(acks_late=True, ignore_result=True)
def reply_generate(message_id: int) -> None:
    # Redelivery-safe: reply.reply_generate claims the reply by compare-and-set.
    reply.reply_generate(message_id=message_id)


@shared_task(ignore_result=True)
def reply_reap() -> None:
    reply.reply_reap()
