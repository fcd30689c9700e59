"""OpenAI-compatible model simulator (raw ASGI, no Django).

Run with ``python -m simulator --port 8765``; see ``app.py`` for the
``[sim:...]`` directives that drive faults and pacing from the prompt text.
"""

from simulator.app import CONFIG, app

__all__ = ["CONFIG", "app"]
