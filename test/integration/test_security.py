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
  - Roles: ethindex_admin controls chains and reads endpoint URLs,
    ethindex_monitor sees status without secrets, ethindex_reader reads
    data; other roles can do none of it, and no role but the owner writes
    the configuration or reads the URLs (not even with SELECT granted on
    every table of the schema).
  - An API key in the path or the query of an endpoint URL appears neither
    in chain_status nor in last_error nor in the server log.
  - Proxy variables in the server's environment are not used.
  - ethindex.allowed_hosts and ethindex.denied_hosts (superuser only) keep
    endpoints to the hosts the operator allows, by name and, after name
    resolution, by address.
  - remove_chain(..., drop_data => true) right after stop() waits for the
    workers to exit, and leaves no partition behind.

ETHINDEX_SECURITY_PORT_BASE (58800) picks the ports.
"""

import time

from ethindex_test import (PsqlError, compare_chain, free_port, sql_literal, start_anvil_cluster,
                           stop_anvil_cluster)

TEST_TIMEOUT = 120

cluster = None
tmpdir = None
anvil = None
txs = None


def setup_module():
    global cluster, tmpdir, anvil, txs
    cluster, tmpdir, anvil, txs, _ = start_anvil_cluster("security", 58800)


def teardown_module():
    stop_anvil_cluster(cluster, tmpdir, anvil)


def sec_running():
    """Chain "sec" over anvil registered, started and indexed through the
    node's head: what the tests that use it start from, whichever ran
    before (test_search_path_does_not_reach_the_workers registers it first,
    test_remove_right_after_stop removes it)."""
    if cluster.scalar("SELECT count(*) FROM ethindex.chains WHERE name = 'sec'") == "0":
        cluster.psql("SELECT ethindex.add_chain('sec', ARRAY[%s], chain_id => 31337)"
                     % sql_literal(anvil.url))
    cluster.psql("SELECT ethindex.start('sec')")
    assert cluster.scalar("SELECT ethindex.wait_for('sec', %d, '60 s')" % anvil.head()) == "t", \
        cluster.chain_status("sec")


def test_search_path_does_not_reach_the_workers():
    """Operators on bigint and text in a schema first on the database's
    search_path record every call; the workers' SQL uses both kinds."""
    if cluster.scalar("SELECT count(*) FROM ethindex.chains WHERE name = 'sec'") == "1":
        cluster.psql("SELECT ethindex.stop('sec')")
        cluster.wait_stopped("sec")
        cluster.psql("SELECT ethindex.remove_chain('sec', drop_data => true)")
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
    cluster.psql("SELECT ethindex.add_chain('sec', ARRAY[%s], chain_id => 31337); "
                 "SELECT ethindex.start('sec')" % sql_literal(anvil.url))
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


def sec_worker_pids():
    """The fetcher and insert workers of chain "sec", from shared memory
    (chain_status reads ethindex.chains, which a test renames a column of)."""
    st = cluster.query("SELECT fetcher_pid, writer_pids FROM ethindex._runtime_state() "
                       "WHERE name = 'sec'")[0]
    return {"fetcher": st["fetcher_pid"], "writers": set(st["writer_pids"] or ())}


def test_launcher_error_leaves_chains_alone():
    sec_running()
    before = sec_worker_pids()
    assert len(before["writers"]) == 2 and before["fetcher"], before
    since = cluster.log_position()
    cluster.psql("ALTER TABLE ethindex.chains RENAME COLUMN enabled TO enabled_x")
    try:
        cluster.wait_for_log('column "enabled" does not exist', since=since, timeout=10)
        # a few more turns of the launcher, each failing
        deadline = time.monotonic() + 10
        while cluster.log_text()[since:].count('column "enabled" does not exist') < 3:
            assert time.monotonic() < deadline, cluster.log_tail(20)
            time.sleep(0.2)
        assert sec_worker_pids() == before, (sec_worker_pids(), before)
    finally:
        cluster.psql("ALTER TABLE ethindex.chains RENAME COLUMN enabled_x TO enabled")
    head = txs.mine_blocks(1, start=70)
    assert cluster.scalar("SELECT ethindex.wait_for('sec', %d, '30 s')" % head) == "t"
    assert sec_worker_pids() == before
    log = cluster.log_text()[since:]
    assert 'background worker "ethindex launcher"' not in log, log[-2000:]


def test_slot_warning_once():
    sec_running()
    since = cluster.log_position()
    slots = int(cluster.scalar("SHOW ethindex.max_chains"))
    started = int(cluster.scalar("SELECT count(*) FROM ethindex.chains WHERE enabled"))
    # one chain more than slots: exactly one waits
    names = ["full%d" % i for i in range(slots + 1 - started)]
    for i, name in enumerate(names):
        cluster.psql("SELECT ethindex.add_chain(%s, ARRAY['http://127.0.0.1:1/'], chain_id => %d); "
                     "SELECT ethindex.start(%s)" % (sql_literal(name), 777000 + i, sql_literal(name)))
    try:
        cluster.wait_for_log("all %d chain slots are in use" % slots, since=since, timeout=10)
        time.sleep(3)
        assert cluster.log_text()[since:].count("chain slots are in use") == 1, \
            cluster.log_tail(20)
    finally:
        for name in names:
            cluster.psql("SELECT ethindex.stop(%s)" % sql_literal(name))
        for name in names:
            cluster.psql("SELECT ethindex.remove_chain(%s)" % sql_literal(name))


KEYED_URL = "https://rpc.example.invalid/v2/SECRETKEY123?apikey=QUERYKEY456"


def as_role(role, sql):
    return cluster.psql("SET ROLE %s; %s" % (role, sql))


def denied(role, sql):
    try:
        as_role(role, sql)
    except PsqlError as e:
        assert "permission denied" in str(e), (role, sql, str(e))
    else:
        raise AssertionError("%s could run: %s" % (role, sql))


def make_roles():
    """alice (admin), bob (monitor), carol (reader), dave and eve (nothing
    of ethindex but USAGE; eve has SELECT on every table), once."""
    if cluster.scalar("SELECT count(*) FROM pg_roles WHERE rolname = 'alice'") == "1":
        return
    cluster.psql("""
        CREATE ROLE alice LOGIN IN ROLE ethindex_admin;
        CREATE ROLE bob LOGIN IN ROLE ethindex_monitor;
        CREATE ROLE carol LOGIN IN ROLE ethindex_reader;
        CREATE ROLE dave LOGIN;
        CREATE ROLE eve LOGIN;
        GRANT USAGE ON SCHEMA ethindex TO dave, eve;
        -- a routine grant of everything in the schema
        GRANT SELECT ON ALL TABLES IN SCHEMA ethindex TO eve;
    """)


def keyed_chain():
    """Chain "keyed" (an unreachable endpoint URL with keys in it) added and
    started by alice: its endpoint_urls() as she reads them."""
    make_roles()
    as_role("alice", "SELECT ethindex.add_chain('keyed', ARRAY[%s], chain_id => 424242); "
            "SELECT ethindex.alter_chain('keyed', poll_interval => '1 s')" % sql_literal(KEYED_URL))
    urls = as_role("alice", "SELECT ethindex.endpoint_urls('keyed')")
    as_role("alice", "SELECT ethindex.start('keyed')")
    return urls


def test_roles():
    """Admins control chains and read endpoint URLs; monitors see status
    without secrets; readers read data; nobody else does anything; nobody
    but the owner writes the configuration directly."""
    sec_running()           # data for the readers
    assert keyed_chain() == "{%s}" % KEYED_URL

    for role in ("bob", "carol", "dave", "eve"):
        denied(role, "SELECT ethindex.stop('keyed')")
        denied(role, "SELECT ethindex.alter_chain('keyed', rpc_urls => ARRAY['http://10.0.0.1/'])")
        denied(role, "SELECT ethindex.add_chain('x', ARRAY['http://10.0.0.1/'])")
        denied(role, "SELECT ethindex.endpoint_urls('keyed')")
        denied(role, "SELECT ethindex.refetch('sec', 1, 1)")
    for role in ("alice", "bob", "carol", "dave", "eve"):
        denied(role, "UPDATE ethindex.chains SET partition_size = 1000")
        denied(role, "SELECT ethindex._runtime_state()")
    # monitors (and admins) see the status, readers the data
    for role in ("alice", "bob"):
        assert "keyed" in as_role(role, "SELECT name FROM ethindex.chain_status")
    for role in ("carol", "dave"):
        denied(role, "SELECT * FROM ethindex.chain_status")
    for role in ("alice", "carol"):
        assert int(as_role(role, "SELECT count(*) FROM ethindex.blocks")) > 0
    for role in ("bob", "dave"):
        denied(role, "SELECT count(*) FROM ethindex.blocks")
    # the URLs: no role but the owner reads them, even with SELECT granted
    assert as_role("eve", "SELECT count(*) FROM ethindex.endpoints") == "0"
    for role in ("alice", "bob", "carol", "dave"):
        denied(role, "SELECT * FROM ethindex.endpoints")


def test_keys_never_shown():
    """The key in the path and in the query of an endpoint URL appears
    nowhere: not in chain_status, not in last_error, not in the log."""
    if cluster.scalar("SELECT count(*) FROM ethindex.chains WHERE name = 'keyed'") == "0":
        keyed_chain()
    cluster.wait_until("SELECT last_error IS NOT NULL FROM ethindex.chain_status "
                       "WHERE name = 'keyed'", timeout=60)
    st = cluster.chain_status("keyed")
    text = " ".join(str(v) for v in st.values())
    assert "https://rpc.example.invalid #1" in (st["last_error"] or ""), st
    assert st["endpoint"] in (None, "https://rpc.example.invalid #1"), st
    for secret in ("SECRETKEY123", "QUERYKEY456", "/v2/"):
        assert secret not in text, (secret, st)
        assert secret not in cluster.log_text(), secret
    as_role("alice", "SELECT ethindex.stop('keyed')")
    as_role("alice", "SELECT ethindex.remove_chain('keyed')")


def test_proxy_environment_ignored():
    """Proxy variables in the server's environment (here: a proxy nobody
    listens on) are not used: the endpoint is what the chain says."""
    sec_running()
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


def set_host_policy(allowed=None, denied=None):
    """Set (or with None reset) the two host settings and reload."""
    for name, value in (("allowed_hosts", allowed), ("denied_hosts", denied)):
        if value is None:
            cluster.psql("ALTER SYSTEM RESET ethindex.%s" % name)
        else:
            cluster.psql("ALTER SYSTEM SET ethindex.%s = %s" % (name, sql_literal(value)))
    cluster.psql("SELECT pg_reload_conf()")


def test_host_policy():
    """ethindex.allowed_hosts refuses an endpoint whose host is not on it;
    ethindex.denied_hosts refuses a name that resolves to a denied address
    (localhost -> 127.0.0.1, ::1) at connection time; nothing is indexed
    meanwhile, and with the settings reset the chain catches up."""
    make_roles()
    sec_running()
    try:
        cluster.psql("ALTER SYSTEM SET ethindex.denied_hosts = '10.0.0.0/8, 10.0.0.0/33'")
    except PsqlError as e:
        assert '"10.0.0.0/33" is not a host name, a "*." domain, an address or a network' \
            in str(e), str(e)
    else:
        raise AssertionError("a bad rule was accepted")
    try:
        as_role("alice", "SHOW ethindex.denied_hosts")
    except PsqlError as e:
        assert "must be superuser" in str(e), str(e)
    else:
        raise AssertionError("alice could read ethindex.denied_hosts")

    endpoint = anvil.url.replace("127.0.0.1", "localhost")
    shown = "%s #1" % endpoint
    before = txs.mine_blocks(1, start=90)
    assert cluster.scalar("SELECT ethindex.wait_for('sec', %d, '30 s')" % before) == "t"
    cluster.psql("SELECT ethindex.stop('sec')")
    cluster.psql("SELECT ethindex.alter_chain('sec', rpc_urls => ARRAY[%s])" % sql_literal(endpoint))
    head = txs.mine_blocks(2, start=91)
    try:
        set_host_policy(allowed="node.example, *.example.org, 10.0.0.0/8")
        cluster.psql("SELECT ethindex.start('sec')")
        cluster.wait_until("SELECT last_error LIKE '%is not allowed by ethindex.allowed_hosts%' "
                           "FROM ethindex.chain_status WHERE name = 'sec'", timeout=30)
        st = cluster.chain_status("sec")
        assert ("endpoint %s is not allowed by ethindex.allowed_hosts" % shown) \
            in st["last_error"], st

        set_host_policy(denied="127.0.0.0/8, ::1")
        cluster.wait_until("SELECT last_error LIKE '%refused: its host resolves%' "
                           "FROM ethindex.chain_status WHERE name = 'sec'", timeout=60)
        st = cluster.chain_status("sec")
        assert ("request to %s refused: its host resolves to an address of "
                "ethindex.denied_hosts" % shown) in st["last_error"], st
        assert int(st["indexed_through"]) == before, (before, st)
    finally:
        set_host_policy()
    assert cluster.scalar("SELECT ethindex.wait_for('sec', %d, '60 s')" % head) == "t", \
        cluster.chain_status("sec")
    problems = compare_chain(cluster, anvil.url, 31337, before - 5, head)
    assert not problems, problems[:10]


def test_remove_right_after_stop():
    """remove_chain() in the transaction after stop() waits for the workers
    to exit, so that none of them creates a partition after the drop."""
    sec_running()
    assert int(cluster.scalar("SELECT count(*) FROM ethindex.partitions WHERE chain_id = 31337")) > 0
    cluster.psql("SELECT ethindex.stop('sec')")
    cluster.psql("SELECT ethindex.remove_chain('sec', drop_data => true)")
    assert "ethindex writer" not in worker_pids() and "ethindex fetcher" not in worker_pids()
    time.sleep(1)
    assert cluster.scalar("SELECT count(*) FROM ethindex.partitions") == "0"
    assert cluster.scalar("SELECT count(*) FROM pg_catalog.pg_class WHERE relname ~ '_31337_'") == "0"
