"""A large CSV export to a slow client, through gunicorn as the README's production command
runs it (threaded workers: the worker process heartbeats while a thread streams): complete,
never a 200 cut off mid-row, even when the download lasts longer than the worker timeout.
The test shrinks the timeout to 2 s, reads for about 6 s through a small receive buffer, and
checks the chunked body ends with its terminating chunk and holds every row.
bench/export_slow_client.py does the same at 1,000,000 rows and 2 MB/s.
"""

import socket
import subprocess
import sys
import time

import httpx
import pytest
from rest_framework.authtoken.models import Token

from collection.services.checkpoint import upsert_items
from collection.sources.demo import demo_item
from tests.conftest import ROOT, wait_for, worker_env
from tests.factories import make_categories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]

ROWS = 60_000  # about 12 MB of CSV


def slow_download(port: int, path: str, headers: dict, *, bytes_per_second: int) -> tuple[bytes, bool]:
    """GET over a socket with a small receive buffer (so the server cannot park the whole body in
    kernel buffers), read at `bytes_per_second`. Returns the body and whether it arrived whole:
    a chunked response is whole only with its terminating zero-length chunk."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32_768)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
             *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    raw, started = bytearray(), time.monotonic()
    while data := sock.recv(16_384):
        raw += data
        ahead = len(raw) / bytes_per_second - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    sock.close()
    head, _, body = bytes(raw).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower(), head[:300]
    payload, position = bytearray(), 0
    while True:
        end = body.find(b"\r\n", position)
        if end < 0:
            return bytes(payload), False
        size = int(body[position:end].split(b";")[0] or b"0", 16)
        if size == 0:
            return bytes(payload), True
        chunk = body[end + 2:end + 2 + size]
        payload += chunk
        if len(chunk) < size:
            return bytes(payload), False
        position = end + 2 + size + 2


def serve(worker_class: str, port: int):
    command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--workers", "1", "--worker-class", worker_class,
               "--threads", "4", "--timeout", "2", "--bind", f"127.0.0.1:{port}"]
    server = subprocess.Popen(command, cwd=ROOT, env=worker_env(COLLECTION_RECOVER_ON_START="false"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/schema/", timeout=2).status_code in (200, 401, 403)
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=30, message="gunicorn to serve")
    return server


def test_a_large_export_reaches_a_slow_client_whole_under_the_documented_server(operator):
    cat = make_categories(1)[0]
    upsert_items(platform="demo", items=[demo_item("big", i) for i in range(ROWS)], run_id=None, category_id=cat.pk)
    headers = {"Authorization": f"Token {Token.objects.create(user=operator).key}"}
    path = "/api/collection/products/?format=csv"
    rate = 2_000_000

    threaded = serve("gthread", 8767)
    try:
        body, whole = slow_download(8767, path, headers, bytes_per_second=rate)
    finally:
        threaded.terminate()
        threaded.wait(timeout=10)
    lines = body.decode().splitlines()
    assert whole and body.endswith(b"\n")  # the last row whole
    assert len(lines) == ROWS + 1 and lines[0].startswith("id,platform,external_id")
    assert len(body) / rate > 2 * 2  # the download took more than twice the worker timeout
