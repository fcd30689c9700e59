import logging
import logging.config
import os
import sys
import threading

from celery import Celery
from celery.signals import setup_logging, task_postrun, worker_init, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

log = logging.getLogger(__name__)


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


@worker_init.connect
def tokenizer_warm(**kwargs) -> None:
    # Every reply counts its context's tokens; without this the first burst after a start waits for the table.
    from catalog import tokens

    tokens.warm()


class Heartbeat(threading.Thread):
    """Tells the health endpoint (config/health.py) that this worker is consuming its queues."""

    def __init__(self, worker: str, queues: list[str]):
        super().__init__(name="heartbeat", daemon=True)
        self.worker, self.queues = worker, queues
        self.stopping = threading.Event()

    def run(self) -> None:
        from config.health import HEARTBEAT_SECONDS, heartbeat_write

        failing = False
        while True:
            try:
                heartbeat_write(worker=self.worker, queues=self.queues)
                failing = False
            except Exception as exc:
                if not failing:  # once per outage, not every few seconds
                    log.warning("heartbeat not written: %r", exc)
                failing = True
            if self.stopping.wait(HEARTBEAT_SECONDS):
                return

    def stop(self) -> None:
        from config.health import heartbeat_remove

        self.stopping.set()
        self.join(5)
        try:
            heartbeat_remove(worker=self.worker, queues=self.queues)
        except Exception as exc:
            log.warning("heartbeat not removed: %r", exc)


_heartbeat: Heartbeat | None = None


@worker_ready.connect
def heartbeat_start(sender, **kwargs) -> None:
    global _heartbeat
    _heartbeat = Heartbeat(sender.hostname, list(sender.app.amqp.queues.consume_from))
    _heartbeat.start()


@worker_shutdown.connect
def heartbeat_stop(**kwargs) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
