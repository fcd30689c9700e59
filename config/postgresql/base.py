"""Django's PostgreSQL backend, with a pool that gets over a database restart at once and keeps
light load on its warmest connection.

psycopg's pool checks a connection before handing it out; when the check fails
it waits (1 s, then 2, 4, 8…) before trying the next idle connection. After a
restart or a failover every idle connection is dead, so a pool that had grown
to ten would make the next request wait out its timeout (PoolTimeout). Here the
first failed check tests every idle connection at once and drops the dead ones;
the pool opens new ones in the background, and the waiting request gets one
after the first pause. tests/test_recovery.py shows both.

psycopg's pool also hands out the connection idle longest, so at light load every
send lands on a different connection. A statement is planned anew until a connection
has run it about ten times (psycopg prepares it after five uses, PostgreSQL keeps a
generic plan after five more), and planning is most of a send's database time:
the send's statements took twice as long on a connection that had not yet run them.
Here the connection returned last is handed out first; the pool still closes the
ones idle longest when it shrinks.
"""

from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        pool = super().pool
        # psycopg_pool 3.3 keeps idle connections in `_pool`, takes them in `_get_ready_connection`
        # and keeps the check in `_check` (pinned in requirements.txt; the tests fail if that changes).
        if pool is not None and type(pool) is ConnectionPool:
            pool.__class__ = RecentFirstPool
            pool._check = _purging_check(pool)
        return pool


class RecentFirstPool(ConnectionPool):
    def _get_ready_connection(self, timeout: float | None):
        # Idle connections wait oldest first; bring the newest to the front, where the pool takes from.
        self._pool.rotate(1)
        return super()._get_ready_connection(timeout)


def _purging_check(pool: ConnectionPool):
    def check(conn) -> None:
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            pool.check()  # one dead connection: the others likely are too (a restart); drop them all now
            raise

    return check
