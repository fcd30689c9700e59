from django.urls import path

from . import views

urlpatterns = [
    path("", views.chat_page, name="chat-home"),
    path("c/<int:conversation_id>/", views.chat_page, name="chat-conversation"),
    path("api/conversations/", views.conversation_search, name="chat-search"),
    path("api/conversations/<int:conversation_id>/rename/", views.conversation_rename, name="chat-rename"),
    path("api/conversations/<int:conversation_id>/instructions/", views.conversation_instructions, name="chat-instructions"),
    path("api/conversations/<int:conversation_id>/delete/", views.conversation_delete, name="chat-delete"),
    path("api/conversations/<int:conversation_id>/pin/", views.conversation_pin, name="chat-pin"),
    path("api/conversations/<int:conversation_id>/archive/", views.conversation_archive, name="chat-archive"),
    path("api/conversations/<int:conversation_id>/share/", views.conversation_share, name="chat-share"),
    path("api/conversations/<int:conversation_id>/share/revoke/", views.conversation_unshare, name="chat-unshare"),
    path("api/conversations/<int:conversation_id>/export.md", views.conversation_export_markdown, name="chat-export-markdown"),
    path("api/conversations/<int:conversation_id>/export.json", views.conversation_export_json, name="chat-export-json"),
    path("api/conversations/import/", views.conversation_import, name="chat-import"),
    path("share/<str:token>/", views.shared_page, name="chat-shared"),
    path("api/quota/", views.quota, name="chat-quota"),
    path("api/attachments/", views.attachment_upload, name="chat-attachment-upload"),
    path("api/attachments/<int:attachment_id>/remove/", views.attachment_remove, name="chat-attachment-remove"),
    path("attachments/<int:attachment_id>/", views.attachment_download, name="chat-attachment"),
]
