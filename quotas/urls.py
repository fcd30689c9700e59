from django.urls import path

from . import usage

urlpatterns = [
    path("usage/", usage.usage_page, name="quotas-usage"),
    path("usage.csv", usage.usage_csv, name="quotas-usage-csv"),
]
