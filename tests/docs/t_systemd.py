#!/usr/bin/python3
"""packaging/systemd/authgate.service: systemd-analyze verify accepts it
without a word (unknown keys and bad commands are words), its sandboxing
rates as well as systemd-analyze security's "OK" (exposure under 5), and
the command line it runs is one authgate accepts."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq  # noqa: E402

suite = agtest.Suite("systemd unit")
UNIT = os.path.join(agtest.SRCDIR, "packaging", "systemd", "authgate.service")
S = {}


@suite.setup
def setup():
    agtest.require("systemd-analyze")
    agtest.require_authgate()
    d = agtest.tmpdir("unit")
    with open(UNIT) as f:
        text = f.read()
    m = re.search(r"^ExecStart=(\S+) (.*)$", text, re.M)
    check("the unit has an ExecStart", m is not None, fatal=True)
    S["exec"], S["args"] = m.group(1), m.group(2).split()
    check_eq("ExecStart runs the installed daemon", S["exec"], "/usr/sbin/authgate")
    # verify wants the command to exist: the built one stands in for it
    S["unit"] = os.path.join(d, "authgate.service")
    with open(S["unit"], "w") as f:
        f.write(text.replace("ExecStart=/usr/sbin/authgate",
                             "ExecStart=" + agtest.AUTHGATE))
    S["dir"] = d


@suite.case
def verify_says_nothing():
    r = agtest.run(["systemd-analyze", "verify", "--man=no", S["unit"]])
    check_eq("systemd-analyze verify: exit 0", r.returncode, 0, detail=agtest.fmt_run(r))
    check_eq("systemd-analyze verify: no warning", (r.stdout + r.stderr).strip(), "")


@suite.case
def sandboxed():
    r = agtest.run(["systemd-analyze", "security", "--offline=yes", S["unit"]])
    m = re.search(r"Overall exposure level for authgate\.service: ([0-9.]+)", r.stdout)
    check("systemd-analyze security gives an exposure level", m is not None,
          detail=agtest.fmt_run(r), fatal=True)
    check("exposure under 5 (systemd's OK)", float(m.group(1)) < 5.0, got=m.group(1))
    for key in ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                "ReadWritePaths=/var/lib/authgate /run/authgate",
                "ExecReload=/bin/kill -HUP $MAINPID"):
        check("the unit sets %s" % key, key in open(UNIT).read())


@suite.case
def command_line_accepted():
    """The unit's arguments, with the config at a path of ours, pass
    authgate's own check (-n)."""
    conf = os.path.join(S["dir"], "authgate.conf")
    with open(conf, "w") as f:
        f.write("Socket unix:%s/a.sock\nDatabase %s/a.db\n" % (S["dir"], S["dir"]))
    args = [conf if a == "/etc/authgate/authgate.conf" else a for a in S["args"]]
    check("the unit names /etc/authgate/authgate.conf", conf in args, got=S["args"])
    r = agtest.run([agtest.AUTHGATE] + args + ["-n"])
    check_eq("authgate %s -n: exit 0" % " ".join(S["args"]), r.returncode, 0,
             detail=agtest.fmt_run(r))


suite.run()
