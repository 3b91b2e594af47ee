#!/usr/bin/env bash
#
# test/demo.sh: "make demo".  A throwaway PostgreSQL cluster indexing a local
# anvil chain (one block per second) fed by a steady flow of transactions,
# with a reorganization of 1 to 3 blocks every DEMO_REORG_EVERY seconds,
# showing ethindex.chain_status and the last reorganizations rolled back
# every second until Ctrl-C.
#
# As root it first installs dependencies, builds and installs the extension,
# then runs the demo as the user "ethindex".  Everything lives in
# /tmp/ethindex-demo and every process it started is stopped on exit.
#
# Environment: DEMO_DIR (/tmp/ethindex-demo), DEMO_ANVIL_PORT (58545),
# DEMO_PG_PORT (58432), DEMO_RATE (transactions per second, 30),
# DEMO_REORG_EVERY (seconds, 20; 0: none).
#
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEST_USER=ethindex

if [ "$(id -u)" -eq 0 ] && [ "${1:-}" != "--as-user" ]; then
	cd "$root"
	test/install-deps.sh
	make -j"$(nproc)"
	make install
	exec runuser -u "$TEST_USER" -- bash "$root/test/demo.sh" --as-user
fi

DIR="${DEMO_DIR:-/tmp/ethindex-demo}"
ANVIL_PORT="${DEMO_ANVIL_PORT:-58545}"
PG_PORT="${DEMO_PG_PORT:-58432}"
RATE="${DEMO_RATE:-30}"
REORG_EVERY="${DEMO_REORG_EVERY:-20}"
BIN="$(pg_config --bindir 2>/dev/null || true)"
[ -x "$BIN/initdb" ] || BIN=/usr/lib/postgresql/15/bin
ANVIL="$root/test/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
URL="http://127.0.0.1:$ANVIL_PORT"

export PGHOST="$DIR" PGPORT="$PG_PORT" PGDATABASE=ethindex_test PGTZ=UTC
unset PGUSER PGSERVICE PGOPTIONS

anvil_pid=""
traffic_pid=""
pg_started=0

cleanup() {
	trap - EXIT INT TERM
	echo
	echo "demo: stopping"
	[ -n "$traffic_pid" ] && { kill "$traffic_pid" 2>/dev/null; wait "$traffic_pid" 2>/dev/null; } || true
	[ "$pg_started" -eq 1 ] && "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
	[ -n "$anvil_pid" ] && { kill "$anvil_pid" 2>/dev/null; wait "$anvil_pid" 2>/dev/null; } || true
	echo "demo: logs are in $DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$ANVIL" ] || { echo "demo: $ANVIL is missing; run test/install-deps.sh" >&2; exit 1; }

# A stale demo (killed hard) may still hold the directory.
if [ -f "$DIR/data/postmaster.pid" ]; then
	"$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
fi
rm -rf "$DIR"
mkdir -p "$DIR"

if python3 -c "import socket; socket.create_connection(('127.0.0.1', $ANVIL_PORT), 1)" 2>/dev/null; then
	echo "demo: port $ANVIL_PORT is in use; set DEMO_ANVIL_PORT to a free port" >&2
	exit 1
fi
echo "demo: starting anvil on $URL (one block per second)"
"$ANVIL" --hardfork prague --order fifo --block-time 1 --port "$ANVIL_PORT" \
	--host 127.0.0.1 --quiet >"$DIR/anvil.log" 2>&1 &
anvil_pid=$!
for _ in $(seq 100); do
	if python3 -c "import sys; sys.path.insert(0, '$root/test/lib'); import ethindex_test as t; t.rpc_call('$URL', 'eth_chainId', [], timeout=1)" 2>/dev/null; then
		break
	fi
	kill -0 "$anvil_pid" 2>/dev/null || { cat "$DIR/anvil.log"; exit 1; }
	sleep 0.1
done

echo "demo: creating a cluster in $DIR/data"
"$BIN/initdb" -D "$DIR/data" --locale=C -E UTF8 -A trust >"$DIR/initdb.log"
cat >>"$DIR/data/postgresql.conf" <<EOF
port = $PG_PORT
unix_socket_directories = '$DIR'
listen_addresses = ''
shared_preload_libraries = 'ethindex'
ethindex.database = 'ethindex_test'
max_worker_processes = 32
fsync = off
TimeZone = 'UTC'
EOF
"$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
pg_started=1
"$BIN/createdb" ethindex_test
psql -X -q -v ON_ERROR_STOP=1 <<EOF
CREATE EXTENSION ethindex;
SELECT ethindex.add_chain('dev', ARRAY['$URL'], chain_id => 31337);
SELECT ethindex.start('dev');
EOF

echo "demo: sending about $RATE transactions per second"
python3 "$root/test/lib/traffic.py" --url "$URL" --rate "$RATE" --quiet \
	2>"$DIR/traffic.log" &
traffic_pid=$!

last_reorg=$(date +%s)
while true; do
	now=$(date +%s)
	if [ "$REORG_EVERY" -gt 0 ] && [ $((now - last_reorg)) -ge "$REORG_EVERY" ]; then
		depth=$((RANDOM % 3 + 1))
		python3 -c "import sys; sys.path.insert(0, '$root/test/lib'); import ethindex_test as t; t.rpc_call('$URL', 'anvil_reorg', [$depth, []])" \
			2>>"$DIR/traffic.log" || true
		last_reorg=$now
	fi
	out="$(psql -X -x -v ON_ERROR_STOP=1 -c 'SELECT * FROM ethindex.chain_status' 2>&1 || true)"
	reorgs="$(psql -X -v ON_ERROR_STOP=1 -c "SELECT id, fork_block, depth, '0x' || left(encode(new_head_hash, 'hex'), 12) AS new_head, rolled_back_at - detected_at AS took FROM ethindex.reorgs ORDER BY id DESC LIMIT 3" 2>&1 || true)"
	counts="$(psql -X -At -F ' ' -c "SELECT (SELECT count(*) FROM ethindex.blocks), (SELECT count(*) FROM ethindex.transactions), (SELECT count(*) FROM ethindex.logs)" 2>/dev/null || true)"
	printf '\033[H\033[2J'
	echo "ethindex demo: $(date -u '+%Y-%m-%d %H:%M:%S UTC')   anvil $URL   cluster $DIR   (Ctrl-C to stop)"
	echo
	echo "$out"
	echo
	read -r nb nt nl <<<"${counts:-? ? ?}" || true
	echo "stored: ${nb:-?} blocks, ${nt:-?} transactions, ${nl:-?} logs"
	echo
	echo "last reorganizations rolled back (anvil_reorg of 1-3 blocks every ${REORG_EVERY} s):"
	echo "$reorgs"
	if ! kill -0 "$traffic_pid" 2>/dev/null; then
		echo "traffic generator stopped, see $DIR/traffic.log"
	fi
	sleep 1
done
