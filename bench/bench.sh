#!/usr/bin/env bash
#
# bench/bench.sh: what "make bench" runs.  As root: installs dependencies,
# builds and installs the extension, builds the benchmark tools, and runs
# bench/run.py as the unprivileged user "ethindex" (PostgreSQL refuses to
# run as root).  Arguments go to bench/run.py (see bench/run.py --help).
#
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ "$(id -u)" -eq 0 ]; then
	test/install-deps.sh
	make -s
	make -s install
	make -s -C bench
	work=/tmp/ethindex-bench-tree
	if ! runuser -u ethindex -- test -r "$root/bench/run.py"; then
		rm -rf "$work"
		cp -a "$root" "$work"
		chown -R ethindex "$work"
		root="$work"
	fi
	cd /tmp
	exec runuser -u ethindex -- env PYTHONDONTWRITEBYTECODE=1 python3 -u "$root/bench/run.py" "$@"
else
	make -s -C bench
	exec env PYTHONDONTWRITEBYTECODE=1 python3 -u "$root/bench/run.py" "$@"
fi
