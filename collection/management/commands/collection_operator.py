import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = (
        "Create (or update) the operator login: a staff user in the Operators group. Username and "
        "password come from OPERATOR_USERNAME / OPERATOR_PASSWORD; without a password one is "
        "generated and printed (only when the user is new)."
    )

    def handle(self, **options):
        username = os.environ.get("OPERATOR_USERNAME", "operator")
        password = os.environ.get("OPERATOR_PASSWORD", "")
        User = get_user_model()
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
            generated = ""
            if password:
                user.set_password(password)
            elif created:
                generated = secrets.token_urlsafe(12)
                user.set_password(generated)
            user.is_staff = True
            user.save()
            user.groups.add(Group.objects.get(name="Operators"))
        if created:
            self.stdout.write(f"operator login created: {username}")
        else:
            self.stdout.write(f"operator login {username} is ready" + (" (password updated)" if password else ""))
        if generated:
            self.stdout.write(self.style.WARNING(f"generated password for {username}: {generated}"))
