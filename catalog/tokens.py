"""Token counts: the real o200k_base tokenizer for the OpenAI models that use it, offline.

tiktoken fetches its tables from the internet on first use; here the o200k_base
table ships with the code (catalog/data/o200k_base.tiktoken.gz, taken from the
bpe-openai wheel; its SHA-256 is the one tiktoken itself expects, checked on load).
Models whose tokenizer is unknown get a conservative estimate instead.
"""

import base64
import gzip
import hashlib
import math
import threading
from pathlib import Path

import tiktoken

O200K_BASE = "o200k_base"
TABLE = Path(__file__).parent / "data" / "o200k_base.tiktoken.gz"
# The hash tiktoken checks when it downloads this table (tiktoken_ext/openai_public.py).
TABLE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# tiktoken's o200k_base split pattern and special tokens (tiktoken_ext/openai_public.py).
PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
TOKENIZERS = (O200K_BASE,)


_loaded: tiktoken.Encoding | None = None
_loading = threading.Lock()


def _o200k_base() -> tiktoken.Encoding:
    """The table, built once per process: a second of CPU and ~100 MiB, so threads asking
    at once (a burst of sends right after a start) wait for one build rather than each
    making their own."""
    global _loaded
    if _loaded is None:
        with _loading:
            if _loaded is None:
                _loaded = _build()
    return _loaded


def warm() -> None:
    """Build the table now, in the background, so the first reply after a start does not wait for it."""
    threading.Thread(target=_o200k_base, name="tokenizer-warm", daemon=True).start()


def _build() -> tiktoken.Encoding:
    raw = gzip.decompress(TABLE.read_bytes())
    if hashlib.sha256(raw).hexdigest() != TABLE_SHA256:
        raise RuntimeError(f"{TABLE} is not the o200k_base table tiktoken expects")
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines() if line)}
    return tiktoken.Encoding(name=O200K_BASE, pat_str=PATTERN, mergeable_ranks=ranks, special_tokens=SPECIAL)


def estimate(text: str) -> int:
    """For models whose tokenizer is unknown: three tokens per four UTF-8 bytes, above the worst
    o200k_base gives on high-entropy text (base64, 0.68); ordinary prose is overcounted about 3 times."""
    return math.ceil(len(text.encode("utf-8")) * 3 / 4)


def count(text: str, tokenizer: str) -> int:
    """Tokens in `text`; special-token strings in user text are counted as plain text, as the API does."""
    if tokenizer == O200K_BASE:
        return len(_o200k_base().encode_ordinary(text))
    return estimate(text)
