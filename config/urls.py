from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from collection.api.permissions import CanAutomate

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/collection/", include("collection.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[CanAutomate]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[CanAutomate]),
        name="swagger-ui",
    ),
]
