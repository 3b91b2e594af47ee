"""
test_security.py: ethindex in a cluster whose other users are not trusted.

  - A database owner sets the database's search_path to a schema with an
    operator of its own; the workers, which run as the bootstrap superuser,
    never call it (their search_path is pinned to pg_catalog, pg_temp),
    through a backfill, the head and a rollback.
  - The parser's test helpers are not executable by PUBLIC.

ETHINDEX_SECURITY_PORT_BASE (58800) picks the ports.
"""

import os

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
