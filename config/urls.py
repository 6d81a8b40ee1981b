from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from collection.api.permissions import CanAutomate

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/collection/", include("collection.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[CanAutomate]), name="schema"),
    # The split view serves Swagger UI's initialising script from a URL: it runs under the CSP.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", permission_classes=[CanAutomate]),
        name="swagger-ui",
    ),
]
