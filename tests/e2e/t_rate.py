#!/usr/bin/python3
"""End to end, real Postfix -> authgate -> smtp-sink: rate limits as the
SMTP client sees them (451 4.7.1 / 550 5.7.1 / 552 5.3.4 at MAIL FROM,
RCPT TO or end of data), what reaches the sink, the decision log line
(reason=rate, rate_limit=RULE.N:KEY=VALUE, would_*) and the live counters
of `authgatectl counters list --json` / `counters reset`.

Every window is an hour or more, so nothing refills noticeably while the
script runs; no case sleeps for a window.  Each case has its own sender
domain, and the cases that present a client address with XCLIENT use
their own address, so the counters of one case never meet another's.

Cases: per client IP (and a second client unaffected), counters list;
recipients counted at each RCPT; byte quota with and without SIZE=
(trued up to the real size) and a message larger than the whole quota;
an exemption; layered rules (per sender and per domain); a pool;
rcpt-domain keys; on-limit tag and a dry-run rule; quota given back when
the message is rejected at end of data (DKIM required, max-size) or
aborted (RSET, QUIT, connection lost in DATA); SASL user key; on-limit
reject; counters reset."""

import json
import os
import re
import smtplib
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
from agtest import check, check_eq, check_match  # noqa: E402
from agpostfix import reply  # noqa: E402

suite = agtest.Suite("e2e: rate limits through Postfix", case_timeout=90)
S = {}
RCPT = ["bob@example.net"]


@suite.setup
def setup():
    agpostfix.require()
    agtest.require_authgate()
    st = S["st"] = agpostfix.Stack()
    ag = st.ag
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    add = ag.add_rule
    S["client"] = add("--priority", "10", "--match", "client=192.0.2.0/24",
                      "--rate", "messages:3/1h:client-ip")
    S["rcpts"] = add("--match", "sender-domain=rcpts.example",
                     "--rate", "messages:100/1h:sender", "--rate", "recipients:5/1h:sender")
    S["bytes"] = add("--match", "sender-domain=bytes.example", "--rate", "bytes:10k/1h:sender")
    S["corp"] = add("--priority", "100", "--match", "sender-domain=corp.example",
                    "--rate", "messages:2/1h:sender-domain")
    S["ceo"] = add("--priority", "10", "--match", "sender=ceo@corp.example", "--exempt")
    S["lay_sender"] = add("--priority", "10", "--match", "sender-domain=lay.example",
                          "--rate", "messages:2/1h:sender")
    S["lay_domain"] = add("--priority", "20", "--match", "sender-domain=lay.example",
                          "--rate", "messages:3/1h:sender-domain")
    S["pool"] = add("--match", "sender-domain=pool.example", "--rate", "messages:2/1h")
    S["rdom"] = add("--match", "sender-domain=rdom.example",
                    "--rate", "messages:1/1h:rcpt-domain")
    S["tag"] = add("--match", "sender-domain=tag.example", "--on-limit", "tag",
                   "--rate", "messages:1/1h:sender")
    S["dry"] = add("--match", "sender-domain=dry.example", "--dry-run",
                   "--rate", "messages:1/1h:sender")
    # man/authgatectl.8: a rule in dry run, or with --on-limit tag, "never
    # exempts"
    S["tagex"] = add("--priority", "10", "--match", "sender=x@tagex.example", "--exempt",
                     "--on-limit", "tag", "--rate", "messages:5/1h:sender")
    S["tagex_dom"] = add("--priority", "20", "--match", "sender-domain=tagex.example",
                         "--rate", "messages:1/1h:sender-domain")
    S["dryex"] = add("--priority", "10", "--match", "sender=x@dryex.example", "--exempt",
                     "--dry-run")
    S["dryex_dom"] = add("--priority", "20", "--match", "sender-domain=dryex.example",
                         "--rate", "messages:1/1h:sender-domain")
    S["dkim"] = add("--priority", "10", "--match", "sender-domain=dk.example",
                    "--dkim", "require")
    S["dkim_rate"] = add("--priority", "20", "--match", "sender-domain=dk.example",
                         "--rate", "messages:2/1h:sender")
    S["maxsize"] = add("--match", "sender-domain=ms.example", "--max-size", "5k",
                       "--rate", "messages:2/1h:sender")
    S["abort"] = add("--match", "sender-domain=abort.example", "--rate", "messages:1/1h:sender")
    S["sasl"] = add("--match", "authenticated=yes", "--rate", "messages:2/1h:sasl-user")
    S["reject"] = add("--match", "sender-domain=rej.example", "--on-limit", "reject",
                      "--rate", "messages:1/1h:sender")
    st.start()


def st():
    return S["st"]


def session(addr, login=None, helo="rate-client.example", name="rate-client.example"):
    """An SMTP session that presents client ADDR (and a SASL LOGIN) with
    XCLIENT, EHLO done again."""
    s = st().pf.smtp()
    cmd = "XCLIENT ADDR=%s NAME=%s HELO=%s" % (addr, name, helo)
    if login:
        cmd += " LOGIN=%s" % login
    r = reply(s.docmd(cmd))
    check("XCLIENT ADDR=%s accepted (220)" % addr, r.startswith("220"), got=r, fatal=True)
    s.ehlo(helo)
    return s


def quit(s):
    try:
        s.quit()
    except (smtplib.SMTPException, OSError):
        pass


def send(sender, rcpts=RCPT, **kw):
    """(token, stage, reply, rcpt replies) of one message through Postfix."""
    return st().send(sender, rcpts, **kw)


def accepted(label, res, sink=True):
    """Check that RES (of send()) was accepted at end of data and, with
    SINK, that it reached the sink; returns the sink's text."""
    tok, stage, rep, rr = res
    ok = check(label + ": 250 at end of data", stage == "eod" and rep.startswith("250 "),
               expected=("eod", "250 2.0.0 Ok: queued as ..."), got=(stage, rep, rr))
    if not (ok and sink):
        return None
    msg = st().sink.wait_for(tok)
    check(label + ": at the sink", msg is not None)
    return msg


RETRY = r", try again in (\d+) seconds$"


def tempfailed(label, res, stage, what, retry=None):
    """Check that RES was refused at STAGE with '451 4.7.1 Rate limit
    reached: WHAT, try again in N seconds', N in RETRY=(lo, hi); returns
    the reply."""
    tok, got_stage, rep, rr = res
    text = rep
    if stage == "rcpt":
        text = ([x for x in rr if not x.startswith("2")] or [""])[0]
    check(label + ": refused at %s" % stage, got_stage == stage or
          (stage == "rcpt" and got_stage == "eod"), expected=stage, got=(got_stage, rep, rr))
    m = check_match(label + ": 451 4.7.1 Rate limit reached: " + what,
                    r"^451 4\.7\.1 Rate limit reached: " + re.escape(what) + RETRY, text)
    if m and retry:
        n = int(m.group(1))
        check(label + ": retry time %d..%d s" % retry, retry[0] <= n <= retry[1], got=n)
    return text


def decision(sender, since, action=None, timeout=5.0):
    """The last decision line for SENDER logged after SINCE (with ACTION
    when given), waiting for it; None if there is none."""
    def find():
        ds = [d for d in st().ag.decisions(since) if d.get("from") == "<%s>" % sender and
              (action is None or d.get("action") == action)]
        return ds[-1] if ds else None
    return agtest.wait_until(find, timeout)


def check_log(label, sender, since, want, absent=(), action=None):
    """The decision line of SENDER (after SINCE) has the fields in WANT and
    none of ABSENT."""
    d = decision(sender, since, action or want.get("action"))
    if not check(label + ": decision line logged", d is not None,
                 expected="a line with from=<%s> %s" % (sender, want),
                 got="\n".join(st().ag.log_lines()[since:][-10:])):
        return None
    got = {k: d.get(k) for k in want}
    check(label + ": log " + " ".join("%s=%s" % kv for kv in want.items()), got == want,
          expected=want, got=d["line"])
    if absent:
        present = [k for k in absent if k in d]
        check(label + ": log has no " + ", ".join(absent), not present, got=d["line"])
    return d


def counters(*args):
    """`authgatectl counters list --json ARGS`: {key: counter}."""
    r = st().ag.ctl("counters", "list", "--json", *args)
    if not check("counters list --json %s: exit 0" % " ".join(args), r.returncode == 0,
                 agtest.fmt_run(r)):
        return {}
    try:
        data = json.loads(r.stdout)
    except ValueError as e:
        check("counters list --json: valid JSON", False, "%s\n%s" % (e, r.stdout))
        return {}
    check("counters list --json: a list", isinstance(data, list), got=r.stdout)
    return {c.get("key"): c for c in data} if isinstance(data, list) else {}


def check_used(label, cs, key, used, **more):
    c = cs.get(key)
    if not check(label + ": counter %s listed" % key, c is not None, got=sorted(cs)):
        return None
    want = dict(used=used, **more)
    got = {k: c.get(k) for k in want}
    check(label + ": %s " % key + " ".join("%s=%s" % kv for kv in want.items()), got == want,
          expected=want, got=c)
    return c


def check_unused(label, cs, key):
    """KEY absent from the list, or listed with nothing used."""
    c = cs.get(key)
    check(label + ": %s holds no quota" % key, c is None or c.get("used") == 0,
          expected="absent or used 0", got=c)


def not_at_sink(label, *tokens):
    if st().barrier():
        found = [t for t in tokens if st().sink.find(t)]
        check(label + ": not at the sink", not found, got=found)


def header_names(msg):
    return sorted(n.lower() for n, _ in agtest.header_fields(msg))


# ---------------------------------------------------------------------------


@suite.case
def per_client_ip_limit():
    rid = S["client"]
    mark = st().ag.log_mark()
    s = session("192.0.2.10")
    for i in range(3):
        accepted("192.0.2.10 message %d of 3" % (i + 1), send("c1@rate1.example", smtp=s))
    res = send("c1@rate1.example", smtp=s)
    quit(s)
    tempfailed("192.0.2.10 message 4", res, "mail",
               "3 messages per 1h for client-ip 192.0.2.10/32", retry=(1000, 1200))
    check_log("4th message", "c1@rate1.example", mark,
              {"qid": "NOQUEUE", "action": "tempfail", "code": "4.7.1", "rule": rid,
               "reason": "rate", "rate_limit": "%s.1:client-ip=192.0.2.10/32" % rid,
               "client": "rate-client.example[192.0.2.10]"})
    s = session("192.0.2.11")
    accepted("another client 192.0.2.11 (own counter)", send("c1@rate1.example", smtp=s))
    quit(s)
    cs = counters("--rule", rid)
    check_used("after 3+1 messages", cs, "%s.1:client-ip=192.0.2.10/32" % rid, 3,
               remaining=0, limit=3, window_seconds=3600, measure="messages",
               backend="local", rule=int(rid))
    c = cs.get("%s.1:client-ip=192.0.2.10/32" % rid) or {}
    check("reset_seconds of the full counter about an hour",
          isinstance(c.get("reset_seconds"), int) and 3500 <= c["reset_seconds"] <= 3600,
          got=c.get("reset_seconds"))
    check_used("after 3+1 messages", cs, "%s.1:client-ip=192.0.2.11/32" % rid, 1, remaining=2)
    check_eq("--rule %s lists only that rule's counters" % rid,
             sorted({c.get("rule") for c in cs.values()}), [int(rid)])
    r = st().ag.ctl("counters", "list", "--key", "client-ip=192.0.2.10/32")
    check("text listing --key client-ip=192.0.2.10/32 shows the key and 1 line",
          r.returncode == 0 and "%s.1:client-ip=192.0.2.10/32" % rid in r.stdout and
          "192.0.2.11" not in r.stdout, agtest.fmt_run(r))


@suite.case
def counters_reset_gives_a_fresh_quota():
    rid = S["client"]
    key = "%s.1:client-ip=192.0.2.10/32" % rid
    s = session("192.0.2.10")
    tempfailed("before the reset", send("c1@rate1.example", smtp=s), "mail",
               "3 messages per 1h for client-ip 192.0.2.10/32")
    quit(s)
    r = st().ag.ctl("counters", "reset", "client-ip=192.0.2.10/32")
    check("counters reset client-ip=192.0.2.10/32: '1 counters reset'",
          r.returncode == 0 and re.search(r"^1 counters reset", r.stdout, re.M),
          agtest.fmt_run(r))
    cs = counters("--rule", rid)
    check_unused("after the reset", cs, key)
    check_used("the other client untouched", cs, "%s.1:client-ip=192.0.2.11/32" % rid, 1)
    s = session("192.0.2.10")
    for i in range(3):
        accepted("after the reset, message %d of 3" % (i + 1), send("c1@rate1.example", smtp=s))
    tempfailed("after the reset, message 4", send("c1@rate1.example", smtp=s), "mail",
               "3 messages per 1h for client-ip 192.0.2.10/32")
    quit(s)
    r = st().ag.ctl("counters", "reset", key)
    check("counters reset %s (full key): '1 counters reset'" % key,
          r.returncode == 0 and re.search(r"^1 counters reset", r.stdout, re.M),
          agtest.fmt_run(r))
    r = st().ag.ctl("counters", "reset", "192.0.2.11/32")
    check("counters reset 192.0.2.11/32 (bare value): '1 counters reset'",
          r.returncode == 0 and re.search(r"^1 counters reset", r.stdout, re.M),
          agtest.fmt_run(r))
    cs = counters("--rule", rid)
    check_unused("after both resets", cs, key)
    check_unused("after both resets", cs, "%s.1:client-ip=192.0.2.11/32" % rid)
    r = st().ag.ctl("counters", "reset", "client-ip=192.0.2.99/32")
    check("counters reset of a key nobody used: '0 counters reset'",
          re.search(r"^0 counters reset", r.stdout, re.M), agtest.fmt_run(r))
    s = session("192.0.2.10")
    accepted("after the second reset", send("c1@rate1.example", smtp=s))
    quit(s)


@suite.case
def recipients_counted_at_each_rcpt():
    rid = S["rcpts"]
    who = "alice@rcpts.example"
    accepted("message 1, 3 recipients",
             send(who, ["r1@example.net", "r2@example.net", "r3@example.net"]))
    mark = st().ag.log_mark()
    res = send(who, ["r4@example.net", "r5@example.net", "r6@example.net"])
    tok, stage, rep, rr = res
    check_eq("message 2: 3 RCPT replies", len(rr), 3)
    check("message 2: RCPT 1 and 2 250", all(x.startswith("250") for x in rr[:2]), got=rr)
    tempfailed("message 2 RCPT 3", res, "rcpt", "5 recipients per 1h for sender " + who,
               retry=(600, 720))
    msg = accepted("message 2 (for its first 2 recipients)", res)
    if msg:
        got = re.findall(r"^X-Rcpt-Args: <([^>]*)>", msg, re.M)
        check_eq("message 2 delivered to exactly r4 and r5", sorted(got),
                 ["r4@example.net", "r5@example.net"], detail=msg[:800])
    check_log("message 2", who, mark,
              {"action": "accept", "rcpts": "2", "rejected_rcpts": "1",
               "rate_limit": "%s.2:sender=%s" % (rid, who)})
    cs = counters("--rule", rid)
    check_used("recipients", cs, "%s.2:sender=%s" % (rid, who), 5, remaining=0, limit=5,
               measure="recipients")
    check_used("messages (the rule's first --rate)", cs, "%s.1:sender=%s" % (rid, who), 2,
               measure="messages")
    res = send(who, ["r7@example.net"])
    check("message 3: its only RCPT refused 451 4.7.1",
          res[1] == "rcpt" and res[2].startswith("451 4.7.1"), got=res[1:])
    check_used("after message 3 (nothing delivered)", counters("--rule", rid),
               "%s.1:sender=%s" % (rid, who), 2)


def sized(sender, size, declare):
    """Send a message of about SIZE body bytes; with DECLARE, MAIL FROM
    carries SIZE= its exact length."""
    tok = st().token("b")
    params = ""
    if declare:
        params = "SIZE=%d" % len(st().message(tok, sender, RCPT[0], size))
    return send(sender, size=size, mail_params=params, token=tok)


def logged_size(sender, since, n):
    """The size= of the last N accepted messages of SENDER since SINCE."""
    ds = [d for d in st().ag.decisions(since)
          if d.get("from") == "<%s>" % sender and d.get("action") == "accept"]
    return sum(int(d.get("size", "0")) for d in ds[-n:]) if len(ds) >= n else None


BYTES_WHAT = "10240 bytes per 1h for sender "


@suite.case
def byte_quota_with_size_param():
    rid = S["bytes"]
    who = "sz@bytes.example"
    mark = st().ag.log_mark()
    accepted("4k with SIZE= #1", sized(who, 4096, True))
    accepted("4k with SIZE= #2", sized(who, 4096, True))
    res = sized(who, 4096, True)
    tempfailed("4k with SIZE= #3", res, "mail", BYTES_WHAT + who)
    check_log("4k with SIZE= #3", who, mark,
              {"qid": "NOQUEUE", "action": "tempfail", "code": "4.7.1", "rule": rid,
               "reason": "rate", "rate_limit": "%s.1:sender=%s" % (rid, who)})
    not_at_sink("4k with SIZE= #3", res[0])
    real = logged_size(who, mark, 2)
    c = counters("--key", "sender=" + who).get("%s.1:sender=%s" % (rid, who))
    check("bytes used = the 2 messages' real sizes as logged (%s), trued up from SIZE=" % real,
          c is not None and real is not None and real - 64 <= c.get("used", -1) <= real,
          got=c)


@suite.case
def byte_quota_without_size_param():
    rid = S["bytes"]
    who = "ns@bytes.example"
    mark = st().ag.log_mark()
    accepted("4k without SIZE= #1", sized(who, 4096, False))
    accepted("4k without SIZE= #2", sized(who, 4096, False))
    res = sized(who, 4096, False)
    tempfailed("4k without SIZE= #3 (MAIL took 1 byte)", res, "eod", BYTES_WHAT + who)
    d = check_log("4k without SIZE= #3", who, mark,
                  {"action": "tempfail", "code": "4.7.1", "rule": rid, "reason": "rate",
                   "rate_limit": "%s.1:sender=%s" % (rid, who)})
    if d:
        check("4k without SIZE= #3: logged with Postfix's queue id",
              re.match(r"^[0-9A-F]{6,}$", d["qid"]) is not None, got=d["line"])
    not_at_sink("4k without SIZE= #3", res[0])
    real = logged_size(who, mark, 2)
    c = counters("--key", "sender=" + who).get("%s.1:sender=%s" % (rid, who))
    check("bytes used = the 2 accepted messages' sizes (%s): the refused one gave "
          "back its byte" % real,
          c is not None and real is not None and real - 64 <= c.get("used", -1) <= real,
          got=c)


@suite.case
def message_larger_than_byte_quota():
    who = "big@bytes.example"
    tok, stage, rep, rr = send(who, mail_params="SIZE=20480")
    check("SIZE=20480 over a 10k quota: 552 5.3.4 at MAIL FROM",
          stage == "mail" and rep.startswith("552 5.3.4 Message larger than the byte quota "
                                             "allows (" + BYTES_WHAT + who + ")"),
          expected="552 5.3.4 Message larger than the byte quota allows (%s%s)" %
          (BYTES_WHAT, who), got=(stage, rep))
    tok, stage, rep, rr = send(who, size=20480)
    check("20k without SIZE=: 552 5.3.4 at end of data",
          stage == "eod" and rep.startswith("552 5.3.4 Message larger than the byte quota"),
          got=(stage, rep))
    accepted("then a small message from the same sender (nothing was used)", send(who))


@suite.case
def exempt_rule_stops_broader_limits():
    rid = S["corp"]
    mark = st().ag.log_mark()
    for i in range(4):
        accepted("ceo message %d of 4" % (i + 1), send("ceo@corp.example"), sink=(i == 3))
    d = decision("ceo@corp.example", mark, "accept")
    check("the ceo's messages carry no rate_limit", d is not None and "rate_limit" not in d,
          got=d and d["line"])
    accepted("bob message 1", send("bob@corp.example"))
    accepted("bob message 2", send("bob@corp.example"))
    tempfailed("bob message 3", send("bob@corp.example"), "mail",
               "2 messages per 1h for sender-domain corp.example", retry=(1600, 1800))
    check_log("bob message 3", "bob@corp.example", mark,
              {"action": "tempfail", "rule": rid, "reason": "rate",
               "rate_limit": "%s.1:sender-domain=corp.example" % rid})
    accepted("the ceo still", send("ceo@corp.example"))
    check_used("domain pool", counters("--rule", rid),
               "%s.1:sender-domain=corp.example" % rid, 2)


@suite.case
def layered_sender_and_domain_limits():
    rs, rd = S["lay_sender"], S["lay_domain"]
    mark = st().ag.log_mark()
    accepted("a message 1", send("a@lay.example"))
    accepted("a message 2", send("a@lay.example"))
    tempfailed("a message 3 (per mailbox: 2)", send("a@lay.example"), "mail",
               "2 messages per 1h for sender a@lay.example")
    check_log("a message 3", "a@lay.example", mark,
              {"action": "tempfail", "rule": rs, "reason": "rate",
               "rate_limit": "%s.1:sender=a@lay.example" % rs})
    accepted("b message 1 (domain 3rd)", send("b@lay.example"))
    tempfailed("c message 1 (domain pool of 3 used)", send("c@lay.example"), "mail",
               "3 messages per 1h for sender-domain lay.example")
    check_log("c message 1", "c@lay.example", mark,
              {"action": "tempfail", "rule": rd, "reason": "rate",
               "rate_limit": "%s.1:sender-domain=lay.example" % rd})
    cs = counters()
    check_used("layered", cs, "%s.1:sender-domain=lay.example" % rd, 3)
    check_used("layered", cs, "%s.1:sender=a@lay.example" % rs, 2)
    check_used("layered", cs, "%s.1:sender=b@lay.example" % rs, 1)
    check_unused("c refused by the domain limit: its mailbox counter given back", cs,
                 "%s.1:sender=c@lay.example" % rs)


@suite.case
def pool_without_key():
    rid = S["pool"]
    mark = st().ag.log_mark()
    accepted("p1", send("p1@pool.example"))
    accepted("p2", send("p2@pool.example"))
    tempfailed("p3 (one pool for the rule)", send("p3@pool.example"), "mail",
               "2 messages per 1h")
    check_log("p3", "p3@pool.example", mark,
              {"action": "tempfail", "rule": rid, "rate_limit": "%s.1:pool" % rid})
    check_used("pool", counters("--rule", rid), "%s.1:pool" % rid, 2, remaining=0)


@suite.case
def rcpt_domain_key_decided_at_rcpt():
    rid = S["rdom"]
    res = send("x@rdom.example", ["u1@d1.example", "u2@d1.example", "u1@d2.example"])
    check("d1, d1, d2: all RCPT 250 (a messages limit counts once per message and domain)",
          all(x.startswith("250") for x in res[3]), got=res[3])
    accepted("first message", res)
    res = send("x@rdom.example", ["u3@d1.example", "u1@d3.example"])
    tempfailed("second message, d1 again", res, "rcpt",
               "1 message per 1h for rcpt-domain d1.example")
    check("second message: RCPT 1 (d1) 451, RCPT 2 (d3) 250",
          len(res[3]) == 2 and res[3][0].startswith("451 4.7.1") and
          res[3][1].startswith("250"), got=res[3])
    accepted("second message, for d3", res)
    cs = counters("--rule", rid)
    for dom in ("d1", "d2", "d3"):
        check_used("rcpt-domain", cs, "%s.1:rcpt-domain=%s.example" % (rid, dom), 1)


def tag_like(rule_key, sender):
    rid = S[rule_key]
    mark = st().ag.log_mark()
    m1 = accepted("message 1", send(sender))
    d1 = decision(sender, mark, "accept")
    check("message 1: no would=", d1 is not None and "would" not in d1, got=d1 and d1["line"])
    mark = st().ag.log_mark()
    m2 = accepted("message 2 (over the limit: accepted anyway)", send(sender))
    check_log("message 2", sender, mark,
              {"action": "accept", "dry_run": "yes", "would": "tempfail", "would_code": "4.7.1",
               "would_rule": rid, "would_reason": "rate",
               "rate_limit": "%s.1:sender=%s" % (rid, sender)}, absent=("code",))
    if m1 and m2:
        check_eq("message 2 has the same header fields as message 1 (nothing added)",
                 header_names(m2), header_names(m1))
        check("message 2 has no header mentioning a rate limit",
              not any(re.search(r"rate", n + v, re.I) for n, v in agtest.header_fields(m2)),
              got=agtest.header_fields(m2))
    accepted("message 3", send(sender), sink=False)


@suite.case
def on_limit_tag_accepts_and_logs():
    tag_like("tag", "t@tag.example")


@suite.case
def dry_run_rule_accepts_and_logs():
    tag_like("dry", "t@dry.example")


@suite.case
def tag_or_dry_run_rule_never_exempts():
    """man/authgatectl.8 (RATE LIMITS): a rule in dry run, or with
    --on-limit tag, counts and logs but never refuses, and never exempts."""
    for dom, how in (("dryex.example", "--dry-run"), ("tagex.example", "--on-limit tag")):
        rid = S[dom.split(".")[0] + "_dom"]
        who = "x@" + dom
        accepted("%s --exempt %s: message 1" % (who, how), send(who), sink=False)
        mark = st().ag.log_mark()
        text = tempfailed("%s --exempt %s: message 2 still under the domain limit" % (who, how),
                          send(who), "mail", "1 message per 1h for sender-domain " + dom)
        if text.startswith("451"):
            check_log("%s message 2" % who, who, mark, {"rule": rid, "reason": "rate"},
                      action="tempfail")


@suite.case
def rejected_at_end_of_data_gives_quota_back():
    rid = S["dkim_rate"]
    who = "u@dk.example"
    mark = st().ag.log_mark()
    s = session("198.51.100.7")
    toks = []
    for i in range(3):
        tok, stage, rep, rr = send(who, smtp=s)
        toks.append(tok)
        check("unsigned message %d of 3 (limit 2): DKIM's 550 5.7.20 at end of data" % (i + 1),
              stage == "eod" and rep.startswith("550 5.7.20"),
              expected=("eod", "550 5.7.20 ..."), got=(stage, rep))
    quit(s)
    check_log("unsigned message 3", who, mark, {"action": "reject", "code": "5.7.20"},
              absent=("rate_limit",))
    not_at_sink("the unsigned messages", *toks)
    check_unused("after 3 DKIM rejections", counters("--rule", rid),
                 "%s.1:sender=%s" % (rid, who))
    # max-size, during the body
    rid = S["maxsize"]
    who = "m@ms.example"
    for i in range(3):
        tok, stage, rep, rr = send(who, size=8000)
        check("8k message %d of 3 (max-size 5k, limit 2): 552 5.3.4 at end of data" % (i + 1),
              stage == "eod" and rep.startswith("552 5.3.4"), got=(stage, rep))
    check_unused("after 3 oversized messages", counters("--rule", rid),
                 "%s.1:sender=%s" % (rid, who))
    accepted("then a small one", send(who), sink=False)
    accepted("and another (2 of 2)", send(who), sink=False)
    tempfailed("and a third", send(who), "mail", "2 messages per 1h for sender " + who)


@suite.case
def aborted_transactions_give_quota_back():
    rid = S["abort"]
    who = "q@abort.example"
    key = "%s.1:sender=%s" % (rid, who)
    mark = st().ag.log_mark()
    s = st().pf.smtp()
    for i in range(2):
        r = reply(s.docmd("MAIL FROM:<%s>" % who))
        check("MAIL #%d (limit 1): 250" % (i + 1), r.startswith("250"), got=r)
        r = reply(s.docmd("RCPT TO:<bob@example.net>"))
        check("RCPT #%d: 250" % (i + 1), r.startswith("250"), got=r)
        r = reply(s.docmd("RSET"))
        check("RSET #%d: 250" % (i + 1), r.startswith("250"), got=r)
    # MAIL + RCPT, then QUIT
    r = reply(s.docmd("MAIL FROM:<%s>" % who))
    check("MAIL before QUIT: 250", r.startswith("250"), got=r)
    s.docmd("RCPT TO:<bob@example.net>")
    quit(s)
    # MAIL + RCPT + part of DATA, then the connection is lost
    s = st().pf.smtp()
    r = reply(s.docmd("MAIL FROM:<%s>" % who))
    check("MAIL before a lost connection: 250", r.startswith("250"), got=r)
    s.docmd("RCPT TO:<bob@example.net>")
    r = reply(s.docmd("DATA"))
    check("DATA: 354", r.startswith("354"), got=r)
    s.send(b"Subject: cut short\r\n\r\nhalf a message\r\n")
    s.close()
    # Postfix tells authgate about the QUIT and the lost connection after
    # the client is gone: wait until authgate has logged all 4 aborts.
    def aborts():
        ds = [d for d in st().ag.decisions(mark)
              if d.get("from") == "<%s>" % who and d.get("action") == "abort"]
        return len(ds) >= 4 and ds
    check("authgate logged 4 aborted transactions", agtest.wait_until(aborts, 15),
          got="\n".join(st().ag.log_lines()[mark:][-10:]))
    check_unused("after 4 aborted transactions", counters("--rule", rid), key)
    accepted("a full message after them", send(who))
    tempfailed("and a second one (limit 1)", send(who), "mail",
               "1 message per 1h for sender " + who)


@suite.case
def sasl_user_key():
    rid = S["sasl"]
    mark = st().ag.log_mark()
    s = session("203.0.113.5", login="alice")
    accepted("alice message 1", send("x1@sasl.example", smtp=s))
    accepted("alice message 2 (other sender, same user)", send("x2@sasl.example", smtp=s))
    tempfailed("alice message 3", send("x3@sasl.example", smtp=s), "mail",
               "2 messages per 1h for sasl-user alice")
    quit(s)
    check_log("alice message 3", "x3@sasl.example", mark,
              {"action": "tempfail", "rule": rid, "sasl_user": "alice",
               "rate_limit": "%s.1:sasl-user=alice" % rid})
    s = session("203.0.113.5", login="bob")
    accepted("bob from the same address", send("x3@sasl.example", smtp=s))
    quit(s)
    s = session("203.0.113.5")
    for i in range(3):
        accepted("no login (rule does not match) %d" % (i + 1), send("x4@sasl.example", smtp=s),
                 sink=False)
    quit(s)
    cs = counters("--rule", rid)
    check_used("sasl", cs, "%s.1:sasl-user=alice" % rid, 2)
    check_used("sasl", cs, "%s.1:sasl-user=bob" % rid, 1)


@suite.case
def on_limit_reject():
    rid = S["reject"]
    who = "r@rej.example"
    mark = st().ag.log_mark()
    accepted("message 1", send(who))
    tok, stage, rep, rr = send(who)
    want = "550 5.7.1 Rate limit exceeded: 1 message per 1h for sender " + who
    check("message 2: " + want, stage == "mail" and rep == want,
          expected=("mail", want), got=(stage, rep))
    check_log("message 2", who, mark,
              {"action": "reject", "code": "5.7.1", "rule": rid, "reason": "rate",
               "rate_limit": "%s.1:sender=%s" % (rid, who)})


suite.run()
