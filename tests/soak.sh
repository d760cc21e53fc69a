#!/bin/bash
# The fault tests at full length (`make soak`; not part of make check, whose
# runs are short): authgate killed with SIGKILL every 5 s under load through
# Postfix (tests/e2e/t_kill.py), SIGHUP every second under load
# (tests/e2e/t_hup.py), rounds of 1,000 concurrent milter connections
# (tests/milter/t_concurrency.py).  Lengths from the environment, defaults:
#   AG_KILL_SECONDS=120  AG_HUP_SECONDS=120  AG_CONC_ROUNDS=20
# Needs root and a built tree (as the integration tests).  Prints each test's
# figures and the TAP lines that failed; exits non-zero if any test failed.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export AG_SRCDIR=${AG_SRCDIR:-$top} AG_BUILDDIR=${AG_BUILDDIR:-$top}
export AG_KILL_SECONDS=${AG_KILL_SECONDS:-120}
export AG_HUP_SECONDS=${AG_HUP_SECONDS:-120}
export AG_CONC_ROUNDS=${AG_CONC_ROUNDS:-20}
logdir=${AG_SOAK_LOGS:-$(mktemp -d /tmp/agsoak-XXXXXX)}
failed=0
for t in tests/e2e/t_kill.py tests/e2e/t_hup.py tests/milter/t_concurrency.py; do
	log="$logdir/$(basename "$t" .py).log"
	start=$(date +%s)
	/usr/bin/python3 "$top/$t" >"$log" 2>&1
	rc=$?
	echo "=== soak: $t: exit $rc in $(($(date +%s) - start))s (log $log)"
	grep -E '^# .*(figures|SIGKILL every|SIGHUPs|round [0-9]+:|resident)' "$log"
	if [ "$rc" -ne 0 ] || grep -q '^not ok' "$log"; then
		grep -E '^not ok' "$log" | head -20
		failed=$((failed + 1))
	fi
done
echo "=== soak: $failed test(s) failed"
[ "$failed" -eq 0 ]
