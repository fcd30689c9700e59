from django.contrib import admin
from django.urls import include, path

from accounts.views import admin_login
from config.health import health

urlpatterns = [
    path("healthz", health, name="health"),
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    path("", include("api.urls")),
    path("accounts/", include("accounts.urls")),
    path("", include("quotas.urls")),
    path("", include("chat.urls")),
]
