"""Writes of the accounts room: every account, invite and profile change goes through here."""

import datetime as dt
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .models import Invite, Profile, SignupPolicy
from .selectors import invite_find, invite_token_hash, signup_policy_get


class SignupRefused(Exception):
    """Sign-up is not allowed; the message says why, for the person trying."""


CLOSED_MESSAGE = "Sign-up is closed on this server. Ask an administrator to create an account for you."
INVITE_ONLY_MESSAGE = "Sign-up on this server is by invitation only. Ask an administrator for an invite link."
INVITE_UNKNOWN_MESSAGE = "This invite link is not valid. Check that you copied all of it, or ask for a new one."
INVITE_USED_MESSAGE = "This invite link has already been used. Each link creates one account; ask for a new one."


def user_create(*, username: str, password: str, time_zone: str = "UTC", email: str = "", is_staff: bool = False):
    """New users get the default plan (a profile without a plan follows the default)."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username, password=password, email=email, is_staff=is_staff)
        Profile.objects.update_or_create(user=user, defaults={"time_zone": time_zone})
    return user


def signup_check(*, invite_token: str = "") -> Invite | None:
    """Whether someone may sign up now, with this invite token when the policy asks for one.
    Returns the invite to be spent (None under the open policy); raises SignupRefused."""
    policy = signup_policy_get()
    if policy == SignupPolicy.Mode.OPEN:
        return None
    if policy == SignupPolicy.Mode.CLOSED:
        raise SignupRefused(CLOSED_MESSAGE)
    if not invite_token:
        raise SignupRefused(INVITE_ONLY_MESSAGE)
    invite = invite_find(invite_token)
    if invite is None:
        raise SignupRefused(INVITE_UNKNOWN_MESSAGE)
    if invite.used_at is not None:
        raise SignupRefused(INVITE_USED_MESSAGE)
    if invite.expires_at <= timezone.now():
        expired = timezone.localtime(invite.expires_at, dt.UTC).strftime("%a %-d %b %Y %H:%M UTC")
        raise SignupRefused(f"This invite link expired on {expired}. Ask an administrator for a new one.")
    return invite


def user_signup(*, username: str, password: str, time_zone: str, email: str = "", invite_token: str = ""):
    """Create an account as the sign-up policy allows, spending the invite when one is needed."""
    invite = signup_check(invite_token=invite_token)
    with transaction.atomic():
        user = user_create(username=username, password=password, time_zone=time_zone, email=email)
        if invite is not None:
            now = timezone.now()
            # Compare-and-set: of two sign-ups racing on one link, exactly one spends it;
            # the other's account is rolled back with this transaction.
            spent = Invite.objects.filter(id=invite.id, used_at=None, expires_at__gt=now).update(used_by=user, used_at=now)
            if spent != 1:
                raise SignupRefused(INVITE_USED_MESSAGE)
    return user


def invite_issue(*, invite: Invite, created_by) -> str:
    """Save a new invite and return its token, which is stored only as a hash: show the link now."""
    token = secrets.token_urlsafe(32)
    invite.token_hash = invite_token_hash(token)
    invite.created_by = created_by
    if invite.expires_at is None:
        invite.expires_at = timezone.now() + dt.timedelta(days=settings.INVITE_DAYS)
    invite.save()
    return token


def profile_update(*, user, time_zone: str, email: str, instructions: str) -> None:
    with transaction.atomic():
        user.email = email
        user.save(update_fields=["email"])
        user.profile.time_zone = time_zone
        user.profile.instructions = instructions.strip()
        user.profile.save(update_fields=["time_zone", "instructions"])
