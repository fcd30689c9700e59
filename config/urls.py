from django.contrib import admin
from django.urls import include, path

from config.health import health

urlpatterns = [
    path("healthz", health, name="health"),
    path("admin/", admin.site.urls),
    path("", include("api.urls")),
    path("accounts/", include("accounts.urls")),
    path("", include("quotas.urls")),
    path("", include("chat.urls")),
]
