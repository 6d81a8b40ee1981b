"""Adding an index to a table of millions of rows without blocking its writers: CREATE INDEX
CONCURRENTLY on PostgreSQL (the migration must be `atomic = False`), a plain one elsewhere. Not a
migration itself (the loader skips modules starting with an underscore)."""

from django.db import migrations


def add_index(model_name, index):
    def change(method: str):
        def run(apps, schema_editor):
            model = apps.get_model("collection", model_name)
            concurrently = {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}
            getattr(schema_editor, method)(model, index, **concurrently)
        return run

    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AddIndex(model_name=model_name, index=index)],
        database_operations=[migrations.RunPython(change("add_index"), change("remove_index"))],
    )
