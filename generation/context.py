"""What is sent to the model: earlier turns' visible text, trimmed to the window.

No offline tokenizer ships for the o200k/cl100k encodings (tiktoken downloads
its tables at run time), so tokens are estimated conservatively: English runs
at about four UTF-8 bytes per token, and we count one per three bytes plus a
per-message overhead, which overestimates ordinary text by about a third.
"""

import math

MESSAGE_OVERHEAD = 8
REQUEST_OVERHEAD = 16


class ContextTooLarge(Exception):
    pass


def tokens_estimate(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / 3) + MESSAGE_OVERHEAD


def prompt_budget(context_window: int, max_output_tokens: int) -> int:
    """Tokens left for the prompt once the model's output reserve is set aside."""
    return context_window - max_output_tokens - REQUEST_OVERHEAD


def message_fits(text: str, *, context_window: int, max_output_tokens: int) -> bool:
    return tokens_estimate(text) <= prompt_budget(context_window, max_output_tokens)


def context_trim(turns: list[dict[str, str]], *, context_window: int, max_output_tokens: int) -> list[dict[str, str]]:
    """Drop the oldest turns until prompt + output reserve fit the window.

    `turns` are {"role", "content"} dicts, oldest first, ending with the user's
    new message. Raises ContextTooLarge when even that message alone cannot fit.
    """
    budget = prompt_budget(context_window, max_output_tokens)
    sizes = [tokens_estimate(t["content"]) for t in turns]
    if not turns or sizes[-1] > budget:
        raise ContextTooLarge("This message is too long for the model's context window.")
    start, total = len(turns) - 1, sizes[-1]
    while start > 0 and total + sizes[start - 1] <= budget:
        start -= 1
        total += sizes[start]
    kept = turns[start:]
    # A conversation sent to the model starts with the user speaking.
    while kept[0]["role"] != "user":
        kept = kept[1:]
    return kept
