from django.urls import path

from . import views

# The API itself (/v1/) is served by api/server.py, outside Django's middleware (config/asgi.py).
urlpatterns = [
    path("accounts/api-keys/", views.keys_page, name="api-keys"),
    path("accounts/api-keys/<int:key_id>/revoke/", views.key_revoke, name="api-key-revoke"),
]
