"""Conversations and messages, read only, for support.

Staff can read but never write what a user and the model said: an answer shown
under the model's name must be the model's. Deleting a conversation goes through
chat.actions.conversation_delete, as the user's own delete does: live answers are
stopped and their quota settled or refunded, in the ledger.
"""

from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from . import actions
from .models import Conversation, Message, ShareLink
from .transfer import thought_label


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "title", "model", "pinned", "archived", "updated_at")
    list_select_related = ("user", "model")
    search_fields = ("user__username", "title")
    actions = ["delete_through_the_service"]

    def get_actions(self, request: HttpRequest):
        found = super().get_actions(request)
        found.pop("delete_selected", None)  # the plain delete would skip the refunds
        return found

    def delete_model(self, request: HttpRequest, obj: Conversation) -> None:
        actions.conversation_delete(user=obj.user, conversation_id=obj.id)

    @admin.action(
        description="Delete the selected conversations (stops live answers, refunds as the user's delete does)", permissions=["delete"]
    )
    def delete_through_the_service(self, request: HttpRequest, queryset) -> None:
        chosen = list(queryset.select_related("user"))
        for conversation in chosen:
            actions.conversation_delete(user=conversation.user, conversation_id=conversation.id)
        self.message_user(request, f"Deleted {len(chosen)} conversation(s).", messages.SUCCESS)


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "conversation", "role", "model", "status", "thought", "created_at")
    list_filter = ("status", "role", "model")
    list_select_related = ("conversation", "model")

    @admin.display(description="thinking")
    def thought(self, obj: Message) -> str:
        return thought_label(obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # a message goes with its conversation, through the service


@admin.register(ShareLink)
class ShareLinkAdmin(ReadOnlyAdmin):
    """Every share link, for staff to see what is shared and end a link that should not be."""

    list_display = ("conversation", "owner", "created_at", "revoked_at", "open_link")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    list_select_related = ("conversation__user",)
    search_fields = ("conversation__user__username", "conversation__title")
    actions = ["revoke"]

    @admin.display(description="owner", ordering="conversation__user__username")
    def owner(self, obj: ShareLink) -> str:
        return obj.conversation.user.get_username()

    @admin.display(description="link")
    def open_link(self, obj: ShareLink) -> str:
        if obj.revoked_at:
            return "revoked"
        return format_html('<a href="{}" target="_blank" rel="noopener">open</a>', reverse("chat-shared", args=[obj.token]))

    def get_actions(self, request: HttpRequest):
        found = super().get_actions(request)
        found.pop("delete_selected", None)  # revoked, not deleted: the record of what was shared stays
        return found

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Revoke the selected links (their pages answer 404 from now on)", permissions=["view"])
    def revoke(self, request: HttpRequest, queryset) -> None:
        revoked = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {revoked} link(s).", messages.SUCCESS)
