"""Worker processes for the quota race test: each fires its share of sends at once."""

import os
import threading


def race(env: dict[str, str], tasks, results, start) -> None:
    """Loop: take (user_id, model, sends, conversation_id or None for new chats), fire them from threads
    together, report outcomes."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connections

    from chat import actions

    while (task := tasks.get()) is not None:
        user_id, model, sends, conversation_id = task
        user = get_user_model().objects.get(id=user_id)
        outcomes: list[str] = []
        gate = threading.Barrier(sends)

        def one() -> None:
            gate.wait()
            try:
                actions.message_send(user=user, conversation_id=conversation_id, model_slug=model, text="race")
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


def race_api_and_socket(tasks, results, start) -> None:
    """Loop: take (base URL, API key, session cookie, model, sends); fire half of them through the
    `openai` SDK and half through the chat's WebSocket, all at once; report each outcome."""
    import itertools
    import json

    import openai
    from websockets.sync.client import connect

    while (task := tasks.get()) is not None:
        url, token, cookie, model, sends = task
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=60)
        sockets = [
            connect(url.replace("http", "ws") + "/ws/chat/", additional_headers={"Cookie": cookie, "Origin": url})
            for _ in range(sends // 2)
        ]
        outcomes: list[str] = []
        gate = threading.Barrier(sends)
        ids = itertools.count()

        def through_api() -> None:
            gate.wait()
            try:
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": "race [sim:tokens=3]"}])
                outcomes.append("admitted")
            except openai.APIStatusError as exc:
                outcomes.append(str(exc.code))

        def through_socket(socket) -> None:
            client_id = f"race-{next(ids)}"
            gate.wait()
            socket.send(json.dumps({"type": "send", "conversation_id": None, "model": model, "text": "race", "client_id": client_id}))
            while (frame := json.loads(socket.recv(timeout=60))).get("client_id") != client_id:
                pass  # quota and sidebar pushes from the other sends
            outcomes.append("admitted" if frame["type"] == "sent" else frame["code"])

        threads = [threading.Thread(target=through_api) for _ in range(sends - len(sockets))]
        threads += [threading.Thread(target=through_socket, args=(s,)) for s in sockets]
        start.wait()  # every process is ready: go
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for socket in sockets:
            socket.close()
        results.put(outcomes)
