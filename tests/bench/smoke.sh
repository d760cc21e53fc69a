#!/bin/bash
# tests/bench/smoke.sh: the benchmark runner's short version (every
# section, about 90 s), so that tests/bench/run keeps working.  Its numbers
# are not checked (a benchmark is not a test), only that every section ran
# whole: no section failed or was skipped, and each wrote its table.  One
# TAP result per section in tests/bench/smoke-SECTION.trs, counted by
# tests/run.  Output in _bench/ (ignored by git).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
out=$top/_bench
rm -rf "$out" tests/bench/smoke-*.trs tests/bench/smoke-*.log
mkdir -p "$out"
tests/bench/run --quick --out "$out" > "$out/run.log" 2>&1
rc=$?
status=0
for s in micro e2e milter scale memory; do
	log=tests/bench/smoke-$s.log
	md=$out/$s.md
	{
		echo "1..1"
		if [ ! -s "$md" ]; then
			echo "not ok 1 - bench $s: no $md (runner status $rc)"
			tail -n 40 "$out/run.log" | sed 's/^/# /'
			res=FAIL
		elif grep -q -E '^FAILED:|^skipped' "$md"; then
			echo "not ok 1 - bench $s: the section failed or was skipped"
			head -n 60 "$md" | sed 's/^/# /'
			res=FAIL
		else
			echo "ok 1 - bench $s: ran whole ($(grep -c '^|' "$md") table rows)"
			res=PASS
		fi
	} > "$log"
	cat "$log"
	printf ':test-result: %s\n' "$res" > "tests/bench/smoke-$s.trs"
	[ "$res" = PASS ] || status=1
done
exit $status
