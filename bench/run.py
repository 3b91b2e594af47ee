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
    transactions: ethindex's rate and plainfetch's rate over the same blocks.

Prints medians and ratios, and with --json FILE writes every measurement.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))

from ethindex_test import Anvil, PgCluster, free_port, rpc_call, stop_process  # noqa: E402

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
                         "WHERE name = '%s'" % name)
    if not rows:
        return []
    return [p for p in [rows[0]["fetcher_pid"]] + (rows[0]["writer_pids"] or []) if p]


def ingest(cluster, name, url, chain_id, first, last, batch_size, partition_size,
           sample_memory=True, timeout=3600):
    """Index blocks [first, last] of a fresh chain; returns measurements.
    The clock stops when the checkpoint reaches "last" and every partition
    has its indexes (the deferred ones are built when a partition is
    complete)."""
    cluster.psql("SELECT ethindex.add_chain('%s', ARRAY['%s'], chain_id => %d, "
                 "start_block => %d, confirmations => 0, batch_size => %s, "
                 "partition_size => %d, poll_interval => '100 ms')"
                 % (name, url, chain_id, first,
                    "NULL" if batch_size is None else str(batch_size), partition_size))
    # partitions are created by the writer as it goes; start the clock at start()
    t0 = time.monotonic()
    cluster.psql("SELECT ethindex.start('%s')" % name)
    pids = []
    peak_rss_kb = 0
    peak_anon_kb = 0
    cpu = {}
    deadline = t0 + timeout
    checkpoint_seconds = None
    while True:
        row = cluster.query("SELECT indexed_through, unindexed_partitions FROM ethindex.chain_status "
                            "WHERE name = '%s'" % name)[0]
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
    cluster.psql("SELECT ethindex.stop('%s')" % name)
    cluster.wait_until("SELECT state = 'stopped' FROM ethindex.chain_status WHERE name = '%s'"
                       % name, timeout=30)
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
    cluster.psql("SELECT ethindex.remove_chain('%s', drop_data => true)" % name)
    cluster.psql("CHECKPOINT")


def copy_benchmark(cluster, chain_id, first, last, partition_size, workdir, runs,
                   deferred=False):
    """Time COPY FROM (FORMAT binary) of the chain's rows into empty tables:
    with all indexes in place, or (deferred) into bare partitions whose
    indexes are built afterwards, the build included in the time."""
    files = {}
    for table in TABLES:
        path = os.path.join(workdir, "%s.bin" % table)
        cluster.psql("COPY (SELECT * FROM ethindex.%s WHERE chain_id = %d) TO '%s' "
                     "(FORMAT binary)" % (table, chain_id, path))
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
            "COPY ethindex.%s FROM '%s' (FORMAT binary);\n" % (t, files[t]) for t in TABLES) + "COMMIT;\n"
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
        "FROM (SELECT pg_read_file('%s')::jsonb AS j) i) x" % (number, iterations, path))[0]
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
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--json", help="write all measurements to this file")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="ethindex-bench-")
    results = {"settings": vars(args)}
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

        results["summary"] = summary
        log("")
        log("== summary (median of %d runs, %d transactions per run)" % (args.runs, m0["transactions"]))
        for k, v in summary.items():
            log("   %-28s %12.2f" % (k, v))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        if anvil:
            anvil.stop()
        if cluster:
            cluster.stop()
        if synth:
            synth.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    main()
