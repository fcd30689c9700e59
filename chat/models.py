"""Conversations and their messages. A reply's quota lives in quotas.Reservation, keyed by its id.

Messages form a tree: each points at the message it follows (`parent`). An edit
adds a sibling user message, a regenerate a sibling answer, a continuation a child
answer of the cut-off one; nothing is deleted. The branch on screen (and the only
one sent to the model) runs from the root to the conversation's `current_leaf`.
"""

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import Q

from catalog.models import AIModel

if TYPE_CHECKING:
    from quotas.selectors import Counted


class Conversation(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    model = models.ForeignKey(AIModel, on_delete=models.PROTECT, help_text="The model picked last in this chat.")
    reasoning_effort = models.CharField(max_length=16, blank=True, help_text="The reasoning effort picked last in this chat.")
    instructions = models.TextField(blank=True, help_text="Custom instructions for this chat, after the user's own.")
    pinned = models.BooleanField(default=False, help_text="Listed above the others in the sidebar.")
    archived = models.BooleanField(default=False, help_text="Hidden from the sidebar's list, under Archived.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="The last message of the branch on screen."
    )

    class Meta:
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class ShareLink(models.Model):
    """A read-only link to a conversation, for anyone who has it, until its owner revokes it."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="share_links")
    # secrets.token_urlsafe(32): 256 random bits, so a link cannot be guessed or enumerated.
    token = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One live link per conversation: sharing twice gives the same link, not a second one to forget.
            models.UniqueConstraint(fields=["conversation"], condition=Q(revoked_at__isnull=True), name="one_live_share_link"),
        ]

    def __str__(self) -> str:
        return f"Share link for conversation {self.conversation_id}"


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

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children", help_text="The message this one follows."
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    model = models.ForeignKey(AIModel, on_delete=models.PROTECT)
    text = models.TextField(blank=True)
    reasoning = models.TextField(blank=True, help_text="Reasoning summary shown to the user; never re-sent.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DONE)
    incomplete = models.BooleanField(default=False, help_text="The answer was cut off and is partial.")
    finish_reason = models.CharField(max_length=32, blank=True, help_text="The provider's: stop, length, content_filter…")
    reasoning_effort = models.CharField(max_length=16, blank=True, help_text="Of a reply: the effort asked of the model, if any.")
    error = models.CharField(max_length=500, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    thinking_ms = models.PositiveIntegerField(null=True, blank=True)
    # A claimed reply whose lease ran out belongs to a dead worker (see generation/reply.py, reply_reap).
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["conversation", "id"]),
            models.Index(fields=["model", "created_at"]),
            models.Index(fields=["status", "lease_expires_at"], name="message_live_idx", condition=Q(status__in=["pending", "streaming"])),
        ]

    # Not stored: False when the send could not enqueue the reply (the broker was down; chat.actions._enqueue).
    queued = True
    # Not stored: the ids of this message's versions (it and its siblings of its role), oldest first (chat.selectors).
    versions: list[int] | None = None
    # Not stored: the attachments, when the code that made the message has them already (chat/serializers.py).
    attachment_list: list["Attachment"] | None = None
    # Not stored: of a reply just sent, what the picker shows for its model, when its reservation said (chat/events.py).
    counted: "Counted | None" = None

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.STREAMING)


class Attachment(models.Model):
    """A file the user attached: a text file (its text goes to the model) or an image (sent as an image part).

    Uploaded first, owned by its user and linked to no message; the send that names
    it links it to its message (chat/actions.py), once. Kept in PostgreSQL, so it is
    backed up with the conversation and deleted with it.
    """

    class Kind(models.TextChoices):
        TEXT = "text"
        IMAGE = "image"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100, help_text="Found from the content, never taken from the browser.")
    size = models.PositiveIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["user", "created_at"], name="attachment_unsent_idx", condition=Q(message=None))]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="text") | Q(width__isnull=False, height__isnull=False), name="attachment_image_has_size"
            ),
        ]

    def __str__(self) -> str:
        return self.name


LIVE = (Message.Status.PENDING, Message.Status.STREAMING)
