#!/usr/bin/python3
"""authgate --test-message: one stored message through the whole pipeline
offline; the per-phase lines, the verdict line and the exit status."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq  # noqa: E402

suite = agtest.Suite("authgate --test-message")
S = {}
PHASES = ("connect", "helo", "mail", "rcpt", "header", "eoh", "body", "eom")


def stored_message(size, name):
    h, b = agtest.make_message("offline " + name, size=size)
    data = agtest.message_bytes(h, b).replace(b"\r\n", b"\n")   # as stored on disk
    p = os.path.join(S["dir"], name + ".eml")
    with open(p, "wb") as f:
        f.write(data)
    return p


def offline(ag, msg, *extra):
    return agtest.run([agtest.AUTHGATE, "-c", ag.conf_path, "--test-message", msg,
                       "--client-ip", "192.0.2.10", "--helo", "client.example",
                       "--mail-from", "alice@size.example", "--rcpt", "bob@example.net"]
                      + list(extra), timeout=30)


def last_line(out):
    lines = [ln for ln in (out or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@suite.setup
def setup():
    agtest.require_authgate()
    S["dir"] = agtest.tmpdir("offline")
    ag = S["ag"] = agtest.Authgate(S["dir"])
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["rule"] = ag.add_rule("--match", "sender-domain=size.example", "--max-size", "10k")


@suite.case
def small_message_accepted():
    r = offline(S["ag"], stored_message(2000, "small"))
    check_eq("exit status 0", r.returncode, 0, agtest.fmt_run(r))
    check_eq("last line", last_line(r.stdout), "verdict: accept", r.stdout)
    # "PHASE: ACTION ..."; the rcpt line may name its recipient
    # ("rcpt <bob@example.net>: continue").
    seen = [p for p in PHASES if re.search(r"^%s(?: <[^>]*>)?: " % p, r.stdout or "", re.M)]
    check_eq("a line for every phase", seen, list(PHASES), r.stdout)
    bad = [ln for ln in (r.stdout or "").splitlines()
           if re.match(r"^(%s)(?: <[^>]*>)?: " % "|".join(PHASES), ln)
           and not re.match(r"^\w+(?: <[^>]*>)?: (continue|accept)\b", ln)]
    check_eq("every phase goes on", bad, [])


@suite.case
def over_size_rejected():
    r = offline(S["ag"], stored_message(30000, "big"))
    check_eq("exit status 1", r.returncode, 1, agtest.fmt_run(r))
    check("a phase line with 552 5.3.4",
          re.search(r"^\w+(?: <[^>]*>)?: reject 552 5\.3\.4 ", r.stdout or "", re.M) is not None,
          expected="PHASE: reject 552 5.3.4 TEXT", got=r.stdout)
    check_eq("last line", last_line(r.stdout), "verdict: reject", r.stdout)


@suite.case
def rcpt_and_auth_options():
    ag = S["ag"]
    ag.add_rule("--match", "sasl-user=offline-user", "--max-rcpts", "1")
    r = offline(ag, stored_message(1000, "rcpts"), "--rcpt", "carol@example.net",
                "--auth", "offline-user")
    check("second --rcpt over max-rcpts 1 (sasl-user rule): a 452 4.5.3 rcpt line",
          re.search(r"^rcpt <carol@example.net>: tempfail 452 4\.5\.3 |^rcpt: tempfail 452 4\.5\.3 ",
                    r.stdout or "", re.M) is not None,
          expected="rcpt: tempfail 452 4.5.3 ...", got=agtest.fmt_run(r))
    check_eq("the message itself is accepted for the first", last_line(r.stdout),
             "verdict: accept", r.stdout)


@suite.case
def database_error_tempfails():
    d = agtest.tmpdir("offline-bad")
    bad = agtest.Authgate(d)
    with open(bad.db, "wb") as f:
        f.write(b"not a database\n" * 300)
    r = offline(bad, stored_message(1000, "tf"))
    check_eq("corrupt database: exit status 2", r.returncode, 2, agtest.fmt_run(r))
    check_eq("last line", last_line(r.stdout), "verdict: tempfail", r.stdout)


@suite.case
def missing_message_file():
    r = offline(S["ag"], os.path.join(S["dir"], "does-not-exist.eml"))
    check("a missing message file is an error, not a verdict",
          r.returncode not in (0, 1, None) and "verdict: accept" not in (r.stdout or ""),
          agtest.fmt_run(r))


suite.run()
