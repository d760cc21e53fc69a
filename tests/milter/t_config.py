#!/usr/bin/python3
"""authgate -V and -n: version, the effective settings of a good config,
file:line messages and exit 1 for bad ones."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq  # noqa: E402

suite = agtest.Suite("authgate -n / -V")


def write(name, text):
    p = os.path.join(agtest.tmpdir("conf"), name)
    with open(p, "w") as f:
        f.write(text)
    return p


def settings(out):
    d = {}
    for ln in out.splitlines():
        parts = ln.split(None, 1)
        if parts:
            d[parts[0].lower()] = parts[1].strip() if len(parts) > 1 else ""
    return d


@suite.case
def version():
    r = agtest.run([agtest.AUTHGATE, "-V"])
    check("exit 0", r.returncode == 0, agtest.fmt_run(r))
    check("prints 'authgate VERSION'", re.match(r"^authgate \d+\.\d+", r.stdout or "") is not None,
          expected="authgate N.N...", got=r.stdout)


@suite.case
def good_config_prints_settings():
    p = write("good.conf", """# a comment
Socket          inet:12345@127.0.0.1
Database        /tmp/agtest-nonexistent/authgate.db

AuthservID      mx.example.org
LogLevel        notice
DryRun          yes
On-DatabaseError accept
PolicyCheckInterval 7
TrustedNetworks 127.0.0.0/8, 192.0.2.0/24
""")
    r = agtest.run([agtest.AUTHGATE, "-n", "-c", p])
    check_eq("exit 0", r.returncode, 0, agtest.fmt_run(r))
    s = settings(r.stdout)
    check_eq("Socket", s.get("socket"), "inet:12345@127.0.0.1", r.stdout)
    check_eq("Database", s.get("database"), "/tmp/agtest-nonexistent/authgate.db", r.stdout)
    check_eq("AuthservID", s.get("authservid"), "mx.example.org", r.stdout)
    check_eq("LogLevel", s.get("loglevel"), "notice", r.stdout)
    check_eq("DryRun", s.get("dryrun"), "yes", r.stdout)
    check_eq("On-DatabaseError", s.get("on-databaseerror"), "accept", r.stdout)
    check_eq("PolicyCheckInterval", s.get("policycheckinterval"), "7", r.stdout)
    check("TrustedNetworks lists both", "192.0.2.0/24" in s.get("trustednetworks", "") and
          "127.0.0.0/8" in s.get("trustednetworks", ""), got=s.get("trustednetworks"))
    check("defaults are printed too (On-InternalError, DatabaseTimeout)",
          "on-internalerror" in s and "databasetimeout" in s, got=r.stdout)
    check_eq("nothing on stderr", r.stderr.strip(), "")


@suite.case
def p_overrides_socket():
    p = write("p.conf", "Socket inet:12345@127.0.0.1\n")
    r = agtest.run([agtest.AUTHGATE, "-n", "-c", p, "-p", "inet:23456@127.0.0.1"])
    check_eq("-p wins over Socket", settings(r.stdout).get("socket"), "inet:23456@127.0.0.1",
             agtest.fmt_run(r))


BAD = [
    ("unknown keyword", "Socket inet:1@127.0.0.1\n# ok\nNoSuchKeyword yes\n", 3),
    ("bad DryRun value", "DryRun perhaps\n", 1),
    ("bad LogLevel", "\n\nLogLevel loud\n", 3),
    ("bad socket", "Socket tcp:nowhere\n", 1),
    ("non-numeric PolicyCheckInterval", "PolicyCheckInterval soon\n", 1),
    ("bad CIDR", "TrustedNetworks 127.0.0.0/8, 300.1.2.3/8\n", 1),
    ("bad On-DatabaseError", "On-DatabaseError explode\n", 1),
    ("keyword twice", "LogLevel info\nLogLevel debug\n", 2),
    ("keyword without value", "Database\n", 1),
]


@suite.case
def bad_configs_name_file_and_line():
    for label, text, line in BAD:
        p = write("bad.conf", text)
        r = agtest.run([agtest.AUTHGATE, "-n", "-c", p])
        check_eq("%s: exit 1" % label, r.returncode, 1, agtest.fmt_run(r))
        check("%s: stderr says %s:%d: ..." % (label, os.path.basename(p), line),
              re.search(r"%s:%d: \S" % (re.escape(p), line), r.stderr or "") is not None,
              expected="%s:%d: message" % (p, line), got=r.stderr)


@suite.case
def missing_config_file():
    p = os.path.join(agtest.tmpdir("conf"), "nope.conf")
    r = agtest.run([agtest.AUTHGATE, "-n", "-c", p])
    check_eq("exit 1", r.returncode, 1, agtest.fmt_run(r))
    check("stderr names the file", p in (r.stderr or ""), got=r.stderr)


@suite.case
def daemon_refuses_bad_config():
    p = write("bad2.conf", "NoSuchKeyword 1\n")
    r = agtest.run([agtest.AUTHGATE, "-f", "-c", p], timeout=10)
    check("authgate -f with a bad config exits non-zero at once", r.returncode not in (0, None),
          agtest.fmt_run(r))
    check("and says file:line", "%s:1:" % p in (r.stderr or ""), got=r.stderr)


suite.run()
