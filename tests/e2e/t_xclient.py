#!/usr/bin/python3
"""End to end: XCLIENT gives Postfix another client address (IPv6) and a
SASL login; authgate's sasl-user, authenticated and client rules see them."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
from agtest import check  # noqa: E402
from agpostfix import reply  # noqa: E402

suite = agtest.Suite("e2e: XCLIENT, IPv6 clients and SASL users", case_timeout=120)
S = {}


@suite.setup
def setup():
    agpostfix.require()
    agtest.require_authgate()
    st = S["st"] = agpostfix.Stack()
    r = st.ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["sasl"] = st.ag.add_rule("--match", "sasl-user=xuser", "--max-size", "5k")
    S["net6"] = st.ag.add_rule("--match", "client=2001:db8:1::/48", "--max-rcpts", "1")
    S["auth"] = st.ag.add_rule("--match", "authenticated=yes", "--match",
                               "sender-domain=auth.example", "--max-size", "5k")
    S["untrusted"] = st.ag.add_rule("--match", "trusted=no", "--match",
                                    "sender-domain=trust.example", "--max-rcpts", "1")
    st.start()


def session(addr, login=None, helo="h6.example", name="client6.example"):
    s = S["st"].pf.smtp()
    cmd = "XCLIENT ADDR=%s NAME=%s HELO=%s" % (addr, name, helo)
    if login:
        cmd += " LOGIN=%s" % login
    r = reply(s.docmd(cmd))
    check("XCLIENT accepted (220)", r.startswith("220"), got=r, fatal=True)
    s.ehlo(helo)
    return s


@suite.case
def ipv6_client_with_sasl_login_hits_sasl_user_rule():
    st = S["st"]
    mark = st.ag.log_mark()
    s = session("IPV6:2001:db8::10", login="xuser")
    r = reply(s.docmd("MAIL FROM:<alice@example.org> SIZE=20000"))
    check("LOGIN=xuser, SIZE=20000 over its 5k: 552 5.3.4", r.startswith("552 5.3.4"), got=r)
    s.quit()
    ds = st.ag.wait_decision(since=mark)
    check("authgate logged the IPv6 client and the rule",
          any("2001:db8::10" in d.get("client", "") and d.get("rule") == S["sasl"] for d in ds),
          expected="client=client6.example[2001:db8::10] ... rule=%s" % S["sasl"],
          got=[d["line"] for d in ds])


@suite.case
def other_sasl_user_not_limited_and_delivered():
    st = S["st"]
    s = session("IPV6:2001:db8::10", login="someone")
    tok, stage, rep, rr = st.send("alice@example.org", ["bob@example.net"], size=20000, smtp=s)
    s.quit()
    check("LOGIN=someone, 20 KB: 250", stage == "eod" and rep.startswith("250"), got=(stage, rep))
    msg = st.sink.wait_for(tok)
    check("delivered", msg is not None)
    if msg:
        check("Postfix's Received shows the XCLIENT IPv6 address", "IPv6:2001:db8::10" in msg,
              got=msg[:1000])


@suite.case
def ipv6_client_cidr_rule():
    st = S["st"]
    s = session("IPV6:2001:db8:1::5")
    tok, stage, rep, rr = st.send("alice@example.org", ["r1@example.net", "r2@example.net"], smtp=s)
    s.quit()
    check("client 2001:db8:1::5 in 2001:db8:1::/48 (max-rcpts 1): RCPT 1 250, RCPT 2 452 4.5.3",
          len(rr) == 2 and rr[0].startswith("250") and rr[1].startswith("452 4.5.3"), got=rr)
    s = session("IPV6:2001:db8:2::5")
    tok, stage, rep, rr = st.send("alice@example.org", ["r1@example.net", "r2@example.net"], smtp=s)
    s.quit()
    check("client 2001:db8:2::5 outside it: both 250", all(x.startswith("250") for x in rr), got=rr)


@suite.case
def authenticated_field():
    s = session("192.0.2.10", login="anyone", helo="h4.example", name="client4.example")
    r = reply(s.docmd("MAIL FROM:<alice@auth.example> SIZE=20000"))
    check("authenticated=yes rule: SASL login + SIZE=20000: 552", r.startswith("552 5.3.4"), got=r)
    s.quit()
    s = session("192.0.2.10", helo="h4.example", name="client4.example")
    r = reply(s.docmd("MAIL FROM:<alice@auth.example> SIZE=20000"))
    check("no login: 250", r.startswith("250"), got=r)
    s.quit()


@suite.case
def trusted_field():
    st = S["st"]
    s = session("192.0.2.10", helo="h4.example", name="client4.example")
    tok, stage, rep, rr = st.send("alice@trust.example", ["r1@example.net", "r2@example.net"],
                                  smtp=s)
    s.quit()
    check("192.0.2.10 is not in TrustedNetworks: trusted=no rule limits to 1 RCPT",
          len(rr) == 2 and rr[1].startswith("452 4.5.3"), got=rr)
    tok, stage, rep, rr = st.send("alice@trust.example", ["r1@example.net", "r2@example.net"])
    check("from 127.0.0.1 (trusted): both RCPT 250", all(x.startswith("250") for x in rr), got=rr)


suite.run()
