import re
from decimal import Decimal

from django.core.validators import RegexValidator
from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from collection.models import (
    Category,
    CollectionRun,
    CollectionSettings,
    Offer,
    PauseReason,
    Product,
    RunEvent,
    RunUnit,
    Seller,
)
from collection.money import MAX_MONEY, MONEY
from collection.services.source_state import source_for
from collection.services.validation import MAX_CATEGORIES
from collection.sources import source_keys

MONEY_INPUT = {**MONEY, "min_value": Decimal("0"), "max_value": MAX_MONEY, "coerce_to_string": True}
# An amount a client sends: a string (a JSON number is a float in most clients), 0 to MAX_MONEY
# at the money scale. The schema publishes this pattern and the field enforces exactly it.
_WHOLE = len(str(int(MAX_MONEY))) - 1
MONEY_PATTERN = (rf"^(?:[0-9]{{1,{_WHOLE}}}(?:\.[0-9]{{1,{MONEY['decimal_places']}}})?"
                 rf"|{int(MAX_MONEY)}(?:\.0{{1,{MONEY['decimal_places']}}})?)$")


@extend_schema_field({"type": "string", "format": "decimal", "pattern": MONEY_PATTERN, "example": "25.00"})
class MoneyInput(serializers.DecimalField):
    default_error_messages = {
        "money": f'An amount as a string, e.g. "25.00": 0 to {int(MAX_MONEY)}, at most '
                 f'{MONEY["decimal_places"]} decimal places.',
    }

    def __init__(self, **kwargs):
        super().__init__(**{**MONEY_INPUT, **kwargs})

    def validate_empty_values(self, data):
        if data == "":  # DRF would take "" for null
            self.fail("money")
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if not isinstance(data, str) or not re.fullmatch(MONEY_PATTERN, data):
            self.fail("money")
        return super().to_internal_value(data)


class JSONTyped:
    """Input of the JSON type the schema names: DRF would turn "5" into 5, 1 into True and 5
    into "5"; a client whose request does not match the published schema is told, not guessed."""

    json_types: tuple[type, ...] = ()
    type_name = ""

    def to_internal_value(self, data):
        if isinstance(data, bool) and bool not in self.json_types or not isinstance(data, self.json_types):
            raise serializers.ValidationError(f"Must be {self.type_name}.", code="invalid")
        return super().to_internal_value(data)


class StrictInteger(JSONTyped, serializers.IntegerField):
    json_types, type_name = (int,), "a whole number"


class StrictBoolean(JSONTyped, serializers.BooleanField):
    json_types, type_name = (bool,), "true or false"


class StrictChar(JSONTyped, serializers.CharField):
    json_types, type_name = (str,), "a string"


class StrictChoice(JSONTyped, serializers.ChoiceField):
    json_types, type_name = (str,), "a string"


class SourceChoice(StrictChoice):
    """A source that can run now: registered and configured (the schema lists exactly those); a
    registered source without its configuration is refused with what is missing."""

    def __init__(self, **kwargs):
        super().__init__(choices=[], help_text="A configured source's key (see sources/).", **kwargs)
        self.missing = {key: source_for(key).missing_configuration() for key in source_keys()}
        self.choices = [key for key, missing in self.missing.items() if not missing]

    def to_internal_value(self, data):
        if isinstance(data, str) and self.missing.get(data):
            raise serializers.ValidationError(self.missing[data], code="not_configured")
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.IntegerField: StrictInteger,
        models.PositiveIntegerField: StrictInteger,
        models.PositiveSmallIntegerField: StrictInteger,
        models.CharField: StrictChar,
        models.BooleanField: StrictBoolean,
    }
    serializer_choice_field = StrictChoice


class ErrorSerializer(serializers.Serializer):
    """Every error under /api/: what went wrong as a code and a sentence; refused input by field."""

    code = serializers.CharField(help_text="Machine-readable: invalid, budget_exceeded, invalid_transition, "
                                           "not_found, not_authenticated, permission_denied, throttled, …")
    detail = serializers.CharField(help_text="For people; names every refused field.")
    errors = serializers.DictField(child=serializers.JSONField(), required=False,
                                   help_text="Refused input: messages by field (or query parameter).")


class SettingsSerializer(StrictModelSerializer):
    run_budget_cap = MoneyInput(help_text="The most one run may spend.")
    monthly_budget_cap = MoneyInput(help_text="The most all runs together may spend in a calendar month.")
    currency = StrictChar(validators=[RegexValidator(r"^[A-Z]{3}\Z", "Three capital letters (ISO 4217), e.g. USD.")],
                          help_text="ISO 4217 code, e.g. USD.")

    class Meta:
        model = CollectionSettings
        exclude = ["id"]
        read_only_fields = ["updated_at"]


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
    probe = StrictBoolean(default=True, help_text="Ask the source for unknown categories' sizes.")
    source = SourceChoice()
    categories = serializers.ListField(child=StrictInteger(min_value=1, max_value=2**63 - 1),
                                       min_length=1, max_length=MAX_CATEGORIES)

    budget_cap = MoneyInput(required=False, allow_null=True)


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
    pause_reason = serializers.ChoiceField(choices=PauseReason.choices, allow_blank=True, read_only=True,
                                           help_text="Why a paused run is paused; empty otherwise.")
    categories = serializers.SerializerMethodField()
    progress = serializers.IntegerField(source="progress_percent", read_only=True)
    eta_seconds = serializers.IntegerField(read_only=True, allow_null=True,
                                           help_text="While running: seconds left at the pace so far.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

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
    budget_cap = MoneyInput(required=False, help_text="The run's new cap. Leaving it out changes nothing.")


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
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                         help_text="Who did it; null for the system (workers, recovery).")

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
    last_seen_at = serializers.DateTimeField(read_only=True, help_text="When a run last returned it.")

    class Meta:
        model = Product
        fields = ["id", "platform", "external_id", "legacy_id", "title", "price", "currency", "url", "condition",
                  "buying_options", "location_country", "source_category_ids", "seller", "seller_external_id",
                  "category", "first_seen_at", "last_seen_at", "first_seen_run"]
