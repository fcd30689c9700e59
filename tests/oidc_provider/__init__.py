"""A small OpenID Connect provider for the single sign-on tests: django-oauth-toolkit's, in its own
Django project and its own PostgreSQL database, run as a subprocess (`python -m tests.oidc_provider`).
It is no part of the product."""
