from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse
from django.urls import include, path, reverse
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.renderers import JSONRenderer

from collection.api.permissions import CanAutomate


def not_found(request, exception=None):
    """Under /api/ a client gets the API's error shape, not an HTML page; elsewhere Django's."""
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "not_found", "detail": f"No API endpoint at {request.path}."}, status=404)
    return page_not_found(request, exception)


handler404 = not_found


class SchemaView(SpectacularAPIView):
    """The OpenAPI document, YAML unless JSON is asked for; its errors are the API's JSON error
    body whatever format was asked for (a YAML renderer wrote them as a nested mapping)."""

    permission_classes = [CanAutomate]

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return response


class DocsView(SpectacularSwaggerSplitView):
    """Swagger UI: an anonymous visitor is sent to log in and comes back, not shown a bare 401."""

    permission_classes = [CanAutomate]

    def handle_exception(self, exc):
        if isinstance(exc, (NotAuthenticated, AuthenticationFailed)):
            return redirect_to_login(self.request.get_full_path(), reverse("rest_framework:login"))
        return super().handle_exception(exc)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/collection/", include("collection.api.urls")),
    # Log in and out for the browsable API and /api/docs/ (a session; clients use tokens).
    path("api/auth/", include("rest_framework.urls")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    # The split view serves Swagger UI's initialising script from a URL: it runs under the CSP.
    path("api/docs/", DocsView.as_view(url_name="schema"), name="swagger-ui"),
]
