import csv
import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from collection.models import CollectionRun, RunStatus
from collection.services.checkpoint import upsert_items
from collection.sources.demo import demo_item
from tests.conftest import ROOT, Workers, make_categories, worker_env
from tests.factories import make_run, seed_offers

pytestmark = pytest.mark.django_db


def out(capsys, *args) -> str:
    call_command(*args)
    return capsys.readouterr().out


def test_estimate_prints_a_table_or_json_and_exits_3_when_over_budget(capsys):
    cats = make_categories(2, items=40)
    ids = [str(c.pk) for c in cats]
    text = out(capsys, "collection_estimate", "demo", *ids)
    assert "total: 80 items, 4 pages, 0.1200 USD" in text and "within budget" in text
    data = json.loads(out(capsys, "collection_estimate", "demo", *ids, "--json"))
    assert data["total_cost"] == "0.1200" and data["within_budget"] is True
    with pytest.raises(SystemExit) as exit_:
        call_command("collection_estimate", "demo", *ids, "--cap", "0.05")
    assert exit_.value.code == 3 and "OVER BUDGET" in capsys.readouterr().out


def test_bad_input_exits_2_and_names_the_field():
    with pytest.raises(CommandError) as caught:
        call_command("collection_run", "demo", "999999")
    assert caught.value.returncode == 2 and "categories" in str(caught.value)
    with pytest.raises(CommandError) as caught:
        call_command("collection_run", "nope", "1")
    assert caught.value.returncode == 2 and "source" in str(caught.value)


def test_run_refused_over_budget_exits_3_and_creates_nothing():
    cats = make_categories(1, items=40)
    with pytest.raises(CommandError) as caught:
        call_command("collection_run", "demo", str(cats[0].pk), "--cap", "0.01")
    assert caught.value.returncode == 3 and "over budget" in str(caught.value)
    assert CollectionRun.objects.count() == 0


def test_lifecycle_commands_and_status(capsys, django_capture_on_commit_callbacks):
    cats = make_categories(1, items=40)
    with django_capture_on_commit_callbacks(execute=False):
        data = json.loads(out(capsys, "collection_run", "demo", str(cats[0].pk), "--json"))
    run_id = data["id"]
    assert data["status"] == "running" and data["budget_cap"] == "100.0000"
    assert out(capsys, "collection_pause", str(run_id)) == f"run #{run_id}: paused\n"
    with pytest.raises(CommandError) as caught:
        call_command("collection_pause", str(run_id))
    assert caught.value.returncode == 4 and "cannot pause a paused run" in str(caught.value)
    with django_capture_on_commit_callbacks(execute=False):
        assert json.loads(out(capsys, "collection_resume", str(run_id), "--json"))[0]["status"] == "running"
    assert "cancelled" in out(capsys, "collection_cancel", str(run_id))
    table = out(capsys, "collection_status")
    assert table.splitlines()[0].split()[:3] == ["id", "status", "reason"] and "cancelled" in table
    assert json.loads(out(capsys, "collection_status", str(run_id), "--json"))[0]["status"] == "cancelled"
    with pytest.raises(CommandError) as caught:
        call_command("collection_status", "424242")
    assert "does not exist" in str(caught.value)


def test_export_streams_csv_to_a_file(tmp_path, capsys):
    cat = make_categories(1)[0]
    upsert_items(platform="demo", items=[demo_item("x", i) for i in range(30)], run_id=None, category_id=cat.pk)
    target = tmp_path / "products.csv"
    call_command("collection_export", "products", "--output", str(target))
    rows = list(csv.reader(target.open()))
    assert rows[0][2] == "external_id" and len(rows) == 31
    assert "30 products written" in capsys.readouterr().err
    sellers = out(capsys, "collection_export", "sellers")
    assert sellers.splitlines()[0].startswith("id,platform,external_id")
    seed_offers()
    offers = out(capsys, "collection_export", "offers", "--platform", "amazon").splitlines()
    assert offers[0].startswith("id,product__platform,product__external_id") and len(offers) == 1 + 10
    assert len(out(capsys, "collection_export", "offers", "--platform", "demo").splitlines()) == 1 + 30


@pytest.mark.django_db(transaction=True)
def test_run_wait_follows_a_real_worker_to_the_end(tmp_path):
    cats = make_categories(2, items=60)
    workers = Workers(tmp_path)
    try:
        workers.start(1)
        done = subprocess.run(
            [sys.executable, "manage.py", "collection_run", "demo", *[str(c.pk) for c in cats], "--wait"],
            cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=120,
        )
    finally:
        workers.stop()
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and "pages 6, items 120" in done.stdout
    assert "pages" in done.stderr  # the progress bar
    assert CollectionRun.objects.get().status == RunStatus.COMPLETED


def test_several_run_ids_are_all_attempted_and_the_exit_code_says_a_failure(capsys,
                                                                            django_capture_on_commit_callbacks):
    first, second = (make_run(categories=1, items=20, status=RunStatus.RUNNING) for _ in range(2))
    with pytest.raises(CommandError) as caught:
        call_command("collection_pause", str(first.pk), "424242", str(second.pk))
    assert caught.value.returncode == 5 and "run #424242: not paused: run 424242 does not exist" in str(caught.value)
    assert capsys.readouterr().out == f"run #{first.pk}: paused\nrun #{second.pk}: paused\n"
    with pytest.raises(CommandError) as caught:
        call_command("collection_status", str(first.pk), "424242")
    assert caught.value.returncode == 5 and f"{first.pk:>6} paused" in capsys.readouterr().out


def test_bad_status_and_bad_output_path_are_errors_not_tracebacks(tmp_path):
    with pytest.raises(CommandError, match="invalid choice: 'runing'"):
        call_command("collection_status", "--status", "runing")
    with pytest.raises(CommandError) as caught:
        call_command("collection_export", "sellers", "--output", str(tmp_path / "missing" / "x.csv"))
    assert caught.value.returncode == 2 and "cannot write" in str(caught.value)
    with pytest.raises(CommandError) as caught:
        call_command("collection_export", "sellers", "--run", "424242")
    assert caught.value.returncode == 5


@pytest.mark.django_db(transaction=True)
def test_a_closed_pipe_ends_an_export_quietly():
    cat = make_categories(1)[0]
    upsert_items(platform="demo", items=[demo_item("pipe", i) for i in range(5000)], run_id=None, category_id=cat.pk)
    # like `… | head -2`: read two lines, then close the pipe while the command still writes
    proc = subprocess.Popen([sys.executable, "manage.py", "collection_export", "products"], cwd=ROOT, env=worker_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert lines[0].startswith("id,platform,external_id") and lines[1]
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_json_output_is_the_apis_run_representation(capsys, operator):
    from rest_framework.test import APIClient

    run = make_run(categories=1, items=20)
    from_command = json.loads(out(capsys, "collection_status", str(run.pk), "--json"))[0]
    api = APIClient()
    api.force_authenticate(operator)
    from_api = api.get(f"/api/collection/runs/{run.pk}/").json()
    assert from_command == from_api  # same names, same time and money formats
    assert from_api["estimated_cost"] == "0.0300" and "eta_seconds" in from_api
