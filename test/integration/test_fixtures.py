"""
test_fixtures.py: ethindex indexes real mainnet blocks (test/fixtures/, see
PROVENANCE.md) served by the replay server, and stores every column of every
row exactly as the JSON-RPC data says; the rows also agree with
ethereum-etl's expected exports where those exist.

One PostgreSQL cluster and one replay server (test/lib/rpcserver.py) serve
all tests of this module: every fixture set is its own chain
(/chain/<name>, fake chain id 900000 + k, start_block = the set's first
block, confirmations 0), registered and started together.  The cluster
lives in a new temporary directory of its own (start_extension_cluster), so
runs never share one.

test_oracle_reports_a_corrupted_column checks the oracle itself: a column
of a stored row changed by hand (and put back) is reported, exactly that
row and column.

Run:  runuser -u ethindex -- python3 test/integration/run.py -k fixtures
"""

import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import ethindex_test as et          # noqa: E402
import fixtures                     # noqa: E402
from rpcserver import Chain, RpcServer  # noqa: E402

PORT_BASE = int(os.environ.get("ETHINDEX_FIXTURE_PORT_BASE", "57020"))
CHAIN_ID_BASE = 900000
WAIT_SECONDS = 120


class FixtureEnv:
    """The cluster, the replay server and the chains of this module."""

    def __init__(self):
        self.cluster = None
        self.tmpdir = None
        self.server = None
        self.sets = {}          # chain name -> (set name, chain_id, {n: (block, receipts)})
        self.log_mark = 0       # server log offset after setup

    def start(self):
        self.server = RpcServer(et.free_port(PORT_BASE, PORT_BASE + 10))
        for k, set_name in enumerate(fixtures.set_names(), start=1):
            blocks = fixtures.load_set(set_name)
            name = "fx-" + set_name
            chain_id = CHAIN_ID_BASE + k
            self.server.add_chain(Chain(name, chain_id, blocks))
            self.sets[name] = (set_name, chain_id, blocks)
        self.server.start()
        # a new temporary directory of its own (two runs never share one)
        self.cluster, self.tmpdir = et.start_extension_cluster(
            "ethindex-fixtures-", et.free_port(PORT_BASE + 10, PORT_BASE + 20),
            settings={"ethindex.max_chains": 16, "ethindex.retry_max_delay": 2000})
        self.log_mark = len(self.cluster.log_text())
        sql = []
        for name, (set_name, chain_id, blocks) in self.sets.items():
            sql.append("SELECT ethindex.add_chain(%s, ARRAY[%s], chain_id => %d, "
                       "start_block => %d, confirmations => 0, poll_interval => '50 ms');"
                       % (lit(name), lit(self.server.chain_url(name)), chain_id, min(blocks)))
            sql.append("SELECT ethindex.start(%s);" % lit(name))
        self.cluster.psql("\n".join(sql))
        for name, (_, _, blocks) in self.sets.items():
            ok = self.cluster.scalar("SELECT ethindex.wait_for(%s, %d, '%d s')"
                                     % (lit(name), max(blocks), WAIT_SECONDS))
            assert ok == "t", ("chain %s did not reach block %d:\n%s\n--- server log ---\n%s"
                               % (name, max(blocks), status_text(self.cluster, name),
                                  self.cluster.log_tail()))
        return self

    def stop(self):
        try:
            et.stop_extension_cluster(self.cluster, self.tmpdir)
        finally:
            if self.server is not None:
                self.server.stop()


_env = None


def env():
    global _env
    if _env is None:
        e = FixtureEnv()
        try:
            e.start()
        except BaseException:
            e.stop()
            raise
        _env = e
    return _env


def setup_module(module=None):
    env()


def teardown_module(module=None):
    global _env
    if _env is not None:
        _env.stop()
        _env = None


lit = et.sql_literal


def status_text(cluster, name):
    try:
        return str(cluster.query("SELECT * FROM ethindex.chain_status WHERE name = %s" % lit(name)))
    except et.PsqlError as e:
        return "(status unavailable: %s)" % e


# ---------------------------------------------------------------------------
# Every column of every row equals the JSON
# ---------------------------------------------------------------------------

def _check_set(set_name):
    e = env()
    name = "fx-" + set_name
    _, chain_id, blocks = e.sets[name]
    expected = {t: [] for t in et.TABLES}
    for n, (b, rl) in sorted(blocks.items()):
        rows = et.expected_rows(b, rl, chain_id)
        for t in et.TABLES:
            expected[t].extend(rows[t])
    actual = et.stored_rows(e.cluster, chain_id, min(blocks), max(blocks))
    problems = et.compare_rows(expected, actual)
    assert not problems, "%s: %d mismatches:\n%s" % (set_name, len(problems),
                                                    "\n".join(problems[:60]))
    # The row counts are those of the JSON (compare_rows would say, but be explicit).
    counts = {t: len(actual[t]) for t in et.TABLES}
    want = {t: len(expected[t]) for t in et.TABLES}
    assert counts == want, (counts, want)
    # The checkpoint agrees with the last block.
    last = blocks[max(blocks)][0]
    row = e.cluster.query("SELECT next_block, '0x' || encode(last_hash, 'hex') AS last_hash "
                          "FROM ethindex.chains WHERE name = %s" % lit(name))[0]
    assert row["next_block"] == max(blocks) + 1, row
    assert row["last_hash"] == last["hash"].lower(), row


def test_fixture_mainnet_483920_frontier_parity():
    _check_set("mainnet-483920")


def test_fixture_mainnet_1755634_homestead_with_empty_block():
    _check_set("mainnet-1755634")


def test_fixture_mainnet_17000000_shanghai():
    _check_set("mainnet-17000000")


def test_fixture_mainnet_18000000_withdrawals():
    _check_set("mainnet-18000000")


def test_fixture_hive_1_pre_byzantium_geth():
    _check_set("hive-1")


def test_fixture_hive_54_prague_header():
    _check_set("hive-54")


def test_fixture_status_and_requests():
    """Every chain reports its id and head; the replay server saw
    eth_getBlockByNumber for every block of every set, and nothing crashed."""
    e = env()
    for name, (_, chain_id, blocks) in e.sets.items():
        st = e.cluster.query("SELECT * FROM ethindex.chain_status WHERE name = %s" % lit(name))[0]
        assert st["chain_id"] == chain_id, st
        assert st["indexed_through"] == max(blocks), st
        assert st["last_error"] is None, st
        for n in blocks:
            assert e.server.counts(method="eth_getBlockByNumber", chain=name, block=n) >= 1, \
                (name, n, e.server.stats())
    log = e.cluster.log_text()
    assert "terminated by signal" not in log, e.cluster.log_tail()
    assert "PANIC" not in log, e.cluster.log_tail()
    since = log[e.log_mark:]
    lines = [l for l in since.splitlines()
             if 'background worker "ethindex launcher"' in l or "ERROR:" in l]
    assert not lines, "server log after setup:\n%s" % "\n".join(lines[:6])


def _post(url, body):
    req = urllib.request.Request(url, data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode("utf-8")


def test_fixture_responses_served_as_recorded():
    """What the decoder gets is the recorded bytes: every block and receipt
    object the replay server answers with appears byte for byte in a file of
    the set (whitespace, key order, escapes as the node sent them), and at
    least the pretty-printed mainnet sets are not what a re-serialization
    would give."""
    e = env()
    differs = []
    for name, (set_name, _, blocks) in e.sets.items():
        texts = []
        for rel in fixtures.FIXTURE_SETS[set_name]["files"]:
            with open(fixtures.fixture_path(rel), encoding="utf-8") as f:
                texts.append(f.read())
        for n in sorted(blocks):
            body = _post(e.server.chain_url(name),
                         '[{"jsonrpc":"2.0","id":0,"method":"eth_getBlockByNumber",'
                         '"params":["%s",true]},{"jsonrpc":"2.0","id":1,'
                         '"method":"eth_getBlockReceipts","params":["%s"]}]' % (hex(n), hex(n)))
            block, receipts = [r["result"] for r in fixtures.loads_recorded(body)]
            for obj in [block] + list(receipts):
                assert any(obj.raw in t for t in texts), \
                    (set_name, n, "served text not in the recorded files", obj.raw[:200])
            assert block == blocks[n][0] and receipts == blocks[n][1], (set_name, n)
            if block.raw != json.dumps(block, separators=(",", ":")):
                differs.append(set_name)
    assert {"mainnet-483920", "mainnet-1755634", "mainnet-17000000",
            "mainnet-18000000"} <= set(differs), differs


# ---------------------------------------------------------------------------
# The oracle sees a corrupted column
# ---------------------------------------------------------------------------

# (set, table, row, column, SQL expression of a wrong value) with "row" a
# condition on the table's key columns after chain_id (a dict), or an SQL
# query choosing one (its first row).  Every type of column: bytea, bytea[],
# numeric, timestamptz, bigint, integer, smallint, boolean, jsonb, and a
# value made NULL.
MUTATIONS = [
    ("mainnet-18000000", "blocks", {"number": 18000000}, "hash",
     "set_byte(hash, 31, get_byte(hash, 31) # 1)"),
    ("mainnet-18000000", "blocks", {"number": 18000000}, "base_fee_per_gas",
     "base_fee_per_gas + 1"),
    ("mainnet-18000000", "blocks", {"number": 18000000}, "timestamp",
     "timestamp + interval '1 second'"),
    ("mainnet-18000000", "blocks", {"number": 18000000}, "gas_used", "gas_used - 1"),
    ("mainnet-18000000", "blocks", {"number": 18000000}, "uncles",
     "array_append(uncles, '\\x00'::bytea)"),
    ("mainnet-18000000", "blocks", {"number": 18000000}, "withdrawal_count", "NULL"),
    ("mainnet-17000000", "transactions",
     "SELECT block_number, transaction_index FROM ethindex.transactions WHERE chain_id = %d "
     "AND jsonb_array_length(access_list) > 0 ORDER BY transaction_index", "access_list",
     "access_list || '[{\"address\": \"0x0000000000000000000000000000000000000000\", "
     "\"storageKeys\": []}]'::jsonb"),
    ("mainnet-18000000", "transactions", {"block_number": 18000000, "transaction_index": 3},
     "value", "value + 1"),
    ("mainnet-18000000", "transactions", {"block_number": 18000000, "transaction_index": 3},
     "input", "input || '\\x00'::bytea"),
    ("mainnet-18000000", "transactions", {"block_number": 18000000, "transaction_index": 7},
     "status", "1 - status"),
    ("mainnet-18000000", "transactions", {"block_number": 18000000, "transaction_index": 7},
     "block_timestamp", "block_timestamp - interval '12 seconds'"),
    ("mainnet-18000000", "logs", {"block_number": 18000000, "log_index": 5}, "data",
     "data || '\\x01'::bytea"),
    ("mainnet-18000000", "logs",
     "SELECT block_number, log_index FROM ethindex.logs WHERE chain_id = %d "
     "AND topic1 IS NOT NULL ORDER BY log_index DESC", "topic1", "NULL"),
    ("mainnet-18000000", "logs", {"block_number": 18000000, "log_index": 5}, "removed",
     "NOT removed"),
    ("mainnet-18000000", "logs", {"block_number": 18000000, "log_index": 5},
     "transaction_index", "transaction_index + 1"),
    ("mainnet-18000000", "withdrawals", {"block_number": 18000000, "index": None}, "amount",
     "amount + 1"),
    ("mainnet-18000000", "withdrawals", {"block_number": 18000000, "index": None},
     "validator_index", "validator_index + 1"),
    ("mainnet-18000000", "withdrawals", {"block_number": 18000000, "index": None}, "address",
     "set_byte(address, 0, get_byte(address, 0) # 128)"),
    ("mainnet-483920", "blocks", {"number": 483920}, "total_difficulty",
     "total_difficulty - 1"),
    ("mainnet-483920", "transactions", {"block_number": 483920, "transaction_index": 0},
     "root", "set_byte(root, 0, get_byte(root, 0) # 255)"),
]


_expected_cache = {}


def _stored_problems(set_name):
    """compare_rows() of the set's JSON and its stored rows."""
    e = env()
    _, chain_id, blocks = e.sets["fx-" + set_name]
    if set_name not in _expected_cache:
        expected = {t: [] for t in et.TABLES}
        for n, (b, rl) in sorted(blocks.items()):
            rows = et.expected_rows(b, rl, chain_id)
            for t in et.TABLES:
                expected[t].extend(rows[t])
        _expected_cache[set_name] = expected
    return et.compare_rows(_expected_cache[set_name],
                           et.stored_rows(e.cluster, chain_id, min(blocks), max(blocks)))


def _mutation_row(set_name, table, row):
    """The key (dict, in key column order) of the row a MUTATIONS entry means."""
    e = env()
    _, chain_id, _ = e.sets["fx-" + set_name]
    keycols = et.TABLE_KEYS[table]
    if isinstance(row, str):
        got = e.cluster.query(row % chain_id + " LIMIT 1")
        assert got, "no row for: %s" % row
        return {k: got[0][k] for k in keycols}
    row = dict(row)
    if row.get("index", 0) is None:     # the block's first withdrawal
        row["index"] = int(e.cluster.scalar(
            "SELECT min(index) FROM ethindex.withdrawals WHERE chain_id = %d "
            "AND block_number = %d" % (chain_id, row["block_number"])))
    assert list(row) == list(keycols), (row, keycols)
    return row


def test_oracle_reports_a_corrupted_column():
    """compare_rows, the oracle of every test, reports a single column
    changed by hand in one stored row: exactly that row and column, nothing
    else, for columns of every type in the four tables.  Each value is put
    back (and checked) before the next."""
    e = env()
    for set_name in sorted({m[0] for m in MUTATIONS}):
        assert _stored_problems(set_name) == [], set_name
    types = {t: dict(et.table_columns(e.cluster, t)) for t in et.TABLES}
    seen_types = set()
    for set_name, table, row, column, wrong in MUTATIONS:
        _, chain_id, _ = e.sets["fx-" + set_name]
        key = _mutation_row(set_name, table, row)
        cond = " AND ".join(["chain_id = %d" % chain_id] +
                            ["%s = %d" % (k, v) for k, v in key.items()])
        pgtype = types[table][column]
        seen_types.add(pgtype)
        what = "%s %s column %s" % (table, ", ".join("%s=%s" % kv for kv in key.items()), column)
        text = "coalesce(%s::text, '<NULL>')" % column     # psql -At prints NULL as ''
        before = e.cluster.scalar("SELECT %s FROM ethindex.%s WHERE %s" % (text, table, cond))
        assert before is not None and "\n" not in before, (what, before)
        after = e.cluster.scalar("UPDATE ethindex.%s SET %s = %s WHERE %s RETURNING %s"
                                 % (table, column, wrong, cond, text))
        try:
            assert after is not None and "\n" not in after and after != before, \
                (what, before, after)
            problems = _stored_problems(set_name)
            assert len(problems) == 1 and problems[0].startswith(what + ": expected "), \
                "%s changed by hand; the oracle reports:\n%s" % (what, "\n".join(problems))
        finally:
            restored = e.cluster.scalar(
                "UPDATE ethindex.%s SET %s = %s WHERE %s RETURNING %s"
                % (table, column, "NULL" if before == "<NULL>" else
                   "%s::%s" % (lit(before), pgtype), cond, text))
        assert restored == before, "%s not restored: %r, was %r" % (what, restored, before)
    for set_name in sorted({m[0] for m in MUTATIONS}):
        assert _stored_problems(set_name) == [], set_name
    assert {"bytea", "bytea[]", "jsonb", "bigint", "integer", "smallint", "boolean",
            "timestamp with time zone"} <= seen_types, seen_types
    assert any(t.startswith("numeric") for t in seen_types), seen_types


# ---------------------------------------------------------------------------
# ethereum-etl's expected exports agree with the rows
# ---------------------------------------------------------------------------

def _hex(col):
    return "'0x' || encode(%s, 'hex')" % col


def _epoch(col):
    return "extract(epoch FROM %s)::bigint::text" % col


_ISO = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

# ETL column -> SQL expression (text) over our tables.
ETL_BLOCK_COLUMNS = {
    "number": "b.number::text",
    "hash": _hex("b.hash"),
    "parent_hash": _hex("b.parent_hash"),
    "nonce": _hex("b.nonce"),
    "sha3_uncles": _hex("b.sha3_uncles"),
    "logs_bloom": _hex("b.logs_bloom"),
    "transactions_root": _hex("b.transactions_root"),
    "state_root": _hex("b.state_root"),
    "receipts_root": _hex("b.receipts_root"),
    "miner": _hex("b.miner"),
    "difficulty": "b.difficulty::text",
    "total_difficulty": "b.total_difficulty::text",
    "size": "b.size::text",
    "extra_data": _hex("b.extra_data"),
    "gas_limit": "b.gas_limit::text",
    "gas_used": "b.gas_used::text",
    "timestamp": _epoch("b.timestamp"),
    "transaction_count": "b.transaction_count::text",
    "base_fee_per_gas": "b.base_fee_per_gas::text",
    "withdrawals_root": _hex("b.withdrawals_root"),
    "item_timestamp": _ISO.format("b.timestamp"),
    "item_id": "'block_' || " + _hex("b.hash"),
}

ETL_TX_COLUMNS = {
    "hash": _hex("t.hash"),
    "nonce": "t.nonce::text",
    "block_hash": _hex("t.block_hash"),
    "block_number": "t.block_number::text",
    "transaction_index": "t.transaction_index::text",
    "from_address": _hex("t.from_address"),
    "to_address": _hex("t.to_address"),
    "value": "t.value::text",
    "gas": "t.gas::text",
    "gas_price": "t.gas_price::text",
    "input": _hex("t.input"),
    "block_timestamp": _epoch("t.block_timestamp"),
    "max_fee_per_gas": "t.max_fee_per_gas::text",
    "max_priority_fee_per_gas": "t.max_priority_fee_per_gas::text",
    "transaction_type": "t.type::text",
    "receipt_cumulative_gas_used": "t.cumulative_gas_used::text",
    "receipt_gas_used": "t.gas_used::text",
    "receipt_contract_address": _hex("t.contract_address"),
    "receipt_root": _hex("t.root"),
    "receipt_status": "t.status::text",
    "receipt_effective_gas_price": "t.effective_gas_price::text",
    "item_id": "'transaction_' || " + _hex("t.hash"),
    # ETL's item_timestamp is the block's time: take it from the block row
    "item_timestamp": "(SELECT %s FROM ethindex.blocks b WHERE b.chain_id = t.chain_id "
                      "AND b.number = t.block_number)" % _ISO.format("b.timestamp"),
}

ETL_RECEIPT_COLUMNS = {
    "transaction_hash": _hex("t.hash"),
    "transaction_index": "t.transaction_index::text",
    "block_hash": _hex("t.block_hash"),
    "block_number": "t.block_number::text",
    "cumulative_gas_used": "t.cumulative_gas_used::text",
    "gas_used": "t.gas_used::text",
    "contract_address": _hex("t.contract_address"),
    "root": _hex("t.root"),
    "status": "t.status::text",
    "effective_gas_price": "t.effective_gas_price::text",
}

ETL_LOG_COLUMNS = {
    "log_index": "l.log_index::text",
    "transaction_hash": _hex("l.transaction_hash"),
    "transaction_index": "l.transaction_index::text",
    "block_hash": _hex("l.block_hash"),
    "block_number": "l.block_number::text",
    "address": _hex("l.address"),
    "data": _hex("l.data"),
    "topics": "concat_ws(',', %s, %s, %s, %s)" % (_hex("l.topic0"), _hex("l.topic1"),
                                                 _hex("l.topic2"), _hex("l.topic3")),
    "block_timestamp": _epoch("l.block_timestamp"),
    "item_id": "'log_' || " + _hex("l.transaction_hash") + " || '_' || l.log_index",
    "item_timestamp": "(SELECT %s FROM ethindex.blocks b WHERE b.chain_id = l.chain_id "
                      "AND b.number = l.block_number)" % _ISO.format("b.timestamp"),
}

# ETL columns that have no counterpart in ethindex (L2 fee fields, the
# streaming record type) or are checked separately (withdrawals).
ETL_NOT_COMPARED = {"type", "l1_fee", "l1_gas_used", "l1_gas_price", "l1_fee_scalar",
                    "receipt_l1_fee", "receipt_l1_gas_used", "receipt_l1_gas_price",
                    "receipt_l1_fee_scalar", "withdrawals"}

FROM = {
    "blocks": ("ethindex.blocks b", "b.chain_id = %d AND b.number = %s", "number"),
    "transactions": ("ethindex.transactions t", "t.chain_id = %d AND t.hash = decode(%s, 'hex')", "hash"),
    "receipts": ("ethindex.transactions t", "t.chain_id = %d AND t.hash = decode(%s, 'hex')",
                 "transaction_hash"),
    "logs": ("ethindex.logs l", "l.chain_id = %d AND l.block_number = %s AND l.log_index = %s",
             ("block_number", "log_index")),
}

COLUMNS = {"blocks": ETL_BLOCK_COLUMNS, "transactions": ETL_TX_COLUMNS,
           "receipts": ETL_RECEIPT_COLUMNS, "logs": ETL_LOG_COLUMNS}


def _etl_text(v):
    """An ETL value (CSV string or JSON value) as the text our SQL produces."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(_etl_text(x) for x in v)
    if isinstance(v, str):
        return v.lower() if v.startswith("0x") else v
    return str(v)


def _compare_etl(set_name, kind, etl_rows):
    e = env()
    _, chain_id, _ = e.sets["fx-" + set_name]
    table, where, keycol = FROM[kind]
    colmap = COLUMNS[kind]
    problems = []
    compared = set()
    for row in etl_rows:
        cols = [c for c in row if c in colmap]
        unknown = [c for c in row if c not in colmap and c not in ETL_NOT_COMPARED]
        assert not unknown, "%s %s: ETL columns without a mapping: %s" % (set_name, kind, unknown)
        if isinstance(keycol, tuple):
            cond = where % ((chain_id,) + tuple(int(row[k]) for k in keycol))
        elif kind == "blocks":
            cond = where % (chain_id, int(row[keycol]))
        else:
            cond = where % (chain_id, lit(row[keycol][2:].lower()))
        sql = "SELECT %s FROM %s WHERE %s" % (
            ", ".join("coalesce(%s, '') AS \"%s\"" % (colmap[c], c) for c in cols), table, cond)
        got = e.cluster.query(sql)
        if len(got) != 1:
            problems.append("%s %s %s: %d rows in ethindex" % (set_name, kind, row.get(keycol if isinstance(keycol, str) else "log_index"), len(got)))
            continue
        for c in cols:
            compared.add(c)
            want, have = _etl_text(row[c]), got[0][c]
            if want != have:
                problems.append("%s %s %s column %s: ETL %r, ethindex %r"
                                % (set_name, kind, cond, c, want, have))
        if kind == "blocks" and "withdrawals" in row:
            w = row["withdrawals"]
            n = int(e.cluster.scalar("SELECT count(*) FROM ethindex.withdrawals WHERE chain_id = %d "
                                     "AND block_number = %d" % (chain_id, int(row["number"]))))
            if w in ("", None, []) and n != 0:
                problems.append("%s block %s: ETL has no withdrawals, ethindex %d"
                                % (set_name, row["number"], n))
    assert not problems, "\n".join(problems)
    return compared


def test_etl_483920_blocks_transactions_receipts_logs():
    etl = fixtures.load_etl_expected("mainnet-483920")
    seen = {}
    for kind, key in (("blocks", "blocks"), ("transactions", "transactions"),
                      ("receipts", "receipts"), ("logs", "logs"),
                      ("receipts", "receipts_json"), ("logs", "logs_json")):
        seen[key] = _compare_etl("mainnet-483920", kind, etl[key])
    # Every mapped column was really compared (guards against an empty file).
    assert seen["blocks"] >= {"hash", "miner", "difficulty", "total_difficulty", "timestamp",
                              "logs_bloom", "extra_data", "size", "transaction_count"}, seen
    assert seen["transactions"] >= {"hash", "value", "gas_price", "input", "block_timestamp",
                                    "transaction_type"}, seen
    assert seen["receipts"] >= {"root", "status", "cumulative_gas_used", "effective_gas_price"}, seen
    assert "topics" in seen["logs"], seen


def test_etl_1755634_streaming_blocks_transactions_logs():
    etl = fixtures.load_etl_expected("mainnet-1755634")
    seen = {}
    for kind in ("blocks", "transactions", "logs"):
        seen[kind] = _compare_etl("mainnet-1755634", kind, etl[kind])
    assert {"receipt_root", "receipt_status", "receipt_gas_used"} <= seen["transactions"], seen
    assert {"topics", "block_timestamp"} <= seen["logs"], seen
    # Both blocks, one of them empty.
    e = env()
    _, chain_id, _ = e.sets["fx-mainnet-1755634"]
    assert e.cluster.scalar("SELECT string_agg(number || ':' || transaction_count, ',' ORDER BY number) "
                            "FROM ethindex.blocks WHERE chain_id = %d" % chain_id) \
        == "1755634:0,1755635:2"
