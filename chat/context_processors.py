from django.conf import settings


def provider(request) -> dict:
    return {"using_simulator": settings.USING_SIMULATOR}
