import os

from celery import Celery
from celery.signals import task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_postrun.connect
def close_db_connections(**kwargs) -> None:
    # Threads pool: each thread keeps its own connection; hand it back to the pool.
    from django.db import close_old_connections, connections

    close_old_connections()
    connections.close_all()
