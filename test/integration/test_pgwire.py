"""
test_pgwire.py: test/lib/pgwire.py, the protocol client that LISTENs for
notifications in the tests and benchmarks.

Against a throwaway cluster (Unix socket; TCP on 127.0.0.1 for the password
methods): text rows with NULL and non-ASCII values; SQL errors as PgError
with their SQLSTATE, the session staying usable; trust, password and md5
authentication, SCRAM refused clearly; notifications from another session
arrive once committed, in order, with payload, sender and arrival time, none
from a rolled-back transaction, and those arriving during a query are
recorded too; a backend terminated while idle or in a query leaves the
connection closed and query() raising ConnectionError.

Run:  runuser -u ethindex -- python3 test/integration/run.py -k pgwire
"""

import getpass
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import ethindex_test as et          # noqa: E402
from pgwire import PgConnection, PgError  # noqa: E402

PORT_BASE = int(os.environ.get("ETHINDEX_PGWIRE_PORT_BASE", "58500"))
DB = "ethindex_test"
SETUP_TIMEOUT = 120
TEST_TIMEOUT = 60
HBA = """\
local all all                           trust
host  all pgwire_md5      127.0.0.1/32  md5
host  all pgwire_password 127.0.0.1/32  password
host  all pgwire_scram    127.0.0.1/32  scram-sha-256
host  all all             127.0.0.1/32  trust
"""
TEXT = "grüße ✓ 名前 🦀"

cluster = None
tmpdir = None
hbadir = None


def setup_module():
    global cluster, tmpdir, hbadir
    try:
        hbadir = tempfile.mkdtemp(prefix="ethindex-pgwire-hba-")
        hba = os.path.join(hbadir, "pg_hba.conf")
        with open(hba, "w") as f:
            f.write(HBA)
        cluster, tmpdir = et.start_extension_cluster(
            "ethindex-pgwire-", et.free_port(PORT_BASE, PORT_BASE + 10),
            {"listen_addresses": "127.0.0.1", "hba_file": hba})
        cluster.psql("SET password_encryption = 'md5';"
                     "CREATE ROLE pgwire_md5 LOGIN PASSWORD 'md5 secret';"
                     "CREATE ROLE pgwire_password LOGIN PASSWORD 'plain secret';"
                     "SET password_encryption = 'scram-sha-256';"
                     "CREATE ROLE pgwire_scram LOGIN PASSWORD 'scram secret';")
    except BaseException:
        teardown_module()
        raise


def teardown_module():
    global cluster
    try:
        et.stop_extension_cluster(cluster, tmpdir)
    finally:
        cluster = None
        if hbadir:
            shutil.rmtree(hbadir, ignore_errors=True)


def connect(**kwargs):
    return PgConnection(cluster.basedir, cluster.port, DB, timeout=20, **kwargs)


def raises(exc_type, fn):
    """The exception of type exc_type that fn() raises."""
    try:
        fn()
    except exc_type as e:
        return e
    raise AssertionError("no %s raised" % exc_type.__name__)


def test_query_rows():
    with connect() as conn:
        rows = conn.query("SELECT n, t, length(t) FROM (VALUES (1, 'plain'), (2, NULL), "
                          "(3, %s), (4, '')) v(n, t) ORDER BY n" % et.sql_literal(TEXT))
        assert rows == [["1", "plain", "5"], ["2", None, None], ["3", TEXT, "12"],
                        ["4", "", "0"]], rows
        assert conn.query("SELECT 1 WHERE false") == []
        assert conn.query("SET work_mem = '8MB'") == []
        assert conn.query("") == []
        assert conn.query("SELECT 1; SELECT 2, NULL") == [["2", None]]
        assert conn.query("SELECT pg_backend_pid()") == [[str(conn.pid)]]
        assert conn.parameters["client_encoding"] == "UTF8", conn.parameters
        assert cluster.scalar("SELECT application_name FROM pg_stat_activity WHERE pid = %d"
                              % conn.pid) == "ethindex-test-listener"
    assert conn.closed
    raises(ConnectionError, lambda: conn.query("SELECT 1"))
    cluster.wait_until("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %d" % conn.pid,
                       timeout=10)


def test_sql_error():
    with connect() as conn:
        e = raises(PgError, lambda: conn.query("SELECT * FROM pgwire_no_such_table"))
        assert (e.sqlstate, e.severity) == ("42P01", "ERROR"), e.fields
        assert e.message == 'relation "pgwire_no_such_table" does not exist', e.message
        # an error in the middle of a multi-statement query
        e = raises(PgError, lambda: conn.query("SELECT 1; SELECT 1/0; SELECT 3"))
        assert e.sqlstate == "22012", e.fields
        assert conn.query("SELECT 'still usable'") == [["still usable"]]


def test_authentication():
    tcp = dict(host="127.0.0.1", port=cluster.port, dbname=DB, timeout=20)
    for user, password in (("pgwire_md5", "md5 secret"), ("pgwire_password", "plain secret")):
        with PgConnection(user=user, password=password, **tcp) as conn:
            assert conn.query("SELECT current_user, inet_client_addr() = '127.0.0.1'") == \
                [[user, "t"]]
        e = raises(PgError, lambda: PgConnection(user=user, password="wrong", **tcp))
        assert e.sqlstate == "28P01", e.fields
    e = raises(ConnectionError, lambda: PgConnection(user="pgwire_md5", **tcp))
    assert "password=" in str(e), e
    e = raises(NotImplementedError,
               lambda: PgConnection(user="pgwire_scram", password="scram secret", **tcp))
    assert "SCRAM" in str(e), e
    with PgConnection(**tcp) as conn:
        assert conn.query("SELECT current_user") == [[getpass.getuser()]]


def test_notifications():
    with connect() as conn:
        conn.listen("a", "b")
        issued = time.monotonic()
        out = cluster.psql("BEGIN; NOTIFY a, 'rolled back'; ROLLBACK;\n"
                           "SELECT pg_backend_pid(), pg_notify('a', 'x'), "
                           "pg_notify('b', '{\"k\":1}');")
        sender = int(out.split("|")[0])
        last = conn.wait_for(lambda n: n.channel == "b", timeout=10)
        got = conn.notifications()
        assert [(n.channel, n.payload, n.pid) for n in got] == \
            [("a", "x", sender), ("b", '{"k":1}', sender)], got
        assert last == got[1] and sender != conn.pid
        assert issued <= got[0].received <= got[1].received <= time.monotonic(), (issued, got)
        # the session's own notification arrives during its query, before
        # query() returns; anything sent earlier would be listed before it
        conn.query("NOTIFY b, 'own'")
        got = conn.notifications()
        assert [(n.payload, n.pid) for n in got[2:]] == [("own", conn.pid)], got
        e = raises(TimeoutError, lambda: conn.wait_for(lambda n: False, timeout=0.2))
        assert "'own'" in str(e), e
        assert conn.drain() == got and conn.notifications() == []
        # names are quoted
        conn.listen('Mixed "Case" ch')
        assert conn.query("SELECT pg_listening_channels() ORDER BY 1") == \
            [['Mixed "Case" ch'], ["a"], ["b"]]
        conn.query("""SELECT pg_notify('Mixed "Case" ch', 'q')""")
        assert [(n.channel, n.payload) for n in conn.drain()] == [('Mixed "Case" ch', "q")]


def test_backend_terminated():
    idle = connect()
    busy = connect()
    idle.listen("a")
    t0 = time.monotonic()
    cluster.psql("SELECT pg_terminate_backend(%d)" % idle.pid)
    e = raises(ConnectionError, lambda: idle.wait_for(lambda n: False, timeout=15))
    assert time.monotonic() - t0 < 10 and idle.closed
    assert "57P01" in str(e), e
    e = raises(ConnectionError, lambda: idle.query("SELECT 1"))
    assert "57P01" in str(e), e

    # terminated during a query: the waiting query() ends too
    killer = threading.Timer(0.5, cluster.psql, ["SELECT pg_terminate_backend(%d)" % busy.pid])
    killer.start()
    t0 = time.monotonic()
    e = raises(ConnectionError, lambda: busy.query("SELECT pg_sleep(30)"))
    killer.join()
    assert time.monotonic() - t0 < 10 and busy.closed
    assert "57P01" in str(e), e
    raises(ConnectionError, lambda: busy.query("SELECT 1"))
    idle.close()
    busy.close()
