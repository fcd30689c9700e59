from django.apps import AppConfig


class GenerationConfig(AppConfig):
    """No models: an app so that Celery finds its tasks and Django its context processor."""

    name = "generation"
