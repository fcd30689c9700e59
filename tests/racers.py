"""Worker processes for the quota race test: each fires its share of sends at once."""

import os
import threading


def race(env: dict[str, str], tasks, results, start) -> None:
    """Loop: take (user_id, model, sends), fire them from threads together, report outcomes."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connections

    from chat import actions

    while (task := tasks.get()) is not None:
        user_id, model, sends = task
        user = get_user_model().objects.get(id=user_id)
        outcomes: list[str] = []
        gate = threading.Barrier(sends)

        def one() -> None:
            gate.wait()
            try:
                actions.message_send(user=user, conversation_id=None, model_slug=model, text="race")
                outcomes.append("admitted")
            except actions.ActionRefused as exc:
                outcomes.append(exc.code)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=one) for _ in range(sends)]
        start.wait()  # every process is ready: go
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results.put(outcomes)
