"""Who may send how many messages to which model, and the record of every count.

The tables of the models that moved here from the chat app keep their names
(`db_table`), so existing databases migrated without copying data.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from catalog.models import AIModel


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
    """A number of messages for a model per window, or explicitly unlimited, or disabled.

    Fail closed: a model with no limit for the user is refused, and a limit is
    unlimited only when `unlimited` is ticked; a blank number alone is not.
    """

    model = models.ForeignKey(AIModel, on_delete=models.CASCADE)
    messages = models.PositiveIntegerField(null=True, blank=True, help_text="Messages per window.")
    unlimited = models.BooleanField(default=False, help_text="No limit at all for this model: an explicit choice.")
    window_kind = models.CharField(max_length=16, choices=WindowKind.choices, default=WindowKind.ANCHORED)
    window_length = models.PositiveIntegerField(default=1)
    window_unit = models.CharField(max_length=8, choices=WindowUnit.choices, default=WindowUnit.DAY)
    disabled = models.BooleanField(default=False, help_text="Refuse this model entirely.")

    class Meta:
        abstract = True

    def describe(self) -> str:
        if self.disabled:
            return "disabled"
        if self.unlimited:
            return "unlimited"
        unit = self.window_unit + ("s" if self.window_length != 1 else "")
        return f"{self.messages} / {self.window_length} {unit} {self.window_kind}"


def limit_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.CheckConstraint(condition=Q(window_length__gte=1, window_length__lte=366), name=f"{prefix}_window_sane"),
        models.CheckConstraint(condition=Q(messages__isnull=True) | Q(messages__lte=1_000_000), name=f"{prefix}_messages_sane"),
        # A number, or unlimited ticked, or disabled: a blank number never means "unlimited" by itself.
        models.CheckConstraint(condition=Q(messages__isnull=False) | Q(unlimited=True) | Q(disabled=True), name=f"{prefix}_limit_explicit"),
        *window_constraints(prefix),
    ]


def window_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
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
    api_access = models.BooleanField(
        default=False, help_text="Members may create personal API keys and use the OpenAI-compatible API (/v1/), under the same limits."
    )
    reasoning_efforts = models.CharField(
        max_length=100,
        blank=True,
        default="low,medium,high",
        help_text="Comma-separated reasoning efforts this plan's users may pick, of those a model accepts. "
        "Empty: none, so models that take an effort are refused.",
    )

    class Meta:
        db_table = "chat_plan"
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_plan"),
        ]

    def __str__(self) -> str:
        return self.name

    def validate_constraints(self, exclude=None) -> None:
        # Ticking "default" on a plan moves the default to it in one transaction (PlanAdmin.save_model);
        # the one_default_plan constraint stays the backstop in the database.
        super().validate_constraints(exclude={*(exclude or ()), "is_default"})


class UserPlan(models.Model):
    """The plan a user is on; a user without one follows the default plan."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_plan")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="members")

    def __str__(self) -> str:
        return f"{self.user} on {self.plan}"


class PlanLimit(Limit):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="limits")

    class Meta:
        db_table = "chat_planlimit"
        constraints = [
            models.UniqueConstraint(fields=["plan", "model"], name="one_limit_per_plan_model"),
            *limit_constraints("planlimit"),
        ]

    def __str__(self) -> str:
        return f"{self.plan}: {self.model} {self.describe()}"


class QuotaOverride(Limit):
    """Replaces the plan's limit for one user and one model."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_overrides")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "chat_quotaoverride"
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
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "chat_quotagrant"
        constraints = [
            models.CheckConstraint(condition=Q(messages__gte=1, messages__lte=100_000), name="grant_messages_sane"),
        ]

    def __str__(self) -> str:
        return f"+{self.messages} {self.model} for {self.user} until {self.expires_at:%Y-%m-%d}"


class BudgetKind(models.TextChoices):
    TOKENS = "tokens", "tokens (prompt + completion, reasoning included)"
    DOLLARS = "dollars", "US dollars (at the catalog's prices)"


class Budget(models.Model):
    """Tokens or dollars per window across all models, beside the message limits: a send must pass both."""

    kind = models.CharField(max_length=8, choices=BudgetKind.choices, default=BudgetKind.DOLLARS)
    amount = models.DecimalField(max_digits=14, decimal_places=2, help_text="Tokens, or US dollars, per window.")
    window_kind = models.CharField(max_length=16, choices=WindowKind.choices, default=WindowKind.CALENDAR)
    window_length = models.PositiveIntegerField(default=1)
    window_unit = models.CharField(max_length=8, choices=WindowUnit.choices, default=WindowUnit.MONTH)

    class Meta:
        abstract = True

    @property
    def units(self) -> int:
        """The amount in what the counters hold: tokens, or micro-dollars."""
        return int(self.amount) if self.kind == BudgetKind.TOKENS else int(self.amount * 1_000_000)

    def describe(self) -> str:
        unit = self.window_unit + ("s" if self.window_length != 1 else "")
        amount = f"{int(self.amount):,} tokens" if self.kind == BudgetKind.TOKENS else f"${self.amount:,.2f}"
        return f"{amount} / {self.window_length} {unit} {self.window_kind}"


def budget_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.CheckConstraint(condition=Q(window_length__gte=1, window_length__lte=366), name=f"{prefix}_window_sane"),
        models.CheckConstraint(condition=Q(amount__gte=0, amount__lte=1_000_000_000), name=f"{prefix}_amount_sane"),
        *window_constraints(prefix),
    ]


class PlanBudget(Budget):
    plan = models.OneToOneField(Plan, on_delete=models.CASCADE, related_name="budget")

    class Meta:
        constraints = budget_constraints("planbudget")

    def __str__(self) -> str:
        return f"{self.plan}: {self.describe()}"


class BudgetOverride(Budget):
    """Replaces the plan's budget for one user; `unlimited` lifts it."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget_override")
    unlimited = models.BooleanField(default=False, help_text="No budget for this user, whatever the plan says.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = budget_constraints("budgetoverride")

    def __str__(self) -> str:
        return f"{self.user}: {'no budget' if self.unlimited else self.describe()}"


class BudgetCounter(models.Model):
    """One row per user: the lock every budgeted reservation takes, and the open window's spend.

    Holds both tokens and micro-dollars (in-flight reservations at their worst case, settled
    answers at their actual use), so changing a budget's kind mid-window needs no recount.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    tokens = models.BigIntegerField(default=0)
    micros = models.BigIntegerField(default=0)
    reset_at = models.DateTimeField(null=True, blank=True)
    resets = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # A refund or settle can never take the spend below zero: a double refund fails here.
            models.CheckConstraint(condition=Q(tokens__gte=0, micros__gte=0), name="budget_counter_not_negative"),
        ]


class Notice(models.Model):
    """A staff notification sent once: the unique key is the dedupe (one per window, per month…)."""

    key = models.CharField(max_length=200, unique=True)
    subject = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.subject


class QuotaCounter(models.Model):
    """One row per user and model: the lock every reservation takes, and the open window."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    used = models.IntegerField(default=0)
    reset_at = models.DateTimeField(null=True, blank=True, help_text="When an admin last reset this window.")
    resets = models.PositiveIntegerField(default=0, db_default=0, help_text="How many times an admin reset this window.")

    class Meta:
        db_table = "chat_quotacounter"
        constraints = [
            models.UniqueConstraint(fields=["user", "model"], name="one_counter_per_user_model"),
            # A refund can never take the count below zero: a double refund fails here.
            models.CheckConstraint(condition=Q(used__gte=0), name="counter_used_not_negative"),
        ]


class Reservation(models.Model):
    """One counted message: reserved with the send, then settled or refunded, exactly once.

    Keyed by the reply's id without a foreign key: the count outlives a deleted
    conversation, so deleting a chat never gives a message back by accident.
    """

    class State(models.TextChoices):
        RESERVED = "reserved"
        SETTLED = "settled"
        REFUNDED = "refunded"

    reply_id = models.BigIntegerField(unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.RESERVED)
    # The anchored or calendar window it was counted in; null for rolling and unlimited rules.
    window_start = models.DateTimeField(null=True, blank=True)
    # The counter's `resets` when this was counted: a refund after a later reset gives nothing back.
    counter_resets = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    # Budget: held at the worst case while reserved, the actual use once settled, 0 once refunded.
    tokens = models.BigIntegerField(default=0, db_default=0)
    micros = models.BigIntegerField(default=0, db_default=0)
    # The anchored or calendar budget window it was held in (like window_start / counter_resets).
    budget_window_start = models.DateTimeField(null=True, blank=True)
    budget_resets = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            # Rolling windows count the user's counted reservations of one model since a moment.
            models.Index(
                fields=["user", "model", "created_at"], name="reservation_counted_idx", condition=Q(state__in=["reserved", "settled"])
            ),
        ]

    def __str__(self) -> str:
        return f"reply #{self.reply_id}: {self.state}"


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
        BUDGET = "budget"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_ledger")
    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, null=True, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    delta = models.IntegerField(default=0, help_text="+1 reserve, -1 refund, 0 otherwise.")
    # The reply counted (a chat message id). No foreign key: the audit outlives deleted chats.
    reply_id = models.BigIntegerField(null=True, blank=True, db_index=True, db_column="message_id")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    note = models.CharField(max_length=300, blank=True)
    # Settle entries carry the reply's token usage, so usage survives deleted chats.
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0, db_default=0, help_text="Of the prompt, served from the provider's cache.")
    # Settle: what the answer cost at the price in force when it was sent; reserve: the worst case held.
    cost_micros = models.BigIntegerField(default=0, db_default=0, help_text="US$ millionths.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "chat_ledgerentry"
        verbose_name_plural = "ledger entries"
        ordering = ["-id"]
        constraints = [
            # A reply is reserved once and then either settled or refunded, once.
            models.UniqueConstraint(fields=["reply_id"], condition=Q(kind="reserve"), name="ledger_one_reserve"),
            models.UniqueConstraint(fields=["reply_id"], condition=Q(kind__in=["settle", "refund"]), name="ledger_one_outcome"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.delta:+d} {self.model} for {self.user}"
