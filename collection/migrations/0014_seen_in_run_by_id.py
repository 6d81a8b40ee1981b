"""Seen in run by id: a row a run and product (and a run and seller), keyed by both, in place
of a row a page holding the page's external ids. A page of a run's products is then read from
the key in id order instead of looking up every product the run saw (bench/scale_queries.py:
93 ms for a run of 20,000 products, growing with the run). The pages' ids are carried over;
backwards, each run's ids come back as one page row of its first unit.

Stop the workers before migrating: the old page rows are read and dropped in one transaction,
so a page an old worker stored meanwhile would wait for it and then fail."""

import django.db.models.deletion
from django.db import migrations, models

from collection.sources import UnknownSource, get_source


def carry_over(apps, schema_editor):
    """Every (run, product) and (run, seller) the old page rows name, by the run's platform.
    Set-based: one statement a source and kind, whatever the number of pages."""
    connection = schema_editor.connection
    CollectionRun = apps.get_model("collection", "CollectionRun")
    names = {model: connection.ops.quote_name(apps.get_model("collection", model)._meta.db_table)
             for model in ("RunPage", "Product", "Seller", "RunProduct", "RunSeller", "CollectionRun")}
    if connection.vendor == "postgresql":
        elements = "CROSS JOIN LATERAL jsonb_array_elements_text(page.{column}) AS e(value)"
    else:
        elements = "CROSS JOIN json_each(page.{column}) AS e"
    for source in CollectionRun.objects.order_by().values_list("source", flat=True).distinct():
        try:
            platform = get_source(source).platform
        except UnknownSource:  # a source no longer configured: its runs' ids cannot be placed
            continue
        for target, column, table, key in (("RunProduct", "products", "Product", "product_id"),
                                           ("RunSeller", "sellers", "Seller", "seller_id")):
            # Only quoted identifiers from the models are interpolated; values are parameters.
            sql = (f"INSERT INTO {names[target]} (run_id, {key}) SELECT DISTINCT page.run_id, t.id "  # noqa: S608
                   f"FROM {names['RunPage']} page JOIN {names['CollectionRun']} r ON r.id = page.run_id "
                   f"{elements.format(column=column)} JOIN {names[table]} t ON t.external_id = e.value "
                   f"AND t.platform = %s WHERE r.source = %s ON CONFLICT DO NOTHING")
            with connection.cursor() as cursor:
                cursor.execute(sql, [platform, source])


def carry_back(apps, schema_editor):
    """Each run's products and sellers, by external id, as one page row (page 0 of its first
    unit): what "seen in run" read before."""
    connection = schema_editor.connection
    q = {model: connection.ops.quote_name(apps.get_model("collection", model)._meta.db_table)
         for model in ("RunPage", "Product", "Seller", "RunProduct", "RunSeller", "CollectionRun", "RunUnit")}
    agg = "jsonb_agg" if connection.vendor == "postgresql" else "json_group_array"
    empty = "'[]'::jsonb" if connection.vendor == "postgresql" else "'[]'"

    def ids(seen: str, table: str, key: str) -> str:
        return (f"COALESCE((SELECT {agg}(t.external_id) FROM {q[seen]} s JOIN {q[table]} t "  # noqa: S608
                f"ON t.id = s.{key} WHERE s.run_id = r.id), {empty})")

    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {q['RunPage']} (run_id, unit_id, page, products, sellers) "  # noqa: S608
            f"SELECT r.id, (SELECT min(u.id) FROM {q['RunUnit']} u WHERE u.run_id = r.id), 0, "
            f"{ids('RunProduct', 'Product', 'product_id')}, {ids('RunSeller', 'Seller', 'seller_id')} "
            f"FROM {q['CollectionRun']} r WHERE EXISTS (SELECT 1 FROM {q['RunUnit']} u WHERE u.run_id = r.id) "
            f"AND (EXISTS (SELECT 1 FROM {q['RunProduct']} s WHERE s.run_id = r.id) "
            f"OR EXISTS (SELECT 1 FROM {q['RunSeller']} s WHERE s.run_id = r.id))")


class Migration(migrations.Migration):

    dependencies = [
        ("collection", "0013_filter_indexes_in_page_order"),
    ]

    operations = [
        migrations.CreateModel(
            name="RunProduct",
            fields=[
                ("pk", models.CompositePrimaryKey("run", "product", blank=True, editable=False, primary_key=True,
                                                  serialize=False)),
                ("run", models.ForeignKey(db_constraint=False, db_index=False,
                                          on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                          to="collection.collectionrun")),
                ("product", models.ForeignKey(db_constraint=False, db_index=False,
                                              on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
                                              to="collection.product")),
            ],
        ),
        migrations.CreateModel(
            name="RunSeller",
            fields=[
                ("pk", models.CompositePrimaryKey("run", "seller", blank=True, editable=False, primary_key=True,
                                                  serialize=False)),
                ("run", models.ForeignKey(db_constraint=False, db_index=False,
                                          on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                          to="collection.collectionrun")),
                ("seller", models.ForeignKey(db_constraint=False, db_index=False,
                                             on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
                                             to="collection.seller")),
            ],
        ),
        migrations.RunPython(carry_over, carry_back, elidable=True),
        migrations.DeleteModel(name="RunPage"),
    ]
