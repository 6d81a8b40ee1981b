from rest_framework.permissions import BasePermission


class CanAutomate(BasePermission):
    """Every endpoint requires `collection.automation` (the "Operators" group holds it)."""

    message = "You need the permission collection.automation (can estimate, start and manage collection runs)."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("collection.automation"))
