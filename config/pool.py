"""The check the PostgreSQL connection pool runs on a connection before handing it out."""

import threading

from psycopg_pool import ConnectionPool

_checking: set[int] = set()  # the pools a whole-pool check is running for (by id)
_checking_lock = threading.Lock()


def check_connection(conn) -> None:
    """psycopg_pool's own check; and when a connection fails it (the server restarted, failed
    over or cut its connections), every other idle connection of the pool is checked at once
    and the broken ones replaced, as psycopg's maintainer advises (psycopg/psycopg#701:
    `ConnectionPool.check()`). Otherwise the pool finds them one at a time, waiting 0, 1, 2,
    4, 8… s between (the backoff it applies to repeated failed checks, psycopg/psycopg#711): a
    process holding nine idle connections got none for 30 s, the pool's timeout (PoolTimeout).

    The whole-pool check runs in a thread of its own, one at a time per pool: it takes the idle
    connections out of the pool at once, and checking each one on a host that vanished (no
    reset, a TCP timeout each) must not hold up the request that found the first."""
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        # The pool it came from: psycopg_pool sets it before the check (3.3.3, pinned for this).
        if isinstance(pool := getattr(conn, "_pool", None), ConnectionPool):
            _check_in_background(pool)
        raise


def _check_in_background(pool: ConnectionPool) -> None:
    with _checking_lock:
        if id(pool) in _checking:
            return
        _checking.add(id(pool))

    def check() -> None:
        try:
            pool.check()
        finally:
            with _checking_lock:
                _checking.discard(id(pool))

    threading.Thread(target=check, name="pool-check", daemon=True).start()
