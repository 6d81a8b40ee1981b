"""The collection domain: settings, categories, runs and their units, the audit log, the
monthly budget ledger, and the sellers and products that runs discover."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Round, Upper
from django.db.models.lookups import GreaterThanOrEqual
from django.utils import timezone

from collection.money import MONEY

ZERO = Decimal("0")


def within_cap(cap: str = "budget_cap") -> GreaterThanOrEqual:
    """`spent + reserved <= cap`, rounded so SQLite's floating-point NUMERIC compares exactly."""
    return GreaterThanOrEqual(Round(F(cap) - F("spent") - F("reserved"), 6), 0)


def ledger_constraints(prefix: str, cap: str) -> list[models.CheckConstraint]:
    """The invariants of a money ledger (a run, a month), enforced by the database."""
    return [
        models.CheckConstraint(condition=Q(spent__gte=0), name=f"{prefix}_spent_gte_0"),
        models.CheckConstraint(condition=Q(reserved__gte=0), name=f"{prefix}_reserved_gte_0"),
        models.CheckConstraint(condition=within_cap(cap), name=f"{prefix}_spend_within_cap"),
    ]


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class PauseReason(models.TextChoices):
    OPERATOR = "operator", "Paused by an operator"
    BUDGET = "budget", "Budget cap reached"
    QUOTA = "quota", "Source quota used up"
    INTERRUPTED = "interrupted", "Interrupted (workers died too often)"
    SOURCE_ERROR = "source_error", "Source error"


class UnitStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for a slot (run concurrency) or for resume
    QUEUED = "queued", "Queued"  # a task is enqueued for it
    RUNNING = "running", "Running"  # a worker holds its lease
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class OnInterrupt(models.TextChoices):
    RESUME = "resume", "Resume automatically (up to the limit), then pause"
    PAUSE = "pause", "Pause the run for an operator"


class CollectionSettings(models.Model):
    """The one settings row (pk=1). Read it with `CollectionSettings.load()`."""

    run_budget_cap = models.DecimalField(
        **MONEY, default=Decimal("100"), validators=[MinValueValidator(ZERO)],
        help_text="The most one run may spend.",
    )
    monthly_budget_cap = models.DecimalField(
        **MONEY, default=Decimal("1000"), validators=[MinValueValidator(ZERO)],
        help_text="The most all runs together may spend in a calendar month.",
    )
    currency = models.CharField(max_length=3, default="USD")
    default_items_per_category = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1), MaxValueValidator(10_000_000)],
        help_text="Items expected in a category whose real count is not known yet.",
    )
    concurrency_per_run = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="How many categories of one run are collected at the same time.",
    )
    lease_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(3600)],
        help_text="A worker that has not checkpointed for this long is presumed dead.",
    )
    on_interrupt = models.CharField(max_length=10, choices=OnInterrupt.choices, default=OnInterrupt.RESUME)
    max_auto_recoveries = models.PositiveIntegerField(
        default=5, validators=[MaxValueValidator(1000)],
        help_text="How often one category may be resumed automatically after a worker died.",
    )
    max_unit_attempts = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Retryable source errors in a row before a category is marked failed.",
    )
    warning_threshold_percent = models.PositiveSmallIntegerField(
        default=80, validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Warn (event log) when a run has spent this share of its cap.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "collection settings"
        verbose_name_plural = "collection settings"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="settings_single_row"),
            models.CheckConstraint(condition=Q(run_budget_cap__gte=0), name="settings_run_cap_gte_0"),
            models.CheckConstraint(condition=Q(monthly_budget_cap__gte=0), name="settings_month_cap_gte_0"),
        ]

    def __str__(self):
        return "Collection settings"

    @classmethod
    def load(cls) -> "CollectionSettings":
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class Category(models.Model):
    platform = models.CharField(max_length=32)
    external_id = models.CharField(max_length=128)
    name = models.CharField(max_length=255)
    parent_external_id = models.CharField(max_length=128, blank=True)
    level = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Depth in the provider's tree: 1 = top level (eBay's categoryTreeNodeLevel)."
    )
    is_leaf = models.BooleanField(
        default=True, help_text="A category with subcategories is collected through its leaf categories.",
    )
    known_item_count = models.PositiveIntegerField(
        null=True, blank=True, help_text="Items the source reported for this category, when known."
    )
    item_count_measured_at = models.DateTimeField(null=True, blank=True)
    last_collected_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["platform", "name"]
        constraints = [
            models.UniqueConstraint(fields=["platform", "external_id"], name="category_unique_external_id"),
        ]
        indexes = [models.Index(fields=["platform", "parent_external_id"], name="category_parent_idx")]

    def __str__(self):
        return f"{self.name} ({self.platform}:{self.external_id})"


class CollectionRun(models.Model):
    source = models.CharField(max_length=32)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.PENDING)
    pause_reason = models.CharField(max_length=16, choices=PauseReason.choices, blank=True)
    budget_cap = models.DecimalField(**MONEY)
    estimate = models.JSONField(default=dict, help_text="The estimate at creation (snapshot).")
    estimated_cost = models.DecimalField(**MONEY, default=ZERO)
    spent = models.DecimalField(**MONEY, default=ZERO)
    reserved = models.DecimalField(**MONEY, default=ZERO)
    currency = models.CharField(max_length=3, default="USD")

    units_total = models.PositiveIntegerField(default=0)
    units_done = models.PositiveIntegerField(default=0)
    units_failed = models.PositiveIntegerField(default=0)
    pages_done = models.PositiveIntegerField(default=0)
    pages_estimated = models.PositiveIntegerField(default=0)
    items_done = models.PositiveIntegerField(default=0)
    sellers_new = models.PositiveIntegerField(default=0)
    items_unreachable = models.PositiveIntegerField(
        default=0, help_text="Listings the provider reported but would not serve (a partition above its result cap).",
    )
    quota_resets_at = models.DateTimeField(null=True, blank=True)
    budget_warned_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resumed_at = models.DateTimeField(null=True, blank=True)
    resumed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    finished_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("automation", "Can estimate, start and manage collection runs")]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="run_status_created_idx"),
            models.Index(fields=["source", "-created_at"], name="run_source_created_idx"),
            models.Index(fields=["created_at", "id"], name="run_created_idx"),
        ]
        constraints = ledger_constraints("run", "budget_cap")

    def __str__(self):
        return f"Run #{self.pk} ({self.source}, {self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def progress_percent(self) -> int:
        """Pages done against pages expected, 100 once every unit has ended."""
        if self.units_total and self.units_done + self.units_failed >= self.units_total:
            return 100
        expected = max(self.pages_estimated, 1)
        return min(99, int(self.pages_done * 100 / expected))

    @property
    def eta_seconds(self) -> int | None:
        """While running: the estimated pages left at the pace so far (None when unknown)."""
        if self.status != RunStatus.RUNNING or not self.started_at or not self.pages_done:
            return None
        elapsed = (timezone.now() - self.started_at).total_seconds()
        return int(max(self.pages_estimated - self.pages_done, 0) * elapsed / self.pages_done)


class RunUnit(models.Model):
    """One category of one run: its checkpoint (cursor), progress, lease and reservation."""

    run = models.ForeignKey(CollectionRun, on_delete=models.CASCADE, related_name="units")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="units")
    status = models.CharField(max_length=10, choices=UnitStatus.choices, default=UnitStatus.PENDING)
    cursor = models.JSONField(null=True, blank=True, help_text="Where the next page starts; null = the beginning.")
    pages_done = models.PositiveIntegerField(default=0)
    items_done = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(**MONEY, default=ZERO)
    reserved = models.DecimalField(**MONEY, default=ZERO, help_text="The in-flight page's reservation.")
    quota_reserved = models.PositiveSmallIntegerField(default=0, help_text="Calls reserved for the page in flight.")
    quota_period = models.ForeignKey(
        "QuotaPeriod", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
    )
    reserved_period = models.ForeignKey(
        "BudgetPeriod", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The month ledger that holds the in-flight reservation.",
    )
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Failed attempts at the current page.")
    recoveries = models.PositiveIntegerField(default=0, help_text="Times resumed after a worker died.")
    dispatch_token = models.CharField(
        max_length=32, blank=True, help_text="Only the task carrying this token may advance the unit."
    )
    last_error = models.TextField(blank=True)
    note = models.TextField(blank=True, help_text="Why the category ended as it did, when not simply collected.")
    items_unreachable = models.PositiveIntegerField(default=0)
    task_id = models.CharField(max_length=64, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["run", "status"], name="unit_run_status_idx"),
            models.Index(
                fields=["lease_expires_at"], name="unit_leased_idx", condition=Q(lease_expires_at__isnull=False)
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["run", "category"], name="unit_one_per_run_category"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="unit_reserved_gte_0"),
            models.CheckConstraint(condition=Q(cost__gte=0), name="unit_cost_gte_0"),
        ]

    def __str__(self):
        return f"Run #{self.run_id} / {self.category_id}"


class EventKind(models.TextChoices):
    CREATED = "created", "Created"
    STARTED = "started", "Started"
    PAUSED = "paused", "Paused"
    RESUMED = "resumed", "Resumed"
    CANCELLED = "cancelled", "Cancelled"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    BUDGET_CHANGED = "budget_changed", "Budget cap changed"
    BUDGET_WARNING = "budget_warning", "Budget warning"
    UNIT_DONE = "unit_done", "Category done"
    UNIT_RETRY = "unit_retry", "Source error, retrying"
    UNIT_FAILED = "unit_failed", "Category failed"
    RECOVERED = "recovered", "Recovered after a worker died"
    REDISPATCHED = "redispatched", "Lost trigger dispatched again"
    OVERCHARGE = "overcharge", "Source charged more than it declared"
    SOURCE_WARNING = "source_warning", "Source warning"
    CATEGORY_GONE = "category_gone", "Category no longer exists at the source"
    PARTITIONED = "partitioned", "Category split into partitions"
    INCOMPLETE = "incomplete", "Listings the source would not serve"


class RunEvent(models.Model):
    """Append-only audit log of a run."""

    run = models.ForeignKey(CollectionRun, on_delete=models.CASCADE, related_name="events")
    unit = models.ForeignKey(RunUnit, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["run", "created_at"], name="event_run_created_idx")]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.kind}"


class SpendSample(models.Model):
    """A run's spend at a moment, written every few seconds while it runs (for the chart)."""

    run = models.ForeignKey(CollectionRun, on_delete=models.CASCADE, related_name="spend_samples")
    at = models.DateTimeField()
    spent = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["run", "at"], name="sample_run_at_idx")]

    def __str__(self):
        return f"{self.at:%H:%M:%S} {self.spent}"


class QuotaPeriod(models.Model):
    """A source's call quota for one UTC day: like money, reserved before a call, then used."""

    source = models.CharField(max_length=32)
    day = models.DateField()
    limit = models.PositiveIntegerField()
    used = models.PositiveIntegerField(default=0)
    reserved = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day", "source"]
        constraints = [
            models.UniqueConstraint(fields=["source", "day"], name="quota_one_row_per_source_day"),
            models.CheckConstraint(condition=Q(used__lte=F("limit") - F("reserved")), name="quota_within_limit"),
        ]

    def __str__(self):
        return f"{self.source} {self.day}: {self.used}+{self.reserved}/{self.limit}"


class BudgetPeriod(models.Model):
    """One calendar month of the monthly budget; every run's reservations pass through it."""

    month = models.DateField(unique=True, help_text="The first day of the month.")
    cap = models.DecimalField(**MONEY)
    spent = models.DecimalField(**MONEY, default=ZERO)
    reserved = models.DecimalField(**MONEY, default=ZERO)

    class Meta:
        ordering = ["-month"]
        constraints = ledger_constraints("period", "cap")

    def __str__(self):
        return f"{self.month:%Y-%m}"

    @property
    def remaining(self) -> Decimal:
        return self.cap - self.spent - self.reserved


class Seller(models.Model):
    platform = models.CharField(max_length=32)
    external_id = models.CharField(max_length=128)
    name = models.CharField(max_length=255, blank=True)
    # What a search compares (selectors.search), kept by the database: see migration 0019.
    name_upper = models.GeneratedField(expression=Upper("name"), output_field=models.CharField(max_length=255),
                                       db_persist=True)
    feedback_score = models.IntegerField(null=True, blank=True)
    feedback_percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    account_type = models.CharField(max_length=16, blank=True, help_text="BUSINESS or INDIVIDUAL, where the source says.")
    country = models.CharField(max_length=2, blank=True, help_text="Where its listings are located (ISO 3166).")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    times_seen = models.PositiveIntegerField(default=1, help_text="In how many runs the seller was seen.")
    first_seen_run = models.ForeignKey(
        CollectionRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Which run saw the seller last: information only, like the offer's (no index, no constraint;
    # only a run that never started, so never saw a seller, can be deleted). An index on it would
    # take a new entry in every index of the seller each run refreshes it (migration 0027).
    last_seen_run = models.ForeignKey(
        CollectionRun, null=True, blank=True, on_delete=models.DO_NOTHING, related_name="+", db_index=False,
        db_constraint=False,
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["external_id", "platform"], name="seller_unique_external_id"),
        ]
        indexes = [
            models.Index(fields=["feedback_score", "id"], name="seller_feedback_id_idx"),
            # One column each, never platform: an index holding platform, led by it or not, can
            # be picked for the checkpoint's seller lookup (platform = … AND external_id = ANY …)
            # as a bitmap scan of every seller of the platform, on every page (bench/ caught
            # both). The filters are selective enough on their own column.
            models.Index(fields=["account_type"], name="seller_account_type_idx3"),
            models.Index(fields=["country"], name="seller_country_idx3"),
            # And on PostgreSQL a trigram index for name search (migration 0020).
        ]

    def __str__(self):
        return self.name or self.external_id


class Product(models.Model):
    platform = models.CharField(max_length=32)
    external_id = models.CharField(max_length=128)
    title = models.CharField(max_length=500)  # searched through ProductSearch (migration 0024)
    price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    # The product's one seller, where it has one (an eBay listing; its offer says the same). No
    # database-level constraint, like the offers' (see Offer): the checkpoint finds the id by
    # the seller's unique key in the same transaction, and Django's deletion clears it.
    seller = models.ForeignKey(Seller, null=True, blank=True, on_delete=models.SET_NULL, related_name="products",
                               db_constraint=False)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="products",
                                 db_index=False)  # product_category_idx (category, id) serves it
    condition = models.CharField(max_length=64, blank=True)
    buying_options = models.CharField(max_length=64, blank=True, help_text="e.g. AUCTION, FIXED_PRICE")
    location_country = models.CharField(max_length=2, blank=True)
    legacy_id = models.CharField(max_length=32, blank=True, help_text="The provider's legacy id (eBay's item number).")
    source_category_ids = models.CharField(max_length=255, blank=True, help_text="The provider's category ids.")
    first_seen_at = models.DateTimeField()
    # When it was last seen: ProductSeen (`last_seen_at` below).
    first_seen_run = models.ForeignKey(
        CollectionRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["external_id", "platform"], name="product_unique_external_id"),
        ]
        # Every index is paid for by every page the engine stores (bench/), but a filter on a value few rows
        # have (a rare condition or country, a narrow price range) would otherwise read every
        # row in id order to fill a page. With the id, a page of one value is read in order.
        indexes = [
            models.Index(fields=["category", "id"], name="product_category_idx"),
            models.Index(fields=["price", "id"], name="product_price_id_idx"),
            models.Index(fields=["condition", "id"], name="product_condition_idx"),
            models.Index(fields=["location_country", "id"], name="product_country_idx"),
        ]

    def __str__(self):
        return self.title

    @property
    def last_seen_at(self):
        """When a run last returned it (its first sighting where none is recorded). Read it
        with `select_related("seen")`: otherwise each product asks for its row."""
        seen = getattr(self, "seen", None)  # none: RelatedObjectDoesNotExist, an AttributeError
        return seen.last_seen_at if seen is not None else self.first_seen_at


class ProductSeen(models.Model):
    """When a product was last seen, kept apart from the product: a run over categories seen
    before returns mostly products that have not changed, and a sighting that changes nothing
    then writes this narrow row only (the checkpoint leaves the product's row as it is), not a
    new version of the product in each of its indexes — the title's trigram index and the
    key holding the title among them (bench/engine_throughput.py, re-sighting). On PostgreSQL
    the table leaves half of each page free (migration 0022), so the new version of a row
    fits on its page and its key is not written either (a HOT update)."""

    # No database-level constraint: written by the checkpoint after the product, in the same
    # transaction (as the offers); Django's deletion removes it with the product.
    product = models.OneToOneField(Product, primary_key=True, on_delete=models.CASCADE, related_name="seen",
                                   db_constraint=False)
    last_seen_at = models.DateTimeField()

    class Meta:
        verbose_name = "last sighting"

    def __str__(self):
        return f"product {self.product_id}, last seen {self.last_seen_at:%Y-%m-%d %H:%M}"


class ProductSearch(models.Model):
    """What a product search reads (selectors.search): a product's external id and its title in
    upper case, kept apart from the product and written after its page, not by the page's
    checkpoint. On PostgreSQL the trigram index (and a key that holds the title) made storing a
    page of new products 12–19 % slower (bench/engine_throughput.py --index-cost); the
    checkpoint now only queues the products it inserted or changed (ProductSearchQueue), and the
    workers index them in batches a few seconds later (services/search_index.py). A product not
    indexed yet is not found by a search (its page, /products/<external id>/, is there)."""

    # No database-level constraint: written by the indexer from the products' rows; Django's
    # deletion (and services/collected.py) removes it with the product.
    product = models.OneToOneField(Product, primary_key=True, on_delete=models.CASCADE, related_name="search",
                                   db_constraint=False)
    # The product's, so that every word of a search (an exact id or a part of the title) is
    # tested on this one table: a condition on the product's own column, ORed with one on this
    # table, left PostgreSQL no index to start from (it read every product).
    external_id = models.CharField(max_length=128)
    title_upper = models.CharField(max_length=500, help_text="UPPER(title), folded by the database.")

    class Meta:
        verbose_name = "search entry"
        verbose_name_plural = "search entries"
        # And on PostgreSQL a trigram index on the title, and a key holding both columns (0024).
        indexes = [models.Index(fields=["external_id"], name="product_search_external_id_idx")]

    def __str__(self):
        return f"product {self.product_id}: {self.title_upper}"


class ProductSearchQueue(models.Model):
    """Products whose search entry is to be written: queued by the checkpoint (a product it
    inserted or changed), taken by the indexer."""

    product = models.OneToOneField(Product, primary_key=True, on_delete=models.CASCADE, related_name="+",
                                   db_constraint=False)

    class Meta:
        verbose_name = "product waiting for search"

    def __str__(self):
        return f"product {self.product_id}"


class Offer(models.Model):
    """One seller's offer of one product, in one condition: an eBay listing is a product with
    one offer; an Amazon ASIN has one per seller (and condition) selling it."""

    # No database-level foreign keys: offers are written only by the checkpoint, which finds both
    # ids by their unique keys in the same transaction, and Django's deletion cascades them. A
    # constraint trigger per row and key doubled what storing a page's offers costs (bench/).
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="offers", db_index=False,
                                db_constraint=False)
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="offers", db_constraint=False)
    condition = models.CharField(max_length=64, blank=True)
    price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    fulfilled_by_platform = models.BooleanField(
        null=True, blank=True, help_text="Shipped by the marketplace (Amazon's FBA); empty where the source does not say."
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # Which run saw the offer last (information only: no index, no constraint; only a run that
    # never started, so never saw an offer, can be deleted).
    last_seen_run = models.ForeignKey(
        CollectionRun, null=True, blank=True, on_delete=models.DO_NOTHING, related_name="+", db_index=False,
        db_constraint=False,
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            # Also the index of a product's offers (it leads with the product).
            models.UniqueConstraint(fields=["product", "seller", "condition"], name="offer_unique_per_condition"),
        ]
        indexes = [  # as the products' (a narrow price range, a rare condition)
            models.Index(fields=["price", "id"], name="offer_price_id_idx"),
            models.Index(fields=["condition", "id"], name="offer_condition_idx"),
        ]


    def __str__(self):
        return f"{self.seller} · {self.product}"


class RunProduct(models.Model):
    """A product a run's pages returned: "seen in run" (not only first seen there). One row a run
    and product, written by the page's checkpoint. Keyed by (run, product), so the products a
    run saw come out of the key in product id order — the order lists page in — and a page of
    them costs the same for a run of a hundred products or of a million (bench/scale_queries.py).
    No foreign-key constraints: the checkpoint writes a row per item, and a constraint's trigger
    would look each product up again and lock it (migration 0010)."""

    pk = models.CompositePrimaryKey("run", "product")
    run = models.ForeignKey(CollectionRun, on_delete=models.CASCADE, related_name="+", db_constraint=False,
                            db_index=False)  # the key leads with it
    # A product deleted from the console leaves its rows here (finding them by product would
    # need an index every page writes): they match nothing, and the run's count still has them.
    product = models.ForeignKey(Product, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False,
                                db_index=False)

    def __str__(self):
        return f"run {self.run_id}, product {self.product_id}"


class RunSeller(models.Model):
    """A seller a run's pages returned (an item's or an offer's): as RunProduct, for sellers."""

    pk = models.CompositePrimaryKey("run", "seller")
    run = models.ForeignKey(CollectionRun, on_delete=models.CASCADE, related_name="+", db_constraint=False,
                            db_index=False)  # the key leads with it
    seller = models.ForeignKey(Seller, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False,
                               db_index=False)

    def __str__(self):
        return f"run {self.run_id}, seller {self.seller_id}"


class SourceState(models.Model):
    """Small shared state of a source, for every worker process: e.g. eBay's application token
    (never a secret from the environment). Changed under a row lock."""

    name = models.CharField(max_length=128, unique=True)
    value = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.name


class IdempotencyKey(models.Model):
    """The first response to a POST carrying an Idempotency-Key, replayed to its retries."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="A hash of the request body.")
    status_code = models.PositiveSmallIntegerField(null=True)
    response = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self):
        return self.key
