#!/usr/bin/python3
"""Rate limits over the milter protocol, local engine: the limit and its
451 4.7.1, quota given back by aborted and rejected messages, counters
kept across a graceful restart, a crash (checkpoint) and a SIGHUP,
authgatectl counters list/reset (and without a daemon), tag-only and
dry-run limits, bad --rate values, and a full table (RateMaxKeys):
admitted, counted in the metric, logged once.

No case waits for a rate window: every window is an hour or more, so a
counter only moves when a message is taken or given back.  The one wait
is for the checkpoint (RateCheckpointInterval 1) before a SIGKILL."""

import json
import os
import re
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq, check_decision, check_match, new_qid, open_session  # noqa: E402

suite = agtest.Suite("milter: rate limits (local engine)")
S = {}


@suite.setup
def setup():
    agtest.require_authgate()
    # RateCheckpointInterval large: nothing here depends on a checkpoint
    # taken while running (the restart cases use their own instances).
    ag = agtest.Authgate(agtest.tmpdir("ag"), conf={"RateCheckpointInterval": "3600"})
    S["ag"] = ag
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    R = S["rules"] = {}
    R["ip"] = ag.add_rule("--match", "sender-domain=ip.example",
                          "--rate", "messages:3/1h:client-ip")
    R["abort"] = ag.add_rule("--match", "sender-domain=abort.example",
                             "--rate", "messages:3/1h:client-ip", "--max-size", "10k")
    R["reset"] = ag.add_rule("--match", "sender-domain=reset.example",
                             "--rate", "messages:2/1h:client-ip")
    R["hup"] = ag.add_rule("--match", "sender-domain=hup.example",
                           "--rate", "messages:2/1h:sender-domain")
    R["tag"] = ag.add_rule("--match", "sender-domain=tag.example",
                           "--rate", "messages:1/1h:client-ip", "--on-limit", "tag")
    R["dry"] = ag.add_rule("--match", "sender-domain=dry.example",
                           "--rate", "messages:1/1h:client-ip", "--dry-run")
    R["reject"] = ag.add_rule("--match", "sender-domain=reject.example",
                              "--rate", "messages:1/1h:client-ip", "--on-limit", "reject")
    R["zero"] = ag.add_rule("--match", "sender-domain=zero.example",
                            "--rate", "messages:0/1h")
    R["pfx"] = ag.add_rule("--match", "sender-domain=pfx.example",
                           "--rate", "messages:2/1h:client-ip/24/48")
    R["helo"] = ag.add_rule("--match", "sender-domain=helo.example",
                            "--rate", "messages:1/1h:helo")
    ag.start()


def ag():
    return S["ag"]


def rule(name):
    return S["rules"][name]


# ---------------------------------------------------------------------------
# helpers


def send(d, sender, client, qid=None, helo="client.example"):
    """One whole message over a fresh connection from CLIENT (an IPv6
    address if it has a ':') saying HELO; returns the Transaction
    (t.stage 'mail' and t.final the reply when MAIL FROM is refused)."""
    c = open_session(d, family="6" if ":" in client else "4", address=client, helo=helo)
    h, b = agtest.make_message("rate", sender=sender.strip("<>"))
    t = c.transaction(sender, ["<bob@example.net>"], h, b, queue_id=qid or new_qid())
    c.quit()
    return t


def is_rate_451(r):
    return (not isinstance(r, str)) and r is not None and r.code == "451" and \
        r.xcode == "4.7.1"


def retry_seconds(r):
    m = re.search(r"try again in (\d+) seconds", (r.text or "") if r is not None else "")
    return int(m.group(1)) if m else None


def counters(d, *args, what="counters list --json"):
    """authgatectl counters list --json ARGS: the list, or None (after a
    failing check) when the command fails or prints no JSON list."""
    r = d.ctl("counters", "list", "--json", *args)
    try:
        data = json.loads(r.stdout) if r.returncode == 0 else None
    except ValueError:
        data = None
    if not check("%s %s: exit 0 and a JSON list" % (what, " ".join(args)),
                 isinstance(data, list), agtest.fmt_run(r)):
        return None
    return data


def counter(d, key, what="counters list"):
    """The one counter named KEY (exactly), or None after a failing check."""
    data = counters(d, "--key", key, what=what)
    if data is None:
        return None
    mine = [e for e in data if e.get("key") == key]
    check("%s: one counter %s" % (what, key), len(mine) == 1, got=data)
    return mine[0] if mine else None


def check_used(d, key, used, limit, what):
    e = counter(d, key, what=what)
    if e is None:
        return None
    check_eq("%s: %s used" % (what, key), e.get("used"), used, detail=e)
    check_eq("%s: %s remaining" % (what, key), e.get("remaining"), limit - used, detail=e)
    return e


def ip_key(rid, ip, prefix=32):
    return "%s.1:client-ip=%s/%d" % (rid, ip, prefix)


def mail_then(d, sender, client, end):
    """MAIL and RCPT accepted, then END ('abort': milter abort on the same
    connection and quit; 'close': drop the connection)."""
    c = open_session(d, address=client)
    c.set_queue_id(new_qid())
    r = c.mail(sender)
    check("%s: MAIL goes on" % end, r.passes, got=r)
    r = c.rcpt("<bob@example.net>")
    check("%s: RCPT goes on" % end, r.passes, got=r)
    if end == "abort":
        c.abort()
        # the session goes on: a HELO (a new transaction) still answers
        r = c.helo("client.example")
        check("abort: the connection is still usable", r.passes, got=r)
        c.quit()
    else:
        c.close()


# ---------------------------------------------------------------------------
# cases


@suite.case
def limit_refuses_the_fourth_message_at_mail():
    d, rid, ip = ag(), rule("ip"), "192.0.2.1"
    for i in range(1, 4):
        t = send(d, "<a@ip.example>", ip)
        check("message %d of 3 accepted" % i, t.accepted, got=t)
    mark = d.log_mark()
    t = send(d, "<a@ip.example>", ip)
    r = t.final
    check("message 4 refused at MAIL FROM", t.stage == "mail", got=t)
    check("451 4.7.1", is_rate_451(r), expected="replycode 451 4.7.1", got=r)
    check_match("the text names the limit and the key",
                r"^Rate limit reached: 3 messages per 1h for client-ip 192\.0\.2\.1/32, "
                r"try again in \d+ seconds$", r.text if r else "")
    n = retry_seconds(r)
    # GCRA: after a burst of 3 the next message is due WINDOW/LIMIT = 1200 s
    # after the first; a little of it has passed already.
    check("try again in 1..1200 seconds", n is not None and 1 <= n <= 1200,
          expected="1 <= N <= 1200", got=n)
    check_decision(d, "NOQUEUE", "tempfail", rule=rid, reason="rate", since=mark,
                   extra={"code": "4.7.1", "rate_limit": ip_key(rid, ip)})
    t = send(d, "<a@ip.example>", "192.0.2.2")
    check("another client address has its own quota: accepted", t.accepted, got=t)
    t = send(d, "<a@other.example>", ip)
    check("a sender the rule does not match: accepted", t.accepted, got=t)
    e = check_used(d, ip_key(rid, ip), 3, 3, "after 3 of 3")
    if e:
        check_eq("backend", e.get("backend"), "local")
        check_eq("rule", e.get("rule"), int(rid))
        check_eq("rate", e.get("rate"), "messages:3/1h:client-ip/32/64")
        check_eq("measure", e.get("measure"), "messages")
        check_eq("limit", e.get("limit"), 3)
        check_eq("window_seconds", e.get("window_seconds"), 3600)
        rs = e.get("reset_seconds")
        check("reset_seconds about an hour (3500..3600)",
              isinstance(rs, int) and 3500 <= rs <= 3600, got=rs)
    e = counter(d, ip_key(rid, "192.0.2.2"))
    if e:
        check_eq("the other address used 1", e.get("used"), 1, detail=e)


def prefix_case(d, rid, clients, other, key, what):
    """CLIENTS[0:2] share KEY (limit 2): both accepted, CLIENTS[2] in the
    same network refused with the key in the text and the log; OTHER,
    outside it, accepted; the counter shows used 2."""
    for ip in clients[:2]:
        t = send(d, "<a@pfx.example>", ip)
        check("%s: %s accepted" % (what, ip), t.accepted, got=t)
    mark = d.log_mark()
    t = send(d, "<a@pfx.example>", clients[2])
    r = t.final
    check("%s: %s (same network) gets 451 4.7.1 at MAIL FROM" % (what, clients[2]),
          t.stage == "mail" and is_rate_451(r), expected="replycode 451 4.7.1", got=t)
    check_match("%s: the text names the network" % what,
                r"^Rate limit reached: 2 messages per 1h for client-ip %s, try again in "
                r"\d+ seconds$" % re.escape(key.split("=", 1)[1]), r.text if r else "")
    check_decision(d, "NOQUEUE", "tempfail", rule=rid, reason="rate", since=mark,
                   what="%s: log line" % what, extra={"rate_limit": key})
    t = send(d, "<a@pfx.example>", other)
    check("%s: %s (another network) accepted" % (what, other), t.accepted, got=t)
    check_used(d, key, 2, 2, what)


@suite.case
def client_ip_prefixes_aggregate_v4_and_v6():
    d, rid = ag(), rule("pfx")
    prefix_case(d, rid, ("192.0.2.1", "192.0.2.2", "192.0.2.3"), "192.0.3.1",
                "%s.1:client-ip=192.0.2.0/24" % rid, "IPv4 /24")
    prefix_case(d, rid, ("2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:ffff::9"),
                "2001:db8:2::1", "%s.1:client-ip=2001:db8:1::/48" % rid, "IPv6 /48")
    e = counter(d, "%s.1:client-ip=192.0.3.0/24" % rid)
    check("the other IPv4 network has its own counter, used 1",
          e is not None and e.get("used") == 1, got=e)
    e = counter(d, "%s.1:client-ip=2001:db8:2::/48" % rid)
    check("the other IPv6 network has its own counter, used 1",
          e is not None and e.get("used") == 1, got=e)


@suite.case
def helo_key_counts_per_helo_name():
    d, rid, ip = ag(), rule("helo"), "198.51.100.50"
    key = "%s.1:helo=mx1.helo.example" % rid
    t = send(d, "<a@helo.example>", ip, helo="mx1.helo.example")
    check("HELO mx1: first message accepted", t.accepted, got=t)
    mark = d.log_mark()
    t = send(d, "<b@helo.example>", "198.51.100.51", helo="mx1.helo.example")
    r = t.final
    check("HELO mx1 again (another client and sender): 451 4.7.1 at MAIL FROM",
          t.stage == "mail" and is_rate_451(r), expected="replycode 451 4.7.1", got=t)
    check_match("the text names the HELO",
                r"^Rate limit reached: 1 messages? per 1h for helo mx1\.helo\.example, ",
                r.text if r else "")
    check_decision(d, "NOQUEUE", "tempfail", rule=rid, reason="rate", since=mark,
                   extra={"rate_limit": key})
    t = send(d, "<a@helo.example>", ip, helo="mx2.helo.example")
    check("HELO mx2 (same client and sender): accepted", t.accepted, got=t)
    check_used(d, key, 1, 1, "helo mx1")
    check_used(d, "%s.1:helo=mx2.helo.example" % rid, 1, 1, "helo mx2")


@suite.case
def on_limit_reject_answers_550():
    d, ip = ag(), "192.0.2.5"
    t = send(d, "<a@reject.example>", ip)
    check("first message accepted", t.accepted, got=t)
    t = send(d, "<a@reject.example>", ip)
    r = t.final
    check("--on-limit reject: the second gets 550 5.7.1 at MAIL FROM",
          t.stage == "mail" and r.code == "550" and r.xcode == "5.7.1",
          expected="replycode 550 5.7.1", got=r)


@suite.case
def aborted_and_rejected_messages_give_quota_back():
    d, rid, ip = ag(), rule("abort"), "192.0.2.20"
    key = ip_key(rid, ip)
    t = send(d, "<a@abort.example>", ip)
    check("one message accepted", t.accepted, got=t, fatal=True)
    check_used(d, key, 1, 3, "after 1 accepted")
    for _ in range(4):
        mail_then(d, "<a@abort.example>", ip, "abort")
    check_used(d, key, 1, 3, "after 4 MAIL+RCPT+abort")
    for _ in range(2):
        mail_then(d, "<a@abort.example>", ip, "close")
    check_used(d, key, 1, 3, "after 2 MAIL+RCPT+connection lost")
    # the same rule's --max-size 10k rejects 20 KB in the body or at the end
    c = open_session(d, address=ip)
    h, b = agtest.make_message("big", size=20000, sender="a@abort.example")
    t = c.transaction("<a@abort.example>", ["<bob@example.net>"], h, b, queue_id=new_qid())
    c.quit()
    check("20 KB over the rule's max-size: 552 5.3.4",
          t.stage in ("body", "eom") and t.final.code == "552", got=t)
    check_used(d, key, 1, 3, "after a message rejected at the end")
    for i in (2, 3):
        t = send(d, "<a@abort.example>", ip)
        check("message %d of 3 accepted (nothing was lost)" % i, t.accepted, got=t)
    t = send(d, "<a@abort.example>", ip)
    check("the 4th is refused: 451 4.7.1", is_rate_451(t.final), got=t)


def db_rate_rows(path):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = []
        if "rate_state" in tables:
            rows = [(bytes(k).decode("utf-8", "replace") if isinstance(k, (bytes, memoryview))
                     else str(k), t) for k, t in con.execute("SELECT key, tat FROM rate_state")]
        return tables, rows
    finally:
        con.close()


def instance(name, interval, limit):
    d = agtest.Authgate(agtest.tmpdir(name), name="authgate-" + name,
                        conf={"RateCheckpointInterval": str(interval)})
    r = d.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    rid = d.add_rule("--match", "sender-domain=keep.example", "--rate",
                     "messages:%d/1h:client-ip" % limit)
    return d, rid


def saved_used(path, key, limit, window_s=3600):
    """The usage of KEY as the checkpoint in PATH holds it (the TAT is in
    ns of the wall clock; used = ceil(debt * LIMIT / WINDOW)), or None."""
    now_ns = time.time_ns()
    for k, tat in db_rate_rows(path)[1]:
        if k == key:
            debt = max(0, tat - now_ns)
            return -(-debt * limit // (window_s * 10**9))
    return None


@suite.case
def counters_survive_a_graceful_restart():
    d, rid = instance("restart", 3600, 3)
    ip = "198.51.100.7"
    key = ip_key(rid, ip)
    d.start()
    for i in (1, 2):
        t = send(d, "<a@keep.example>", ip)
        check("message %d accepted" % i, t.accepted, got=t)
    check_used(d, key, 2, 3, "before the restart")
    tables, rows = db_rate_rows(d.db)
    check("RateCheckpointInterval 3600: not saved yet while running",
          not any(k == key for k, _ in rows), got=rows)
    rc = d.stop()
    check_eq("SIGTERM: exit status 0", rc, 0)
    tables, rows = db_rate_rows(d.db)
    check("the database has a rate_state table", "rate_state" in tables, got=tables)
    check_eq("the graceful stop saved the counter (used 2)", saved_used(d.db, key, 3), 2,
             detail=rows)
    mark = d.log_mark()
    d.start()
    check("the log says 1 counter was restored",
          d.wait_log(r"rate: 1 counters restored from the checkpoint", 2, since=mark),
          got=d.log_lines()[mark:])
    check_used(d, key, 2, 3, "after the restart")
    t = send(d, "<a@keep.example>", ip)
    check("the 3rd message is accepted", t.accepted, got=t)
    t = send(d, "<a@keep.example>", ip)
    check("the 4th is refused: 451 4.7.1", is_rate_451(t.final), got=t)
    d.terminate()


@suite.case
def two_instances_sharing_a_database_keep_their_own_counters():
    """Two daemons on one database: each saves and restores its own
    counters, and the other's saves do not make it reload the policy."""
    a, rid = instance("share-a", 1, 5)
    b = agtest.Authgate(agtest.tmpdir("share-b"), name="authgate-share-b", db=a.db,
                        conf={"RateCheckpointInterval": "1"})
    a.start()
    b.start()
    ka, kb = ip_key(rid, "198.51.100.21"), ip_key(rid, "198.51.100.22")
    for i in (1, 2):
        t = send(a, "<a@keep.example>", "198.51.100.21")
        check("A: message %d accepted" % i, t.accepted, got=t)
    t = send(b, "<a@keep.example>", "198.51.100.22")
    check("B: message accepted", t.accepted, got=t)
    # both save every second; let a few checkpoints pass
    marks = (a.log_mark(), b.log_mark())
    check("both checkpoints are in the database",
          agtest.wait_until(lambda: saved_used(a.db, ka, 5) == 2 and
                            saved_used(a.db, kb, 5) == 1, 5.0),
          got=db_rate_rows(a.db)[1])
    time.sleep(2.5)
    for d, mark, name in ((a, marks[0], "A"), (b, marks[1], "B")):
        reloads = [ln for ln in d.log_lines()[mark:] if "policy loaded" in ln]
        check("%s: the other's checkpoints make no policy reload" % name, not reloads,
              got=reloads)
    check_eq("A: rc of a graceful stop", a.stop(), 0)
    check_eq("B: rc of a graceful stop", b.stop(), 0)
    a.start()
    b.start()
    check_used(a, ka, 2, 5, "A after both restarted")
    check_used(b, kb, 1, 5, "B after both restarted")
    check_eq("A holds only its own counter", [e["key"] for e in counters(a) or []], [ka])
    check_eq("B holds only its own counter", [e["key"] for e in counters(b) or []], [kb])
    # a rule change still reaches both
    marks = (a.log_mark(), b.log_mark())
    a.add_rule("--match", "sender-domain=new.example", "--max-size", "1M")
    for d, mark, name in ((a, marks[0], "A"), (b, marks[1], "B")):
        check("%s: a rule change is picked up" % name,
              d.wait_log(r"policy loaded: 2 rules", 5, since=mark),
              got=d.log_lines()[mark:])
    a.terminate()
    b.terminate()


@suite.case
def crash_loses_at_most_the_checkpoint_interval():
    d, rid = instance("crash", 1, 5)
    ip = "198.51.100.8"
    key = ip_key(rid, ip)
    d.start()
    for i in (1, 2, 3):
        t = send(d, "<a@keep.example>", ip)
        check("message %d accepted" % i, t.accepted, got=t)
    # The checkpoint runs every second: wait (bounded) until it holds all
    # three, rather than sleeping a fixed time.
    t0 = time.monotonic()
    saved = agtest.wait_until(lambda: saved_used(d.db, key, 5) == 3, 5, 0.1)
    check("RateCheckpointInterval 1: used 3 saved within 5 s while running", saved,
          got=saved_used(d.db, key, 5))
    agtest.diag("checkpoint with used 3 seen after %.1fs" % (time.monotonic() - t0))
    # One more, then a crash at once: that one may or may not be in the
    # last checkpoint -- the interval is all a crash may lose.
    t = send(d, "<a@keep.example>", ip)
    check("message 4 accepted", t.accepted, got=t)
    rc = d.proc.stop(signal.SIGKILL, 5)
    check_eq("SIGKILL: killed", rc, -signal.SIGKILL)
    d.start()
    e = counter(d, key, what="after the crash")
    used = e.get("used") if e else None
    check("after the crash: used 3 or 4 (at most the last second lost)", used in (3, 4),
          got=e)
    if used in (3, 4):
        for i in range(used + 1, 6):
            t = send(d, "<a@keep.example>", ip)
            check("message %d of 5 accepted" % i, t.accepted, got=t)
        t = send(d, "<a@keep.example>", ip)
        check("the next is refused: 451 4.7.1", is_rate_451(t.final), got=t)
    d.terminate()


@suite.case
def counters_list_filters_and_reset():
    d, rid, ip = ag(), rule("reset"), "203.0.113.30"
    key = ip_key(rid, ip)
    for i in (1, 2):
        t = send(d, "<a@reset.example>", ip)
        check("message %d of 2 accepted" % i, t.accepted, got=t)
    send(d, "<a@reset.example>", "203.0.113.31")
    t = send(d, "<a@reset.example>", ip)
    check("the 3rd is refused", is_rate_451(t.final), got=t, fatal=True)

    for k in (key, "client-ip=%s/32" % ip, "%s/32" % ip):
        data = counters(d, "--key", k)
        if data is not None:
            check("--key %s: exactly that counter" % k,
                  [e.get("key") for e in data] == [key], got=data)
    data = counters(d, "--key", "no-such-key")
    check("--key no-such-key: empty list", data == [], got=data)
    data = counters(d, "--rule", rid)
    if data is not None:
        check("--rule %s: both of its counters, no other rule's" % rid,
              sorted(e.get("key") for e in data) ==
              sorted([key, ip_key(rid, "203.0.113.31")]), got=data)
    data = counters(d, "--rule", rule("ip"))
    if data is not None:
        check("--rule %s (another rule): none of ours" % rule("ip"),
              all(e.get("key", "").startswith(rule("ip") + ".") for e in data)
              and key not in [e.get("key") for e in data], got=data)
    data = counters(d)
    if data is not None:
        check("no filter: ours among them", key in [e.get("key") for e in data], got=data)

    r = d.ctl("counters", "list")
    check("counters list (text): exit 0", r.returncode == 0, agtest.fmt_run(r))
    lines = (r.stdout or "").splitlines()
    check("text: a header line first", bool(lines) and re.match(r"^KEY\s+BACKEND\s", lines[0]),
          got=r.stdout)
    row = [ln for ln in lines if ln.startswith(key + " ")]
    check("text: a line for the key with its backend and used/remaining",
          len(row) == 1 and re.search(r"\slocal\s+%s\s+messages:2/1h:client-ip/32/64\s+2\s+0\s+\d+$"
                                      % rid, row[0]) is not None, got=r.stdout)

    r = d.ctl("counters", "reset", "client-ip=%s/32" % ip)
    check("counters reset FIELD=VALUE: exit 0", r.returncode == 0, agtest.fmt_run(r))
    check("it says 1 counters reset", re.search(r"^1 counters reset$", r.stdout or "", re.M),
          got=r.stdout)
    t = send(d, "<a@reset.example>", ip)
    check("after the reset the client can send again", t.accepted, got=t)
    check_used(d, key, 1, 2, "after reset and one message")
    e = counter(d, ip_key(rid, "203.0.113.31"))
    check("the other client's counter was not reset", e is not None and e.get("used") == 1,
          got=e)
    r = d.ctl("counters", "reset", "203.0.113.31/32")
    check("counters reset VALUE: 1 counters reset",
          r.returncode == 0 and re.search(r"^1 counters reset$", r.stdout or "", re.M),
          agtest.fmt_run(r))
    r = d.ctl("counters", "reset", key)
    check("counters reset with the exact key: 1 counters reset",
          r.returncode == 0 and re.search(r"^1 counters reset$", r.stdout or "", re.M),
          agtest.fmt_run(r))
    r = d.ctl("counters", "reset", "no-such-key")
    check("counters reset of no counter: exit 0, 0 counters reset",
          r.returncode == 0 and re.search(r"^0 counters reset$", r.stdout or "", re.M),
          agtest.fmt_run(r))
    r = d.ctl("counters", "reset")
    check_eq("counters reset without a KEY: usage error (2)", r.returncode, 2,
             detail=agtest.fmt_run(r))


@suite.case
def counters_without_a_daemon():
    d = agtest.Authgate(agtest.tmpdir("nodaemon"), name="authgate-nodaemon")
    r = d.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r))
    ctl_path = d.settings["ControlSocket"]
    for args in (("list",), ("list", "--json"), ("reset", "client-ip=192.0.2.1/32")):
        r = d.ctl("counters", *args)
        check("counters %s with the daemon stopped: non-zero exit" % " ".join(args),
              r.returncode not in (0, None), agtest.fmt_run(r))
        check("it says it cannot reach authgate at %s" % ctl_path,
              ("cannot reach authgate at %s" % ctl_path) in (r.stderr or ""), agtest.fmt_run(r))
        check("nothing on stdout", (r.stdout or "") == "", agtest.fmt_run(r))


@suite.case
def sighup_keeps_the_counters():
    d, rid = ag(), rule("hup")
    key = "%s.1:sender-domain=hup.example" % rid
    for i in (1, 2):
        t = send(d, "<a@hup.example>", "192.0.2.40")
        check("message %d of 2 accepted" % i, t.accepted, got=t)
    pid = d.proc.pid
    mark = d.log_mark()
    d.reload()
    ln = d.wait_log(r"configuration reloaded", 5, since=mark)
    check("SIGHUP: the log says the configuration was reloaded", ln,
          got=d.log_lines()[mark:])
    check("same process, still running", d.alive() and d.proc.pid == pid)
    check_used(d, key, 2, 2, "after SIGHUP")
    t = send(d, "<a@hup.example>", "192.0.2.41")
    check("after SIGHUP the 3rd is still refused", is_rate_451(t.final), got=t)


@suite.case
def tag_and_dry_run_limits_only_note_it():
    d = ag()
    for name, dom in (("tag", "tag.example"), ("dry", "dry.example")):
        ip = "192.0.2.50"
        t = send(d, "<a@%s>" % dom, ip)
        check("%s: first message accepted" % name, t.accepted, got=t)
        mark = d.log_mark()
        qid = new_qid()
        t = send(d, "<a@%s>" % dom, ip, qid=qid)
        check("%s: over the limit, still accepted" % name, t.accepted, got=t)
        dd = check_decision(d, qid, "accept", since=mark, what="%s: log line" % name,
                            extra={"would_reason": "rate"})
        if dd:
            check("%s: log names the rule that would have refused" % name,
                  rule(name) in (dd.get("would_rule"), dd.get("rule")), got=dd["line"])
            check_eq("%s: rate_limit= names the counter" % name, dd.get("rate_limit"),
                     ip_key(rule(name), ip), detail=dd["line"])


@suite.case
def bad_rate_values_refused():
    d = ag()
    cases = [
        ("messages:0x/1h", r"limit"),
        ("messages:10/0s", r"window"),
        ("messages:10/1h:client-ip/8", r"client-ip|prefix"),
        ("foo:1/1h", r"measure|messages"),
        ("messages:10/1h:nosuchkey", r"key"),
        ("messages", r"MEASURE|expected"),
        ("messages:10", r"WINDOW|window|expected"),
        ("messages:-1/1h", r"limit"),
        ("messages:10/1h:client-ip/24/200", r"client-ip|prefix"),
    ]
    before = d.ctl("rule", "list").stdout
    for spec, rx in cases:
        r = d.ctl("rule", "add", "--match", "sender-domain=bad.example", "--rate", spec)
        check_eq("--rate %s: exit status 2" % spec, r.returncode, 2, detail=agtest.fmt_run(r))
        err = r.stderr or ""
        check("--rate %s: the message quotes the value and names the problem" % spec,
              spec in err and re.search(rx, err) is not None,
              expected="stderr with %r and /%s/" % (spec, rx), got=err)
    check_eq("no rule was added by the bad ones", d.ctl("rule", "list").stdout, before)

    r = d.ctl("rule", "show", rule("ip"), "--json")
    try:
        js = json.loads(r.stdout) if r.returncode == 0 else None
    except ValueError:
        js = None
    if isinstance(js, list) and len(js) == 1:
        js = js[0]
    check("rule show --json: a JSON object", isinstance(js, dict), agtest.fmt_run(r))
    if isinstance(js, dict):
        check_eq("rule show --json: rates in canonical form", js.get("rates"),
                 ["messages:3/1h:client-ip/32/64"], detail=r.stdout)
    r = d.ctl("rule", "show", rule("zero"), "--json")
    check("rule show --json: messages:0/1h kept as it is",
          r.returncode == 0 and '"messages:0/1h"' in (r.stdout or ""), agtest.fmt_run(r))


def scrape(port, name):
    """The value of the metric NAME (no labels) at 127.0.0.1:PORT, or None."""
    data = agtest.exchange("127.0.0.1", port, b"GET /metrics HTTP/1.0\r\n\r\n", 10.0)
    m = re.search(r"^%s (\d+)$" % re.escape(name), data.decode("latin-1"), re.M)
    return int(m.group(1)) if m else None


@suite.case
def a_full_table_admits_new_keys_logged_once():
    """RateMaxKeys 1000 (the least): 1000 senders hold a live counter
    each; 30 more are admitted uncounted, counted in the metric, with one
    log line for all of them; a held sender is still limited."""
    mport = agtest.free_port()
    d = agtest.Authgate(agtest.tmpdir("full"), name="authgate-full", conf={
        "RateMaxKeys": "1000", "RateCheckpointInterval": "3600",
        "MetricsListen": "127.0.0.1:%d" % mport})
    r = d.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    d.add_rule("--match", "sender-domain=full.example", "--rate", "messages:1/1h:sender")
    d.start()
    h, b = agtest.make_message("full", sender="s@full.example")
    c = open_session(d, address="192.0.2.70")
    ok = sum(c.transaction("<s%d@full.example>" % i, ["<bob@example.net>"], h, b,
                           queue_id=new_qid()).accepted for i in range(1000))
    check_eq("1000 senders: all accepted", ok, 1000)
    data = counters(d)
    check_eq("1000 counters held", len(data) if data is not None else None, 1000)
    check_eq("authgate_rate_table_full_total 0 before", scrape(mport, "authgate_rate_table_full_total"), 0)
    mark = d.log_mark()
    ok = sum(c.transaction("<n%d@full.example>" % i, ["<bob@example.net>"], h, b,
                           queue_id=new_qid()).accepted for i in range(30))
    check_eq("30 new senders with the table full: all accepted", ok, 30)
    t = c.transaction("<s7@full.example>", ["<bob@example.net>"], h, b, queue_id=new_qid())
    check("a sender with a counter is still limited: 451 4.7.1", is_rate_451(t.final), got=t)
    c.quit()
    check_eq("authgate_rate_table_full_total 30", scrape(mport, "authgate_rate_table_full_total"), 30)
    full = [ln for ln in d.log_lines()[mark:] if "table of counters is full" in ln]
    check_eq("one log line for the 30", len(full), 1, detail=d.log_lines()[mark:])
    check("it names RateMaxKeys 1000", bool(full) and "(RateMaxKeys 1000): new keys are not "
          "limited until idle ones expire" in full[0], got=full)
    data = counters(d, "--key", "n0@full.example")
    check_eq("an uncounted sender holds no counter", data, [])
    d.terminate()


@suite.case
def limit_zero_refuses_everything():
    d = ag()
    t = send(d, "<a@zero.example>", "192.0.2.60")
    r = t.final
    check("messages:0/1h: refused at MAIL FROM with 451 4.7.1",
          t.stage == "mail" and is_rate_451(r), got=t)
    n = retry_seconds(r)
    check("no retry hint beyond the window (limit 0 never admits)",
          n is None or n <= 3600, expected="no 'try again' or N <= 3600", got=r)
    t = send(d, "<a@zero.example>", "192.0.2.61")
    check("and again, from another address", is_rate_451(t.final), got=t)


suite.run()
