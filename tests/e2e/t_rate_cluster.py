#!/usr/bin/python3
"""End to end: two authgate instances (one database, so the same rules)
count in one real redis-server, each behind its own Postfix relaying to
one smtp-sink.

  - one global limit shared by both instances: exactly LIMIT accepted in
    total, the Redis key with its TTL, counters list (backend redis) on
    either instance;
  - authgatectl counters reset on A deletes the Redis key; B accepts again;
  - Redis stopped mid-run: instance A (On-RateBackendError local) goes on
    deciding with local counters, B (tempfail) answers 451 4.3.0; each
    message fails fast; one "unavailable" line per outage; Redis back on
    the same port: "is back", counting in Redis again;
  - Redis hung (SIGSTOP): RateBackendTimeout bounds each message;
  - nothing accepted is lost and neither daemon ever exits.

Every window is an hour: nothing waits for a rate window.  The waits are
for Redis's reconnect delay (about a second) and for delivery."""

import json
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

suite = agtest.Suite("e2e: rate limits shared through Redis by two instances",
                     case_timeout=60, total_timeout=170)
S = {"accepted": [], "refused": []}

REDIS_SERVER = shutil.which("redis-server", path="/usr/bin:/usr/sbin:/bin") or \
    "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli", path="/usr/bin:/usr/sbin:/bin") or "/usr/bin/redis-cli"
FAST = 1.0      # seconds: a message while Redis is away takes less than this


class Redis:
    """A private redis-server on a loopback port, no persistence; it can
    be stopped and started again on the same port."""

    def __init__(self, workdir):
        self.dir = workdir
        self.port = agtest.free_port()
        self.log = os.path.join(workdir, "redis.log")
        self.proc = None

    def start(self, timeout=10):
        self.proc = agtest.Proc([REDIS_SERVER, "--port", self.port, "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", self.dir,
                                 "--daemonize", "no"],
                                name="redis-server", stdout=self.log, stderr=self.log).start()
        agtest.at_cleanup(self._cont)      # never leave it stopped (SIGSTOP) at the end
        if not wait_until(lambda: self.cli("PING").stdout.strip() == "PONG", timeout, 0.05):
            raise RuntimeError("redis-server not answering on %d:\n%s" %
                               (self.port, agtest.tail(self.log)))
        return self

    def _cont(self):
        if self.proc and self.proc.alive():
            self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        """SIGTERM by PID; returns the exit status."""
        self._cont()
        return self.proc.stop(signal.SIGTERM, 10)

    def cli(self, *args):
        return run([REDIS_CLI, "-h", "127.0.0.1", "-p", self.port] + list(args), timeout=10)

    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port


@suite.setup
def setup():
    agpostfix.require()
    agtest.require(REDIS_SERVER)
    agtest.require(REDIS_CLI)
    agtest.require_authgate()
    rd = S["redis"] = Redis(agtest.tmpdir("redis")).start()
    db = os.path.join(agtest.tmpdir("db"), "authgate.db")
    common = {"RateBackend": rd.url(), "RateBackendTimeout": "250"}
    a = S["a"] = agtest.Authgate(agtest.tmpdir("aga"), name="authgate-a", db=db,
                                 conf=dict(common, **{"On-RateBackendError": "local"}))
    b = S["b"] = agtest.Authgate(agtest.tmpdir("agb"), name="authgate-b", db=db,
                                 conf=dict(common, **{"On-RateBackendError": "tempfail"}))
    r = a.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    R = S["rules"] = {}
    R["global"] = a.add_rule("--match", "sender-domain=cluster.example",
                             "--rate", "messages:10/1h:sender-domain")
    R["out"] = a.add_rule("--match", "sender-domain=out.example",
                          "--rate", "messages:5/1h:sender-domain")
    R["probe"] = a.add_rule("--match", "sender-domain=probe.example",
                            "--rate", "messages:100000/1h:sender-domain")
    sink = S["sink"] = agpostfix.Sink(agtest.tmpdir("sink")).start()
    a.start()
    b.start()
    S["pids"] = {"a": a.proc.pid, "b": b.proc.pid}
    S["pf"] = {}
    for name, ag in (("a", a), ("b", b)):
        S["pf"][name] = agpostfix.Postfix(agtest.tmpdir("pf" + name), sink.port,
                                          milter="inet:127.0.0.1:%d" % ag.port).start()
    for name, ag in (("a", a), ("b", b)):
        check("instance %s says it counts in %s" % (name, rd.url()),
              ag.wait_log(r"rate counters in %s" % re.escape(rd.url()), 5),
              got=ag.log_lines()[-10:])


# ---------------------------------------------------------------------------
# helpers

_seq = [0]


def token(label):
    _seq[0] += 1
    return "agtok-%s-%d-%d" % (label, os.getpid(), _seq[0])


def send(inst, sender, smtp=None, label="m"):
    """One message from SENDER through instance INST's Postfix.  Returns
    (token, stage, 'CODE TEXT', seconds the MAIL..end of data took).
    Accepted tokens are remembered for the end of the script."""
    tok = token(label)
    h, b = agtest.make_message(tok, sender=sender, msgid="<%s@test.invalid>" % tok)
    own = smtp is None
    s = smtp or S["pf"][inst].smtp()
    t0 = time.monotonic()
    try:
        stage, rep, rr = send_raw(s, sender, ["bob@example.net"], agtest.message_bytes(h, b))
    finally:
        dt = time.monotonic() - t0
        if own:
            try:
                s.quit()
            except Exception:
                pass
    if stage == "eod" and rep.startswith("250"):
        S["accepted"].append(tok)
    else:
        S["refused"].append(tok)
    return tok, stage, rep, dt


def accepted(stage, rep):
    return stage == "eod" and rep.startswith("250")


def counters_json(ag, *args):
    r = ag.ctl("counters", "list", "--json", *args)
    try:
        data = json.loads(r.stdout)
    except ValueError:
        data = None
    ok = r.returncode == 0 and isinstance(data, list)
    check("%s: counters list --json %s: exit 0, a JSON list" % (ag.name, " ".join(args)),
          ok, agtest.fmt_run(r))
    return data if ok else None


def unavailable_lines(ag, how):
    rx = re.compile(r"rate backend %s unavailable: .+; %s until it is back$" %
                    (re.escape(S["redis"].url()), re.escape(how)))
    return [ln for ln in ag.log_lines() if rx.search(ln)]


def back_lines(ag):
    rx = re.compile(r"rate backend %s is back after \d+ s$" % re.escape(S["redis"].url()))
    return [ln for ln in ag.log_lines() if rx.search(ln)]


def check_alive(what):
    for name in ("a", "b"):
        ag = S[name]
        check("%s: %s still running, same pid" % (what, ag.name),
              ag.alive() and ag.proc.pid == S["pids"][name],
              got="alive=%s pid=%s exit=%s" % (ag.alive(), ag.proc.pid, ag.proc.returncode()))


def wait_back(inst, since_back, timeout=8.0):
    """Send a probe message through INST every 0.2 s until its log has a
    new "is back" line; returns the seconds it took, or None."""
    ag = S[inst]
    t0 = time.monotonic()
    s = S["pf"][inst].smtp()
    try:
        def got():
            send(inst, "p@probe.example", smtp=s, label="probe")
            return len(back_lines(ag)) > since_back
        ok = wait_until(got, timeout, 0.2)
    finally:
        try:
            s.quit()
        except Exception:
            pass
    return (time.monotonic() - t0) if ok else None


# ---------------------------------------------------------------------------
# cases


@suite.case
def one_global_limit_across_two_instances():
    rid = S["rules"]["global"]
    key = "%s.1:sender-domain=cluster.example" % rid
    marks = {n: S[n].log_mark() for n in ("a", "b")}
    results = []
    for i in range(14):
        inst = "ab"[i % 2]
        tok, stage, rep, dt = send(inst, "user%d@cluster.example" % i, label="global")
        results.append((inst, stage, rep))
    n_ok = sum(1 for _, st, rp in results if accepted(st, rp))
    check_eq("exactly 10 of 14 accepted in total", n_ok, 10, detail=results)
    check("the first 10 (5 through each instance) accepted",
          all(accepted(st, rp) for _, st, rp in results[:10]), got=results[:10])
    late = results[10:]
    check("the last 4 (2 through each) refused at MAIL FROM: 451 4.7.1 Rate limit reached",
          all(st == "mail" and rp.startswith("451 4.7.1 Rate limit reached: 10 messages per "
                                              "1h for sender-domain cluster.example")
              for _, st, rp in late), got=late)
    for n in ("a", "b"):
        ds = [d for d in S[n].decisions(marks[n]) if d.get("rule") == rid]
        check("%s logged 2 refusals with rate_limit=%s" % (S[n].name, key),
              len(ds) == 2 and all(d.get("action") == "tempfail" and d.get("code") == "4.7.1"
                                   and d.get("rate_limit") == key for d in ds),
              got=[d["line"] for d in ds])
    rd = S["redis"]
    rkey = "authgate:" + key
    r = rd.cli("EXISTS", rkey)
    check("Redis has the key %s" % rkey, r.stdout.strip() == "1",
          agtest.fmt_run(r) + "\nkeys: " + rd.cli("KEYS", "authgate:*").stdout)
    r = rd.cli("TTL", rkey)
    ttl = int(r.stdout.strip()) if re.match(r"^-?\d+$", r.stdout.strip()) else None
    check("it has a TTL of about an hour (3500..3601 s)", ttl is not None and
          3500 <= ttl <= 3601, got=agtest.fmt_run(r))
    check_alive("after the global limit")


@suite.case
def counters_list_on_either_instance_shows_redis():
    rid = S["rules"]["global"]
    key = "%s.1:sender-domain=cluster.example" % rid
    for n in ("a", "b"):
        data = counters_json(S[n], "--key", key)
        if data is None:
            continue
        mine = [e for e in data if e.get("key") == key]
        check("%s: one counter %s, backend redis" % (S[n].name, key),
              len(mine) == 1 and mine[0].get("backend") == "redis", got=data)
        if mine:
            e = mine[0]
            check_eq("%s: used" % S[n].name, e.get("used"), 10, detail=e)
            check_eq("%s: remaining" % S[n].name, e.get("remaining"), 0, detail=e)
            check_eq("%s: rule" % S[n].name, e.get("rule"), int(rid), detail=e)
            check_eq("%s: rate" % S[n].name, e.get("rate"), "messages:10/1h:sender-domain",
                     detail=e)
            rs = e.get("reset_seconds")
            check("%s: reset_seconds 3500..3600" % S[n].name,
                  isinstance(rs, int) and 3500 <= rs <= 3600, got=e)
    r = S["b"].ctl("counters", "list")
    check("counters list (text) on %s: the key with backend redis" % S["b"].name,
          r.returncode == 0 and re.search(r"^%s\s+redis\s" % re.escape(key), r.stdout, re.M),
          agtest.fmt_run(r))


@suite.case
def counters_reset_on_one_instance_frees_both():
    """authgatectl counters reset through A deletes the key in Redis, so
    the next message through B is accepted."""
    rd, a = S["redis"], S["a"]
    rid = S["rules"]["global"]
    key = "%s.1:sender-domain=cluster.example" % rid
    rkey = "authgate:" + key
    tok, stage, rep, dt = send("b", "before-reset@cluster.example", label="pre-reset")
    check("before the reset: B refuses (the shared limit is spent): 451 4.7.1",
          stage == "mail" and rep.startswith("451 4.7.1"), got=rep)
    check("before the reset: Redis has %s" % rkey, rd.cli("EXISTS", rkey).stdout.strip() == "1",
          rd.cli("KEYS", "authgate:*").stdout)
    mark = a.log_mark()
    r = a.ctl("counters", "reset", "sender-domain=cluster.example")
    check("counters reset sender-domain=cluster.example on A: exit 0", r.returncode == 0,
          agtest.fmt_run(r))
    check_eq("it prints '1 counters reset'", (r.stdout or "").strip(), "1 counters reset",
             detail=agtest.fmt_run(r))
    check("A logs the reset", a.wait_log(r"rate: 1 counters matching "
                                         r"'sender-domain=cluster\.example' reset", 5,
                                         since=mark), got=a.log_lines()[mark:])
    r = rd.cli("EXISTS", rkey)
    check_eq("redis-cli EXISTS %s: 0 after the reset" % rkey, r.stdout.strip(), "0",
             detail=agtest.fmt_run(r) + "\nkeys: " + rd.cli("KEYS", "authgate:*").stdout)
    tok, stage, rep, dt = send("b", "after-reset@cluster.example", label="post-reset")
    check("the next message through B is accepted", accepted(stage, rep), got=rep)
    data = counters_json(S["b"], "--key", key)
    if data is not None:
        check("B: the counter is back in Redis with used 1",
              [(e.get("backend"), e.get("used")) for e in data if e.get("key") == key] ==
              [("redis", 1)], got=data)
    check_alive("after the reset")


@suite.case
def redis_stopped_then_back():
    rd, a, b = S["redis"], S["a"], S["b"]
    rid = S["rules"]["out"]
    key = "%s.1:sender-domain=out.example" % rid
    for i in (1, 2):
        tok, stage, rep, dt = send("a", "x@out.example", label="before")
        check("before the outage: message %d accepted" % i, accepted(stage, rep), got=rep)
    check("before the outage: the counter is in Redis",
          rd.cli("EXISTS", "authgate:" + key).stdout.strip() == "1")
    ua, ub = len(unavailable_lines(a, "counting locally")), \
        len(unavailable_lines(b, "answering 451 4.3.0"))
    ba, bb = len(back_lines(a)), len(back_lines(b))

    rc = rd.stop()
    check("redis-server stopped by SIGTERM (pid)", rc is not None, got=rc)

    # A: On-RateBackendError local.  The local engine starts from nothing
    # for the key: 5 more are accepted, the 6th is refused (decided).
    sa = S["pf"]["a"].smtp()
    times, res = [], []
    for i in range(7):
        tok, stage, rep, dt = send("a", "x@out.example", smtp=sa, label="outage-a")
        times.append(dt)
        res.append((stage, rep))
    sa.quit()
    check("A (local): 5 accepted during the outage, counted locally",
          all(accepted(*x) for x in res[:5]), got=res)
    check("A (local): then refused by the local count: 451 4.7.1",
          all(st == "mail" and rp.startswith("451 4.7.1") for st, rp in res[5:]), got=res)
    diag("A during the outage: slowest message %.3fs" % max(times))
    check("A: every message during the outage took under %.1fs" % FAST,
          max(times) < FAST, got=["%.3f" % t for t in times])
    tok, stage, rep, dt = send("a", "x@norate.example", label="outage-a-free")
    check("A: mail without a rate rule is accepted", accepted(stage, rep), got=rep)

    # B: On-RateBackendError tempfail.
    sb = S["pf"]["b"].smtp()
    times, res = [], []
    for i in range(4):
        tok, stage, rep, dt = send("b", "x@out.example", smtp=sb, label="outage-b")
        times.append(dt)
        res.append((stage, rep))
    sb.quit()
    check("B (tempfail): 451 4.3.0 Rate limit service unavailable at MAIL FROM",
          all(st == "mail" and rp.startswith("451 4.3.0 Rate limit service unavailable")
              for st, rp in res), got=res)
    diag("B during the outage: slowest message %.3fs" % max(times))
    check("B: every message during the outage took under %.1fs" % FAST,
          max(times) < FAST, got=["%.3f" % t for t in times])
    tok, stage, rep, dt = send("b", "x@norate.example", label="outage-b-free")
    check("B: mail without a rate rule is accepted", accepted(stage, rep), got=rep)

    t0 = time.monotonic()
    r = a.ctl("counters", "list", "--json", timeout=15)
    diag("counters list on A during the outage: exit %s in %.2fs; stderr: %s" %
         (r.returncode, time.monotonic() - t0, (r.stderr or "").strip()))
    check("counters list during the outage answers (does not hang)",
          r.returncode is not None and time.monotonic() - t0 < 5, agtest.fmt_run(r))

    la = unavailable_lines(a, "counting locally")
    lb = unavailable_lines(b, "answering 451 4.3.0")
    check_eq("A logged exactly one 'unavailable ... counting locally' line", len(la) - ua, 1,
             detail="\n".join(la))
    check_eq("B logged exactly one 'unavailable ... answering 451 4.3.0' line", len(lb) - ub,
             1, detail="\n".join(lb))
    check_alive("during the outage")

    # Back on the same port (empty: no persistence).
    rd.start()
    for inst, before in (("a", ba), ("b", bb)):
        took = wait_back(inst, before)
        check("%s: 'is back' in the log within 8 s of the restart" % S[inst].name,
              took is not None, got=S[inst].log_lines()[-8:])
        if took is not None:
            diag("%s: back after %.1fs" % (S[inst].name, took))
        check_eq("%s: exactly one 'is back' line" % S[inst].name,
                 len(back_lines(S[inst])) - before, 1)
    tok, stage, rep, dt = send("a", "x@out.example", label="after-a")
    check("A after the outage: accepted (Redis has a fresh count)", accepted(stage, rep),
          got=rep)
    tok, stage, rep, dt = send("b", "x@out.example", label="after-b")
    check("B after the outage: accepted, no more 4.3.0", accepted(stage, rep), got=rep)
    check("counting is in Redis again: the key is there",
          rd.cli("EXISTS", "authgate:" + key).stdout.strip() == "1",
          rd.cli("KEYS", "authgate:*").stdout)
    data = counters_json(b, "--key", key)
    if data is not None:
        red = [e for e in data if e.get("backend") == "redis"]
        check("counters list: the key in Redis with used 2", len(red) == 1 and
              red[0].get("used") == 2, got=data)
    check_alive("after the outage")


@suite.case
def hung_redis_is_cut_off_by_the_timeout():
    rd, a = S["redis"], S["a"]
    ua = len(unavailable_lines(a, "counting locally"))
    ba = len(back_lines(a))
    rd.proc.send_signal(signal.SIGSTOP)
    try:
        s = S["pf"]["a"].smtp()
        times = []
        for i in range(4):
            tok, stage, rep, dt = send("a", "p@probe.example", smtp=s, label="hung")
            times.append(dt)
            check("message %d while Redis hangs: accepted (counted locally)" % (i + 1),
                  accepted(stage, rep), got=rep)
        s.quit()
        diag("while Redis hangs: %s s" % ", ".join("%.3f" % t for t in times))
        check("each message under %.1fs (RateBackendTimeout 250 ms)" % FAST,
              max(times) < FAST, got=times)
        check_eq("one 'unavailable' line for this outage",
                 len(unavailable_lines(a, "counting locally")) - ua, 1)
    finally:
        rd.proc.send_signal(signal.SIGCONT)
    took = wait_back("a", ba)
    check("after SIGCONT: 'is back' within 8 s", took is not None, got=a.log_lines()[-8:])
    check_alive("after the hang")


@suite.case
def nothing_accepted_is_lost():
    sink = S["sink"]
    missing = [t for t in S["accepted"] if sink.wait_for(t, 20) is None]
    check("every one of %d accepted messages reached the sink" % len(S["accepted"]),
          not missing, got="missing: %s" % missing)
    extra = [t for t in S["refused"] if sink.find(t)]
    check("no refused message reached the sink", not extra, got=extra)
    check_alive("at the end")


suite.run()
