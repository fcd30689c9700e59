"""What is sent to the model: earlier turns' visible text, trimmed to the window.

Tokens are counted with the model's tokenizer where the catalog names one
(catalog/tokens.py), else estimated conservatively. A turn is a dict with
"role" and "content" (text, attached files' text included: `with_files`), and
optionally "images": the turn's images, each counted by its size (`image_tokens`).
Instructions are always kept and counted first; the oldest turns go before them.
"""

import math
from typing import Any

from . import tokens

Turn = dict[str, Any]

# Per message: role and separators (3–4 with o200k_base); per request: the reply's priming. Rounded up.
MESSAGE_OVERHEAD = 8
REQUEST_OVERHEAD = 16


class ContextTooLarge(Exception):
    pass


def turn_tokens(text: str, tokenizer: str = "") -> int:
    return tokens.count(text, tokenizer) + MESSAGE_OVERHEAD


def image_tokens(width: int, height: int) -> int:
    """What OpenAI bills for an image at detail "high" (or "auto"): scaled into 2048×2048, then its
    short side to 768, and 170 tokens per 512-pixel tile plus 85. An upper bound for "low"."""
    scale = min(1.0, 2048 / max(width, height, 1))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / max(min(w, h), 1))
    return 85 + 170 * math.ceil(w * scale / 512) * math.ceil(h * scale / 512)


def turn_size(turn: Turn, tokenizer: str = "") -> int:
    """A turn's tokens: its text and its images (dicts with "width" and "height")."""
    return turn_tokens(turn["content"], tokenizer) + sum(image_tokens(i["width"], i["height"]) for i in turn.get("images") or ())


def with_files(text: str, files: list[tuple[str, str]]) -> str:
    """A user turn with its attached text files, each delimited and named, before the message itself."""
    blocks = [f'<file name="{name}">\n{body}\n</file>' for name, body in files]
    return "\n\n".join([*blocks, text] if text else blocks)


def prompt_budget(context_window: int, max_output_tokens: int) -> int:
    """Tokens left for the prompt once the model's output reserve is set aside."""
    return context_window - max_output_tokens - REQUEST_OVERHEAD


# How instructions are marked when the model takes no system message and they ride in the first user turn.
FOLDED = "[Custom instructions — follow them throughout this conversation]\n{instructions}\n[End of custom instructions]\n\n{text}"


def instructions_tokens(instructions: str, tokenizer: str = "") -> int:
    """What instructions cost, as a system message or folded into a turn (the label is counted too)."""
    if not instructions:
        return 0
    return turn_tokens(FOLDED.format(instructions=instructions, text=""), tokenizer)


def message_fits(turn: Turn, *, context_window: int, max_output_tokens: int, tokenizer: str = "", instructions: str = "") -> bool:
    needed = turn_size(turn, tokenizer) + instructions_tokens(instructions, tokenizer)
    return needed <= prompt_budget(context_window, max_output_tokens)


def context_trim(
    turns: list[Turn], *, context_window: int, max_output_tokens: int, tokenizer: str = "", instructions: str = ""
) -> list[Turn]:
    """Drop the oldest turns until instructions + prompt + output reserve fit the window.

    `turns` are {"role", "content", "images"?} dicts, oldest first, ending with the user's
    new message; a turn is kept or dropped whole, with its files and images. Raises ContextTooLarge when even that message alone cannot fit.
    """
    budget = prompt_budget(context_window, max_output_tokens)
    if not turns:
        raise ContextTooLarge("This message is too long for the model's context window.")
    total = turn_size(turns[-1], tokenizer) + instructions_tokens(instructions, tokenizer)
    if total > budget:
        raise ContextTooLarge("This message is too long for the model's context window.")
    start = len(turns) - 1
    # Newest first, so that a long history is counted only as far back as it can fit.
    while start > 0:
        size = turn_size(turns[start - 1], tokenizer)
        if total + size > budget:
            break
        start -= 1
        total += size
    kept = turns[start:]
    # A conversation sent to the model starts with the user speaking.
    while kept[0]["role"] != "user":
        kept = kept[1:]
    return kept


def instructions_place(turns: list[Turn], instructions: str, *, system_message: bool) -> list[Turn]:
    """Put instructions where the model takes them: a system message first, or, for models that refuse
    one (o1-preview, o1-mini), at the head of the first user turn under a clear label."""
    if not instructions:
        return turns
    if system_message:
        return [{"role": "system", "content": instructions}, *turns]
    first, *rest = turns
    return [{**first, "content": FOLDED.format(instructions=instructions, text=first["content"])}, *rest]
