"""
ethindex_test.py: shared library of the Python integration tests.

Owns the scaffolding every integration test needs, using only the Python
standard library:

  PgCluster       a throwaway PostgreSQL 15 cluster with ethindex preloaded,
                  driven through the psql client (no driver module needed)
  Anvil           a local anvil node from test/node_modules
  rpc_call        one JSON-RPC call over HTTP
  expected_rows   an independent re-implementation of the JSON-RPC -> column
                  mapping of ethindex's decoder (src/decode.c), used as the
                  oracle for every column of every row
  compare_chain   fetch a block range from a node and compare it with what
                  ethindex stored, row by row and column by column

Tests run as an unprivileged OS user (PostgreSQL refuses to run as root).
"""

import atexit
import datetime
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from decimal import Decimal

TEST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(TEST_DIR)
NODE_MODULES = os.path.join(TEST_DIR, "node_modules")

TABLES = ("blocks", "transactions", "logs", "withdrawals")
# Primary key of each table after chain_id (block number column first).
TABLE_KEYS = {
    "blocks": ("number",),
    "transactions": ("block_number", "transaction_index"),
    "logs": ("block_number", "log_index"),
    "withdrawals": ("block_number", "index"),
}

# anvil's well-known development accounts (mnemonic "test test ... junk").
ANVIL_ACCOUNTS = [
    ("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
     "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    ("0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
     "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b690d"),
    ("0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
     "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
    ("0x90f79bf6eb2c4f870365e785982e1f101e93b906",
     "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"),
    ("0x15d34aaf54267db7d7c367839aaf71a00a2c6a65",
     "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"),
    ("0x9965507d1a55bcc2695c58ba16fb37d819b0a4dc",
     "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"),
]


class PsqlError(Exception):
    """psql exited non-zero; the message is its stderr."""


class RpcError(Exception):
    """A JSON-RPC call returned an error object (or failed at HTTP level)."""

    def __init__(self, message, code=None, data=None):
        super().__init__(message)
        self.code = code
        self.data = data


# Every process started through this module, stopped at exit if a test forgot.
_live = []


def _cleanup_all():
    for obj in list(_live):
        try:
            obj.stop()
        except Exception:
            pass


atexit.register(_cleanup_all)


def _sigterm(signum, frame):
    _cleanup_all()
    raise SystemExit(128 + signum)


# Make "kill <runner>" and Ctrl-C clean up too (SIGINT raises
# KeyboardInterrupt, which unwinds through atexit).
try:
    signal.signal(signal.SIGTERM, _sigterm)
except ValueError:      # not in the main thread
    pass


def stop_process(proc, timeout=10):
    """SIGTERM a child process, SIGKILL it if it is still there after timeout."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pg_bindir():
    """Directory of the PostgreSQL 15 server binaries."""
    d = os.environ.get("PG_BINDIR")
    if d:
        return d
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True,
                             text=True, check=True).stdout.strip()
        if os.path.exists(os.path.join(out, "initdb")):
            return out
    except (OSError, subprocess.CalledProcessError):
        pass
    return "/usr/lib/postgresql/15/bin"


def tail(path, nlines=60):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-nlines:])
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

class PgCluster:
    """A throwaway cluster in basedir (data in basedir/data, socket in
    basedir, log in basedir/server.log) listening only on a Unix socket."""

    def __init__(self, basedir, port, settings=None):
        self.basedir = os.path.abspath(basedir)
        self.port = int(port)
        self.settings = dict(settings or {})
        self.datadir = os.path.join(self.basedir, "data")
        self.logfile = os.path.join(self.basedir, "server.log")
        self.bindir = pg_bindir()
        self.running = False
        self.extra_env = {}     # added to the server's environment at start

    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def env(self):
        env = dict(os.environ)
        for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGOPTIONS",
                  "PGSERVICE", "PGPASSWORD"):
            env.pop(k, None)
        env.update(PGHOST=self.basedir, PGPORT=str(self.port), PGTZ="UTC",
                   PGDATESTYLE="ISO", PGCLIENTENCODING="UTF8", LC_ALL="C")
        return env

    def init(self):
        os.makedirs(self.basedir, exist_ok=True)
        if os.path.exists(self.datadir):
            shutil.rmtree(self.datadir)
        subprocess.run([self._bin("initdb"), "-D", self.datadir, "--locale=C",
                        "--encoding=UTF8", "-A", "trust", "--no-sync"],
                       env=self.env(), check=True, capture_output=True)
        conf = {
            "port": self.port,
            "unix_socket_directories": self.basedir,
            "listen_addresses": "",
            "shared_preload_libraries": "ethindex",
            "ethindex.database": "ethindex_test",
            "max_worker_processes": 32,
            "logging_collector": "off",
            "fsync": "off",
            "TimeZone": "UTC",
        }
        conf.update(self.settings)
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# ethindex_test\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, _conf_value(v)))
        return self

    def set(self, **settings):
        """Append settings to postgresql.conf (takes effect on reload or
        restart)."""
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            for k, v in settings.items():
                f.write("%s = %s\n" % (k.replace("__", "."), _conf_value(v)))

    def start(self, timeout=60):
        r = subprocess.run([self._bin("pg_ctl"), "-D", self.datadir, "-l",
                            self.logfile, "-w", "-t", str(timeout), "start"],
                           env=dict(self.env(), **self.extra_env), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("pg_ctl start failed: %s%s\n--- server log ---\n%s"
                               % (r.stdout, r.stderr, tail(self.logfile)))
        self.running = True
        if self not in _live:
            _live.append(self)
        return self

    def stop(self, mode="fast", timeout=60):
        if not os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            self.running = False
            if self in _live:
                _live.remove(self)
            return
        r = subprocess.run([self._bin("pg_ctl"), "-D", self.datadir, "-m", mode,
                            "-w", "-t", str(timeout), "stop"],
                           env=self.env(), capture_output=True, text=True)
        if r.returncode != 0 and mode != "immediate":
            # Do not leave a server behind.
            subprocess.run([self._bin("pg_ctl"), "-D", self.datadir, "-m",
                            "immediate", "-w", "stop"], env=self.env(),
                           capture_output=True)
        self.running = False
        if self in _live:
            _live.remove(self)
        if r.returncode != 0 and mode != "immediate":
            raise RuntimeError("pg_ctl stop -m %s failed: %s%s" % (mode, r.stdout, r.stderr))

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def postmaster_pid(self):
        with open(os.path.join(self.datadir, "postmaster.pid")) as f:
            return int(f.readline())

    def createdb(self, name):
        r = subprocess.run([self._bin("createdb"), name], env=self.env(),
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise PsqlError(r.stderr)

    def psql(self, sql, db="ethindex_test", timeout=None):
        """Run SQL with psql -X -q -At and ON_ERROR_STOP; return stdout
        (without the final newline).  Raises PsqlError with stderr."""
        try:
            r = subprocess.run([self._bin("psql"), "-X", "-q", "-A", "-t",
                                "-v", "ON_ERROR_STOP=1", "-d", db, "-f", "-"],
                               input=sql, env=self.env(), capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise PsqlError("psql timed out after %ss: %s" % (timeout, sql[:200])) from e
        if r.returncode != 0:
            raise PsqlError(r.stderr.strip() or ("psql exit code %d" % r.returncode))
        out = r.stdout
        if out.endswith("\n"):
            out = out[:-1]
        return out

    def query(self, sql, db="ethindex_test"):
        """Rows of a query as a list of dicts (via json_agg).  numeric
        becomes int or Decimal, bytea a '\\x...' string."""
        out = self.psql("SELECT coalesce(json_agg(q), '[]') FROM (%s) q"
                        % sql.strip().rstrip(";"), db=db)
        return loads(out)

    def scalar(self, sql, db="ethindex_test"):
        """First column of the first row as text (psql -At), None when no
        row or NULL.  Multi-line results (several rows) are returned whole."""
        out = self.psql(sql, db=db)
        return out if out != "" else None

    def log_text(self):
        try:
            with open(self.logfile, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, nlines=60):
        return tail(self.logfile, nlines)

    def log_position(self):
        """The size of the server log now, to look at what follows."""
        try:
            return os.path.getsize(self.logfile)
        except OSError:
            return 0

    def log_since(self, since):
        """The server log after byte "since" (a log_position())."""
        try:
            with open(self.logfile, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_for_log(self, text, since=0, timeout=60):
        """Wait until "text" appears in the server log after byte "since";
        return the log from there."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.logfile, "r", errors="replace") as f:
                f.seek(since)
                data = f.read()
            if text in data:
                return data
            if time.monotonic() >= deadline:
                raise AssertionError("timed out after %ss waiting for %r in the server log:\n%s"
                                     % (timeout, text, data[-4000:]))
            time.sleep(0.1)

    def wait_until(self, sql, timeout=60, interval=0.05, db="ethindex_test"):
        """Poll until the query returns true ('t').  Errors (e.g. during
        crash recovery) count as 'not yet'.  On timeout raise AssertionError
        with the last value and the tail of the server log."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.scalar(sql, db=db)
                if last == "t":
                    return
            except PsqlError as e:
                last = "error: %s" % e
            if time.monotonic() >= deadline:
                raise AssertionError(
                    "timed out after %ss waiting for: %s\nlast value: %r\n"
                    "--- server log tail ---\n%s"
                    % (timeout, sql, last, self.log_tail()))
            time.sleep(interval)

    def chain_status(self, name):
        """The chain's row of ethindex.chain_status, as a dict."""
        rows = self.query("SELECT * FROM ethindex.chain_status WHERE name = %s"
                          % sql_literal(name))
        assert len(rows) == 1, rows
        return rows[0]

    def stop_chain(self, name):
        """ethindex.stop(name), ignoring errors (for clean-up)."""
        try:
            self.psql("SELECT ethindex.stop(%s)" % sql_literal(name))
        except PsqlError:
            pass

    def wait_stopped(self, name, timeout=60, db="ethindex_test"):
        """Wait until chain "name" is stopped and its workers have exited."""
        self.wait_until("SELECT state = 'stopped' AND fetcher_pid IS NULL AND "
                        "coalesce(cardinality(array_remove(writer_pids, NULL)), 0) = 0 "
                        "FROM ethindex.chain_status WHERE name = %s" % sql_literal(name),
                        timeout=timeout, db=db)

    def remove_all_chains(self, timeout=60, db="ethindex_test"):
        """A clean slate for a test: stop every registered chain, wait until
        its workers have exited, and remove it with its data."""
        names = [r["name"] for r in self.query("SELECT name FROM ethindex.chains", db=db)]
        for name in names:
            self.psql("SELECT ethindex.stop(%s)" % sql_literal(name), db=db)
        for name in names:
            self.wait_stopped(name, timeout, db)
            self.psql("SELECT ethindex.remove_chain(%s, drop_data => true)" % sql_literal(name),
                      db=db)
        assert self.scalar("SELECT count(*) FROM ethindex.blocks", db=db) == "0"

    def assert_no_crash(self):
        """No process of the server crashed or panicked."""
        log = self.log_text()
        for bad in ("terminated by signal", "PANIC", "server process (PID"):
            assert bad not in log, "server log has %r:\n%s" % (bad, self.log_tail(80))


def sql_literal(s):
    """s as an SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def start_extension_cluster(prefix, port, settings=None, version=None):
    """A throwaway cluster in a new temporary directory (prefix), with
    database ethindex_test, the extension created in it (of the given
    version; default: the default version) and its launcher running.
    Returns (cluster, tmpdir); on failure cleans up and raises."""
    tmpdir = tempfile.mkdtemp(prefix=prefix)
    cluster = PgCluster(tmpdir, port, settings=settings)
    try:
        cluster.init()
        cluster.start()
        cluster.createdb("ethindex_test")
        cluster.psql("CREATE EXTENSION ethindex" +
                     (" VERSION %s" % sql_literal(version) if version else ""))
        # the launcher may have exited once before the database existed;
        # from here on it must not exit at all
        cluster.wait_until("SELECT count(*) = 1 FROM pg_stat_activity "
                           "WHERE backend_type = 'ethindex launcher'", timeout=30)
    except BaseException:
        stop_extension_cluster(cluster, tmpdir)
        raise
    return cluster, tmpdir


def stop_extension_cluster(cluster, tmpdir):
    """Stop a cluster of start_extension_cluster(); its directory is kept
    when a process crashed or ETHINDEX_KEEP_TMP is set."""
    if cluster is None:
        return
    cluster.stop()
    if tmpdir and not os.environ.get("ETHINDEX_KEEP_TMP") and \
            "terminated by signal" not in cluster.log_text():
        shutil.rmtree(tmpdir, ignore_errors=True)


def start_anvil_cluster(name, default_port_base, settings=None, version=None):
    """start_extension_cluster() and an anvil node beside it, for a test
    module "name": ports from ETHINDEX_<NAME>_PORT_BASE (default_port_base):
    the cluster in base..base+20, anvil in base+40..base+60 (base+20..base+40
    is left for a second cluster).  Returns (cluster, tmpdir, anvil, txs,
    base); on failure cleans up and raises."""
    base = int(os.environ.get("ETHINDEX_%s_PORT_BASE" % name.upper(), str(default_port_base)))
    cluster, tmpdir = start_extension_cluster("ethindex-%s-" % name, free_port(base, base + 20),
                                              settings, version)
    try:
        anvil = Anvil(free_port(base + 40, base + 60), logdir=tmpdir)
        txs = AnvilTransactions(anvil, tmpdir)
    except BaseException:
        stop_extension_cluster(cluster, tmpdir)
        raise
    return cluster, tmpdir, anvil, txs, base


def stop_anvil_cluster(cluster, tmpdir, anvil):
    """Stop what start_anvil_cluster() started."""
    try:
        if anvil is not None:
            anvil.stop()
    finally:
        stop_extension_cluster(cluster, tmpdir)


def start_replay_cluster(name, default_port_base, settings=None, chains=(), proxy=False):
    """start_extension_cluster() with a replay server beside it (an
    rpcserver.RpcServer serving the Chain objects "chains") and, when proxy
    is true (or an RpcServer subclass to use), a second RpcServer for proxy
    paths (add_proxy(), fault injection), for a test module "name": ports
    from ETHINDEX_<NAME>_PORT_BASE (default_port_base): the replay server in
    base..base+10, the proxy in base+10..base+20, the cluster in
    base+20..base+30 (base+30..base+40 is left to the module).  Returns
    (cluster, tmpdir, replay, proxy), proxy None without one; on failure
    stops what it started and raises."""
    from rpcserver import RpcServer
    base = int(os.environ.get("ETHINDEX_%s_PORT_BASE" % name.upper(), str(default_port_base)))
    cluster = tmpdir = replay = prox = None
    try:
        replay = RpcServer(free_port(base, base + 10))
        for chain in chains:
            replay.add_chain(chain)
        replay.start()
        if proxy:
            cls = proxy if isinstance(proxy, type) else RpcServer
            prox = cls(free_port(base + 10, base + 20)).start()
        cluster, tmpdir = start_extension_cluster("ethindex-%s-" % name,
                                                  free_port(base + 20, base + 30), settings)
    except BaseException:
        stop_replay_cluster(cluster, tmpdir, replay, prox)
        raise
    return cluster, tmpdir, replay, prox


def stop_replay_cluster(cluster, tmpdir, replay, proxy=None):
    """Stop what start_replay_cluster() started (each part, even when
    stopping another fails)."""
    try:
        stop_extension_cluster(cluster, tmpdir)
    finally:
        try:
            if proxy is not None:
                proxy.stop()
        finally:
            if replay is not None:
                replay.stop()


def _conf_value(v):
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, (int, float)):
        return str(v)
    return "'%s'" % str(v).replace("'", "''")


def loads(text):
    """json.loads keeping numbers exact (ints as int, others as Decimal)."""
    return json.loads(text, parse_float=Decimal, parse_int=int)


# ---------------------------------------------------------------------------
# JSON-RPC and anvil
# ---------------------------------------------------------------------------

_rpc_id = 0


def rpc_call(url, method, params=None, timeout=30):
    """One JSON-RPC 2.0 call; returns "result", raises RpcError."""
    global _rpc_id
    _rpc_id += 1
    body = json.dumps({"jsonrpc": "2.0", "id": _rpc_id, "method": method,
                       "params": list(params or [])}).encode()
    req = urllib.request.Request(url, data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read()
    except urllib.error.HTTPError as e:
        raise RpcError("HTTP %d from %s for %s: %s"
                       % (e.code, url, method, e.read()[:500]), code=e.code)
    except (urllib.error.URLError, OSError) as e:
        raise RpcError("cannot reach %s for %s: %s" % (url, method, e))
    reply = json.loads(data)
    if reply.get("error") is not None:
        err = reply["error"]
        raise RpcError("%s: %s" % (method, err.get("message")),
                       code=err.get("code"), data=err.get("data"))
    return reply.get("result")


def _foundry_bin(pkg, name):
    return os.path.join(NODE_MODULES, "@foundry-rs", pkg, "bin", name)


def anvil_path():
    return os.environ.get("ANVIL") or _foundry_bin("anvil-linux-amd64", "anvil")


def cast_path():
    return os.environ.get("CAST") or _foundry_bin("cast-linux-amd64", "cast")


class Anvil:
    """anvil on 127.0.0.1:port (prague, FIFO mempool order).  Its output goes
    to logdir/anvil-<port>.log."""

    def __init__(self, port, extra_args=(), logdir=None):
        self.port = int(port)
        self.url = "http://127.0.0.1:%d" % self.port
        self.logfile = os.path.join(logdir or "/tmp", "anvil-%d.log" % self.port)
        args = [anvil_path(), "--hardfork", "prague", "--order", "fifo",
                "--port", str(self.port), "--host", "127.0.0.1", "--quiet"]
        args += list(extra_args)
        self.log = open(self.logfile, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        _live.append(self)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("anvil exited with %s:\n%s"
                                   % (self.proc.returncode, tail(self.logfile)))
            try:
                self.rpc("eth_chainId", timeout=2)
                break
            except RpcError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("anvil did not answer on %s:\n%s"
                                       % (self.url, tail(self.logfile)))
                time.sleep(0.1)

    def rpc(self, method, params=None, timeout=30):
        return rpc_call(self.url, method, params or [], timeout=timeout)

    def head(self):
        return int(self.rpc("eth_blockNumber"), 16)

    def mine(self, blocks=1):
        if blocks == 1:
            self.rpc("evm_mine")
        else:
            self.rpc("anvil_mine", [hex(blocks)])
        return self.head()

    def cast(self, *args, timeout=60):
        """Run cast with --rpc-url appended where relevant; return stdout."""
        r = subprocess.run([cast_path()] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("cast %s failed: %s%s" % (" ".join(map(str, args)),
                                                         r.stdout, r.stderr))
        return r.stdout.strip()

    def stop(self):
        stop_process(self.proc)
        if not self.log.closed:
            self.log.close()
        if self in _live:
            _live.remove(self)


# ---------------------------------------------------------------------------
# The oracle: JSON-RPC objects -> expected column values
# ---------------------------------------------------------------------------

def hexdata(s):
    """DATA: "0x..." -> bytes."""
    if not isinstance(s, str) or not s[:2] in ("0x", "0X"):
        raise ValueError("not hex data: %r" % (s,))
    h = s[2:]
    if len(h) % 2:
        raise ValueError("odd-length hex data: %r" % (s,))
    return bytes.fromhex(h)


def quantity(s):
    """QUANTITY: "0x..." -> int (ints pass through)."""
    if isinstance(s, int) and not isinstance(s, bool):
        return s
    if not isinstance(s, str) or not s[:2] in ("0x", "0X") or len(s) < 3:
        raise ValueError("not a hex quantity: %r" % (s,))
    return int(s[2:], 16)


def _get(obj, key):
    """Value of an optional field; an explicit null counts as absent."""
    return obj.get(key) if isinstance(obj, dict) else None


def _opt(obj, key, conv):
    v = _get(obj, key)
    return None if v is None else conv(v)


def _ts(v):
    return datetime.datetime.fromtimestamp(quantity(v), datetime.timezone.utc)


def _bool(v):
    if isinstance(v, bool):
        return v
    raise ValueError("not a boolean: %r" % (v,))


def _same_time(obj, block_time):
    sent = _opt(obj, "blockTimestamp", _ts)
    if sent is not None and sent != block_time:
        raise ValueError("blockTimestamp %s differs from the block's %s" % (sent, block_time))
    return block_time


def expected_rows(block_json, receipts_json, chain_id):
    """Rows ethindex must store for one block: {table: [row dict]}.

    block_json is the result of eth_getBlockByNumber(n, true), receipts_json
    the result of eth_getBlockReceipts(n); either may be given as a JSON text.
    Column values are Python values: int for integer and numeric columns,
    bytes for bytea, list of bytes for bytea[], aware UTC datetime for
    timestamptz, parsed JSON for jsonb, bool, or None for NULL.
    """
    if isinstance(block_json, (str, bytes)):
        block_json = json.loads(block_json)
    if isinstance(receipts_json, (str, bytes)):
        receipts_json = json.loads(receipts_json)
    b = block_json
    receipts = receipts_json or []
    number = quantity(b["number"])
    txs = b.get("transactions") or []
    withdrawals = b.get("withdrawals")

    block = {
        "chain_id": chain_id,
        "number": number,
        "hash": hexdata(b["hash"]),
        "parent_hash": hexdata(b["parentHash"]),
        "nonce": _opt(b, "nonce", hexdata),
        "sha3_uncles": _opt(b, "sha3Uncles", hexdata),
        "logs_bloom": _opt(b, "logsBloom", hexdata),
        "transactions_root": _opt(b, "transactionsRoot", hexdata),
        "state_root": _opt(b, "stateRoot", hexdata),
        "receipts_root": _opt(b, "receiptsRoot", hexdata),
        "miner": _opt(b, "miner", hexdata),
        "difficulty": _opt(b, "difficulty", quantity),
        "total_difficulty": _opt(b, "totalDifficulty", quantity),
        "extra_data": _opt(b, "extraData", hexdata),
        "size": _opt(b, "size", quantity),
        "gas_limit": quantity(b["gasLimit"]),
        "gas_used": quantity(b["gasUsed"]),
        "timestamp": _ts(b["timestamp"]),
        "mix_hash": _opt(b, "mixHash", hexdata),
        "base_fee_per_gas": _opt(b, "baseFeePerGas", quantity),
        "withdrawals_root": _opt(b, "withdrawalsRoot", hexdata),
        "blob_gas_used": _opt(b, "blobGasUsed", quantity),
        "excess_blob_gas": _opt(b, "excessBlobGas", quantity),
        "parent_beacon_block_root": _opt(b, "parentBeaconBlockRoot", hexdata),
        "requests_hash": _opt(b, "requestsHash", hexdata),
        "uncles": [hexdata(u) for u in (b.get("uncles") or [])],
        "transaction_count": len(txs),
        "withdrawal_count": None if withdrawals is None else len(withdrawals),
    }

    if len(receipts) != len(txs):
        raise ValueError("block %d has %d transactions but %d receipts"
                         % (number, len(txs), len(receipts)))
    by_hash = {}
    for r in receipts:
        by_hash[r["transactionHash"].lower()] = r

    tx_rows = []
    log_rows = []
    for tx in txs:
        if isinstance(tx, str):
            raise ValueError("block %d has transaction hashes only; "
                             "fetch it with full transactions" % number)
        r = by_hash.get(tx["hash"].lower())
        if r is None:
            raise ValueError("block %d: no receipt for transaction %s" % (number, tx["hash"]))
        inp = tx.get("input")
        if inp is None:
            inp = tx.get("data")
        logs = r.get("logs") or []
        tx_rows.append({
            "chain_id": chain_id,
            "block_number": number,
            "transaction_index": quantity(tx["transactionIndex"]),
            "hash": hexdata(tx["hash"]),
            "block_hash": hexdata(tx["blockHash"]),
            # always the block's time; a blockTimestamp sent must agree
            "block_timestamp": _same_time(tx, _ts(b["timestamp"])),
            "type": _opt(tx, "type", quantity) or 0,
            "from_address": hexdata(tx["from"]),
            "to_address": _opt(tx, "to", hexdata),
            "nonce": quantity(tx["nonce"]),
            "value": quantity(tx["value"]),
            "gas": quantity(tx["gas"]),
            "gas_price": _opt(tx, "gasPrice", quantity),
            "max_fee_per_gas": _opt(tx, "maxFeePerGas", quantity),
            "max_priority_fee_per_gas": _opt(tx, "maxPriorityFeePerGas", quantity),
            "max_fee_per_blob_gas": _opt(tx, "maxFeePerBlobGas", quantity),
            "input": hexdata(inp),
            "tx_chain_id": _opt(tx, "chainId", quantity),
            "access_list": _get(tx, "accessList"),
            "blob_versioned_hashes": _opt(tx, "blobVersionedHashes",
                                          lambda l: [hexdata(h) for h in l]),
            "authorization_list": _get(tx, "authorizationList"),
            "v": _opt(tx, "v", quantity),
            "r": _opt(tx, "r", quantity),
            "s": _opt(tx, "s", quantity),
            "y_parity": _opt(tx, "yParity", quantity),
            "cumulative_gas_used": quantity(r["cumulativeGasUsed"]),
            "gas_used": quantity(r["gasUsed"]),
            "effective_gas_price": _opt(r, "effectiveGasPrice", quantity),
            "contract_address": _opt(r, "contractAddress", hexdata),
            "status": _opt(r, "status", quantity),
            "root": _opt(r, "root", hexdata),
            "logs_bloom": hexdata(r["logsBloom"]),
            "blob_gas_used": _opt(r, "blobGasUsed", quantity),
            "blob_gas_price": _opt(r, "blobGasPrice", quantity),
            "log_count": len(logs),
        })
        for lg in logs:
            topics = lg.get("topics") or []
            if len(topics) > 4:
                raise ValueError("log with %d topics" % len(topics))
            row = {
                "chain_id": chain_id,
                "block_number": number,
                "log_index": quantity(lg["logIndex"]),
                "transaction_index": quantity(lg["transactionIndex"]),
                "transaction_hash": hexdata(lg["transactionHash"]),
                "block_hash": hexdata(lg["blockHash"]),
                "block_timestamp": _same_time(lg, _ts(b["timestamp"])),
                "address": hexdata(lg["address"]),
                "data": hexdata(lg["data"]),
                "removed": _opt(lg, "removed", _bool) or False,
            }
            for i in range(4):
                row["topic%d" % i] = hexdata(topics[i]) if i < len(topics) else None
            log_rows.append(row)

    wd_rows = []
    for w in withdrawals or []:
        wd_rows.append({
            "chain_id": chain_id,
            "block_number": number,
            "index": quantity(w["index"]),
            "validator_index": quantity(w["validatorIndex"]),
            "address": hexdata(w["address"]),
            "amount": quantity(w["amount"]),
        })

    return {"blocks": [block], "transactions": tx_rows, "logs": log_rows,
            "withdrawals": wd_rows}


# ---------------------------------------------------------------------------
# Reading ethindex's rows back and comparing
# ---------------------------------------------------------------------------

def table_columns(cluster, table):
    """[(column, type)] of ethindex.<table> in attribute order."""
    rows = cluster.query(
        "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type "
        "FROM pg_attribute a WHERE a.attrelid = 'ethindex.%s'::regclass "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum" % table)
    return [(r["name"], r["type"]) for r in rows]


def _bytea(v):
    if not isinstance(v, str) or not v.startswith("\\x"):
        raise ValueError("bytea not in hex output format: %r" % (v,))
    return bytes.fromhex(v[2:])


def db_value(value, pgtype):
    """Convert a value from row_to_json to the Python form expected_rows
    uses."""
    if value is None:
        return None
    if pgtype == "bytea":
        return _bytea(value)
    if pgtype == "bytea[]":
        return [None if x is None else _bytea(x) for x in value]
    if pgtype.startswith("timestamp with time zone"):
        return datetime.datetime.fromisoformat(value).astimezone(datetime.timezone.utc)
    if pgtype.startswith("numeric") or pgtype in ("bigint", "integer", "smallint"):
        if isinstance(value, Decimal):
            if value != value.to_integral_value():
                return value
            return int(value)
        return value
    return value        # boolean, jsonb, text


def _fmt(v):
    if isinstance(v, bytes):
        return "0x" + v.hex() if len(v) <= 80 else "0x%s...(%d bytes)" % (v[:40].hex(), len(v))
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    if isinstance(v, (dict,)):
        s = json.dumps(v, sort_keys=True, default=str)
        return s if len(s) < 300 else s[:300] + "..."
    return repr(v)


def fetch_block(url, number, timeout=30):
    """(block, receipts) from a node, as parsed JSON."""
    block = rpc_call(url, "eth_getBlockByNumber", [hex(number), True], timeout=timeout)
    if block is None:
        raise ValueError("node %s has no block %d" % (url, number))
    receipts = rpc_call(url, "eth_getBlockReceipts", [hex(number)], timeout=timeout)
    if receipts is None:
        raise ValueError("node %s has no receipts for block %d" % (url, number))
    return block, receipts


def stored_rows(cluster, chain_id, first, last, db="ethindex_test"):
    """{table: {key tuple: row dict}} of what ethindex stored for blocks
    first..last of chain_id, values converted with db_value.  Duplicate keys
    (which a primary key should prevent) are reported under key + ('dup', n).
    One query reads the column types and the rows of every table."""
    parts = []
    for table in TABLES:
        parts.append(
            "%s, json_build_object('types', (SELECT json_object_agg(a.attname, "
            "format_type(a.atttypid, a.atttypmod)) FROM pg_attribute a WHERE a.attrelid = "
            "'ethindex.%s'::regclass AND a.attnum > 0 AND NOT a.attisdropped), "
            "'rows', (SELECT coalesce(json_agg(row_to_json(t) ORDER BY %s), '[]') "
            "FROM ethindex.%s t WHERE chain_id = %d AND %s BETWEEN %d AND %d))"
            % (sql_literal(table), table, ", ".join(TABLE_KEYS[table]), table, chain_id,
               TABLE_KEYS[table][0], first, last))
    stored = loads(cluster.psql("SELECT json_build_object(%s)" % ", ".join(parts), db=db))
    out = {}
    for table in TABLES:
        types = stored[table]["types"]
        rows = {}
        for raw in stored[table]["rows"]:
            row = {k: db_value(v, types[k]) for k, v in raw.items()}
            key = tuple(row[k] for k in TABLE_KEYS[table])
            if key in rows:
                n = 1
                while key + ("dup", n) in rows:
                    n += 1
                key = key + ("dup", n)
            rows[key] = row
        out[table] = rows
    return out


def compare_rows(expected, actual):
    """Compare {table: [expected rows]} (from expected_rows, possibly for
    several blocks) with {table: {key: actual row}}; return mismatch lines."""
    problems = []
    for table in TABLES:
        keycols = TABLE_KEYS[table]
        exp = {}
        for row in expected.get(table, []):
            key = tuple(row[k] for k in keycols)
            if key in exp:
                problems.append("%s: node data has duplicate key %s" % (table, key))
            exp[key] = row
        act = actual.get(table, {})
        for key in sorted(exp):
            where = "%s %s" % (table, ", ".join("%s=%s" % kv for kv in zip(keycols, key)))
            if key not in act:
                problems.append("%s: missing row" % where)
                continue
            erow, arow = exp[key], act[key]
            for col, ev in erow.items():
                if col not in arow:
                    problems.append("%s: column %s not in table" % (where, col))
                    continue
                av = arow[col]
                if not _equal(ev, av):
                    problems.append("%s column %s: expected %s, actual %s"
                                    % (where, col, _fmt(ev), _fmt(av)))
            for col in arow:
                if col not in erow:
                    problems.append("%s: unexpected column %s = %s" % (where, col, _fmt(arow[col])))
        for key in sorted(act, key=repr):
            if key not in exp:
                problems.append("%s %s: extra row (%s)"
                                % (table, ", ".join("%s=%s" % kv for kv in zip(keycols, key)),
                                   "duplicate" if "dup" in key else "not in node data"))
    return problems


def _equal(e, a):
    if type(e) is bool or type(a) is bool:
        return type(e) is type(a) and e == a
    return e == a


def compare_chain(cluster, rpc_url, chain_id, first, last, db="ethindex_test"):
    """Fetch blocks first..last (inclusive) from the node and compare every
    column of every row ethindex stored for them.  Returns mismatch lines
    ("table key column: expected X, actual Y", missing and extra rows); an
    empty list means the range is stored exactly."""
    expected = {t: [] for t in TABLES}
    problems = []
    for n in range(first, last + 1):
        block, receipts = fetch_block(rpc_url, n)
        try:
            rows = expected_rows(block, receipts, chain_id)
        except (ValueError, KeyError) as e:
            problems.append("block %d: cannot build expected rows: %s" % (n, e))
            continue
        for t in TABLES:
            expected[t].extend(rows[t])
    actual = stored_rows(cluster, chain_id, first, last, db=db)
    return problems + compare_rows(expected, actual)


# Ports handed out by free_port(), each held with a lock file for the life
# of this process, so that concurrent test runs (two checkouts, or a run and
# a benchmark) never choose the same port in the moment between the check
# and the server binding it.
PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "ethindex-test-ports")
_port_locks = {}


def _lock_port(port):
    """True if this process holds, or now took, the lock of "port"."""
    if port in _port_locks:
        return True
    if not os.path.isdir(PORT_LOCK_DIR):
        try:
            os.makedirs(PORT_LOCK_DIR, exist_ok=True)
            os.chmod(PORT_LOCK_DIR, 0o1777)     # shared by root and the test user
        except OSError:
            pass
    path = os.path.join(PORT_LOCK_DIR, "%d.lock" % port)
    try:
        fd = os.open(path, os.O_RDONLY)    # O_CREAT only when needed: see
    except FileNotFoundError:              # fs.protected_regular
        old = os.umask(0)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
        finally:
            os.umask(old)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _port_locks[port] = fd
    return True


def free_port(start, end=None, host="127.0.0.1"):
    """First TCP port in [start, end) (end: start + 100) that nobody listens
    on and no other process running tests holds (see PORT_LOCK_DIR)."""
    import socket
    for port in range(start, end or start + 100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        if _lock_port(port):
            return port
    raise RuntimeError("no free TCP port in %d..%d" % (start, (end or start + 100) - 1))


# ---------------------------------------------------------------------------
# A tiny EVM assembler and the test contract
# ---------------------------------------------------------------------------

_OPCODES = {
    "STOP": 0x00, "EQ": 0x14, "SHR": 0x1c, "CALLER": 0x33, "CALLDATALOAD": 0x35,
    "CALLDATASIZE": 0x36, "CALLDATACOPY": 0x37, "CODECOPY": 0x39, "NUMBER": 0x43,
    "POP": 0x50, "MSTORE": 0x52, "JUMPI": 0x57, "JUMPDEST": 0x5b, "DUP1": 0x80,
    "LOG0": 0xa0, "LOG1": 0xa1, "LOG2": 0xa2, "LOG3": 0xa3, "LOG4": 0xa4,
    "RETURN": 0xf3, "REVERT": 0xfd,
}


def assemble(prog):
    """Assemble a list of items: an opcode name, ("PUSH", int or bytes,
    nbytes), ("PUSHLABEL", name) (always PUSH2) or ("LABEL", name) (a
    JUMPDEST)."""
    def size(it):
        if isinstance(it, str):
            return 1
        return {"PUSH": 1 + (it[2] if it[0] == "PUSH" else 0), "PUSHLABEL": 3,
                "LABEL": 1}[it[0]]
    labels, pos = {}, 0
    for it in prog:
        if isinstance(it, tuple) and it[0] == "LABEL":
            labels[it[1]] = pos
        pos += size(it)
    out = bytearray()
    for it in prog:
        if isinstance(it, str):
            out.append(_OPCODES[it])
        elif it[0] == "PUSH":
            v, n = it[1], it[2]
            b = v if isinstance(v, bytes) else v.to_bytes(n, "big")
            assert len(b) == n and 1 <= n <= 32
            out.append(0x5f + n)
            out += b
        elif it[0] == "PUSHLABEL":
            out.append(0x61)
            out += labels[it[1]].to_bytes(2, "big")
        elif it[0] == "LABEL":
            out.append(_OPCODES["JUMPDEST"])
    return bytes(out)


LOG_TOPIC0 = bytes.fromhex("e1" * 32)
LOG_TOPIC3 = bytes.fromhex("a5" * 31 + "03")
CTOR_TOPIC = bytes.fromhex("c0de" * 16)


def log_contract_runtime():
    """Runtime code of the test contract.  The first calldata byte selects:
    0..4 emit LOG0..LOG4 whose data is the whole calldata (topics:
    LOG_TOPIC0, CALLER, NUMBER, LOG_TOPIC3); 0xff reverts with 4 bytes;
    anything else (or a call without data: LOG0) stops."""
    prog = [("PUSH", 0, 1), "CALLDATALOAD", ("PUSH", 0xf8, 1), "SHR",
            "DUP1", ("PUSH", 0xff, 1), "EQ", ("PUSHLABEL", "revert"), "JUMPI",
            "CALLDATASIZE", ("PUSH", 0, 1), ("PUSH", 0, 1), "CALLDATACOPY"]
    for n in range(5):
        prog += ["DUP1", ("PUSH", n, 1), "EQ", ("PUSHLABEL", "log%d" % n), "JUMPI"]
    prog += ["STOP"]
    topics = [("PUSH", LOG_TOPIC0, 32), "CALLER", "NUMBER", ("PUSH", LOG_TOPIC3, 32)]
    for n in range(5):
        prog += [("LABEL", "log%d" % n)]
        prog += [topics[i] for i in reversed(range(n))]
        prog += ["CALLDATASIZE", ("PUSH", 0, 1), "LOG%d" % n, "STOP"]
    prog += [("LABEL", "revert"), ("PUSH", 4, 1), ("PUSH", 0, 1), "REVERT"]
    return assemble(prog)


def log_contract_init():
    """Init code: emits LOG1(CTOR_TOPIC) with no data, then deploys
    log_contract_runtime()."""
    rt = log_contract_runtime()

    def prefix(off):
        return assemble([("PUSH", CTOR_TOPIC, 32), ("PUSH", 0, 1), ("PUSH", 0, 1), "LOG1",
                         ("PUSH", len(rt), 2), ("PUSH", off, 2), ("PUSH", 0, 1), "CODECOPY",
                         ("PUSH", len(rt), 2), ("PUSH", 0, 1), "RETURN"])
    return prefix(len(prefix(0))) + rt


# ---------------------------------------------------------------------------
# Transactions of every type on an anvil node
# ---------------------------------------------------------------------------

class AnvilTransactions:
    """Queues transactions of every type on an anvil node whose automine is
    off, and mines blocks of them: legacy (0), EIP-2930 (1) and EIP-1559 (2)
    transfers from anvil's unlocked accounts, calls into the log contract
    (deployed at construction) emitting logs with 0-4 topics, and, through
    cast, blob (3) and EIP-7702 (4) transactions."""

    def __init__(self, anvil, workdir):
        self.anvil = anvil
        self.accounts = [a for a, _ in ANVIL_ACCOUNTS]
        self.keys = [k for _, k in ANVIL_ACCOUNTS]
        self.blobfile = os.path.join(workdir, "blob-%d.bin" % anvil.port)
        with open(self.blobfile, "wb") as f:
            f.write(b"ethindex blob test " * 100)
        anvil.rpc("evm_setAutomine", [False])
        h = self.send({"from": self.accounts[0], "gas": hex(1_000_000),
                       "data": "0x" + log_contract_init().hex()})
        anvil.mine()
        self.contract = anvil.rpc("eth_getTransactionReceipt", [h])["contractAddress"]

    def send(self, tx):
        return self.anvil.rpc("eth_sendTransaction", [tx])

    def pending_nonce(self, i):
        return int(self.anvil.rpc("eth_getTransactionCount",
                                  [self.accounts[i], "pending"]), 16)

    def simple(self, i):
        """Transaction requests of types 0, 1 and 2 and a log call (as
        anvil_reorg takes them too), varied by i."""
        acc = self.accounts
        return [
            {"from": acc[0], "to": acc[5], "value": hex(10**15 + i),
             "gasPrice": hex(2 * 10**9), "type": "0x0"},
            {"from": acc[1], "to": acc[5], "value": hex(2**64 + i), "type": "0x1",
             "gasPrice": hex(3 * 10**9),
             "accessList": [{"address": acc[5], "storageKeys": ["0x" + "%064x" % i]}]},
            {"from": acc[4], "to": acc[5], "value": hex(i + 1),
             "maxFeePerGas": hex(10**10), "maxPriorityFeePerGas": hex(10**9)},
            {"from": acc[1], "to": self.contract,
             "data": "0x%02x" % (i % 5) + bytes([i % 256]).hex() * (i % 40)},
        ]

    def queue_blob(self):
        """A blob transaction (type 3) from account 2."""
        a = self.anvil
        return a.cast("send", "--rpc-url", a.url, "--private-key", self.keys[2],
                      "--nonce", self.pending_nonce(2), "--blob", "--eip4844",
                      "--path", self.blobfile, "--async", self.accounts[5], timeout=120)

    def queue_authorization(self):
        """An EIP-7702 transaction (type 4) from account 2 delegating
        account 3 to the log contract."""
        a = self.anvil
        auth = a.cast("wallet", "sign-auth", self.contract, "--private-key", self.keys[3],
                      "--rpc-url", a.url, "--nonce", self.pending_nonce(3))
        return a.cast("send", "--rpc-url", a.url, "--private-key", self.keys[2],
                      "--nonce", self.pending_nonce(2), "--auth", auth,
                      "--async", self.accounts[3], "0x03aabbcc")

    def mine_blocks(self, n, start=0, all_types=False):
        """Mine n blocks of simple transactions (varied by start + block);
        with all_types, the first also has a blob and an EIP-7702
        transaction.  Returns the new head."""
        for b in range(n):
            for tx in self.simple(start + b):
                self.send(tx)
            if all_types and b == 0:
                self.queue_blob()
                self.queue_authorization()
            self.anvil.mine()
        return self.anvil.head()
