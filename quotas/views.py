"""The user's own quota page: which plan applies and why, and per model what is left."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .selectors import plan_choice, quota_status, user_time_zone


@login_required
@require_GET
def quota_page(request: HttpRequest) -> HttpResponse:
    tz = user_time_zone(request.user)
    rows = [status.as_json(tz) for status in quota_status(user=request.user)]
    return render(request, "quotas/mine.html", {"choice": plan_choice(request.user), "rows": rows})
