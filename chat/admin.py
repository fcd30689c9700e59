from django.contrib import admin

from .models import AIModel, Conversation, LedgerEntry, Message, Plan, PlanLimit, QuotaGrant, QuotaOverride


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "provider_model", "context_window", "max_output_tokens", "is_reasoning", "enabled", "display_order")
    list_editable = ("enabled", "display_order")


class PlanLimitInline(admin.TabularInline):
    model = PlanLimit
    extra = 0


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "is_default", "calendar_time_zone")
    inlines = [PlanLimitInline]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "title", "model", "updated_at")
    raw_id_fields = ("user",)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "model", "status", "quota", "created_at")
    list_filter = ("status", "role", "model")
    raw_id_fields = ("conversation",)


admin.site.register(QuotaOverride)
admin.site.register(QuotaGrant)
admin.site.register(LedgerEntry)
