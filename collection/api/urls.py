from django.urls import path
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("categories", views.CategoryViewSet, basename="category")
router.register("runs", views.RunViewSet, basename="run")
router.register("sellers", views.SellerViewSet, basename="seller")
router.register("products", views.ProductViewSet, basename="product")
router.register("offers", views.OfferViewSet, basename="offer")

urlpatterns = [
    path("settings/", views.SettingsView.as_view(), name="settings"),
    path("sources/", views.SourcesView.as_view(), name="sources"),
    path("estimate/", views.EstimateView.as_view(), name="estimate"),
    *router.urls,
]
