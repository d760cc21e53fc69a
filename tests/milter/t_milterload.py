#!/usr/bin/python3
"""tests/bench/milterload, the milter load generator, against the daemon
and against tests/bench/nullmilter: every message gets its final reply,
the counts of replies and header changes are exact (what the Python
client sees for one message, times the number sent), rate and size rules
refuse a known number, a 200 KB message (4 body chunks) goes through,
and the exit status says what went wrong (1: no filter, 2: bad usage).

Not a benchmark: the numbers of messages are small and no speed is
checked (tests/bench/README.md, "milterload")."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq, open_session  # noqa: E402

suite = agtest.Suite("milter: milterload and nullmilter")
S = {}


def bench_bin(name):
    for base in (agtest.BUILDDIR, agtest.SRCDIR):
        p = os.path.join(base, "tests", "bench", name)
        if os.access(p, os.X_OK):
            return p
    return os.path.join(agtest.BUILDDIR, "tests", "bench", name)


MILTERLOAD = bench_bin("milterload")
NULLMILTER = bench_bin("nullmilter")

RESULT_KEYS = ["msgs", "secs", "rate", "p50", "p90", "p99", "max", "accept", "continue",
               "tempfail", "reject", "discard", "replycode", "other", "errors", "addheader",
               "insheader", "chgheader", "quarantine", "r4xx", "r5xx"]


def write_message(path, subject, body_size=0, sender="alice@example.org"):
    h, b = agtest.make_message(subject, size=body_size, sender=sender)
    # one folded header field, as mail has them
    h.append(("X-Folded", "first part\r\n\tsecond part"))
    with open(path, "wb") as f:
        f.write(agtest.message_bytes(h, b))
    return path, h, b


@suite.setup
def setup():
    agtest.require_authgate()
    for p in (MILTERLOAD, NULLMILTER):
        check("%s is built (make check builds it)" % os.path.basename(p),
              os.access(p, os.X_OK), got=p, fatal=True)
    work = agtest.tmpdir("load")
    S["work"] = work
    ag = agtest.Authgate(agtest.tmpdir("ag"))
    S["ag"] = ag
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    ag.add_rule("--match", "sender-domain=rate.example",
                "--rate", "messages:50/1h:client-ip")
    ag.add_rule("--match", "sender-domain=size.example", "--max-size", "10k")
    ag.start()
    S["small"] = write_message(os.path.join(work, "small.eml"), "small", 1000)
    S["big"] = write_message(os.path.join(work, "big.eml"), "big", 200 * 1024)
    S["mid"] = write_message(os.path.join(work, "mid.eml"), "mid", 20 * 1024)


def ag():
    return S["ag"]


def milterload(*args, timeout=120):
    return agtest.run([MILTERLOAD] + [str(a) for a in args], timeout=timeout)


def result(r, what):
    """The RESULT line of run R as a dict (numbers), checked to hold every
    field of the fixed interface in order; None after a failing check."""
    lines = [ln for ln in (r.stdout or "").splitlines() if ln.startswith("RESULT ")]
    if not check("%s: one RESULT line on stdout" % what, len(lines) == 1, agtest.fmt_run(r)):
        return None
    toks = lines[0].split()[1:]
    keys = [t.split("=", 1)[0] for t in toks]
    check_eq("%s: RESULT fields in order" % what, keys, RESULT_KEYS)
    d = {}
    for t in toks:
        k, _, v = t.partition("=")
        d[k] = float(v) if "." in v else int(v)
    return d


def check_counts(what, d, r, **want):
    got = {k: d.get(k) for k in want}
    check("%s: %s" % (what, " ".join("%s=%s" % kv for kv in sorted(want.items()))),
          got == want, expected=want, got=got, detail=agtest.fmt_run(r))


def reference_mods(sender="<alice@example.org>", address="192.0.2.10"):
    """What the daemon adds to the small message, seen by the Python client
    (tests/lib/milterclient.py): {modification name: count}, final kind."""
    _, h, b = S["small"]
    c = open_session(ag(), address=address, what="reference session")
    t = c.transaction(sender, ["<bob@example.net>"], h, b)
    c.quit()
    check("reference message accepted by the Python client", t.accepted, got=t, fatal=True)
    mods = {}
    for name, _ in t.mods:
        mods[name] = mods.get(name, 0) + 1
    return mods, t.final.kind


@suite.case
def authgate_new_connection_per_message():
    mods, kind = reference_mods()
    check("the daemon inserts at least one header field (Authentication-Results)",
          mods.get("insheader", 0) >= 1, got=mods)
    r = milterload("-S", ag().socket, "-m", S["small"][0], "-n", 200, "-c", 10, "-q")
    check_eq("exit status 0", r.returncode, 0, detail=agtest.fmt_run(r))
    d = result(r, "-n 200 -c 10")
    if d is None:
        return
    n = 200
    check_counts("-n 200 -c 10", d, r, msgs=n, errors=0, tempfail=0, reject=0, replycode=0,
                 discard=0, other=0, r4xx=0, r5xx=0,
                 accept=n if kind == "accept" else 0,
                 **{"continue": n if kind == "continue" else 0})
    check_counts("-n 200 -c 10: header changes = the Python client's x 200", d, r,
                 insheader=n * mods.get("insheader", 0), addheader=n * mods.get("addheader", 0),
                 chgheader=n * mods.get("chgheader", 0))
    check("-q: nothing but the RESULT line on stdout",
          len(r.stdout.strip().splitlines()) == 1, got=r.stdout)
    check("latencies ordered p50 <= p90 <= p99 <= max, max > 0",
          0 <= d["p50"] <= d["p90"] <= d["p99"] <= d["max"] and d["max"] > 0, got=d)


@suite.case
def authgate_five_messages_per_connection():
    mods, kind = reference_mods()
    mark = ag().log_mark()
    r = milterload("-S", ag().socket, "-m", S["small"][0], "-n", 200, "-c", 10, "-p", 5, "-j")
    check_eq("exit status 0", r.returncode, 0, detail=agtest.fmt_run(r))
    try:
        j = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        check("-j: the last line of stdout is a JSON object", False, agtest.fmt_run(r))
        return
    check_eq("-j: msgs", j.get("msgs"), 200)
    check_eq("-j: errors", j.get("errors"), 0)
    rep = j.get("replies", {})
    check_eq("-j: every final reply is the one of the Python client",
             rep.get(kind), 200, detail=j)
    check_eq("-j: mods.insheader", j.get("mods", {}).get("insheader"),
             200 * mods.get("insheader", 0), detail=j)
    check("-j: p50_ms, p99_ms, rate are numbers",
          all(isinstance(j.get(k), (int, float)) for k in ("p50_ms", "p99_ms", "rate")), got=j)
    # 5 messages per connection: the daemon logs 200 decisions, all accepted
    ds = ag().wait_decision(since=mark, count=200, timeout=10)
    check_eq("the daemon logged 200 decisions", len(ds), 200)
    check("each of them action=accept", all(d.get("action") == "accept" for d in ds),
          got=[d["line"] for d in ds if d.get("action") != "accept"][:5])


@suite.case
def rate_limit_refuses_the_rest_at_mail():
    r = milterload("-S", ag().socket, "-m", S["small"][0], "-n", 200, "-c", 10,
                   "-f", "<user%d@rate.example>", "-k", 7, "-a", "198.51.100.7", "-q")
    check_eq("exit status 0 (refusals are replies, not errors)", r.returncode, 0,
             detail=agtest.fmt_run(r))
    d = result(r, "rate 50/1h")
    if d is None:
        return
    accepted = d["accept"] + d["continue"]
    check_eq("exactly 50 of 200 accepted under messages:50/1h", accepted, 50,
             detail=agtest.fmt_run(r))
    check_counts("the other 150: 451 replies", d, r, msgs=200, errors=0, replycode=150,
                 r4xx=150, r5xx=0, reject=0)
    check_eq("header changes only for the 50 accepted", d["insheader"] % 50, 0, detail=d)
    check("at least one header change per accepted message", d["insheader"] >= 50, got=d)
    # another client address has its own counter
    r = milterload("-S", ag().socket, "-m", S["small"][0], "-n", 10, "-c", 2,
                   "-f", "<u@rate.example>", "-a", "198.51.100.8", "-q")
    d = result(r, "another client")
    if d:
        check_eq("another client address: 10 of 10 accepted", d["accept"] + d["continue"], 10,
                 detail=agtest.fmt_run(r))


@suite.case
def cidr_clients_each_have_a_counter():
    # 8 addresses, 40 messages: 5 per address, each under the limit of 50
    r = milterload("-S", ag().socket, "-m", S["small"][0], "-n", 40, "-c", 4,
                   "-f", "<x@rate.example>", "-a", "203.0.113.0/29", "-q")
    d = result(r, "-a 203.0.113.0/29")
    if d:
        check_eq("40 of 40 accepted from 8 addresses", d["accept"] + d["continue"], 40,
                 detail=agtest.fmt_run(r))
    r = milterload("-S", ag().socket, "-m", S["small"][0], "-n", 400, "-c", 10,
                   "-f", "<x@rate.example>", "-a", "203.0.113.0/29", "-q")
    d = result(r, "-a 203.0.113.0/29 again")
    if d:
        check_eq("then 8 x (50 - 5) = 360 of 400 accepted", d["accept"] + d["continue"], 360,
                 detail=agtest.fmt_run(r))
        check_eq("and 40 refused with 4xx", d["r4xx"], 40, detail=agtest.fmt_run(r))


@suite.case
def size_limit_rejects_at_mail():
    r = milterload("-S", ag().socket, "-m", S["mid"][0], "-m", S["small"][0], "-n", 20,
                   "-c", 3, "-f", "<a@size.example>", "-q")
    d = result(r, "max-size 10k")
    if d is None:
        return
    check_counts("20 KB and 1 KB messages in turn, limit 10k: 10 refused 5xx, 10 accepted",
                 d, r, msgs=20, errors=0, r5xx=10, r4xx=0)
    check_eq("10 accepted", d["accept"] + d["continue"], 10, detail=agtest.fmt_run(r))


@suite.case
def big_message_several_body_chunks():
    mods, kind = reference_mods()
    r = milterload("-S", ag().socket, "-m", S["big"][0], "-n", 6, "-c", 2, "-p", 3, "-q")
    check_eq("exit status 0", r.returncode, 0, detail=agtest.fmt_run(r))
    d = result(r, "200 KB message")
    if d:
        check_counts("200 KB message (4 body chunks): 6 of 6 get the usual reply", d, r,
                     msgs=6, errors=0, **{kind: 6})
    check("daemon still running", ag().alive())


@suite.case
def nullmilter_accepts_and_changes_nothing():
    port = agtest.free_port()
    sock = "inet:%d@127.0.0.1" % port
    p = agtest.Proc([NULLMILTER, "-p", sock, "-t", "30"], name="nullmilter",
                    stderr=os.path.join(S["work"], "nullmilter.log")).start()
    ok = agtest.wait_until(lambda: agtest.port_open("127.0.0.1", port), 10)
    check("nullmilter listens", ok, agtest.tail(os.path.join(S["work"], "nullmilter.log")),
          fatal=True)
    for extra in ((), ("-p", 5)):
        r = milterload("-S", sock, "-m", S["small"][0], "-n", 200, "-c", 10, "-q", *extra)
        what = "nullmilter -n 200 -c 10 %s" % " ".join(map(str, extra))
        check_eq("%s: exit status 0" % what, r.returncode, 0, detail=agtest.fmt_run(r))
        d = result(r, what)
        if d:
            check_counts(what, d, r, msgs=200, accept=200, errors=0, addheader=0,
                         insheader=0, chgheader=0, quarantine=0, r4xx=0, r5xx=0,
                         **{"continue": 0})
    r = milterload("-S", sock, "-m", S["big"][0], "-n", 4, "-c", 2, "-q")
    d = result(r, "nullmilter, 200 KB")
    if d:
        check_counts("nullmilter, 200 KB", d, r, msgs=4, accept=4, errors=0)
    check_eq("nullmilter stops on SIGTERM with status 0", p.stop(), 0)


@suite.case
def no_listener_exit_1():
    port = agtest.free_port()
    r = milterload("-S", "inet:%d@127.0.0.1" % port, "-m", S["small"][0], "-n", 50, "-q",
                   timeout=30)
    check_eq("nothing listening: exit status 1", r.returncode, 1, detail=agtest.fmt_run(r))
    m_err = re.search(r"cannot connect to inet:%d@127\.0\.0\.1: Connection refused"
                                % port, r.stderr or "")
    check("stderr says it cannot connect, and why", m_err is not None,
          agtest.fmt_run(r))
    d = result(r, "no listener")
    if d:
        check("errors counted, no message counted as answered",
              d["errors"] >= 1 and d["msgs"] == 0, got=d)
    path = os.path.join(S["work"], "none.sock")
    r = milterload("-S", "unix:" + path, "-m", S["small"][0], "-n", 5, "-q", timeout=30)
    check_eq("no unix socket: exit status 1", r.returncode, 1, detail=agtest.fmt_run(r))


@suite.case
def bad_usage_exit_2():
    msg = S["small"][0]
    cases = [
        ("no -S", ["-m", msg]),
        ("no -m", ["-S", ag().socket]),
        ("bad socket", ["-S", "tcp:1", "-m", msg]),
        ("-c 0", ["-S", ag().socket, "-m", msg, "-c", "0"]),
        ("-n x", ["-S", ag().socket, "-m", msg, "-n", "x"]),
        ("-n and -d", ["-S", ag().socket, "-m", msg, "-n", "5", "-d", "1"]),
        ("bad -a", ["-S", ag().socket, "-m", msg, "-a", "10.0.0.0/33"]),
        ("unknown option", ["-S", ag().socket, "-m", msg, "-Z"]),
        ("missing message file", ["-S", ag().socket, "-m", msg + ".missing"]),
    ]
    for what, args in cases:
        r = milterload(*args, timeout=30)
        check_eq("%s: exit status 2" % what, r.returncode, 2, detail=agtest.fmt_run(r))
        check("%s: no RESULT line" % what, "RESULT" not in (r.stdout or ""), got=r.stdout)


@suite.case
def duration_mode():
    # 3 s: progress comes once a second while connections run, so a run
    # of 1 s could end before its first line
    r = milterload("-S", ag().socket, "-m", S["small"][0], "-d", "3", "-c", 4)
    check_eq("-d 3: exit status 0", r.returncode, 0, detail=agtest.fmt_run(r))
    d = result(r, "-d 3")
    if d:
        check("-d 3: some messages, all answered, about 3 s",
              d["msgs"] > 0 and d["errors"] == 0 and 2.9 <= d["secs"] < 12, got=d)
    check("progress lines on stderr without -q", "progress " in (r.stderr or ""),
          agtest.fmt_run(r))


suite.run()
