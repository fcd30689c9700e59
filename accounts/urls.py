from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import views

# Django's own password views, with our templates and URL names.
password_change = auth_views.PasswordChangeView.as_view(
    template_name="accounts/password_change.html", success_url=reverse_lazy("accounts-password-change-done")
)
password_change_done = auth_views.PasswordChangeDoneView.as_view(template_name="accounts/password_change_done.html")
password_reset_sent = auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_sent.html")
password_reset_confirm = views.PasswordResetConfirmView.as_view(success_url=reverse_lazy("accounts-password-reset-complete"))
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(template_name="accounts/password_reset_complete.html")

urlpatterns = [
    path("signup/", views.signup, name="accounts-signup"),
    path("login/", views.LoginView.as_view(), name="accounts-login"),
    path("logout/", auth_views.LogoutView.as_view(), name="accounts-logout"),
    path("profile/", views.profile, name="accounts-profile"),
    path("password/change/", password_change, name="accounts-password-change"),
    path("password/change/done/", password_change_done, name="accounts-password-change-done"),
    path("password/reset/", views.PasswordResetView.as_view(), name="accounts-password-reset"),
    path("password/reset/sent/", password_reset_sent, name="accounts-password-reset-sent"),
    path("password/reset/<uidb64>/<token>/", password_reset_confirm, name="accounts-password-reset-confirm"),
    path("password/reset/complete/", password_reset_complete, name="accounts-password-reset-complete"),
]
