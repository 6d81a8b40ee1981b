"""Reads shared by the API and the admin."""

from django.db.models import Prefetch, QuerySet

from collection.models import CollectionRun, RunUnit


def runs_with_categories() -> QuerySet[CollectionRun]:
    """Runs with their creator and their categories' ids in a constant number of queries."""
    return CollectionRun.objects.select_related("created_by").prefetch_related(
        Prefetch("units", queryset=RunUnit.objects.only("id", "run_id", "category_id").order_by("id"),
                 to_attr="unit_list")
    )
