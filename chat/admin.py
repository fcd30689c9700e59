"""Conversations and messages, for support."""

from django.contrib import admin

from .models import Conversation, Message


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "title", "model", "updated_at")
    list_select_related = ("user", "model")
    search_fields = ("user__username", "title")
    raw_id_fields = ("user",)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "model", "status", "created_at")
    list_filter = ("status", "role", "model")
    list_select_related = ("conversation", "model")
    raw_id_fields = ("conversation",)
