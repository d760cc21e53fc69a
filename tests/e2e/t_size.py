#!/usr/bin/python3
"""End to end, real Postfix -> authgate -> smtp-sink: message size limits
as the SMTP client sees them, and what reaches the next hop."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
from agtest import check, check_decision  # noqa: E402
from agpostfix import queued_id, reply  # noqa: E402

suite = agtest.Suite("e2e: size limits through Postfix", case_timeout=120)
S = {}


@suite.setup
def setup():
    agpostfix.require()
    agtest.require_authgate()
    st = S["st"] = agpostfix.Stack()
    ag = st.ag
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["small"] = ag.add_rule("--priority", "10", "--match", "sender-domain=small.example",
                             "--max-size", "10k")
    S["big"] = ag.add_rule("--priority", "10", "--match", "sender-domain=big.example",
                           "--max-size", "1M")
    S["default"] = ag.add_rule("--priority", "100", "--max-size", "100k",
                               "--comment", "site default")
    st.start()


def st():
    return S["st"]


@suite.case
def normal_message_reaches_sink():
    mark = st().ag.log_mark()
    tok, stage, rep, rr = st().send("alice@small.example", ["bob@example.net"], size=2000)
    check("client sees 250 at end of data", stage == "eod" and rep.startswith("250 "),
          expected="250 2.0.0 Ok: queued as ...", got=(stage, rep, rr))
    msg = st().sink.wait_for(tok)
    check("the message is at the sink", msg is not None)
    if msg:
        check("with its Subject", "Subject: " + tok in msg, got=msg[:1500])
        check("with its body", "Hello, this is a test message." in msg, got=msg[:1500])
        check("envelope sender kept", "X-Mail-Args: <alice@small.example>" in msg, got=msg[:600])
    qid = queued_id(rep)
    if qid:
        check_decision(st().ag, qid, "accept", since=mark,
                       what="authgate logs the Postfix queue id")


@suite.case
def size_param_over_limit_552_at_mail_from():
    s = st().pf.smtp()
    code, msg = s.docmd("MAIL FROM:<alice@small.example> SIZE=20000")
    text = reply((code, msg))
    check("MAIL FROM ... SIZE=20000 (limit 10k): 552 5.3.4", text.startswith("552 5.3.4"),
          expected="552 5.3.4 ...", got=text)
    s.rset()
    code, msg = s.docmd("MAIL FROM:<alice@small.example> SIZE=5000")
    check("SIZE=5000: 250", code == 250, got=reply((code, msg)))
    s.quit()
    check("Postfix logs a milter reject at MAIL",
          st().pf.wait_log("milter-reject: MAIL from"), got=agtest.tail(st().pf.maillog, 10))


@suite.case
def oversize_without_size_param_552_after_data():
    tok, stage, rep, rr = st().send("alice@small.example", ["bob@example.net"], size=20000)
    check("20 KB without SIZE=: 552 5.3.4 after DATA", stage == "eod" and rep.startswith("552 5.3.4"),
          expected=("eod", "552 5.3.4 ..."), got=(stage, rep, rr))
    if st().barrier():
        check("nothing at the sink", st().sink.find(tok) == [], got=st().sink.find(tok)[:1])
    qids = agtest.wait_until(lambda: st().pf.queue_ids_for(tok), 5)
    check("Postfix logs a milter reject at END-OF-MESSAGE for it",
          bool(qids) and st().pf.wait_log("%s: milter-reject: END-OF-MESSAGE" % qids[0]),
          got=agtest.tail(st().pf.maillog, 10))


@suite.case
def domain_rule_beats_default():
    tok, stage, rep, rr = st().send("alice@big.example", ["bob@example.net"], size=300 * 1024)
    check("300 KB from big.example (domain rule 1M beats default 100k): 250",
          stage == "eod" and rep.startswith("250 "), got=(stage, rep, rr))
    check("and it reaches the sink", st().sink.wait_for(tok) is not None)
    tok2, stage, rep, rr = st().send("alice@other.example", ["bob@example.net"], size=300 * 1024)
    check("the same from other.example (default 100k): 552 5.3.4",
          stage == "eod" and rep.startswith("552 5.3.4"), got=(stage, rep, rr))
    if st().barrier():
        check("which is not at the sink", st().sink.find(tok2) == [])


@suite.case
def size_param_validated_by_postfix_first():
    """Postfix checks SIZE= itself before the milter sees MAIL FROM: a
    malformed value gets Postfix's own 501 5.5.4, a value past what it can
    store its own 552 5.3.4 "file system imposed limit", one over
    message_size_limit its own 552 5.3.4 "fixed limit";
    authgate never sees these transactions."""
    mark = st().ag.log_mark()
    s = st().pf.smtp()
    for value, want, why in (("abc", "501 5.5.4", "Bad message size syntax"),
                             ("-1", "501 5.5.4", "Bad message size syntax"),
                             ("18446744073709551616", "552 5.3.4", "file system imposed limit"),
                             ("1" + "0" * 30, "552 5.3.4", "file system imposed limit"),
                             ("20000000", "552 5.3.4", "fixed limit")):
        text = reply(s.docmd("MAIL FROM:<alice@other.example> SIZE=%s" % value))
        check("SIZE=%s: Postfix answers %s" % (value[:24], want),
              text.startswith(want) and why in text, expected="%s ...%s" % (want, why), got=text)
        s.rset()
    s.quit()
    agtest.wait_until(lambda: False, 0.5)      # let a close-time log line appear
    seen = [d for d in st().ag.decisions(mark) if d.get("from") == "<alice@other.example>"]
    check("authgate logged no decision for them", seen == [], got=[d["line"] for d in seen])


suite.run()
