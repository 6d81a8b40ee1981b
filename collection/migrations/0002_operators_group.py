"""Create the "Operators" group: collection.automation plus what the admin console needs."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


OPERATOR_PERMISSIONS = [
    "automation",
    "view_collectionrun", "add_collectionrun", "change_collectionrun", "delete_collectionrun",
    "view_collectionsettings", "change_collectionsettings",
    "view_category", "add_category", "change_category",
    "view_rununit", "view_runevent", "view_budgetperiod", "view_seller", "view_product",
]


def create_group(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure ours exists now.
    app_config = apps.get_app_config("collection")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, apps=apps)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Operators")
    group.permissions.add(*Permission.objects.filter(content_type__app_label="collection", codename__in=OPERATOR_PERMISSIONS))


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Operators").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("collection", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
