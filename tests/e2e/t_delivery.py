#!/usr/bin/python3
"""End to end: delivery through Postfix with authgate, rule changes while
everything runs, and authgate down (milter_default_action = tempfail)."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
from agtest import check, check_decision  # noqa: E402
from agpostfix import queued_id, reply  # noqa: E402

suite = agtest.Suite("e2e: delivery, live rules, milter down", case_timeout=120)
S = {}


@suite.setup
def setup():
    agpostfix.require()
    agtest.require_authgate()
    st = S["st"] = agpostfix.Stack()
    r = st.ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    st.start()


def st():
    return S["st"]


@suite.case
def plain_message_delivered_with_headers():
    mark = st().ag.log_mark()
    tok, stage, rep, rr = st().send("alice@example.org", ["bob@example.net"])
    check("250 at end of data", stage == "eod" and rep.startswith("250 "), got=(stage, rep, rr))
    msg = st().sink.wait_for(tok)
    check("message at the sink", msg is not None, fatal=True)
    check("Subject intact", "\nSubject: %s\n" % tok in msg.replace("\r\n", "\n"), got=msg[:1200])
    check("Message-ID intact", "Message-ID: <%s@test.invalid>" % tok in msg, got=msg[:1200])
    check("passed through Postfix", "by mx.test.invalid (Postfix)" in msg, got=msg[:1200])
    qid = queued_id(rep)
    check("Postfix gave a queue id", qid is not None, got=rep)
    if qid:
        check_decision(st().ag, qid, "accept", rule="-", reason="-", since=mark)


@suite.case
def rule_added_while_running_applies_without_restart():
    pid = st().ag.proc.pid

    def mail_reply():
        s = st().pf.smtp()
        try:
            return reply(s.docmd("MAIL FROM:<alice@live.example> SIZE=20000"))
        finally:
            s.quit()
    first = mail_reply()
    check("before: SIZE=20000 gets 250", first.startswith("250"), got=first)
    rid = st().ag.add_rule("--match", "sender-domain=live.example", "--max-size", "10k")
    t0 = time.monotonic()
    got = agtest.wait_until(lambda: (lambda r: r if r.startswith("552") else None)(mail_reply()),
                            10, 0.3)
    check("after authgatectl rule add: 552 5.3.4 within 10 s", got is not None and
          got.startswith("552 5.3.4"), got=got or mail_reply())
    agtest.diag("took effect after %.1fs" % (time.monotonic() - t0))
    check("same daemon process (no restart)", st().ag.proc.pid == pid and st().ag.alive())
    tok, stage, rep, rr = st().send("alice@live.example", ["bob@example.net"], size=20000)
    check("20 KB without SIZE=: 552 after DATA", stage == "eod" and rep.startswith("552 5.3.4"),
          got=(stage, rep))
    st().ag.del_rule(rid)
    got = agtest.wait_until(lambda: (lambda r: r if r.startswith("250") else None)(mail_reply()),
                            10, 0.3)
    check("after authgatectl rule del: 250 again within 10 s", got is not None)


@suite.case
def authgate_down_tempfails_then_delivers_after_restart():
    ag = st().ag
    rc = ag.stop()
    check("authgate stopped", not ag.alive(), got=rc)
    token = st().token("down")
    tok, stage, rep, rr = st().send("alice@example.org", ["bob@example.net"], token=token)
    refusal = rep
    if stage == "rcpt":
        refusal = next((x for x in rr if not x.startswith("2")), rr[-1])
    check("with authgate down Postfix answers 4xx", refusal[:1] == "4",
          expected="a 4xx reply (milter_default_action = tempfail)", got=(stage, rep, rr))
    ag.start()
    check("authgate restarted", ag.alive())
    if st().barrier():
        check("the refused message is not at the sink", st().sink.find(token) == [])
    tok2, stage, rep, rr = st().send("alice@example.org", ["bob@example.net"], token=token)
    check("the same message is accepted after the restart",
          stage == "eod" and rep.startswith("250"), got=(stage, rep, rr))
    msg = st().sink.wait_for(token)
    check("and reaches the sink", msg is not None)
    if msg:
        check("exactly once", len(st().sink.find("Subject: " + token)) == 1,
              got=len(st().sink.find("Subject: " + token)))


@suite.case
def many_messages_in_one_session():
    s = st().pf.smtp()
    toks = []
    for i in range(5):
        tok, stage, rep, rr = st().send("alice@example.org", ["bob@example.net"], smtp=s)
        check("message %d: 250" % (i + 1), stage == "eod" and rep.startswith("250"),
              got=(stage, rep))
        toks.append(tok)
    s.quit()
    missing = [t for t in toks if st().sink.wait_for(t, 15) is None]
    check("all 5 at the sink", missing == [], got=missing)


suite.run()
