import django_filters

from collection.models import Category, CollectionRun, Offer, Product, Seller
from collection.selectors import seen_in_run


class RunFilter(django_filters.FilterSet):
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = CollectionRun
        fields = ["status", "source"]


class CategoryFilter(django_filters.FilterSet):
    class Meta:
        model = Category
        fields = ["platform"]


class SellerFilter(django_filters.FilterSet):
    run = django_filters.NumberFilter(method="seen_in_run", min_value=1,
                                      help_text="Sellers this run's pages returned (not only the ones first seen there).")
    first_seen_run = django_filters.NumberFilter(field_name="first_seen_run_id", min_value=1)
    category = django_filters.NumberFilter(method="in_category", min_value=1)
    feedback_score_min = django_filters.NumberFilter(field_name="feedback_score", lookup_expr="gte")
    feedback_score_max = django_filters.NumberFilter(field_name="feedback_score", lookup_expr="lte")
    feedback_percent_min = django_filters.NumberFilter(field_name="feedback_percent", lookup_expr="gte")
    feedback_percent_max = django_filters.NumberFilter(field_name="feedback_percent", lookup_expr="lte")

    class Meta:
        model = Seller
        fields = ["platform", "account_type", "country"]

    def seen_in_run(self, queryset, name, value):
        return seen_in_run(queryset, value)

    def in_category(self, queryset, name, value):
        return queryset.filter(pk__in=Offer.objects.filter(product__category_id=value).values("seller_id"))


class OfferFilter(django_filters.FilterSet):
    product = django_filters.NumberFilter(field_name="product_id", min_value=1)
    seller = django_filters.NumberFilter(field_name="seller_id", min_value=1)
    platform = django_filters.CharFilter(field_name="product__platform")
    price_min = django_filters.NumberFilter(field_name="price", lookup_expr="gte")
    price_max = django_filters.NumberFilter(field_name="price", lookup_expr="lte")

    class Meta:
        model = Offer
        fields = ["condition", "fulfilled_by_platform"]


class ProductFilter(django_filters.FilterSet):
    run = django_filters.NumberFilter(method="seen_in_run", min_value=1,
                                      help_text="Products this run's pages returned (not only the ones first seen there).")
    first_seen_run = django_filters.NumberFilter(field_name="first_seen_run_id", min_value=1)
    category = django_filters.NumberFilter(field_name="category_id", min_value=1)
    seller = django_filters.NumberFilter(method="sold_by", min_value=1, help_text="Products this seller offers.")
    feedback_score_min = django_filters.NumberFilter(field_name="seller__feedback_score", lookup_expr="gte")
    feedback_score_max = django_filters.NumberFilter(field_name="seller__feedback_score", lookup_expr="lte")
    price_min = django_filters.NumberFilter(field_name="price", lookup_expr="gte")
    price_max = django_filters.NumberFilter(field_name="price", lookup_expr="lte")
    buying_option = django_filters.CharFilter(field_name="buying_options", lookup_expr="contains")

    class Meta:
        model = Product
        fields = ["platform", "condition", "location_country"]

    def seen_in_run(self, queryset, name, value):
        return seen_in_run(queryset, value)

    def sold_by(self, queryset, name, value):
        return queryset.filter(pk__in=Offer.objects.filter(seller_id=value).values("product_id"))
