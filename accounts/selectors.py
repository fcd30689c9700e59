"""Reads of the accounts room."""

import hashlib

from django.conf import settings

from .models import Invite, SignupPolicy


def signup_policy_get() -> str:
    """open, invite or closed: what staff chose in the admin, else SIGNUP_POLICY from the environment."""
    mode = SignupPolicy.objects.filter(id=SignupPolicy.SINGLE_ID).values_list("mode", flat=True).first()
    return mode or settings.SIGNUP_POLICY


def invite_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite_find(token: str) -> Invite | None:
    """The invite a link's token belongs to. The lookup is by the token's hash, so its timing
    tells nothing about any stored token."""
    if not token:
        return None
    return Invite.objects.filter(token_hash=invite_token_hash(token)).first()
