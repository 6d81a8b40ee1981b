"""The admin index's dashboard: this month's spend, live runs, quotas, stalled units."""

from django import template
from django.urls import reverse

from collection.models import CollectionRun, CollectionSettings, RunStatus
from collection.selectors import month_budget, source_quota, stalled_units
from collection.sources import source_keys

register = template.Library()


@register.inclusion_tag("admin/collection/dashboard.html", takes_context=True)
def collection_dashboard(context):
    user = context["request"].user
    if not user.has_perm("collection.view_collectionrun"):
        return {"shown": False}
    month = month_budget()
    live = {status: CollectionRun.objects.filter(status=status).count()
            for status in (RunStatus.RUNNING, RunStatus.PAUSED)}
    runs_url = reverse("admin:collection_collectionrun_changelist")
    return {
        "shown": True, "month": month, "currency": CollectionSettings.load().currency,
        "month_percent": round(float(month["spent"] / month["cap"] * 100)) if month["cap"] else 0,
        "running": live[RunStatus.RUNNING], "paused": live[RunStatus.PAUSED],
        "running_url": f"{runs_url}?status__exact={RunStatus.RUNNING}",
        "paused_url": f"{runs_url}?status__exact={RunStatus.PAUSED}",
        "quotas": [(key, source_quota(key)) for key in source_keys()],
        "stalled": list(stalled_units()[:20]),
    }
