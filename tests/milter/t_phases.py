#!/usr/bin/python3
"""The daemon over the milter protocol: every phase of normal mail, several
messages and aborts on one connection, odd clients (unix socket, unknown
family, IPv6, no macros), odd MAIL FROM parameters."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq, check_decision, new_qid, open_session  # noqa: E402
import milterclient  # noqa: E402

suite = agtest.Suite("milter: phases and sessions")
S = {}


@suite.setup
def setup():
    agtest.require_authgate()
    S["ag"] = agtest.Authgate(agtest.tmpdir("ag")).start()


def ag():
    return S["ag"]


def message(subject="phases"):
    return agtest.make_message(subject)


@suite.case
def negotiation_is_version_6():
    c = ag().client()
    ver, actions, proto = c.negotiate()
    check_eq("filter answers OPTNEG with version 6", ver, 6)
    check("filter asks only for actions that were offered",
          actions & ~milterclient.ALL_ACTIONS == 0, got=hex(actions))
    check("filter asks only for protocol steps that were offered",
          proto & ~milterclient.POSTFIX_PROTOCOL == 0, got=hex(proto))
    c.close()


@suite.case
def normal_message_every_phase_then_accept():
    mark = ag().log_mark()
    c = ag().client()
    c.negotiate()
    qid = new_qid()
    c.set_queue_id(qid)
    steps = [("connect", lambda: c.connect("client.example", "4", 40000, "192.0.2.10")),
             ("helo", lambda: c.helo("client.example")),
             ("mail", lambda: c.mail("<alice@example.org>", "SIZE=400")),
             ("rcpt", lambda: c.rcpt("<bob@example.net>")),
             ("data", lambda: c.data())]
    headers, body = message("every phase")
    for name, value in headers:
        steps.append(("header " + name, lambda n=name, v=value: c.header(n, v)))
    steps.append(("eoh", lambda: c.eoh()))
    steps.append(("body", lambda: c.body(body)))
    for name, fn in steps:
        r = fn()
        check("%s: not refused" % name, r.passes, expected="continue", got=r, fatal=True)
    mods, r = c.eom()
    check("eom: accepted", r.kind in ("accept", "continue"), expected="accept", got=r)
    check("eom: modifications are header edits only",
          all(m[0] in ("addheader", "insheader", "chgheader") for m in mods), got=mods)
    c.quit()
    d = check_decision(ag(), qid, "accept", rule="-", reason="-", since=mark)
    if d:
        check("log names the client", "192.0.2.10" in d.get("client", ""), got=d["line"])
        check_eq("log has the sender", d.get("from"), "<alice@example.org>")
        check_eq("log counts 1 recipient", d.get("rcpts"), "1")
        check("log has the helo", d.get("helo") == "client.example", got=d["line"])


@suite.case
def several_messages_on_one_connection():
    mark = ag().log_mark()
    c = open_session(ag())
    qids = [new_qid() for _ in range(3)]
    for i, qid in enumerate(qids):
        h, b = agtest.make_message("msg %d" % i)
        t = c.transaction("<s%d@example.org>" % i, ["<r%d@example.net>" % i], h, b, queue_id=qid)
        check("message %d accepted" % (i + 1), t.accepted, got=t)
    c.quit()
    ds = ag().wait_decision(since=mark, count=3)
    got = [d["qid"] for d in ds]
    check_eq("one log line per message, in order", got, qids)
    check("each of them action=accept", all(d.get("action") == "accept" for d in ds),
          got=[d["line"] for d in ds])
    check_eq("each line has its own sender", [d.get("from") for d in ds],
             ["<s0@example.org>", "<s1@example.org>", "<s2@example.org>"])


@suite.case
def abort_mid_message_then_second_message():
    mark = ag().log_mark()
    c = open_session(ag())
    q1, q2 = new_qid(), new_qid()
    c.set_queue_id(q1)
    check("first MAIL goes on", c.mail("<first@example.org>").passes)
    check("first RCPT goes on", c.rcpt("<bob@example.net>").passes)
    c.data()
    c.header("Subject", "aborted")
    c.abort()
    h, b = agtest.make_message("after abort")
    t = c.transaction("<second@example.org>", ["<bob@example.net>"], h, b, queue_id=q2)
    check("second message on the same connection accepted", t.accepted, got=t)
    c.quit()
    d = check_decision(ag(), q2, "accept", since=mark)
    if d:
        check_eq("the second message's line has its own sender", d.get("from"),
                 "<second@example.org>")
    firsts = [d for d in ag().decisions(mark) if d["qid"] == q1]
    check("the aborted transaction is not logged as accepted",
          all(d.get("action") != "accept" for d in firsts), got=[d["line"] for d in firsts])


@suite.case
def abort_then_quit_and_rcpt_only():
    c = open_session(ag())
    c.mail("<x@example.org>")
    c.abort()
    c.mail("<y@example.org>")
    c.rcpt("<z@example.net>")
    c.abort()
    c.quit()
    check("daemon still running after aborted transactions", ag().alive())
    c = open_session(ag(), what="next session")
    h, b = message()
    check("next session accepted", c.transaction(headers=h, body=b).accepted)
    c.quit()


@suite.case
def close_before_connect():
    for i in range(3):
        c = ag().client()
        c.negotiate()
        c.close()                       # negotiated, then gone
    c = ag().client()
    c.close()                           # not even negotiated
    c = ag().client()
    c.negotiate()
    c.connect()
    c.close()                           # connect, then gone without QUIT
    c = open_session(ag())
    c.mail("<alice@example.org>")
    c.rcpt("<bob@example.net>")
    c.data()
    c.header("Subject", "cut")
    c.close()                           # gone mid-message
    check("daemon survives clients that vanish", ag().alive())
    c = open_session(ag(), what="next session")
    h, b = message()
    t = c.transaction(headers=h, body=b)
    check("the next client is served", t.accepted, got=t)
    c.quit()


@suite.case
def unix_socket_client_family_L():
    mark = ag().log_mark()
    c = open_session(ag(), family="L", address="/var/spool/postfix/public/submission",
                     hostname="localhost", port=0)
    qid = new_qid()
    h, b = message("family L")
    t = c.transaction(headers=h, body=b, queue_id=qid)
    check("message from a unix-socket client accepted", t.accepted, got=t)
    c.quit()
    check_decision(ag(), qid, "accept", since=mark)


@suite.case
def unknown_family_client_no_address():
    mark = ag().log_mark()
    c = open_session(ag(), family="U", hostname="unknown")
    qid = new_qid()
    h, b = message("family U")
    t = c.transaction(headers=h, body=b, queue_id=qid)
    check("message from a client with no address accepted", t.accepted, got=t)
    c.quit()
    check_decision(ag(), qid, "accept", since=mark)


@suite.case
def ipv6_client_address():
    mark = ag().log_mark()
    c = open_session(ag(), family="6", address="2001:db8::10", hostname="client6.example")
    qid = new_qid()
    h, b = message("ipv6")
    t = c.transaction(headers=h, body=b, queue_id=qid)
    check("message from an IPv6 client accepted", t.accepted, got=t)
    c.quit()
    d = check_decision(ag(), qid, "accept", since=mark)
    if d:
        check("log shows the IPv6 address", "2001:db8::10" in d.get("client", ""),
              expected="client=client6.example[2001:db8::10]", got=d["line"])


@suite.case
def missing_macros():
    mark = ag().log_mark()
    c = ag().client()
    c.no_macros()                       # no j, no i, no {client_addr}, nothing
    c.negotiate()
    check("connect without macros goes on", c.connect().passes)
    check("helo without macros goes on", c.helo().passes)
    h, b = message("no macros")
    t = c.transaction(headers=h, body=b)
    check("message without any macro accepted", t.accepted, got=t)
    c.quit()
    ds = ag().wait_decision(since=mark)
    check("logged with NOQUEUE (no queue id known)",
          any(d["qid"] == "NOQUEUE" and d.get("action") == "accept" for d in ds),
          expected="NOQUEUE: client=... action=accept", got=[d["line"] for d in ds])


@suite.case
def odd_mail_from_parameters():
    cases = [("unknown parameters", ["FOO=bar", "XYZZY", "X-TEST=1=2"]),
             ("an empty parameter", [""]),
             ("100 parameters", ["P%d=v%d" % (i, i) for i in range(100)]),
             ("BODY=8BITMIME", ["BODY=8BITMIME"]),
             ("BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID", ["BODY=8BITMIME", "SMTPUTF8",
                                                        "RET=HDRS", "ENVID=abc"]),
             ("null sender", None)]
    c = open_session(ag())
    for label, args in cases:
        mark = ag().log_mark()
        qid = new_qid()
        h, b = message(label)
        sender = "<>" if args is None else "<alice@example.org>"
        t = c.transaction(sender, ["<bob@example.net>"], h, b, mail_args=args or (),
                          queue_id=qid)
        check("MAIL FROM with %s: accepted" % label, t.accepted, got=t)
        check_decision(ag(), qid, "accept", since=mark, what="%s: log line" % label)
    c.quit()


@suite.case
def commands_out_of_order():
    """libmilter ignores a command that is out of order (it logs and sends
    no reply; the MTA then applies its milter timeout and tempfails).  So:
    no accept and no reject, no crash, and the connection still works."""
    c = open_session(ag())
    for what, send in (("end of message without MAIL", lambda: c.send(milterclient.SMFIC_BODYEOB)),
                       ("RCPT without MAIL", lambda: c.send(milterclient.SMFIC_RCPT, b"<x@example.net>\0")),
                       ("header without MAIL", lambda: c.send(milterclient.SMFIC_HEADER, b"Subject\0x\0")),
                       ("body without MAIL", lambda: c.send(milterclient.SMFIC_BODY, b"x\r\n"))):
        send()
        r = c.poll_reply(timeout=1)
        ok = r in ("timeout", "closed") or (not isinstance(r, str) and r.kind == "tempfail")
        check("%s: tempfail or ignored, never accepted or rejected" % what, ok,
              expected="tempfail reply, or no reply", got=r)
        if r == "closed":
            c = open_session(ag(), what="reconnect")
    h, b = message("after out-of-order commands")
    t = c.transaction(headers=h, body=b)
    check("a normal message after them is accepted", t.accepted, got=t)
    c.quit()
    check("daemon still running", ag().alive())


@suite.case
def body_in_many_chunks():
    c = open_session(ag())
    h, b = agtest.make_message("big", size=300 * 1024)
    qid = new_qid()
    mark = ag().log_mark()
    t = c.transaction(headers=h, body=b, queue_id=qid)
    check("300 KB message in 64 KB chunks accepted (no limit set)", t.accepted, got=t)
    c.quit()
    d = check_decision(ag(), qid, "accept", since=mark)
    if d:
        try:
            size = int(d.get("size", "0"))
        except ValueError:
            size = -1
        check("log size counts the whole message", size >= len(b),
              expected=">= %d" % len(b), got=d["line"])


@suite.case
def garbage_bytes_close_only_that_connection():
    good = open_session(ag(), what="bystander")
    qid = new_qid()
    good.set_queue_id(qid)
    check("bystander MAIL goes on", good.mail("<alice@example.org>").passes)
    junk = [b"GET / HTTP/1.0\r\n\r\n",                       # length 0x47455420
            b"\x00\x00\x00\x05Zjunk",                       # unknown command
            b"\xff\xff\xff\xff" + b"x" * 64,                # 4 GB length
            bytes(range(256))]
    for i, data in enumerate(junk):
        bad = ag().client()
        try:
            bad.send_raw(data)
            closed = bad.is_closed(timeout=5)
        except OSError:
            closed = True
        check("garbage no. %d: that connection is closed" % (i + 1), closed,
              got="still open after 5s")
        bad.close()
    # A zero-length packet: libmilter reads on (no close to assert), the
    # daemon must survive it.
    bad = ag().client()
    bad.send_raw(b"\x00\x00\x00\x00" + b"\x00\x00\x00\x01")
    bad.close()
    # And garbage in the middle of a negotiated session.
    bad = open_session(ag(), what="session turned bad")
    bad.send_raw(b"\x00\x00\x00\x03M\xff")   # MAIL with an unterminated argument
    try:
        bad.is_closed(timeout=2)
    except OSError:
        pass
    bad.close()
    check("daemon still running", ag().alive())
    check("bystander RCPT goes on", good.rcpt("<bob@example.net>").passes)
    good.data()
    h, b = message("bystander")
    for k, v in h:
        good.header(k, v)
    good.eoh()
    good.body(b)
    mods, r = good.eom()
    check("bystander's message accepted", r.kind in ("accept", "continue"), got=r)
    good.quit()


@suite.case
def end_of_message_over_tcp_is_not_held_by_nagle():
    """The edits and the verdict of end of message are separate writes.
    With Nagle's algorithm on the daemon's TCP socket the verdict waited
    for the client's delayed ACK of the edits: 40 ms a message."""
    import time
    c = ag().client()
    c.session()
    took, nmods = [], []
    for i in range(15):
        t = c.transaction(headers=message("nagle %d" % i)[0],
                          body=message()[1])
        check("message %d accepted" % i, t.final.kind in ("accept", "continue"),
              got=t.final)
        t0 = time.monotonic()
        c.mail("<alice@example.org>")
        c.rcpt("<bob@example.net>")
        c.data()
        for k, v in message("nagle timed %d" % i)[0]:
            c.header(k, v)
        c.eoh()
        c.body(message()[1])
        start = time.monotonic()
        mods, r = c.eom()
        took.append(time.monotonic() - start)
        nmods.append(len(mods))
        check("timed message %d accepted" % i, r.kind in ("accept", "continue"), got=r)
    check("end of message came with header edits (more than one write)",
          min(nmods) >= 1, got=nmods)
    took.sort()
    check("median end-of-message reply under 15 ms over TCP",
          took[len(took) // 2] < 0.015, got=["%.1f ms" % (x * 1000) for x in took])
    c.quit()


suite.run()
