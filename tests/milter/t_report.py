#!/usr/bin/python3
"""The message history and `authgatectl report`, over the milter protocol:
a real daemon with SPF on, its DNS from a real unbound on loopback
(tests/lib/agdns.py), a size rule and a rate rule, and a known set of
messages:

  good.example       5 from 192.0.2.10, SPF pass, accepted
  spam.example       6 from 203.0.113.7, 3 per hour allowed by a rate
                     rule: 3 accepted, 3 tempfailed (451 4.7.1 at MAIL)
  forged             2 as alice@good.example from 198.51.100.9: SPF fail,
                     rejected (550 5.7.1 at MAIL)
  big.example        1 declaring SIZE=2000000 over a 1 MB rule: rejected
  <>                 1 bounce from 192.0.2.10, accepted
  good.example       1 that the client abandons after RCPT (abort)

The report must count exactly those, grouped by sender domain, sender,
client, rule and result, with --only limited, --top, --json, and a
period that holds nothing; the rows are written by the daemon's watcher
and survive a restart.  HistoryDays 0 keeps no message rows.  Bad
arguments exit 2 and say why."""

import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agdns  # noqa: E402
from agtest import check, check_eq, new_qid  # noqa: E402

suite = agtest.Suite("milter: message history and authgatectl report", case_timeout=90,
                     total_timeout=400)
S = {}

GOOD_NET = "192.0.2.10"
SPAM_NET = "203.0.113.7"
FORGER = "198.51.100.9"
BASE = {"SPFCheck": "yes", "SPFCheckHelo": "no", "DKIMVerify": "no", "DMARCCheck": "no",
        "DNSTimeout": "2000", "HistoryDays": "30"}
ZONES = {
    "good.example": [("TXT", "v=spf1 ip4:%s -all" % GOOD_NET)],
    "spam.example": [("TXT", "v=spf1 ip4:%s -all" % SPAM_NET)],
    "big.example": [("TXT", "v=spf1 ip4:%s -all" % GOOD_NET)],
}
EXPECTED_TOTAL = 16


@suite.setup
def setup():
    agdns.require()
    agtest.require_authgate()
    S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), ZONES).start()
    a = agtest.Authgate(agtest.tmpdir("ag"), conf=dict(BASE, DNSServer=S["dns"].server))
    r = a.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["rate_rule"] = a.add_rule("--match", "sender-domain=spam.example",
                                "--rate", "messages:3/1h:sender")
    S["size_rule"] = a.add_rule("--max-size", "1M")
    S["ag"] = a
    a.start()


def send(client, sender, what, mail_args=(), abort_after_rcpt=False):
    c = agtest.open_session(S["ag"], address=client, helo="client.example", what=what)
    try:
        if abort_after_rcpt:
            c.set_queue_id(new_qid())
            r = c.mail(sender)
            check("%s: MAIL goes on" % what, r.passes, got=r)
            r = c.rcpt("<bob@example.net>")
            check("%s: RCPT goes on" % what, r.passes, got=r)
            c.abort()
            return None
        h, b = agtest.make_message(what, sender=sender.strip("<>") or "mailer-daemon@example.net")
        return c.transaction(sender, ["<bob@example.net>"], h, b, mail_args=mail_args,
                             queue_id=new_qid())
    finally:
        c.close()


def code(t):
    r = t.final
    return (r.kind, getattr(r, "code", None)) if r is not None else None


@suite.case(name="the known set of messages gets the replies expected")
def messages():
    for i in range(5):
        t = send(GOOD_NET, "<alice@good.example>", "good %d" % i)
        check("good %d accepted" % i, t.accepted, got=t)
    for i in range(6):
        t = send(SPAM_NET, "<spammer@spam.example>", "spam %d" % i)
        if i < 3:
            check("spam %d accepted" % i, t.accepted, got=t)
        else:
            check_eq("spam %d: 451 at MAIL (rate limit)" % i, (t.stage, code(t)),
                     ("mail", ("tempfail", "451")))
    for i in range(2):
        t = send(FORGER, "<alice@good.example>", "forged %d" % i)
        check_eq("forged %d: 550 at MAIL (SPF fail)" % i, (t.stage, code(t)),
                 ("mail", ("reject", "550")))
    t = send(GOOD_NET, "<carol@big.example>", "big", mail_args=("SIZE=2000000",))
    check_eq("big: 552 at MAIL (size rule)", (t.stage, code(t)), ("mail", ("reject", "552")))
    t = send(GOOD_NET, "<>", "bounce")
    check("bounce accepted", t.accepted, got=t)
    send(GOOD_NET, "<alice@good.example>", "abandoned", abort_after_rcpt=True)


def rows_written(n, timeout=15):
    def got():
        with sqlite3.connect(S["ag"].db, timeout=5) as con:
            return con.execute("SELECT count(*) FROM message_log").fetchone()[0] >= n
    return agtest.wait_until(got, timeout, 0.2)


def report_json(*args):
    r = S["ag"].ctl("--json", "report", *args)
    if not check("report %s exits 0" % " ".join(args), r.returncode == 0, agtest.fmt_run(r)):
        raise agtest.Abort("report failed")
    try:
        return json.loads(r.stdout)
    except ValueError as e:
        check("report %s: JSON parses" % " ".join(args), False, got="%s\n%s" % (e, r.stdout))
        raise agtest.Abort("bad JSON")


def rows(rep):
    """{key: counts} of a JSON report."""
    return {row["key"]: row["counts"] for row in rep["rows"]}


def pick(counts, *names):
    return tuple(counts.get(n) for n in names)


COLS = ("messages", "accepted", "tempfailed", "rejected", "aborted", "spf_fail", "limited")


@suite.case(name="the watcher writes one row per message, not the sessions")
def written():
    check("%d message rows in the database" % EXPECTED_TOTAL, rows_written(EXPECTED_TOTAL),
          got=sqlite3.connect(S["ag"].db).execute("SELECT count(*) FROM message_log").fetchone())
    with sqlite3.connect(S["ag"].db) as con:
        n = con.execute("SELECT count(*) FROM message_log").fetchone()[0]
        limited = con.execute("SELECT sender, action, code, rule, rate_rule, rate_key, spf"
                              " FROM message_log WHERE rate_key IS NOT NULL").fetchall()
    check_eq("exactly %d rows" % EXPECTED_TOTAL, n, EXPECTED_TOTAL)
    check_eq("3 limited rows", len(limited), 3)
    if limited:
        sender, action, code_, rule, rate_rule, key, spf = limited[0]
        check_eq("a limited row: sender, action, code, rule", (sender, action, code_, rule, rate_rule),
                 ("spammer@spam.example", "tempfail", "451 4.7.1", int(S["rate_rule"]),
                  int(S["rate_rule"])))
        check("a limited row names its counter", "spammer@spam.example" in (key or ""), got=key)


@suite.case(name="report --by sender-domain (the default) counts the known set")
def by_domain():
    rep = report_json()
    t = rep["total"]
    check_eq("totals", pick(t, *COLS), (EXPECTED_TOTAL, 9, 3, 3, 1, 2, 3))
    check_eq("by", rep["by"], "sender-domain")
    check_eq("4 groups", rep["groups"], 4)
    g = rows(rep)
    check_eq("good.example: 5 + 2 forged + 1 aborted", pick(g.get("good.example", {}), *COLS),
             (8, 5, 0, 2, 1, 2, 0))
    check_eq("spam.example: 3 accepted, 3 limited", pick(g.get("spam.example", {}), *COLS),
             (6, 3, 3, 0, 0, 0, 3))
    check_eq("big.example: 1 rejected", pick(g.get("big.example", {}), *COLS), (1, 0, 0, 1, 0, 0, 0))
    check_eq("<>: the bounce", pick(g.get("<>", {}), *COLS), (1, 1, 0, 0, 0, 0, 0))
    check_eq("largest first", [row["key"] for row in rep["rows"]],
             ["good.example", "spam.example", "<>", "big.example"])
    check_eq("spam.example: failed_percent", g["spam.example"]["failed_percent"], 50.0)


@suite.case(name="report --by client, sender, rule and result")
def by_others():
    g = rows(report_json("--by", "client"))
    check_eq("by client", {k: v["messages"] for k, v in g.items()},
             {GOOD_NET: 8, SPAM_NET: 6, FORGER: 2, })
    g = rows(report_json("--by", "sender"))
    check_eq("by sender: alice", pick(g.get("alice@good.example", {}), *COLS), (8, 5, 0, 2, 1, 2, 0))
    g = rows(report_json("--by", "rule"))
    check_eq("by rule: the rate rule limited 3", g.get(S["rate_rule"], {}).get("messages"), 3)
    check_eq("by rule: the size rule rejected 1", g.get(S["size_rule"], {}).get("rejected"), 1)
    check_eq("by rule: no rule decided the other 12", g.get("-", {}).get("messages"), 12)
    g = rows(report_json("--by", "result"))
    check_eq("by result: SPF fail", g.get("spf=fail dkim=- dmarc=-", {}).get("rejected"), 2)
    check_eq("by result: SPF pass (the rate rule refused 3 before SPF)",
             g.get("spf=pass dkim=- dmarc=-", {}).get("messages"), 9)


@suite.case(name="report --only limited --by sender names the limited sender")
def only_limited():
    rep = report_json("--only", "limited", "--by", "sender")
    check_eq("one limited sender, 3 messages",
             [(r["key"], r["counts"]["messages"]) for r in rep["rows"]],
             [("spammer@spam.example", 3)])
    rep = report_json("--only", "auth-fail", "--by", "client")
    check_eq("auth failures come from the forger", [r["key"] for r in rep["rows"]], [FORGER])


@suite.case(name="report --top 1, and a period with nothing")
def top_and_empty():
    rep = report_json("--top", "1")
    check_eq("--top 1: one row of 4 groups", (len(rep["rows"]), rep["groups"]), (1, 4))
    rep = report_json("--since", "2000-01-01", "--until", "2000-01-02")
    check_eq("an old period: no messages", (rep["total"]["messages"], rep["rows"]), (0, []))


@suite.case(name="text output: the header line and a row per group")
def text():
    r = S["ag"].ctl("report", "--since", "1h")
    check("exit 0", r.returncode == 0, agtest.fmt_run(r))
    out = r.stdout
    check("the totals line", ": %d\n" % EXPECTED_TOTAL in out.splitlines()[0] + "\n", got=out)
    check("the summary", "accepted 9, tempfailed 3, rejected 3, aborted 1" in out and
          "rate limited 3" in out, got=out)
    line = [ln for ln in out.splitlines() if ln.startswith("spam.example ")]
    check_eq("spam.example's row", line[0].split() if line else None,
             ["spam.example", "6", "3", "3", "0", "0", "50.0", "0", "0", "0", "3"])


@suite.case(name="rows survive a restart")
def restart():
    a = S["ag"]
    a.stop()
    a.start()
    check_eq("after a restart: the same total", report_json()["total"]["messages"], EXPECTED_TOTAL)


@suite.case(name="bad arguments exit 2 and say why")
def bad_args():
    for args, what in ((("--by", "colour"), "--by"), (("--only", "spam"), "--only"),
                       (("--since", "yesterday"), "--since"), (("--top", "-1"), "--top"),
                       (("--since", "1h", "--until", "2h"), "--until must be after"),
                       (("--frobnicate",), "unexpected argument")):
        r = S["ag"].ctl("report", *args)
        check_eq("report %s: exit 2" % " ".join(args), r.returncode, 2)
        check("report %s: says %s" % (" ".join(args), what), what in r.stderr, got=r.stderr)


@suite.case(name="HistoryDays 0 keeps no message rows")
def history_off():
    a = agtest.Authgate(agtest.tmpdir("ag0"), conf=dict(BASE, DNSServer=S["dns"].server,
                                                         HistoryDays="0"))
    r = a.ctl("init")
    check("init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    a.start()
    try:
        c = agtest.open_session(a, address=GOOD_NET, what="history off")
        h, b = agtest.make_message("off", sender="alice@good.example")
        t = c.transaction("<alice@good.example>", ["<bob@example.net>"], h, b, queue_id=new_qid())
        c.close()
        check("accepted", t.accepted, got=t)
        a.wait_log(r"action=accept", timeout=5)
    finally:
        a.stop()
    with sqlite3.connect(a.db) as con:
        n = con.execute("SELECT count(*) FROM message_log").fetchone()[0]
    check_eq("no rows", n, 0)


suite.run()
