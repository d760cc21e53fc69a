#!/usr/bin/python3
"""End to end: authgate killed with SIGKILL every 5 s, and started again,
while a load generator sends mail through Postfix
(milter_default_action = tempfail).  No message may be lost or delivered
twice: each is accepted once (250) and arrives at the sink once, or is
refused with a 4xx while authgate is down, kept by the client and
accepted after the restart.

Length: AG_KILL_SECONDS of load (default 40 s, 20 s under the sanitizers:
the ASan copy of the suite runs it again); `make soak` runs it for
120 s and more (README: the figures of such a run).  What "exactly once"
means here: Postfix delivers at least once, so a message can legitimately
arrive twice only when a 250 is lost on the way (the client, or Postfix
talking to the sink, never sees it and sends again).  Neither Postfix nor
the sink is disturbed in this test and the client reads every reply, so
any duplicate is a defect, and the test says which message it was.
"""

import os
import json
import signal
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
import agload  # noqa: E402
from agtest import check, check_eq, diag  # noqa: E402

SANITIZED = bool(os.environ.get("AG_SANITIZED"))
SECONDS = int(os.environ.get("AG_KILL_SECONDS") or (20 if SANITIZED else 40))
PERIOD = float(os.environ.get("AG_KILL_PERIOD") or 5)
THREADS = int(os.environ.get("AG_KILL_THREADS") or 4)

suite = agtest.Suite("e2e: authgate killed under load", case_timeout=SECONDS + 240,
                     total_timeout=SECONDS + 400)
S = {}


@suite.setup
def setup():
    agpostfix.require()
    agtest.require_authgate()
    # Postfix's client 127.0.0.1 out of TrustedNetworks: every message is
    # verified (DKIM) and gets headers.  Rate counters saved every second:
    # the kills land in the middle of database writes too.
    # (tempfail is agpostfix's default: spelt out, it is the subject here)
    st = S["st"] = agpostfix.Stack(conf={"TrustedNetworks": "192.0.2.0/24",
                                         "RateCheckpointInterval": "1"},
                                   pf_extra={"milter_default_action": "tempfail"})
    r = st.ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    # Rules every message passes through (limits it stays under): the
    # daemon decides something for each message, not only accepts.
    st.ag.add_rule("--match", "sender-domain=load.example", "--max-size", "1M",
                   "--rate", "messages:1000000/365d:client-ip")
    st.start()


def st():
    return S["st"]


class Killer:
    """SIGKILL authgate every PERIOD seconds and start it again at once."""

    def __init__(self, ag, period):
        self.ag = ag
        self.period = period
        self.kills = 0
        self.downtime = []          # seconds from the kill to ready again
        self.errors = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.thread.join(60)

    def _run(self):
        while not self.stopping.wait(self.period):
            try:
                t0 = time.monotonic()
                rc = self.ag.proc.stop(signal.SIGKILL, 5)
                if rc != -signal.SIGKILL:
                    self.errors.append("authgate exit status %r, not killed by SIGKILL" % rc)
                self.kills += 1
                self.ag.start(timeout=30)
                self.downtime.append(time.monotonic() - t0)
            except Exception as e:          # reported by the case
                self.errors.append(repr(e))
                return


@suite.case
def no_message_lost_or_duplicated():
    load = agload.Load(st(), threads=THREADS).start()
    killer = Killer(st().ag, PERIOD).start()
    t0 = time.monotonic()
    time.sleep(SECONDS)
    killer.stop()
    load.stop()
    loaded = time.monotonic() - t0
    check("authgate killed and restarted every %gs for %ds" % (PERIOD, SECONDS),
          killer.kills >= int(SECONDS / PERIOD) - 1 and not killer.errors,
          expected=">= %d kills, no error" % (int(SECONDS / PERIOD) - 1),
          got="%d kills, errors %s" % (killer.kills, killer.errors))
    check("authgate running after the last restart", st().ag.alive(), fatal=True)
    drained = load.drain(timeout=120)
    s = load.summary()
    check("every deferred message accepted on a later attempt", drained,
          got=s)
    check("the queue empties (postqueue -f)", agload.flush_queue(st().pf, 60),
          got="%d files left" % agload.queue_files(st().pf))
    counts = agload.wait_sink_stable(st().sink, s["accepted"], 60)
    a = agload.account(load, counts)
    diag("kill test: %.0fs of load, %d kills (SIGKILL every %gs), restart %.2f-%.2fs, "
         "%d client threads" % (loaded, killer.kills, PERIOD,
                                min(killer.downtime or [0]), max(killer.downtime or [0]),
                                THREADS))
    diag("kill test figures: " + agload.figures(a))
    diag("refusals seen by the client: %s" % dict(load.replies))
    check("messages sent", a["messages"] > 10 * SECONDS / 5, got=a["messages"],
          expected="the load generator kept sending")
    check("some messages were refused with 4xx while authgate was down",
          a["deferred_msgs"] > 0, got=a["deferred_msgs"],
          expected="> 0 (else the kills missed the traffic and proved nothing)")
    check_eq("the load generator ran without an error", load.errors, [])
    check_eq("no message rejected with 5xx", a["rejected"], 0)
    check_eq("no reply lost at the client (outcome never uncertain)", a["uncertain"], 0)
    check_eq("every message accepted in the end", a["accepted"], a["messages"])
    check_eq("lost: accepted by Postfix and never delivered", a["lost"], [])
    check_eq("duplicates: delivered more than once", a["duplicates"], [])
    check_eq("stray: delivered though refused and never accepted", a["stray"], [])
    check_eq("delivered exactly the messages accepted", a["delivered"], a["accepted"])
    # The rate counter outlives the kills (saved every second, loaded at
    # each start): it holds most of the messages, not only those since the
    # last start.  (1,000,000 a year: it drains by 0.03 a second.)
    r = st().ag.ctl("counters", "list", "--json")
    try:
        used = sum(c.get("used") or 0 for c in json.loads(r.stdout)
                   if "127.0.0.1" in c.get("key", ""))
    except ValueError:
        used = None
    diag("rate counter after the run: %s used, %d messages accepted" % (used, a["accepted"]))
    check("rate counter kept across the kills: at least half the messages",
          used is not None and a["accepted"] / 2 <= used <= a["attempts"],
          expected="%d..%d" % (a["accepted"] / 2, a["attempts"]), got=used,
          detail=agtest.fmt_run(r))
    db = sqlite3.connect(st().ag.db, timeout=10)
    try:
        ic = db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()
    check_eq("database integrity_check after %d SIGKILLs" % killer.kills, ic, [("ok",)])


suite.run()
