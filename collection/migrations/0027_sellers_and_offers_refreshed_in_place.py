"""A run that sees sellers and offers again rewrites them in place.

Every run refreshes each seller it sees once (last seen, times seen) and each offer on every
sighting (last seen, price). PostgreSQL then writes a new version of the row, and, unless the
new version fits on the row's page and no indexed column changed (a HOT update), a new entry in
every index of the table: for a seller, seven, the name's trigram index included.

* The seller's last-seen run becomes information only, as the offer's is: no index (the one
  indexed column each refresh changed), no constraint (a trigger looked the run up again for
  every refreshed seller). Only a run that never started can be deleted (admin, API), and such
  a run saw no seller.
* Sellers and offers leave half of each page free for their rows' new versions, as ProductSeen
  does (0022): a run refreshes most rows of a page in one go, in one transaction, and a row's
  old version is freed only once that transaction is over. Rows already stored keep their full
  pages until they move (a refresh that does not fit writes its version on a page with room) or
  the table is rewritten (VACUUM FULL, pg_repack). A refresh that changes an indexed value
  (a seller's name or feedback score, an offer's price) is not heap-only: it writes a new
  entry in every index of the table, as every refresh did before.

On PostgreSQL the index is dropped CONCURRENTLY; dropping the constraint takes the sellers' and
the runs' exclusive locks for a moment, each waited for a bounded time
(_concurrently.under_short_lock); the page fill is a setting changed without blocking writes.
SQLite has no such pages: there the table is rebuilt without the constraint, in a transaction.
Undone, the index, the constraint and full pages come back; adding the constraint back checks
every seller under those locks (seconds at millions of sellers).
"""

import django.db.models.deletion
from django.db import migrations, models

from collection.migrations._concurrently import drop_field_index, under_short_lock

FREE_SPACE_FILLFACTOR = 50  # % of each page filled by inserts; the rest is for rows' new versions
LOCK_TIMEOUT, TRIES = "2s", 15
TABLES = ("Seller", "Offer")


class AlterFieldUnderShortLock(migrations.AlterField):
    """AlterField waiting at most LOCK_TIMEOUT for each lock, TRIES times (PostgreSQL)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        under_short_lock(schema_editor, lambda: super(AlterFieldUnderShortLock, self).database_forwards(
            app_label, schema_editor, from_state, to_state), self._failure, LOCK_TIMEOUT, TRIES)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        under_short_lock(schema_editor, lambda: super(AlterFieldUnderShortLock, self).database_backwards(
            app_label, schema_editor, from_state, to_state), self._failure, LOCK_TIMEOUT, TRIES)

    @property
    def _failure(self) -> str:
        return f"could not change {self.model_name}.{self.name}"


def fill_pages(fillfactor: int | None):
    def change(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for name in TABLES:
            table = schema_editor.quote_name(apps.get_model("collection", name)._meta.db_table)
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor})" if fillfactor
                                  else f"ALTER TABLE {table} RESET (fillfactor)")

    return change


def last_seen_run(**options):
    return models.ForeignKey(blank=True, null=True, related_name="+", to="collection.collectionrun", **options)


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [("collection", "0026_product_title_copy_dropped")]

    operations = [
        drop_field_index("seller", "last_seen_run", last_seen_run(
            db_index=False, on_delete=django.db.models.deletion.SET_NULL)),
        AlterFieldUnderShortLock(model_name="seller", name="last_seen_run", field=last_seen_run(
            db_index=False, db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING)),
        migrations.RunPython(fill_pages(FREE_SPACE_FILLFACTOR), fill_pages(None)),
    ]
