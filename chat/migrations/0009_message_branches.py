"""Messages become a tree (`parent`) with the branch on screen ending at `current_leaf`.

Before, an edit or a regenerate flagged the old messages `replaced`; only the last
question or answer could be changed. The tree is rebuilt from those flags: an answer
follows the newest question on the branch, a question follows the branch's last
message, and a question after a replaced question is that question's edit.
"""

import django.db.models.deletion
from django.db import migrations, models


def build_tree(apps, schema_editor) -> None:
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    for conversation in Conversation.objects.iterator():
        rows = list(Message.objects.filter(conversation=conversation).order_by("id").values_list("id", "role", "replaced"))
        parents: dict[int, int | None] = {}
        replaced = {id_: flag for id_, _, flag in rows}
        path: list[tuple[int, str]] = []  # the branch as it stood when each message was written
        for id_, role, _ in rows:
            users = [i for i, (_, r) in enumerate(path) if r == "user"]
            if role == "assistant":
                cut = users[-1] + 1 if users else len(path)
            elif users and replaced[path[users[-1]][0]]:
                # Only the last question could be edited, and nothing but answers came between
                # it and its edit: a question after a replaced one is its new text.
                cut = users[-1]
            else:
                cut = len(path)
            path = path[:cut]
            parents[id_] = path[-1][0] if path else None
            path.append((id_, role))
        for id_, parent in parents.items():
            if parent is not None:
                Message.objects.filter(id=id_).update(parent_id=parent)
        if path:
            Conversation.objects.filter(id=conversation.id).update(current_leaf_id=path[-1][0])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_conversation_pin_archive_and_share_links"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="current_leaf",
            field=models.ForeignKey(
                blank=True,
                help_text="The last message of the branch on screen.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="chat.message",
            ),
        ),
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                help_text="The message this one follows.",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="chat.message",
            ),
        ),
        migrations.RunPython(build_tree, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="message",
            name="replaced",
        ),
    ]
