from django.conf import settings
from django.db import models
from django.db.models import F, Q


class AIModel(models.Model):
    """A model users can pick; its o1-era quirks are flags, not special cases."""

    slug = models.SlugField(max_length=64, unique=True, help_text="What users and the API of this app call it.")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=200, blank=True)
    provider_model = models.CharField(max_length=100, help_text="The model id sent to the provider.")
    context_window = models.PositiveIntegerField()
    max_output_tokens = models.PositiveIntegerField()
    supports_streaming = models.BooleanField(default=True)
    supports_system_message = models.BooleanField(default=False)
    uses_max_completion_tokens = models.BooleanField(
        default=True, help_text="Send max_completion_tokens (reasoning models) instead of max_tokens."
    )
    supports_temperature = models.BooleanField(default=False)
    is_reasoning = models.BooleanField(default=True)
    reasoning_efforts = models.CharField(
        max_length=100, blank=True, help_text="Comma-separated reasoning_effort levels, empty if not supported."
    )
    enabled = models.BooleanField(default=True)
    display_order = models.IntegerField(default=0)
    rpm_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Provider requests per minute for the whole organisation (your usage tier)."
    )
    tpm_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Provider tokens per minute for the whole organisation (your usage tier)."
    )

    class Meta:
        ordering = ["display_order", "name"]
        verbose_name = "AI model"
        constraints = [
            models.CheckConstraint(
                condition=Q(max_output_tokens__lt=F("context_window")), name="aimodel_output_fits_window"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Conversation(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    model = models.ForeignKey(AIModel, on_delete=models.PROTECT, help_text="The model picked last in this chat.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        DONE = "done"
        FAILED = "failed"
        STOPPED = "stopped"

    class Quota(models.TextChoices):
        NONE = "none", "not counted"
        RESERVED = "reserved"
        SETTLED = "settled"
        REFUNDED = "refunded"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    model = models.ForeignKey(AIModel, on_delete=models.PROTECT)
    text = models.TextField(blank=True)
    reasoning = models.TextField(blank=True, help_text="Reasoning summary shown to the user; never re-sent.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DONE)
    incomplete = models.BooleanField(default=False, help_text="The answer was cut off and is partial.")
    replaced = models.BooleanField(default=False, help_text="Regenerated or edited away; kept for usage records.")
    error = models.CharField(max_length=500, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    thinking_ms = models.PositiveIntegerField(null=True, blank=True)
    # Quota bookkeeping for assistant replies (see chat/quotas.py).
    quota = models.CharField(max_length=16, choices=Quota.choices, default=Quota.NONE)
    quota_window_start = models.DateTimeField(null=True, blank=True)
    # A claimed reply whose lease ran out belongs to a dead worker (see reply_reap).
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["conversation", "id"]),
            models.Index(fields=["model", "created_at"]),
            models.Index(fields=["status", "lease_expires_at"], name="message_live_idx",
                         condition=Q(status__in=["pending", "streaming"])),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.STREAMING)


class WindowKind(models.TextChoices):
    ANCHORED = "anchored", "anchored (opens at the first message)"
    CALENDAR = "calendar", "calendar (day / week / month boundaries)"
    ROLLING = "rolling", "rolling (the last N hours or days)"


class WindowUnit(models.TextChoices):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Limit(models.Model):
    """A number of messages for a model per window; blank messages means unlimited."""

    model = models.ForeignKey(AIModel, on_delete=models.CASCADE)
    messages = models.PositiveIntegerField(null=True, blank=True, help_text="Blank for unlimited.")
    window_kind = models.CharField(max_length=16, choices=WindowKind.choices, default=WindowKind.ANCHORED)
    window_length = models.PositiveIntegerField(default=1)
    window_unit = models.CharField(max_length=8, choices=WindowUnit.choices, default=WindowUnit.DAY)
    disabled = models.BooleanField(default=False, help_text="Refuse this model entirely.")

    class Meta:
        abstract = True

    def describe(self) -> str:
        if self.disabled:
            return "disabled"
        if self.messages is None:
            return "unlimited"
        unit = self.window_unit + ("s" if self.window_length != 1 else "")
        return f"{self.messages} / {self.window_length} {unit} {self.window_kind}"


def limit_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.CheckConstraint(condition=Q(window_length__gte=1, window_length__lte=366), name=f"{prefix}_window_sane"),
        models.CheckConstraint(condition=Q(messages__isnull=True) | Q(messages__lte=1_000_000), name=f"{prefix}_messages_sane"),
        # Calendar windows are one day, one week or one month; months have no fixed hour count.
        models.CheckConstraint(
            condition=~Q(window_kind="calendar") | Q(window_length=1, window_unit__in=["day", "week", "month"]),
            name=f"{prefix}_calendar_shape",
        ),
        models.CheckConstraint(
            condition=Q(window_kind="calendar") | Q(window_unit__in=["hour", "day", "week"]),
            name=f"{prefix}_fixed_length_unit",
        ),
    ]


class Plan(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=200, blank=True)
    is_default = models.BooleanField(default=False, help_text="New users get this plan.")
    calendar_time_zone = models.CharField(max_length=64, default="UTC", help_text="Where calendar windows turn over.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_plan"),
        ]

    def __str__(self) -> str:
        return self.name


class PlanLimit(Limit):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="limits")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "model"], name="one_limit_per_plan_model"),
            *limit_constraints("planlimit"),
        ]

    def __str__(self) -> str:
        return f"{self.plan}: {self.model} {self.describe()}"


class QuotaOverride(Limit):
    """Replaces the plan's limit for one user and one model."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_overrides")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "model"], name="one_override_per_user_model"),
            *limit_constraints("override"),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.model} {self.describe()}"


class QuotaGrant(models.Model):
    """Extra messages on top of the limit in every window, until it expires."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_grants")
    model = models.ForeignKey(AIModel, on_delete=models.CASCADE)
    messages = models.PositiveIntegerField()
    expires_at = models.DateTimeField()
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(messages__gte=1, messages__lte=100_000), name="grant_messages_sane"),
        ]

    def __str__(self) -> str:
        return f"+{self.messages} {self.model} for {self.user} until {self.expires_at:%Y-%m-%d}"


class QuotaCounter(models.Model):
    """One row per user and model: the lock every reservation takes, and the open window."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    used = models.IntegerField(default=0)
    reset_at = models.DateTimeField(null=True, blank=True, help_text="When an admin last reset this window.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "model"], name="one_counter_per_user_model"),
            # A refund can never take the count below zero: a double refund fails here.
            models.CheckConstraint(condition=Q(used__gte=0), name="counter_used_not_negative"),
        ]


class LedgerEntry(models.Model):
    """Append-only audit of every quota movement."""

    class Kind(models.TextChoices):
        RESERVE = "reserve"
        SETTLE = "settle"
        REFUND = "refund"
        GRANT = "grant"
        OVERRIDE = "override"
        RESET = "reset"
        PLAN = "plan"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_ledger")
    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, null=True, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    delta = models.IntegerField(default=0, help_text="+1 reserve, -1 refund, 0 otherwise.")
    message = models.ForeignKey(Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    note = models.CharField(max_length=300, blank=True)
    # Settle entries carry the reply's token usage, so usage survives deleted chats.
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["-id"]
        constraints = [
            # A reply is reserved once and then either settled or refunded, once.
            models.UniqueConstraint(fields=["message"], condition=Q(kind="reserve"), name="ledger_one_reserve"),
            models.UniqueConstraint(
                fields=["message"], condition=Q(kind__in=["settle", "refund"]), name="ledger_one_outcome"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.delta:+d} {self.model} for {self.user}"
