"""The REST API. Thin: parse with a serializer, call a service, render; errors are mapped to
HTTP in one place (collection/api/errors.py)."""

from django.http import StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from collection.exports import OFFER_FIELDS, PRODUCT_FIELDS, SELLER_FIELDS, csv_response
from collection.models import Category, CollectionSettings, Offer, Product, RunEvent, RunUnit, Seller
from collection.selectors import runs_with_categories
from collection.services import runs
from collection.services.estimate import estimate
from collection.services.settings import settings_update
from collection.services.source_state import source_for
from collection.sources import source_keys

from . import serializers as s
from .filters import CategoryFilter, IndexedSearch, OfferFilter, OneOrdering, ProductFilter, RunFilter, SellerFilter
from .idempotency import KEY_PATTERN, replay_or_run

OVER_BUDGET = OpenApiResponse(s.ErrorSerializer, description=(
    "Refused input by field, or over budget: `code` budget_exceeded with the `estimate` and the reason."))


PAGINATION_PARAMS = ("limit_query_param", "offset_query_param", "cursor_query_param", "page_size_query_param")


class KnownQueryParams:
    """Refuses query parameters the endpoint does not know, with 400 naming them: a typo such as
    `?stauts=` or an unsupported filter must not silently return everything."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        unknown = sorted(set(request.query_params) - self.known_query_params())
        if unknown:
            raise ValidationError({name: ["Unknown query parameter."] for name in unknown})

    def known_query_params(self) -> set[str]:
        known = {api_settings.URL_FORMAT_OVERRIDE}
        paginator = getattr(self, "paginator", None)
        if paginator is not None:
            known |= {getattr(paginator, name) for name in PAGINATION_PARAMS if getattr(paginator, name, None)}
        backends = getattr(self, "filter_backends", ())
        if IndexedSearch in backends:
            known.add(api_settings.SEARCH_PARAM)
        if OneOrdering in backends:
            known.add(api_settings.ORDERING_PARAM)
        filterset = getattr(self, "filterset_class", None)
        if DjangoFilterBackend in backends and filterset is not None:
            known |= set(filterset.base_filters)
        return known


class SettingsView(KnownQueryParams, APIView):
    @extend_schema(responses=s.SettingsSerializer)
    def get(self, request):
        return Response(s.SettingsSerializer(CollectionSettings.load()).data)

    @extend_schema(request=s.SettingsSerializer, responses=s.SettingsSerializer)
    def patch(self, request):
        serializer = s.SettingsSerializer(CollectionSettings.load(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        saved = settings_update(actor=request.user, **serializer.validated_data)
        return Response(s.SettingsSerializer(saved).data)


class SourcesView(KnownQueryParams, APIView):
    @extend_schema(responses=s.SourceSerializer(many=True))
    def get(self, request):
        return Response([source_for(key).describe() for key in source_keys()])


class EstimateView(KnownQueryParams, APIView):
    @extend_schema(request=s.EstimateRequestSerializer, responses=s.EstimateSerializer)
    def post(self, request):
        data = _valid(s.EstimateRequestSerializer, request.data)
        est = estimate(source=data["source"], category_ids=data["categories"], budget_cap=data.get("budget_cap"),
                       probe=data["probe"])
        return Response(est.as_dict())


class CategoryViewSet(KnownQueryParams, viewsets.ReadOnlyModelViewSet):
    lookup_value_regex = "[^/]+"  # any id reaches the view, which answers 404 in JSON
    queryset = Category.objects.all()
    serializer_class = s.CategorySerializer
    filter_backends = [DjangoFilterBackend, IndexedSearch]
    search_min_part = 1  # thousands of rows, not millions: a short part ("TV") is fine
    filterset_class = CategoryFilter
    search_fields = ["name", "=external_id"]


@extend_schema_view(
    create=extend_schema(request=s.RunCreateSerializer, responses={201: s.RunSerializer, 400: OVER_BUDGET},
                         parameters=[OpenApiParameter(
                             "Idempotency-Key", {"type": "string", "pattern": f"^(?:{KEY_PATTERN})$"},
                             OpenApiParameter.HEADER,
                             description="Makes a retry safe: the same key and body replay the first answer.")]),
    partial_update=extend_schema(request=s.RunUpdateSerializer, responses={200: s.RunSerializer, 400: OVER_BUDGET}),
    destroy=extend_schema(responses={204: None}),
)
class RunViewSet(KnownQueryParams, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_value_regex = "[^/]+"
    serializer_class = s.RunSerializer
    filter_backends = [DjangoFilterBackend, OneOrdering]
    filterset_class = RunFilter
    conflicting_actions = ("create", "partial_update", "destroy", "start", "pause", "resume", "cancel")  # 409
    ordering_fields = ["id", "created_at"]  # index-backed; filter by status instead
    ordering = ["-created_at", "-id"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return runs_with_categories()

    def create(self, request):
        data = _valid(s.RunCreateSerializer, request.data)

        def probe():  # outside the idempotency record's transaction: probes are real spend
            if data["probe"]:
                runs.run_probe(source=data["source"], category_ids=data["categories"],
                               budget_cap=data.get("budget_cap"))

        def make():
            run = runs.run_create(source=data["source"], category_ids=data["categories"],
                                  budget_cap=data.get("budget_cap"), actor=request.user, probe=False)
            return Response(self._render(run.pk), status=status.HTTP_201_CREATED, headers={"Location": where(run.pk)})

        def where(run_id) -> str:
            return reverse("run-detail", args=[run_id], request=request)

        return replay_or_run(request, make, prepare=probe, location=lambda data: where(data["id"]))

    def partial_update(self, request, pk=None):
        data = _valid(s.RunUpdateSerializer, request.data)
        run_id = self.get_object().pk
        if "budget_cap" in data:
            runs.run_update_budget_cap(run_id=run_id, budget_cap=data["budget_cap"], actor=request.user)
        return Response(self._render(run_id))

    def destroy(self, request, pk=None):
        runs.run_delete(run_id=self.get_object().pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _render(self, run_id: int) -> dict:
        return s.RunSerializer(self.get_queryset().get(pk=run_id)).data

    def _transition(self, request, service):
        run = service(run_id=self.get_object().pk, actor=request.user)
        return Response(self._render(run.pk))

    @extend_schema(request=None, responses=s.RunSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._transition(request, runs.run_start)

    @extend_schema(request=None, responses=s.RunSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._transition(request, runs.run_pause)

    @extend_schema(request=None, responses=s.RunSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._transition(request, runs.run_resume)

    @extend_schema(request=None, responses=s.RunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._transition(request, runs.run_cancel)

    @extend_schema(responses=s.UnitSerializer(many=True))
    @action(detail=True, methods=["get"], serializer_class=s.UnitSerializer, filter_backends=[])
    def units(self, request, pk=None):
        units = RunUnit.objects.filter(run_id=self.get_object().pk).select_related("category").order_by("id")
        page = self.paginate_queryset(units)
        return self.get_paginated_response(s.UnitSerializer(page, many=True).data)

    @extend_schema(responses=s.EventSerializer(many=True))
    @action(detail=True, methods=["get"], serializer_class=s.EventSerializer, filter_backends=[])
    def events(self, request, pk=None):
        events = RunEvent.objects.filter(run_id=self.get_object().pk).select_related("actor").order_by("id")
        page = self.paginate_queryset(events)
        return self.get_paginated_response(s.EventSerializer(page, many=True).data)


class CSVRenderer(BaseRenderer):
    """Lets `?format=csv` through content negotiation; the views stream the CSV themselves."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return b""


class DiscoveredViewSet(KnownQueryParams, viewsets.ReadOnlyModelViewSet):
    """Sellers and products: search, filters, ordering, cursor pagination, `?format=csv`."""

    lookup_value_regex = "[^/]+"
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]
    filter_backends = [DjangoFilterBackend, IndexedSearch, OneOrdering]
    # Sorts an index serves and a cursor can page through (non-null, never rewritten: a price is
    # often unknown, last seen changes with every sighting; filter on those instead). First seen
    # is the id's order: ids are given when a row is first stored.
    ordering_fields = ["id", "first_seen_at"]
    ordering_aliases = {"first_seen_at": "id"}
    ordering = ["id"]
    csv_fields: tuple = ()

    def get_renderers(self):
        renderers = super().get_renderers()
        if self.action not in ("list", None):  # CSV is a list's export; one object is JSON
            renderers = [renderer for renderer in renderers if not isinstance(renderer, CSVRenderer)]
        return renderers

    def list(self, request, *args, **kwargs):
        if request.accepted_renderer.format == "csv":
            return self._csv(request)
        return super().list(request, *args, **kwargs)

    def _page_keys(self, queryset):
        """The page's rows with their key alone (the cursor needs nothing else: every ordering
        here is the id's)."""
        return super().paginate_queryset(queryset.select_related(None).only("pk"))

    def paginate_queryset(self, queryset):
        """A page's keys first, then its rows by key. A filter whose index holds the id (a price
        range, migration 0018) finds the page's keys in the index alone, instead of reading
        every matching row from the table to learn its id, only to keep 100 of them."""
        keys = self._page_keys(queryset)
        if keys is None:
            return None
        # By key alone: the filters chose the keys (a search's words tested again on 100 rows
        # could lead the planner to its trigram index instead of the key).
        rows = self.get_queryset().in_bulk([key.pk for key in keys])
        return [rows[key.pk] for key in keys if key.pk in rows]  # one deleted since is left out

    def _csv(self, request):
        """The whole filtered list, in its order; with `page_size` or `cursor`, one page of it, the
        neighbouring pages in a `Link` header (RFC 8288)."""
        queryset = self.filter_queryset(self.get_queryset())
        links = {}
        paginator = self.paginator
        if {paginator.cursor_query_param, paginator.page_size_query_param} & set(request.query_params):
            page = self._page_keys(queryset)  # which rows; the CSV reads them
            queryset = queryset.filter(pk__in=[row.pk for row in page])
            links = {"next": paginator.get_next_link(), "prev": paginator.get_previous_link()}
        response = csv_response(queryset, self.csv_fields, filename=f"{self.basename}s.csv")
        if any(links.values()):
            response["Link"] = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items() if url)
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, StreamingHttpResponse):
            return response
        if getattr(response, "exception", False) and getattr(request, "accepted_renderer", None) \
                and request.accepted_renderer.format == "csv":  # a refused CSV request says why, in JSON
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


class SellerViewSet(DiscoveredViewSet):
    queryset = Seller.objects.all()
    serializer_class = s.SellerSerializer
    filterset_class = SellerFilter
    search_fields = ["=external_id", "name_upper"]
    csv_fields = SELLER_FIELDS


class OfferViewSet(DiscoveredViewSet):
    """Who sells what: one row per product × seller × condition (`?product=`, `?seller=`)."""

    queryset = Offer.objects.select_related("product", "seller")
    serializer_class = s.OfferSerializer
    filterset_class = OfferFilter
    search_fields = ["=product__external_id", "=seller__external_id"]
    csv_fields = OFFER_FIELDS


class ProductViewSet(DiscoveredViewSet):
    queryset = Product.objects.select_related("seller", "seen")
    serializer_class = s.ProductSerializer
    filterset_class = ProductFilter
    search_fields = ["=search__external_id", "search__title_upper"]  # ProductSearch
    csv_fields = PRODUCT_FIELDS


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
