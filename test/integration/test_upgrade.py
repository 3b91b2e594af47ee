"""
test_upgrade.py: the extension updates in place.

A cluster runs the current library with the extension created at the
previous version (0.1, the script as it was released) and indexes an anvil
chain; ALTER EXTENSION ethindex UPDATE brings it to the current version while
the chain runs.

  - Before the update the chain indexes and chain_status works in its 0.1
    form (the library serves both forms of its status function).
  - The update keeps the data, the configuration (chains and endpoints) and
    the running workers (same processes), adds the new column, and the chain
    goes on: every row equals the node's, none stored twice.
  - The schema an update from each earlier version (0.1, 0.2) produces is
    the schema a fresh install creates:
    functions (bodies, security, settings, privileges), tables, columns,
    constraints, indexes, views, row level security and the configuration
    tables pg_dump keeps.
  - With an extension version the library does not know, no chain runs (one
    WARNING); with a known one again, the chains start.

ETHINDEX_UPGRADE_PORT_BASE (59900) picks the ports.
"""

from ethindex_test import compare_chain, sql_literal, start_anvil_cluster, stop_anvil_cluster

TEST_TIMEOUT = 180
CHAIN_ID = 31337
PREVIOUS = "0.1"
EARLIER = ("0.1", "0.2")     # every released version: each updates to a fresh install

cluster = None
tmpdir = None
anvil = None
txs = None


def setup_module():
    global cluster, tmpdir, anvil, txs
    cluster, tmpdir, anvil, txs, _ = start_anvil_cluster("upgrade", 59900, version=PREVIOUS)


def teardown_module():
    stop_anvil_cluster(cluster, tmpdir, anvil)


def default_version():
    return cluster.scalar("SELECT default_version FROM pg_available_extensions "
                          "WHERE name = 'ethindex'")


def status_columns(db="ethindex_test"):
    return cluster.query("SELECT attname FROM pg_attribute "
                         "WHERE attrelid = 'ethindex.chain_status'::regclass AND attnum > 0 "
                         "ORDER BY attnum", db=db)


def configuration():
    return (cluster.query("SELECT * FROM ethindex.chains ORDER BY name"),
            cluster.query("SELECT * FROM ethindex.endpoints ORDER BY chain, position"))


def wait_for(block, timeout=60):
    ok = cluster.scalar("SELECT ethindex.wait_for('u', %d, '%d s')" % (block, timeout))
    assert ok == "t", (cluster.query("SELECT * FROM ethindex.chain_status"),
                       cluster.log_tail(30))


def chain_running():
    """Chain u, registered and started if it is not yet, caught up."""
    if cluster.scalar("SELECT count(*) FROM ethindex.chains WHERE name = 'u'") == "0":
        cluster.psql("SELECT ethindex.add_chain('u', ARRAY[%s], chain_id => %d, "
                     "max_reorg_depth => 32, poll_interval => '100 ms'); "
                     "SELECT ethindex.start('u')" % (sql_literal(anvil.url), CHAIN_ID))
    head = txs.mine_blocks(8, all_types=True)
    wait_for(head)


def test_update_keeps_data_configuration_and_workers():
    assert cluster.scalar("SELECT extversion FROM pg_extension WHERE extname = 'ethindex'") \
        == PREVIOUS
    assert default_version() != PREVIOUS

    chain_running()
    # the 0.1 form of the status view, served by this library
    assert "response_bytes" not in [r["attname"] for r in status_columns()]
    before = cluster.chain_status("u")
    assert before["state"] == "running" and before["last_error"] is None, before
    config = configuration()

    cluster.psql("ALTER EXTENSION ethindex UPDATE")
    assert cluster.scalar("SELECT extversion FROM pg_extension WHERE extname = 'ethindex'") \
        == default_version()
    assert configuration() == config
    after = cluster.chain_status("u")
    assert after["fetcher_pid"] == before["fetcher_pid"], (before, after)
    assert after["writer_pids"] == before["writer_pids"], (before, after)
    assert after["state"] == "running" and int(after["response_bytes"]) >= 0, after
    assert cluster.scalar("SELECT has_function_privilege('ethindex_monitor', "
                          "'ethindex.status()', 'EXECUTE') AND has_table_privilege("
                          "'ethindex_monitor', 'ethindex.chain_status', 'SELECT') AND NOT "
                          "has_function_privilege('public', 'ethindex._runtime_state()', "
                          "'EXECUTE')") == "t"

    head = txs.mine_blocks(5, start=20)
    wait_for(head)
    problems = compare_chain(cluster, anvil.url, CHAIN_ID, 0, head)
    assert not problems, problems[:20]
    assert cluster.scalar("SELECT count(*) = count(DISTINCT number) FROM ethindex.blocks") == "t"
    assert "ERROR" not in cluster.log_text(), cluster.log_tail(30)


# Every object of the extension, described by what a user of it depends on.
SCHEMA_QUERY = r"""
WITH ext AS (SELECT oid, extconfig FROM pg_extension WHERE extname = 'ethindex'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT 'function ' || p.oid::regprocedure || ' ' || pg_get_functiondef(p.oid)
       || ' acl ' || coalesce(p.proacl::text, 'default') AS d
FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
UNION ALL
SELECT 'relation ' || c.oid::regclass || ' kind ' || c.relkind::text
       || ' rls ' || c.relrowsecurity || ' acl ' || coalesce(c.relacl::text, 'default')
       || coalesce(' view ' || pg_get_viewdef(c.oid), '')
FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
UNION ALL
SELECT 'column ' || c.oid::regclass || '.' || a.attname || ' ' || a.attnum || ' '
       || format_type(a.atttypid, a.atttypmod) || ' notnull ' || a.attnotnull
       || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
UNION ALL
SELECT 'constraint ' || co.conrelid::regclass || ' ' || co.conname || ' '
       || pg_get_constraintdef(co.oid)
FROM pg_constraint co JOIN members m ON m.classid = 'pg_class'::regclass
    AND m.objid = co.conrelid
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = i.indrelid
UNION ALL
SELECT 'dumped ' || x::regclass FROM ext, unnest(ext.extconfig) x
ORDER BY d
"""


def test_updated_schema_equals_fresh_install():
    cluster.createdb("fresh")
    cluster.psql("CREATE EXTENSION ethindex", db="fresh")
    fresh = [r["d"] for r in cluster.query(SCHEMA_QUERY, db="fresh")]
    assert len(fresh) > 100, len(fresh)
    for version in EARLIER:
        db = "updated_" + version.replace(".", "_")
        cluster.createdb(db)
        cluster.psql("CREATE EXTENSION ethindex VERSION %s" % sql_literal(version), db=db)
        previous = [r["d"] for r in cluster.query(SCHEMA_QUERY, db=db)]
        cluster.psql("ALTER EXTENSION ethindex UPDATE", db=db)
        updated = [r["d"] for r in cluster.query(SCHEMA_QUERY, db=db)]
        assert previous != fresh, version      # the update changes something
        only_fresh = sorted(set(fresh) - set(updated))
        only_updated = sorted(set(updated) - set(fresh))
        assert fresh == updated, (version, "only in a fresh install:", only_fresh[:10],
                                  "only after the update:", only_updated[:10])


def test_unknown_extension_version_runs_no_chain():
    chain_running()
    version = cluster.scalar("SELECT extversion FROM pg_extension WHERE extname = 'ethindex'")
    mark = cluster.log_position()
    # as if the scripts of a newer release were installed with this library
    cluster.psql("UPDATE pg_extension SET extversion = '99.0' WHERE extname = 'ethindex'")
    try:
        cluster.wait_until("SELECT count(*) = 0 FROM pg_stat_activity "
                           "WHERE backend_type IN ('ethindex fetcher', 'ethindex writer')",
                           timeout=30)
        log = cluster.log_text()[mark:]
        assert log.count('extension version "99.0" is not supported by the loaded library') \
            == 1, log
        assert "ALTER EXTENSION ethindex UPDATE" in log, log
    finally:
        cluster.psql("UPDATE pg_extension SET extversion = %s WHERE extname = 'ethindex'"
                     % sql_literal(version))
    cluster.wait_until("SELECT fetcher_pid IS NOT NULL AND state = 'running' "
                       "FROM ethindex.chain_status WHERE name = 'u'", timeout=30)
