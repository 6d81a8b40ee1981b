"""Source registry: sources are backends named in settings.COLLECTION_SOURCES (key → dotted path)."""

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import (  # noqa: F401  (the public interface of sources)
    BaseSource,
    CategoryInfo,
    CategoryPlan,
    FatalSourceError,
    OfferItem,
    Page,
    PermanentSourceError,
    Pricing,
    ProductItem,
    QuotaExhausted,
    QuotaKind,
    RetryableSourceError,
    SellerItem,
    SharedState,
    SourceError,
    SourceWarning,
    Throttled,
)


class UnknownSource(LookupError):
    def __init__(self, key: str):
        super().__init__(f"unknown source {key!r}; registered: {', '.join(sorted(settings.COLLECTION_SOURCES))}")
        self.key = key


def source_keys() -> list[str]:
    return sorted(settings.COLLECTION_SOURCES)


@cache
def _load(key: str, path: str) -> BaseSource:
    return import_string(path)()


def get_source(key: str) -> BaseSource:
    try:
        path = settings.COLLECTION_SOURCES[key]
    except (KeyError, TypeError):
        raise UnknownSource(str(key)) from None
    return _load(key, path)
