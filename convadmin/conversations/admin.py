from django.contrib import admin

from convadmin.conversations.models import Conversation


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Read-only, mainly as the benchmark's baseline; staff use the conversations pages."""

    list_display = [
        "id",
        "provider",
        "name",
        "status",
        "external_id",
        "credential",
        "created_by",
        "created_at",
    ]
    list_filter = ["provider", "status"]
    search_fields = ["external_id", "search_text"]
    list_select_related = ["credential", "created_by"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
