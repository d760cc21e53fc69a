#!/usr/bin/python3
"""End to end: SIGHUP every second while a load generator sends mail
through Postfix.  A reload must cost nothing: every transaction gets its
250 (no 4xx, no 5xx) and every message arrives once.  And the reloads must
really happen: each one is logged, and the AuthservID that the config file
alternates between two names shows in the Authentication-Results of the
mail delivered (both names, one header per message).

Length: AG_HUP_SECONDS of load (default 15 s, 10 s under the
sanitizers); `make soak` runs it longer.
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
import agload  # noqa: E402
from agtest import check, check_eq, diag  # noqa: E402

SANITIZED = bool(os.environ.get("AG_SANITIZED"))
SECONDS = int(os.environ.get("AG_HUP_SECONDS") or (10 if SANITIZED else 15))
THREADS = int(os.environ.get("AG_HUP_THREADS") or 4)
IDS = ("hup-a.test.invalid", "hup-b.test.invalid")

suite = agtest.Suite("e2e: SIGHUP under load", case_timeout=SECONDS + 180,
                     total_timeout=SECONDS + 300)
S = {}


@suite.setup
def setup():
    agpostfix.require()
    agtest.require_authgate()
    # Postfix's client is 127.0.0.1: out of TrustedNetworks, so that every
    # message is verified (DKIM) and gets an Authentication-Results header
    st = S["st"] = agpostfix.Stack(conf={"TrustedNetworks": "192.0.2.0/24",
                                         "AuthservID": IDS[0]})
    r = st.ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    st.ag.add_rule("--match", "sender-domain=load.example", "--max-size", "1M")
    st.start()


def st():
    return S["st"]


def authserv_ids(counts_dir):
    """authserv-id of every Authentication-Results header at the sink,
    per message token: {token: [id, ...]}."""
    out = {}
    for p in os.listdir(counts_dir):
        try:
            with open(os.path.join(counts_dir, p), "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        m = agload.TOKEN_RX.search(text)
        if not m:
            continue
        ids = [v.split(";", 1)[0].strip() for k, v in agtest.header_fields(text)
               if k.lower() == "authentication-results"]
        out.setdefault(m.group(1), []).extend(ids)
    return out


@suite.case
def reload_every_second_loses_nothing():
    ag = st().ag
    pid = ag.proc.pid
    mark = ag.log_mark()
    load = agload.Load(st(), threads=THREADS).start()
    hups = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < SECONDS:
        time.sleep(1)
        hups += 1
        ag.write_config(AuthservID=IDS[hups % 2])
        os.kill(pid, signal.SIGHUP)
    load.stop()
    check("authgate still running, same process", ag.alive() and ag.proc.pid == pid,
          got="pid %s alive %s" % (ag.proc.pid, ag.alive()), fatal=True)
    drained = load.drain(timeout=60)
    check("every message sent", drained, got=load.summary())
    rx = re.compile(r"configuration reloaded \(generation \d+\)")
    agtest.wait_until(lambda: sum(1 for ln in ag.log_lines()[mark:] if rx.search(ln)) >= hups,
                      5)
    reloads = sum(1 for ln in ag.log_lines()[mark:] if rx.search(ln))
    check_eq("each SIGHUP logged 'configuration reloaded'", reloads, hups)
    check("the queue empties (postqueue -f)", agload.flush_queue(st().pf, 60),
          got="%d files left" % agload.queue_files(st().pf))
    a = load.summary()
    counts = agload.wait_sink_stable(st().sink, a["accepted"], 60)
    a = agload.account(load, counts)
    diag("hup test: %d SIGHUPs in %.0fs, %d client threads" %
         (hups, time.monotonic() - t0, THREADS))
    diag("hup test figures: " + agload.figures(a))
    check("messages sent", a["messages"] > 5 * SECONDS, got=a["messages"],
          expected="the load generator kept sending")
    check_eq("the load generator ran without an error", load.errors, [])
    check_eq("no transaction refused (4xx or 5xx)", dict(load.replies), {})
    check_eq("no reply lost at the client", a["uncertain"], 0)
    check_eq("every message accepted at the first attempt", a["attempts"], a["messages"])
    check_eq("lost", a["lost"], [])
    check_eq("duplicates", a["duplicates"], [])
    check_eq("delivered exactly the messages accepted", a["delivered"], a["accepted"])
    ids = authserv_ids(st().sink.spool)
    seen = {}
    bad = []
    for tok, lst in ids.items():
        if len(lst) != 1 or lst[0] not in IDS:
            bad.append((tok, lst))
        for i in lst:
            seen[i] = seen.get(i, 0) + 1
    diag("authserv-ids at the sink: %s" % seen)
    check_eq("one Authentication-Results per message, with one of the two ids", bad[:5], [])
    check("both authserv-ids seen: the reloads took effect under load",
          all(seen.get(i) for i in IDS), expected="both of %s" % (IDS,), got=seen)


suite.run()
