"""schemathesis against the live schema, over real HTTP, with an operator token: all its default
checks (no server error, every status code and body as documented, schema-valid input accepted,
schema-violating input refused, …) with real objects behind the `{id}` paths."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from collection.models import Offer, Product, Seller
from tests.factories import make_categories, make_run, seed_offers

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = Path(__file__).with_name("schemathesis.toml")


def path_ids(**ids: int) -> str:
    """schemathesis config giving each collection's `{id}` paths an object that exists."""
    return "".join(f'\n[[operations]]\ninclude-path-regex = "^/api/collection/{name}/\\\\{{id\\\\}}/"\n'
                   f'parameters = {{ "path.id" = {pk} }}\n' for name, pk in ids.items())


def test_schemathesis_finds_nothing_the_schema_does_not_say(live_server, operator, tmp_path):
    categories = make_categories(3, items=40)
    run = make_run(categories=categories[:1])
    seed_offers(run_id=None)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.read_text() + path_ids(
        runs=run.pk, categories=categories[0].pk, sellers=Seller.objects.first().pk,
        products=Product.objects.first().pk, offers=Offer.objects.first().pk))
    token = Token.objects.create(user=operator).key
    st = shutil.which("st") or str(Path(sys.executable).with_name("st"))
    result = subprocess.run(
        [st, "--config-file", str(config), "run", f"{live_server.url}/api/schema/?format=json",
         "--header", f"Authorization: Token {token}",
         "--max-examples", "10", "--workers", "1", "--seed", "1", "--request-timeout", "20",
         "--phases", "examples,coverage,fuzzing", "--generation-deterministic"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={"PYTHONPATH": str(settings.BASE_DIR),
                                                                          "PATH": str(Path(sys.executable).parent)},
    )
    report = Path(settings.BASE_DIR) / "artifacts" / "schemathesis.txt"  # the whole report, for a failure
    report.parent.mkdir(exist_ok=True)
    report.write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"see {report}\n" + result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout.lower()
    # Nothing went untested: every {id} path reached an object, every body was validated.
    assert "Missing test data" not in result.stdout and "validation skipped" not in result.stdout, result.stdout[-3000:]
