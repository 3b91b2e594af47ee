#!/usr/bin/env python3
"""
bench/run.py: ethindex's ingestion benchmark ("make bench").

Runs as an unprivileged user (PostgreSQL refuses root; bench/bench.sh
switches user).  What it does, in one run of the command:

 1. starts bench/synthnode, a deterministic synthetic chain of realistic
    shape (about 150 transactions and 300 logs per block), and measures its
    serving rate with bench/plainfetch, a plain client that only fetches;
 2. starts a throwaway cluster with ethindex preloaded and, --runs times,
    indexes the first --transactions transactions of the synthetic chain
    from an empty chain, timing start() to wait_for() true, with the CPU
    time and peak RSS of the chain's fetcher and insert workers; the clock
    stops when every partition also has its indexes;
 3. exports the stored rows with COPY ... TO (FORMAT binary) and times
    COPY ... FROM (FORMAT binary) of the same rows into empty copies of the
    same tables (a second database with the extension), --runs times with
    all indexes in place and --runs times into bare partitions indexed
    afterwards (index build included);
 4. against a real anvil node with a prepared chain of --anvil-transactions
    transactions: ethindex's rate and plainfetch's rate over the same blocks;
 5. head latency: anvil mining a block every --head-block-time seconds with
    transactions in every block, a chain with the default settings on a
    cluster with PostgreSQL's default settings; for --head-blocks blocks, the
    time from anvil printing that it mined a block to a LISTEN client
    receiving the notification of its commit (p50, p99), and the head
    requests per minute;
 6. rollback: --reorgs times, a reorganization replacing 10 full blocks
    (--reorg-block-txs transactions each) by 11 new ones: the rollback
    transaction's time, and the time from the new branch's last block on the
    node to the whole new branch stored.

Prints medians and ratios, and with --json FILE writes every measurement.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))

from ethindex_test import (Anvil, PgCluster, TEST_DIR, anvil_path, free_port,  # noqa: E402
                           rpc_call, sql_literal, stop_process)
from pgwire import PgConnection  # noqa: E402

TABLES = ("blocks", "transactions", "logs", "withdrawals")
BLOCK_COLUMN = {"blocks": "number"}


def log(msg):
    print(msg, flush=True)


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Synthnode:
    def __init__(self, port, head, txs_per_block, cache_mb):
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.proc = subprocess.Popen(
            [os.path.join(HERE, "synthnode"), "--port", str(port), "--head", str(head),
             "--txs-per-block", str(txs_per_block), "--cache-mb", str(min(cache_mb, 6144)),
             "--threads", "2"] + (["--prebuild", "1:%d" % head] if cache_mb <= 6144 else []),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300     # prebuilding takes a few seconds per GB
        while True:
            try:
                rpc_call(self.url, "eth_blockNumber", [])
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    stop_process(self.proc)
                    raise RuntimeError("synthnode did not start: %s"
                                       % (self.proc.stderr.read() or "").strip()[-2000:])
                time.sleep(0.05)

    def stop(self):
        stop_process(self.proc)


def plain_fetch(url, first, last, batch, inflight):
    """bench/plainfetch over blocks [first, last]: its JSON result."""
    out = subprocess.run(
        [os.path.join(HERE, "plainfetch"), "--url", url, "--from", str(first),
         "--to", str(last), "--batch", str(batch), "--inflight", str(inflight), "--quiet"],
        capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def chain_pids(cluster, name):
    rows = cluster.query("SELECT fetcher_pid, writer_pids FROM ethindex.chain_status "
                         "WHERE name = %s" % sql_literal(name))
    if not rows:
        return []
    return [p for p in [rows[0]["fetcher_pid"]] + (rows[0]["writer_pids"] or []) if p]


def ingest(cluster, name, url, chain_id, first, last, batch_size, partition_size,
           sample_memory=True, timeout=3600):
    """Index blocks [first, last] of a fresh chain; returns measurements.
    The clock stops when the checkpoint reaches "last" and every partition
    has its indexes (the deferred ones are built when a partition is
    complete)."""
    cluster.psql("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, "
                 "start_block => %d, confirmations => 0, batch_size => %s, "
                 "partition_size => %d, poll_interval => '100 ms')"
                 % (sql_literal(name), sql_literal(url), chain_id, first,
                    "NULL" if batch_size is None else str(batch_size), partition_size))
    # partitions are created by the writer as it goes; start the clock at start()
    t0 = time.monotonic()
    cluster.psql("SELECT ethindex.start(%s)" % sql_literal(name))
    pids = []
    peak_rss_kb = 0
    peak_anon_kb = 0
    cpu = {}
    deadline = t0 + timeout
    checkpoint_seconds = None
    while True:
        row = cluster.query("SELECT indexed_through, unindexed_partitions FROM ethindex.chain_status "
                            "WHERE name = %s" % sql_literal(name))[0]
        through = row["indexed_through"]
        now = time.monotonic()
        if through is not None and through >= last:
            if checkpoint_seconds is None:
                checkpoint_seconds = now - t0
            if row["unindexed_partitions"] == 0:
                break
        if now > deadline:
            raise RuntimeError("ingestion timed out at block %s" % through)
        if not pids:
            pids = chain_pids(cluster, name)
        if sample_memory and pids:
            try:
                peak_rss_kb = max(peak_rss_kb, sum(proc_status_kb(p, "VmRSS") for p in pids))
                peak_anon_kb = max(peak_anon_kb, sum(proc_status_kb(p, "RssAnon") for p in pids))
                for p in pids:
                    cpu[p] = proc_cpu_seconds(p)
            except FileNotFoundError:
                pids = []
        time.sleep(0.25)   # each poll is a psql process: keep the harness light
    seconds = time.monotonic() - t0
    pids = pids or chain_pids(cluster, name)
    for p in pids:
        try:
            cpu[p] = proc_cpu_seconds(p)
            peak_rss_kb = max(peak_rss_kb, proc_status_kb(p, "VmHWM"))
        except FileNotFoundError:
            pass
    counts = cluster.query(
        "SELECT (SELECT count(*) FROM ethindex.blocks WHERE chain_id = %d) AS blocks,"
        " (SELECT count(*) FROM ethindex.transactions WHERE chain_id = %d) AS transactions,"
        " (SELECT count(*) FROM ethindex.logs WHERE chain_id = %d) AS logs,"
        " (SELECT count(*) FROM ethindex.withdrawals WHERE chain_id = %d) AS withdrawals"
        % (chain_id, chain_id, chain_id, chain_id))[0]
    cluster.psql("SELECT ethindex.stop(%s)" % sql_literal(name))
    cluster.wait_until("SELECT state = 'stopped' FROM ethindex.chain_status WHERE name = %s"
                       % sql_literal(name), timeout=30)
    return {
        "seconds": seconds,
        "checkpoint_seconds": checkpoint_seconds,
        "blocks": counts["blocks"],
        "transactions": counts["transactions"],
        "logs": counts["logs"],
        "withdrawals": counts["withdrawals"],
        "rows": sum(counts.values()),
        "cpu_seconds": sum(cpu.values()),
        "peak_rss_mb": peak_rss_kb / 1024.0,
        "peak_private_rss_mb": peak_anon_kb / 1024.0,
    }


def drop_chain(cluster, name):
    cluster.psql("SELECT ethindex.remove_chain(%s, drop_data => true)" % sql_literal(name))
    cluster.psql("CHECKPOINT")


def copy_benchmark(cluster, chain_id, first, last, partition_size, workdir, runs,
                   deferred=False):
    """Time COPY FROM (FORMAT binary) of the chain's rows into empty tables:
    with all indexes in place, or (deferred) into bare partitions whose
    indexes are built afterwards, the build included in the time."""
    files = {}
    for table in TABLES:
        path = os.path.join(workdir, "%s.bin" % table)
        cluster.psql("COPY (SELECT * FROM ethindex.%s WHERE chain_id = %d) TO %s "
                     "(FORMAT binary)" % (table, chain_id, sql_literal(path)))
        files[table] = path
    times = []
    for run in range(runs):
        db = "copytarget%d" % run
        cluster.createdb(db)
        cluster.psql("CREATE EXTENSION ethindex; SELECT ethindex._ensure_partitions(%d, %d, %d, %d, %d)"
                     % (chain_id, partition_size, first, last,
                        last + partition_size if deferred else -1), db=db)
        cluster.psql("CHECKPOINT", db=db)
        sql = "BEGIN;\n" + "".join(
            "COPY ethindex.%s FROM %s (FORMAT binary);\n" % (t, sql_literal(files[t]))
            for t in TABLES) + "COMMIT;\n"
        if deferred:
            sql += "SELECT ethindex._index_partition(%d, first_block) FROM ethindex.partitions " \
                   "WHERE chain_id = %d ORDER BY first_block;\n" % (chain_id, chain_id)
        t0 = time.monotonic()
        cluster.psql(sql, db=db)
        times.append(time.monotonic() - t0)
        cluster.psql("DROP DATABASE %s" % db, db="postgres")
    sizes = sum(os.path.getsize(p) for p in files.values())
    for p in files.values():
        os.unlink(p)
    return times, sizes


def prepare_anvil_chain(anvil, ntx, per_block):
    """Mine blocks of per_block value transfers until ntx transactions exist."""
    accounts = rpc_call(anvil.url, "eth_accounts", [])
    rpc_call(anvil.url, "evm_setAutomine", [False])
    sent = 0
    nonce_base = {}
    import urllib.request
    while sent < ntx:
        batch = []
        for i in range(min(per_block, ntx - sent)):
            sender = accounts[(sent + i) % len(accounts)]
            n = nonce_base.get(sender, 0)
            nonce_base[sender] = n + 1
            batch.append({"jsonrpc": "2.0", "id": i, "method": "eth_sendTransaction",
                          "params": [{"from": sender, "to": accounts[(sent + i + 1) % len(accounts)],
                                      "value": hex(10**15 + i), "nonce": hex(n),
                                      "gas": "0x5208", "maxFeePerGas": hex(50 * 10**9),
                                      "maxPriorityFeePerGas": hex(10**9)}]})
        req = urllib.request.Request(anvil.url, data=json.dumps(batch).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            replies = json.loads(r.read())
        errors = [x for x in replies if "error" in x]
        if errors:
            raise RuntimeError("anvil refused transactions: %s" % errors[:2])
        rpc_call(anvil.url, "evm_mine", [])
        sent += len(batch)
    return int(rpc_call(anvil.url, "eth_blockNumber", []), 16)


def decoder_speed(cluster, number, block, receipts, iterations):
    """ethindex's decoder and jansson on the same bytes: MB/s and tx/s."""
    bj = json.dumps(block, separators=(",", ":"))
    rj = json.dumps(receipts, separators=(",", ":"))
    path = os.path.join(cluster.basedir, "decode-input.json")
    with open(path, "w") as f:
        json.dump([bj, rj], f)
    row = cluster.query(
        "SELECT (s).* FROM (SELECT ethindex._decode_speed(%d, j->>0, j->>1, %d) AS s "
        "FROM (SELECT pg_read_file(%s)::jsonb AS j) i) x"
        % (number, iterations, sql_literal(path)))[0]
    os.unlink(path)
    row = {k: float(v) for k, v in row.items()}
    nbytes = (len(bj) + len(rj)) * iterations
    ntx = len(block["transactions"]) * iterations
    return {
        "bytes": len(bj) + len(rj), "transactions": len(block["transactions"]),
        "decoder_mb_per_s": nbytes / row["decoder_seconds"] / 1e6,
        "decoder_tx_per_s": ntx / row["decoder_seconds"],
        "jansson_mb_per_s": nbytes / row["jansson_seconds"] / 1e6,
        "jansson_tx_per_s": ntx / row["jansson_seconds"],
    }


def report_decoder(label, d):
    log("   %-34s %7.0f KB: decoder %6.1f MB/s %7.0f tx/s | jansson DOM %6.1f MB/s %7.0f tx/s | %.1fx"
        % (label, d["bytes"] / 1e3, d["decoder_mb_per_s"], d["decoder_tx_per_s"],
           d["jansson_mb_per_s"], d["jansson_tx_per_s"],
           d["decoder_mb_per_s"] / d["jansson_mb_per_s"]))


def median(values):
    return statistics.median(values)


def percentile(values, p):
    """The p-th percentile (0-100) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))]


class MiningAnvil:
    """anvil mining a block every block_time seconds; a thread stamps each
    "Block Number: N" line it prints with time.monotonic() as it arrives."""

    def __init__(self, port, block_time):
        self.url = "http://127.0.0.1:%d" % port
        self.mined = {}
        self.proc = subprocess.Popen(
            [anvil_path(), "--hardfork", "prague", "--port", str(port), "--host", "127.0.0.1",
             "--block-time", str(block_time), "--order", "fifo"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                rpc_call(self.url, "eth_chainId", [], timeout=2)
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("anvil did not start")
                time.sleep(0.1)

    def _read(self):
        pattern = re.compile(r"Block Number: (\d+)")
        for line in self.proc.stdout:
            m = pattern.search(line)
            if m:
                self.mined[int(m.group(1))] = time.monotonic()

    def stop(self):
        stop_process(self.proc)


def head_latency(args, workdir):
    """Blocks mined by anvil at a steady interval, indexed by a chain with the
    default settings: the time from mining to the commit notification."""
    anvil = MiningAnvil(free_port(58400, 58499), args.head_block_time)
    cluster = traffic = listener = None
    try:
        cluster = PgCluster(os.path.join(workdir, "pg-head"), free_port(58500, 58599),
                            settings={"fsync": "on"}).init().start()
        cluster.createdb("ethindex_test")
        cluster.psql("CREATE EXTENSION ethindex")
        traffic = subprocess.Popen([sys.executable, os.path.join(TEST_DIR, "lib", "traffic.py"),
                                    "--url", anvil.url, "--rate", str(args.head_tx_rate), "--quiet"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        listener = PgConnection(cluster.basedir, cluster.port, "ethindex_test")
        listener.listen("ethindex_blocks")
        cluster.psql("SELECT ethindex.add_chain('head', ARRAY[%s], chain_id => 31337); "
                     "SELECT ethindex.start('head')" % sql_literal(anvil.url))
        # a few blocks for the schedule to learn the interval, then measure
        time.sleep(10 * args.head_block_time + 2)
        first = int(rpc_call(anvil.url, "eth_blockNumber", []), 16) + 1
        last = first + args.head_blocks - 1
        listener.drain()
        deadline = time.monotonic() + args.head_blocks * args.head_block_time * 3 + 60
        seen = {}
        while len(seen) < args.head_blocks:
            if time.monotonic() > deadline:
                raise RuntimeError("head latency: blocks %d..%d not all notified (%d seen)"
                                   % (first, last, len(seen)))
            time.sleep(0.5)
            for n in listener.drain():
                p = json.loads(n.payload)
                for b in range(p["first"], p["last"] + 1):
                    if first <= b <= last:
                        seen[b] = n.received
        status = cluster.query("SELECT head_requests_per_minute, indexed_through "
                               "FROM ethindex.chain_status")[0]
        txs = int(cluster.scalar("SELECT count(*) FROM ethindex.transactions "
                                 "WHERE block_number BETWEEN %d AND %d" % (first, last)))
        lat = [(seen[b] - anvil.mined[b]) * 1000 for b in range(first, last + 1) if b in anvil.mined]
        if len(lat) < args.head_blocks * 0.9:
            raise RuntimeError("head latency: anvil's output named only %d of the blocks" % len(lat))
        return {
            "blocks": len(lat), "transactions": txs, "block_time_s": args.head_block_time,
            "latency_ms": lat, "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
            "max_ms": max(lat), "head_requests_per_minute": status["head_requests_per_minute"],
        }
    finally:
        if listener:
            listener.close()
        if traffic:
            stop_process(traffic)
        if cluster:
            cluster.stop()
        anvil.stop()


def mine_full_blocks(url, nblocks, per_block, salt):
    """Mine nblocks blocks of per_block value transfers (automine off)."""
    accounts = rpc_call(url, "eth_accounts", [])
    import urllib.request
    for b in range(nblocks):
        batch = []
        nonces = {}
        for i in range(per_block):
            sender = accounts[i % len(accounts)]
            if sender not in nonces:
                nonces[sender] = int(rpc_call(url, "eth_getTransactionCount", [sender, "pending"]), 16)
            batch.append({"jsonrpc": "2.0", "id": i, "method": "eth_sendTransaction",
                          "params": [{"from": sender, "to": accounts[(i + 1 + salt) % len(accounts)],
                                      "value": hex(10**15 + salt * 1000 + i),
                                      "nonce": hex(nonces[sender]), "gas": "0x5208",
                                      "maxFeePerGas": hex(50 * 10**9),
                                      "maxPriorityFeePerGas": hex(10**9)}]})
            nonces[sender] += 1
        req = urllib.request.Request(url, data=json.dumps(batch).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            errors = [x for x in json.loads(r.read()) if "error" in x]
        if errors:
            raise RuntimeError("anvil refused transactions: %s" % errors[:2])
        rpc_call(url, "evm_mine", [])
    return int(rpc_call(url, "eth_blockNumber", []), 16)


def reorg_rollback(args, workdir):
    """Reorganizations replacing 10 full blocks: rollback time and the time to
    store the new branch."""
    anvil = Anvil(free_port(58600, 58699), extra_args=("--gas-limit", "1000000000"), logdir=workdir)
    cluster = None
    try:
        cluster = PgCluster(os.path.join(workdir, "pg-reorg"), free_port(58700, 58799),
                            settings={"fsync": "on"}).init().start()
        cluster.createdb("ethindex_test")
        cluster.psql("CREATE EXTENSION ethindex")
        rpc_call(anvil.url, "evm_setAutomine", [False])
        head = mine_full_blocks(anvil.url, 2, args.reorg_block_txs, 0)
        cluster.psql("SELECT ethindex.add_chain('reorg', ARRAY[%s], chain_id => 31337); "
                     "SELECT ethindex.start('reorg')" % sql_literal(anvil.url))
        runs = []
        for run in range(args.reorgs):
            snapshot = rpc_call(anvil.url, "evm_snapshot", [])
            head = mine_full_blocks(anvil.url, 10, args.reorg_block_txs, 2 * run + 1)
            cluster.scalar("SELECT ethindex.wait_for('reorg', %d, '120 s')" % head)
            rpc_call(anvil.url, "evm_revert", [snapshot])
            mine_full_blocks(anvil.url, 10, args.reorg_block_txs, 2 * run + 2)
            since = cluster.log_position()
            head = mine_full_blocks(anvil.url, 1, args.reorg_block_txs, 2 * run + 2)
            t0 = time.time()
            if cluster.scalar("SELECT ethindex.wait_for('reorg', %d, '120 s')" % head) != "t":
                raise RuntimeError("the new branch was not stored: %s" % cluster.log_tail(20))
            stored = time.time() - t0
            log_text = cluster.wait_for_log("rolled back a reorganization of depth 10", since=since)
            ms = int(re.search(r"rolled back a reorganization of depth 10 to block \d+ in (\d+) ms",
                               log_text).group(1))
            row = cluster.query("SELECT extract(epoch FROM detected_at) AS detected, "
                                "extract(epoch FROM rolled_back_at) AS rolled_back "
                                "FROM ethindex.reorgs ORDER BY id DESC LIMIT 1")[0]
            runs.append({"rollback_ms": ms, "new_branch_stored_s": stored,
                         "detected_s": float(row["detected"]) - t0,
                         "rolled_back_s": float(row["rolled_back"]) - t0})
        rows = int(cluster.scalar("SELECT count(*) FROM ethindex.reorgs WHERE depth = 10"))
        if rows != args.reorgs:
            raise RuntimeError("%d reorganizations recorded, %d made" % (rows, args.reorgs))
        return runs
    finally:
        if cluster:
            cluster.stop()
        anvil.stop()


def backfill_benchmark(args, workdir, results):
    """Sections 1-4: synthnode, ethindex runs, COPY, anvil.  Returns the
    summary figures."""
    synth = anvil = cluster = None
    try:
        nblocks = (args.transactions + args.txs_per_block - 1) // args.txs_per_block
        first, last = 1, nblocks
        # every block of the range stays cached (served from memory) when it
        # fits in 6 GB; longer runs generate blocks as they are asked for
        cache_mb = int(nblocks * args.txs_per_block * 4000 / 1e6) + 512
        synth = Synthnode(free_port(58100, 58199), last, args.txs_per_block, cache_mb)

        log("== synthnode served to a plain client (blocks %d..%d)" % (first, last))
        pf = plain_fetch(synth.url, first, last, args.batch_size, args.inflight)
        results["synthnode_plainfetch"] = pf
        log("   %.0f tx/s, %.0f blocks/s, %.1f MB/s, %.0f bytes per transaction"
            % (pf["tx_per_s"], pf["blocks_per_s"], pf["mb_per_s"], pf["bytes"] / max(pf["transactions"], 1)))

        ethindex_batch = None if args.ethindex_batch_size == "adaptive" else int(args.ethindex_batch_size)
        cluster = PgCluster(os.path.join(workdir, "pg"), free_port(58200, 58299), settings={
            "shared_buffers": "2GB",
            "max_wal_size": "16GB",
            "checkpoint_timeout": "30min",
            "synchronous_commit": "off",
            "fsync": "on",
            "ethindex.queue_size": args.queue_size,
            "ethindex.max_requests_in_flight": args.inflight,
            "ethindex.writer_batch_blocks": args.writer_batch,
            "ethindex.insert_workers": args.insert_workers,
            "ethindex.defer_indexes": "off" if args.no_defer_indexes else "on",
            "maintenance_work_mem": "256MB",
            "max_parallel_maintenance_workers": args.parallel_index_workers,
        }).init().start()
        cluster.createdb("ethindex_test")
        cluster.psql("CREATE EXTENSION ethindex")

        log("== decoder speed (single core, same bytes; jansson parses without decoding)")
        results["decoder"] = {}
        sb = rpc_call(synth.url, "eth_getBlockByNumber", [hex(first), True])
        sr = rpc_call(synth.url, "eth_getBlockReceipts", [hex(first)])
        results["decoder"]["synthetic"] = d = decoder_speed(cluster, first, sb, sr, 50)
        report_decoder("synthetic block %d" % first, d)
        import fixtures
        for name in ("mainnet-18000000", "mainnet-17000000"):
            for number, (fb, fr) in sorted(fixtures.load_set(name).items()):
                results["decoder"][name] = d = decoder_speed(cluster, number, fb, fr, 50)
                report_decoder("mainnet block %d" % number, d)

        runs = []
        for run in range(args.runs):
            log("== ethindex run %d of %d: blocks %d..%d" % (run + 1, args.runs, first, last))
            m = ingest(cluster, "synth", synth.url, 1337, first, last, ethindex_batch,
                       args.partition_size)
            m["json_bytes"] = pf["bytes"]
            runs.append(m)
            log("   %.1f s (checkpoint at the last block after %.1f s, indexes after %.1f s more), "
                "%.0f tx/s, %.0f blocks/s, %.0f rows/s, %.1f MB/s of JSON, "
                "%.2f CPU s per 100k tx, peak RSS %.0f MB (private %.0f MB)"
                % (m["seconds"], m["checkpoint_seconds"], m["seconds"] - m["checkpoint_seconds"],
                   m["transactions"] / m["seconds"], m["blocks"] / m["seconds"],
                   m["rows"] / m["seconds"], m["json_bytes"] / m["seconds"] / 1e6,
                   m["cpu_seconds"] / m["transactions"] * 1e5, m["peak_rss_mb"], m["peak_private_rss_mb"]))
            if run < args.runs - 1:
                drop_chain(cluster, "synth")
        results["ethindex_runs"] = runs
        med_seconds = median([r["seconds"] for r in runs])
        m0 = runs[0]
        summary = {
            "transactions_per_s": m0["transactions"] / med_seconds,
            "blocks_per_s": m0["blocks"] / med_seconds,
            "rows_per_s": m0["rows"] / med_seconds,
            "json_mb_per_s": m0["json_bytes"] / med_seconds / 1e6,
            "cpu_s_per_100k_tx": median([r["cpu_seconds"] / r["transactions"] * 1e5 for r in runs]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "peak_private_rss_mb": max(r["peak_private_rss_mb"] for r in runs),
        }

        if not args.skip_copy:
            log("== COPY FROM (FORMAT binary) of the same rows into empty tables")
            partition_size = int(cluster.scalar("SELECT partition_size FROM ethindex.chains WHERE name = 'synth'"))
            times, size = copy_benchmark(cluster, 1337, first, last, partition_size, workdir, args.runs)
            results["copy_seconds"] = times
            summary["copy_transactions_per_s"] = m0["transactions"] / median(times)
            log("   all indexes in place: %s s (median %.1f s, %.0f tx/s, %.0f MB of binary COPY data)"
                % (", ".join("%.1f" % t for t in times), median(times),
                   summary["copy_transactions_per_s"], size / 1e6))
            dtimes, size = copy_benchmark(cluster, 1337, first, last, partition_size, workdir,
                                          args.runs, deferred=True)
            results["copy_deferred_seconds"] = dtimes
            summary["copy_deferred_transactions_per_s"] = m0["transactions"] / median(dtimes)
            log("   bare partitions, indexes built afterwards: %s s (median %.1f s, %.0f tx/s)"
                % (", ".join("%.1f" % t for t in dtimes), median(dtimes),
                   summary["copy_deferred_transactions_per_s"]))
            best = min(median(times), median(dtimes))
            summary["ratio_to_copy"] = best / med_seconds
            log("   ethindex / the faster COPY: %.2f" % summary["ratio_to_copy"])
        drop_chain(cluster, "synth")

        if not args.skip_anvil:
            log("== anvil: preparing %d transactions" % args.anvil_transactions)
            anvil = Anvil(free_port(58300, 58399), extra_args=("--gas-limit", "1000000000"))
            head = prepare_anvil_chain(anvil, args.anvil_transactions, 500)
            # a first pass warms anvil's caches, so that every measured pass
            # sees the same node state; then plain fetch and ethindex take
            # turns, --runs times each
            plain_fetch(anvil.url, 1, head, args.batch_size, args.inflight)
            plain_rates = []
            ethindex_rates = []
            for run in range(args.runs):
                apf = plain_fetch(anvil.url, 1, head, args.batch_size, args.inflight)
                plain_rates.append(apf["tx_per_s"])
                am = ingest(cluster, "anvil", anvil.url, 31337, 1, head, ethindex_batch,
                            args.partition_size,
                            sample_memory=False)
                ethindex_rates.append(am["transactions"] / am["seconds"])
                drop_chain(cluster, "anvil")
                log("   run %d: plain fetch %.0f tx/s, ethindex %.0f tx/s"
                    % (run + 1, plain_rates[-1], ethindex_rates[-1]))
            results["anvil_plainfetch_tx_per_s"] = plain_rates
            results["anvil_ethindex_tx_per_s"] = ethindex_rates
            summary["anvil_plainfetch_tx_per_s"] = median(plain_rates)
            summary["anvil_ethindex_tx_per_s"] = median(ethindex_rates)
            summary["anvil_ratio"] = summary["anvil_ethindex_tx_per_s"] / summary["anvil_plainfetch_tx_per_s"]
            log("   median: plain fetch %.0f tx/s, ethindex %.0f tx/s, ratio %.2f"
                % (summary["anvil_plainfetch_tx_per_s"], summary["anvil_ethindex_tx_per_s"],
                   summary["anvil_ratio"]))
        return summary
    finally:
        if anvil:
            anvil.stop()
        if cluster:
            cluster.stop()
        if synth:
            synth.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", type=int, default=1000000)
    ap.add_argument("--txs-per-block", type=int, default=150)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=10,
                    help="blocks per JSON-RPC request of plainfetch")
    ap.add_argument("--ethindex-batch-size", default="adaptive",
                    help="the chains' batch_size: a number, or 'adaptive' (NULL)")
    ap.add_argument("--inflight", type=int, default=8, help="ethindex.max_requests_in_flight")
    ap.add_argument("--queue-size", default="256MB", help="ethindex.queue_size")
    ap.add_argument("--writer-batch", type=int, default=100, help="ethindex.writer_batch_blocks")
    ap.add_argument("--insert-workers", type=int, default=2, help="ethindex.insert_workers")
    ap.add_argument("--partition-size", type=int, default=1000,
                    help="blocks per partition (backfill partitions are indexed when complete)")
    ap.add_argument("--parallel-index-workers", type=int, default=2,
                    help="max_parallel_maintenance_workers (index builds of completed partitions)")
    ap.add_argument("--no-defer-indexes", action="store_true",
                    help="ethindex.defer_indexes = off: maintain every index while loading")
    ap.add_argument("--anvil-transactions", type=int, default=40000)
    ap.add_argument("--skip-anvil", action="store_true")
    ap.add_argument("--skip-copy", action="store_true")
    ap.add_argument("--skip-backfill", action="store_true",
                    help="only the head latency and rollback measurements")
    ap.add_argument("--skip-head", action="store_true", help="no head latency or rollback")
    ap.add_argument("--head-blocks", type=int, default=240)
    ap.add_argument("--head-block-time", type=float, default=0.5)
    ap.add_argument("--head-tx-rate", type=float, default=40, help="transactions per second")
    ap.add_argument("--reorgs", type=int, default=3)
    ap.add_argument("--reorg-block-txs", type=int, default=500)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--json", help="write all measurements to this file")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="ethindex-bench-")
    results = {"settings": vars(args)}
    summary = {}
    try:
        if not args.skip_backfill:
            summary.update(backfill_benchmark(args, workdir, results))
        if not args.skip_head:
            log("== head latency: anvil mining every %.1f s, %.0f tx/s, %d blocks, default settings"
                % (args.head_block_time, args.head_tx_rate, args.head_blocks))
            h = head_latency(args, workdir)
            results["head"] = h
            log("   %d blocks (%d transactions): p50 %.0f ms, p99 %.0f ms, max %.0f ms from mined to "
                "committed; %.0f head requests per minute"
                % (h["blocks"], h["transactions"], h["p50_ms"], h["p99_ms"], h["max_ms"],
                   h["head_requests_per_minute"]))
            summary.update(head_p50_ms=h["p50_ms"], head_p99_ms=h["p99_ms"],
                           head_requests_per_minute=h["head_requests_per_minute"])
            log("== rollback of 10 full blocks (%d transactions each), %d times"
                % (args.reorg_block_txs, args.reorgs))
            r = reorg_rollback(args, workdir)
            results["rollback"] = r
            for i, run in enumerate(r):
                log("   run %d: rollback transaction %d ms; after the new branch's last block was "
                    "mined: found %.2f s, rolled back %.2f s, new branch (11 blocks) stored %.2f s"
                    % (i + 1, run["rollback_ms"], run["detected_s"], run["rolled_back_s"],
                       run["new_branch_stored_s"]))
            summary.update(rollback_ms=median([x["rollback_ms"] for x in r]),
                           new_branch_stored_s=median([x["new_branch_stored_s"] for x in r]))

        results["summary"] = summary
        log("")
        log("== summary" + ("" if args.skip_backfill else
                            " (median of %d runs, %d transactions per run)"
                            % (args.runs, results["ethindex_runs"][0]["transactions"])))
        for k, v in summary.items():
            log("   %-28s %12.2f" % (k, v))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    main()
