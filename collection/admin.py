"""The operators' console. Thin: every change goes through a service; status is never edited."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import display_for_value
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from collection.charts import spend_chart_svg
from collection.exports import OFFER_FIELDS, PRODUCT_FIELDS, SELLER_FIELDS, csv_response
from collection.models import (
    Category,
    CollectionRun,
    CollectionSettings,
    Offer,
    Product,
    RunStatus,
    RunUnit,
    Seller,
)
from collection.money import MONEY
from collection.selectors import (
    count_within,
    distinct_values,
    month_budget,
    search,
    seen_counts,
    seen_in_run,
    source_quota,
)
from collection.services import runs
from collection.services.categories import category_add_by_id
from collection.services.collected import collected_delete, deletion_counts, sellers_products_count
from collection.services.errors import BudgetExceeded, CollectionError, InvalidInput
from collection.services.estimate import estimate
from collection.services.lifecycle import ACTION_DONE, ACTIONS
from collection.services.search_index import pending_count
from collection.services.settings import settings_update
from collection.sources import get_source, source_keys

STATUS_COLOURS = {
    RunStatus.PENDING: "#6c757d", RunStatus.RUNNING: "#0d6efd", RunStatus.PAUSED: "#fd7e14",
    RunStatus.COMPLETED: "#198754", RunStatus.FAILED: "#dc3545", RunStatus.CANCELLED: "#495057",
}


def bar(percent: float, colour: str, label: str) -> str:
    percent = max(0, min(100, percent))
    return format_html(
        '<div title="{}" style="width:120px;background:var(--hairline-color,#ddd);border-radius:3px">'
        '<div style="width:{}%;background:{};height:8px;border-radius:3px"></div></div><small>{}</small>',
        label, f"{percent:.0f}", colour, label,
    )


MAX_ROWS = 200  # units and events shown on the run page (the API has them all)
OPERATOR_ACTIONS = ("start", "pause", "resume", "cancel")


def table(headers: list[str], rows: list[list], *, note: str = "", css: str = "") -> str:
    """A compact HTML table of escaped values."""
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join("", "<tr>{}</tr>", (
        (format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows))
    return format_html('<table class="run-table {}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>{}',
                       css, head, body, format_html("<p class='help'>{}</p>", note) if note else "")


def detail_text(detail: dict) -> str:
    """An event's detail as text: "error: … · attempt: 2"."""
    return " · ".join(f"{key.replace('_', ' ')}: {value}" for key, value in (detail or {}).items())


class RunCreateForm(forms.Form):
    source = forms.ChoiceField()
    # A search box (the admin's autocomplete over the category admin's search fields), not a list
    # of every category: tens of thousands load fine.
    categories = forms.ModelMultipleChoiceField(
        queryset=Category.objects.all(), help_text="Type part of a name or an exact id. A parent means its leaves.",
        widget=AutocompleteSelectMultiple(RunUnit._meta.get_field("category"), admin.site,
                                          attrs={"data-width": "100%"}),
    )
    budget_cap = forms.DecimalField(required=False, min_value=0, **MONEY,
                                    help_text="Optional: at most the per-run cap in settings.")
    probe = forms.BooleanField(required=False, initial=True, label="Probe unknown categories",
                               help_text="Ask the source how many items unknown categories hold (one call each, "
                                         "counted against its quota); otherwise the settings default is used.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = [(key, key) for key in source_keys()]


@admin.register(CollectionRun)
class CollectionRunAdmin(admin.ModelAdmin):
    list_display = ("id", "status_badge", "source", "progress", "spend", "eta", "created_at")
    list_filter = ("status", "source", "created_at")
    search_fields = ("=id", "source", "error")
    list_select_related = ("created_by",)
    show_full_result_count = False
    list_per_page = 50
    actions = ("start_runs", "pause_runs", "resume_runs", "cancel_runs")
    details = ("source", "status", "pause_reason", "estimated_cost", "spent", "reserved", "currency", "units_total",
               "units_done", "units_failed", "pages_done", "pages_estimated", "items_done", "sellers_new",
               "items_unreachable", "error", "created_by", "created_at", "started_at", "paused_at", "resumed_at",
               "finished_at", "quota_resets_at", "budget_warned_at")
    fieldsets = (
        ("Budget", {"fields": ("budget_cap", "spend_chart", "pacing")}),
        ("Categories", {"fields": ("unit_table",)}),
        ("Event log", {"fields": ("event_table",)}),
        ("Estimate", {"fields": ("estimate_table",)}),
        ("Internals: cursors, leases, tasks", {"classes": ("collapse",), "fields": ("internals_table",)}),
        ("All fields", {"classes": ("collapse",), "fields": details}),
    )

    def get_fieldsets(self, request, obj=None):
        """Token pacing only for runs of a token-bucket source (its estimate has a pacing line)."""
        if obj is not None and (obj.estimate or {}).get("pacing"):
            return self.fieldsets
        budget = ("Budget", {"fields": ("budget_cap", "spend_chart")})
        return (budget, *self.fieldsets[1:])

    def get_readonly_fields(self, request, obj=None):
        shown = ("spend_chart", "pacing", "unit_table", "event_table", "estimate_table", "internals_table",
                 *self.details)
        if not request.user.has_perm("collection.automation"):
            return ("budget_cap", *shown)  # money changes need the automation permission, as in the API
        return shown

    def _units(self, run):
        return list(run.units.select_related("category").order_by("pk")[:MAX_ROWS])

    def _more(self, total: int, what: str) -> str:
        return f"First {MAX_ROWS} of {total} {what}; the API has them all." if total > MAX_ROWS else ""

    @admin.display(description="categories")
    def unit_table(self, run):
        units = self._units(run)
        rows = [[f"{u.category.name} ({u.category.external_id})", u.get_status_display(), u.pages_done,
                 u.items_done, u.cost, u.attempts, (u.last_error or u.note)[:160]] for u in units]
        return table(["category", "status", "pages", "items", "cost", "attempts", "last error / note"], rows,
                     note=self._more(run.units_total, "categories"))

    @admin.display(description="cursor, lease and task of each category")
    def internals_table(self, run):
        rows = [[u.category.external_id, json.dumps(u.cursor)[:200] if u.cursor else "—", u.lease_owner or "—",
                 u.lease_expires_at.strftime("%Y-%m-%d %H:%M:%S") if u.lease_expires_at else "—", u.reserved,
                 u.recoveries, u.task_id or "—"] for u in self._units(run)]
        return table(["category", "cursor", "lease owner", "lease expires", "reserved", "recoveries", "task"], rows)

    @admin.display(description="latest events")
    def event_table(self, run):
        events = list(run.events.select_related("actor", "unit__category").order_by("-created_at", "-id")[:MAX_ROWS])
        rows = [[e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.get_kind_display(), e.actor or "system",
                 e.unit.category.external_id if e.unit else "", detail_text(e.detail)] for e in events]
        total = run.events.count() if len(events) == MAX_ROWS else len(events)
        return table(["time (UTC)", "event", "by", "category", "detail"], rows, note=self._more(total, "events"))

    @admin.display(description="estimate at creation")
    def estimate_table(self, run):
        snapshot = run.estimate or {}
        rows = [[f"{r.get('name')} ({r.get('external_id')})", r.get("items"),
                 "" if r.get("items_known") else "settings default", r.get("pages"), r.get("cost")]
                for r in snapshot.get("categories", [])[:MAX_ROWS]]
        rows.append(["total", snapshot.get("items"), "", snapshot.get("pages"), snapshot.get("total_cost")])
        note = " ".join(filter(None, [snapshot.get("pacing"), f"Cap applied: {snapshot.get('cap')} "
                                                               f"({snapshot.get('cap_reason')})."]))
        return table(["category", "items", "count from", "pages", "cost"], rows, note=note)

    @admin.display(description="token pacing")
    def pacing(self, run):
        """For a token-bucket source (Keepa): the tokens the run needs and how long they take."""
        return (run.estimate or {}).get("pacing") or "—"

    @admin.display(description="spend over time")
    def spend_chart(self, run):
        return spend_chart_svg(run)

    @admin.display(description="status", ordering="status")
    def status_badge(self, run):
        label = run.get_status_display() + (f" · {run.pause_reason}" if run.pause_reason else "")
        return format_html('<span style="background:{};color:#fff;padding:2px 6px;border-radius:8px">{}</span>',
                           STATUS_COLOURS.get(run.status, "#666"), label)

    @admin.display(description="progress")
    def progress(self, run):
        return bar(run.progress_percent, "#0d6efd",
                   f"{run.progress_percent}% · {run.units_done}/{run.units_total} categories")

    @admin.display(description="spend vs cap", ordering="spent")
    def spend(self, run):
        percent = float(run.spent / run.budget_cap * 100) if run.budget_cap else 0
        colour = "#dc3545" if percent >= 90 else "#198754"
        return bar(percent, colour, f"{run.spent:.2f} / {run.budget_cap:.2f} {run.currency}")

    @admin.display(description="ETA")
    def eta(self, run):
        left = run.eta_seconds
        if left is None:
            return "—"
        return f"{left // 3600}h {left % 3600 // 60}m" if left >= 3600 else f"{left // 60}m {left % 60}s"

    def has_automation_permission(self, request):
        return request.user.has_perm("collection.automation")

    def has_delete_permission(self, request, obj=None):
        return bool(obj and obj.status == RunStatus.PENDING and super().has_delete_permission(request, obj)
                    and request.user.has_perm("collection.automation"))

    def delete_model(self, request, obj):
        runs.run_delete(run_id=obj.pk, actor=request.user)

    def _apply(self, request, queryset, action: str, verb: str):
        service = getattr(runs, f"run_{action}")
        for run in queryset:
            try:
                service(run_id=run.pk, actor=request.user)
            except CollectionError as error:
                self.message_user(request, f"Run #{run.pk}: not {verb}: {error}.", messages.WARNING)
            else:
                self.message_user(request, f"Run #{run.pk}: {verb}.", messages.SUCCESS)

    @admin.action(description="Start selected runs", permissions=["automation"])
    def start_runs(self, request, queryset):
        self._apply(request, queryset, "start", "started")

    @admin.action(description="Pause selected runs", permissions=["automation"])
    def pause_runs(self, request, queryset):
        self._apply(request, queryset, "pause", "paused")

    @admin.action(description="Resume selected runs", permissions=["automation"])
    def resume_runs(self, request, queryset):
        self._apply(request, queryset, "resume", "resumed")

    @admin.action(description="Cancel selected runs", permissions=["automation"])
    def cancel_runs(self, request, queryset):
        self._apply(request, queryset, "cancel", "cancelled")

    def save_model(self, request, obj, form, change):
        """Only the cap can be changed here, and only through the service's rules."""
        if change and "budget_cap" in form.changed_data:
            runs.run_update_budget_cap(run_id=obj.pk, budget_cap=obj.budget_cap, actor=request.user)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except InvalidInput as error:
            self.message_user(request, f"Not saved: {error}", messages.ERROR)
            return redirect(request.path)

    def add_view(self, request, form_url="", extra_context=None):
        """Pick a source, categories and an optional cap; see the estimate; create the run.
        An over-budget run is refused with the estimate and the reason, and nothing is saved."""
        if not self.has_add_permission(request) or not request.user.has_perm("collection.automation"):
            return redirect("admin:collection_collectionrun_changelist")
        form = RunCreateForm(request.POST or None)
        preview, refusal = None, None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            ids = [c.pk for c in data["categories"]]
            try:
                if "_estimate" in request.POST:
                    preview = estimate(source=data["source"], category_ids=ids, budget_cap=data["budget_cap"],
                                       probe=data["probe"]).as_dict()
                else:
                    run = runs.run_create(source=data["source"], category_ids=ids, budget_cap=data["budget_cap"],
                                          actor=request.user, probe=data["probe"])
                    created = f"Run #{run.pk} created ({run.estimated_cost} {run.currency} estimated)"
                    if "_save_start" in request.POST:
                        self._apply(request, CollectionRun.objects.filter(pk=run.pk), "start", "created and started")
                    else:
                        self.message_user(request, f"{created}. Start it from its page.", messages.SUCCESS)
                    return redirect("admin:collection_collectionrun_change", run.pk)
            except BudgetExceeded as error:
                preview, refusal = error.estimate, error.reason
            except InvalidInput as error:
                for field, problems in error.errors.items():
                    form.add_error(field if field in form.fields else None, " ".join(problems))
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "form": form, "preview": preview,
            "refusal": refusal, "title": "Add collection run", "media": self.media + form.media,
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/collection/collectionrun/add_run.html", context)

    def changelist_view(self, request, extra_context=None):
        """The list refreshes itself while any run is running."""
        live = CollectionRun.objects.filter(status=RunStatus.RUNNING).exists()
        return super().changelist_view(request, {**(extra_context or {}), "auto_refresh_seconds": 10 if live else 0})

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        if obj is not None:
            if obj.status == RunStatus.RUNNING:
                context["auto_refresh_seconds"] = 5
            context["header"] = self._header(request, obj)
            context["show_save_and_add_another"] = False
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    def _header(self, request, run) -> dict:
        """What the run page's header shows: how it is going, at a glance."""
        seen = seen_counts(run.pk)
        month = month_budget()
        allowed = [a for a in OPERATOR_ACTIONS if run.status in ACTIONS[a][0]] \
            if request.user.has_perm("collection.automation") else []
        return {
            "status": self.status_badge(run), "progress": run.progress_percent, "eta": self.eta(run),
            "spend": self.spend(run), "month": month,
            "month_bar": bar(float(month["spent"] / month["cap"] * 100) if month["cap"] else 0, "#6f42c1",
                             f"{month['spent']:.2f} / {month['cap']:.2f} {run.currency} this month"),
            "quota": source_quota(run.source), "actions": allowed,
            "sellers_seen": seen["sellers"], "products_seen": seen["products"],
            "sellers_url": reverse("admin:collection_seller_changelist") + f"?run={run.pk}",
            "products_url": reverse("admin:collection_product_changelist") + f"?run={run.pk}",
        }

    def get_urls(self):
        view = self.admin_site.admin_view(self.transition_view)
        return [path("<int:run_id>/do/<str:action>/", view, name="collection_collectionrun_transition"),
                *super().get_urls()]

    def transition_view(self, request, run_id: int, action: str):
        """The run page's Start / Pause / Resume / Cancel buttons: one service call, its result
        or its refusal as a message."""
        if request.method != "POST" or action not in OPERATOR_ACTIONS:
            return redirect("admin:collection_collectionrun_change", run_id)
        if not request.user.has_perm("collection.automation"):
            raise PermissionDenied
        self._apply(request, CollectionRun.objects.filter(pk=run_id), action, ACTION_DONE[action])
        return redirect("admin:collection_collectionrun_change", run_id)


@admin.register(CollectionSettings)
class CollectionSettingsAdmin(admin.ModelAdmin):
    """One row: no add or delete; the list goes straight to it; saving goes through the service."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        """Budget caps are money: changing them needs `collection.automation`, as in the API."""
        return super().has_change_permission(request, obj) and request.user.has_perm("collection.automation")

    def changelist_view(self, request, extra_context=None):
        return redirect("admin:collection_collectionsettings_change", CollectionSettings.load().pk)

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            settings_update(actor=request.user, **values)
        except InvalidInput as error:
            self.message_user(request, f"Not saved: {error}", messages.ERROR)


class FromSources:
    """Sellers, products and offers: what the sources returned, shown read-only (not edited by
    hand), without the column kept for search (a seller's `name_upper`)."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.opts.fields if not f.generated]


class DeleteNeedsAutomation:
    """Deleting collected data or categories needs `collection.automation`, as in the API, not
    only Django's model permission."""

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and request.user.has_perm("collection.automation")


class DeletesCollected(DeleteNeedsAutomation):
    """Sellers, products and offers are deleted by services.collected: in the order a page being
    stored locks them (no deadlock with the workers), in short batches. The confirmation page
    counts what goes with them instead of listing every row (a seller can have hundreds of
    thousands of offers, which Django's own page would load and list)."""

    LISTED = 20  # the selected rows named on the confirmation page; the rest are counted
    # Django's action loads and logs each selected row, and its confirmation posts one field a
    # row (DATA_UPLOAD_MAX_NUMBER_FIELDS: 1,000): a selection across pages is bounded.
    MAX_DELETED = 500

    @admin.action(permissions=["delete"], description=django_delete_selected.short_description)
    def delete_selected(self, request, queryset):
        """Django's action (confirmation, log, message), refused for a selection too large for it."""
        if queryset[:self.MAX_DELETED + 1].count() > self.MAX_DELETED:
            self.message_user(request, f"More than {self.MAX_DELETED:,} {self.opts.verbose_name_plural} are selected: "
                                       "narrow the selection (a filter or a search) and delete them in parts. "
                                       "Nothing was deleted.", messages.ERROR)
            return None
        return django_delete_selected(self, request, queryset)

    def delete_model(self, request, obj):
        collected_delete(rows=self.model.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        collected_delete(rows=queryset)

    def get_deleted_objects(self, objs, request):
        rows = objs if isinstance(objs, QuerySet) else self.model.objects.filter(pk__in=[obj.pk for obj in objs])
        counts = deletion_counts(rows)
        registry = self.admin_site._registry
        perms_needed = {model._meta.verbose_name for model in counts
                        if model in registry and not registry[model].has_delete_permission(request)}
        selected = counts.get(self.model, 0)
        named = [format_html('{}: <a href="{}">{}</a>', capfirst(self.opts.verbose_name),
                             reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk]), obj)
                 for obj in rows.order_by("pk")[:self.LISTED]]
        if selected > len(named):
            named.append(f"… and {selected - len(named):,} more {self.opts.verbose_name_plural}")
        if self.model is Seller and (kept := sellers_products_count(rows)):  # the summary counts what goes
            named.append(f"Their {kept:,} {'product stays' if kept == 1 else 'products stay'}, without a seller.")
        model_count = {model._meta.verbose_name_plural: count for model, count in counts.items()}
        return named, model_count, perms_needed, []


class CategoryByIdForm(forms.Form):
    source = forms.ChoiceField(help_text="A source that can describe a category from its id (e.g. Keepa).")
    external_id = forms.CharField(label="Category id at the source", max_length=128,
                                  help_text="e.g. Keepa's catId. The lookup is one call, charged like a size probe.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = [(key, key) for key in source_keys() if get_source(key).can_look_up_categories]


@admin.register(Category)
class CategoryAdmin(DeleteNeedsAutomation, admin.ModelAdmin):
    list_display = ("name", "platform", "external_id", "level", "is_leaf", "known_item_count", "item_count_measured_at",
                    "last_collected_at")
    list_filter = ("platform", "is_leaf", "level")
    search_fields = ("name", "=external_id")
    show_full_result_count = False
    change_list_template = "admin/collection/category/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.add_by_id_view)
        return [path("add-by-id/", view, name="collection_category_add_by_id"), *super().get_urls()]

    def add_by_id_view(self, request):
        """Add a category from its id at the source, described by the source (name, parent,
        leaf, size)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = CategoryByIdForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                category = category_add_by_id(**form.cleaned_data)
            except InvalidInput as error:
                for field, problems in error.errors.items():
                    form.add_error(field if field in form.fields else None, problems)
            else:
                self.message_user(request, f"Category {category.name} ({category.external_id}) added.", messages.SUCCESS)
                return redirect("admin:collection_category_change", category.pk)
        return TemplateResponse(request, "admin/collection/category/add_by_id.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "form": form, "title": "Add a category by id",
        })


class CsvExportMixin:
    export_fields: tuple = ()

    @admin.action(description="Export selected to CSV")
    def export_csv(self, request, queryset):
        return csv_response(queryset, self.export_fields, filename=f"{self.opts.model_name}s.csv")


class CappedCountPaginator(Paginator):
    """Counts at most CAP + 1 rows (a COUNT over a LIMIT): counting millions of rows reads
    millions of rows on every page; the pagination template says "more than CAP" past it.
    On PostgreSQL the count also stops after BUDGET_MS (a search whose words are common
    together reads many rows for each match it counts): the page is then fetched with one row
    more than it shows (`rows`), and the count is the rows up to that one (`counted` False,
    "more than N" up to this page), which still tells whether a next page exists. The admin
    passes the page asked for (`page_number`), which is the one ChangeList fetches; a page past
    the rows or past CAP is refused as Django refuses a page past its count."""

    CAP = 10_000
    BUDGET_MS = 25

    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, *, page_number=1):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.page_number = max(page_number, 1)
        self.counted = True
        self.rows = None  # the asked page's rows and one more, when the count ran out of time

    @cached_property
    def count(self):
        counted = count_within(self.object_list, cap=self.CAP, budget_ms=self.BUDGET_MS)
        if counted is not None:
            return counted
        start = (self.page_number - 1) * self.per_page
        if start > self.CAP:  # no deeper than a counted list pages
            raise IncorrectLookupParameters(f"page {self.page_number} is past the first {self.CAP:,} rows")
        self.rows = list(self.object_list[start : start + self.per_page + 1])
        if not self.rows and start:
            raise IncorrectLookupParameters(f"page {self.page_number} is past the last row")
        self.counted = len(self.rows) <= self.per_page  # the last page: the count is exact
        return start + len(self.rows)

    @property
    def more_than(self) -> int | None:
        """What "more than N" says where the count is not exact (the asked page's last row when
        the count ran out of time, CAP past the cap); None where it is exact."""
        if not self.counted:
            return self.page_number * self.per_page
        return self.CAP if self.count > self.CAP else None

    def page(self, number):
        number = self.validate_number(number)
        if self.rows is not None and number == self.page_number:
            return self._get_page(self.rows[: self.per_page], number, self)
        return super().page(number)


class AtScaleChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        if self.paginator.rows is not None and not self.multi_page:
            # One page holds every match (fetched with the page, the count having run out of
            # time): show those rows instead of running the search again without a limit.
            self.result_list = self.paginator.rows


class AtScale:
    """Changelists of tables with millions of rows: searches and filters that an index serves
    (selectors.search, filter choices by a loose index scan), a capped count, and only the
    sorts an index serves (`sortable_by`)."""

    paginator = CappedCountPaginator
    list_per_page = 50  # as the runs' list: a search walks rows in id order until a page is full
    list_max_show_all = 50  # never "show all" (Django offers it past one page): an uncounted search has no bound
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice reads every matching row

    def get_changelist(self, request, **kwargs):
        return AtScaleChangeList

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        try:  # as ChangeList reads the page it then asks the paginator for
            page_number = int(request.GET.get(PAGE_VAR, 1))
        except ValueError:
            page_number = 1
        return self.paginator(queryset, per_page, orphans, allow_empty_first_page, page_number=page_number)

    def get_search_results(self, request, queryset, search_term):
        return search(queryset, self.search_fields, search_term), False

    @admin.display(description="first seen", ordering="id")
    def first_seen(self, obj):
        """Sorted by id: the order rows were first stored in, served by the primary key."""
        return obj.first_seen_at


class IndexedValuesFilter(admin.AllValuesFieldListFilter):
    """A column's values as choices, found through its index (selectors.distinct_values), not by
    SELECT DISTINCT over the whole table on every page."""

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = distinct_values(model, field_path, limit=300)  # ISO has 249 countries

    def choices(self, changelist):
        for choice in super().choices(changelist):
            if choice["display"] == "":  # a blank value (no condition, no country): a link with a name
                choice = {**choice, "display": self.empty_value_display}
            yield choice


class PlatformFilter(admin.SimpleListFilter):
    """The registered sources' platforms (a handful, known without a query)."""

    title = "platform"
    parameter_name = "platform"
    field = "platform"

    def lookups(self, request, model_admin):
        return [(platform, platform) for platform in sorted({get_source(key).platform for key in source_keys()})]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class ProductPlatformFilter(PlatformFilter):
    field = "product__platform"


class SeenInRunFilter(admin.SimpleListFilter):
    """Sellers or products a run's pages returned ("seen in run"), e.g. from the run page's links.
    Lists the latest runs; any run id works in the URL (`?run=`)."""

    title = "seen in run"
    parameter_name = "run"

    def lookups(self, request, model_admin):
        latest = CollectionRun.objects.order_by("-pk").values_list("pk", "source")[:10]
        chosen = self.value()
        options = [(str(pk), f"#{pk} ({source})") for pk, source in latest]
        if chosen and chosen.isdigit() and chosen not in {value for value, _ in options}:
            options.insert(0, (chosen, f"#{chosen}"))
        return options

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return seen_in_run(queryset, int(value))


class FeedbackScoreFilter(admin.SimpleListFilter):
    title = "feedback score"
    parameter_name = "feedback"
    RANGES = {"lt100": (None, 100), "100-1000": (100, 1000), "1000-10000": (1000, 10000), "gte10000": (10000, None)}

    def lookups(self, request, model_admin):
        return [("lt100", "< 100"), ("100-1000", "100 – 999"), ("1000-10000", "1,000 – 9,999"),
                ("gte10000", "10,000 +")]

    def queryset(self, request, queryset):
        low, high = self.RANGES.get(self.value(), (None, None))
        if low is not None:
            queryset = queryset.filter(feedback_score__gte=low)
        if high is not None:
            queryset = queryset.filter(feedback_score__lt=high)
        return queryset


@admin.register(Seller)
class SellerAdmin(AtScale, FromSources, DeletesCollected, CsvExportMixin, admin.ModelAdmin):
    list_display = ("external_id", "name", "platform", "account_type", "country", "feedback_score", "feedback_percent",
                    "times_seen", "first_seen", "last_seen_at", "products_link")
    list_filter = (SeenInRunFilter, PlatformFilter, ("account_type", IndexedValuesFilter),
                   ("country", IndexedValuesFilter), FeedbackScoreFilter)
    search_fields = ("=external_id", "name_upper")
    sortable_by = ("external_id", "feedback_score", "first_seen")
    actions = ("export_csv", "delete_selected")
    raw_id_fields = ("first_seen_run", "last_seen_run")
    export_fields = SELLER_FIELDS

    @admin.display(description="offers")
    def products_link(self, seller):
        url = reverse("admin:collection_offer_changelist") + f"?seller__id__exact={seller.pk}"
        return format_html('<a href="{}">offers</a>', url)


class OfferInline(admin.TabularInline):
    """A product's offers (an ASIN has tens; an eBay listing one): read-only, from sources."""

    model = Offer
    fields = ("seller_link", "condition", "price", "currency", "fulfilled_by_platform", "last_seen_at", "last_seen_run")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("seller")

    @admin.display(description="seller")
    def seller_link(self, offer):
        url = reverse("admin:collection_seller_change", args=[offer.seller_id])
        return format_html('<a href="{}">{}</a>', url, offer.seller)


@admin.register(Offer)
class OfferAdmin(AtScale, FromSources, DeletesCollected, CsvExportMixin, admin.ModelAdmin):
    list_display = ("product_link", "seller_link", "condition", "price", "currency", "fulfilled_by_platform",
                    "first_seen", "last_seen_at")
    list_filter = (ProductPlatformFilter, "fulfilled_by_platform")
    search_fields = ("=product__external_id", "=seller__external_id")
    list_select_related = ("product", "seller")
    sortable_by = ("first_seen",)
    actions = ("export_csv", "delete_selected")
    raw_id_fields = ("product", "seller", "last_seen_run")
    export_fields = OFFER_FIELDS

    def has_add_permission(self, request):
        return False

    @admin.display(description="product", ordering="product__external_id")
    def product_link(self, offer):
        url = reverse("admin:collection_product_change", args=[offer.product_id])
        return format_html('<a href="{}">{}</a>', url, offer.product.external_id)

    @admin.display(description="seller", ordering="seller__external_id")
    def seller_link(self, offer):
        url = reverse("admin:collection_seller_change", args=[offer.seller_id])
        return format_html('<a href="{}">{}</a>', url, offer.seller)


PENDING_SHOWN = 10_000  # the queue is counted up to this many


@admin.register(Product)
class ProductAdmin(AtScale, FromSources, DeletesCollected, CsvExportMixin, admin.ModelAdmin):
    list_display = ("external_id", "short_title", "price", "currency", "buying_options", "condition", "location_country",
                    "seller_link", "category", "first_seen")
    # Condition and country: their choices listed through (column, id) (migration 0017), which
    # also reads a page of one value in id order.
    list_filter = (SeenInRunFilter, PlatformFilter, ("condition", IndexedValuesFilter),
                   ("location_country", IndexedValuesFilter))
    search_fields = ("=search__external_id", "search__title_upper")  # a seller's products: its "offers" link
    list_select_related = ("seller", "category")
    sortable_by = ("external_id", "first_seen")
    actions = ("export_csv", "delete_selected")
    raw_id_fields = ("seller", "category", "first_seen_run")
    export_fields = PRODUCT_FIELDS
    inlines = (OfferInline,)

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        at = fields.index("first_seen_at") + 1
        return [*fields[:at], "last_seen", *fields[at:]]

    def get_search_results(self, request, queryset, search_term):
        """Also says when products stored moments ago are not searchable yet (services/search_index.py)."""
        if search_term.strip() and (waiting := pending_count(cap=PENDING_SHOWN)):
            many = f"More than {PENDING_SHOWN:,}" if waiting > PENDING_SHOWN else f"{waiting:,}"
            are = "product is" if waiting == 1 else "products are"
            self.message_user(request, f"{many} recently stored {are} not searchable yet: the workers index them "
                              f"between runs, and at least every minute while they collect (or: manage.py "
                              f"collection_search_index).", messages.INFO)
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="last seen at")
    def last_seen(self, product):
        """ProductSeen's (one query here), shown as the model's own dates are."""
        return display_for_value(product.last_seen_at, self.get_empty_value_display())

    @admin.display(description="title")
    def short_title(self, product):
        """One line: long marketplace titles are cut (the whole title is the tooltip)."""
        title = product.title
        return format_html('<span title="{}">{}</span>', title, title if len(title) <= 60 else title[:59] + "…")

    @admin.display(description="seller", ordering="seller__external_id")
    def seller_link(self, product):
        if not product.seller_id:
            return "—"
        url = reverse("admin:collection_seller_change", args=[product.seller_id])
        return format_html('<a href="{}">{}</a>', url, product.seller.external_id)


