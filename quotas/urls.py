from django.urls import path

from . import usage, views

urlpatterns = [
    path("quota/", views.quota_page, name="quotas-mine"),
    path("usage/", usage.usage_page, name="quotas-usage"),
    path("usage.csv", usage.usage_csv, name="quotas-usage-csv"),
]
