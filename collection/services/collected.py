"""Deleting collected data (products, sellers, offers) while workers may be storing pages.

A page's checkpoint locks rows in one order: the sellers it refreshes (by id), then its products
(by external id: the upsert's order), then their offers and last sightings (checkpoint.py),
and queues them for title search; the search indexer takes a queued product, then writes its
entry (search_index.py).
Django's own deletion goes the other way: it deletes a product's offers and last sighting first,
then the product, and a seller's offers before it clears its products' seller. Against a page
storing the same product at that moment, each transaction then waits for a row the other holds:
PostgreSQL aborts one of them, and when that is the page, its fetch (already paid for) is
retried and paid again. So a deletion here first locks what it will touch in the checkpoint's
order: a page already holding a row finishes first, and a later page waits for the deletion.

Deleted in batches of BATCH rows (SELLER_BATCH sellers), each its own transaction, so that deleting many rows never
holds their locks, and the workers waiting on them, for long. A deletion stopped half way leaves
whole batches deleted; running it again deletes the rest.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from collection.models import Offer, Product, ProductSearch, ProductSearchQueue, ProductSeen, Seller

BATCH = 500
SELLER_BATCH = 100


def products_delete(*, products: QuerySet[Product], batch: int = BATCH) -> int:
    """Delete these products with their offers and last sightings; returns how many went."""
    deleted = 0
    for ids in _batches(products, batch):
        with transaction.atomic():
            locked = _lock_products(Product.objects.filter(pk__in=ids))
            # The indexer takes a product's queue row, then writes its search entry: the same
            # order here (Django's cascade could take the entry first, and deadlock with it).
            ProductSearchQueue.objects.filter(product_id__in=locked).delete()
            ProductSearch.objects.filter(product_id__in=locked).delete()
            deleted += _deleted(Product.objects.filter(pk__in=locked), Product)
    return deleted


def sellers_delete(*, sellers: QuerySet[Seller], batch: int = SELLER_BATCH) -> int:
    """Delete these sellers with their offers; their products stay, without a seller. Returns
    how many sellers went. A seller's products are let go of first, BATCH at a time (a big
    seller has hundreds of thousands), then the sellers go with what pages gave them meanwhile."""
    deleted = 0
    for ids in _batches(sellers, batch):
        while _release_products(ids) == BATCH:
            pass
        with transaction.atomic():
            locked = list(Seller.objects.filter(pk__in=ids).order_by("pk").select_for_update()
                          .values_list("pk", flat=True))
            _lock_products(_products_of(locked))
            deleted += _deleted(Seller.objects.filter(pk__in=locked), Seller)
    return deleted


def offers_delete(*, offers: QuerySet[Offer], batch: int = BATCH) -> int:
    """Delete these offers (their products and sellers stay); returns how many went. A page
    locks an offer after its product, so the products are locked first here too."""
    deleted = 0
    for ids in _batches(offers, batch):
        with transaction.atomic():
            _lock_products(Product.objects.filter(pk__in=Offer.objects.filter(pk__in=ids).values("product_id")))
            deleted += _deleted(Offer.objects.filter(pk__in=ids), Offer)
    return deleted


def collected_delete(*, rows: QuerySet, batch: int = BATCH) -> int:
    """Delete products, sellers or offers, by the model of `rows`; returns how many went."""
    if rows.model is Product:
        return products_delete(products=rows, batch=batch)
    if rows.model is Seller:
        return sellers_delete(sellers=rows, batch=min(batch, SELLER_BATCH))
    if rows.model is Offer:
        return offers_delete(offers=rows, batch=batch)
    raise TypeError(f"collected_delete: not collected data: {rows.model.__name__}")


def deletion_counts(queryset: QuerySet) -> dict[type, int]:
    """What deleting `queryset` (products, sellers or offers) deletes, counted by the database
    (a seller can have hundreds of thousands of offers): {model: rows}, rows > 0 only."""
    model = queryset.model
    ids = queryset.values("pk")
    if model is Product:
        counts = {Product: queryset.count(), Offer: Offer.objects.filter(product_id__in=ids).count(),
                  ProductSeen: ProductSeen.objects.filter(product_id__in=ids).count()}
    elif model is Seller:
        counts = {Seller: queryset.count(), Offer: Offer.objects.filter(seller_id__in=ids).count()}
    elif model is Offer:
        counts = {Offer: queryset.count()}
    else:
        raise TypeError(f"deletion_counts: not collected data: {model.__name__}")
    return {counted: rows for counted, rows in counts.items() if rows}


def sellers_products_count(sellers: QuerySet[Seller]) -> int:
    """How many products deleting these sellers keeps, without a seller."""
    return Product.objects.filter(seller_id__in=sellers.values("pk")).count()


def _batches(queryset: QuerySet, batch: int):
    """The queryset's ids, `batch` at a time in id order; each batch is read after the previous
    one was deleted, so the walk resumes past it."""
    after = None
    while True:
        page = queryset.order_by("pk")
        if after is not None:
            page = page.filter(pk__gt=after)
        ids = list(page.values_list("pk", flat=True)[:batch])
        if not ids:
            return
        yield ids
        after = ids[-1]


def _products_of(sellers: list[int]) -> QuerySet[Product]:
    """The products a seller's deletion writes: those it is the seller of, and those it has an
    offer on (an Amazon product's offers are other sellers' too). A union of two index lookups:
    one query with OR on a subquery reads every product."""
    return Product.objects.filter(pk__in=Product.objects.filter(seller_id__in=sellers).values("pk").union(
        Offer.objects.filter(seller_id__in=sellers).values("product_id")))


def _release_products(sellers: list[int]) -> int:
    """One transaction: up to BATCH of these sellers' products, locked in the checkpoint's
    order, lose the seller and its offers. Returns how many products."""
    with transaction.atomic():
        products = _lock_products(_products_of(sellers), limit=BATCH)
        Product.objects.filter(pk__in=products, seller_id__in=sellers).update(seller=None)
        Offer.objects.filter(product_id__in=products, seller_id__in=sellers).delete()
    return len(products)


def _lock_products(products: QuerySet[Product], limit: int | None = None) -> list[int]:
    """Lock these products (the first `limit` of them) in the checkpoint's order: a page's
    products share a platform and are upserted by external id. Returns their ids."""
    locked = products.order_by("platform", "external_id").select_for_update().values_list("pk", flat=True)
    return list(locked[:limit] if limit else locked)


def _deleted(queryset: QuerySet, model) -> int:
    return queryset.delete()[1].get(model._meta.label, 0)
