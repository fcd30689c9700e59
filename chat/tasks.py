from celery import shared_task

from . import services


@shared_task(acks_late=True, ignore_result=True)
def generate_reply(message_id: int) -> None:
    # Redelivery-safe: reply_generate claims the reply by compare-and-set.
    services.reply_generate(message_id=message_id)


@shared_task(ignore_result=True)
def reap_replies() -> None:
    services.reply_reap()
