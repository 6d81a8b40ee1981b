"""schemathesis against the live schema, over real HTTP, with an operator token: no server
error and no response that breaks the schema."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from tests.conftest import make_categories

pytestmark = pytest.mark.django_db(transaction=True)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_server, operator, tmp_path):
    make_categories(3, items=40)
    token = Token.objects.create(user=operator).key
    st = shutil.which("st") or str(Path(sys.executable).with_name("st"))
    result = subprocess.run(
        [st, "run", f"{live_server.url}/api/schema/?format=json", "--header", f"Authorization: Token {token}",
         "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
         "--max-examples", "10", "--workers", "1", "--seed", "1", "--request-timeout", "20",
         "--phases", "examples,coverage,fuzzing", "--generation-deterministic"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout.lower()
