"""Writes of the accounts room: every account and profile change goes through here."""

from django.contrib.auth import get_user_model
from django.db import transaction

from .models import Profile


def user_create(*, username: str, password: str, time_zone: str = "UTC", email: str = "", is_staff: bool = False):
    """New users get the default plan (a profile without a plan follows the default)."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username, password=password, email=email, is_staff=is_staff)
        Profile.objects.update_or_create(user=user, defaults={"time_zone": time_zone})
    return user


def profile_update(*, user, time_zone: str, email: str) -> None:
    with transaction.atomic():
        user.email = email
        user.save(update_fields=["email"])
        user.profile.time_zone = time_zone
        user.profile.save(update_fields=["time_zone"])
