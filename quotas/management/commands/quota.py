"""Look at and change one user's message quota from the command line.

    manage.py quota show alice
    manage.py quota grant alice o1-preview 20 --days 7
    manage.py quota grant alice o1-preview 20 --until 2025-01-01
    manage.py quota reset alice o1-mini
    manage.py quota set-plan alice Team
    manage.py quota check          # verify the invariants; exit 1 on any problem

Changes are recorded in the quota ledger with no actor and the note
"via manage.py quota".
"""

import datetime as dt

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from catalog.models import AIModel
from quotas.models import Plan
from quotas.selectors import plan_choice, quota_check, quota_status
from quotas.services import plan_set, quota_grant, quota_reset
from quotas.windows import format_reset

UTC = dt.UTC
NOTE = "via manage.py quota"
MAX_GRANT = 100_000
MAX_GRANT_DAYS = 3660


def _whole(value: str, what: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"{what} must be a whole number from {low:,} to {high:,}, not {value!r}.") from None
    if not low <= number <= high:
        raise CommandError(f"{what} must be from {low:,} to {high:,}, not {number:,}.")
    return number


class Command(BaseCommand):
    help = "Show, grant, reset or change the plan of one user's message quota."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="{show,grant,reset,set-plan,check}")

        sub.add_parser("check", help="Verify the quota invariants on this database; exit 1 on any problem.")

        show = sub.add_parser("show", help="Per model: used, limit, left, and when the window resets.")
        show.add_argument("username")

        grant = sub.add_parser("grant", help="Extra messages for a model, on top of the limit, until a date.")
        grant.add_argument("username")
        grant.add_argument("model", metavar="model-slug")
        grant.add_argument("messages", help=f"1 to {MAX_GRANT:,}")
        until = grant.add_mutually_exclusive_group()
        until.add_argument("--days", help="Expire this many days from now (default 7).")
        until.add_argument("--until", metavar="YYYY-MM-DD", help="Expire at 00:00 UTC on this date.")

        reset = sub.add_parser("reset", help="Close the current window: the next message opens a fresh one.")
        reset.add_argument("username")
        reset.add_argument("model", metavar="model-slug")

        set_plan = sub.add_parser("set-plan", help="Move the user to another plan.")
        set_plan.add_argument("username")
        set_plan.add_argument("plan", metavar="plan-name")

    def handle(self, *args, subcommand: str, username: str = "", **options) -> None:
        if subcommand == "check":
            problems = quota_check()
            for problem in problems:
                self.stdout.write(self.style.ERROR(problem))
            if problems:
                raise CommandError(f"{len(problems)} quota invariant(s) broken.")
            self.stdout.write(self.style.SUCCESS("Every reservation has one outcome; every counter matches its window."))
            return
        user = self._user(username)
        if subcommand == "show":
            self._show(user)
        elif subcommand == "grant":
            model = self._model(options["model"])
            messages = _whole(options["messages"], "messages", 1, MAX_GRANT)
            expires_at = self._expiry(options["days"], options["until"])
            quota_grant(user=user, model=model, messages=messages, expires_at=expires_at, note=NOTE)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Granted {user.get_username()} +{messages:,} {model.name} messages until {format_reset(expires_at, UTC)} UTC."
                )
            )
            self._show(user)
        elif subcommand == "reset":
            model = self._model(options["model"])
            quota_reset(user=user, model=model, note=NOTE)
            self.stdout.write(self.style.SUCCESS(f"Reset {user.get_username()}'s {model.name} window."))
            self._show(user)
        elif subcommand == "set-plan":
            plan = Plan.objects.filter(name__iexact=options["plan"]).first()
            if plan is None:
                names = ", ".join(Plan.objects.values_list("name", flat=True)) or "none"
                raise CommandError(f"There is no plan called {options['plan']!r}. Plans: {names}.")
            plan_set(user=user, plan=plan, note="(via manage.py quota)")
            self.stdout.write(self.style.SUCCESS(f"{user.get_username()} is now on the {plan.name} plan."))
            self._show(user)

    def _user(self, username: str):
        user = get_user_model().objects.filter(username=username).select_related("profile", "quota_plan__plan").first()
        if user is None:
            raise CommandError(f"There is no user called {username!r}.")
        return user

    def _model(self, slug: str) -> AIModel:
        model = AIModel.objects.filter(slug=slug).first()
        if model is None:
            slugs = ", ".join(AIModel.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"There is no model {slug!r}. Models: {slugs}.")
        return model

    def _expiry(self, days: str | None, until: str | None) -> dt.datetime:
        now = timezone.now()
        if until is not None:
            try:
                day = dt.date.fromisoformat(until)
            except ValueError:
                raise CommandError(f"--until must be a date like 2025-01-31, not {until!r}.") from None
            expires_at = dt.datetime.combine(day, dt.time(0), tzinfo=UTC)
            if expires_at <= now:
                raise CommandError(f"--until {until} is not in the future (it means 00:00 UTC that day).")
            if expires_at > now + dt.timedelta(days=MAX_GRANT_DAYS):
                raise CommandError("--until must be within ten years.")
            return expires_at
        return now + dt.timedelta(days=_whole(days or "7", "--days", 1, MAX_GRANT_DAYS))

    def _show(self, user) -> None:
        choice = plan_choice(user)
        profile = getattr(user, "profile", None)
        how = {"user": "", "default": " (default)", "none": ""}.get(choice.source, f" (group {choice.group})")
        self.stdout.write(
            f"{user.get_username()} · plan {choice.plan.name if choice.plan else 'none'}{how}"
            f" · time zone {profile.time_zone if profile else 'UTC'}"
        )
        rows = [("model", "used", "limit", "left", "resets at (UTC)", "rule")]
        for status in quota_status(user=user):
            if status.disabled:
                rows.append((status.model.slug, "-", "-", "-", "-", "disabled"))
                continue
            rows.append(
                (
                    status.model.slug,
                    str(status.used),
                    "unlimited" if status.limit is None else str(status.limit),
                    "-" if status.left is None else str(status.left),
                    format_reset(status.resets_at, UTC) if status.resets_at else "-",
                    status.describe,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
