"""
test_dump.py: a database with ethindex through pg_dump and pg_restore, and a
chain registered again over the data of an earlier registration.

  - pg_dump of a database whose chain is stopped, pg_restore into a new
    cluster: configuration, checkpoint, partitions, reorganizations and
    refetches come back; started there, the chain resumes where it stopped
    and stores exactly the node's chain.
  - Registering a chain again over kept data: without existing_data an
    error (the new chain would have deleted the rows); with 'continue' it
    resumes after the stored blocks; a chain registered without chain_id
    that learns a chain id with data refuses to start and deletes nothing.

ETHINDEX_DUMP_PORT_BASE (59200) picks the ports.
"""

import os
import subprocess

from ethindex_test import (PgCluster, PsqlError, compare_chain, free_port, sql_literal,
                           start_anvil_cluster, stop_anvil_cluster)

TEST_TIMEOUT = 180
CHAIN_ID = 31337

cluster = None
restored = None
tmpdir = None
anvil = None
txs = None


def setup_module():
    global cluster, restored, tmpdir, anvil, txs
    cluster, tmpdir, anvil, txs, base = start_anvil_cluster("dump", 59200)
    restored = PgCluster(os.path.join(tmpdir, "restored"), free_port(base + 20, base + 40))
    head = txs.mine_blocks(12, all_types=True)
    cluster.psql("SELECT ethindex.add_chain('d', ARRAY[%s], chain_id => %d, partition_size => 1000); "
                 "SELECT ethindex.start('d')" % (sql_literal(anvil.url), CHAIN_ID))
    wait_for(cluster, head)
    # history worth keeping: a reorganization and a refetch
    anvil.rpc("anvil_reorg", [2, []])
    head = txs.mine_blocks(1, start=40)
    wait_for(cluster, head)
    rid = cluster.scalar("SELECT ethindex.refetch('d', 3, 5)")
    cluster.wait_until("SELECT finished_at IS NOT NULL FROM ethindex.refetches WHERE id = %s" % rid)
    assert cluster.scalar("SELECT count(*) FROM ethindex.reorgs") == "1"


def teardown_module():
    try:
        if restored is not None:
            restored.stop()
    finally:
        stop_anvil_cluster(cluster, tmpdir, anvil)


def wait_for(c, block):
    ok = c.scalar("SELECT ethindex.wait_for('d', %d, '60 s')" % block)
    assert ok == "t", (c.query("SELECT * FROM ethindex.chain_status"), c.log_tail(30))


def check(c, last):
    problems = compare_chain(c, anvil.url, CHAIN_ID, 0, last)
    assert not problems, problems[:20]


STATE_QUERIES = (
    "SELECT name, chain_id, ethindex.endpoint_urls(name) AS urls, start_block, confirmations, "
    "poll_interval, partition_size, "
    "max_reorg_depth, next_block, last_hash, safe_through, finalized_through FROM ethindex.chains",
    "SELECT chain_id, first_block, last_block, indexed_at IS NOT NULL AS indexed "
    "FROM ethindex.partitions ORDER BY 1, 2",
    "SELECT id, fork_block, depth, orphaned_hashes FROM ethindex.reorgs ORDER BY id",
    "SELECT id, from_block, to_block, next_block, error FROM ethindex.refetches ORDER BY id",
)


def test_dump_and_restore():
    cluster.psql("SELECT ethindex.stop('d')")
    dump = os.path.join(tmpdir, "ethindex.dump")
    subprocess.run([os.path.join(cluster.bindir, "pg_dump"), "-Fc", "-f", dump, "ethindex_test"],
                   env=cluster.env(), check=True, capture_output=True)
    restored.init().start()
    restored.createdb("ethindex_test")
    r = subprocess.run([os.path.join(restored.bindir, "pg_restore"), "--exit-on-error",
                        "-d", "ethindex_test", dump],
                       env=restored.env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for q in STATE_QUERIES:
        assert restored.query(q) == cluster.query(q), q
    through = int(restored.scalar("SELECT next_block - 1 FROM ethindex.chains"))
    check(restored, through)

    # started there, it resumes where it stopped
    restored.wait_until("SELECT count(*) = 1 FROM pg_stat_activity "
                        "WHERE backend_type = 'ethindex launcher'", timeout=30)
    restored.psql("SELECT ethindex.start('d')")
    head = txs.mine_blocks(3, start=60)
    wait_for(restored, head)
    check(restored, head)
    assert "discarded" not in restored.log_text()
    restored.psql("SELECT ethindex.stop('d')")


def test_register_again_over_kept_data():
    cluster.psql("SELECT ethindex.stop('d')")
    cluster.wait_stopped("d")
    cluster.psql("SELECT ethindex.remove_chain('d')")      # the rows stay
    stored = cluster.scalar("SELECT count(*) FROM ethindex.blocks")
    try:
        cluster.psql("SELECT ethindex.add_chain('d', ARRAY[%s], chain_id => %d)"
                     % (sql_literal(anvil.url), CHAIN_ID))
    except PsqlError as e:
        assert "chain id 31337 has data from an earlier registration" in str(e), e
    else:
        raise AssertionError("add_chain over kept data without existing_data succeeded")

    # without a chain id: learned from the node at start, then refused
    cluster.psql("SELECT ethindex.add_chain('d2', ARRAY[%s], partition_size => 1000); "
                 "SELECT ethindex.start('d2')" % sql_literal(anvil.url))
    cluster.wait_until("SELECT last_error LIKE '%which has data from an earlier registration%' "
                       "FROM ethindex.chain_status WHERE name = 'd2'", timeout=30)
    assert cluster.scalar("SELECT count(*) FROM ethindex.blocks") == stored
    cluster.psql("SELECT ethindex.stop('d2')")
    cluster.psql("SELECT ethindex.remove_chain('d2')")

    cluster.psql("SELECT ethindex.add_chain('d', ARRAY[%s], chain_id => %d, partition_size => 1000, "
                 "existing_data => 'continue'); SELECT ethindex.start('d')"
                 % (sql_literal(anvil.url), CHAIN_ID))
    head = txs.mine_blocks(2, start=80)
    wait_for(cluster, head)
    check(cluster, head)
