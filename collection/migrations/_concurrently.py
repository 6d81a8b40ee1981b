"""Changing the indexes of a table of millions of rows without blocking its writers: CREATE and
DROP INDEX CONCURRENTLY on PostgreSQL (the migration must be `atomic = False`), plain ones
elsewhere. A concurrent build that failed leaves an invalid index behind; it is dropped before
the index is built again, so re-running the migration repairs it. Not a migration itself (the
loader skips modules starting with an underscore)."""

import time

from django.db import migrations


def _drop(schema_editor, name: str) -> None:
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(name)}")


def add_index(model_name, index):
    def forwards(apps, schema_editor):
        model = apps.get_model("collection", model_name)
        _drop(schema_editor, index.name)  # what a failed concurrent build left, if anything
        concurrently = {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}
        schema_editor.add_index(model, index, **concurrently)

    def backwards(apps, schema_editor):
        _drop(schema_editor, index.name)

    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AddIndex(model_name=model_name, index=index)],
        database_operations=[migrations.RunPython(forwards, backwards)],
    )


def remove_index(model_name, index):
    """The reverse of add_index: `index` dropped CONCURRENTLY (built again when unapplied)."""
    added = add_index(model_name, index).database_operations[0]
    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.RemoveIndex(model_name=model_name, name=index.name)],
        database_operations=[migrations.RunPython(added.reverse_code, added.code)],
    )


def drop_field_index(model_name, field_name, field):
    """`field` loses its own single-column index (db_index=False) and nothing else: Django's
    AlterField would drop and re-add a foreign key (re-checking every row under a lock, and
    rebuilding the whole table on SQLite)."""

    def forwards(apps, schema_editor):
        model = apps.get_model("collection", model_name)
        column = model._meta.get_field(field_name).column
        with schema_editor.connection.cursor() as cursor:
            constraints = schema_editor.connection.introspection.get_constraints(cursor, model._meta.db_table)
        for name, info in constraints.items():
            if info["columns"] == [column] and info["index"] and not info["unique"] and not info["primary_key"]:
                _drop(schema_editor, name)

    def backwards(apps, schema_editor):
        model = apps.get_model("collection", model_name)
        concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
        column = model._meta.get_field(field_name).column
        name = schema_editor._create_index_name(model._meta.db_table, [column])
        schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {schema_editor.quote_name(name)} "
                              f"ON {schema_editor.quote_name(model._meta.db_table)} ({schema_editor.quote_name(column)})")

    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AlterField(model_name=model_name, name=field_name, field=field)],
        database_operations=[migrations.RunPython(forwards, backwards)],
    )


def under_short_lock(schema_editor, change, failure: str, lock_timeout: str, tries: int) -> None:
    """`change()` in a transaction of its own that waits at most `lock_timeout` for each lock it
    takes (PostgreSQL), `tries` times a second apart, so that a long query on the table (a CSV export)
    does not queue every other query behind the waiting change; then fails with `failure`,
    changing nothing, and running the migration again finishes it. Elsewhere (SQLite: one
    writer, no lock to wait for), `change()` in a transaction, all or nothing."""
    from django.db import OperationalError, transaction

    if schema_editor.connection.vendor != "postgresql":
        with transaction.atomic(using=schema_editor.connection.alias):
            change()
        return
    for attempt in range(1, tries + 1):
        try:
            with transaction.atomic(using=schema_editor.connection.alias):
                schema_editor.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
                change()
            return
        except OperationalError as error:
            # lock_not_available, or deadlock_detected: the change's second table (a foreign
            # key's) was held by a transaction that then asked for the first.
            if getattr(error.__cause__, "sqlstate", None) not in ("55P03", "40P01") or attempt == tries:
                raise OperationalError(f"{failure} ({error}); a long query holds the table. Run the migration "
                                       f"again when it is done.") from error
            time.sleep(1)
