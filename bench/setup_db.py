"""Bench users and their logged-in sessions, made through the app's own code.

Run with DATABASE_URL pointing at the (freshly migrated) bench database:

    python bench/setup_db.py --stream-users 500 --quota-users 200 --out users.json

The Responses API model the streaming figure also uses (o4-mini) is enabled; the catalog ships it disabled.
Streaming users get a plan whose limits are all explicitly unlimited, so quotas never refuse a streaming
figure's sends; quota users keep the seeded default plan (o1-mini: 50 a day),
so the quota figure takes the real row-locking path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream-users", type=int, required=True)
    parser.add_argument("--quota-users", type=int, required=True)
    parser.add_argument("--responses-model", default="o4-mini", help="a Responses API model to enable")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    # Only this setup process: hashing 700 passwords with PBKDF2 would take minutes,
    # and nothing in the benchmark logs in with a password (sessions are made below).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.services import user_create
    from catalog.models import AIModel
    from quotas.models import Plan, PlanLimit, UserPlan

    started = time.monotonic()
    # The Responses API figure streams through one of the catalog's Responses models, which ship disabled.
    AIModel.objects.filter(slug=args.responses_model).update(enabled=True)
    unlimited = Plan.objects.create(
        name="Bench: unlimited", is_default=False, description="No limits: streaming benchmarks must not be refused by quota."
    )
    PlanLimit.objects.bulk_create([PlanLimit(plan=unlimited, model=m, unlimited=True) for m in AIModel.objects.all()])

    def make(prefix: str, n: int) -> list:
        return [user_create(username=f"{prefix}{i:04d}", password="bench-pass-123456") for i in range(n)]

    stream_users = make("bench-stream-", args.stream_users)
    quota_users = make("bench-quota-", args.quota_users)
    UserPlan.objects.bulk_create([UserPlan(user=u, plan=unlimited) for u in stream_users])

    def session_for(user) -> str:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        return session.session_key

    out = {
        "cookie_name": settings.SESSION_COOKIE_NAME,
        "stream_users": [{"id": u.id, "session": session_for(u)} for u in stream_users],
        "quota_users": [u.id for u in quota_users],
        "seconds": time.monotonic() - started,
    }
    Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
