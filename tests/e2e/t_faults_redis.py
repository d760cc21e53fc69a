#!/usr/bin/python3
"""End to end, real Postfix -> authgate -> smtp-sink with the rate counters
in a real redis-server, which fails without going away:

  - errors: out of memory (maxmemory 1, noeviction: the script's write
    is refused), with On-RateBackendError local: mail is counted here
    meanwhile;
  - errors: a read-only replica (REPLICAOF a master that is not there),
    with On-RateBackendError tempfail: 451 4.3.0 at MAIL FROM;
  - slow: DEBUG SLEEP longer than RateBackendTimeout, with
    On-RateBackendError accept: let through, each message cut off at
    the timeout (a take already sent is still run when Redis wakes);
  - the script lost (SCRIPT FLUSH): loaded again, no outage at all.

Each outage: every message answered fast (RateBackendTimeout bounds the
slow one), one "unavailable" line when it starts and one "is back" line
when it ends, counting in Redis again afterwards, the daemon up.  Redis
stopped and hung (SIGSTOP) are tests/e2e/t_rate_cluster.py's."""

import os
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
from agtest import check, check_eq, diag, run, wait_until  # noqa: E402
from agpostfix import send_raw  # noqa: E402

suite = agtest.Suite("e2e: Redis errors and slowness under the rate limits", case_timeout=60,
                     total_timeout=200)
S = {}

REDIS_SERVER = shutil.which("redis-server", path="/usr/bin:/usr/sbin:/bin") or \
    "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli", path="/usr/bin:/usr/sbin:/bin") or "/usr/bin/redis-cli"
TIMEOUT_MS = 250            # RateBackendTimeout
FAST = 1.0                  # a message during an outage takes less than this
SENDER = "x@rl.example"
HOW = {"local": "counting locally", "tempfail": "answering 451 4.3.0",
       "accept": "not counting"}


class Redis:
    """A private redis-server on a loopback port, no persistence, DEBUG
    allowed (local connections only)."""

    def __init__(self, workdir):
        self.dir = workdir
        self.port = agtest.free_port()
        self.log = os.path.join(workdir, "redis.log")

    def start(self, timeout=10):
        self.proc = agtest.Proc([REDIS_SERVER, "--port", self.port, "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", self.dir,
                                 "--daemonize", "no", "--enable-debug-command", "local"],
                                name="redis-server", stdout=self.log, stderr=self.log).start()
        if not wait_until(lambda: self.cli("PING").stdout.strip() == "PONG", timeout, 0.05):
            raise RuntimeError("redis-server not answering on %d:\n%s" %
                               (self.port, agtest.tail(self.log)))
        return self

    def cli(self, *args):
        return run([REDIS_CLI, "-h", "127.0.0.1", "-p", self.port] + list(args), timeout=10)

    def must(self, *args):
        r = self.cli(*args)
        check("redis-cli %s" % " ".join(args), r.returncode == 0 and "ERR" not in r.stdout,
              agtest.fmt_run(r), fatal=True)
        return r.stdout.strip()

    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port


@suite.setup
def setup():
    agpostfix.require()
    agtest.require(REDIS_SERVER)
    agtest.require(REDIS_CLI)
    agtest.require_authgate()
    rd = S["redis"] = Redis(agtest.tmpdir("redis")).start()
    st = S["st"] = agpostfix.Stack(conf={"RateBackend": rd.url(),
                                         "RateBackendTimeout": str(TIMEOUT_MS),
                                         "On-RateBackendError": "local"})
    r = st.ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    rid = st.ag.add_rule("--match", "sender-domain=rl.example",
                         "--rate", "messages:1000/7d:sender-domain")
    S["key"] = "authgate:%s.1:sender-domain=rl.example" % rid
    st.start()
    S["pid"] = st.ag.proc.pid
    check("the daemon counts in %s" % rd.url(),
          st.ag.wait_log(r"rate counters in %s" % re.escape(rd.url()), 5),
          got=st.ag.log_lines()[-10:], fatal=True)
    res = send()
    check("a first message is accepted and counted in Redis",
          accepted(res) and redis_count() == 1, got=(res, redis_count()), fatal=True)


# ---------------------------------------------------------------------------
# helpers


def send():
    """One message through Postfix: (stage, 'CODE TEXT', seconds)."""
    st = S["st"]
    tok = st.token("rl")
    h, b = agtest.make_message(tok, sender=SENDER, msgid="<%s@test.invalid>" % tok)
    s = st.pf.smtp()
    t0 = time.monotonic()
    try:
        stage, rep, _ = send_raw(s, SENDER, ["bob@example.net"], agtest.message_bytes(h, b))
    finally:
        dt = time.monotonic() - t0
        try:
            s.quit()
        except Exception:
            pass
    return stage, rep, dt


def accepted(res):
    return res[0] == "eod" and res[1].startswith("250")


def redis_count():
    """Messages counted in Redis so far: the key's TAT is ahead of now by
    one emission interval per message (7 d / 1000 = 604.8 s: what drains
    during the test is far less than one)."""
    rd = S["redis"]
    v = rd.cli("GET", S["key"]).stdout.strip()
    t = rd.cli("TIME").stdout.split()
    if not v or len(t) < 2:
        return 0
    now_us = int(t[0]) * 1000000 + int(t[1])
    tat = int(v.split(":")[0])
    return round(max(0, tat - now_us) / 604.8e6)


def unavailable(how):
    rx = re.compile(r"^rate backend %s unavailable: .+; %s until it is back$" %
                    (re.escape(S["redis"].url()), re.escape(how)))
    return [ln for ln in S["st"].ag.log_lines() if rx.search(ln)]


def back():
    rx = re.compile(r"^rate backend %s is back after \d+ s$" % re.escape(S["redis"].url()))
    return [ln for ln in S["st"].ag.log_lines() if rx.search(ln)]


def fallback(action):
    """Reload with On-RateBackendError ACTION."""
    ag = S["st"].ag
    ag.settings["On-RateBackendError"] = action
    ag.write_config()
    mark = ag.log_mark()
    ag.reload()
    check("reloaded with On-RateBackendError %s" % action,
          ag.wait_log(r"configuration reloaded", 10, since=mark) is not None,
          got=ag.log_lines()[mark:], fatal=True)


def outage(what, action, expect, n=3, min_secs=0.0):
    """N messages while Redis fails: each gets EXPECT ('accept' or a
    reply prefix) in under FAST seconds (and not before MIN_SECS for the
    first, when the fault is a timeout); one 'unavailable' line."""
    u0 = len(unavailable(HOW[action]))
    times = []
    for i in range(n):
        res = send()
        times.append(res[2])
        if expect == "accept":
            check("%s: message %d accepted (On-RateBackendError %s)" % (what, i + 1, action),
                  accepted(res), got=res)
        else:
            check("%s: message %d gets %s at MAIL FROM" % (what, i + 1, expect),
                  res[0] == "mail" and res[1].startswith(expect), got=res)
    diag("%s: messages took %s s" % (what, ", ".join("%.2f" % t for t in times)))
    check("%s: every message answered in under %.1fs" % (what, FAST), max(times) < FAST,
          got=times)
    if min_secs:
        check("%s: the first waited for RateBackendTimeout (%.2fs or more)" % (what, min_secs),
              times[0] >= min_secs, got=times)
    lines = unavailable(HOW[action])
    check_eq("%s: one 'unavailable ...; %s' line for the outage" % (what, HOW[action]),
             len(lines) - u0, 1, detail="\n".join(lines))
    if lines:
        diag("%s: %s" % (what, lines[-1]))
    alive(what)


def recovered(what, before):
    """Redis works again: 'is back' once, and the next messages are
    counted in Redis (not only here)."""
    b0 = len(back())
    counted = redis_count()
    t0 = time.monotonic()

    def again():
        res = send()
        return accepted(res) and len(back()) > b0 and redis_count() > counted
    ok = wait_until(again, 8, 0.3)
    diag("%s: counting in Redis again after %.1fs" % (what, time.monotonic() - t0))
    check("%s: 'is back' logged and messages counted in Redis again" % what, bool(ok),
          got="back lines %d -> %d, counted %d -> %d" % (b0, len(back()), counted,
                                                         redis_count()))
    check_eq("%s: one 'is back' line" % what, len(back()) - b0, 1)
    alive(what)


def alive(what):
    ag = S["st"].ag
    check("%s: the daemon still runs (pid %d)" % (what, S["pid"]),
          ag.alive() and ag.proc.pid == S["pid"], got="exit %s" % ag.proc.returncode())


# ---------------------------------------------------------------------------
# cases


@suite.case
def out_of_memory_counts_locally():
    rd = S["redis"]
    rd.must("CONFIG", "SET", "maxmemory-policy", "noeviction")
    rd.must("CONFIG", "SET", "maxmemory", "1")
    try:
        outage("out of memory", "local", "accept")
        lines = unavailable(HOW["local"])
        check("out of memory: the line quotes Redis's error", lines and "OOM" in lines[-1],
              got=lines[-1:])
    finally:
        rd.must("CONFIG", "SET", "maxmemory", "0")
    recovered("out of memory", None)


@suite.case
def read_only_replica_tempfails():
    rd = S["redis"]
    fallback("tempfail")
    dead = agtest.free_port()
    rd.must("REPLICAOF", "127.0.0.1", str(dead))
    try:
        r = rd.cli("SET", "probe", "1")
        check("the replica refuses writes (READONLY)", "READONLY" in r.stdout + r.stderr,
              agtest.fmt_run(r), fatal=True)
        outage("read-only replica", "tempfail", "451 4.3.0")
    finally:
        rd.must("REPLICAOF", "NO", "ONE")
    recovered("read-only replica", None)


@suite.case
def slow_redis_accepts_uncounted():
    rd = S["redis"]
    fallback("accept")
    counted = redis_count()
    sleeper = agtest.Proc([REDIS_CLI, "-h", "127.0.0.1", "-p", rd.port, "DEBUG", "SLEEP", "1.5"],
                          name="redis-cli-sleep").start()
    time.sleep(0.1)
    try:
        outage("slow (DEBUG SLEEP 1.5)", "accept", "accept", n=2,
               min_secs=(TIMEOUT_MS - 50) / 1000.0)
    finally:
        sleeper.wait(5)
    # A take sent before the timeout is still run by Redis when it wakes:
    # such a message may be counted after all, never twice.
    diag("slow: counted in Redis %d -> %d" % (counted, redis_count()))
    check("slow: the 2 messages are counted at most once each", redis_count() <= counted + 2,
          got=(counted, redis_count()))
    recovered("slow", None)


@suite.case
def lost_script_is_loaded_again():
    rd = S["redis"]
    fallback("tempfail")
    u0 = sum(len(unavailable(h)) for h in HOW.values())
    counted = redis_count()
    rd.must("SCRIPT", "FLUSH")
    res = send()
    check("after SCRIPT FLUSH: accepted", accepted(res), got=res)
    check("and counted in Redis (the script was loaded again)", redis_count() == counted + 1,
          got=(counted, redis_count()))
    check("no outage logged", sum(len(unavailable(h)) for h in HOW.values()) == u0)
    alive("script flushed")
    S["st"].ag.terminate()


suite.run()
