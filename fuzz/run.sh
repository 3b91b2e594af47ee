#!/usr/bin/env bash
#
# fuzz/run.sh: build the libFuzzer harnesses of the decoders (fuzz/Makefile),
# run the crash reproducers of fuzz/regressions/ and the seeds through them,
# then fuzz each harness for FUZZ_SECONDS.  Exits non-zero on any crash,
# sanitizer report, timeout or oracle violation (see docs/fuzzing.md).
#
#   fuzz/run.sh [HARNESS...]          build, regressions and seeds, fuzz
#                                     (default: block envelope hex jsonrpc)
#   fuzz/run.sh build [HARNESS...]    build and make the seeds only
#   fuzz/run.sh regress [HARNESS...]  build, run regressions and seeds only
#
# Environment:
#   FUZZ_SECONDS=20    seconds of fuzzing per harness (0: none)
#   FUZZ_JOBS=1        harnesses fuzzed at the same time (one core each)
#   FUZZ_CC=clang-14   compiler
#   FUZZ_ARGS=         more libFuzzer options, e.g. -max_len=65536
#   FUZZ_BUILD=fuzz/build  binaries, objects and generated seeds
#   FUZZ_WORK=fuzz/work    per harness: the corpus it grows, crash files,
#                          fuzz.log; fuzz/work/summary.txt
#
# Long runs: e.g. FUZZ_SECONDS=3600 FUZZ_JOBS=2 fuzz/run.sh; the corpus in
# FUZZ_WORK is kept, so that a later run goes on from where one stopped.
# The seeds are fuzz/corpus/<harness>/ (copies from the shared fixture
# corpus, see fuzz/corpus/SOURCES.md) and FUZZ_BUILD/seeds/<harness>/ (made
# by fuzz/mkseeds.py from test/fixtures/).  A crash file becomes a
# regression test when copied into fuzz/regressions/<harness>/.
#
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_JOBS="${FUZZ_JOBS:-1}"
FUZZ_CC="${FUZZ_CC:-clang-14}"
build="${FUZZ_BUILD:-$here/build}"
work="${FUZZ_WORK:-$here/work}"
ALL=(block envelope hex jsonrpc)

log() { echo "fuzz: $*"; }

mode=fuzz
case "${1:-}" in
	build|regress) mode="$1"; shift ;;
esac
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=("${ALL[@]}")
for h in "${harnesses[@]}"; do
	case " ${ALL[*]} " in
		*" $h "*) ;;
		*) echo "fuzz: unknown harness \"$h\" (${ALL[*]})" >&2; exit 2 ;;
	esac
done
case "$FUZZ_SECONDS$FUZZ_JOBS" in
	*[!0-9]*) echo "fuzz: FUZZ_SECONDS and FUZZ_JOBS must be numbers" >&2; exit 2 ;;
esac
[ "$FUZZ_JOBS" -ge 1 ] || FUZZ_JOBS=1

# --- build -------------------------------------------------------------------

if ! command -v "$FUZZ_CC" >/dev/null 2>&1; then
	echo "fuzz: $FUZZ_CC not found (Debian 12: apt-get install clang-14 libclang-rt-14-dev)" >&2
	exit 1
fi
mkdir -p "$build" || exit 1
build="$(cd "$build" && pwd)"
log "building with $FUZZ_CC into $build"
if ! make -s -C "$here" -j"$(nproc)" FUZZ_CC="$FUZZ_CC" B="$build"; then
	echo "fuzz: build failed" >&2
	exit 1
fi
rm -rf "$build/seeds" "$build/full"
python3 "$here/mkseeds.py" "$build" || { echo "fuzz: making seeds failed" >&2; exit 1; }
[ "$mode" = build ] && exit 0

failed=0

# --- regressions and seeds ---------------------------------------------------

# the files of a directory (none if it does not exist), NUL-separated
files_in() {
	[ -d "$1" ] && find "$1" -maxdepth 1 -type f ! -name '*.md' -print0 | sort -z
}

# run the harness once on each file; libFuzzer exits non-zero on a crash
run_once() {
	local h="$1"; shift
	local out
	[ $# -gt 0 ] || return 0
	if ! out="$(cd "$build" && "$build/fuzz_$h" -runs=1 "$@" 2>&1)"; then
		echo "$out" | grep -av '^Running: \|^Executed ' | tail -n 60
		return 1
	fi
}

for h in "${harnesses[@]}"; do
	regs=()
	seeds=()
	while IFS= read -r -d '' f; do regs+=("$f"); done < <(files_in "$here/regressions/$h")
	while IFS= read -r -d '' f; do seeds+=("$f"); done \
		< <(files_in "$here/corpus/$h"; files_in "$build/seeds/$h")
	if run_once "$h" "${regs[@]}" "${seeds[@]}"; then
		log "$h: ${#regs[@]} regression inputs and ${#seeds[@]} seeds pass"
	else
		log "$h: FAILED on a regression input or a seed"
		failed=$((failed + 1))
	fi
done
# the uncut fixture blocks must decode (this also shows that the seeds get
# past the decoder's checks, and runs the reference comparison on them)
if [[ " ${harnesses[*]} " == *" block "* ]]; then
	if FUZZ_EXPECT_DECODED=1 run_once block "$build"/full/block/*; then
		log "block: $(find "$build/full/block" -type f | wc -l) fixture blocks decode"
	else
		log "block: FAILED on a fixture block"
		failed=$((failed + 1))
	fi
fi
if [ "$mode" = regress ] || [ "$FUZZ_SECONDS" -eq 0 ]; then
	[ "$failed" -eq 0 ]
	exit $?
fi

# --- fuzzing -----------------------------------------------------------------

mkdir -p "$work" || exit 1
work="$(cd "$work" && pwd)"

dict_of() {
	case "$1" in
		block) echo "$here/dict/block.dict" ;;
		envelope|jsonrpc) echo "$here/dict/envelope.dict" ;;
		hex) echo "$here/dict/hex.dict" ;;
	esac
}

fuzz_one() {
	local h="$1"
	local dir="$work/$h"
	local seeds=()

	mkdir -p "$dir/corpus"
	rm -f "$dir/status" "$dir/fuzz.log"
	[ -d "$here/corpus/$h" ] && seeds+=("$here/corpus/$h")
	[ -d "$build/seeds/$h" ] && seeds+=("$build/seeds/$h")
	# new inputs go into the first directory, the work corpus
	# shellcheck disable=SC2086
	(cd "$dir" && exec "$build/fuzz_$h" -max_total_time="$FUZZ_SECONDS" -timeout=25 \
		-print_final_stats=1 -artifact_prefix="$dir/" -dict="$(dict_of "$h")" \
		${FUZZ_ARGS:-} "$dir/corpus" "${seeds[@]}") >"$dir/fuzz.log" 2>&1
	echo $? >"$dir/status"
}

# one line of figures from a harness's log
summary() {
	local h="$1"
	local f="$work/$h/fuzz.log"
	local last execs secs cov ft corp files bytes crashes

	last="$(grep -aE '^#[0-9]+' "$f" | tail -n1)"
	execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$f")"
	secs="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$f")"
	cov="$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')"
	ft="$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')"
	corp="$(echo "$last" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')"
	files="$(find "$work/$h/corpus" -type f | wc -l)"
	bytes="$(du -sk "$work/$h/corpus" | cut -f1)"
	crashes="$(find "$work/$h" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' \
		-o -name 'oom-*' -o -name 'leak-*' \) | wc -l)"
	printf '%-9s %6ss %12s execs  cov %5s  ft %6s  corp %-14s work corpus %5s files %6s KB  crashes %s\n' \
		"$h" "${secs:-$FUZZ_SECONDS}" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
		"$files" "$bytes" "$crashes"
}

started=$(date +%s)
for h in "${harnesses[@]}"; do
	while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do
		wait -n || true
	done
	log "$h: fuzzing for ${FUZZ_SECONDS}s (log: $work/$h/fuzz.log)"
	fuzz_one "$h" &
done
wait

{
	echo "# fuzz/run.sh $(date -u '+%Y-%m-%d %H:%M:%S UTC'): FUZZ_SECONDS=$FUZZ_SECONDS FUZZ_JOBS=$FUZZ_JOBS, $(( $(date +%s) - started ))s in all"
	for h in "${harnesses[@]}"; do
		summary "$h"
	done
} >"$work/summary.txt"
sed 's/^/fuzz: /' "$work/summary.txt"

for h in "${harnesses[@]}"; do
	[ "$(cat "$work/$h/status" 2>/dev/null)" = 0 ] && continue
	log "$h: FAILED, see $work/$h/fuzz.log:"
	grep -aE 'ERROR|pgshim|SUMMARY|Test unit written|runtime error' "$work/$h/fuzz.log" | head -n 20
	for c in "$work/$h"/crash-* "$work/$h"/timeout-* "$work/$h"/oom-* "$work/$h"/leak-*; do
		[ -f "$c" ] || continue
		log "reproduce: $build/fuzz_$h $c"
		log "then keep it as a regression test: cp $c $here/regressions/$h/<what-it-is>"
	done
	failed=$((failed + 1))
done

[ "$failed" -eq 0 ]
