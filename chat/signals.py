"""A user deactivated, or whose password changed, loses their open sockets at once."""

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from live.publish import event_send, user_group

WATCHED = {"is_active", "password"}


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def note_sign_out(sender, instance, update_fields=None, **kwargs) -> None:
    if instance.pk is None or (update_fields is not None and not WATCHED & set(update_fields)):
        return
    before = sender.objects.filter(pk=instance.pk).values("is_active", "password").first()
    instance._sockets_end = bool(before) and ((before["is_active"] and not instance.is_active) or before["password"] != instance.password)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def end_sockets(sender, instance, **kwargs) -> None:
    if getattr(instance, "_sockets_end", False):
        instance._sockets_end = False
        # Every socket of the user closes (consumers.session_ended); a send that races this is refused
        # anyway, since chat.actions checks the user is active with the password the socket opened with.
        transaction.on_commit(lambda: event_send(user_group(instance.pk), {"type": "session.ended", "session_key": None}))
