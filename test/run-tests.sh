#!/usr/bin/env bash
#
# test/run-tests.sh: the full test run ("make test").
#
# As root (CI): install dependencies, build with warnings as errors, install
# the extension, then run as the unprivileged user "ethindex" (PostgreSQL
# refuses to run as root):
#   1. static analysis (make analyze: cppcheck)
#   2. brief fuzzing of the decoders (fuzz/run.sh; runs as root too)
#   3. the pg_regress suite (make installcheck, on a temporary instance)
#   4. the Python integration tests (test/integration/run.py)
# As an ordinary user: skip installing and user switching; build if the tree
# is writable and run both stages against the installed extension.
#
# Arguments are passed on to run.py (e.g. -k sigkill).  Environment:
#   SKIP_ANALYZE=1 / SKIP_FUZZ=1 / SKIP_REGRESS=1 / SKIP_INTEGRATION=1
#                                         skip a stage
#   FUZZ_SECONDS                          fuzzing per harness (default 15)
#   SKIP_BUILD=1                          do not build and install (use what
#                                         is installed)
#   ETHINDEX_SUMMARY_FILE                 also write the summary line there
#
# The last line of output is "N passed, N failed"; the exit status is
# non-zero if anything failed.
#
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

TEST_USER=ethindex
WORK=/tmp/ethindex-test
passed=0
failed=0

stage() { printf '\n===== %s =====\n' "$*"; }

finish() {
	local line="$passed passed, $failed failed"
	if [ -n "${ETHINDEX_SUMMARY_FILE:-}" ]; then
		echo "$line" >"$ETHINDEX_SUMMARY_FILE" || true
	fi
	echo
	echo "$line"
	[ "$failed" -eq 0 ]
	exit $?
}

if [ "$(id -u)" -eq 0 ]; then
	as_user() { runuser -u "$TEST_USER" -- env PYTHONDONTWRITEBYTECODE=1 "$@"; }
	is_root=1
else
	as_user() { env PYTHONDONTWRITEBYTECODE=1 "$@"; }
	is_root=0
fi

# --- dependencies, build, install --------------------------------------------

if [ $is_root -eq 1 ]; then
	stage "dependencies"
	if ! test/install-deps.sh; then
		echo "run-tests: installing dependencies failed"
		failed=$((failed + 1))
		finish
	fi
fi

if [ "${SKIP_BUILD:-0}" != 1 ] && { [ $is_root -eq 1 ] || [ -w "$root" ]; }; then
	stage "build (warnings are errors)"
	if ! make -j"$(nproc)" COPT='-Werror'; then
		echo "run-tests: build failed"
		failed=$((failed + 1))
		finish
	fi
fi

if [ $is_root -eq 1 ]; then
	if [ "${SKIP_BUILD:-0}" != 1 ]; then
		stage "install"
		if ! make install; then
			echo "run-tests: make install failed"
			failed=$((failed + 1))
			finish
		fi
	fi
	rm -rf "$WORK"
	install -d -o "$TEST_USER" -g "$(id -gn "$TEST_USER")" "$WORK"
	# The test user must read the tree; a checkout under a private home
	# directory is copied to a place it can read.
	if ! runuser -u "$TEST_USER" -- test -r "$root/test/integration/run.py"; then
		echo "run-tests: $root is not readable by $TEST_USER, testing a copy in $WORK/tree"
		cp -a "$root" "$WORK/tree"
		chown -R "$TEST_USER" "$WORK/tree"
		root="$WORK/tree"
		cd "$root"
	fi
else
	mkdir -p "$WORK" 2>/dev/null || WORK="$(mktemp -d /tmp/ethindex-test-XXXXXX)"
fi

# --- static analysis ---------------------------------------------------------

if [ "${SKIP_ANALYZE:-0}" != 1 ]; then
	stage "static analysis (make analyze: cppcheck)"
	if make analyze; then
		passed=$((passed + 1))
	else
		echo "run-tests: cppcheck reported problems"
		failed=$((failed + 1))
	fi
fi

# --- fuzzing -----------------------------------------------------------------

# The libFuzzer harnesses of the decoders, briefly (make fuzz and
# docs/fuzzing.md for longer runs): built with clang outside the PGXS build,
# into $WORK/fuzz, so that neither the tree nor fuzz/build and fuzz/work are
# touched; the regressions and seeds, then FUZZ_SECONDS (15) per harness,
# as many at a time as there are cores.
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
	fuzz_seconds="${FUZZ_SECONDS:-15}"
	stage "fuzzing (fuzz/run.sh, ${fuzz_seconds}s per harness)"
	fuzz_out="$WORK/fuzz"
	if ! mkdir -p "$fuzz_out" 2>/dev/null || [ ! -w "$fuzz_out" ]; then
		fuzz_out="$(mktemp -d /tmp/ethindex-fuzz-XXXXXX)"
	fi
	if FUZZ_SECONDS="$fuzz_seconds" FUZZ_JOBS="$(nproc)" \
		FUZZ_BUILD="$fuzz_out/build" FUZZ_WORK="$fuzz_out/work" fuzz/run.sh; then
		passed=$((passed + 1))
	else
		echo "run-tests: fuzzing found a problem (logs and crash inputs in $fuzz_out/work)"
		failed=$((failed + 1))
	fi
fi

# --- pg_regress --------------------------------------------------------------

if [ "${SKIP_REGRESS:-0}" != 1 ]; then
	stage "pg_regress (make installcheck)"
	outdir="$WORK/regress"
	as_user rm -rf "$outdir"
	as_user mkdir -p "$outdir"
	as_user timeout 900 make installcheck REGRESS_OUTDIR="$outdir" 2>&1 | tee "$WORK/installcheck.out"
	rc=${PIPESTATUS[0]}
	ok=$(grep -cE '\.\.\. ok( |$)' "$WORK/installcheck.out" || true)
	bad=$(grep -cE '\.\.\. (FAILED|failed)' "$WORK/installcheck.out" || true)
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		echo "run-tests: make installcheck exited with status $rc"
		bad=1
	fi
	if [ -s "$outdir/regression.diffs" ]; then
		echo "----- $outdir/regression.diffs -----"
		cat "$outdir/regression.diffs"
		echo "----- end of regression.diffs -----"
	fi
	if [ "$rc" -ne 0 ] && [ -f "$outdir/log/postmaster.log" ]; then
		echo "----- tail of $outdir/log/postmaster.log -----"
		tail -n 50 "$outdir/log/postmaster.log"
	fi
	echo "pg_regress: $ok passed, $bad failed"
	passed=$((passed + ok))
	failed=$((failed + bad))
fi

# --- Python integration tests ------------------------------------------------

if [ "${SKIP_INTEGRATION:-0}" != 1 ]; then
	stage "integration tests (test/integration/run.py)"
	out="$WORK/integration.out"
	(cd "$WORK" && as_user timeout --kill-after=30 1500 python3 -u "$root/test/integration/run.py" "$@") 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n1 || true)
	if [ -n "$summary" ]; then
		ok=${summary%% passed*}
		bad=${summary#*, }
		bad=${bad%% failed}
	else
		ok=0
		bad=0
	fi
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		echo "run-tests: integration runner exited with status $rc"
		bad=1
	fi
	passed=$((passed + ok))
	failed=$((failed + bad))
fi

finish
