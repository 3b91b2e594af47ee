"""
test_crash.py: exactly once under any crash.

SIGKILL of an ethindex worker (fetcher, insert worker or launcher) and
immediate shutdowns of the whole cluster, at random moments during a
backfill, while the chain follows the head through reorganizations, and in
the middle of a rollback, must leave the tables equal to the node's
canonical chain once the chain has caught up again: no gap, no duplicate, no
orphaned row.

One anvil (automine off, every block mined by the test) and one cluster
(start_extension_cluster, 2 insert workers, batches of 20 blocks) for the
whole module; one chain with confirmations 0, partition_size 1000 and 20
blocks per request, whose endpoint is an rpcserver proxy in front of anvil
(it slows block requests down during the backfill, which would otherwise be
over in a blink).  setup_module builds a history of about 2600 blocks
(transaction types 0-4 including a blob and an EIP-7702 transaction, logs
with 0-4 topics, reverted calls, long runs of empty blocks): partitions 0
and 1000 are loaded without indexes and indexed when complete, partition
2000 has its indexes from the start.  Then, in source order:

  test_kills_during_backfill   the chain starts; kills at random heights of
                               the checkpoint below block 1900 (the proxy
                               answers 503 from block 2100 on meanwhile);
                               then a session inserts, without committing, a
                               blocks row of block 2300, so the insert worker
                               storing that block waits on the primary key
                               while the other one commits batches ahead of
                               the checkpoint; a kill then, and the next run
                               must discard them
  test_kills_during_live_tail  iterations of node activity (a few blocks,
                               sometimes anvil_reorg, anvil_rollback or
                               evm_revert with a longer new branch), a random
                               pause of 0-300 ms, then a random kill
  test_kills_during_rollback   a session holds ethindex.reorgs locked, so the
                               rollback transaction stops at its INSERT after
                               its DELETEs; the writer doing it, the fetcher
                               waiting for it, or the whole cluster is killed;
                               the reorganization is recorded exactly once
                               afterwards, by the retried rollback
  test_exactly_once            the last block reached, the full comparison of
                               every row of every table with the node
                               (compare_chain), gaps(), no row above
                               indexed_through, consistent ethindex.reorgs,
                               every partition indexed, the kills (and no
                               other crash) in the server log

Every kill is followed by a wait until the server accepts connections again;
the chain resumes on its own.  The random choices come from a fixed seed
(ETHINDEX_CRASH_SEED, default 7702), so a run is repeatable up to the timing
of the machine.  ETHINDEX_CRASH_PORT_BASE (59500) picks the ports (anvil:
base..base+9, cluster: base+10..+19, proxy: base+20..+29).  The test
directory (server and anvil logs) is removed after a successful run unless
ETHINDEX_KEEP_TMP is set, and kept (its path printed) after a failure.

Run:  runuser -u ethindex -- python3 test/integration/run.py -k test_crash
"""

import collections
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import ethindex_test as et          # noqa: E402
from ethindex_test import ANVIL_ACCOUNTS, PsqlError  # noqa: E402
from rpcserver import RpcServer     # noqa: E402

PORT_BASE = int(os.environ.get("ETHINDEX_CRASH_PORT_BASE", "59500"))
# the tests are the phases of one run (see above); a test run alone runs the
# phases before it first (after())
TESTS_IN_ORDER = "phases of one indexing run under kills"
SEED = int(os.environ.get("ETHINDEX_CRASH_SEED", "7702"))
CHAIN = "crash"
CHAIN_ID = 31337
SETTINGS = {
    "ethindex.insert_workers": 2,           # the default, relied upon
    "ethindex.writer_batch_blocks": 20,     # many commits: many moments to kill at
    "ethindex.retry_max_delay": 1000,       # ms
}
BATCH_SIZE = 20             # blocks per request (fixed, see BACKFILL_DELAY)
BACKFILL_DELAY = 0.2        # s per request for blocks during the backfill: it
                            # takes seconds, and responses arrive in bursts
                            # that keep both insert workers busy
HELD_BLOCK = 2300           # the block held back in partition 2000
GATE_BLOCK = 2100           # no block from here on until HELD_BLOCK is held
BACKFILL_KILLS = 6          # kills at random heights below partition 2000
LIVE_ITERATIONS = 20        # iterations of node activity + kill at the head
MIN_KILLS = 20
KILL_WEIGHTS = {"fetcher": 3, "writer": 4, "immediate": 2, "launcher": 1}
RECOVERY_WAIT = 180         # s: a crash restart on a loaded machine
CATCHUP_WAIT = 240          # s: the chain back at the node's head

SETUP_TIMEOUT = 300
TEST_TIMEOUT = 400

READY = "database system is ready to accept connections"
DISCARDED = re.compile(r"discarded (\d+) blocks stored above the checkpoint at block (\d+)")

cluster = None
anvil = None
proxy = None                # RpcServer forwarding to anvil: the chain's endpoint
tmpdir = None
contract = None
rng = random.Random(SEED)
state = {"history_head": None, "passed": set()}
kills = collections.Counter()       # (phase, kind) -> kills that happened
sigkilled = []                      # pids killed with SIGKILL (seen in the log)
immediate_stops = [0]
sessions = []                       # psql sessions holding a lock or a row

ACC = [a for a, _ in ANVIL_ACCOUNTS]
lit = et.sql_literal


# ---------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------

def setup_module():
    global cluster, anvil, proxy, tmpdir
    print("   seed %d" % SEED)
    try:
        cluster, tmpdir = et.start_extension_cluster(
            "ethindex-crash-", et.free_port(PORT_BASE + 10, PORT_BASE + 20), SETTINGS)
        anvil = et.Anvil(et.free_port(PORT_BASE, PORT_BASE + 10), logdir=tmpdir)
        proxy = RpcServer(et.free_port(PORT_BASE + 20, PORT_BASE + 30), upstream=anvil.url).start()
        build_history()
        cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, start_block => 0, "
                     "confirmations => 0, partition_size => 1000, batch_size => %d)"
                     % (lit(CHAIN), lit(proxy.url), CHAIN_ID, BATCH_SIZE))
    except BaseException:
        teardown_module()
        raise


def teardown_module():
    global cluster, anvil, proxy
    for p in list(sessions):
        close_session(p)
    ok = len(state["passed"]) == 4
    keep = bool(os.environ.get("ETHINDEX_KEEP_TMP")) or not ok
    try:
        if cluster is not None:
            cluster.stop("fast" if ok else "immediate")
    finally:
        cluster = None
        if proxy is not None:
            proxy.stop()
            proxy = None
        if anvil is not None:
            anvil.stop()
            anvil = None
        if tmpdir:
            if keep:
                print("   test directory kept: %s" % tmpdir)
            else:
                shutil.rmtree(tmpdir, ignore_errors=True)


# ---------------------------------------------------------------------------
# node activity
# ---------------------------------------------------------------------------

_tag = [0]


def next_tag():
    """A number never used before: makes transactions (and blocks) unique."""
    _tag[0] += 1
    return _tag[0]


def send(tx):
    return anvil.rpc("eth_sendTransaction", [tx])


def receipt(h):
    r = anvil.rpc("eth_getTransactionReceipt", [h])
    assert r is not None, "transaction %s was not mined" % h
    return r


def pending_nonce(addr):
    return int(anvil.rpc("eth_getTransactionCount", [addr, "pending"]), 16)


def random_tx():
    """A transaction request of a random kind: type 0, 1 or 2 transfers,
    log contract calls emitting LOG0..LOG4, a reverting call."""
    tag = next_tag()
    k = rng.randrange(6)
    if k == 0:
        return {"from": ACC[0], "to": ACC[5], "value": hex(10**15 + tag),
                "gasPrice": hex(2 * 10**9), "type": "0x0"}
    if k == 1:
        return {"from": ACC[1], "to": ACC[5], "value": hex(tag), "type": "0x1",
                "gasPrice": hex(2 * 10**9),
                "accessList": [{"address": ACC[5], "storageKeys": ["0x%064x" % tag]}]}
    if k == 2:
        return {"from": ACC[4], "to": ACC[5], "value": hex(tag),
                "maxFeePerGas": hex(10**10), "maxPriorityFeePerGas": hex(10**9)}
    if k == 5:
        return {"from": ACC[4], "to": contract, "data": "0xff%08x" % tag, "gas": hex(100_000)}
    return {"from": ACC[k - 2], "to": contract,
            "data": "0x%02x" % rng.randrange(5) + ("%08x" % tag) * rng.randint(1, 12)}


def mine_with_txs(nblocks, max_txs=4):
    """Mine nblocks blocks of 0..max_txs random transactions; the new head."""
    for _ in range(nblocks):
        for _ in range(rng.randint(0, max_txs)):
            send(random_tx())
        anvil.mine()
    return anvil.head()


def mine_unique():
    """One block with a transaction no other block has."""
    send({"from": ACC[0], "to": ACC[5], "value": hex(10**12 + next_tag())})
    anvil.mine()


def build_history():
    """About 2600 blocks: a contract creation, a blob and an EIP-7702
    transaction, five runs of 50 blocks with random transactions, each
    followed by 470 empty blocks."""
    global contract
    a = anvil
    txs = et.AnvilTransactions(a, tmpdir)       # automine off, the log contract
    contract = txs.contract
    blob = txs.queue_blob()
    delegation = txs.queue_authorization()
    a.mine()
    delegated = send({"from": ACC[1], "to": ACC[3], "data": "0x04" + "77" * 33})
    a.mine()
    types = {int(receipt(x)["type"], 16) for x in (blob, delegation)}
    assert types == {3, 4}, types
    assert receipt(delegated)["logs"], receipt(delegated)

    for _ in range(5):
        mine_with_txs(50)
        a.mine(470)
    state["history_head"] = a.head()
    assert 2000 < HELD_BLOCK < state["history_head"] - 200
    print("   history: %d blocks" % (state["history_head"] + 1))


def reorg_with_txs(depth):
    """anvil_reorg: the last depth blocks replaced (the head height stays),
    the first of them with a transaction of its own (so its hash differs)."""
    txs = [[{"from": ACC[0], "to": ACC[5], "value": hex(10**12 + next_tag())}, 0]]
    for sender in rng.sample((1, 4), rng.randint(0, 2)):
        txs.append([{"from": ACC[sender], "to": contract,
                     "data": "0x%02x%08x" % (rng.randrange(5), next_tag())},
                    rng.randrange(depth)])
    anvil.rpc("anvil_reorg", [depth, txs])
    return "anvil_reorg %d" % depth


def rollback_and_branch(depth):
    """anvil_rollback depth blocks, then a longer new branch."""
    anvil.rpc("anvil_rollback", [depth])
    mine_unique()
    mine_with_txs(depth + rng.randint(0, 2))
    return "anvil_rollback %d" % depth


def revert_and_branch(depth):
    """evm_snapshot, depth blocks, a pause (the chain may store them),
    evm_revert, then a longer new branch."""
    snap = anvil.rpc("evm_snapshot")
    mine_with_txs(depth)
    time.sleep(rng.uniform(0, 0.3))
    assert anvil.rpc("evm_revert", [snap]) is True
    mine_unique()
    mine_with_txs(depth + rng.randint(0, 2))
    return "evm_revert %d" % depth


def node_activity():
    """Sometimes a reorganization, then 1-5 blocks with transactions.
    Returns what happened."""
    r = rng.random()
    what = "blocks"
    if r < 0.2:
        what = reorg_with_txs(rng.randint(1, 6))
    elif r < 0.3:
        what = rollback_and_branch(rng.randint(1, 6))
    elif r < 0.4:
        what = revert_and_branch(rng.randint(1, 5))
    mine_with_txs(rng.randint(1, 5))
    return what


# ---------------------------------------------------------------------------
# the cluster
# ---------------------------------------------------------------------------

def sc(sql):
    return cluster.scalar(sql)


def checkpoint():
    """indexed_through (chains.next_block - 1)."""
    return int(sc("SELECT next_block - 1 FROM ethindex.chains WHERE name = %s" % lit(CHAIN)))


def status_text():
    """chain_status and the server log tail, for failure messages (never
    waits long for a lock a session of the test holds)."""
    try:
        st = cluster.psql("SET lock_timeout = '2s'; SELECT row_to_json(s) FROM "
                          "ethindex.chain_status s", timeout=10)
    except PsqlError as e:
        st = "(chain_status: %s)" % e
    return "chain_status: %s\n--- server log tail ---\n%s" % (st, cluster.log_tail(80))


def wait_for_head(block, timeout=CATCHUP_WAIT):
    """Until indexed_through >= block; errors (a restart) count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if sc("SELECT ethindex.wait_for(%s, %d, '2 seconds')" % (lit(CHAIN), block)) == "t":
                return
        except PsqlError:
            time.sleep(0.2)
        if time.monotonic() > deadline:
            raise AssertionError("chain did not reach block %d within %d s\n%s"
                                 % (block, timeout, status_text()))


def workers():
    """{kind: [pid]} of the running ethindex processes (launcher, fetcher,
    writer)."""
    out = collections.defaultdict(list)
    text = cluster.psql("SELECT backend_type, pid FROM pg_stat_activity "
                        "WHERE backend_type LIKE 'ethindex %' ORDER BY pid")
    for line in text.splitlines():
        kind, pid = line.split("|")
        out[kind.split()[1]].append(int(pid))
    return out


def wait_workers(timeout=RECOVERY_WAIT):
    """Until the launcher, the fetcher and both insert workers run."""
    cluster.wait_until(
        "SELECT count(*) FILTER (WHERE backend_type = 'ethindex launcher') = 1 "
        "AND count(*) FILTER (WHERE backend_type = 'ethindex fetcher') = 1 "
        "AND count(*) FILTER (WHERE backend_type = 'ethindex writer') = 2 "
        "FROM pg_stat_activity", timeout=timeout)


def rollback_running():
    return sc("SELECT count(*) > 0 FROM pg_stat_activity "
              "WHERE backend_type = 'ethindex writer' "
              "AND query LIKE 'rolling back blocks%' AND state = 'active'") == "t"


def is_postgres(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().startswith(b"postgres")
    except OSError:
        return False


def kill(kind, phase, pid=None):
    """Kill a worker of the given kind (fetcher, writer, launcher: SIGKILL,
    pid or a random one of that kind) or stop the cluster with -m immediate
    and start it again; wait until the server accepts connections again.
    Returns True if the kill happened (a SIGKILL may find its process gone)."""
    log = cluster.log_text()
    ready_before = log.count(READY)
    mark = len(log)
    if kind == "immediate":
        cluster.stop("immediate")
        immediate_stops[0] += 1
        cluster.start(timeout=RECOVERY_WAIT)
    else:
        if pid is None:
            pids = workers().get(kind)
            if not pids:
                return False
            pid = rng.choice(pids)
        if not is_postgres(pid):
            return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        killed = "(PID %d) was terminated by signal 9" % pid
        exited = "(PID %d) exited" % pid
        deadline = time.monotonic() + RECOVERY_WAIT
        while True:
            log = cluster.log_text()
            if exited in log[mark:] and killed not in log[mark:]:
                return False        # it had exited on its own
            if killed in log[mark:] and log.count(READY) > ready_before:
                break
            assert time.monotonic() < deadline, \
                "no crash restart after SIGKILL of %s %d\n%s" % (kind, pid, cluster.log_tail(60))
            time.sleep(0.05)
        sigkilled.append(pid)
    cluster.wait_until("SELECT true", timeout=RECOVERY_WAIT)
    kills[(phase, kind)] += 1
    return True


def random_kind():
    return rng.choices(list(KILL_WEIGHTS), weights=list(KILL_WEIGHTS.values()))[0]


def random_kill(phase):
    """Kill a random target (waiting for the workers to be back first); a
    kill that finds a rollback running counts as one during a rollback."""
    kind = random_kind()
    if kind != "immediate":
        wait_workers()
    try:
        if rollback_running():
            phase = "rollback"
    except PsqlError:
        pass
    return kill(kind, phase)


def kills_in(phase):
    return sum(v for (p, _), v in kills.items() if p == phase)


# ---------------------------------------------------------------------------
# sessions that hold something until the next crash
# ---------------------------------------------------------------------------

def open_session(app, sql):
    """A psql session (application_name app) running sql, kept open: its
    transaction stays open until the crash restart ends the backend."""
    env = cluster.env()
    env["PGAPPNAME"] = app
    p = subprocess.Popen([os.path.join(cluster.bindir, "psql"), "-X", "-q", "-d", "ethindex_test"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env, text=True)
    sessions.append(p)
    p.stdin.write(sql)
    p.stdin.flush()
    return p


def close_session(p):
    """End the session (the crash restart has usually killed its backend)."""
    try:
        p.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    if p in sessions:
        sessions.remove(p)


def lock_reorgs():
    """A session holding ethindex.reorgs in ACCESS EXCLUSIVE mode: a
    rollback stops at its INSERT INTO ethindex.reorgs, after its DELETEs."""
    app = "ethindex-crash-lock-reorgs"
    p = open_session(app, "BEGIN;\nLOCK TABLE ethindex.reorgs IN ACCESS EXCLUSIVE MODE;\n")
    cluster.wait_until(
        "SELECT count(*) = 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE a.application_name = %s AND l.relation = 'ethindex.reorgs'::regclass "
        "AND l.mode = 'AccessExclusiveLock' AND l.granted" % lit(app), timeout=60)
    return p


def hold_block(number):
    """A session with an uncommitted blocks row of block number (which must
    lie in a partition with indexes): the insert worker storing that block
    waits on the primary key for the session's transaction to end.  The row
    goes straight into the partition: a lock on the parent table would stop
    the creation of the next partition."""
    app = "ethindex-crash-hold-block"
    partition = sc("SELECT ethindex._partition_name('blocks', %d, first_block) "
                   "FROM ethindex.partitions WHERE chain_id = %d "
                   "AND %d BETWEEN first_block AND last_block" % (CHAIN_ID, CHAIN_ID, number))
    zero = "'\\x%s'" % ("00" * 32)
    p = open_session(app, "BEGIN;\nINSERT INTO ethindex.%s (chain_id, number, hash, "
                     "parent_hash, gas_limit, gas_used, timestamp, uncles, transaction_count) "
                     "VALUES (%d, %d, %s, %s, 0, 0, now(), '{}', 0);\n"
                     % (partition, CHAIN_ID, number, zero, zero))
    cluster.wait_until("SELECT state = 'idle in transaction' AND backend_xid IS NOT NULL "
                       "FROM pg_stat_activity WHERE application_name = %s" % lit(app),
                       timeout=60)
    return p


def stored_hash(n):
    return sc("SELECT hash FROM ethindex.blocks WHERE chain_id = %d AND number = %d"
              % (CHAIN_ID, n))


def blocks_ahead():
    """Blocks stored at or above the checkpoint (committed out of order)."""
    return int(sc("SELECT count(*) FROM ethindex.blocks b JOIN ethindex.chains c "
                  "ON b.chain_id = c.chain_id AND b.number >= c.next_block "
                  "WHERE c.name = %s" % lit(CHAIN)))


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------

def kill_with_batches_ahead():
    """Hold HELD_BLOCK, open the gate, and once the insert worker storing
    HELD_BLOCK waits for the holding session and the other one has committed
    two batches or more ahead of the checkpoint, kill.  The next run must
    discard those batches.

    The partition of HELD_BLOCK exists with its indexes (partitions are
    created one ahead of the rows; the holder's row is what the insert
    worker waits for on the primary key)."""
    cluster.wait_until("SELECT count(*) = 1 FROM ethindex.partitions WHERE chain_id = %d "
                       "AND %d BETWEEN first_block AND last_block AND indexed_at IS NOT NULL"
                       % (CHAIN_ID, HELD_BLOCK), timeout=CATCHUP_WAIT)
    through = checkpoint()
    assert through < HELD_BLOCK - 2 * BATCH_SIZE, through
    holder = hold_block(HELD_BLOCK)
    try:
        proxy.clear_faults(state["gate"])
        cluster.wait_until(
            "SELECT count(*) = 1 FROM pg_locks l JOIN pg_stat_activity w ON w.pid = l.pid "
            "JOIN pg_stat_activity h ON l.transactionid = h.backend_xid "
            "WHERE w.backend_type = 'ethindex writer' AND l.locktype = 'transactionid' "
            "AND NOT l.granted AND h.application_name = 'ethindex-crash-hold-block'",
            timeout=CATCHUP_WAIT)
        deadline = time.monotonic() + CATCHUP_WAIT
        while blocks_ahead() < 2 * BATCH_SIZE:
            assert time.monotonic() < deadline, \
                "no batches committed ahead of the checkpoint\n%s" % status_text()
            time.sleep(0.05)
        through, ahead = checkpoint(), blocks_ahead()
        mark = len(cluster.log_text())
        kind = random_kind()
        assert kill(kind, "backfill"), "the %s to kill was gone" % kind
    finally:
        close_session(holder)
    print("   backfill %d: %s killed with indexed_through %d, %d blocks committed ahead"
          % (BACKFILL_KILLS + 1, kind, through, ahead))
    # the next run discards them (and more if more committed before the kill;
    # the checkpoint may have moved up to the held batch before the kill)
    deadline = time.monotonic() + CATCHUP_WAIT
    while True:
        found = DISCARDED.search(cluster.log_text()[mark:])
        if found:
            break
        assert time.monotonic() < deadline, \
            "the next run did not discard the blocks stored ahead\n%s" % status_text()
        time.sleep(0.1)
    discarded, at = int(found.group(1)), int(found.group(2))
    assert through < at <= HELD_BLOCK and discarded >= ahead - (at - through - 1), \
        (found.group(0), through, ahead)


def after(*phases):
    """Run the phases (tests) this one follows that have not passed in this
    run, so that each test also runs alone (-k): they are one scenario."""
    for phase in phases:
        if phase not in state["passed"]:
            {"backfill": test_kills_during_backfill, "live": test_kills_during_live_tail,
             "rollback": test_kills_during_rollback}[phase]()


def test_kills_during_backfill():
    """Kills while the chain indexes its ~2600 blocks of history: at random
    heights of the checkpoint (reached, then a pause of 0-50 ms) while the
    node answers no block from GATE_BLOCK on (503 from the proxy), then one
    with batches committed ahead of the checkpoint."""
    head = state["history_head"]
    proxy.add_fault("delay", method="eth_getBlockReceipts", seconds=BACKFILL_DELAY)
    state["gate"] = proxy.add_fault("http_status", method="eth_getBlockReceipts", status=503,
                                    block=set(range(GATE_BLOCK, head + 1)))
    try:
        cluster.psql("SELECT ethindex.start(%s)" % lit(CHAIN))
        t0 = time.monotonic()
        for n, point in enumerate(sorted(rng.sample(range(20, 1900), BACKFILL_KILLS))):
            wait_for_head(point)
            time.sleep(rng.uniform(0, 0.05))
            through = checkpoint()
            ok = random_kill("backfill")
            print("   backfill %d: indexed_through %d of %d: %s"
                  % (n + 1, through, head, "killed" if ok else "target gone, no kill"))
        kill_with_batches_ahead()
        wait_for_head(head)
        print("   backfill done in %.1fs" % (time.monotonic() - t0))
    finally:
        proxy.clear_faults()
    assert kills_in("backfill") >= 3, kills
    state["passed"].add("backfill")


test_kills_during_backfill.timeout = 400


def test_kills_during_live_tail():
    """Iterations of node activity, a random pause, a random kill."""
    after("backfill")
    for i in range(LIVE_ITERATIONS):
        if rng.random() < 0.5:
            # sometimes from a chain at the head, sometimes from one catching up
            wait_for_head(anvil.head())
        what = node_activity()
        time.sleep(rng.uniform(0, 0.3))
        through = checkpoint()
        ok = random_kill("live")
        print("   live %2d: %-18s indexed_through %d, head %d: %s"
              % (i + 1, what, through, anvil.head(), "killed" if ok else "target gone, no kill"))
    wait_for_head(anvil.head())
    state["passed"].add("live")


test_kills_during_live_tail.timeout = 400


def stop_rollback_and_kill(kind, make_reorg):
    """Hold ethindex.reorgs locked, make a reorganization of the stored head,
    wait until an insert worker's rollback waits for the lock (its DELETEs
    done, not committed), kill; afterwards the reorganization is recorded
    exactly once, by the rollback retried after the restart."""
    head = mine_with_txs(2)
    wait_for_head(head)
    old_head_hash = stored_hash(head)
    locker = lock_reorgs()
    try:
        what = make_reorg()
        anvil.mine()
        cluster.wait_until(
            "SELECT count(*) = 1 FROM pg_stat_activity a JOIN pg_locks l USING (pid) "
            "WHERE a.backend_type = 'ethindex writer' AND a.query LIKE 'rolling back blocks%' "
            "AND a.wait_event_type = 'Lock' AND l.relation = 'ethindex.reorgs'::regclass "
            "AND NOT l.granted", timeout=CATCHUP_WAIT)
        writer = int(sc("SELECT pid FROM pg_stat_activity WHERE backend_type = 'ethindex writer' "
                        "AND query LIKE 'rolling back blocks%'"))
        fetcher = int(sc("SELECT pid FROM pg_stat_activity "
                         "WHERE backend_type = 'ethindex fetcher'"))
        killed_at = sc("SELECT clock_timestamp()")
        # its deletes are done but not visible: the old branch is still stored
        assert stored_hash(head) == old_head_hash
        assert kill(kind, "rollback", {"writer": writer, "fetcher": fetcher}.get(kind)), \
            "the %s doing/awaiting the rollback was gone before the kill" % kind
    finally:
        close_session(locker)
    print("   rollback kill (%s) during %s at block %d" % (kind, what, head))
    # nothing of it was committed
    assert sc("SELECT count(*) FROM ethindex.reorgs WHERE old_head_hash = %s "
              "AND rolled_back_at <= %s" % (lit(old_head_hash), lit(killed_at))) == "0"
    # the chain retries the rollback and reaches the new head
    new_head = mine_with_txs(1)
    wait_for_head(new_head)
    rows = cluster.query("SELECT id, fork_block, depth, rolled_back_at > %s AS later "
                         "FROM ethindex.reorgs WHERE old_head_hash = %s"
                         % (lit(killed_at), lit(old_head_hash)))
    assert len(rows) == 1 and rows[0]["later"], (rows, status_text())
    assert stored_hash(head) != old_head_hash


def test_kills_during_rollback():
    after("backfill")
    stop_rollback_and_kill("writer", lambda: reorg_with_txs(3))
    stop_rollback_and_kill("immediate", lambda: rollback_and_branch(2))
    stop_rollback_and_kill("fetcher", lambda: reorg_with_txs(1))
    state["passed"].add("rollback")


test_kills_during_rollback.timeout = 400


def test_exactly_once():
    """After the last kill: the stored chain equals the node's."""
    after("backfill", "live", "rollback")
    head = mine_with_txs(2)
    wait_for_head(head)
    cluster.wait_until("SELECT state = 'running' AND indexed_through = %d FROM "
                       "ethindex.chain_status WHERE name = %s" % (head, lit(CHAIN)), timeout=60)

    # every column of every row of blocks 0..head, nothing missing or extra
    problems = et.compare_chain(cluster, anvil.url, CHAIN_ID, 0, head)
    assert not problems, "%d mismatches in blocks 0..%d:\n%s" % (
        len(problems), head, "\n".join(problems[:60]))
    gaps = cluster.query("SELECT * FROM ethindex.gaps(%s, true)" % lit(CHAIN))
    assert gaps == [], gaps
    for table, col in (("blocks", "number"), ("transactions", "block_number"),
                       ("logs", "block_number"), ("withdrawals", "block_number")):
        n = sc("SELECT count(*) FROM ethindex.%s WHERE chain_id = %d AND %s > %d"
               % (table, CHAIN_ID, col, head))
        assert n == "0", "%s rows of %s above indexed_through %d" % (n, table, head)
    assert sc("SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d" % CHAIN_ID) \
        == str(head + 1)

    # the reorganizations recorded are consistent with what is stored
    reorgs = cluster.query("SELECT id, fork_block, depth, cardinality(orphaned_hashes) AS n, "
                           "orphaned_hashes[depth] = old_head_hash AS head_ok, "
                           "(SELECT count(*) FROM ethindex.blocks b, unnest(orphaned_hashes) h "
                           " WHERE b.chain_id = r.chain_id AND b.hash = h) AS stored "
                           "FROM ethindex.reorgs r WHERE chain_id = %d ORDER BY id" % CHAIN_ID)
    for r in reorgs:
        assert r["depth"] > 0 and r["fork_block"] < r["fork_block"] + r["depth"], r
        assert r["n"] == r["depth"] and r["head_ok"], r
        assert r["stored"] == 0, "orphaned blocks still stored: %r" % r
    assert len(reorgs) >= kills_in("rollback"), reorgs

    # the partitions loaded without indexes got them
    cluster.wait_until("SELECT unindexed_partitions = 0 FROM ethindex.chain_status "
                       "WHERE name = %s" % lit(CHAIN), timeout=120)
    assert int(sc("SELECT count(*) FROM ethindex.partitions WHERE chain_id = %d"
                  % CHAIN_ID)) >= 3

    # the kills happened, and nothing else crashed
    log = cluster.log_text()
    signals = re.findall(r"was terminated by signal (\d+)", log)
    assert signals.count("9") >= len(sigkilled), (signals, sigkilled)
    assert set(signals) <= {"9"}, "a process died of another signal: %r\n%s" % (
        signals, cluster.log_tail(80))
    assert "PANIC" not in log, cluster.log_tail(80)
    assert log.count("received immediate shutdown request") == immediate_stops[0]
    st = cluster.chain_status(CHAIN)
    assert st["state"] == "running" and st["indexed_through"] == head, st
    wait_workers(timeout=60)

    by_phase = {p: kills_in(p) for p in ("backfill", "live", "rollback")}
    print("   %d kills: %s; %d reorgs recorded, %d runs discarded blocks stored ahead, "
          "%d blocks compared, last_error %r"
          % (sum(kills.values()),
             ", ".join("%s %d (%s)" % (p, n, " ".join("%s %d" % (k, kills[(p, k)])
                                                       for k in KILL_WEIGHTS if kills[(p, k)]))
                       for p, n in by_phase.items()),
             len(reorgs), len(DISCARDED.findall(log)), head + 1, (st["last_error"] or "")[:100]))
    assert sum(kills.values()) >= MIN_KILLS, kills
    assert by_phase["backfill"] >= 3 and by_phase["live"] >= 10 \
        and by_phase["rollback"] >= 2, kills
    state["passed"].add("exactly_once")


test_exactly_once.timeout = 900
