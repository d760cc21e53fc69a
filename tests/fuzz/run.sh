#!/bin/bash
# Run the libFuzzer harnesses of tests/fuzz (built by tests/fuzz/build.sh
# in _fuzz/tree).
#
#   tests/fuzz/run.sh smoke [HARNESS...]   what CI runs (tests/run)
#   tests/fuzz/run.sh long [HARNESS...]    a long run by hand
#
# smoke: every file of tests/fuzz/regress/HARNESS/ (crash reproducers)
# and tests/fuzz/corpus/HARNESS/ (seeds) is run once, in full; then the
# harness fuzzes for FUZZ_SECONDS (default 12) from the seeds, with
# -max_len bounded, two harnesses at a time.  New inputs go to a scratch
# directory, never into the repository.  Each harness writes
# tests/fuzz/smoke-HARNESS.trs and .log, which tests/run counts: two
# results, "replay" and "fuzz".  Exit status 1 if anything failed.
#
# long: one harness after the other, FUZZ_SECONDS each (default 600),
# with a corpus kept in _fuzz/corpus/HARNESS across runs (started from the
# seeds) and -jobs/-workers from FUZZ_JOBS (default 1).  Crashes are
# written to _fuzz/artifacts/HARNESS/; see tests/fuzz/README.md for what
# to do with one.
#
# Without clang the harnesses cannot be built: outside CI that is a SKIP,
# with CI=true a failure (tests/deps.sh installs clang).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
mode=${1:-smoke}
shift || true

# Input size caps: each a bit above the largest useful seed.
max_len() {
	case "$1" in
	fuzz_pipeline) echo 16384 ;;
	fuzz_dkim) echo 8192 ;;
	fuzz_spf | fuzz_config) echo 4096 ;;
	*) echo 1024 ;;
	esac
}

# Per-harness flags.  The pipeline keeps state across inputs (engines,
# SQLite, the signer), so libFuzzer's leak check after each input that
# keeps memory would scan the heap nearly every time (60 execs/s instead
# of 700): it is off there, and LeakSanitizer's check at exit still fails
# the run on any leak.
extra_flags() {
	case "$1" in
	fuzz_pipeline) echo -detect_leaks=0 ;;
	esac
}

harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
	for f in "$here"/fuzz_*.c; do
		b=$(basename "$f" .c)
		harnesses+=("$b")
	done
fi

# The results of one harness as automake's .trs/.log pair.
trs_write() {
	local h=$1 replay=$2 fuzz=$3
	{
		echo ":test-result: $replay"
		echo ":test-result: $fuzz"
		echo ":global-test-result: $([ "$replay$fuzz" = PASSPASS ] &&
		    echo PASS || echo FAIL)"
		echo ":recheck: no"
		echo ":copy-in-global-log: no"
	} >"$here/smoke-$h.trs"
}

skip_all() {
	local why=$1
	echo "fuzz: $why" >&2
	for h in "${harnesses[@]}"; do
		{
			echo ":test-result: SKIP"
			echo ":test-result: SKIP"
			echo ":global-test-result: SKIP"
		} >"$here/smoke-$h.trs"
		echo "ok 1 # SKIP $why" >"$here/smoke-$h.log"
	done
}

if ! command -v clang >/dev/null 2>&1; then
	if [ "$mode" = smoke ] && [ "${CI:-}" != true ]; then
		skip_all "clang not installed (bash tests/deps.sh installs it)"
		exit 0
	fi
	echo "fuzz: clang not installed (bash tests/deps.sh installs it)" >&2
	[ "$mode" = smoke ] || exit 1
	for h in "${harnesses[@]}"; do
		trs_write "$h" FAIL FAIL
		echo "not ok 1 - clang not installed" >"$here/smoke-$h.log"
	done
	exit 1
fi

if ! bin=$(bash "$here/build.sh"); then
	echo "fuzz: the harnesses did not build (see _fuzz/build.log)" >&2
	[ "$mode" = smoke ] || exit 1
	for h in "${harnesses[@]}"; do
		trs_write "$h" FAIL FAIL
		echo "not ok 1 - build failed: see _fuzz/build.log" \
		    >"$here/smoke-$h.log"
	done
	exit 1
fi

work="$top/_fuzz"
mkdir -p "$work/tmp"
# fuzz_pipeline's database: in memory where there is a tmpfs (SQLite's
# syncs on a disk cost it half its speed); the harness removes it at exit
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	export TMPDIR=/dev/shm
else
	export TMPDIR="$work/tmp"
fi
# Leaks are failures (tests/lsan.supp: none suppressed today).
export LSAN_OPTIONS="suppressions=$top/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1"
export ASAN_OPTIONS="detect_leaks=1"

# Run every file of the given directories once; prints the count.
replay() {
	local h=$1 log=$2
	shift 2
	local files=()
	for d in "$@"; do
		[ -d "$d" ] || continue
		while IFS= read -r -d '' f; do
			files+=("$f")
		done < <(find "$d" -type f -print0 | sort -z)
	done
	echo "${#files[@]}"
	[ ${#files[@]} -eq 0 ] && return 0
	"$bin/$h" -runs=1 "${files[@]}" >>"$log" 2>&1
}

smoke_one() {
	local h=$1 secs=$2
	local log="$here/smoke-$h.log" scratch="$work/smoke/$h"
	local art="$work/artifacts/$h/" r f n execs
	rm -rf "$scratch"
	mkdir -p "$scratch" "$art"
	: >"$log"
	echo "# $h: replaying tests/fuzz/regress/$h and tests/fuzz/corpus/$h" >>"$log"
	if n=$(replay "$h" "$log" "$here/regress/$h" "$here/corpus/$h"); then
		r=PASS
	else
		r=FAIL
	fi
	echo "# $h: fuzzing for ${secs}s" >>"$log"
	# shellcheck disable=SC2046
	if "$bin/$h" -max_total_time="$secs" -max_len="$(max_len "$h")" \
	    $(extra_flags "$h") -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix="$art" "$scratch" "$here/corpus/$h" \
	    >>"$log" 2>&1; then
		f=PASS
	else
		f=FAIL
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	{
		echo "1..2"
		if [ $r = PASS ]; then
			echo "ok 1 - $h replays $n regress and seed inputs"
		else
			echo "not ok 1 - $h crashes on a regress or seed input"
		fi
		if [ $f = PASS ]; then
			echo "ok 2 - $h fuzzed ${secs}s: ${execs:-?} executions"
		else
			echo "not ok 2 - $h failed while fuzzing (artifacts in $art)"
		fi
	} >>"$log"
	trs_write "$h" $r $f
	printf '%-16s replay %-4s (%s inputs)  fuzz %-4s %s execs in %ss (%s/s)\n' \
	    "$h" $r "$n" $f "${execs:-?}" "$secs" \
	    "$(( ${execs:-0} / (secs > 0 ? secs : 1) ))"
	[ $r = PASS ] && [ $f = PASS ]
}

case "$mode" in
smoke)
	secs=${FUZZ_SECONDS:-12}
	export -f smoke_one replay max_len extra_flags trs_write
	export bin here work
	# two at a time: the machine has two cores
	printf '%s\n' "${harnesses[@]}" |
	    xargs -P 2 -I{} bash -c 'smoke_one "$1" "$2"' _ {} "$secs"
	rc=$?
	[ $rc -eq 0 ] && echo "fuzz smoke: all ${#harnesses[@]} harnesses passed"
	exit $(( rc != 0 ))
	;;
long)
	secs=${FUZZ_SECONDS:-600}
	jobs=${FUZZ_JOBS:-1}
	rc=0
	for h in "${harnesses[@]}"; do
		corpus="$work/corpus/$h" art="$work/artifacts/$h/"
		mkdir -p "$corpus" "$art"
		dirs=("$corpus")
		for d in "$here/corpus/$h" "$here/regress/$h"; do
			[ -d "$d" ] && dirs+=("$d")
		done
		echo "=== $h: ${secs}s, corpus $corpus, log $work/long-$h.log"
		par=()
		if [ "$jobs" -gt 1 ]; then
			# each job logs to fuzz-N.log in the current directory
			par=(-jobs="$jobs" -workers="$jobs")
		fi
		# shellcheck disable=SC2046
		if ! (cd "$work" && "$bin/$h" -max_total_time="$secs" \
		    -max_len="$(max_len "$h")" $(extra_flags "$h") -timeout=10 \
		    -rss_limit_mb=2048 -print_final_stats=1 "${par[@]}" \
		    -artifact_prefix="$art" "${dirs[@]}" >"$work/long-$h.log" 2>&1); then
			rc=1
			echo "$h: FAILED, see $work/long-$h.log and $art"
		fi
		grep -E '^stat::number_of_executed_units|^stat::peak_rss' \
		    "$work/long-$h.log" || true
	done
	exit $rc
	;;
*)
	echo "usage: $0 smoke|long [HARNESS...]" >&2
	exit 2
	;;
esac
