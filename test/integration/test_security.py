"""
test_security.py: ethindex in a production cluster: other users not trusted,
one chain's trouble kept away from the others.

  - A database owner sets the database's search_path to a schema with an
    operator of its own; the workers, which run as the bootstrap superuser,
    never call it (their search_path is pinned to pg_catalog, pg_temp),
    through a backfill, the head and a rollback.
  - The parser's test helpers are not executable by PUBLIC.
  - An error in the launcher (ethindex.chains unreadable) is reported and
    retried; the chains' workers keep running.
  - More started chains than slots: one WARNING, not one a second.
  - Proxy variables in the server's environment are not used.
  - remove_chain(..., drop_data => true) right after stop() waits for the
    workers to exit, and leaves no partition behind.

ETHINDEX_SECURITY_PORT_BASE (58800) picks the ports.
"""

import os
import time

from ethindex_test import (Anvil, AnvilTransactions, PsqlError, compare_chain, free_port,
                           start_extension_cluster, stop_extension_cluster)

TEST_TIMEOUT = 120

cluster = None
tmpdir = None
anvil = None
txs = None


def setup_module():
    global cluster, tmpdir, anvil, txs
    base = int(os.environ.get("ETHINDEX_SECURITY_PORT_BASE", "58800"))
    cluster, tmpdir = start_extension_cluster("ethindex-security-", free_port(base, base + 50))
    anvil = Anvil(free_port(base + 50, base + 70), logdir=tmpdir)
    txs = AnvilTransactions(anvil, tmpdir)


def teardown_module():
    if anvil is not None:
        anvil.stop()
    stop_extension_cluster(cluster, tmpdir)


def test_search_path_does_not_reach_the_workers():
    """Operators on bigint and text in a schema first on the database's
    search_path record every call; the workers' SQL uses both kinds."""
    cluster.psql("""
        CREATE ROLE mallory LOGIN;
        CREATE SCHEMA evil AUTHORIZATION mallory;
        CREATE TABLE public.hijacked (at timestamptz DEFAULT now(), what text,
                                      pid integer DEFAULT pg_backend_pid());
        GRANT INSERT ON public.hijacked TO PUBLIC;
        SET ROLE mallory;
        CREATE FUNCTION evil.int8_minus(bigint, bigint) RETURNS bigint LANGUAGE sql AS
          $$ INSERT INTO public.hijacked (what) VALUES ('bigint -');
             SELECT $1 OPERATOR(pg_catalog.-) $2 $$;
        CREATE OPERATOR evil.- (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8_minus);
        CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE sql AS
          $$ INSERT INTO public.hijacked (what) VALUES ('text ='); SELECT $1 OPERATOR(pg_catalog.=) $2 $$;
        CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
        RESET ROLE;
        ALTER DATABASE ethindex_test SET search_path = evil, pg_catalog, public;
    """)
    # the trap works for a session that takes the database's search_path
    assert cluster.scalar("SELECT 5::bigint - 2::bigint") == "3"
    assert int(cluster.scalar("SELECT count(*) FROM public.hijacked")) > 0
    cluster.psql("TRUNCATE public.hijacked")

    head = txs.mine_blocks(10, all_types=True)
    cluster.psql("SELECT ethindex.add_chain('sec', ARRAY['%s'], chain_id => 31337); "
                 "SELECT ethindex.start('sec')" % anvil.url)
    assert cluster.scalar("SELECT ethindex.wait_for('sec', %d, '60 s')" % head) == "t"
    # a rollback: the checkpoint moves back with "$1 - 1"
    anvil.rpc("anvil_reorg", [2, []])
    head = txs.mine_blocks(2, start=50)
    assert cluster.scalar("SELECT ethindex.wait_for('sec', %d, '60 s')" % head) == "t"
    cluster.wait_until("SELECT count(*) = 1 FROM ethindex.reorgs")
    problems = compare_chain(cluster, anvil.url, 31337, 0, head)
    assert not problems, problems[:10]
    st = cluster.chain_status("sec")
    # (the test's own sessions take the trap too; the workers must not)
    workers = [p for p in [st["fetcher_pid"]] + st["writer_pids"]]
    assert workers and cluster.scalar("SELECT count(*) FROM public.hijacked WHERE pid IN (%s)"
                                      % ", ".join(map(str, workers))) == "0", \
        cluster.query("SELECT * FROM public.hijacked LIMIT 5")


def test_parser_helpers_not_public():
    cluster.psql("CREATE ROLE nobody LOGIN; GRANT USAGE ON SCHEMA ethindex TO nobody")
    for call in ("ethindex._decode_block(1, 1, '{}', '[]')",
                 "ethindex._decode_speed(1, '{}', '[]', 1)"):
        try:
            cluster.psql("SET ROLE nobody; SELECT %s" % call)
        except PsqlError as e:
            assert "permission denied for function" in str(e), e
        else:
            raise AssertionError("%s ran for a role without rights" % call)


def worker_pids():
    """backend_type -> pids of the ethindex processes (pg_stat_activity)."""
    out = {}
    for r in cluster.query("SELECT backend_type, pid FROM pg_stat_activity "
                           "WHERE backend_type LIKE 'ethindex%'"):
        out.setdefault(r["backend_type"], set()).add(r["pid"])
    return out


def test_launcher_error_leaves_chains_alone():
    before = worker_pids()
    assert len(before.get("ethindex writer", ())) == 2 and before.get("ethindex fetcher"), before
    since = cluster.log_position()
    cluster.psql("ALTER TABLE ethindex.chains RENAME COLUMN enabled TO enabled_x")
    try:
        cluster.wait_for_log('column "enabled" does not exist', since=since, timeout=10)
        # a few more turns of the launcher, each failing
        deadline = time.monotonic() + 10
        while cluster.log_text()[since:].count('column "enabled" does not exist') < 3:
            assert time.monotonic() < deadline, cluster.log_tail(20)
            time.sleep(0.2)
        assert worker_pids() == before, (worker_pids(), before)
    finally:
        cluster.psql("ALTER TABLE ethindex.chains RENAME COLUMN enabled_x TO enabled")
    head = txs.mine_blocks(1, start=70)
    assert cluster.scalar("SELECT ethindex.wait_for('sec', %d, '30 s')" % head) == "t"
    assert worker_pids() == before
    log = cluster.log_text()[since:]
    assert 'background worker "ethindex launcher"' not in log, log[-2000:]


def test_slot_warning_once():
    since = cluster.log_position()
    slots = int(cluster.scalar("SHOW ethindex.max_chains"))
    names = ["full%d" % i for i in range(slots)]
    for i, name in enumerate(names):
        cluster.psql("SELECT ethindex.add_chain('%s', ARRAY['http://127.0.0.1:1/'], chain_id => %d); "
                     "SELECT ethindex.start('%s')" % (name, 777000 + i, name))
    try:
        cluster.wait_for_log("all %d chain slots are in use" % slots, since=since, timeout=10)
        time.sleep(3)
        assert cluster.log_text()[since:].count("chain slots are in use") == 1, \
            cluster.log_tail(20)
    finally:
        for name in names:
            cluster.psql("SELECT ethindex.stop('%s')" % name)
        for name in names:
            cluster.psql("SELECT ethindex.remove_chain('%s')" % name)


def test_proxy_environment_ignored():
    """Proxy variables in the server's environment (here: a proxy nobody
    listens on) are not used: the endpoint is what the chain says."""
    dead = "http://127.0.0.1:%d" % free_port(59990, 59999)
    cluster.stop()
    cluster.extra_env = {"http_proxy": dead, "HTTP_PROXY": dead, "https_proxy": dead,
                         "ALL_PROXY": dead, "all_proxy": dead}
    try:
        cluster.start()
        head = txs.mine_blocks(2, start=80)
        assert cluster.scalar("SELECT ethindex.wait_for('sec', %d, '30 s')" % head) == "t", \
            cluster.log_tail(20)
    finally:
        cluster.extra_env = {}


def test_remove_right_after_stop():
    """remove_chain() in the transaction after stop() waits for the workers
    to exit, so that none of them creates a partition after the drop."""
    assert int(cluster.scalar("SELECT count(*) FROM ethindex.partitions WHERE chain_id = 31337")) > 0
    cluster.psql("SELECT ethindex.stop('sec')")
    cluster.psql("SELECT ethindex.remove_chain('sec', drop_data => true)")
    assert "ethindex writer" not in worker_pids() and "ethindex fetcher" not in worker_pids()
    time.sleep(1)
    assert cluster.scalar("SELECT count(*) FROM ethindex.partitions") == "0"
    assert cluster.scalar("SELECT count(*) FROM pg_catalog.pg_class WHERE relname ~ '_31337_'") == "0"
