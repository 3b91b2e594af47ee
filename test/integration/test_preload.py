"""
test_preload.py: the extension without shared_preload_libraries, and in a
database other than ethindex.database.

CREATE EXTENSION must work without preloading (tables and functions are
usable); start() must then fail with a clear error and a hint.

Each test makes what it needs (the extension created afresh in the module's
cluster without preloading; a cluster of its own with preloading), so each
runs alone (run.py -k NAME) and in any order.
"""

import shutil
import tempfile

from ethindex_test import (PgCluster, PsqlError, free_port, sql_literal, start_extension_cluster,
                           stop_extension_cluster, table_columns)

cluster = None
tmpdir = None


def setup_module():
    global cluster, tmpdir
    tmpdir = tempfile.mkdtemp(prefix="ethindex-preload-")
    cluster = PgCluster(tmpdir, free_port(56300, 56399),
                        settings={"shared_preload_libraries": ""}).init().start()
    cluster.createdb("ethindex_test")


def teardown_module():
    if cluster is not None:
        cluster.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)


def expect_error(c, sql, *fragments, db="ethindex_test"):
    try:
        c.psql(sql, db=db)
    except PsqlError as e:
        text = str(e)
        for fragment in fragments:
            assert fragment in text, "expected %r in error:\n%s" % (fragment, text)
        return
    raise AssertionError("no error from: %s" % sql)


def fresh_extension():
    """The extension created anew (without preloading) in the module's
    cluster, with chain 'dev' registered."""
    cluster.psql("DROP EXTENSION IF EXISTS ethindex CASCADE")
    cluster.psql("CREATE EXTENSION ethindex")
    cluster.psql("SELECT ethindex.add_chain('dev', ARRAY['http://127.0.0.1:9/'], chain_id => 7)")


HASH = "11" * 32
PARENT = "00" * 32
BLOCK_JSON = ('{"number":"0x0","hash":"0x%s","parentHash":"0x%s","gasLimit":"0x1",'
              '"gasUsed":"0x0","timestamp":"0x0","transactions":[]}' % (HASH, PARENT))


def test_create_extension_without_preload():
    fresh_extension()
    assert cluster.scalar("SELECT current_setting('shared_preload_libraries') = ''") == "t"
    assert cluster.scalar("SELECT state FROM ethindex.chain_status WHERE name = 'dev'") == "stopped"
    # the decoder works without shared memory: the block row with exactly
    # the values of the JSON (every other column NULL), and no other row
    rows = cluster.query("SELECT table_name, row_number, column_name, value "
                         "FROM ethindex._decode_block(7, 0, %s, '[]')" % sql_literal(BLOCK_JSON))
    assert {(r["table_name"], r["row_number"]) for r in rows} == {("blocks", 0)}, rows
    got = {r["column_name"]: r["value"] for r in rows}
    assert len(got) == len(rows), rows
    assert list(got) == [name for name, _ in table_columns(cluster, "blocks")], list(got)
    want = {"chain_id": "7", "number": "0", "hash": "\\x" + HASH,
            "parent_hash": "\\x" + PARENT, "gas_limit": "1", "gas_used": "0",
            "timestamp": "1970-01-01 00:00:00+00", "uncles": "{}", "transaction_count": "0"}
    assert {k: v for k, v in got.items() if v is not None} == want, got


def test_start_fails_with_hint():
    fresh_extension()
    expect_error(cluster, "SELECT ethindex.start('dev')",
                 "ethindex must be loaded via shared_preload_libraries",
                 "Add ethindex to shared_preload_libraries in postgresql.conf and restart the server.")
    # nothing changed
    assert cluster.scalar("SELECT enabled FROM ethindex.chains WHERE name = 'dev'") == "f"


def test_start_in_other_database():
    c, d = start_extension_cluster("ethindex-preload-other-", free_port(56300, 56399),
                                   settings={"ethindex.database": "ethindex_test"})
    try:
        c.createdb("elsewhere")
        c.psql("CREATE EXTENSION ethindex", db="elsewhere")
        c.psql("SELECT ethindex.add_chain('dev', ARRAY['http://127.0.0.1:9/'])", db="elsewhere")
        expect_error(c, "SELECT ethindex.start('dev')",
                     'ethindex indexes chains of database "ethindex_test", not of this database',
                     db="elsewhere")
        assert c.scalar("SELECT enabled FROM ethindex.chains WHERE name = 'dev'",
                        db="elsewhere") == "f"
    finally:
        stop_extension_cluster(c, d)
