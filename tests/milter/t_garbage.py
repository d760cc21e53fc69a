#!/usr/bin/python3
"""Garbage on the milter socket: random bytes, other protocols (HTTP,
TLS), absurd length prefixes (2 GB, 4 GB), truncated packets, unknown
commands, malformed arguments, commands out of order.  For each, only that
connection is affected: it is closed (at once, or after MilterTimeout when
it stalls mid-command), or the command is ignored or answered; a
well-behaved session open on another connection at the same time
completes normally; and at the end the daemon's open files and threads are
back to what they were, its memory near it.

libmilter reads the protocol: a packet longer than 65,535 bytes of data,
an unknown command or a malformed argument ends the connection; a command
out of order is ignored (no reply: the MTA would time out and apply
milter_default_action).  tests/milter/t_phases.py has the first garbage
cases; this file has the rest.
"""

import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq, diag, idle_stats, open_session, proc_stats  # noqa: E402
import milterclient  # noqa: E402

SANITIZED = bool(os.environ.get("AG_SANITIZED"))
TIMEOUT_S = 2                       # MilterTimeout of the daemon under test
SLACK = 4 if SANITIZED else 2       # seconds allowed past it
S = {}
suite = agtest.Suite("milter: garbage on the socket", case_timeout=60)


def pkt(cmd, data=b""):
    return struct.pack("!I", len(data) + 1) + cmd + data


@suite.setup
def setup():
    agtest.require_authgate()
    ag = S["ag"] = agtest.Authgate(agtest.tmpdir("ag"),
                                   conf={"MilterTimeout": str(TIMEOUT_S * 1000)}).start()
    # warm up (first connections allocate libmilter's and our caches)
    for i in range(5):
        c = open_session(ag, what="warm-up %d" % i)
        h, b = agtest.make_message("warm-up")
        check("warm-up message %d accepted" % i, c.transaction(headers=h, body=b).accepted)
        c.quit()
    time.sleep(0.5)
    S["base"] = idle_stats(ag.proc.pid)
    diag("baseline: %s" % S["base"])


def ag():
    return S["ag"]


# ---- the well-behaved session beside each piece of garbage ---------------

def bystander():
    """A session that has sent MAIL, RCPT, DATA and two headers."""
    c = open_session(ag(), what="bystander")
    h, b = agtest.make_message("bystander")
    check("bystander: MAIL goes on", c.mail("<alice@example.org>").passes, fatal=True)
    check("bystander: RCPT goes on", c.rcpt("<bob@example.net>").passes, fatal=True)
    c.data()
    for k, v in h[:2]:
        c.header(k, v)
    return c, h[2:], b


def bystander_finishes(by):
    c, rest, body = by
    try:
        for k, v in rest:
            c.header(k, v)
        c.eoh()
        c.body(body)
        mods, r = c.eom()
    except milterclient.MilterError as e:
        r = "error: %s" % e
    check("the session on another connection completes: accepted",
          not isinstance(r, str) and r.kind in ("accept", "continue"), got=r)
    c.quit()


# ---- what the garbage connection sees ---------------------------------------

def outcome(c, wait):
    """('closed', seconds) when the daemon closes the connection within
    WAIT seconds, ('reply', Reply) when it answers, ('open', seconds)
    when neither happens."""
    t0 = time.monotonic()
    c.sock.settimeout(wait)
    try:
        data = c.sock.recv(4)
        if not data:
            return "closed", time.monotonic() - t0
        c.sock.settimeout(5)
        while len(data) < 4:
            more = c.sock.recv(4 - len(data))
            if not more:
                return "closed", time.monotonic() - t0
            data += more
        (n,) = struct.unpack("!I", data)
        body = c._recv_exact(n) if 0 < n <= milterclient.MAX_REPLY else b"?"
        return "reply", milterclient.Reply(body[:1], body[1:])
    except socket.timeout:
        return "open", time.monotonic() - t0
    except (ConnectionResetError, BrokenPipeError, milterclient.Closed):
        return "closed", time.monotonic() - t0


def send(c, data):
    try:
        c.send_raw(data)
        return True
    except OSError:
        return False     # closed already: what the outcome will say


def closed_at_once(label, data, state="raw"):
    """DATA on a new connection (STATE raw), after OPTNEG only (optneg),
    or in a session after HELO (session): closed within 3 s."""
    by = bystander()
    if state == "session":
        c = open_session(ag(), what=label)
    else:
        c = ag().client()
        if state == "optneg":
            c.negotiate()
    send(c, data)
    what, v = outcome(c, 3 + SLACK)
    check("%s: that connection is closed at once" % label, what == "closed",
          expected="closed within %ds" % (3 + SLACK), got=(what, v))
    c.close()
    bystander_finishes(by)


def closed_by_timeout(label, data, session=False):
    """DATA stalls mid-command: closed after MilterTimeout, not before."""
    by = bystander()
    c = open_session(ag(), what=label) if session else ag().client()
    send(c, data)
    what, v = outcome(c, TIMEOUT_S + SLACK + 1)
    check("%s: closed after MilterTimeout (%ds)" % (label, TIMEOUT_S),
          what == "closed" and TIMEOUT_S - 0.5 <= v <= TIMEOUT_S + SLACK,
          expected="closed %.1f-%ds after" % (TIMEOUT_S - 0.5, TIMEOUT_S + SLACK),
          got=(what, v))
    c.close()
    bystander_finishes(by)


# ---- the cases ----------------------------------------------------------------

@suite.case
def random_bytes():
    for seed in (1, 2, 3):
        data = random.Random(seed).randbytes(4096)
        (n,) = struct.unpack("!I", data[:4])
        closed_at_once("4 KB of random bytes (seed %d, length prefix %d)" % (seed, n), data)


@suite.case
def random_packets_with_plausible_lengths():
    """Well-framed packets (length <= 64 KB) with random commands and
    random contents: whatever libmilter makes of them, the connection
    ends, at the latest by the timeout, and nobody else notices."""
    for seed in (4, 5, 6):
        rnd = random.Random(seed)
        data = b"".join(pkt(bytes([rnd.randrange(32, 127)]), rnd.randbytes(rnd.randrange(0, 300)))
                        for _ in range(20))
        by = bystander()
        c = ag().client()
        send(c, data)
        t0 = time.monotonic()
        ended = False
        while time.monotonic() - t0 < TIMEOUT_S + SLACK + 1 and not ended:
            what, v = outcome(c, TIMEOUT_S + SLACK + 1)
            ended = what == "closed"
            if what == "open":
                break
        check("20 random packets (seed %d): connection ended by the daemon" % seed, ended,
              expected="closed within %ds" % (TIMEOUT_S + SLACK + 1), got=(what, v))
        c.close()
        bystander_finishes(by)


@suite.case
def other_protocols():
    closed_at_once("an HTTP GET (length prefix 'GET ' = 1.2 GB)",
                   b"GET / HTTP/1.1\r\nHost: mx.example\r\n\r\n")
    closed_at_once("an HTTP POST with a body",
                   b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    closed_at_once("a TLS ClientHello",
                   bytes.fromhex("16030100a5010000a10303") + bytes(32) + b"\x00\x00\x02\x13\x01")
    closed_at_once("an SMTP greeting", b"220 mx.example ESMTP\r\nEHLO x\r\n")


@suite.case
def absurd_length_prefixes():
    closed_at_once("a 2 GB length prefix", struct.pack("!I", 0x80000000) + b"O")
    closed_at_once("a 2 GB length prefix and 100 KB of data",
                   struct.pack("!I", 0x80000000) + b"B" + b"x" * 100000)
    closed_at_once("a zero length prefix (then an OPTNEG)",
                   b"\0\0\0\0" + pkt(b"O", struct.pack("!III", 6, 0x1ff, 0x1fffff)))
    closed_at_once("a 4 GB length prefix", b"\xff\xff\xff\xff" + b"B" + b"x" * 64)
    closed_at_once("one byte over the largest packet (65,536 bytes of data)",
                   struct.pack("!I", 65537) + b"B" + b"x" * 65536, state="session")
    # the largest packet libmilter takes is not garbage: a body chunk of
    # 65,535 bytes goes on
    c = open_session(ag(), what="largest packet")
    c.mail()
    c.rcpt()
    c.data()
    c.eoh()
    r = c.body(b"x" * 65535)
    check("the largest packet (a 65,535-byte body chunk) is taken", r.passes, got=r)
    c.close()


@suite.case
def truncated_packets():
    closed_by_timeout("2 bytes of a length prefix, then silence", b"\x00\x00")
    closed_by_timeout("a zero length prefix, then silence", b"\0\0\0\0")
    closed_by_timeout("a length prefix of 100 and 10 bytes, then silence",
                      struct.pack("!I", 100) + b"O" + b"x" * 9)
    closed_by_timeout("half a MAIL packet in a session, then silence",
                      struct.pack("!I", 40) + b"M<alice@exa", session=True)
    # the client goes away in the middle of a packet: nothing to wait for
    by = bystander()
    for data in (b"\x00\x00\x00", struct.pack("!I", 100) + b"O" + b"x" * 9):
        c = ag().client()
        send(c, data)
        c.close()
    c = open_session(ag(), what="cut mid-header")
    c.mail()
    c.rcpt()
    c.data()
    send(c, struct.pack("!I", 5000) + b"L" + b"Subject\0" + b"y" * 100)
    c.close()
    check("daemon running after clients that vanished mid-packet", ag().alive())
    bystander_finishes(by)


@suite.case
def unknown_commands():
    closed_at_once("unknown command Z before negotiation", pkt(b"Z", b"junk"))
    closed_at_once("unknown command Z in a session", pkt(b"Z", b"junk"), state="session")
    closed_at_once("unknown command 0x00 in a session", pkt(b"\x00"), state="session")
    closed_at_once("unknown command 0xff in a session", pkt(b"\xff", b"x" * 10), state="session")


@suite.case
def malformed_arguments():
    """libmilter checks the arguments of each command it parses; a
    malformed one ends the connection before authgate sees it."""
    closed_at_once("OPTNEG too short", pkt(b"O", b"\x00\x00"))
    closed_at_once("OPTNEG version 1", pkt(b"O", struct.pack("!III", 1, 0x1ff, 0x1fffff)))
    for label, data in (("CONNECT without arguments", pkt(b"C")),
                        ("CONNECT without a NUL", pkt(b"C", b"hostname")),
                        ("CONNECT family 4, no port", pkt(b"C", b"h\x004")),
                        ("CONNECT family 4, bad address", pkt(b"C", b"h\x004\x00\x19bad\x00")),
                        ("CONNECT family X", pkt(b"C", b"h\x00X\x00\x19a\x00"))):
        closed_at_once(label, data, state="optneg")
    closed_at_once("HELO without an argument", pkt(b"H"), state="session")
    closed_at_once("MAIL without an argument", pkt(b"M"), state="session")
    closed_at_once("MAIL without a NUL", pkt(b"M", b"<a@example.org>"), state="session")
    closed_at_once("a MACRO packet without a stage", pkt(b"D"), state="session")
    closed_at_once("QUIT_NC, then garbage", pkt(b"K") + b"\xff" * 8, state="session")
    # the empty sender is not malformed for libmilter: authgate answers
    c = open_session(ag(), what="MAIL with an empty argument")
    send(c, pkt(b"M", b"\0"))
    what, r = outcome(c, 3 + SLACK)
    check("MAIL with an empty argument: 501 5.1.7 from authgate",
          what == "reply" and r.code == "501" and r.xcode == "5.1.7", got=(what, r))
    c.close()


@suite.case
def commands_out_of_order():
    """libmilter ignores a command that its state machine does not allow
    (no reply; the MTA would time out); the connection stays usable."""
    by = bystander()
    for label, data in (("end of message before MAIL", pkt(b"E")),
                        ("header before MAIL", pkt(b"L", b"Subject\0x\0")),
                        ("end of headers before MAIL", pkt(b"N")),
                        ("CONNECT before OPTNEG", None)):
        if data is None:
            c = ag().client()
            send(c, pkt(b"C", b"h\x004\x00\x19192.0.2.1\x00"))
        else:
            c = open_session(ag(), what=label)
            send(c, data)
        what, v = outcome(c, 1)
        check("%s: no answer (ignored), connection open" % label, what == "open",
              expected="no reply within 1 s", got=(what, v))
        if data is not None:
            h, b = agtest.make_message("after " + label)
            t = c.transaction(headers=h, body=b)
            check("%s: a transaction after it on the same connection is accepted" % label,
                  t.accepted, got=t)
        c.close()
    bystander_finishes(by)


@suite.case
def body_before_headers_and_late_header():
    """Orders libmilter lets through reach authgate, which copes; one it
    does not (a header after the body) aborts the transaction there."""
    mark = ag().log_mark()
    c = open_session(ag(), what="body before headers")
    qid = agtest.new_qid()
    c.set_queue_id(qid)
    c.mail()
    c.rcpt()
    r = c.body(b"a body before any header\r\n")
    check("BODY right after RCPT (no DATA, no headers): goes on", r.passes, got=r)
    mods, r = c.eom()
    check("then end of message: accepted", r.kind in ("accept", "continue"), got=r)
    agtest.check_decision(ag(), qid, "accept", since=mark)
    # a header after the body: libmilter aborts the transaction (authgate
    # logs action=abort) and ignores the rest of it
    qid = agtest.new_qid()
    c.set_queue_id(qid)
    c.mail()
    c.rcpt()
    c.data()
    c.eoh()
    c.body(b"body\r\n")
    send(c, pkt(b"L", b"Late\0header\0"))
    send(c, pkt(b"E"))
    what, v = outcome(c, 1)
    check("a header after the body: the end of message is ignored (no answer)",
          what == "open", expected="no reply within 1 s", got=(what, v))
    agtest.check_decision(ag(), qid, "abort", since=mark,
                          what="log line of the transaction cut short")
    h, b = agtest.make_message("after a late header")
    t = c.transaction(headers=h, body=b)
    check("the next transaction on that connection is accepted", t.accepted, got=t)
    c.quit()
    check("daemon running", ag().alive())


@suite.case
def huge_macro_packets():
    """Macros are kept per stage until replaced; a packet of 16,000 of
    them, or of 65,000 empty strings, is taken and costs no more than the
    packet."""
    c = open_session(ag(), what="macros")
    send(c, pkt(b"D", b"M" + b"a\0b\0" * 16000))
    send(c, pkt(b"D", b"R" + b"\0" * 65000))
    send(c, pkt(b"D", b"Zi\0x\0"))       # an unknown stage
    h, b = agtest.make_message("after huge macros")
    t = c.transaction(headers=h, body=b)
    check("a transaction after 3 absurd macro packets is accepted", t.accepted, got=t)
    c.quit()


@suite.case
def resources_back_to_baseline():
    """Every garbage connection has been closed and freed: open files
    exactly as before, threads back (libmilter's idle workers end after
    10 s of waiting), memory near the baseline (allocator caches: 16 MB
    allowed; not checked under ASan, whose quarantine holds freed memory
    on purpose)."""
    pid = ag().proc.pid
    base = S["base"]
    st = agtest.wait_until(lambda: (lambda s: s if s["fds"] <= base["fds"] and
                                    s["threads"] <= base["threads"] + 1 else None)(
                                        proc_stats(pid)), 30, 0.5) or proc_stats(pid)
    diag("after the garbage: %s (baseline %s)" % (st, base))
    check("open files back to the baseline", st["fds"] <= base["fds"],
          expected="<= %d" % base["fds"], got=st["fds"])
    check("threads back to the baseline (+1)", st["threads"] <= base["threads"] + 1,
          expected="<= %d" % (base["threads"] + 1), got=st["threads"])
    if not SANITIZED:
        check("resident memory within 16 MB of the baseline",
              st["rss_kb"] <= base["rss_kb"] + 16 * 1024,
              expected="<= %d kB" % (base["rss_kb"] + 16 * 1024), got=st["rss_kb"])
    check("daemon still running", ag().alive())
    bad = [ln for ln in ag().log_lines() if "crit" in ln.lower() or "assert" in ln.lower()]
    check_eq("no critical line in the log", bad[:5], [])


suite.run()
