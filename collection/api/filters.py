from datetime import UTC

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter, SearchFilter

from collection.models import Category, CollectionRun, Offer, Product, Seller
from collection.money import MAX_MONEY
from collection.selectors import MIN_PART, search, seen_in_run

MAX_ID = 2**63 - 1
MAX_INT = 2**31 - 1


def bounded(filter_class, minimum, maximum, **kwargs):
    """A filter whose bounds the server enforces and the schema publishes alike."""
    number = "integer" if filter_class.field_class is forms.IntegerField else "number"
    found = filter_class(min_value=minimum, max_value=maximum, **kwargs)
    return extend_schema_field({"type": number, "minimum": minimum, "maximum": maximum})(found)


class SafeIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 time; one at the edge of the calendar (year 1 at +14:00) is refused, not a 500."""

    def to_python(self, value):
        try:
            found = super().to_python(value)
            if found is not None and found.tzinfo is not None:
                found.astimezone(UTC)  # the database compares in UTC: it must exist there too
            return found
        except OverflowError:
            raise forms.ValidationError("Enter a date and time between the years 1 and 9999.", code="invalid") from None


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = SafeIsoDateTimeField


class IntegerFilter(django_filters.NumberFilter):
    """A whole number (`1.5` is refused, not compared)."""

    field_class = forms.IntegerField


class TrueFalseField(forms.NullBooleanField):
    widget = forms.TextInput  # the raw text reaches to_python

    def to_python(self, value):
        if value in (None, ""):
            return None
        if value in ("true", "false"):
            return value == "true"
        raise forms.ValidationError("Either true or false.", code="invalid")


@extend_schema_field({"type": "boolean"})
class BooleanFilter(django_filters.BooleanFilter):
    """`true` or `false`; django-filter would also take `null`, `1`, `yes` or anything as no filter."""

    field_class = TrueFalseField


class StrictFilterSet(django_filters.FilterSet):
    """A typed filter given an empty value (`?created_before=`) is refused: django-filter would
    drop it and return everything, as if the client had not asked."""

    def is_valid(self):
        valid = super().is_valid()
        for name, found in self.filters.items():
            if not isinstance(found, django_filters.CharFilter) and self.data.get(name) == "":
                self.form.add_error(name, "A value is required; leave the parameter out not to filter.")
                valid = False
        return valid


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """An object's id: a whole number (a filter on `1.5` or `-1` is refused, not rounded)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=MAX_ID, **kwargs)


class IndexedSearch(SearchFilter):
    """`?search=` through `selectors.search`: exact external ids, parts of names and titles of
    at least 3 characters, each served by an index."""

    search_description = (f"Words that must all match: an exact external id, or part of the name/title "
                          f"(at least {MIN_PART} characters).")

    def filter_queryset(self, request, queryset, view):
        return search(queryset, self.get_search_fields(view, request) or (), " ".join(self.get_search_terms(request)),
                      min_part=getattr(view, "search_min_part", MIN_PART))


class OneOrdering(OrderingFilter):
    """`?ordering=` takes one of the view's `ordering_fields`, optionally with `-`; anything else
    is refused (DRF's filter would silently ignore it and return the default order). A view's
    `ordering_aliases` sort a field by the index-backed one that has its order (first seen: the
    id, given when a row is first stored)."""

    def choices(self, view) -> list[str]:
        return [f"{sign}{field}" for field in view.ordering_fields for sign in ("", "-")]

    def get_ordering(self, request, queryset, view):
        value = request.query_params.get(self.ordering_param)
        if value is None:
            return self.get_default_ordering(view)
        if value not in self.choices(view):
            raise ValidationError({self.ordering_param: [f"One of: {', '.join(self.choices(view))}."]})
        sign, field = ("-", value[1:]) if value.startswith("-") else ("", value)
        value = sign + getattr(view, "ordering_aliases", {}).get(field, field)
        return [value, "-id" if value.startswith("-") else "id"] if value.lstrip("-") != "id" else [value]

    def get_schema_operation_parameters(self, view):
        return [{"name": self.ordering_param, "required": False, "in": "query",
                 "description": "Sort by one field; `-` for descending.",
                 "schema": {"type": "string", "enum": self.choices(view)}}]


class RunFilter(StrictFilterSet):
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = CollectionRun
        fields = ["status", "source"]


class CategoryFilter(StrictFilterSet):
    class Meta:
        model = Category
        fields = ["platform"]


class SellerFilter(StrictFilterSet):
    run = IdFilter(method="seen_in_run", help_text="Sellers this run's pages returned (not only the ones first seen there).")
    first_seen_run = IdFilter(field_name="first_seen_run_id")
    feedback_score_min = bounded(IntegerFilter, -MAX_INT - 1, MAX_INT, field_name="feedback_score", lookup_expr="gte")
    feedback_score_max = bounded(IntegerFilter, -MAX_INT - 1, MAX_INT, field_name="feedback_score", lookup_expr="lte")
    feedback_percent_min = bounded(django_filters.NumberFilter, 0, 100, field_name="feedback_percent", lookup_expr="gte")
    feedback_percent_max = bounded(django_filters.NumberFilter, 0, 100, field_name="feedback_percent", lookup_expr="lte")

    class Meta:
        model = Seller
        fields = ["platform", "account_type", "country"]

    def seen_in_run(self, queryset, name, value):
        return seen_in_run(queryset, value)



class OfferFilter(StrictFilterSet):
    product = IdFilter(field_name="product_id")
    seller = IdFilter(field_name="seller_id")
    platform = django_filters.CharFilter(field_name="product__platform")
    price_min = bounded(django_filters.NumberFilter, 0, MAX_MONEY, field_name="price", lookup_expr="gte")
    price_max = bounded(django_filters.NumberFilter, 0, MAX_MONEY, field_name="price", lookup_expr="lte")
    fulfilled_by_platform = BooleanFilter()

    class Meta:
        model = Offer
        fields = ["condition"]


class ProductFilter(StrictFilterSet):
    run = IdFilter(method="seen_in_run", help_text="Products this run's pages returned (not only the ones first seen there).")
    first_seen_run = IdFilter(field_name="first_seen_run_id")
    category = IdFilter(field_name="category_id")
    seller = IdFilter(method="sold_by", help_text="Products this seller offers.")
    price_min = bounded(django_filters.NumberFilter, 0, MAX_MONEY, field_name="price", lookup_expr="gte")
    price_max = bounded(django_filters.NumberFilter, 0, MAX_MONEY, field_name="price", lookup_expr="lte")
    buying_option = django_filters.CharFilter(field_name="buying_options", lookup_expr="contains")

    class Meta:
        model = Product
        fields = ["platform", "condition", "location_country"]

    def seen_in_run(self, queryset, name, value):
        return seen_in_run(queryset, value)

    def sold_by(self, queryset, name, value):
        return queryset.filter(pk__in=Offer.objects.filter(seller_id=value).values("product_id"))
