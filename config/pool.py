"""The check the PostgreSQL connection pool runs on a connection before handing it out."""

import threading

from psycopg_pool import ConnectionPool

_checking_pool = threading.local()  # pool.check() checks with its own static check today; never recurse


def check_connection(conn) -> None:
    """psycopg_pool's own check; and when a connection fails it (the server restarted, failed
    over or cut its connections), every other idle connection of the pool is checked at once
    and the broken ones replaced, as psycopg's maintainer advises (psycopg/psycopg#701:
    `ConnectionPool.check()`). Otherwise the pool finds them one at a time, waiting about 1, 2,
    4, 8… s between (the backoff it applies to repeated failed checks, psycopg/psycopg#711): a
    process holding nine idle connections got none for 30 s, the pool's timeout (PoolTimeout).
    The request that found the first broken one waits about a second, then gets a new one."""
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        if getattr(_checking_pool, "active", False):
            raise
        from django.db import connections

        _checking_pool.active = True
        try:
            for alias in connections:
                if "pool" in connections.settings[alias].get("OPTIONS", {}):
                    connections[alias].pool.check()
        finally:
            _checking_pool.active = False
        raise
