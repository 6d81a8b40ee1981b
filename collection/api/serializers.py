from decimal import Decimal

from rest_framework import serializers

from collection.models import (
    Category,
    CollectionRun,
    CollectionSettings,
    Offer,
    Product,
    RunEvent,
    RunUnit,
    Seller,
)
from collection.money import MAX_MONEY, MONEY
from collection.services.validation import MAX_CATEGORIES

MONEY_INPUT = {**MONEY, "min_value": Decimal("0"), "max_value": MAX_MONEY, "coerce_to_string": True}


class SettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = CollectionSettings
        exclude = ["id"]
        read_only_fields = ["updated_at"]
        extra_kwargs = {
            "run_budget_cap": {"min_value": Decimal("0"), "max_value": MAX_MONEY},
            "monthly_budget_cap": {"min_value": Decimal("0"), "max_value": MAX_MONEY},
        }


class PricingSerializer(serializers.Serializer):
    model = serializers.CharField()
    cost_per_request = serializers.DecimalField(**MONEY)
    cost_per_result = serializers.DecimalField(**MONEY)
    max_page_cost = serializers.DecimalField(**MONEY)


class SourceSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    platform = serializers.CharField()
    configured = serializers.BooleanField()
    configuration_error = serializers.CharField(allow_blank=True)
    quota_kind = serializers.ChoiceField(choices=["none", "daily_calls", "token_bucket"])
    page_size = serializers.IntegerField()
    pricing = PricingSerializer()


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "platform", "external_id", "name", "parent_external_id", "level", "is_leaf",
                  "known_item_count", "item_count_measured_at", "last_collected_at"]


class EstimateRequestSerializer(serializers.Serializer):
    probe = serializers.BooleanField(default=True, help_text="Ask the source for unknown categories' sizes.")
    source = serializers.CharField(max_length=32)
    categories = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
                                       allow_empty=False, max_length=MAX_CATEGORIES)
    budget_cap = serializers.DecimalField(required=False, allow_null=True, **MONEY_INPUT)


class CategoryEstimateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    external_id = serializers.CharField()
    items = serializers.IntegerField()
    items_known = serializers.BooleanField()
    pages = serializers.IntegerField()
    cost = serializers.DecimalField(**MONEY)
    probed = serializers.BooleanField()
    probe_error = serializers.CharField(allow_blank=True)
    parent = serializers.IntegerField(allow_null=True, help_text="The chosen parent category this leaf is collected for.")
    parent_name = serializers.CharField(allow_blank=True)
    partitions = serializers.IntegerField(help_text="Searches the category is split into past the source's result cap.")
    partition_probes = serializers.IntegerField(help_text="Calls (included in pages) that only find the partitions.")
    tokens = serializers.IntegerField(help_text="A token-bucket source's tokens for the category.")


class EstimateSerializer(serializers.Serializer):
    source = serializers.CharField()
    currency = serializers.CharField()
    categories = CategoryEstimateSerializer(many=True)
    items = serializers.IntegerField()
    pages = serializers.IntegerField()
    total_cost = serializers.DecimalField(**MONEY)
    cap = serializers.DecimalField(**MONEY)
    cap_reason = serializers.ChoiceField(choices=["run", "settings", "month"])
    within_budget = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    requested_cap = serializers.DecimalField(**MONEY, allow_null=True)
    month_remaining = serializers.DecimalField(**MONEY)
    probe_calls = serializers.IntegerField()
    tokens = serializers.IntegerField(help_text="A token-bucket source's tokens for the run (0 for other sources).")
    refill_rate = serializers.IntegerField(allow_null=True, help_text="The key's tokens a minute, when known.")
    duration_seconds = serializers.IntegerField(allow_null=True,
                                                help_text="How long the run takes at the refill rate, when known.")
    pacing = serializers.CharField(allow_blank=True, help_text="Tokens and duration in a sentence (token buckets).")


class RunSerializer(serializers.ModelSerializer):
    estimate = EstimateSerializer(read_only=True)
    categories = serializers.SerializerMethodField()
    progress = serializers.IntegerField(source="progress_percent", read_only=True)
    eta_seconds = serializers.IntegerField(read_only=True, allow_null=True,
                                           help_text="While running: seconds left at the pace so far.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = CollectionRun
        fields = ["id", "source", "status", "pause_reason", "budget_cap", "spent", "reserved", "estimated_cost",
                  "currency", "estimate", "categories", "units_total", "units_done", "units_failed", "pages_done", "items_done",
                  "sellers_new", "items_unreachable", "progress", "eta_seconds", "created_by", "created_at", "started_at",
                  "paused_at", "resumed_at", "finished_at", "quota_resets_at", "error"]
        read_only_fields = fields

    def get_categories(self, run) -> list[int]:
        units = getattr(run, "unit_list", None)
        if units is None:
            units = run.units.only("category_id").order_by("id")
        return [unit.category_id for unit in units]


class RunCreateSerializer(EstimateRequestSerializer):
    """The same input as an estimate: creation estimates first and is refused over budget."""


class RunUpdateSerializer(serializers.Serializer):
    budget_cap = serializers.DecimalField(**MONEY_INPUT)


class UnitSerializer(serializers.ModelSerializer):
    category_name = serializers.CharField(source="category.name", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = RunUnit
        fields = ["id", "category", "category_name", "status", "cursor", "pages_done", "items_done", "cost",
                  "reserved", "attempts", "recoveries", "last_error", "note", "items_unreachable", "lease_owner",
                  "lease_expires_at", "finished_at", "progress"]

    def get_progress(self, unit) -> int:
        if unit.status in ("done", "failed"):
            return 100
        known = unit.category.known_item_count
        return min(99, int(unit.items_done * 100 / known)) if known else 0


class EventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = RunEvent
        fields = ["id", "created_at", "kind", "actor", "unit", "detail"]


class SellerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Seller
        fields = ["id", "platform", "external_id", "name", "feedback_score", "feedback_percent", "account_type",
                  "country", "times_seen",
                  "first_seen_at", "last_seen_at", "first_seen_run", "last_seen_run"]


class OfferSerializer(serializers.ModelSerializer):
    product_external_id = serializers.CharField(source="product.external_id", read_only=True)
    seller_external_id = serializers.CharField(source="seller.external_id", read_only=True)
    seller_name = serializers.CharField(source="seller.name", read_only=True)

    class Meta:
        model = Offer
        fields = ["id", "product", "product_external_id", "seller", "seller_external_id", "seller_name", "condition",
                  "price", "currency", "fulfilled_by_platform", "first_seen_at", "last_seen_at", "last_seen_run"]


class ProductSerializer(serializers.ModelSerializer):
    seller_external_id = serializers.CharField(source="seller.external_id", read_only=True, allow_null=True,
                                               default=None)

    class Meta:
        model = Product
        fields = ["id", "platform", "external_id", "legacy_id", "title", "price", "currency", "url", "condition",
                  "buying_options", "location_country", "source_category_ids", "seller", "seller_external_id",
                  "category", "first_seen_at", "last_seen_at", "first_seen_run"]
