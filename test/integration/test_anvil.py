"""
test_anvil.py: ethindex against a real anvil node (prague, FIFO ordering).

One cluster and one anvil for the whole module (start_anvil_cluster), and a
replay/proxy server (test/lib/rpcserver.py) in front of anvil for the tests
that must see or stop the requests.  setup_module builds a chain history
with every transaction type (0-4, including a blob transaction and an
EIP-7702 authorization), contract creations, logs with 0-4 topics, a
reverted transaction, a value above 2^64 wei and empty blocks.  The tests
index it and compare every stored column with the node's JSON-RPC answers
(ethindex_test.compare_chain), follow the head while transactions arrive,
stop/start, a chain id mismatch, a SIGKILL of an insert worker in the middle
of a backfill, a cluster restart and query cancels of the workers.

Every test registers the chain it needs itself (fresh_chain(): every chain
registered before is stopped and removed with its data), so each runs alone
(run.py -k NAME) and in any order; anvil's history only grows.

The test directory (/tmp/ethindex-anvil-*, server and anvil logs) is removed
at the end unless ETHINDEX_KEEP_TMP is set or a process crashed other than
the insert worker test_writer_sigkill kills.  ETHINDEX_ANVIL_PORT_BASE
(56000) picks the ports (cluster base..+20, proxy +20..+40, anvil +40..+60).
"""

import os
import re
import shutil
import signal
import time

from ethindex_test import (ANVIL_ACCOUNTS, PsqlError, compare_chain, free_port,
                           log_contract_init, sql_literal, start_anvil_cluster,
                           stop_anvil_cluster)
import synthchain
from rpcserver import Chain, RpcServer

CHAIN = "dev"
CHAIN_ID = 31337
POLL = "100 milliseconds"

SETUP_TIMEOUT = 300
TEST_TIMEOUT = 240

cluster = None
anvil = None
txs = None              # ethindex_test.AnvilTransactions
proxy = None            # RpcServer: /chain/<name> proxies to anvil
contract = None         # address of the log contract
tmpdir = None
history = {}            # what setup_module built: "head", "hashes"
killed_pids = set()     # processes test_writer_sigkill killed on purpose

lit = sql_literal


def q(sql):
    return cluster.query(sql)


def sc(sql):
    return cluster.scalar(sql)


def check_chain(first, last, chain_id=CHAIN_ID):
    problems = compare_chain(cluster, anvil.url, chain_id, first, last)
    assert not problems, "%d mismatches in blocks %d..%d:\n%s" % (
        len(problems), first, last, "\n".join(problems[:60]))


def wait_for(block, timeout=60, chain=CHAIN):
    ok = sc("SELECT ethindex.wait_for(%s, %d, %s)"
            % (lit(chain), block, lit("%d seconds" % timeout)))
    if ok != "t":
        raise AssertionError("ethindex.wait_for(%r, %d) timed out; chain_status: %r\n"
                             "--- server log tail ---\n%s"
                             % (chain, block, q("SELECT * FROM ethindex.chain_status"),
                                cluster.log_tail()))


def pid_alive(pid):
    """True if process pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def status(chain=CHAIN):
    return cluster.chain_status(chain)


def workers_gone_sql(chain):
    return ("SELECT state = 'stopped' AND fetcher_pid IS NULL AND "
            "coalesce(cardinality(array_remove(writer_pids, NULL)), 0) = 0 "
            "FROM ethindex.chain_status WHERE name = %s" % lit(chain))


def fresh_chain(url=None, start_block=0, name=CHAIN, chain_id=CHAIN_ID, start=True):
    """The chain this test needs and nothing else: every registered chain
    removed with its data, then "name" registered (endpoint url, default
    anvil) from start_block and started."""
    cluster.remove_all_chains()
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, start_block => %d, "
                 "confirmations => 0, poll_interval => %s)"
                 % (lit(name), lit(url or anvil.url), chain_id, start_block, lit(POLL)))
    if start:
        cluster.psql("SELECT ethindex.start(%s)" % lit(name))


def new_proxy_chain(name):
    """A path /chain/<name> of the proxy server forwarding to anvil; its URL."""
    proxy.add_proxy(name, anvil.url)
    return proxy.chain_url(name)


# --- generating transactions -------------------------------------------------

ACC = [a for a, _ in ANVIL_ACCOUNTS]


def send(tx):
    """eth_sendTransaction from an unlocked anvil account; returns the hash."""
    return anvil.rpc("eth_sendTransaction", [tx])


def receipt(h):
    r = anvil.rpc("eth_getTransactionReceipt", [h])
    assert r is not None, "transaction %s was not mined" % h
    return r


def call_log(n, payload=b"", sender=0, to=None, **extra):
    """Call the log contract (or an account delegated to it) so that it
    emits LOG<n> (n = 0..4) or reverts (n = 0xff)."""
    tx = {"from": ACC[sender], "to": to or contract, "data": "0x%02x" % n + payload.hex()}
    tx.update(extra)
    return send(tx)


def mixed_block(i):
    """Queue a handful of mixed transactions (automine off)."""
    hs = [
        send({"from": ACC[0], "to": ACC[5], "value": hex(10**15 + i),
              "gasPrice": hex(2 * 10**9), "type": "0x0"}),
        call_log(i % 5, bytes([i % 256]) * (i % 40), sender=1),
        send({"from": ACC[4], "to": contract, "data": "0x%02x" % ((i + 2) % 5),
              "maxFeePerGas": hex(10**10), "maxPriorityFeePerGas": hex(10**9)}),
    ]
    return hs


def setup_module():
    global cluster, anvil, txs, proxy, contract, tmpdir
    cluster, tmpdir, anvil, txs, base = start_anvil_cluster("anvil", 56000)
    try:
        proxy = RpcServer(free_port(base + 20, base + 40)).start()
        build_history()
    except BaseException:
        teardown_module()
        raise


def build_history():
    global contract
    a = anvil
    hashes = {}
    # block 1 (start_anvil_cluster): AnvilTransactions deploys its log contract

    # block 2: contract creation (type 2 with anvil's defaults), a legacy and
    # an EIP-2930 transfer, the latter above 2^64 wei
    hashes["create"] = send({"from": ACC[0], "data": "0x" + log_contract_init().hex(),
                             "gas": hex(1_000_000)})
    hashes["legacy"] = send({"from": ACC[0], "to": ACC[1], "value": hex(10**18),
                             "gasPrice": hex(3 * 10**9), "type": "0x0"})
    hashes["big_value"] = send({"from": ACC[1], "to": ACC[5], "value": hex(2**64 + 12345),
                                "gasPrice": hex(3 * 10**9), "type": "0x1",
                                "accessList": [{"address": ACC[5],
                                                "storageKeys": ["0x" + "00" * 31 + "01",
                                                                "0x" + "ab" * 32]}]})
    a.mine()
    contract = receipt(hashes["create"])["contractAddress"]
    assert contract, "contract creation failed"

    a.mine()   # empty block

    # block 4: logs with 0..4 topics, a large log, a revert, a legacy creation
    for n in range(5):
        hashes["log%d" % n] = call_log(n, bytes(range(n * 9)))
    hashes["biglog"] = call_log(1, os.urandom(6000), sender=4)
    hashes["revert"] = call_log(0xff, b"\x01\x02\x03", gas=hex(100_000))
    hashes["create_legacy"] = send({"from": ACC[4], "data": "0x" + log_contract_init().hex(),
                                    "gas": hex(1_000_000), "gasPrice": hex(3 * 10**9),
                                    "type": "0x0"})
    a.mine()
    a.mine(3)  # three empty blocks

    # block 8: a blob transaction (type 3) and an EIP-7702 transaction (type
    # 4) delegating account 3 to the log contract, then a call into account 3
    hashes["blob"] = txs.queue_blob()
    hashes["auth"] = txs.queue_authorization()
    a.mine()
    hashes["delegated_call"] = call_log(4, b"\x77" * 33, to=ACC[3])
    mixed_block(0)
    a.mine()

    # a run of ordinary blocks
    for i in range(1, 13):
        mixed_block(i)
        a.mine()
    a.mine(2)

    rc = {k: receipt(h) for k, h in hashes.items()}
    types = {k: int(r["type"], 16) for k, r in rc.items()}
    assert types["legacy"] == 0 and types["big_value"] == 1 and types["blob"] == 3 \
        and types["auth"] == 4, types
    assert rc["revert"]["status"] == "0x0", rc["revert"]
    for k, r in rc.items():
        if k != "revert":
            assert r["status"] == "0x1", (k, r)
    for n in range(5):
        assert [len(lg["topics"]) for lg in rc["log%d" % n]["logs"]] == [n], rc["log%d" % n]
    assert rc["delegated_call"]["logs"][0]["address"].lower() == ACC[3], rc["delegated_call"]
    history["head"] = a.head()
    history["hashes"] = hashes


def teardown_module():
    global cluster, anvil, proxy
    try:
        if proxy is not None:
            proxy.stop()
    finally:
        proxy = None
        log = cluster.log_text() if cluster is not None else ""
        stop_anvil_cluster(cluster, None, anvil)
        cluster = anvil = None
        # stop_extension_cluster keeps a directory whose server log shows a
        # crash; the only crash here should be the SIGKILL done on purpose
        crashed = [m for m in re.findall(r"\(PID (\d+)\) was terminated by signal", log)
                   if int(m) not in killed_pids]
        if tmpdir and not crashed and not os.environ.get("ETHINDEX_KEEP_TMP"):
            shutil.rmtree(tmpdir, ignore_errors=True)
        elif tmpdir:
            print("   test directory kept: %s" % tmpdir)


# --- tests -------------------------------------------------------------------

def test_index_history():
    head = history["head"]
    fresh_chain()
    wait_for(head, 60)
    check_chain(0, head)

    # the history really covers what it is meant to cover
    upto = "chain_id = %d AND block_number <= %d" % (CHAIN_ID, head)
    types = {r["type"] for r in q("SELECT DISTINCT type FROM ethindex.transactions "
                                  "WHERE " + upto)}
    assert types >= {0, 1, 2, 3, 4}, types
    ntopics = {r["n"] for r in q(
        "SELECT DISTINCT (topic0 IS NOT NULL)::int + (topic1 IS NOT NULL)::int + "
        "(topic2 IS NOT NULL)::int + (topic3 IS NOT NULL)::int AS n FROM ethindex.logs "
        "WHERE " + upto)}
    assert ntopics == {0, 1, 2, 3, 4}, ntopics
    assert sc("SELECT count(*) FROM ethindex.transactions WHERE %s AND status = 0" % upto) == "1"
    # AnvilTransactions' log contract in block 1 and the history's two
    assert sc("SELECT count(*) FROM ethindex.transactions WHERE %s "
              "AND contract_address IS NOT NULL AND to_address IS NULL" % upto) == "3"
    assert sc("SELECT count(*) FROM ethindex.transactions WHERE %s "
              "AND value >= 2::numeric ^ 64" % upto) == "1"
    assert sc("SELECT count(*) FROM ethindex.transactions WHERE %s "
              "AND cardinality(blob_versioned_hashes) = 1 AND blob_gas_used > 0" % upto) == "1"
    assert sc("SELECT count(*) FROM ethindex.transactions WHERE %s "
              "AND jsonb_array_length(authorization_list) = 1" % upto) == "1"
    empty = sum(1 for n in range(head + 1)
                if int(anvil.rpc("eth_getBlockTransactionCountByNumber", [hex(n)]), 16) == 0)
    assert empty >= 5, empty
    assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d AND number <= %d "
              "AND transaction_count = 0" % (CHAIN_ID, head)) == str(empty)
    assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d AND number <= %d"
              % (CHAIN_ID, head)) == str(head + 1)


def test_follow_head():
    """Transactions arriving while the indexer runs: it follows the head."""
    first = anvil.head()
    fresh_chain(start_block=first)
    wait_for(first, 60)
    anvil.rpc("evm_setAutomine", [True])
    try:
        for i in range(20):
            if i % 3 == 0:
                call_log(i % 5, b"follow%d" % i)
            elif i % 3 == 1:
                send({"from": ACC[0], "to": ACC[5], "value": hex(i), "type": "0x0",
                      "gasPrice": hex(2 * 10**9)})
            else:
                send({"from": ACC[4], "to": ACC[5], "value": hex(i)})
            time.sleep(0.05)    # pacing only: transactions arrive over time
    finally:
        anvil.rpc("evm_setAutomine", [False])
    for i in range(5):
        mixed_block(100 + i)
        anvil.mine()
        time.sleep(0.1)         # pacing only
    head = anvil.head()
    assert head >= first + 25, (first, head)
    wait_for(head, 60)
    check_chain(first, head)


def test_chain_status():
    fresh_chain(start_block=max(0, anvil.head() - 5))
    head = anvil.head()
    wait_for(head, 30)
    cluster.wait_until(
        "SELECT node_head = %d AND indexed_through = %d FROM ethindex.chain_status "
        "WHERE name = %s" % (head, head, lit(CHAIN)), timeout=20)
    st = status()
    assert st["state"] == "running", st
    assert st["chain_id"] == CHAIN_ID, st
    assert st["indexed_through"] == head, st
    assert st["node_head"] == head, st
    assert st["lag"] == 0, st
    assert st["start_block"] == head - 5, st
    assert st["last_error"] is None, st
    assert st["fetcher_pid"], st
    workers = int(sc("SHOW ethindex.insert_workers"))
    assert len(st["writer_pids"]) == workers and all(st["writer_pids"]), st
    assert st["endpoint"] == anvil.url or anvil.url in (st["endpoint"] or ""), st
    assert st["queued_blocks"] >= 0 and st["queued_bytes"] >= 0, st
    for pid in [st["fetcher_pid"]] + st["writer_pids"]:
        assert pid_alive(pid), (pid, st)


def test_stop_and_start():
    """stop() ends the chain's workers and nothing more is fetched or stored
    for it, while the launcher goes on serving another chain started after
    (instead of a fixed sleep: that chain stored proves the launcher and a
    fetcher ran meanwhile); start() resumes where it stopped."""
    url = new_proxy_chain("stopstart")
    first = max(0, anvil.head() - 10)
    fresh_chain(url=url, start_block=first)
    head0 = anvil.head()
    wait_for(head0, 60)
    st = status()
    pids = [st["fetcher_pid"]] + st["writer_pids"]
    t0 = time.monotonic()
    cluster.psql("SELECT ethindex.stop(%s)" % lit(CHAIN))
    # the workers go away promptly (the margin is for a loaded machine)
    deadline = time.monotonic() + 30
    while any(pid_alive(p) for p in pids):
        assert time.monotonic() < deadline, \
            "workers %r still running 30 s after stop(); status %r" % (pids, status())
        time.sleep(0.05)
    stopped_after = time.monotonic() - t0
    cluster.wait_until(workers_gone_sql(CHAIN), timeout=30)
    through = status()["indexed_through"]
    assert through == head0, (through, head0)
    assert proxy.counts(chain="stopstart", method="eth_getBlockByNumber", block=through) > 0

    for i in range(4):
        mixed_block(200 + i)
        anvil.mine()
    anvil.mine(3)
    head = anvil.head()

    # Nothing happens to the stopped chain while the launcher serves another
    # one: a replayed chain started after the stop is launched, fetched and
    # stored completely; meanwhile the stopped chain's endpoint gets no
    # request and its checkpoint and rows stay as they were.
    other = synthchain.generate(6, chain_id=931001)
    proxy.add_chain(Chain("stopstart-other", 931001, other))
    cluster.psql("SELECT ethindex.add_chain('other', ARRAY[%s], chain_id => 931001, "
                 "confirmations => 0, poll_interval => '50 ms'); SELECT ethindex.start('other')"
                 % lit(proxy.chain_url("stopstart-other")))
    wait_for(5, 60, chain="other")
    cluster.wait_until("SELECT state = 'running' FROM ethindex.chain_status "
                       "WHERE name = 'other'", timeout=30)
    st = status()
    assert st["state"] == "stopped" and st["fetcher_pid"] is None, st
    assert st["indexed_through"] == through, (st, through)
    assert sc("SELECT max(number) FROM ethindex.blocks WHERE chain_id = %d"
              % CHAIN_ID) == str(through)
    # (a request in flight at the stop can only be for a block up to
    # "through": the later ones did not exist yet)
    asked = {n: proxy.counts(chain="stopstart", block=n) for n in range(through + 1, head + 1)}
    assert not any(asked.values()), \
        "the stopped chain's endpoint was asked for blocks mined after stop(): %r" % asked
    assert head > through

    cluster.psql("SELECT ethindex.start(%s)" % lit(CHAIN))
    wait_for(head, 60)
    check_chain(first, head)
    assert all(proxy.counts(chain="stopstart", method="eth_getBlockByNumber", block=n)
               for n in range(through + 1, head + 1))
    cluster.wait_until("SELECT state = 'running' FROM ethindex.chain_status "
                       "WHERE name = %s" % lit(CHAIN), timeout=10)
    print("   workers gone %.2fs after stop()" % stopped_after)


def test_chain_id_mismatch():
    fresh_chain(start_block=max(0, anvil.head() - 3))
    wait_for(anvil.head(), 60)
    cluster.psql("SELECT ethindex.add_chain('wrongid', ARRAY[%s], chain_id => 1, "
                 "start_block => 0, confirmations => 0, poll_interval => %s)"
                 % (lit(anvil.url), lit(POLL)))
    cluster.psql("SELECT ethindex.start('wrongid')")
    try:
        cluster.wait_until("SELECT state = 'error' FROM ethindex.chain_status "
                           "WHERE name = 'wrongid'", timeout=30)
        st = status("wrongid")
        err = st["last_error"] or ""
        assert re.search(r"(?<![0-9])1(?![0-9])", err) and "31337" in err, st
        assert st["last_error_at"] is not None, st
        assert st["indexed_through"] is None, st
        assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = 1") == "0"
        # the other chain is unaffected
        assert status()["state"] == "running"
    finally:
        try:
            cluster.psql("SELECT ethindex.stop('wrongid')")
            cluster.wait_until(workers_gone_sql("wrongid"), timeout=60)
            cluster.psql("SELECT ethindex.remove_chain('wrongid')")
        except (PsqlError, AssertionError) as e:
            print("   cleanup of chain wrongid failed: %s" % e)
    head = anvil.mine()
    wait_for(head, 30)
    assert status()["last_error"] is None


def test_writer_sigkill():
    """SIGKILL of an insert worker in the middle of a backfill: crash
    recovery, then the chain resumes with no gap and no duplicate.

    The chain reaches anvil through the proxy, which fails every request
    for block "stall" until told otherwise: the backfill cannot finish
    before the kill, so the kill lands when some but not all of the
    backlog is stored."""
    url = new_proxy_chain("sigkill")
    first = anvil.head() + 1
    # a backlog of 300 blocks with a few transactions each
    for i in range(300):
        if i % 2 == 0:
            call_log(i % 5, b"k" * (i % 64), sender=1)
            send({"from": ACC[0], "to": ACC[5], "value": hex(i + 1), "type": "0x0",
                  "gasPrice": hex(2 * 10**9)})
        anvil.mine()
    head = anvil.head()
    assert head == first + 299
    stall = first + 200
    fault = proxy.add_fault("http_status", chain="sigkill", block=stall, status=500)
    fresh_chain(url=url, start_block=first)

    # kill once ingestion is under way: some blocks stored, the stall not
    # reached by construction
    cluster.wait_until("SELECT cardinality(writer_pids) > 0 AND indexed_through >= %d "
                       "FROM ethindex.chain_status WHERE name = %s" % (first, lit(CHAIN)),
                       timeout=60, interval=0.01)
    st = status()
    pid = [p for p in st["writer_pids"] if p][-1]
    killed_pids.add(pid)
    os.kill(pid, signal.SIGKILL)
    killed_at = st["indexed_through"]
    print("   killed insert worker %d at indexed_through=%s of %d..%d (stall at %d)"
          % (pid, killed_at, first, head, stall))
    assert first <= killed_at < stall, (killed_at, first, stall)
    assert [f["id"] for f in proxy.list_faults()] == [fault], proxy.list_faults()

    # the postmaster notices, resets shared memory and restarts everything
    cluster.wait_for_log("(PID %d) was terminated by signal 9" % pid, timeout=60)
    # after recovery the workers are back and stuck at the stall: the
    # checkpoint committed before the kill is still there, nothing beyond
    # the stall is stored
    cluster.wait_until("SELECT fetcher_pid IS NOT NULL AND indexed_through >= %d "
                       "FROM ethindex.chain_status WHERE name = %s" % (killed_at, lit(CHAIN)),
                       timeout=120, interval=0.2)
    st = status()
    assert pid not in (st["writer_pids"] or []), st
    assert killed_at <= st["indexed_through"] < stall, (st, killed_at, stall)

    proxy.clear_faults(fault)
    deadline = time.monotonic() + 120
    while True:
        try:
            if sc("SELECT ethindex.wait_for(%s, %d, '2 seconds')" % (lit(CHAIN), head)) == "t":
                break
        except PsqlError:
            pass
        assert time.monotonic() < deadline, \
            "chain did not resume after SIGKILL of the writer; status %r\n%s" % (
                q("SELECT * FROM ethindex.chain_status"), cluster.log_tail(80))
        time.sleep(0.2)
    assert sc("SELECT count(*) = max(number) - min(number) + 1 "
              "AND count(DISTINCT number) = count(*) "
              "AND min(number) = %d AND max(number) >= %d FROM ethindex.blocks "
              "WHERE chain_id = %d" % (first, head, CHAIN_ID)) == "t"
    check_chain(first, head)
    cluster.wait_until("SELECT state = 'running' FROM ethindex.chain_status "
                       "WHERE name = %s" % lit(CHAIN), timeout=20)


test_writer_sigkill.timeout = 400


def test_cluster_restart():
    """A clean restart of the cluster: the chain resumes by itself."""
    first = max(0, anvil.head() - 10)
    fresh_chain(start_block=first)
    wait_for(anvil.head(), 60)
    cluster.restart()
    for i in range(3):
        mixed_block(400 + i)
        anvil.mine()
    head = anvil.head()
    wait_for(head, 60)
    check_chain(first, head)
    cluster.wait_until("SELECT state = 'running' AND lag = 0 FROM ethindex.chain_status "
                       "WHERE name = %s" % lit(CHAIN), timeout=20)


CANCEL_LINE = "ERROR:  canceling statement due to user request"


def cancel_backends(pid_condition):
    """pg_cancel_backend() on the chain's workers matching pid_condition (SQL
    over s.fetcher_pid, s.writer_pids and a.pid); [(pid, backend_type)] of
    those it signalled."""
    rows = q("SELECT a.pid, a.backend_type, pg_cancel_backend(a.pid) AS sent "
             "FROM ethindex.chain_status s JOIN pg_stat_activity a ON %s "
             "WHERE s.name = %s" % (pid_condition, lit(CHAIN)))
    return [(r["pid"], r["backend_type"]) for r in rows if r["sent"]]


def test_cancel_fetcher_and_writer():
    """Query cancels (pg_cancel_backend) hitting the workers end in an
    ERROR, never a crash; the chain recovers and stays exact.  First the
    fetcher alone and an insert worker alone, each seen to log the cancel;
    then both kinds at varied points while blocks arrive."""
    first = max(0, anvil.head() - 10)
    fresh_chain(start_block=first)
    wait_for(anvil.head(), 60)
    mark = cluster.log_position()

    for kind, cond in (("ethindex fetcher", "a.pid = s.fetcher_pid"),
                       ("ethindex writer", "a.pid = s.writer_pids[1]")):
        cluster.wait_until("SELECT state = 'running' AND fetcher_pid IS NOT NULL "
                           "AND writer_pids[1] IS NOT NULL FROM ethindex.chain_status "
                           "WHERE name = %s" % lit(CHAIN), timeout=120)
        pos = cluster.log_position()
        hit = cancel_backends(cond)
        assert len(hit) == 1 and hit[0][1] == kind, (kind, hit)
        cluster.wait_for_log("[%d] %s" % (hit[0][0], CANCEL_LINE), since=pos, timeout=60)
        mixed_block(490)
        wait_for(anvil.mine(), 180)

    hits = []           # (pid, backend_type) that pg_cancel_backend signalled
    for round_ in range(30):
        mixed_block(500 + round_)
        anvil.mine()
        hits += cancel_backends("a.pid = s.fetcher_pid OR a.pid = ANY (s.writer_pids)")
        time.sleep(0.03)        # pacing only: cancels at varied points
    head = anvil.head()
    wait_for(head, 180)
    check_chain(first, head)
    log = _log_since(mark)
    assert "terminated by signal" not in log and "PANIC" not in log, \
        "a worker crashed:\n" + cluster.log_tail()
    assert {t for _, t in hits} == {"ethindex fetcher", "ethindex writer"}, hits
    print("   %d cancels sent at varied points (%d fetcher, %d insert worker), %d logged"
          % (len(hits), sum(t == "ethindex fetcher" for _, t in hits),
             sum(t == "ethindex writer" for _, t in hits),
             sum("[%d] %s" % (p, CANCEL_LINE) in log for p, _ in hits)))


test_cancel_fetcher_and_writer.timeout = 300


def _log_since(pos):
    with open(cluster.logfile, "r", errors="replace") as f:
        f.seek(pos)
        return f.read()
