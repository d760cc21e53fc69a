#!/bin/bash
# Build the libFuzzer harnesses in _fuzz/tree: a copy of the sources
# (what git tracks, plus new files not ignored) configured with
# CC=clang --enable-fuzz.  A copy, because one automake tree holds one
# configuration: the gcc build here stays as it is, and the harnesses get
# the same source list and dependency flags as the daemon from the same
# configure and Makefile.am.  Later runs copy again (tar keeps the files'
# times) and rebuild only what changed.
#   tests/fuzz/build.sh          prints the harnesses' directory at the end
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
tree="$top/_fuzz/tree"
log="$top/_fuzz/build.log"

mkdir -p "$tree"
cd "$top"
if git rev-parse --git-dir >/dev/null 2>&1; then
	git ls-files -z -c -o --exclude-standard |
	    tar --null --ignore-failed-read -T - -cf - 2>/dev/null |
	    tar -xf - -C "$tree"
else
	# not a git checkout: copy everything and start the build afresh
	rm -rf "$tree"
	mkdir -p "$tree"
	tar --exclude=./_asan --exclude=./_tsan --exclude=./_fuzz --exclude=./_bench \
	    --exclude=./.git -cf - . | tar -xf - -C "$tree"
	if [ -f "$tree/Makefile" ]; then
		(cd "$tree" && make distclean >/dev/null 2>&1 || true)
	fi
fi

cd "$tree"
: >"$log"
if [ ! -x configure ] || [ configure.ac -nt configure ]; then
	autoreconf -fi >>"$log" 2>&1 || { cat "$log" >&2; exit 1; }
fi
if [ ! -f Makefile ]; then
	./configure CC=clang --enable-fuzz --enable-werror --disable-integration-tests \
	    >>"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }
fi
make -j2 fuzz-build >>"$log" 2>&1 || { tail -n 60 "$log" >&2; exit 1; }
echo "$tree/tests/fuzz"
