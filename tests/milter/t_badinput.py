#!/usr/bin/python3
"""Bad input over the milter protocol: the rows of docs/bad-input.md that
no other test covered (that table names the test of every row).

One daemon (SPF, SPF of the HELO, DKIM; DNS data from a real unbound on
loopback: DKIM keys of tests/unit/dkim, SPF records, oversized key
records), and a second one whose DNS server never answers for one name
(agdns.Responder), for a milter step that takes its whole DNS deadline.

Cases: DKIM signature floods; l= abuse; domain injection in d=, s=, i=,
HELO and MAIL FROM against the Authentication-Results we write (parsed
with python3-authres); oversized DKIM key answers; odd header fields (a
NUL, bare CR and LF, 8-bit names and values, one of 100 KB, 10,000 of
them); body edges (none, empty, no final CRLF, "\\n.\\r\\n"); reply text
built from attacker data; log injection; SQL and LIKE metacharacters in
every field `authgatectl rule add` takes; a rate-limit race; a slow
milter step beside fast ones; SMTPUTF8 and IDN addresses.

Every case states the answer it expects and checks it; every message
also gets exactly one decision log line, and the daemon must be running
after it."""

import json
import os
import re
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agdns  # noqa: E402
from agtest import check, check_eq, diag, new_qid  # noqa: E402

suite = agtest.Suite("milter: bad input", case_timeout=90, total_timeout=400)
S = {}

AUTHSERV = "mx.test.invalid"
CLIENT = "192.0.2.10"
HELO = "client.example"
UNIT_DKIM = os.path.join(agtest.SRCDIR, "tests", "unit", "dkim")
MAX_SIGS = 5                    # DKIMMaxSignatures (the default)
# Time bounds allow for AddressSanitizer's slowdown (AG_SANITIZED=1).
SLOWER = 3.0 if os.environ.get("AG_SANITIZED") else 1.0
SLOW_DNS = 1.5 * (1 + (SLOWER > 1))    # DNSTimeout of the second daemon, seconds
REPLY_MAX = 512                 # an SMTP reply line (RFC 5321 4.5.3.1.5)

# 252 bytes: labels of 63, as long as a name goes (RFC 1035 2.3.4)
LONG_DOMAIN = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 51]) + ".example"
IDN_U, IDN_A = "b\u00fccher.example", "xn--bcher-kva.example"
MUC_U, MUC_A = "m\u00fcnchen.example", "xn--mnchen-3ya.example"
ZRH_U, ZRH_A = "z\u00fcrich.example", "xn--zrich-kva.example"

ZONES = {
    IDN_A: [("TXT", "v=spf1 -all")],
    "fail.example": [("TXT", "v=spf1 -all")],
    LONG_DOMAIN: [("TXT", "v=spf1 -all")],
    # a key record over AG_DNS_TXT_MAX (8192 bytes), and 70 records (over
    # AG_DNS_MAX_RR, 64) in a 21 KB answer: both come over TCP
    "big._domainkey.example.com": [("TXT", "v=DKIM1; k=rsa; p=" + "A" * 9000)],
    "many._domainkey.example.com": [("TXT", "v=DKIM1; k=rsa; n=%03d; p=%s" % (i, "A" * 280))
                                    for i in range(70)],
}


def unit_records(names):
    """The TXT records of NAMES in tests/unit/dkim/zone.txt."""
    out = {}
    with open(os.path.join(UNIT_DKIM, "zone.txt")) as f:
        for ln in f:
            m = re.match(r"^(\S+)\.\s+\d+\s+IN\s+TXT\s+(.*)$", ln.strip())
            if m and m.group(1) in names:
                out.setdefault(m.group(1), []).append(
                    ("TXT", re.findall(r'"([^"]*)"', m.group(2))))
    return out


@suite.setup
def setup():
    agdns.require()
    for mod in ("authres", "dkim", "nacl"):
        agtest.require(mod, "module")
    agtest.require_authgate()
    zones = dict(ZONES)
    zones.update(unit_records({"r2048._domainkey.example.com", "ed._domainkey.example.com"}))
    check("the keys of tests/unit/dkim are there", len(zones) == len(ZONES) + 2, fatal=True)
    S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), zones).start()
    S["resp"] = agdns.Responder(agtest.tmpdir("resp"), {}, modes={"slow.example": "drop"},
                                name="responder").start()
    ag = S["ag"] = agtest.Authgate(agtest.tmpdir("ag"), conf={
        "SPFCheck": "yes", "SPFCheckHelo": "yes", "DNSServer": S["dns"].server,
        "DNSTimeout": "2000", "SPFTimeout": "4000", "DKIMTimeout": "4000",
        "RateCheckpointInterval": "3600"})
    slow = S["slow"] = agtest.Authgate(agtest.tmpdir("slow"), name="authgate-slow", conf={
        "SPFCheck": "yes", "DNSServer": S["resp"].server,
        "DNSTimeout": str(int(SLOW_DNS * 1000)), "SPFTimeout": "10000"})
    for a in (ag, slow):
        r = a.ctl("init")
        check("%s: authgatectl init" % a.name, r.returncode == 0, agtest.fmt_run(r), fatal=True)
    R = S["rules"] = {}
    R["reply"] = ag.add_rule("--match", "sender-domain=reply.example",
                             "--rate", "messages:0/1h:sender")
    R["race"] = ag.add_rule("--match", "sender-domain=race.example",
                            "--rate", "messages:10/1h:sender-domain")
    # IDN rules, one written in A-labels and one in U-labels
    R["muc"] = ag.add_rule("--match", "sender-domain=" + MUC_A, "--max-size", "100")
    R["zrh"] = ag.add_rule("--match", "rcpt-domain=" + ZRH_U, "--max-size", "100")
    R["idnrate"] = ag.add_rule("--match", "sender-domain=" + idn_rate_domain()[1],
                               "--rate", "messages:2/1h:sender-domain")
    ag.start()
    slow.start()


def ag():
    return S["ag"]


# ---------------------------------------------------------------------------
# Messages and signatures


def message(subject="bad input", body=b"Hello Bob,\r\nsome text.\r\n",
            frm="Alice Example <alice@example.com>", extra=()):
    """A message (bytes, CRLF lines)."""
    hdr = ["From: %s" % frm, "To: Bob <bob@example.net>", "Subject: %s" % subject,
           "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
           "Message-ID: <%s@example.com>" % new_qid()] + list(extra)
    return ("\r\n".join(hdr) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def sign(msg, selector="ed", domain="example.com", **kw):
    """dkimpy's signature over MSG with a key of tests/unit/dkim, on top."""
    import dkim
    if selector == "ed":
        keyfile = "ed.key"
        kw.setdefault("signature_algorithm", b"ed25519-sha256")
    else:
        keyfile = "r2048.private"
    with open(os.path.join(UNIT_DKIM, keyfile), "rb") as f:
        key = f.read()
    kw.setdefault("include_headers", [b"from", b"to", b"subject", b"date", b"message-id"])
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key, linesep=b"\r\n", **kw)
    return sig + msg


def split(raw):
    """RAW (bytes) as the MTA hands it to a milter: header fields (name,
    value after the colon and its one space, folds as LF) and the body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    fields = []
    for ln in re.split(rb"\r\n(?![ \t])", head):
        name, _, value = ln.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        fields.append((name.decode("utf-8", "surrogateescape"),
                       value.replace(b"\r\n", b"\n").decode("utf-8", "surrogateescape")))
    return fields, body


def tags(raw, n=0):
    """The tags of the Nth DKIM-Signature of RAW, white space removed."""
    sigs = [v for k, v in split(raw)[0] if k.lower() == "dkim-signature"]
    return {k.strip(): re.sub(r"\s+", "", v) for k, _, v in
            (p.partition("=") for p in sigs[n].split(";")) if k.strip()}


# ---------------------------------------------------------------------------
# One transaction


class Run:
    tx = None
    log = None
    ars = ()
    secs = None

    def __repr__(self):
        return "<%r log=%s>" % (self.tx, self.log["line"] if self.log else None)


def run(fields, body, what, sender="<alice@example.org>", rcpts=("<bob@example.net>",),
        a=None, helo=HELO, client=CLIENT, hostname="client.example", mail_args=(),
        auth=None, qid=None, mine=None):
    """One transaction on a fresh connection; checks that it gets exactly
    one decision log line (of those MINE(line) accepts, when other
    connections run beside it) and that the daemon still runs.  Returns a
    Run (ars: the values of our inserted Authentication-Results)."""
    a = a or ag()
    r = Run()
    mark = a.log_mark()
    c = agtest.open_session(a, address=client, helo=helo, hostname=hostname, what=what)
    t0 = time.monotonic()
    try:
        r.tx = c.transaction(sender, list(rcpts), fields, body, mail_args=mail_args,
                             queue_id=qid or new_qid(), auth=auth)
    finally:
        c.close()
    r.secs = time.monotonic() - t0
    r.ars = [m[1][-1] for m in r.tx.mods if m[0] in ("insheader", "addheader") and
             m[1][-2].lower() == "authentication-results"]
    ds = [d for d in a.wait_decision(since=mark, timeout=5) if mine is None or mine(d)]
    check("%s: exactly one decision log line" % what, len(ds) == 1,
          got="\n".join(a.log_lines()[mark:][-10:]))
    r.log = ds[0] if ds else None
    check("%s: %s still running" % (what, a.name), a.alive(), fatal=True)
    return r


def accepted(r, what):
    return check("%s: accepted at end of message" % what, r.tx.accepted,
                 expected="accept/continue at eom", got=r.tx)


def authres(r, what):
    """Our one Authentication-Results, parsed: [(method, result, reason,
    props)], or None after a failing check."""
    if not check("%s: one Authentication-Results of ours, inserted" % what,
                 len(r.ars) == 1, got=r.tx.mods):
        return None
    v = r.ars[0]
    check("%s: no line break in it but folding" % what,
          not re.search(r"[\r\n](?![ \t])", v) and "\0" not in v, got=v)
    check("%s: printable ASCII" % what, all(0x20 <= ord(ch) < 0x7f or ch in "\t\r\n" for ch in v),
          got=v)
    try:
        sid, res = agtest.authres_results(v)
    except Exception as e:
        check("%s: it parses (python3-authres)" % what, False, got="%r: %r" % (v, e))
        return None
    check_eq("%s: authserv-id" % what, sid, AUTHSERV)
    return res


def dkim_of(res):
    return [(rs, reason, p) for m, rs, reason, p in res if m == "dkim"]


def reply_safe(r, what):
    """An SMTP reply the MTA would send: one printable line, bounded, no
    lone '%' (libmilter would drop it)."""
    raw = r.data.rstrip(b"\0") if r is not None and r.cmd == b"y" else b""
    check("%s: a reply text was set" % what, raw != b"", got=r)
    check("%s: the reply is one line of printable ASCII" % what,
          all(0x20 <= b < 0x7f for b in raw), got=raw)
    check("%s: the reply is at most %d bytes" % (what, REPLY_MAX), len(raw) <= REPLY_MAX,
          got=len(raw))
    check("%s: no lone %% in the reply" % what,
          "%" not in raw.decode("ascii", "replace").replace("%%", ""), got=raw)
    return raw.decode("ascii", "replace")


def log_field(r, key, want, what):
    if r.log is not None:
        check_eq("%s: log %s=" % (what, key), r.log.get(key), want, detail=r.log["line"])


# ---------------------------------------------------------------------------
# DKIM: floods, l=, injection through d= and friends, oversized keys


@suite.case
def signature_flood():
    """50 and 200 copies of a valid signature, and 200 signatures of keys
    that do not exist: the first DKIMMaxSignatures are evaluated, every
    other one is reported neutral "not evaluated: more than 5 signatures"
    (authgate.conf(5)), answered quickly, one log line saying
    dkim=RESULTS,+N.  Our header holds at most 32 results: the 2 SPF
    ones and the first 30 signatures'; a notice says which were left
    out."""
    msg = message("flood")
    signed = sign(msg)
    sig = signed[:-len(msg)]
    for n in (50, 200):
        what = "%d valid signatures" % n
        fields, body = split(sig * n + msg)
        mark = ag().log_mark()
        r = run(fields, body, what)
        check("%s: a notice: dkim results from the 31st of %d left out" % (what, n),
              ag().wait_log(r"dkim results? 31 (of|to) %d left out of Authentication-Results"
                            % n, timeout=2, since=mark) is not None)
        accepted(r, what)
        check("%s: answered in under %.0f s" % (what, 2 * SLOWER), r.secs < 2 * SLOWER,
              got="%.2fs" % r.secs)
        res = authres(r, what)
        if res is None:
            continue
        got = dkim_of(res)
        check_eq("%s: 30 dkim results in our header" % what, len(got), 30)
        check_eq("%s: the first %d pass" % (what, MAX_SIGS), [g[0] for g in got[:MAX_SIGS]],
                 ["pass"] * MAX_SIGS)
        rest = got[MAX_SIGS:]
        check("%s: the others neutral, not evaluated: more than %d signatures" %
              (what, MAX_SIGS), rest and all(g[0] == "neutral" and g[1] and
                                              "more than %d signatures" % MAX_SIGS in g[1]
                                              for g in rest), got=rest[:3])
        log_field(r, "dkim", ",".join(["pass:d=example.com"] * 5) + ",+%d" % (n - 5), what)
    what = "200 signatures of missing keys"
    bad = b"".join(b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=nokey%03d; "
                   b"h=from; bh=AAAA; b=AAAA\r\n" % i for i in range(200))
    fields, body = split(bad + msg)
    r = run(fields, body, what)
    accepted(r, what)
    check("%s: answered in under %.0f s" % (what, 2 * SLOWER), r.secs < 2 * SLOWER,
          got="%.2fs" % r.secs)
    res = authres(r, what)
    if res is not None:
        got = dkim_of(res)
        check_eq("%s: 5 permerror (no key), then neutral" % what, [g[0] for g in got],
                 ["permerror"] * 5 + ["neutral"] * 25)


@suite.case
def length_tag_abuse():
    """l= (RFC 6376 3.5) covering part of the body: content after it is
    unsigned, so such a signature must not pass as if it covered the
    message.  Documented (authgate.8): dkim=policy "body only partly
    signed"; pass when l= covers all the body (empty lines after it are
    no text: canonicalization drops them); fail when the body is shorter
    than l=."""
    body = b"Dear customer,\r\nyour statement is ready.\r\n"
    tail = b"\r\nURGENT: wire the money to the account below.\r\n"
    for canon in ((b"relaxed", b"relaxed"), (b"simple", b"simple")):
        c = "/".join(x.decode() for x in canon)
        signed = sign(message("l=", body=body), "r2048", canonicalize=canon, length=True)
        t = tags(signed)
        check("l= %s: the signature has l=" % c, "l" in t, got=t, fatal=True)
        for label, raw, want, reason in (
                ("l= covers the whole body", signed, "pass", None),
                ("empty lines appended after l=", signed + b"\r\n\r\n", "pass", None),
                ("text appended after l=", signed + tail, "policy", "partly signed"),
                ("body cut shorter than l=", signed[:-10], "fail", None)):
            what = "%s (%s)" % (label, c)
            fields, b = split(raw)
            r = run(fields, b, what)
            accepted(r, what)
            res = authres(r, what)
            if res is None:
                continue
            got = dkim_of(res)
            check_eq("%s: dkim=%s" % (what, want), [g[0] for g in got], [want])
            if reason and got:
                check("%s: the reason says %r" % (what, reason),
                      reason in (got[0][1] or "") or reason in r.ars[0], got=r.ars[0])
            log_field(r, "dkim", "%s:d=example.com" % want, what)
    # l=0: nothing of the body signed, all of it the attacker's
    signed = sign(message("l=0", body=b""), "r2048", canonicalize=(b"relaxed", b"relaxed"),
                  length=True)
    check_eq("l=0: dkimpy wrote l=0 for an empty relaxed body", tags(signed).get("l"), "0")
    fields, b = split(signed + tail)
    r = run(fields, b, "l=0 and a body")
    res = authres(r, "l=0 and a body")
    if res is not None:
        check_eq("l=0 and a body: dkim=policy", [g[0] for g in dkim_of(res)], ["policy"])


def inject_sig(d=b"example.com", s=b"r2048", extra=b""):
    return (b"DKIM-Signature: v=1; a=rsa-sha256; d=" + d + b"; s=" + s +
            b"; h=from:to; bh=AAAA; b=AAAA" + extra + b"\r\n")


@suite.case
def domain_injection_in_our_header():
    """d=, s= and i= values, a HELO name and a MAIL FROM local part that
    try to smuggle "dkim=pass" into our Authentication-Results: it stays
    one well-formed header (python3-authres parses it), with one result
    per signature and per SPF identity, and nothing in it passes."""
    sigs = [inject_sig(b"bank.example,pass:d=paypal.com"),
            inject_sig(b"example.com;dkim=pass"),
            inject_sig(b"bank.example (dkim=pass)"),
            inject_sig(b'bank.example"; dkim=pass; x="'),
            inject_sig(b"bank.example\r\n\tdkim=pass header.d=bank.example"),
            inject_sig(b"b\xc3\xa4nk.example"),
            inject_sig(b"bank.example\\"),
            inject_sig(s=b"sel (dkim=pass)"),
            inject_sig(extra=b"; i=@example.com; dkim=pass header.d=bank.example"),
            inject_sig(b"example.com", b"r2048\r\n\tdkim=pass")]
    msg = b"".join(sigs) + message("injection")
    fields, body = split(msg)
    what = "injection"
    r = run(fields, body, what, helo="x; dkim=pass header.d=bank.example",
            sender='<"x;dkim=pass header.d=bank.example"@example.org>')
    accepted(r, what)
    res = authres(r, what)
    if res is None:
        return
    diag("our header: %s" % r.ars[0])
    got = dkim_of(res)
    check_eq("%s: one dkim result per signature" % what, len(got), len(sigs), detail=r.ars[0])
    check("%s: the first %d fail or permerror, the others neutral (not evaluated)" %
          (what, MAX_SIGS), all(g[0] in ("fail", "permerror") for g in got[:MAX_SIGS]) and
          all(g[0] == "neutral" for g in got[MAX_SIGS:]), got=[g[:2] for g in got])
    methods = sorted(m for m, _, _, _ in res)
    check_eq("%s: methods: spf of MAIL FROM (the HELO is no domain name) and dkim only" %
             what, methods, sorted(["spf"] + ["dkim"] * len(sigs)))
    check("%s: no pass anywhere in the header" % what,
          not any(rs == "pass" for _, rs, _, _ in res), got=res)
    check("%s: no unquoted '; dkim=pass' in the text" % what,
          not re.search(r';\s*dkim\s*=\s*pass', re.sub(r'"(?:[^"\\]|\\.)*"', '""', r.ars[0])),
          got=r.ars[0])
    if r.log:
        items = r.log.get("dkim", "").split(",")
        check("%s: the log line's dkim= lists 5 results and +%d, none a pass" %
              (what, len(sigs) - MAX_SIGS), len(items) == MAX_SIGS + 1 and
              all(re.match(r"^(fail|permerror):d=", x) for x in items[:-1]) and
              items[-1] == "+%d" % (len(sigs) - MAX_SIGS), got=r.log["line"])


@suite.case
def oversized_key_answers():
    """A key record of 9,000 bytes (over AG_DNS_TXT_MAX) and a key name with
    70 TXT records in a 21 KB answer: both come over TCP, and each is
    dkim=permerror (a key record that cannot be used), not a crash or a
    temperror."""
    for sel, why in (("big", "a 9,000-byte key record"), ("many", "70 key records")):
        what = "%s (%s)" % (sel, why)
        signed = sign(message(sel), "r2048")
        signed = signed.replace(b"s=r2048", b"s=" + sel.encode(), 1)
        fields, body = split(signed)
        r = run(fields, body, what)
        accepted(r, what)
        res = authres(r, what)
        if res is not None:
            check_eq("%s: dkim=permerror" % what, [g[0] for g in dkim_of(res)], ["permerror"],
                     detail=r.ars[0])
        log_field(r, "dkim", "permerror:d=example.com", what)


# ---------------------------------------------------------------------------
# Odd header fields and body edges


def size_of(fields, body):
    """The size authgate.8 documents: each field as "Name: value" plus
    CRLF, the blank line, the body bytes."""
    return sum(len(n.encode("utf-8", "surrogateescape")) + 2 +
               len(v.encode("utf-8", "surrogateescape")) + 2 for n, v in fields) + 2 + len(body)


ODD_FIELDS = [
    ("a NUL in a value", ("X-Nul", "before\x00after")),
    ("a NUL in a name", ("X-N\x00ame", "value")),
    ("a bare CR in a value", ("X-CR", "a\rb")),
    ("a bare LF in a value (not a fold)", ("X-LF", "a\nb")),
    ("CR LF and a field of its own in a value", ("X-CRLF", "a\r\nX-Injected: yes")),
    ("8-bit name", ("X-\u00dcnic\u00f6de", "value")),
    ("8-bit value, UTF-8 and not", ("X-Eight", "caf\u00e9 \udcff\udcfe")),
    ("control bytes", ("X-Ctl", "\x01\x1b[31mred\x7f")),
    ("a name with a space and a colon", ("X Bad:Name", "value")),
    ("an empty value", ("X-Empty", "")),
]


@suite.case
def odd_header_fields():
    """Each odd field beside a valid signature that does not sign it:
    accepted, the signature still passes, our header is well-formed, one
    log line.  A NUL ends the value where the milter protocol ends it."""
    signed = sign(message("odd"))
    fields, body = split(signed)
    for label, field in ODD_FIELDS:
        r = run(fields + [field], body, label)
        accepted(r, label)
        res = authres(r, label)
        if res is not None:
            check_eq("%s: the signature still passes" % label,
                     [g[0] for g in dkim_of(res)], ["pass"])
        log_field(r, "action", "accept", label)
    # all of them in one message
    r = run(fields + [f for _, f in ODD_FIELDS], body, "every odd field at once")
    accepted(r, "every odd field at once")
    # no MTA sends a field without a name: libmilter ends the connection
    what = "a field with an empty name"
    mark = ag().log_mark()
    c = agtest.open_session(ag(), address=CLIENT, what=what)
    try:
        t = c.transaction("<alice@example.org>", ["<bob@example.net>"],
                          fields + [("", "value")], body, queue_id=new_qid())
        outcome = t
    except (OSError, agtest_milter_error()) as e:
        outcome = "closed: %r" % (e,)
    finally:
        c.close()
    check("%s: the connection is ended (by libmilter)" % what, isinstance(outcome, str),
          got=outcome)
    ds = ag().wait_decision(since=mark, timeout=5)
    check("%s: one decision line, action=abort" % what,
          [d.get("action") for d in ds] == ["abort"], got=[d["line"] for d in ds])
    check("%s: the daemon is running" % what, ag().alive(), fatal=True)


@suite.case
def big_and_many_header_fields():
    """One field of 60 KB (Postfix hands a milter at most about that),
    one of 100 KB in one packet (over libmilter's 64 KB command limit:
    libmilter ends that connection and the MTA applies its milter default
    action), and 10,000 fields (accepted, quickly, sized in full)."""
    signed = sign(message("big"))
    fields, body = split(signed)
    what = "a 60 KB field"
    r = run(fields + [("X-Big", "y" * 60000)], body, what)
    accepted(r, what)
    res = authres(r, what)
    if res is not None:
        check_eq("%s: the signature passes" % what, [g[0] for g in dkim_of(res)], ["pass"])
    if r.log:
        check_eq("%s: log size counts it" % what, r.log.get("size"),
                 str(size_of(fields + [("X-Big", "y" * 60000)], body)))
    what = "a 100 KB field"
    c = agtest.open_session(ag(), address=CLIENT, what=what)
    try:
        t = c.transaction("<alice@example.org>", ["<bob@example.net>"],
                          fields + [("X-Huge", "z" * 100000)], body, queue_id=new_qid())
        outcome = t
    except (OSError, agtest_milter_error()) as e:
        outcome = "closed: %r" % (e,)
    finally:
        c.close()
    check("%s: the connection is ended (libmilter refuses a command over 64 KB)" % what,
          isinstance(outcome, str), got=outcome)
    check("%s: the daemon is running" % what, ag().alive(), fatal=True)
    n = 10000
    what = "10,000 header fields"
    many = fields + [("X-Filler-%05d" % i, "value %d" % i) for i in range(n)]
    r = run(many, body, what)
    accepted(r, what)
    check("%s: answered in under %.0f s" % (what, 5 * SLOWER), r.secs < 5 * SLOWER,
          got="%.2fs" % r.secs)
    res = authres(r, what)
    if res is not None:
        check_eq("%s: the signature passes" % what, [g[0] for g in dkim_of(res)], ["pass"])
        ins = [m for m in r.tx.mods if m[0] == "insheader"]
        check("%s: our header at the top (index 0)" % what, ins and ins[0][1][0] == 0, got=ins)
    if r.log:
        check_eq("%s: log size counts every field" % what, r.log.get("size"),
                 str(size_of(many, body)))


def agtest_milter_error():
    import milterclient
    return milterclient.MilterError


@suite.case
def body_edges():
    """No body, an empty line, no final CRLF, a lone dot, "\\n.\\r\\n":
    the milter is past the SMTP dot, so none of these ends anything;
    signed (dkimpy), they pass as RFC 6376 3.4.3-3.4.4 canonicalize them
    (trailing empty lines ignored), but for two: a bare LF that the signer
    made CRLF is a body hash mismatch (libopendkim is given the bytes as
    the MTA passes them, no FIXCRLF), and libopendkim's relaxed body
    canonicalization adds no CRLF to a last line without one, which RFC
    6376 3.4.4 does (no SMTP body lacks it; tests/unit/t_dkimsign.c
    records the same): fail."""
    cases = [("no body at all", b"", "pass", "pass"),
             ("one empty line", b"\r\n", "pass", "pass"),
             ("no final CRLF", b"first line\r\nlast line", "pass", "fail"),
             ("a lone dot line", b".\r\n", "pass", "pass"),
             ("CRLF dot CRLF inside", b"before\r\n.\r\nafter\r\n", "pass", "pass"),
             ("LF dot CRLF", b"text\n.\r\n", "fail", "fail")]
    for label, body, want_s, want_r in cases:
        for canon, want in (((b"simple", b"simple"), want_s),
                            ((b"relaxed", b"relaxed"), want_r)):
            what = "%s, %s" % (label, canon[1].decode())
            fields, b = split(sign(message("edge", body=body), "r2048", canonicalize=canon))
            check("%s: the body is sent as is" % what, b == body, got=b)
            r = run(fields, b, what)
            accepted(r, what)
            res = authres(r, what)
            if res is not None:
                got = dkim_of(res)
                check_eq("%s: dkim=%s" % (what, want), [g[0] for g in got], [want])
                if want == "fail" and got and label.startswith("LF"):
                    check("%s: reason: body hash mismatch" % what,
                          "body hash" in (got[0][1] or ""), got=got)
            if r.log:
                check_eq("%s: log size" % what, r.log.get("size"), str(size_of(fields, b)))


# ---------------------------------------------------------------------------
# Replies and log lines made from attacker data


@suite.case
def reply_text_from_attacker_data():
    """Replies that quote the sender (a per-sender rate limit of 0), a 252-
    byte domain (SPF fail) and addresses with CR LF: one line of printable
    ASCII of at most 512 bytes, no lone %, with the documented code."""
    want = "Rate limit reached: 0 messages per 1h for sender "
    for lp in ('"100% sure; \\"quoted\\" --"', '"j\u00f6rg \u2603"', "x" * 64,
               '"%s%n%x%%"', '"a\\\\b\\"c"', "o'brien"):
        what = "sender %s@reply.example" % lp[:24]
        r = run(*agtest.make_message("reply"), what, sender="<%s@reply.example>" % lp)
        check("%s: 451 4.7.1 at MAIL FROM" % what,
              r.tx.stage == "mail" and r.tx.final.code == "451" and
              r.tx.final.xcode == "4.7.1", got=r.tx)
        text = reply_safe(r.tx.final, what)
        check("%s: %r..." % (what, want), want in text, got=text)
    what = "SPF fail of a 252-byte domain"
    r = run(*agtest.make_message("reply"), what, sender="<a@%s>" % LONG_DOMAIN)
    check("%s: 550 5.7.23 at MAIL FROM" % what, r.tx.stage == "mail" and
          r.tx.final.code == "550" and r.tx.final.xcode == "5.7.23", got=r.tx)
    text = reply_safe(r.tx.final, what)
    check("%s: names the whole domain" % what, LONG_DOMAIN in text, got=text)
    what = "MAIL FROM with CR LF"
    r = run(*agtest.make_message("reply"), what,
            sender="<a\r\n550 5.7.1 injected@example.org>")
    check_eq("%s: 501 5.1.7 Bad sender address syntax" % what,
             reply_safe(r.tx.final, what), "501 5.1.7 Bad sender address syntax")
    what = "RCPT TO with CR LF"
    r = run(*agtest.make_message("reply"), what, rcpts=("<b\r\n250 ok@example.net>",))
    check_eq("%s: 501 5.1.3 Bad recipient address syntax" % what,
             reply_safe(r.tx.rcpts[0], what), "501 5.1.3 Bad recipient address syntax")


def raw_log(a, offset):
    with open(a.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace").splitlines()


@suite.case
def log_injection():
    """CR LF, escape sequences and 8-bit bytes in the client name, HELO,
    SASL user, queue id, sender, recipient and header values: each message
    is one decision line, every line of the log is one of the daemon's,
    and the injected text shows only escaped, inside that line."""
    a = ag()
    inj = "\r\nFAKE: client=evil[192.0.2.99] action=accept \x1b[2J\u00e9"
    msgs = [
        ("HELO", dict(helo="h.example" + inj)),
        ("client name", dict(hostname="c.example" + inj)),
        ("SASL user", dict(auth="user" + inj)),
        ("queue id", dict(qid="QID" + inj)),
        ("sender", dict(sender="<a%s@example.org>" % inj)),
        ("quoted sender", dict(sender='<"a%s"@example.org>' % inj)),
        ("recipient", dict(rcpts=("<b%s@example.net>" % inj, "<bob@example.net>"))),
        ("header values", dict(extra=[("Subject", "s" + inj), ("From", "a@example.org" + inj)])),
    ]
    for label, kw in msgs:
        what = "%s with CR LF" % label
        off = os.path.getsize(a.log_path)
        fields, body = agtest.make_message("inj")
        fields = fields + kw.pop("extra", [])
        r = run(fields, body, what, **kw)
        lines = raw_log(a, off)
        strays = [ln for ln in lines if not re.match(r"^\S*authgate\[\d+\]: ", ln)]
        check("%s: every log line is one of the daemon's" % what, not strays and lines,
              got="\n".join(lines[-10:]))
        fakes = [ln for ln in lines if "FAKE" in ln and not (r.log and ln.endswith(r.log["line"]))]
        check("%s: the injected text is in no other line" % what, not fakes, got=fakes)
        if r.log:
            line = r.log["line"]
            check("%s: the decision line has no control or 8-bit byte" % what,
                  all(0x20 <= ord(ch) < 0x7f for ch in line), got=line)
            check_eq("%s: one action= field" % what, len(re.findall(r" action=", line)), 1,
                     detail=line)
            check("%s: no field of the injected text (client=evil)" % what,
                  not any(t.startswith("client=evil") for t in line.split(" ")), got=line)
            if label in ("HELO", "client name", "queue id", "quoted sender", "SASL user"):
                check("%s: the value is there, escaped (\\x0d\\x0a)" % what,
                      "\\x0d\\x0aFAKE" in line, got=line)


# ---------------------------------------------------------------------------
# SQL and LIKE metacharacters in rules


SQL_RULES = [
    # field, value as written, value as stored, [(probe, matches?)]
    ("sender", "o'brien%_x@SQL.example", "o'brien%_x@sql.example",
     [("<o'brien%_x@sql.example>", True), ("<o'brienABx@sql.example>", False),
      ("<o'brien%_y@sql.example>", False)]),
    ("sender", "a;--'\"b@sql.example", "a;--'\"b@sql.example",
     [('<"a;--\'\\"b"@sql.example>', True), ("<a@sql.example>", False)]),
    ("sender-domain", "a_b.sql.example", "a_b.sql.example",
     [("<x@a_b.sql.example>", True), ("<x@axb.sql.example>", False)]),
    ("helo", "h_x.sql.example", "h_x.sql.example",
     [("h_x.sql.example", True), ("hxx.sql.example", False)]),
    ("sasl-user", "admin' OR '1'='1", "admin' OR '1'='1",
     [("admin' OR '1'='1", True), ("admin", False), ("admin' OR '1'='2", False)]),
    ("sasl-user", "50%_off\\x;--", "50%_off\\x;--",
     [("50%_off\\x;--", True), ("50AB_off\\x;--", False), ("50%_offx;--", False)]),
    ("rcpt", "q';DROP_TABLE_rules;--@sql.example", "q';DROP_TABLE_rules;--@sql.example",
     [("<q';DROP_TABLE_rules;--@sql.example>", "501"), ("<q@sql.example>", False),
      ('<"q\';DROP_TABLE_rules;--"@sql.example>', True)]),
    ("rcpt-domain", "r_x.sql.example", "r_x.sql.example",
     [("<a@r_x.sql.example>", True), ("<a@rxx.sql.example>", False)]),
]
SQL_REFUSED = [("client", "192.0.2.1'--"), ("client", "192.0.2.0/24; DROP TABLE rules"),
               ("trusted", "yes' OR '1'='1"), ("authenticated", "no;--"),
               ("helo", "h'x.example"), ("sender-domain", "%.example"),
               ("rcpt-domain", "_%"), ("sender", "a b@example.org"),
               ("sasl-user", "a\tb")]
SQL_COMMENT = "'); DROP TABLE rules; -- %_ \"q\" \\ \u00fc"


def sql_probe(field, probe, what):
    """A message with SIZE=1000 that FIELD's value PROBE is given to; the
    reply of the phase the rule applies at."""
    kw = {}
    if field in ("sender", "sender-domain"):
        kw["sender"] = probe
    elif field == "helo":
        kw["helo"] = probe
    elif field == "sasl-user":
        kw["auth"] = probe
    else:
        kw["rcpts"] = (probe,)
    r = run(*agtest.make_message("sql"), what, mail_args=("SIZE=1000",), **kw)
    return r.tx.mail if field not in ("rcpt", "rcpt-domain") else r.tx.rcpts[0]


@suite.case
def sql_metacharacters_in_rules():
    """Quotes, ';', '--', '%', '_' and backslashes in every field that
    takes them: stored and listed as written (domains lower-cased), matched
    literally (never as SQL or as LIKE patterns); the values no field
    takes are refused, and the database keeps its rules."""
    a = ag()
    mark = a.log_mark()
    ids = []
    for i, (field, value, stored, _) in enumerate(SQL_RULES):
        args = ["--match", "%s=%s" % (field, value), "--max-size", "100", "--priority", "10"]
        if i == 0:
            args += ["--comment", SQL_COMMENT]
        ids.append(a.add_rule(*args))
    for field, value in SQL_REFUSED:
        r = a.ctl("rule", "add", "--match", "%s=%s" % (field, value), "--max-size", "100")
        check("%s=%r refused (exit 2, a message)" % (field, value),
              r.returncode == 2 and "authgatectl:" in r.stderr, got=agtest.fmt_run(r))
    r = a.ctl("rule", "list", "--json")
    try:
        rules = {str(x["id"]): x for x in json.loads(r.stdout)}
    except ValueError:
        rules = {}
    check("rule list --json", len(rules) >= len(ids), agtest.fmt_run(r), fatal=True)
    for rid, (field, value, stored, _) in zip(ids, SQL_RULES):
        check_eq("rule %s lists %s=%r exactly" % (rid, field, stored),
                 rules.get(rid, {}).get("matches"), [{"field": field, "value": stored}])
    check_eq("the comment is kept as written", rules.get(ids[0], {}).get("comment"), SQL_COMMENT)
    db = sqlite3.connect("file:%s?mode=ro" % a.db, uri=True)
    try:
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        nrules = db.execute("SELECT count(*) FROM rules").fetchone()[0]
        integ = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    check("the database still has its tables", {"rules", "rule_match"} <= tables, got=tables)
    check_eq("the database holds every rule and no other", nrules, len(rules))
    check_eq("PRAGMA integrity_check", integ, "ok")
    total = len(rules)
    check("the daemon loaded the %d rules" % total,
          a.wait_log(r"policy loaded: %d rules" % total, timeout=10, since=mark) is not None,
          got="\n".join(a.log_lines()[mark:][-5:]), fatal=True)
    for rid, (field, value, stored, probes) in zip(ids, SQL_RULES):
        for probe, hit in probes:
            what = "%s=%s, probe %s" % (field, value, probe)
            rep = sql_probe(field, probe, what)
            if hit == "501":
                check("%s: not an address unquoted: 501 5.1.3" % what, rep.code == "501" and
                      rep.xcode == "5.1.3", got=rep)
            elif hit:
                check("%s: matched: 552 5.3.4" % what, rep.code == "552" and
                      rep.xcode == "5.3.4", got=rep)
            else:
                check("%s: not matched: goes on" % what, rep.passes, got=rep)


# ---------------------------------------------------------------------------
# Concurrency and time


@suite.case
def rate_limit_race():
    """30 connections send MAIL FROM at the same instant against a limit of
    10 messages per hour: exactly 10 are accepted, 20 get 451 4.7.1, and
    the counter says 10."""
    a = ag()
    n, limit = 30, 10
    mark = a.log_mark()
    sessions = [agtest.open_session(a, address="192.0.2.%d" % (20 + i), what="race %d" % i)
                for i in range(n)]
    barrier = threading.Barrier(n)
    out = [None] * n

    def work(i):
        c = sessions[i]
        h, b = agtest.make_message("race", sender="u%d@race.example" % i)
        try:
            barrier.wait(timeout=20)
            out[i] = c.transaction("<u%d@race.example>" % i, ["<bob@example.net>"], h, b,
                                   queue_id=new_qid())
        except Exception as e:
            out[i] = "error: %r" % (e,)
        finally:
            c.close()
    th = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in th:
        t.start()
    for t in th:
        t.join(30)
    diag("race: %d transactions in %.2fs" % (n, time.monotonic() - t0))
    ok = [t for t in out if not isinstance(t, str) and t.accepted]
    refused = [t for t in out if not isinstance(t, str) and t.stage == "mail" and
               t.final.code == "451" and t.final.xcode == "4.7.1"]
    check_eq("race: accepted", len(ok), limit, detail=out)
    check_eq("race: refused 451 4.7.1 at MAIL FROM", len(refused), n - limit,
             detail=[t for t in out if t not in ok and t not in refused])
    ds = a.wait_decision(since=mark, count=n, timeout=10)
    check_eq("race: one decision line each", len(ds), n)
    key = "%s.1:sender-domain=race.example" % S["rules"]["race"]
    r = a.ctl("counters", "list", "--json", "--key", key)
    try:
        used = [e.get("used") for e in json.loads(r.stdout) if e.get("key") == key]
    except ValueError:
        used = None
    check_eq("race: counter %s used" % key, used, [limit], detail=agtest.fmt_run(r))


@suite.case
def slow_milter_step():
    """One connection whose MAIL FROM waits for a DNS answer that never
    comes (the whole DNSTimeout, then 451 4.7.24), and one client that
    stalls between its header fields: other connections are answered at
    once meanwhile, and both slow ones end with their documented answer."""
    a = S["slow"]
    res = {}

    def slow_one():
        t0 = time.monotonic()
        r = run(*agtest.make_message("slow"), "slow SPF lookup", a=a,
                sender="<a@slow.example>", mine=lambda d: d.get("from") == "<a@slow.example>")
        res["slow"] = (r, time.monotonic() - t0)
        res["slow_end"] = time.monotonic()
    th = threading.Thread(target=slow_one, daemon=True)
    th.start()
    time.sleep(0.2)
    fast = []
    for i in range(5):
        r = run(*agtest.make_message("fast"), "fast %d" % i, a=a, sender="<a@fast.example>",
                mine=lambda d: d.get("from") == "<a@fast.example>")
        fast.append(r.secs)
        accepted(r, "fast %d" % i)
    fast_end = time.monotonic()
    diag("fast ones beside the slow lookup: %s" % ", ".join("%.2fs" % s for s in fast))
    check("the fast ones took under %.1f s each" % (0.5 * SLOWER), max(fast) < 0.5 * SLOWER,
          got=fast)
    th.join(SLOW_DNS + 10)
    check("the fast ones were all answered while the slow one waited",
          fast_end < res.get("slow_end", 0), got="fast done at %.2f, slow at %.2f" %
          (fast_end, res.get("slow_end", 0)))
    r, secs = res.get("slow", (None, None))
    check("slow SPF lookup: 451 4.7.24 at MAIL FROM", r is not None and
          r.tx.stage == "mail" and r.tx.final.code == "451" and r.tx.final.xcode == "4.7.24",
          got=r)
    check("slow SPF lookup: answered after DNSTimeout (%.1f s) and before %.1f s" %
          (SLOW_DNS, SLOW_DNS + 2 * SLOWER), secs is not None and
          SLOW_DNS - 0.2 <= secs < SLOW_DNS + 2 * SLOWER, got=secs)
    # a client that stalls between two header fields
    c = agtest.open_session(a, what="stalling client")
    h, b = agtest.make_message("stall")
    try:
        check("stalling client: MAIL", c.mail("<a@fast.example>").passes)
        check("stalling client: RCPT", c.rcpt("<bob@example.net>").passes)
        c.data()
        c.header(*h[0])
        t0 = time.monotonic()
        r = run(*agtest.make_message("beside"), "beside the stalling client", a=a,
                sender="<a@fast.example>")
        accepted(r, "beside the stalling client")
        check("beside the stalling client: answered at once", r.secs < 0.5 * SLOWER,
              got=r.secs)
        time.sleep(max(0.0, 1.5 - (time.monotonic() - t0)))
        for f in h[1:]:
            c.header(*f)
        c.eoh()
        c.body(b)
        mods, fin = c.eom()
        check("stalling client: accepted after 1.5 s of silence", fin.kind in
              ("accept", "continue"), got=fin)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# SMTPUTF8 and IDN


def idn_rate_domain():
    return "r\u00e4te.example", "r\u00e4te.example".encode("idna").decode()


@suite.case
def smtputf8_and_idn_addresses():
    """Internationalized domains in MAIL FROM and RCPT TO are taken in
    their A-label form (RFC 8616; authgate.8): SPF is checked at the
    A-label name, rules and rate keys match either form alike.  UTF-8
    local parts are kept, escaped in the log and quoted in our header."""
    for sender in ("j\u00f6rg@" + IDN_U, "j\u00f6rg@" + IDN_A, "a@B\u00dcCHER.example"):
        what = "MAIL FROM:<%s> (%s publishes -all)" % (sender, IDN_A)
        r = run(*agtest.make_message("idn"), what, sender="<%s>" % sender,
                mail_args=("SMTPUTF8",))
        check("%s: 550 5.7.23 SPF fail" % what, r.tx.stage == "mail" and
              r.tx.final.code == "550" and r.tx.final.xcode == "5.7.23", got=r.tx)
        text = reply_safe(r.tx.final, what)
        check("%s: the reply names %s" % (what, IDN_A), IDN_A in text, got=text)
        log_field(r, "spf", "fail", what)
    what = "UTF-8 local parts and domains, no rule"
    fields, body = agtest.make_message("utf8")
    fields = [("From", "J\u00f6rg <j\u00f6rg@example.org>")] + fields[1:]
    r = run(fields, body, what, sender='<"j\u00f6rg \u2603"@example.org>',
            rcpts=("<\u7528\u6237@\u4f8b\u5b50.example>",), mail_args=("SMTPUTF8",))
    accepted(r, what)
    res = authres(r, what)
    if res is not None:
        check("%s: smtp.mailfrom is there" % what, "smtp.mailfrom=" in r.ars[0], got=r.ars[0])
    if r.log:
        check("%s: log from= escaped" % what, r.log.get("from", "").startswith(
            "<\\x22j\\xc3\\xb6rg\\x20\\xe2\\x98\\x83\\x22@example.org>") or
            r.log.get("from", "").startswith("<j\\xc3\\xb6rg\\x20\\xe2\\x98\\x83@example.org>"),
            got=r.log["line"])
    for sender, written in (("a@" + MUC_U, "A-label"), ("a@" + MUC_A, "A-label"),
                            ("a@M\u00dcNCHEN.example", "A-label")):
        what = "MAIL FROM:<%s> SIZE=1000, rule sender-domain=%s" % (sender, MUC_A)
        r = run(*agtest.make_message("idn"), what, sender="<%s>" % sender,
                mail_args=("SIZE=1000", "SMTPUTF8"))
        check("%s: 552 5.3.4" % what, r.tx.stage == "mail" and r.tx.final.code == "552",
              got=r.tx)
        log_field(r, "rule", S["rules"]["muc"], what)
    for rcpt in ("a@" + ZRH_A, "a@" + ZRH_U):
        what = "RCPT TO:<%s> SIZE=1000, rule rcpt-domain=%s (U-labels)" % (rcpt, ZRH_U)
        r = run(*agtest.make_message("idn"), what, rcpts=("<%s>" % rcpt,),
                mail_args=("SIZE=1000", "SMTPUTF8"))
        check("%s: 552 5.3.4 at RCPT" % what, r.tx.stage == "rcpt" and
              r.tx.rcpts[0].code == "552", got=r.tx)
    u, al = idn_rate_domain()
    outs = []
    for i, dom in enumerate((u, al, u)):
        what = "rate key sender-domain, message %d from %s" % (i + 1, dom)
        r = run(*agtest.make_message("idnrate"), what, sender="<a@%s>" % dom,
                mail_args=("SMTPUTF8",))
        outs.append(r.tx)
    check("rate limit of 2 per sender domain: the third message (U-label again) gets "
          "451 4.7.1, the U- and A-label forms counting as one domain",
          outs[0].accepted and outs[1].accepted and outs[2].stage == "mail" and
          outs[2].final.code == "451", got=outs)


@suite.case
def daemons_survived():
    for a in (ag(), S["slow"]):
        check("%s still running after every case" % a.name, a.alive())
    fields, body = split(sign(message("last")))
    r = run(fields, body, "a last signed message")
    accepted(r, "a last signed message")
    res = authres(r, "a last signed message")
    if res is not None:
        check_eq("a last signed message: dkim=pass", [g[0] for g in dkim_of(res)], ["pass"])
    for a in (ag(), S["slow"]):
        a.terminate()


suite.run()
