import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.services import user_create

DEMO = ("demo", os.environ.get("DEMO_PASSWORD", "demo-pass-2024"))
STAFF = ("admin", os.environ.get("ADMIN_PASSWORD", "admin-pass-2024"))


class Command(BaseCommand):
    help = "Demo mode only: create a demo user and a staff user with known passwords (once) and print their logins."

    def handle(self, *args, **options) -> None:
        # Known passwords on a server anyone can reach would give it away; bin/run calls this only in demo mode.
        if not settings.DEMO_MODE:
            raise CommandError(
                "seed_demo creates accounts with known passwords, so it runs only in demo mode "
                "(DEBUG=true and no OPENAI_API_KEY). Create the first admin with `python manage.py createsuperuser`."
            )
        User = get_user_model()
        self.stdout.write("  Demo accounts (demo mode only; the passwords are public, never use them on a real server):")
        for (username, password), staff in ((DEMO, False), (STAFF, True)):
            if not User.objects.filter(username=username).exists():
                user = user_create(username=username, password=password, is_staff=staff)
                if staff:
                    user.is_superuser = True
                    user.save(update_fields=["is_superuser"])
            role = "staff" if staff else "user"
            self.stdout.write(f"    demo {role:5} login: {username} / {password}")
