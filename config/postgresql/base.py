"""Django's PostgreSQL backend, with a pool that gets over a database restart at once.

psycopg's pool checks a connection before handing it out; when the check fails
it waits (1 s, then 2, 4, 8…) before trying the next idle connection. After a
restart or a failover every idle connection is dead, so a pool that had grown
to ten would make the next request wait out its timeout (PoolTimeout). Here the
first failed check tests every idle connection at once and drops the dead ones;
the pool opens new ones in the background, and the waiting request gets one
after the first pause. tests/test_recovery.py shows both.
"""

from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        pool = super().pool
        # psycopg_pool 3.3 keeps the check in `_check` (pinned in requirements.txt; the test fails if that changes).
        if pool is not None and pool._check is ConnectionPool.check_connection:
            pool._check = _purging_check(pool)
        return pool


def _purging_check(pool: ConnectionPool):
    def check(conn) -> None:
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            pool.check()  # one dead connection: the others likely are too (a restart); drop them all now
            raise

    return check
