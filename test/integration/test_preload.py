"""
test_preload.py: the extension without shared_preload_libraries, and in a
database other than ethindex.database.

CREATE EXTENSION must work without preloading (tables and functions are
usable); start() must then fail with a clear error and a hint.
"""

import tempfile

from ethindex_test import PgCluster, PsqlError, free_port

cluster = None


def setup_module():
    global cluster
    base = tempfile.mkdtemp(prefix="ethindex-preload-")
    cluster = PgCluster(base, free_port(56300, 56399),
                        settings={"shared_preload_libraries": ""}).init().start()
    cluster.createdb("ethindex_test")


def teardown_module():
    if cluster is not None:
        cluster.stop()


def expect_error(sql, *fragments):
    try:
        cluster.psql(sql)
    except PsqlError as e:
        text = str(e)
        for fragment in fragments:
            assert fragment in text, "expected %r in error:\n%s" % (fragment, text)
        return
    raise AssertionError("no error from: %s" % sql)


def test_create_extension_without_preload():
    cluster.psql("CREATE EXTENSION ethindex")
    cluster.psql("SELECT ethindex.add_chain('dev', ARRAY['http://127.0.0.1:9/'], chain_id => 7)")
    assert cluster.scalar("SELECT state FROM ethindex.chain_status WHERE name = 'dev'") == "stopped"
    # the decoder works without shared memory
    assert cluster.scalar(
        "SELECT count(*) FROM ethindex._decode_block(7, 0, "
        "'{\"number\":\"0x0\",\"hash\":\"0x%s\",\"parentHash\":\"0x%s\","
        "\"gasLimit\":\"0x1\",\"gasUsed\":\"0x0\",\"timestamp\":\"0x0\","
        "\"transactions\":[]}', '[]')" % ("11" * 32, "00" * 32)) != "0"


def test_start_fails_with_hint():
    expect_error("SELECT ethindex.start('dev')",
                 "ethindex must be loaded via shared_preload_libraries",
                 "Add ethindex to shared_preload_libraries in postgresql.conf and restart the server.")
    # nothing changed
    assert cluster.scalar("SELECT enabled FROM ethindex.chains WHERE name = 'dev'") == "f"


def test_start_in_other_database():
    cluster.stop()
    cluster.set(shared_preload_libraries="ethindex", ethindex__database="ethindex_test")
    cluster.start()
    cluster.createdb("elsewhere")
    cluster.psql("CREATE EXTENSION ethindex", db="elsewhere")
    cluster.psql("SELECT ethindex.add_chain('dev', ARRAY['http://127.0.0.1:9/'])", db="elsewhere")
    try:
        cluster.psql("SELECT ethindex.start('dev')", db="elsewhere")
    except PsqlError as e:
        assert 'ethindex indexes chains of database "ethindex_test", not of this database' in str(e), str(e)
        return
    raise AssertionError("start() in another database did not fail")
