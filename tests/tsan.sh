#!/bin/bash
# The concurrent parts under ThreadSanitizer: a copy of the tree in _tsan/
# (ignored by git) configured with --enable-tsan, where the unit tests
# that run many threads against shared state are built and run:
#   t_ratelimit        the local rate table (200 threads on one key, ...)
#   t_rate             the rate engine (threads, backend swaps)
#   t_ratelimit_redis  the Redis backend (200 threads, a connection each)
#   t_history          the DMARC history queue (pushes while flushing)
#   t_dns              the resolver and its table of answers (threads
#                      asking the same names while local data changes)
#   t_dkim             verification threads sharing the decoded keys
#   t_metrics          the counters and the rule table (4 threads that
#                      claim the same rule slots while rendering reads)
# A data race makes the test program exit non-zero (halt_on_error), which
# its TAP driver reports.  `make check-tsan` runs this; so does tests/run.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
tsan="$top/_tsan"
tests="tests/unit/t_ratelimit tests/unit/t_rate tests/unit/t_ratelimit_redis
    tests/unit/t_history tests/unit/t_dns tests/unit/t_dkim tests/unit/t_metrics"

rm -rf "$tsan"
mkdir -p "$tsan"
cd "$top"
tar --exclude=./_asan --exclude=./_tsan --exclude=./_fuzz --exclude=./_bench --exclude=./.git --exclude="*.trs" \
    --exclude="./tests/*/t_*.log" -cf - . | tar -xf - -C "$tsan"
cd "$tsan"
if [ -f Makefile ]; then
	make distclean >/dev/null
fi
./configure --enable-werror --enable-tsan --disable-integration-tests \
    >/dev/null
make -j2 lib/libauthgate.a >/dev/null
# halt_on_error: the first race fails the program, so its test fails
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    make -k -j2 check TESTS="$tests"
