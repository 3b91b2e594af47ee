"""
test_standby.py: ethindex on a streaming replica, and failover.

A primary indexes an anvil chain with two insert workers (so batches commit
out of order above the checkpoint); a hot standby made with pg_basebackup
streams from it with the library preloaded.

  - On the standby the launcher does not run (it starts when recovery
    ends): no ethindex worker, no ethindex error in its log, while every
    row, the checkpoint included, replicates.
  - The primary fails (immediate stop) while its insert workers are in the
    middle of a run of blocks (a session holds a data table locked, so the
    replicated checkpoint is behind the node's head); the standby is
    promoted: its launcher starts the chain, which resumes from the
    replicated checkpoint and stores exactly the node's chain: nothing lost,
    nothing stored twice.

Each test starts from an intact primary and standby (built again after a
failover).  ETHINDEX_STANDBY_PORT_BASE (59800) picks the ports.
"""

import os
import subprocess

from ethindex_test import (PgCluster, compare_chain, free_port, sql_literal, start_anvil_cluster,
                           stop_anvil_cluster)
from pgwire import PgConnection

TEST_TIMEOUT = 180
CHAIN_ID = 31337
SETTINGS = {"ethindex.insert_workers": 2, "ethindex.writer_batch_blocks": 2}

primary = None
standby = None
tmpdir = None
anvil = None
txs = None


def build_pair():
    """A primary indexing an anvil chain and a hot standby cloned from it
    (what an earlier test left, for instance a failover, is stopped)."""
    global primary, standby, tmpdir, anvil, txs
    teardown_module()
    primary, tmpdir, anvil, txs, base = start_anvil_cluster("standby", 59800, SETTINGS)
    standby = PgCluster(os.path.join(tmpdir, "standby"), free_port(base + 20, base + 40))

    # the primary indexes a chain; the standby is cloned from it
    head = txs.mine_blocks(10, all_types=True)
    primary.psql("SELECT ethindex.add_chain('s', ARRAY[%s], chain_id => %d); "
                 "SELECT ethindex.start('s')" % (sql_literal(anvil.url), CHAIN_ID))
    wait_for(primary, head)
    os.makedirs(standby.basedir, exist_ok=True)
    subprocess.run([standby._bin("pg_basebackup"), "-D", standby.datadir, "-R",
                    "-X", "stream", "-c", "fast", "-h", primary.basedir, "-p", str(primary.port)],
                   env=primary.env(), check=True, capture_output=True)
    standby.set(port=standby.port, unix_socket_directories=standby.basedir, hot_standby=True)
    standby.start()


def pair():
    """The primary and its standby as build_pair() made them, built again
    if a failover ended them."""
    if not primary.running or standby.scalar("SELECT pg_is_in_recovery()") != "t":
        build_pair()


def setup_module():
    build_pair()


def teardown_module():
    global primary, standby, anvil
    try:
        if standby is not None:
            standby.stop()
    finally:
        stop_anvil_cluster(primary, tmpdir, anvil)
        primary = standby = anvil = None


def wait_for(c, block, timeout=60):
    ok = c.scalar("SELECT ethindex.wait_for('s', %d, %s)" % (block, sql_literal("%d s" % timeout)))
    assert ok == "t", (c.query("SELECT * FROM ethindex.chain_status"), c.log_tail(30))


def ethindex_backends(c):
    return c.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'ethindex%'")


def test_standby_is_idle_and_replicates():
    pair()
    assert standby.scalar("SELECT pg_is_in_recovery()") == "t"
    head = txs.mine_blocks(6, start=20)
    wait_for(primary, head)
    primary_lsn = primary.scalar("SELECT pg_current_wal_lsn()")
    standby.wait_until("SELECT pg_last_wal_replay_lsn() >= %s" % sql_literal(primary_lsn))
    assert standby.scalar("SELECT next_block FROM ethindex.chains WHERE name = 's'") == \
        str(head + 1)
    problems = compare_chain(standby, anvil.url, CHAIN_ID, 0, head)
    assert not problems, problems[:20]

    assert ethindex_backends(standby) == "0"
    log = standby.log_text().replace(tmpdir, "")    # its paths name the test
    assert "ethindex" not in log, standby.log_tail(30)
    assert "ERROR" not in log, standby.log_tail(30)
    # status reads work on the standby; nothing runs there
    st = standby.chain_status("s")
    assert st["fetcher_pid"] is None and not st["writer_pids"], st
    assert int(st["indexed_through"]) == head, st


def test_failover_resumes_from_the_checkpoint():
    pair()
    # the primary fails while indexing a run of blocks: a session holds a
    # data table locked, so that the insert workers wait in the middle of it
    blocker = PgConnection(primary.basedir, primary.port, "ethindex_test")
    blocker.query("BEGIN")
    blocker.query("LOCK TABLE ethindex.transactions IN EXCLUSIVE MODE")
    head = txs.mine_blocks(30, start=40)
    primary.wait_until("SELECT count(*) > 0 FROM pg_locks WHERE NOT granted "
                       "AND pid = ANY((SELECT writer_pids FROM ethindex.chain_status "
                       "WHERE name = 's')::int[])")
    lsn = primary.scalar("SELECT pg_current_wal_lsn()")
    standby.wait_until("SELECT pg_last_wal_replay_lsn() >= %s" % sql_literal(lsn))
    replicated_through = int(standby.scalar("SELECT next_block FROM ethindex.chains "
                                            "WHERE name = 's'")) - 1
    assert replicated_through < head, (replicated_through, head)
    primary.stop(mode="immediate")
    try:
        blocker.close()
    except OSError:
        pass

    subprocess.run([standby._bin("pg_ctl"), "-D", standby.datadir, "-w", "promote"],
                   env=standby.env(), check=True, capture_output=True)
    standby.wait_until("SELECT NOT pg_is_in_recovery()")
    standby.wait_until("SELECT count(*) = 1 FROM pg_stat_activity "
                       "WHERE backend_type = 'ethindex launcher'", timeout=30)

    head = txs.mine_blocks(3, start=80)
    wait_for(standby, head)
    problems = compare_chain(standby, anvil.url, CHAIN_ID, 0, head)
    assert not problems, problems[:20]
    assert standby.scalar("SELECT count(*) = count(DISTINCT number) FROM ethindex.blocks "
                          "WHERE chain_id = %d" % CHAIN_ID) == "t"
    st = standby.chain_status("s")
    assert st["state"] == "running" and st["last_error"] is None, st
