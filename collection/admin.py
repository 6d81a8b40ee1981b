"""The operators' console. Thin: every change goes through a service; status is never edited."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from collection.charts import spend_chart_svg
from collection.exports import OFFER_FIELDS, PRODUCT_FIELDS, SELLER_FIELDS, csv_response
from collection.models import (
    Category,
    CollectionRun,
    CollectionSettings,
    Offer,
    Product,
    RunEvent,
    RunStatus,
    RunUnit,
    Seller,
)
from collection.money import MONEY
from collection.services import runs
from collection.services.categories import category_add_by_id
from collection.services.errors import BudgetExceeded, CollectionError, InvalidInput
from collection.services.estimate import estimate
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


class UnitInline(admin.TabularInline):
    model = RunUnit
    extra = 0
    can_delete = False
    fields = readonly_fields = ("category", "status", "cursor", "pages_done", "items_done", "cost", "reserved",
                                "attempts", "recoveries", "last_error", "lease_owner", "lease_expires_at")

    def has_add_permission(self, request, obj=None):
        return False


class EventInline(admin.TabularInline):
    model = RunEvent
    extra = 0
    can_delete = False
    ordering = ("-created_at", "-id")
    fields = readonly_fields = ("created_at", "kind", "actor", "unit", "detail")

    def has_add_permission(self, request, obj=None):
        return False


class RunCreateForm(forms.Form):
    source = forms.ChoiceField()
    categories = forms.ModelMultipleChoiceField(
        queryset=Category.objects.all(), widget=FilteredSelectMultiple("categories", is_stacked=False)
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
    list_display = ("id", "status_badge", "source", "progress", "spend", "eta", "units_total", "created_by",
                    "created_at")
    list_filter = ("status", "source", "created_at")
    search_fields = ("=id", "source", "error")
    list_select_related = ("created_by",)
    show_full_result_count = False
    list_per_page = 50
    actions = ("start_runs", "pause_runs", "resume_runs", "cancel_runs")
    inlines = (UnitInline, EventInline)
    readonly_fields = ("source", "status", "pause_reason", "estimated_cost", "spent", "reserved", "currency",
                       "units_total", "units_done", "units_failed", "pages_done", "pages_estimated", "items_done",
                       "sellers_new", "error", "created_by", "created_at", "started_at", "paused_at", "finished_at",
                       "quota_resets_at", "estimate")
    fields = ("budget_cap", "spend_chart", "pacing", *readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        return ("spend_chart", "pacing", *self.readonly_fields)

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
                   f"{run.progress_percent}% · {run.units_done}/{run.units_total} categories · {run.pages_done} pages")

    @admin.display(description="spend vs cap", ordering="spent")
    def spend(self, run):
        percent = float(run.spent / run.budget_cap * 100) if run.budget_cap else 0
        colour = "#dc3545" if percent >= 90 else "#198754"
        return bar(percent, colour, f"{run.spent:.2f} / {run.budget_cap:.2f} {run.currency}")

    @admin.display(description="ETA")
    def eta(self, run):
        if run.status != RunStatus.RUNNING or not run.started_at or not run.pages_done:
            return "—"
        elapsed = (timezone.now() - run.started_at).total_seconds()
        left = max(run.pages_estimated - run.pages_done, 0) * elapsed / run.pages_done
        return f"{int(left // 60)}m {int(left % 60)}s"

    def has_automation_permission(self, request):
        return request.user.has_perm("collection.automation")

    def has_delete_permission(self, request, obj=None):
        return bool(obj and obj.status == RunStatus.PENDING and super().has_delete_permission(request, obj))

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
                    self.message_user(request, f"Run #{run.pk} created ({run.estimated_cost} {run.currency} "
                                               f"estimated). Start it from the list.", messages.SUCCESS)
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

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        if obj is not None and obj.status == RunStatus.RUNNING:
            context["auto_refresh_seconds"] = 5
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)


@admin.register(CollectionSettings)
class CollectionSettingsAdmin(admin.ModelAdmin):
    """One row: no add or delete; the list goes straight to it; saving goes through the service."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        return redirect("admin:collection_collectionsettings_change", CollectionSettings.load().pk)

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            settings_update(actor=request.user, **values)
        except InvalidInput as error:
            self.message_user(request, f"Not saved: {error}", messages.ERROR)


class CategoryByIdForm(forms.Form):
    source = forms.ChoiceField(help_text="A source that can describe a category from its id (e.g. Keepa).")
    external_id = forms.CharField(label="Category id at the source", max_length=128,
                                  help_text="e.g. Keepa's catId. The lookup is one call, charged like a size probe.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = [(key, key) for key in source_keys() if get_source(key).can_look_up_categories]


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
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
    export_fields: tuple[str, ...] = ()

    @admin.action(description="Export selected to CSV")
    def export_csv(self, request, queryset):
        return csv_response(queryset, self.export_fields, filename=f"{self.opts.model_name}s.csv")


class FeedbackScoreFilter(admin.SimpleListFilter):
    title = "feedback score"
    parameter_name = "feedback"
    RANGES = {"lt100": (None, 100), "100-1000": (100, 1000), "1000-10000": (1000, 10000), "gte10000": (10000, None)}

    def lookups(self, request, model_admin):
        return [("lt100", "< 100"), ("100-1000", "100 – 999"), ("1000-10000", "1,000 – 9,999"),
                ("gte10000", "10,000 +")]

    def queryset(self, request, queryset):
        low, high = self.RANGES.get(self.value(), (None, None))
        field = "feedback_score" if queryset.model is Seller else "seller__feedback_score"
        if low is not None:
            queryset = queryset.filter(**{f"{field}__gte": low})
        if high is not None:
            queryset = queryset.filter(**{f"{field}__lt": high})
        return queryset


@admin.register(Seller)
class SellerAdmin(CsvExportMixin, admin.ModelAdmin):
    list_display = ("external_id", "name", "platform", "account_type", "country", "feedback_score", "feedback_percent",
                    "times_seen", "first_seen_at", "last_seen_at", "products_link")
    list_filter = ("platform", "account_type", "country", FeedbackScoreFilter, "first_seen_at")
    search_fields = ("=external_id", "name")
    show_full_result_count = False
    actions = ("export_csv",)
    raw_id_fields = ("first_seen_run", "last_seen_run")
    export_fields = SELLER_FIELDS

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.opts.fields]  # data comes from sources

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
class OfferAdmin(CsvExportMixin, admin.ModelAdmin):
    list_display = ("product_link", "seller_link", "condition", "price", "currency", "fulfilled_by_platform",
                    "last_seen_at")
    list_filter = ("product__platform", "condition", "fulfilled_by_platform", "last_seen_at")
    search_fields = ("=product__external_id", "=seller__external_id")
    list_select_related = ("product", "seller")
    show_full_result_count = False
    actions = ("export_csv",)
    raw_id_fields = ("product", "seller", "last_seen_run")
    export_fields = OFFER_FIELDS

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.opts.fields]

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


@admin.register(Product)
class ProductAdmin(CsvExportMixin, admin.ModelAdmin):
    list_display = ("external_id", "title", "price", "currency", "buying_options", "condition", "location_country",
                    "seller_link", "category", "first_seen_at")
    list_filter = ("platform", "buying_options", "condition", "location_country", FeedbackScoreFilter, "first_seen_at")
    search_fields = ("=external_id", "title", "=seller__external_id")
    list_select_related = ("seller", "category")
    show_full_result_count = False
    actions = ("export_csv",)
    raw_id_fields = ("seller", "category", "first_seen_run")
    export_fields = PRODUCT_FIELDS
    inlines = (OfferInline,)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.opts.fields]

    @admin.display(description="seller", ordering="seller__external_id")
    def seller_link(self, product):
        if not product.seller_id:
            return "—"
        url = reverse("admin:collection_seller_change", args=[product.seller_id])
        return format_html('<a href="{}">{}</a>', url, product.seller.external_id)


