"""
test_anvil.py: ethindex against a real anvil node (prague, FIFO ordering).

One cluster and one anvil for the whole module.  setup_module builds a chain
history with every transaction type (0-4, including a blob transaction and an
EIP-7702 authorization), a contract creation, logs with 0-4 topics, a
reverted transaction, a value above 2^64 wei and empty blocks.  The tests then
index it and compare every stored column with the node's JSON-RPC answers
(ethindex_test.compare_chain), follow the head while transactions arrive,
stop/start, a chain id mismatch, a SIGKILL of the writer and a cluster
restart.  Tests run in source order and build on each other.

The test directory (/tmp/ethindex-test-<pid>-*, server and anvil logs) is
removed at the end unless ETHINDEX_TEST_KEEP=1.  ETHINDEX_TEST_PORT_BASE
(56000) picks the port range (anvil: base..base+49, cluster: base+50..+99).
"""

import os
import re
import shutil
import signal
import tempfile
import time

from ethindex_test import (ANVIL_ACCOUNTS, Anvil, PgCluster, PsqlError,
                           compare_chain, free_port, log_contract_init)

CHAIN = "dev"
CHAIN_ID = 31337
POLL = "100 milliseconds"

SETUP_TIMEOUT = 300
TEST_TIMEOUT = 240

cluster = None
anvil = None
contract = None         # address of the log contract
tmpdir = None
state = {}              # facts remembered between tests


def q(sql):
    return cluster.query(sql)


def sc(sql):
    return cluster.scalar(sql)


def check_chain(first, last, chain_id=CHAIN_ID):
    problems = compare_chain(cluster, anvil.url, chain_id, first, last)
    assert not problems, "%d mismatches in blocks %d..%d:\n%s" % (
        len(problems), first, last, "\n".join(problems[:60]))


def wait_for(block, timeout=60, chain=CHAIN):
    ok = sc("SELECT ethindex.wait_for('%s', %d, '%s seconds')" % (chain, block, timeout))
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
    rows = q("SELECT * FROM ethindex.chain_status WHERE name = '%s'" % chain)
    assert len(rows) == 1, rows
    return rows[0]


# --- generating transactions -------------------------------------------------

ACC = [a for a, _ in ANVIL_ACCOUNTS]
KEY = [k for _, k in ANVIL_ACCOUNTS]


def send(tx):
    """eth_sendTransaction from an unlocked anvil account; returns the hash."""
    return anvil.rpc("eth_sendTransaction", [tx])


def pending_nonce(addr):
    return int(anvil.rpc("eth_getTransactionCount", [addr, "pending"]), 16)


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
    global cluster, anvil, contract, tmpdir
    tmpdir = tempfile.mkdtemp(prefix="ethindex-test-%d-" % os.getpid())
    base = int(os.environ.get("ETHINDEX_TEST_PORT_BASE", "56000"))
    anvil = Anvil(free_port(base, base + 50), logdir=tmpdir)
    cluster = PgCluster(os.path.join(tmpdir, "pg"), free_port(base + 50, base + 100))
    cluster.init().start()
    cluster.createdb("ethindex_test")
    cluster.psql("CREATE EXTENSION ethindex")

    a = anvil
    a.rpc("evm_setAutomine", [False])
    hashes = {}

    # block 1: contract creation (type 2 with anvil's defaults), a legacy and
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

    # block 3: logs with 0..4 topics, a large log, a revert, a legacy creation
    for n in range(5):
        hashes["log%d" % n] = call_log(n, bytes(range(n * 9)))
    hashes["biglog"] = call_log(1, os.urandom(6000), sender=4)
    hashes["revert"] = call_log(0xff, b"\x01\x02\x03", gas=hex(100_000))
    hashes["create_legacy"] = send({"from": ACC[4], "data": "0x" + log_contract_init().hex(),
                                    "gas": hex(1_000_000), "gasPrice": hex(3 * 10**9),
                                    "type": "0x0"})
    a.mine()
    a.mine(3)  # three empty blocks

    # block 7: a blob transaction (type 3) and an EIP-7702 transaction (type 4)
    # delegating account 3 to the log contract, then a call into account 3
    blobfile = os.path.join(tmpdir, "blob.bin")
    with open(blobfile, "wb") as f:
        f.write(b"ethindex blob test " * 100)
    hashes["blob"] = a.cast("send", "--rpc-url", a.url, "--private-key", KEY[2],
                            "--nonce", pending_nonce(ACC[2]), "--blob", "--eip4844",
                            "--path", blobfile, "--async", ACC[5], timeout=120)
    auth = a.cast("wallet", "sign-auth", contract, "--private-key", KEY[3],
                  "--rpc-url", a.url, "--nonce", pending_nonce(ACC[3]))
    hashes["auth"] = a.cast("send", "--rpc-url", a.url, "--private-key", KEY[2],
                            "--nonce", pending_nonce(ACC[2]), "--auth", auth,
                            "--async", ACC[3], "0x03aabbcc")
    a.mine()
    hashes["delegated_call"] = call_log(4, b"\x77" * 33, to=ACC[3])
    for h in mixed_block(0):
        pass
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
    state["history_head"] = a.head()
    state["hashes"] = hashes


def teardown_module():
    try:
        if cluster is not None:
            cluster.stop("fast")
    finally:
        if anvil is not None:
            anvil.stop()
        if tmpdir and os.environ.get("ETHINDEX_TEST_KEEP") != "1":
            shutil.rmtree(tmpdir, ignore_errors=True)


# --- tests -------------------------------------------------------------------

def test_index_history():
    head = state["history_head"]
    cluster.psql("SELECT ethindex.add_chain('%s', ARRAY['%s'], chain_id => %d, "
                 "start_block => 0, confirmations => 0, poll_interval => '%s')"
                 % (CHAIN, anvil.url, CHAIN_ID, POLL))
    cluster.psql("SELECT ethindex.start('%s')" % CHAIN)
    wait_for(head, 60)
    check_chain(0, head)

    # the history really covers what it is meant to cover
    types = {r["type"] for r in q("SELECT DISTINCT type FROM ethindex.transactions "
                                  "WHERE chain_id = %d" % CHAIN_ID)}
    assert types >= {0, 1, 2, 3, 4}, types
    ntopics = {r["n"] for r in q(
        "SELECT DISTINCT (topic0 IS NOT NULL)::int + (topic1 IS NOT NULL)::int + "
        "(topic2 IS NOT NULL)::int + (topic3 IS NOT NULL)::int AS n FROM ethindex.logs "
        "WHERE chain_id = %d" % CHAIN_ID)}
    assert ntopics == {0, 1, 2, 3, 4}, ntopics
    assert sc("SELECT count(*) FROM ethindex.transactions WHERE chain_id = %d AND status = 0"
              % CHAIN_ID) == "1"
    assert sc("SELECT count(*) FROM ethindex.transactions WHERE chain_id = %d "
              "AND contract_address IS NOT NULL AND to_address IS NULL" % CHAIN_ID) == "2"
    assert sc("SELECT count(*) FROM ethindex.transactions WHERE chain_id = %d "
              "AND value >= 2::numeric ^ 64" % CHAIN_ID) == "1"
    assert sc("SELECT count(*) FROM ethindex.transactions WHERE chain_id = %d "
              "AND cardinality(blob_versioned_hashes) = 1 AND blob_gas_used > 0" % CHAIN_ID) == "1"
    assert sc("SELECT count(*) FROM ethindex.transactions WHERE chain_id = %d "
              "AND jsonb_array_length(authorization_list) = 1" % CHAIN_ID) == "1"
    assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d "
              "AND transaction_count = 0" % CHAIN_ID) not in ("0", None)
    assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d" % CHAIN_ID) \
        == str(head + 1)


def test_follow_head():
    """Transactions arriving while the indexer runs: it follows the head."""
    anvil.rpc("evm_setAutomine", [True])
    for i in range(20):
        if i % 3 == 0:
            call_log(i % 5, b"follow%d" % i)
        elif i % 3 == 1:
            send({"from": ACC[0], "to": ACC[5], "value": hex(i), "type": "0x0",
                  "gasPrice": hex(2 * 10**9)})
        else:
            send({"from": ACC[4], "to": ACC[5], "value": hex(i)})
        time.sleep(0.05)
    anvil.rpc("evm_setAutomine", [False])
    for i in range(5):
        mixed_block(100 + i)
        anvil.mine()
        time.sleep(0.1)
    head = anvil.head()
    wait_for(head, 60)
    check_chain(0, head)
    state["head"] = head


def test_chain_status():
    head = anvil.head()
    wait_for(head, 30)
    cluster.wait_until(
        "SELECT node_head = %d AND indexed_through = %d FROM ethindex.chain_status "
        "WHERE name = '%s'" % (head, head, CHAIN), timeout=20)
    st = status()
    assert st["state"] == "running", st
    assert st["chain_id"] == CHAIN_ID, st
    assert st["indexed_through"] == head, st
    assert st["node_head"] == head, st
    assert st["lag"] == 0, st
    assert st["start_block"] == 0, st
    assert st["last_error"] is None, st
    assert st["fetcher_pid"], st
    workers = int(sc("SHOW ethindex.insert_workers"))
    assert len(st["writer_pids"]) == workers and all(st["writer_pids"]), st
    assert st["endpoint"] == anvil.url or anvil.url in (st["endpoint"] or ""), st
    assert st["queued_blocks"] >= 0 and st["queued_bytes"] >= 0, st
    for pid in [st["fetcher_pid"]] + st["writer_pids"]:
        assert pid_alive(pid), (pid, st)


def test_stop_and_start():
    st = status()
    pids = [st["fetcher_pid"]] + st["writer_pids"]
    t0 = time.monotonic()
    cluster.psql("SELECT ethindex.stop('%s')" % CHAIN)
    cluster.wait_until(
        "SELECT state = 'stopped' FROM ethindex.chain_status WHERE name = '%s'" % CHAIN,
        timeout=2)
    # the workers go away promptly
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids):
        assert time.monotonic() < deadline, \
            "workers %r still running 5 s after stop(); status %r" % (pids, status())
        time.sleep(0.05)
    stopped_after = time.monotonic() - t0
    through = status()["indexed_through"]

    for i in range(4):
        mixed_block(200 + i)
        anvil.mine()
    anvil.mine(3)
    head = anvil.head()
    time.sleep(2.0)
    st = status()
    assert st["state"] == "stopped", st
    assert st["indexed_through"] == through, (st, through)
    assert sc("SELECT max(number) FROM ethindex.blocks WHERE chain_id = %d"
              % CHAIN_ID) == str(through)

    cluster.psql("SELECT ethindex.start('%s')" % CHAIN)
    wait_for(head, 60)
    check_chain(through - 2, head)
    cluster.wait_until("SELECT state = 'running' FROM ethindex.chain_status "
                       "WHERE name = '%s'" % CHAIN, timeout=10)
    print("   workers gone %.2fs after stop()" % stopped_after)


def test_chain_id_mismatch():
    cluster.psql("SELECT ethindex.add_chain('wrongid', ARRAY['%s'], chain_id => 1, "
                 "start_block => 0, confirmations => 0, poll_interval => '%s')"
                 % (anvil.url, POLL))
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
            cluster.psql("SELECT ethindex.stop('wrongid'); "
                         "SELECT ethindex.remove_chain('wrongid')")
        except PsqlError as e:
            print("   cleanup of chain wrongid failed: %s" % e)
    head = anvil.mine()
    wait_for(head, 30)


def test_writer_sigkill():
    """SIGKILL of the writer mid-ingestion: crash recovery, then the chain
    resumes with no gap and no duplicate."""
    cluster.psql("SELECT ethindex.stop('%s')" % CHAIN)
    cluster.wait_until("SELECT state = 'stopped' FROM ethindex.chain_status "
                       "WHERE name = '%s'" % CHAIN, timeout=5)
    through = status()["indexed_through"]
    # a backlog of 300 blocks with a few transactions each
    for i in range(300):
        if i % 2 == 0:
            call_log(i % 5, b"k" * (i % 64), sender=1)
            send({"from": ACC[0], "to": ACC[5], "value": hex(i + 1), "type": "0x0",
                  "gasPrice": hex(2 * 10**9)})
        anvil.mine()
    head = anvil.head()
    assert head >= through + 300

    cluster.psql("SELECT ethindex.start('%s')" % CHAIN)
    # kill once ingestion is under way (and, if we are quick enough, mid-way)
    cluster.wait_until("SELECT cardinality(writer_pids) > 0 AND indexed_through > %d "
                       "FROM ethindex.chain_status WHERE name = '%s'" % (through, CHAIN),
                       timeout=30, interval=0.01)
    st = status()
    pid = st["writer_pids"][-1]
    os.kill(pid, signal.SIGKILL)
    killed_at = st["indexed_through"]
    print("   killed writer %d at indexed_through=%s of %d" % (pid, killed_at, head))

    # the postmaster notices, resets shared memory and restarts everything
    cluster.wait_until("SELECT true", timeout=60)
    deadline = time.monotonic() + 120
    while True:
        try:
            if sc("SELECT ethindex.wait_for('%s', %d, '2 seconds')" % (CHAIN, head)) == "t":
                break
        except PsqlError:
            pass
        assert time.monotonic() < deadline, \
            "chain did not resume after SIGKILL of the writer; status %r\n%s" % (
                q("SELECT * FROM ethindex.chain_status"), cluster.log_tail(80))
        time.sleep(0.2)
    log = cluster.log_text()
    assert re.search(r"terminated by signal 9", log), cluster.log_tail(80)
    assert sc("SELECT count(*) = max(number) + 1 AND count(DISTINCT number) = count(*) "
              "AND min(number) = 0 AND max(number) >= %d FROM ethindex.blocks "
              "WHERE chain_id = %d" % (head, CHAIN_ID)) == "t"
    check_chain(0, head)
    cluster.wait_until("SELECT state = 'running' FROM ethindex.chain_status "
                       "WHERE name = '%s'" % CHAIN, timeout=20)


test_writer_sigkill.timeout = 400


def test_cluster_restart():
    """A clean restart of the cluster: the chain resumes by itself."""
    cluster.restart()
    for i in range(3):
        mixed_block(400 + i)
        anvil.mine()
    head = anvil.head()
    wait_for(head, 60)
    check_chain(head - 20, head)
    cluster.wait_until("SELECT state = 'running' AND lag = 0 FROM ethindex.chain_status "
                       "WHERE name = '%s'" % CHAIN, timeout=20)


def test_cancel_fetcher_and_writer():
    """Query cancels (pg_cancel_backend) hitting the workers at random points
    end in an ERROR, never a crash; the chain recovers and stays exact."""
    crashes_before = cluster.log_text().count("terminated by signal")
    for round_ in range(30):
        mixed_block(500 + round_)
        anvil.mine()
        pids = q("SELECT fetcher_pid, writer_pids FROM ethindex.chain_status WHERE name = '%s'" % CHAIN)
        for pid in [pids[0]["fetcher_pid"]] + (pids[0]["writer_pids"] or []):
            if pid:
                cluster.psql("SELECT pg_cancel_backend(%d)" % pid)
        time.sleep(0.03)
    head = anvil.head()
    wait_for(head, 120)
    check_chain(head - 40, head)
    assert cluster.log_text().count("terminated by signal") == crashes_before, \
        "a worker crashed:\n" + cluster.log_tail()
