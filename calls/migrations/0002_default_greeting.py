"""Create the greeting a fresh install answers with, as Deepgram's original demo did."""

from __future__ import annotations

from django.db import migrations


def create_default_greeting(apps, schema_editor):
    Greeting = apps.get_model("calls", "Greeting")
    if not Greeting.objects.exists():
        Greeting.objects.create(
            name="Default",
            say_text="This call may be monitored or recorded.",
            text="Hello, how are you today?",
            voice="aura-asteria-en",
            is_default=True,
        )


class Migration(migrations.Migration):
    dependencies = [("calls", "0001_initial")]

    operations = [migrations.RunPython(create_default_greeting, migrations.RunPython.noop)]
