import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from catalog.models import AIModel

INSTRUCTIONS_MAX_CHARS = 4000


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a time zone we know.")


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    instructions = models.TextField(
        blank=True,
        max_length=INSTRUCTIONS_MAX_CHARS,
        help_text="Custom instructions sent with every chat: how you would like the model to answer.",
    )
    # A new chat starts on it (unless it is at its limit); set by every send (chat.actions).
    last_model = models.ForeignKey(AIModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return f"Profile of {self.user}"


class SignupPolicy(models.Model):
    """Who may create an account: one row, edited by staff in the admin.
    Until staff save it, SIGNUP_POLICY from the environment applies (accounts.selectors)."""

    class Mode(models.TextChoices):
        OPEN = "open", "Open: anyone who can reach the site may sign up"
        INVITE = "invite", "Invite only: single-use links made by staff (Accounts → Invites)"
        CLOSED = "closed", "Closed: no new accounts"

    SINGLE_ID = 1

    mode = models.CharField(max_length=8, choices=Mode.choices)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "sign-up policy"
        verbose_name_plural = "sign-up policy"
        constraints = [
            # One policy for the site: a second row could disagree with the first.
            models.CheckConstraint(condition=models.Q(id=1), name="signup_policy_single_row"),
            models.CheckConstraint(condition=models.Q(mode__in=["open", "invite", "closed"]), name="signup_policy_mode_known"),
        ]

    def save(self, *args, **kwargs) -> None:
        self.pk = self.SINGLE_ID
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"Sign-up: {self.get_mode_display()}"


class Invite(models.Model):
    """A single-use sign-up link. Only the SHA-256 of its token is stored: a copy of the
    database does not let anyone sign up, and staff see the link once, when they make it."""

    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for, e.g. a name or an email address.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, editable=False, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="The link stops working at this time. Set it to now to revoke an unused link.")
    used_by = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False, related_name="invite"
    )
    used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # used_by is cleared if that user is deleted; used_at keeps the link spent.
            models.CheckConstraint(
                condition=models.Q(used_by__isnull=True) | models.Q(used_at__isnull=False), name="invite_used_by_has_used_at"
            ),
        ]

    def __str__(self) -> str:
        return f"Invite {self.note}" if self.note else f"Invite #{self.pk}"
