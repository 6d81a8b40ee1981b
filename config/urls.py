from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from collection.api.permissions import CanAutomate


def not_found(request, exception=None):
    """Under /api/ a client gets the API's error shape, not an HTML page; elsewhere Django's."""
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "not_found", "detail": f"No API endpoint at {request.path}."}, status=404)
    return page_not_found(request, exception)


handler404 = not_found

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
