"""Staff notices (the organisation passed a spend threshold, a user reached a limit), each sent once.

The dedupe is a unique key in the database (`Notice.key`): one per month for spend, one per
window for a limit. Delivery happens after commit, by email through the configured backend and,
when QUOTA_ALERT_WEBHOOK_URL is set, as a JSON POST; a failed delivery is logged, never raised.
"""

import json
import logging
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connection, transaction

from .models import Notice

log = logging.getLogger(__name__)
WEBHOOK_TIMEOUT_SECONDS = 5

_INSERT = f"""
INSERT INTO {Notice._meta.db_table} (key, subject, created_at) VALUES (%s, %s, now())
ON CONFLICT (key) DO NOTHING RETURNING id
"""


def notice_send_once(*, key: str, subject: str, body: str) -> bool:
    """Record the notice under `key` and deliver it after commit; False if it was sent already."""
    # ON CONFLICT: of two processes noticing the same thing at once, one inserts and sends.
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, [key[:200], subject[:300]])
        inserted = cursor.fetchone() is not None
    if inserted:
        transaction.on_commit(lambda: _deliver(subject, body))
    return inserted


def _recipients() -> list[str]:
    if settings.QUOTA_ALERT_EMAILS:
        return list(settings.QUOTA_ALERT_EMAILS)
    staff = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return list(staff.values_list("email", flat=True))


def _deliver(subject: str, body: str) -> None:
    recipients = _recipients()
    if recipients:
        try:
            send_mail(subject, body, None, recipients)
        except Exception:
            log.exception("could not email a quota notice", extra={"subject": subject})
    url = settings.QUOTA_ALERT_WEBHOOK_URL
    if url:
        data = json.dumps({"text": f"{subject}\n{body}", "subject": subject, "body": body}).encode()
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS):  # noqa: S310 (a URL staff configured)
                pass
        except Exception:
            log.exception("could not post a quota notice to the webhook", extra={"subject": subject})
