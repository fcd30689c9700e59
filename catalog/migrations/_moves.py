"""Shared by the migrations that moved models out of the chat app."""

from django.db import migrations


def content_types_to(app_label: str, models: list[str]):
    """Keep admins' permissions: the moved models' content types (and so their permissions) follow them."""

    def move(apps, schema_editor):
        ContentType = apps.get_model("contenttypes", "ContentType")
        ContentType.objects.filter(app_label="chat", model__in=models).update(app_label=app_label)

    return migrations.RunPython(move, migrations.RunPython.noop)
