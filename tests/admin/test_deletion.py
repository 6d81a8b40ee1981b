import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from collection.admin import DeletesCollected
from collection.models import Offer, Product, ProductSeen, Seller
from collection.services.checkpoint import upsert_items
from collection.sources.demo import demo_item
from tests.factories import make_categories, seed_offers

pytestmark = pytest.mark.django_db

PRODUCTS = reverse("admin:collection_product_changelist")


def seed(n: int) -> list[int]:
    upsert_items(platform="demo", items=[demo_item("x", i) for i in range(n)], run_id=None,
                 category_id=make_categories(1)[0].pk)
    return list(Product.objects.order_by("pk").values_list("pk", flat=True))


def test_deleting_selected_products_confirms_with_counts_then_deletes_them_with_their_offers(admin_client):
    ids = seed(30)
    selected = {"action": "delete_selected", "_selected_action": ids[:25]}
    page = admin_client.post(PRODUCTS, selected)
    html = page.content.decode()
    assert page.status_code == 200 and "Are you sure" in html
    assert html.count("<li>Product: <a href=") == DeletesCollected.LISTED  # named up to LISTED, then counted
    assert "… and 5 more products" in html
    assert dict(page.context["model_count"]) == {"products": 25, "offers": 25, "last sightings": 25}

    done = admin_client.post(PRODUCTS, {**selected, "post": "yes"}, follow=True)
    assert "Successfully deleted 25 products." in done.content.decode()
    assert list(Product.objects.values_list("pk", flat=True)) == ids[25:]
    assert Offer.objects.count() == ProductSeen.objects.count() == 5


def test_a_seller_is_deleted_from_its_page_with_its_offers_and_its_products_stay(admin_client):
    seed_offers()
    shop3 = Seller.objects.get(external_id="A3SELLER")
    url = reverse("admin:collection_seller_delete", args=[shop3.pk])
    html = admin_client.get(url).content.decode()
    assert "Offers: 4" in html and "products stay" not in html  # an Amazon seller: offers only
    admin_client.post(url, {"post": "yes"})
    assert not Seller.objects.filter(pk=shop3.pk).exists()
    assert not Offer.objects.filter(seller_id=shop3.pk).exists() and Product.objects.count() == 3


def test_a_sellers_confirmation_says_its_products_stay(admin_client):
    seed(3)
    seller = Product.objects.first().seller
    kept = Product.objects.filter(seller=seller).count()
    html = admin_client.get(reverse("admin:collection_seller_delete", args=[seller.pk])).content.decode()
    assert f"Their {kept} product{' stays' if kept == 1 else 's stay'}, without a seller." in html


def test_a_selection_larger_than_the_console_deletes_is_refused_and_nothing_goes(admin_client, monkeypatch):
    ids = seed(4)
    monkeypatch.setattr(DeletesCollected, "MAX_DELETED", 3)
    across = {"action": "delete_selected", "select_across": "1", "index": "0", "_selected_action": ids[:1]}
    done = admin_client.post(PRODUCTS, across, follow=True)
    assert [str(m) for m in done.context["messages"]] == [
        "More than 3 products are selected: narrow the selection (a filter or a search) and delete them in parts. "
        "Nothing was deleted."]
    assert Product.objects.count() == 4
    monkeypatch.setattr(DeletesCollected, "MAX_DELETED", 4)  # as many as there are: confirmed as usual
    assert "Are you sure" in admin_client.post(PRODUCTS, across).content.decode()


def test_the_largest_selection_the_console_deletes_is_confirmed_within_djangos_field_limit(admin_client):
    ids = seed(DeletesCollected.MAX_DELETED)
    confirmed = {"action": "delete_selected", "_selected_action": ids, "post": "yes"}  # one field a row
    done = admin_client.post(PRODUCTS, confirmed, follow=True)
    assert f"Successfully deleted {len(ids)} products." in done.content.decode()
    assert not Product.objects.exists()


@pytest.mark.parametrize("automation", [False, True])
def test_deleting_collected_data_needs_the_delete_permission_and_automation(client, automation):
    ids = seed(2)
    user = User.objects.create_user("deleter", password="deleter-password-123", is_staff=True)
    codenames = ["view_product", "delete_product", "delete_offer", *(["automation"] if automation else [])]
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="collection",
                                                         codename__in=codenames))
    client.force_login(user)
    page = client.post(PRODUCTS, {"action": "delete_selected", "_selected_action": ids, "post": "yes"}, follow=True)
    assert ("delete_selected" in dict(page.context["action_form"].fields["action"].choices)) is automation
    assert Product.objects.count() == (0 if automation else 2)
