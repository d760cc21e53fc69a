#!/usr/bin/python3
"""End to end: the recipient limit as the SMTP client sees it (452 4.5.3
on each extra RCPT) and the message delivered to the first recipients."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
from agtest import check, check_decision, check_eq  # noqa: E402
from agpostfix import queued_id  # noqa: E402

suite = agtest.Suite("e2e: recipient limit through Postfix", case_timeout=120)
S = {}


@suite.setup
def setup():
    agpostfix.require()
    agtest.require_authgate()
    st = S["st"] = agpostfix.Stack()
    r = st.ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["rule"] = st.ag.add_rule("--match", "sender-domain=rcpt.example", "--max-rcpts", "2")
    st.start()


@suite.case
def extra_recipients_get_452_first_two_delivered():
    st = S["st"]
    mark = st.ag.log_mark()
    rcpts = ["r1@example.net", "r2@example.net", "r3@example.net", "r4@example.net"]
    tok, stage, rep, rr = st.send("alice@rcpt.example", rcpts)
    check_eq("4 RCPT replies", len(rr), 4)
    check("RCPT 1 and 2: 250", all(x.startswith("250") for x in rr[:2]), got=rr)
    check("RCPT 3 and 4: 452 4.5.3", all(x.startswith("452 4.5.3") for x in rr[2:]),
          expected="452 4.5.3 ...", got=rr)
    check("DATA accepted for the first two", stage == "eod" and rep.startswith("250"),
          got=(stage, rep))
    msg = st.sink.wait_for(tok)
    check("the message reaches the sink", msg is not None, fatal=True)
    got = re.findall(r"^X-Rcpt-Args: <([^>]*)>", msg, re.M)
    check_eq("delivered to exactly r1 and r2", sorted(got), ["r1@example.net", "r2@example.net"],
             detail=msg[:800])
    qid = queued_id(rep)
    if qid:
        d = check_decision(st.ag, qid, "accept", since=mark)
        if d:
            check_eq("log counts 2 recipients", d.get("rcpts"), "2")


@suite.case
def within_limit_all_delivered():
    st = S["st"]
    tok, stage, rep, rr = st.send("alice@rcpt.example", ["r1@example.net", "r2@example.net"])
    check("2 recipients: all 250", all(x.startswith("250") for x in rr), got=rr)
    msg = st.sink.wait_for(tok)
    check("delivered", msg is not None and len(re.findall(r"^X-Rcpt-Args:", msg, re.M)) == 2,
          got=msg and msg[:600])


@suite.case
def other_sender_not_limited():
    st = S["st"]
    rcpts = ["r%d@example.net" % i for i in range(1, 6)]
    tok, stage, rep, rr = st.send("alice@other.example", rcpts)
    check("5 recipients from a sender without a rule: all 250",
          all(x.startswith("250") for x in rr), got=rr)
    msg = st.sink.wait_for(tok)
    check("all 5 delivered", msg is not None and len(re.findall(r"^X-Rcpt-Args:", msg, re.M)) == 5,
          got=msg and msg[:800])


@suite.case
def limit_is_per_message():
    st = S["st"]
    s = st.pf.smtp()
    for i in range(2):
        tok, stage, rep, rr = st.send("alice@rcpt.example", ["a%d@example.net" % i,
                                                             "b%d@example.net" % i], smtp=s)
        check("message %d on one connection: both RCPTs 250" % (i + 1),
              all(x.startswith("250") for x in rr), got=rr)
    s.quit()


suite.run()
