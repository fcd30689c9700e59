"""What is sent to the model: custom instructions and earlier turns' visible text, trimmed to the window.

Tokens are counted with the model's tokenizer where the catalog names one
(catalog/tokens.py), else estimated conservatively. Instructions are always
kept and counted first; the oldest turns go before them.
"""

from . import tokens

# Per message: role and separators (3–4 with o200k_base); per request: the reply's priming. Rounded up.
MESSAGE_OVERHEAD = 8
REQUEST_OVERHEAD = 16


class ContextTooLarge(Exception):
    pass


def turn_tokens(text: str, tokenizer: str = "") -> int:
    return tokens.count(text, tokenizer) + MESSAGE_OVERHEAD


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


def message_fits(text: str, *, context_window: int, max_output_tokens: int, tokenizer: str = "", instructions: str = "") -> bool:
    needed = turn_tokens(text, tokenizer) + instructions_tokens(instructions, tokenizer)
    return needed <= prompt_budget(context_window, max_output_tokens)


def context_trim(
    turns: list[dict[str, str]], *, context_window: int, max_output_tokens: int, tokenizer: str = "", instructions: str = ""
) -> list[dict[str, str]]:
    """Drop the oldest turns until instructions + prompt + output reserve fit the window.

    `turns` are {"role", "content"} dicts, oldest first, ending with the user's
    new message. Raises ContextTooLarge when even that message alone cannot fit.
    """
    budget = prompt_budget(context_window, max_output_tokens)
    if not turns:
        raise ContextTooLarge("This message is too long for the model's context window.")
    total = turn_tokens(turns[-1]["content"], tokenizer) + instructions_tokens(instructions, tokenizer)
    if total > budget:
        raise ContextTooLarge("This message is too long for the model's context window.")
    start = len(turns) - 1
    # Newest first, so that a long history is counted only as far back as it can fit.
    while start > 0:
        size = turn_tokens(turns[start - 1]["content"], tokenizer)
        if total + size > budget:
            break
        start -= 1
        total += size
    kept = turns[start:]
    # A conversation sent to the model starts with the user speaking.
    while kept[0]["role"] != "user":
        kept = kept[1:]
    return kept


def instructions_place(turns: list[dict[str, str]], instructions: str, *, system_message: bool) -> list[dict[str, str]]:
    """Put instructions where the model takes them: a system message first, or, for models that refuse
    one (o1-preview, o1-mini), at the head of the first user turn under a clear label."""
    if not instructions:
        return turns
    if system_message:
        return [{"role": "system", "content": instructions}, *turns]
    first, *rest = turns
    return [{"role": first["role"], "content": FOLDED.format(instructions=instructions, text=first["content"])}, *rest]
