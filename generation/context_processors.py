from django.conf import settings


def provider(request) -> dict:
    return {"using_simulator": settings.USING_SIMULATOR}


def staff_alerts(request) -> dict:
    """The provider alert, on admin pages for staff only (it costs a Redis read)."""
    if not request.path.startswith("/admin/") or not getattr(request.user, "is_staff", False):
        return {}
    from .alerts import provider_alert

    return {"provider_alert": provider_alert()}
