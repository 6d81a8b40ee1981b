from django.apps import AppConfig


class CollectionConfig(AppConfig):
    name = "collection"
    verbose_name = "Collection runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # No queries here (Django's docs: ready() also runs for migrate, test, shell...).
        # `install` only decides whether this process serves (web or worker) and, if so,
        # schedules recovery to run once the process is up.
        from . import startup

        startup.install()
