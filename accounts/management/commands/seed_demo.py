import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.services import user_create

DEMO = ("demo", os.environ.get("DEMO_PASSWORD", "demo-pass-2024"))
STAFF = ("admin", os.environ.get("ADMIN_PASSWORD", "admin-pass-2024"))


class Command(BaseCommand):
    help = "Create a demo user and a staff user (once) and print their logins."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        for (username, password), staff in ((DEMO, False), (STAFF, True)):
            if not User.objects.filter(username=username).exists():
                user = user_create(username=username, password=password, is_staff=staff)
                if staff:
                    user.is_superuser = True
                    user.save(update_fields=["is_superuser"])
            role = "staff" if staff else "user"
            self.stdout.write(f"  {role:5} login: {username} / {password}")
