#!/bin/bash
# Install everything needed to build and test authgate on Debian 12, as
# root.  Quick when everything is there already (no apt-get update then).
set -euo pipefail

PACKAGES=(
	# build
	build-essential autoconf automake libtool pkg-config
	libmilter-dev libspf2-dev libopendkim-dev libsqlite3-dev libunbound-dev
	libevent-dev libhiredis-dev libcmocka-dev libpsl-dev publicsuffix libidn2-dev libssl-dev
	# documentation checks; systemd-analyze checks the systemd unit;
	# debhelper builds the Debian package (tests/e2e/t_deb.py)
	mandoc groff-base systemd debhelper
	# tests: Postfix (also ships smtp-sink), the sqlite3 shell, Debian's
	# python3 (tests/lib uses its standard library: sqlite3, smtplib),
	# util-linux (unshare, setpriv) and mount for the read-only database test
	postfix sqlite3 python3 util-linux mount
	# SPF tests: unbound serves the test zones on loopback (dnsutils: dig,
	# to look at them by hand); Debian's python3 modules to parse DNS
	# packets (tests/lib/agdns.py) and Authentication-Results headers
	unbound dnsutils python3-dnslib python3-authres
	# DKIM tests: opendkim-genkey makes RSA keys, dkimpy (python3-dkim)
	# signs and checks messages, python3-nacl makes Ed25519 keys
	opendkim-tools python3-dkim python3-nacl
	# DMARC reports: xmllint validates them against RFC 7489's schema
	libxml2-utils
	# Sendmail (tests/e2e/t_sendmail.py): sendmail-bin conflicts with
	# postfix, so it is not installed but unpacked into a cache by
	# tests/lib/agsendmail.py (run below); these are what it needs
	# installed: the .cf builder and sendmail-bin's libraries.  iproute2
	# (ip) gives the test's private network namespace its addresses
	sendmail-cf m4 libwrap0 liblockfile1 iproute2
	# rate limits: the tests start their own redis-server on loopback
	# ports (redis-tools: redis-cli)
	redis-server redis-tools
	# metrics (tests/milter/t_metrics.py): Prometheus' own parser of the
	# text format checks the endpoint's output
	python3-prometheus-client
	# fuzzing (tests/fuzz): clang with libFuzzer and the sanitizer
	# runtimes (libclang_rt.fuzzer-x86_64.a is in libclang-rt-14-dev)
	clang libclang-rt-14-dev
	# benchmarks (tests/bench/run): OpenDKIM as the peer to compare with,
	# gnuplot for the plots of the scale section
	opendkim gnuplot-nox
)

if [ "$(id -u)" != 0 ]; then
	echo "tests/deps.sh: must run as root (tests/run uses sudo when it can)" >&2
	exit 1
fi

# sendmail-bin, unpacked (not installed) into /var/cache/authgate-tests
# (see tests/lib/agsendmail.py); quick when it is there already.  Without
# it t_sendmail.py skips, or fails under CI=true: so does this then.
fetch_sendmail() {
	if ! /usr/bin/python3 "$(dirname "$0")/lib/agsendmail.py" fetch; then
		echo "tests/deps.sh: could not fetch sendmail-bin" >&2
		case "${CI:-}" in 1 | true | yes) exit 1 ;; esac
	fi
}

missing=()
for p in "${PACKAGES[@]}"; do
	case "$p" in \#*) continue ;; esac
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "tests/deps.sh: all ${#PACKAGES[@]} packages already installed"
	fetch_sendmail
	exit 0
fi

echo "tests/deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Postfix installs silently with "No configuration"; the tests run private
# instances with their own main.cf and never touch /etc/postfix.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

apt_retry() {
	local n
	for n in 1 2 3; do
		"$@" && return 0
		echo "tests/deps.sh: '$*' failed (try $n), retrying" >&2
		sleep $((n * 5))
	done
	return 1
}
apt_retry apt-get update -q
apt_retry apt-get install -y -q --no-install-recommends "${missing[@]}"

# Check again: a package that did not install is an error here, not later.
bad=()
for p in "${missing[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || bad+=("$p")
done
if [ ${#bad[@]} -ne 0 ]; then
	echo "tests/deps.sh: still missing: ${bad[*]}" >&2
	exit 1
fi
fetch_sendmail
echo "tests/deps.sh: done"
