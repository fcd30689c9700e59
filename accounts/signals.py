from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_save
from django.dispatch import receiver

from live.publish import event_send, user_group

from .models import Profile
from .throttle import login_failures_forgive


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def profile_for_new_user(sender, instance, created: bool, **kwargs) -> None:
    if created:
        Profile.objects.get_or_create(user=instance)


@receiver(user_logged_out)
def close_sockets_of_ended_session(sender, request, user, **kwargs) -> None:
    if user is None or request is None or not request.session.session_key:
        return
    event_send(user_group(user.id), {"type": "session.ended", "session_key": request.session.session_key})


@receiver(user_logged_in)
def forgive_own_login_failures(sender, request, user, **kwargs) -> None:
    login_failures_forgive(username=user.get_username())
