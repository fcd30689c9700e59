"""Reads. Every lookup by id checks that the row belongs to the user."""

import re

from django.db import connection
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404

from accounts.models import Profile
from catalog.context import Turn
from catalog.models import AIModel

from .files import turn_for
from .models import LIVE, Attachment, Conversation, Message, ShareLink


def as_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Http404("No such item.")
    try:
        number = int(value)
    except ValueError:
        raise Http404("No such item.") from None
    if not 0 < number < 2**63:
        raise Http404("No such item.")
    return number


def conversation_get_for_user(*, user, conversation_id: object) -> Conversation:
    """The user's conversation, or Http404 (also for another user's id: we do not say it exists)."""
    conversation = Conversation.objects.select_related("model").filter(id=as_id(conversation_id), user=user).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def message_get_for_user(*, user, message_id: object) -> Message:
    message = Message.objects.select_related("model", "conversation").filter(id=as_id(message_id), conversation__user=user).first()
    if message is None:
        raise Http404("No such message.")
    return message


def conversation_list(*, user, query: str = "") -> QuerySet[Conversation]:
    conversations = Conversation.objects.filter(user=user).select_related("model").order_by("-pinned", "-updated_at")
    if query:
        matching = Message.objects.filter(text__icontains=query).values("conversation_id")  # any branch
        conversations = conversations.filter(Q(title__icontains=query) | Q(id__in=matching))
    return conversations


def _tree(conversation_id: int) -> dict[int, tuple[int | None, str]]:
    """Every message of the conversation: id -> (parent id, role). Small rows, one query."""
    rows = Message.objects.filter(conversation_id=conversation_id).values_list("id", "parent_id", "role")
    return {id_: (parent, role) for id_, parent, role in rows}


def _path(tree: dict[int, tuple[int | None, str]], leaf_id: int | None) -> list[int]:
    ids = []
    while leaf_id in tree:
        ids.append(leaf_id)
        leaf_id = tree[leaf_id][0]
    return ids[::-1]


# What a Continue asks, after the partial answer (chat.actions.reply_continue).
CONTINUE_PROMPT = (
    "Your previous answer was cut off. Continue it exactly where it stopped, without repeating anything or commenting on the break."
)


_MESSAGES = Message._meta.db_table
_ATTACHMENTS = Attachment._meta.db_table

# The branch from `leaf` up to its root, one index lookup per step, with what a turn needs of each
# message and whether it has files (so a branch without any reads no attachments).
_BRANCH_SQL = f"""
WITH RECURSIVE branch AS (
    SELECT id, parent_id FROM {_MESSAGES} WHERE id = %(leaf)s AND conversation_id = %(conversation)s
    UNION ALL
    SELECT m.id, m.parent_id FROM {_MESSAGES} m JOIN branch b ON m.id = b.parent_id WHERE m.conversation_id = %(conversation)s
)
SELECT m.id, m.role, m.text,
       m.role = %(user)s AND EXISTS (SELECT 1 FROM {_ATTACHMENTS} a WHERE a.message_id = m.id)
FROM branch JOIN {_MESSAGES} m ON m.id = branch.id
WHERE NOT (m.role = %(assistant)s AND m.text = '')
ORDER BY m.id
"""


def branch_turns(*, conversation_id: int, leaf_id: int | None, model: AIModel) -> list[Turn]:
    """The turns a reply after `leaf_id` is asked with, untrimmed: the branch's user text with its
    files and its visible answers, never reasoning. Images are counted by their size; their bytes
    are not read here. An answer and its continuations are one assistant turn; after a partial
    answer (a Continue) the user's turn is CONTINUE_PROMPT.

    The worker sends these (generation.reply.context_for); a send holds a budget for them
    (chat.actions._prompt_tokens). One query, and one or two more only when the branch has files.
    """
    if leaf_id is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            _BRANCH_SQL,
            {"leaf": leaf_id, "conversation": conversation_id, "user": Message.Role.USER, "assistant": Message.Role.ASSISTANT},
        )
        rows = cursor.fetchall()
    earlier: list[list] = []  # [id, role, text]
    with_files = []
    for id_, role, text, has_files in rows:
        if earlier and role == Message.Role.ASSISTANT and earlier[-1][1] == role:
            earlier[-1][2] += text  # a continuation joins the answer it continues
        else:
            earlier.append([id_, role, text])
        if has_files:
            with_files.append(id_)
    attached: dict[int, list[Attachment]] = {}
    if with_files:
        # The text files' bytes (their text is counted); the images' sizes only.
        texts = Attachment.objects.filter(message_id__in=with_files, kind=Attachment.Kind.TEXT)
        images = Attachment.objects.filter(message_id__in=with_files, kind=Attachment.Kind.IMAGE).defer("data")
        for attachment in sorted([*texts, *images], key=lambda a: a.id):
            attached.setdefault(attachment.message_id or 0, []).append(attachment)
    turns = [turn_for(role=role, text=text, attachments=attached.get(id_, []), model=model) for id_, role, text in earlier]
    if turns and turns[-1]["role"] == Message.Role.ASSISTANT:
        turns.append(turn_for(role=Message.Role.USER, text=CONTINUE_PROMPT, attachments=[], model=model))
    return turns


def branch_leaf(*, message: Message) -> int:
    """The end of the branch through `message`: the newest version at every step after it."""
    children: dict[int, int] = {}
    for id_, (parent, _) in sorted(_tree(message.conversation_id).items()):
        if parent is not None:
            children[parent] = id_  # ascending ids: the newest child wins
    leaf = message.id
    while leaf in children:
        leaf = children[leaf]
    return leaf


def message_versions(*, message: Message) -> list[int]:
    """The ids of `message` and its siblings of the same role (its versions), oldest first."""
    siblings = Message.objects.filter(conversation_id=message.conversation_id, parent_id=message.parent_id, role=message.role)
    return list(siblings.order_by("id").values_list("id", flat=True))


def conversation_messages(*, conversation: Conversation) -> list[Message]:
    """The branch on screen, each message with its `versions`."""
    tree = _tree(conversation.id)
    ids = _path(tree, conversation.current_leaf_id or max(tree, default=None))
    versions: dict[tuple[int | None, str], list[int]] = {}
    for id_, (parent, role) in sorted(tree.items()):
        versions.setdefault((parent, role), []).append(id_)
    # The attachments' names and sizes; their bytes only when downloaded.
    attachments = Prefetch("attachments", queryset=Attachment.objects.defer("data"))
    messages = Message.objects.filter(id__in=ids).select_related("model").prefetch_related(attachments).order_by("id")
    for message in messages:
        message.versions = versions[(message.parent_id, message.role)]
    return list(messages)


def attachment_get_for_user(*, user, attachment_id: object) -> Attachment:
    """The user's attachment, or Http404 (also for another user's id)."""
    attachment = Attachment.objects.filter(id=as_id(attachment_id), user=user).first()
    if attachment is None:
        raise Http404("No such attachment.")
    return attachment


def model_for_new_chat(*, user, quota: list[dict]) -> str | None:
    """The model the user picked last, unless it is at its limit or gone: then the first with messages left."""
    last = Profile.objects.filter(user=user).values_list("last_model__slug", flat=True).first()
    usable = [q["model"] for q in quota if not q["exhausted"]]
    if last in usable:
        return last
    if usable:
        return usable[0]
    offered = [q["model"] for q in quota]
    return last if last in offered else (offered[0] if offered else None)


def user_instructions(*, user) -> str:
    """The user's own custom instructions (profile page), sent with every chat."""
    return Profile.objects.filter(user=user).values_list("instructions", flat=True).first() or ""


def instructions_for(conversation: Conversation, *, mine: str | None = None) -> str:
    """The custom instructions a reply in this conversation is sent with: the user's own (`mine`, when
    read already), then the chat's."""
    if mine is None:
        mine = Profile.objects.filter(user_id=conversation.user_id).values_list("instructions", flat=True).first() or ""
    return instructions_join(mine, conversation.instructions)


def instructions_join(mine: str, chat: str) -> str:
    """The user's own instructions, then the chat's (the worker reads both with its claim)."""
    return "\n\n".join(part.strip() for part in (mine, chat) if part.strip())


def share_link_conversation(*, token: object) -> Conversation:
    """The conversation a live share link shows, or Http404 (also once revoked, or for any made-up token)."""
    if not isinstance(token, str) or not re.fullmatch(r"[A-Za-z0-9_-]{20,64}", token):
        raise Http404("No such link.")
    link = ShareLink.objects.select_related("conversation").filter(token=token, revoked_at=None).first()
    if link is None:
        raise Http404("No such link.")
    return link.conversation


def conversation_record(*, conversation: Conversation) -> list[Message]:
    """What an export or a shared page shows: the branch on screen, without a reply still being written."""
    return [m for m in conversation_messages(conversation=conversation) if m.status not in LIVE]
