"""A conversation as a file: exported as Markdown or JSON, and the JSON read back for an import.

Pure: no ORM. The import's writes are chat.organise.conversation_import.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime

from .models import Message

FORMAT = "chat-conversation"
VERSION = 1
MAX_IMPORT_MESSAGES = 2000
IMPORTED_STATUSES = (Message.Status.DONE, Message.Status.FAILED, Message.Status.STOPPED)
_NO_LIMIT = 2**31
_INT_FIELDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "thinking_ms")


class ImportRefused(ValueError):
    """The file cannot be imported; the message says why, for the person who chose it."""


def thought_label(message: Message) -> str:
    """ "Thought for 14 seconds" as the chat shows it under a reasoning model's answer; "" when it shows none."""
    if message.role != Message.Role.ASSISTANT or (message.status == Message.Status.FAILED and not message.text):
        return ""
    seconds = round((message.thinking_ms or 0) / 1000)
    if message.model.is_reasoning and seconds >= 1:
        return f"Thought for {seconds} second{'' if seconds == 1 else 's'}"
    return "Reasoning" if message.reasoning else ""


def _message_record(message: Message) -> dict:
    return {
        "role": message.role,
        "model": message.model.slug,
        "model_name": message.model.name,
        "text": message.text,
        "reasoning": message.reasoning,
        "thought": thought_label(message),
        "status": message.status,
        "incomplete": message.incomplete,
        "finish_reason": message.finish_reason,
        "error": message.error,
        **{name: getattr(message, name) for name in _INT_FIELDS},
        "created_at": message.created_at.isoformat(),
    }


def export_json(*, title: str, messages: list[Message], exported_at: datetime) -> str:
    return json.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "title": title,
            "exported_at": exported_at.isoformat(),
            "messages": [_message_record(m) for m in messages],
        },
        ensure_ascii=False,
        indent=2,
    )


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def export_markdown(*, title: str, messages: list[Message], exported_at: datetime) -> str:
    parts = [f"# {title}", f"_Exported {exported_at:%Y-%m-%d %H:%M} UTC_"]
    for message in messages:
        if message.role == Message.Role.USER:
            parts.append(f"## You\n\n{message.text}")
            continue
        section = [f"## {message.model.name}"]
        thought = thought_label(message)
        if thought:
            section.append(_quoted(f"**{thought}**" + (f"\n\n{message.reasoning}" if message.reasoning else "")))
        if message.text:
            section.append(message.text)
        if message.status == Message.Status.FAILED:
            section.append(f"_The answer failed{': ' + message.error if message.error else '.'}_")
        elif message.status == Message.Status.STOPPED:
            section.append("_Stopped._")
        elif message.incomplete:
            section.append("_Cut off._")
        parts.append("\n\n".join(section))
    return "\n\n".join(parts) + "\n"


@dataclass
class ImportedMessage:
    role: str
    model: str
    text: str
    fields: dict = field(default_factory=dict)


@dataclass
class ImportedConversation:
    title: str
    messages: list[ImportedMessage]


def _text(record: dict, name: str, *, limit: int, where: str) -> str:
    value = record.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or "\x00" in value or len(value) > limit:
        most = "" if limit == _NO_LIMIT else f" of at most {limit:,} characters"
        raise ImportRefused(f"{where}: “{name}” must be text{most}, without NUL characters.")
    return value


def _count(record: dict, name: str, *, where: str) -> int | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise ImportRefused(f"{where}: “{name}” must be a whole number or null.")
    return value


def _message(record: object, number: int, *, max_chars: int) -> ImportedMessage:
    where = f"Message {number}"
    if not isinstance(record, dict):
        raise ImportRefused(f"{where} is not an object.")
    role = record.get("role")
    if role not in (Message.Role.USER, Message.Role.ASSISTANT):
        raise ImportRefused(f"{where}: “role” must be “user” or “assistant”.")
    model = _text(record, "model", limit=64, where=where)
    if not model:
        raise ImportRefused(f"{where}: “model” is missing.")
    # A question is held to the limit on sending one; an answer only to the file's size.
    text = _text(record, "text", limit=max_chars if role == Message.Role.USER else _NO_LIMIT, where=where)
    status = record.get("status", Message.Status.DONE)
    if status not in IMPORTED_STATUSES:
        raise ImportRefused(f"{where}: “status” must be one of {', '.join(IMPORTED_STATUSES)}.")
    if role == Message.Role.USER:
        if not text.strip():
            raise ImportRefused(f"{where}: a message of yours has no text.")
        return ImportedMessage(role=role, model=model, text=text)
    incomplete = record.get("incomplete", False)
    if not isinstance(incomplete, bool):
        raise ImportRefused(f"{where}: “incomplete” must be true or false.")
    fields = {
        "status": status,
        "incomplete": incomplete,
        "reasoning": _text(record, "reasoning", limit=_NO_LIMIT, where=where),
        "finish_reason": _text(record, "finish_reason", limit=32, where=where),
        "error": _text(record, "error", limit=500, where=where),
        **{name: _count(record, name, where=where) for name in _INT_FIELDS},
    }
    return ImportedMessage(role=role, model=model, text=text, fields=fields)


def import_parse(raw: bytes, *, max_chars: int) -> ImportedConversation:
    """Read an exported JSON file; ImportRefused says what is wrong with it. A question may be `max_chars` long."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ImportRefused("This is not a JSON file. Choose a conversation exported as JSON.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ImportRefused("This JSON file is not an exported conversation.")
    if data.get("version") != VERSION:
        raise ImportRefused(f"This export's version is {data.get('version')!r}; this server reads version {VERSION}.")
    records = data.get("messages")
    if not isinstance(records, list) or not records:
        raise ImportRefused("The file holds no messages.")
    if len(records) > MAX_IMPORT_MESSAGES:
        raise ImportRefused(f"The file holds {len(records):,} messages; the limit is {MAX_IMPORT_MESSAGES:,}.")
    messages = [_message(record, number, max_chars=max_chars) for number, record in enumerate(records, start=1)]
    title = _text(data, "title", limit=200, where="The file").strip()
    return ImportedConversation(title=title, messages=messages)
