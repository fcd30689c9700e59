from django.urls import path

from . import views

urlpatterns = [
    path("", views.chat_page, name="chat-home"),
    path("c/<int:conversation_id>/", views.chat_page, name="chat-conversation"),
    path("api/conversations/", views.conversation_search, name="chat-search"),
    path("api/conversations/<int:conversation_id>/rename/", views.conversation_rename, name="chat-rename"),
    path("api/conversations/<int:conversation_id>/instructions/", views.conversation_instructions, name="chat-instructions"),
    path("api/conversations/<int:conversation_id>/delete/", views.conversation_delete, name="chat-delete"),
    path("api/quota/", views.quota, name="chat-quota"),
]
