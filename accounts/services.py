from django.contrib.auth import get_user_model
from django.db import transaction

from .models import Profile


def user_create(*, username: str, password: str, time_zone: str = "UTC", is_staff: bool = False):
    """New users get the default plan (a profile without a plan follows the default)."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username, password=password, is_staff=is_staff)
        Profile.objects.update_or_create(user=user, defaults={"time_zone": time_zone})
    return user
