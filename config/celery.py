import logging
import logging.config
import os
import sys

from celery import Celery
from celery.signals import setup_logging, task_postrun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def log_like_the_web(loglevel: int | None = None, **kwargs) -> None:
    # Celery would replace the root handler with its own format; keep ours (config/logging.py),
    # so worker and beat lines read like the web's: time level logger [reply=<id>] message.
    # The command line's -l still sets the level.
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@task_postrun.connect
def close_db_connections(**kwargs) -> None:
    # Threads pool: each thread keeps its own connection; hand it back to the pool.
    from django.db import close_old_connections, connections

    close_old_connections()
    connections.close_all()


@worker_init.connect
def shorter_gil_switch_interval(**kwargs) -> None:
    # Hundreds of generating threads each wake per token. With the default 5 ms
    # switch interval, every GIL hand-over to the thread that reads new tasks
    # from the broker can wait 5 ms, and it needs many per task (docs/benchmarks.md,
    # "Why the code is as it is").
    sys.setswitchinterval(0.0005)
