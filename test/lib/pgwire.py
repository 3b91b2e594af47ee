"""
pgwire.py: a minimal PostgreSQL client (frontend/backend protocol 3.0) that
LISTENs for notifications in the integration tests and benchmarks and records
when each one arrived, using only the Python standard library.

Owns
  PgConnection   one session over a Unix socket (host is a directory) or TCP;
                 trust, cleartext-password and MD5 authentication; simple
                 queries with text results; LISTEN
  Notification   (channel, payload, pid, received): one notification, with
                 received = time.monotonic() when its message was read
  PgError        an ErrorResponse, with the SQLSTATE in .sqlstate

A daemon reader thread owns every read from the socket: it records
notifications the moment they arrive (also while a query runs) and hands each
query's result to query(), which only writes and waits.  When the server goes
away the reader ends, the connection is marked closed and query() raises
ConnectionError instead of hanging.
"""

import collections
import contextlib
import getpass
import hashlib
import os
import queue
import socket
import struct
import threading
import time

Notification = collections.namedtuple("Notification", "channel payload pid received")

PROTOCOL_3_0 = 196608
APPLICATION_NAME = "ethindex-test-listener"
_AUTH_NAMES = {2: "Kerberos V5", 7: "GSSAPI", 9: "SSPI", 10: "SASL (SCRAM-SHA-256)"}


class PgError(Exception):
    """An ErrorResponse.  fields maps the one-letter field codes to their
    text; sqlstate, severity, message, detail and hint are taken from it."""

    def __init__(self, fields):
        self.fields = fields
        self.sqlstate = fields.get("C")
        self.severity = fields.get("V") or fields.get("S")
        self.message = fields.get("M")
        self.detail = fields.get("D")
        self.hint = fields.get("H")
        text = "%s: %s (SQLSTATE %s)" % (self.severity, self.message, self.sqlstate)
        if self.detail:
            text += "\nDETAIL: " + self.detail
        if self.hint:
            text += "\nHINT: " + self.hint
        super().__init__(text)


def quote_ident(name):
    """name as a quoted SQL identifier."""
    return '"%s"' % name.replace('"', '""')


def _cstr(buf, pos):
    """(text, position after it) of the NUL-terminated string at pos."""
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode("utf-8", "replace"), end + 1


def _error_fields(body):
    fields, pos = {}, 0
    while body[pos] != 0:
        fields[chr(body[pos])], pos = _cstr(body, pos + 1)
    return fields


def _data_row(body):
    (ncols,) = struct.unpack_from("!h", body)
    row, pos = [], 2
    for _ in range(ncols):
        (size,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if size < 0:
            row.append(None)
        else:
            row.append(body[pos:pos + size].decode("utf-8"))
            pos += size
    return row


def _summary(notifications, last=50):
    """repr of a list of notifications, only the last ones of a long list."""
    if len(notifications) <= last:
        return repr(notifications)
    return "%d, the last %d: %r" % (len(notifications), last, notifications[-last:])


class PgConnection:
    """One session.  host is a socket directory (starts with "/") or a
    hostname/IP; user defaults to the OS user.  timeout (seconds) bounds
    connecting, each query() and wait_for() without an explicit timeout.
    Attributes: closed, pid (of the backend), parameters (ParameterStatus)."""

    def __init__(self, host, port, dbname, user=None, timeout=30, password=None):
        self.user = user or getpass.getuser()
        self.timeout = timeout
        self.closed = False
        self.pid = None
        self.parameters = {}
        self._close_reason = None
        self._notifications = []
        self._cond = threading.Condition()      # guards notifications and closed
        self._results = queue.Queue()           # reader -> query(): rows or exception
        self._query_lock = threading.Lock()     # one query in flight
        self._send_lock = threading.Lock()
        self._rows, self._error = [], None      # the reply being read (reader only)
        self._buf = bytearray()
        self._sock = None
        try:
            if host.startswith("/"):
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(timeout)
                self._sock.connect(os.path.join(host, ".s.PGSQL.%d" % int(port)))
            else:
                self._sock = socket.create_connection((host, int(port)), timeout)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._startup(dbname, password)
        except BaseException:
            if self._sock is not None:
                self._sock.close()
            raise
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                        name="pgwire-reader-%s" % self.pid)
        self._reader.start()

    # -- wire --------------------------------------------------------------

    def _send(self, typ, body):
        with self._send_lock:
            self._sock.sendall(typ + struct.pack("!I", len(body) + 4) + body)

    def _read(self, n):
        while len(self._buf) < n:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _recv(self):
        typ, size = struct.unpack("!cI", self._read(5))
        return typ, self._read(size - 4)

    def _startup(self, dbname, password):
        params = {"user": self.user, "database": dbname,
                  "application_name": APPLICATION_NAME, "client_encoding": "UTF8"}
        self._send(b"", struct.pack("!I", PROTOCOL_3_0) + b"".join(
            k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0")
        while True:
            typ, body = self._recv()
            if typ == b"R":
                self._authenticate(body, password)
            elif typ == b"E":
                raise PgError(_error_fields(body))
            elif typ == b"Z":
                return
            else:
                self._dispatch(typ, body)

    def _authenticate(self, body, password):
        (code,) = struct.unpack_from("!I", body)
        if code == 0:                           # AuthenticationOk
            return
        if code not in (3, 5):
            raise NotImplementedError(
                "the server requires %s authentication for user %r; pgwire supports "
                "only trust, password and md5" % (_AUTH_NAMES.get(code, code), self.user))
        if password is None:
            raise ConnectionError("the server asks for a password for user %r; "
                                  "pass password=..." % self.user)
        secret = password.encode()
        if code == 5:                           # md5(md5(password + user) + salt)
            inner = hashlib.md5(secret + self.user.encode()).hexdigest().encode()
            secret = b"md5" + hashlib.md5(inner + body[4:8]).hexdigest().encode()
        self._send(b"p", secret + b"\0")

    def _dispatch(self, typ, body):
        """Handle one message after startup (in the reader thread)."""
        if typ == b"A":
            received = time.monotonic()
            (pid,) = struct.unpack_from("!i", body)
            channel, pos = _cstr(body, 4)
            payload, _ = _cstr(body, pos)
            with self._cond:
                self._notifications.append(Notification(channel, payload, pid, received))
                self._cond.notify_all()
        elif typ == b"T":                       # each statement's rows replace the last
            self._rows = []
        elif typ == b"D":
            self._rows.append(_data_row(body))
        elif typ == b"E":
            self._error = PgError(_error_fields(body))
        elif typ == b"Z":
            self._results.put(self._error or self._rows)
            self._rows, self._error = [], None
        elif typ == b"S":
            name, pos = _cstr(body, 0)
            self.parameters[name] = _cstr(body, pos)[0]
        elif typ == b"K":
            (self.pid,) = struct.unpack_from("!i", body)
        # C (CommandComplete), I (EmptyQueryResponse), N (NoticeResponse): nothing to do

    def _read_loop(self):
        try:
            while True:
                self._dispatch(*self._recv())
        except Exception as e:
            # a FATAL ErrorResponse just before the end explains it best
            reason = self._error or e
        with self._cond:
            if not self.closed:
                self.closed, self._close_reason = True, reason
            self._cond.notify_all()
        self._sock.close()
        self._results.put(ConnectionError("connection closed: %s" % self._close_reason))

    # -- API ---------------------------------------------------------------

    def query(self, sql):
        """Run sql as a simple query; return the rows of its last statement
        that returns rows, each a list of str or None.  Raises PgError for an
        SQL error, ConnectionError when the connection is (or gets) closed,
        TimeoutError (and closes the connection) after self.timeout."""
        with self._query_lock:
            if self.closed:
                raise ConnectionError("connection closed: %s" % self._close_reason)
            try:
                self._send(b"Q", sql.encode() + b"\0")
                result = self._results.get(timeout=self.timeout)
            except OSError as e:
                raise ConnectionError("cannot send query: %s" % e) from e
            except queue.Empty:
                self.close()
                raise TimeoutError("no answer within %ss (connection closed) to: %s"
                                   % (self.timeout, sql[:200])) from None
            except BaseException:
                self.close()        # interrupted: a late reply would answer the next query
                raise
        if isinstance(result, Exception):
            raise result
        return result

    def listen(self, *channels):
        """LISTEN on each channel (names are quoted, so case and any
        character are kept)."""
        self.query("; ".join("LISTEN " + quote_ident(c) for c in channels))

    def notifications(self):
        """All notifications received so far (since the last drain())."""
        with self._cond:
            return list(self._notifications)

    def drain(self):
        """Return the notifications received so far and forget them."""
        with self._cond:
            out, self._notifications = self._notifications, []
            return out

    def wait_for(self, predicate, timeout=None):
        """The first received notification for which predicate(n) is true,
        waiting up to timeout (default self.timeout) seconds for it.  Raises
        TimeoutError, or ConnectionError when the connection closes first;
        both name what was received."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._cond:
            seen, checked = None, 0
            while True:
                if seen is not self._notifications:     # drain() replaced the list
                    seen, checked = self._notifications, 0
                for n in seen[checked:]:
                    if predicate(n):
                        return n
                checked = len(seen)
                if self.closed:
                    raise ConnectionError("connection closed (%s) while waiting; received %s"
                                          % (self._close_reason, _summary(seen)))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no matching notification within %ss; received %s"
                                       % (limit, _summary(seen)))
                self._cond.wait(remaining)

    def close(self):
        """Send Terminate and close; the reader thread ends.  Idempotent."""
        with self._cond:
            was_closed = self.closed
            if not was_closed:
                self.closed, self._close_reason = True, "closed by the client"
        if not was_closed:
            with contextlib.suppress(OSError):
                self._send(b"X", b"")
            with contextlib.suppress(OSError):        # wakes the reader up
                self._sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(self.timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
