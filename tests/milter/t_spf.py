#!/usr/bin/python3
"""SPF over the milter protocol, with hostile DNS data: the macro records
behind the libspf2 CVEs (2021-20314, 2021-33912, 2021-33913, 2023-42118)
with sender local parts crafted to reach them, explanation texts with
CR/LF, '%' and kilobytes of text, TXT answers split over many strings and
over 4 KB, several SPF records, non-ASCII and control bytes, ptr forms,
20 includes, SERVFAIL, REFUSED and truncated answers.

Every case must end in a defined SPF result (the one RFC 7208 and
authgate's documented safety rule give), with the daemon still running and
its log line written; every refusal the MTA would show must be a bounded,
printable reply without CR/LF and without a lone '%' (libmilter drops a
reply text with a lone '%').  The ASan pass of the suite (AG_SANITIZED=1)
runs the same cases against a sanitized daemon.

Zone data comes from a real unbound on loopback; the misbehaving servers
are agdns.Responder processes, each with its own authgate instance."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agdns  # noqa: E402
from agtest import check, diag, new_qid  # noqa: E402

suite = agtest.Suite("milter: SPF with hostile DNS data", case_timeout=120)
S = {}

CLIENT = "192.0.2.10"
HELO = "client.example"
# CVE-2023-42118 triggers, as spfrecord.c says they were checked on this
# machine (libspf2 aborts with "stack smashing detected" on both):
EXP_42118 = "%{d}" * 127 + "x" * 300
REC_42118 = "v=spf1 exists:" + "x%{d}" * 42 + "%{d}" + "y" * 3700 + " -all"


def padded_record(n_mods, tail=" ip4:192.0.2.0/24 -all"):
    """A record made long by N_MODS unknown modifiers of 480 bytes each
    (ignored by RFC 7208 6; each stays inside libspf2's 511-byte area), so
    that its size, not its number of terms, is what is tested."""
    return "v=spf1 " + " ".join("x%d=%s" % (i, "a" * 480) for i in range(n_mods)) + tail


LONG_RECORD = padded_record(8)          # 3,9xx bytes: under authgate's 4096
# 64 ip4 terms that do not match, then the term that decides
TERMS = " ".join("ip4:198.51.100.%d" % i for i in range(1, 65))

ZONES = {
    "pass.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "fail.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")],
    # -- macro records with valid syntax: crafted local parts reach them --
    "mac1.example": [("TXT", "v=spf1 exists:%{l1r+}.%{d} -all")],
    # one exists: each (two would be two void lookups already)
    "mac2a.example": [("TXT", "v=spf1 exists:%{l1r.}.%{d} -all")],
    "mac2b.example": [("TXT", "v=spf1 exists:%{l2r-}.%{d} -all")],
    "mac2c.example": [("TXT", "v=spf1 exists:%{h1r}.%{d} -all")],
    "mac2d.example": [("TXT", "v=spf1 exists:%{l1}.%{d} -all")],
    "mac3.example": [("TXT", "v=spf1 exists:%{L}.%{d} exists:%{S}.%{d} -all")],
    "mac3e.example": [("TXT", "v=spf1 -all exp=e.mac3e.example")],
    "e.mac3e.example": [("TXT", "%{L} %{S} %{O} from %{I}")],
    "mac4.example": [("TXT", "v=spf1 exists:%{l128}.%{d} exists:%{d01}.x.%{d} -all")],
    # -- macro records the safety rule (spfrecord.c) refuses: permerror --
    "rev1.example": [("TXT", "v=spf1 exists:%{Lr}.%{d} -all")],
    "rev2.example": [("TXT", "v=spf1 exists:%{D2r}.x.example -all")],
    "rev3.example": [("TXT", "v=spf1 exists:%{IR}.x.example -all")],
    "rev4.example": [("TXT", "v=spf1 -all exp=%{Sr}.x.example")],
    "dig0.example": [("TXT", "v=spf1 exists:%{d0}.x.example -all")],
    "dig129.example": [("TXT", "v=spf1 exists:%{d129}.x.example -all")],
    "dig10.example": [("TXT", "v=spf1 exists:%{d4294967297}.x.example -all")],
    "badmac1.example": [("TXT", "v=spf1 exists:%{x}.x.example -all")],
    "badmac2.example": [("TXT", "v=spf1 exists:%{l.x.example -all")],
    "badmac3.example": [("TXT", "v=spf1 exists:x.example% -all")],
    "badmac4.example": [("TXT", "v=spf1 a:%{c}.x.example -all")],
    "cve42118.example": [("TXT", REC_42118)],
    "long500.example": [("TXT", "v=spf1 exists:" + "a%{d}" * 100 + ".x.example -all")],
    # -- explanation texts --
    "exp.example": [("TXT", "v=spf1 -all exp=%{l}.exp.example")],
    "ok.exp.example": [("TXT", "you (%{i}) may not send for %{d}")],
    "crlf.exp.example": [("TXT", b"line one\r\nline two\r\n550 5.7.1 injected")],
    "lf.exp.example": [("TXT", b"line one\nline two")],
    "pct.exp.example": [("TXT", "100%% not allowed for %{d}")],
    "stray.exp.example": [("TXT", "100% not allowed")],
    "kb.exp.example": [("TXT", " ".join(["not-allowed"] * 85))],       # ~1 KB, spaces
    "cve20314.exp.example": [("TXT", "x" * 4096)],                       # one 4 KB literal
    "cve20314b.exp.example": [("TXT", "x" * 507)],
    "cve42118.exp.example": [("TXT", EXP_42118)],
    "nonascii.exp.example": [("TXT", "caf\u00e9 \u2603 %{d}")],
    "nul.exp.example": [("TXT", b"before\x00after")],
    # -- TXT answers --
    "split1.example": [("TXT", list("v=spf1 ip4:192.0.2.0/24 -all"))],   # 1-byte strings
    "split2000.example": [("TXT", list(padded_record(4)))],
    "long4k.example": [("TXT", LONG_RECORD)],
    "long5k.example": [("TXT", padded_record(10))],
    # RFC 7208 sets no limit on terms that do not query DNS
    "terms65f.example": [("TXT", "v=spf1 " + TERMS + " -all")],
    "terms65p.example": [("TXT", "v=spf1 " + TERMS + " ip4:192.0.2.0/24 -all")],
    "terms100.example": [("TXT", "v=spf1 " + TERMS + " " + " ".join(
        "ip6:2001:db8::%x" % i for i in range(1, 37)) + " ip4:192.0.2.0/24 -all")],
    "multi.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all"), ("TXT", "v=spf1 -all")],
    "notspf.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all"), ("TXT", "v=spf10 -all"),
                       ("TXT", "spf2.0/pra -all"), ("TXT", "v=spf1-all")],
    # -- non-ASCII and control bytes --
    "utf8.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 caf\u00e9 -all")],
    "utf8dom.example": [("TXT", "v=spf1 a:caf\u00e9.example -all")],
    "nul.example": [("TXT", b"v=spf1 ip4:198.51.100.0/24\x00 ip4:192.0.2.0/24 -all")],
    "lf.example": [("TXT", b"v=spf1 ip4:192.0.2.0/24\n-all")],
    "high.example": [("TXT", b"v=spf1 \xff\xfe ip4:192.0.2.0/24 -all")],
    # -- ptr --
    "10.2.0.192.in-addr.arpa": [("PTR", "mail.ptr.example.")],
    "mail.ptr.example": [("A", CLIENT)],
    "ptr.example": [("TXT", "v=spf1 ptr -all")],
    "ptrneg.example": [("TXT", "v=spf1 -ptr:domain-spec.tld +all")],
    "ptrother.example": [("TXT", "v=spf1 ptr:other.example -all")],
    "ptrcidr.example": [("TXT", "v=spf1 ptr/24 -all")],
    "ptrempty.example": [("TXT", "v=spf1 ptr: -all")],
    "ptrmac.example": [("TXT", "v=spf1 -ptr:%{p}.%{d} ptr:%{d} -all")],
    # -- 20 includes --
    "inc20.example": [("TXT", "v=spf1 " + " ".join("include:i%d.inc20.example" % i
                                                     for i in range(1, 21)) + " -all")],
}
for _i in range(1, 21):
    ZONES["i%d.inc20.example" % _i] = [("TXT", "v=spf1 -all")]

# Responder 1 (UDP and TCP): SERVFAIL, REFUSED, truncated-then-TCP.
R1_ZONES = {
    "pass.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "incsf.example": [("TXT", "v=spf1 include:x.servfail.example ip4:192.0.2.0/24 -all")],
    "trunc.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "truncbig.example": [("TXT", LONG_RECORD)],
}
R1_MODES = {"servfail.example": "servfail", "refused.example": "refused",
            "trunc.example": "truncate", "truncbig.example": "truncate"}
# Responder 2: every UDP answer truncated, nothing on TCP.
R2_ZONES = {"pass.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")]}

BASE = {"SPFCheck": "yes", "DNSTimeout": "1000", "SPFTimeout": "5000",
        "On-SPFPermerror": "reject"}


@suite.setup
def setup():
    agdns.require()
    agtest.require("authres", "module")
    agtest.require_authgate()
    S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), ZONES).start()
    S["r1"] = agdns.Responder(agtest.tmpdir("r1"), R1_ZONES, modes=R1_MODES, tcp=True,
                              name="responder-r1").start()
    S["r2"] = agdns.Responder(agtest.tmpdir("r2"), R2_ZONES, mode="truncate", tcp=False,
                              name="responder-r2").start()
    for key, dns in (("ag", S["dns"]), ("ag_r1", S["r1"]), ("ag_r2", S["r2"])):
        a = agtest.Authgate(agtest.tmpdir(key), conf=dict(BASE, DNSServer=dns.server),
                            name="authgate" if key == "ag" else "authgate-" + key[3:])
        r = a.ctl("init")
        check("%s: authgatectl init" % key, r.returncode == 0, agtest.fmt_run(r), fatal=True)
        S[key] = a
    for key in ("ag", "ag_r1", "ag_r2"):
        S[key].start()


# ---------------------------------------------------------------------------
# One evaluation

REPLY_RESULT = {("550", "5.7.23"): "fail", ("550", "5.7.24"): "permerror",
                ("451", "4.7.24"): "temperror",
                # not SPF: the sender address itself refused before any check
                ("501", "5.1.7"): "syntax"}


class Eval:
    result = None        # the SPF result as the MTA sees it
    mail = None          # the MAIL reply
    tx = None
    log = None           # the parsed decision line
    authres = None

    def __repr__(self):
        return "<result=%s mail=%r log=%s>" % (self.result, self.mail,
                                               self.log["line"] if self.log else None)


def check_reply_safe(r, what):
    """A refusal's text: one line, printable ASCII, bounded, no lone %."""
    if r is None or r.cmd != b"y":
        return
    raw = r.data.rstrip(b"\0")
    check("%s: reply has no CR or LF" % what, b"\r" not in raw and b"\n" not in raw, got=raw)
    check("%s: reply is printable ASCII" % what,
          all(0x20 <= b < 0x7f for b in raw), got=raw)
    check("%s: reply is at most 512 bytes" % what, len(raw) <= 512, got=len(raw))
    check("%s: reply has no lone %% (libmilter drops such a text)" % what,
          "%" not in raw.decode("ascii", "replace").replace("%%", ""), got=raw)
    if raw[:1] == b"4" or raw.startswith(b"550 5.7.24"):
        # no explanation text in these: a reason of our own, in words
        check("%s: the reason reads with spaces, not '?' for them" % what,
              re.search(rb"\w\?\w", raw) is None, got=raw)


def evaluate(sender, what, ag_key="ag", client=CLIENT, helo=HELO):
    """One transaction from CLIENT with HELO and MAIL FROM:<SENDER> (str,
    or bytes for raw 8-bit addresses).  Checks that the daemon is still
    running, that it wrote one log line with spf=, and that any refusal is
    safe; returns an Eval."""
    a = S[ag_key]
    ev = Eval()
    mark = a.log_mark()
    if isinstance(sender, bytes):
        sender = sender.decode("utf-8", "surrogateescape")
    qid = new_qid()
    c = agtest.open_session(a, address=client, helo=helo, what=what)
    h, b = agtest.make_message("spf", sender="alice@example.org")
    try:
        ev.tx = c.transaction("<%s>" % sender, ["<bob@example.net>"], h, b, queue_id=qid)
    finally:
        c.close()
    ev.mail = ev.tx.mail
    key = (ev.mail.code, ev.mail.xcode)
    if ev.tx.stage == "mail":
        ev.result = REPLY_RESULT.get(key, "refused:%s" % ev.mail)
        check_reply_safe(ev.mail, what)
    elif ev.tx.accepted:
        ars = [m for m in ev.tx.mods if m[0] in ("insheader", "addheader") and
               m[1][-2].lower() == "authentication-results"]
        spf = []
        for m in ars:
            try:
                sid, res = agtest.authres_results(m[1][-1])
            except Exception as e:
                check("%s: Authentication-Results parses" % what, False, got="%r %r" % (m, e))
                continue
            ev.authres = res
            spf += [r for meth, r, _, p in res if meth == "spf" and "smtp.mailfrom" in p]
        ev.result = spf[0] if len(spf) == 1 else "accepted:A-R spf=%s" % spf
    else:
        ev.result = "stage %s: %r" % (ev.tx.stage, ev.tx.final)
    check("%s: authgate still running" % what, a.alive(), fatal=True)
    ds = a.wait_decision(since=mark, timeout=5)
    if check("%s: one decision log line" % what, len(ds) == 1,
             got="\n".join(a.log_lines()[mark:][-10:])):
        ev.log = ds[0]
        if ev.result == "syntax":
            check("%s: the log line says reason=syntax, no spf=" % what,
                  ev.log.get("reason") == "syntax" and "spf" not in ev.log, got=ev.log["line"])
            check("%s: the log line does not show the refused sender as the null sender <>"
                  % what, ev.log.get("from") != "<>", got=ev.log["line"])
        else:
            check("%s: the log line's spf= is the result the MTA sees (%s)" % (what, ev.result),
                  ev.log.get("spf") == ev.result, got=ev.log["line"])
    return ev


def expect(sender, result, what, **kw):
    ev = evaluate(sender, what, **kw)
    check("%s: %s" % (what, result), ev.result == result, expected=result, got=ev)
    return ev


def expect_fail_with_text(sender, what, want=None, **kw):
    """fail (550 5.7.23 SPF fail: DOMAIN ...), with WANT (regex) in the
    reply when given."""
    ev = expect(sender, "fail", what, **kw)
    if ev.result == "fail":
        diag("%s: %s" % (what, ev.mail.smtp))
        dom = sender.split("@")[-1] if isinstance(sender, str) else ""
        check("%s: reply is 'SPF fail: %s does not designate ...'" % (what, dom),
              re.match(r"^550 5\.7\.23 SPF fail: %s does not designate this host as a sender"
                       % re.escape(dom), ev.mail.smtp or "") is not None, got=ev.mail)
        if want:
            check("%s: reply shows /%s/" % (what, want),
                  re.search(want, ev.mail.smtp or "") is not None, got=ev.mail)
    return ev


# ---------------------------------------------------------------------------
# Cases


@suite.case
def baseline_pass_and_fail():
    ev = expect("alice@pass.example", "pass", "pass.example")
    if ev.tx and ev.tx.accepted:
        ins = [m for m in ev.tx.mods if m[0] == "insheader" and
               m[1][1].lower() == "authentication-results"]
        check("Authentication-Results inserted at the top (insheader index 0)",
              len(ins) == 1 and ins[0][1][0] == 0, got=ev.tx.mods)
        rs = [m[1][-1] for m in ev.tx.mods if m[0] in ("insheader", "addheader") and
              m[1][-2].lower() == "received-spf"]
        check("Received-SPF follows RFC 7208 9.1", len(rs) >= 1 and
              all(agdns.received_spf(agtest.unfold(v)) for v in rs), got=rs)
    ev = expect_fail_with_text("alice@fail.example", "fail.example")
    if ev.result == "fail":
        check("fail.example publishes no exp=: the reply has no explanation, and no "
              "third-party URL (libspf2's default 'Please see http://www.openspf.org/...')",
              "openspf.org" not in (ev.mail.smtp or ""), got=ev.mail)


@suite.case
def macro_records_crafted_local_parts():
    """Valid records with %{l1r+}, %{l1r.}, %{l2r-}, %{h1r}, %{l1}: every
    crafted local part (only delimiters, leading or trailing delimiters,
    64 of them, empty labels) expands to a name that does not exist (or
    is not a valid name): a void lookup, then -all: fail."""
    for lp in ("a+b+c", "+", "++++", "+a", "a+", "+" * 64, "a" * 64, "a+" * 32):
        expect("%s@mac1.example" % lp, "fail", "exists:%%{l1r+} with local part %r" %
               (lp if len(lp) < 12 else lp[:8] + "...(%d)" % len(lp)))
    for lp, helo in ((".", "client.example"), ('"."', "client.example"), ("-", "."),
                     ('"..."', "-"), ("a-b-c", "a.b.c.d.e.f"), ('"a..b"', "x" * 63 + ".example"),
                     ("a-", "a."), ("-a", ".a"), ("--", "..")):
        for dom, mac in (("mac2a", "%{l1r.}"), ("mac2b", "%{l2r-}"), ("mac2c", "%{h1r}"),
                         ("mac2d", "%{l1}")):
            expect("%s@%s.example" % (lp, dom), "fail", "%s with local part %r, HELO %r" %
                   (mac, lp, helo[:20]), helo=helo)
    # An empty quoted local part: valid RFC 5321 syntax, refused as such by
    # authgate (501 5.1.7) or checked (fail); either is defined.
    ev = evaluate('""@mac2d.example', 'local part ""')
    check('local part "": fail or 501 5.1.7', ev.result in ("fail", "syntax"), got=ev)


@suite.case
def macro_url_encoding_of_8bit_values():
    """CVE-2021-33912: URL-encoded macros (%{L}, %{S}, %{O}) over values with
    bytes >= 0x80 (raw 8-bit local part).  A defined result, no crash; a
    refusal never carries the raw bytes or a lone %."""
    for lp in (b"\xc3\xa9\xc3\xa9\xc3\xa9", b"\xff" * 60, b"a\x80b"):
        for dom in ("mac3.example", "mac3e.example"):
            ev = evaluate(lp + b"@" + dom.encode(), "%s with local part %r" % (dom, lp[:6]))
            check("%s with local part %r: a defined result (fail, none, permerror, or the "
                  "address refused: 501 5.1.7)" % (dom, lp[:6]),
                  ev.result in ("fail", "none", "permerror", "syntax"), got=ev)
    expect_fail_with_text("a/b=c@mac3e.example", "exp %{L} %{S} %{O} %{I} with a/b=c",
                          want=r"a%%2[fF]b%%3[dD]c|a/b=c")


@suite.case
def macro_records_refused_by_the_safety_rule():
    """URL-encoded and reversed (CVE-2021-33913), transformer 0, over 128,
    over 3 digits, unknown macro letters, an unterminated macro, a stray %,
    c/r/t outside exp, and compiled forms over libspf2's 511-byte area
    (CVE-2023-42118, CVE-2021-20314): permerror (550 5.7.24 here)."""
    cases = [("rev1.example", "%{Lr} (33913)", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p"),
             ("rev2.example", "%{D2r} (33913)", "x"),
             ("rev3.example", "%{IR} (33913)", "x"),
             ("rev4.example", "exp=%{Sr} (33913)", "x"),
             ("dig0.example", "%{d0}", "x"),
             ("dig129.example", "%{d129}", "x"),
             ("dig10.example", "%{d4294967297} (int overflow)", "x"),
             ("badmac1.example", "%{x}", "x"),
             ("badmac2.example", "%{l unterminated", "x"),
             ("badmac3.example", "a stray % at the end", "x"),
             ("badmac4.example", "%{c} outside exp", "x"),
             ("cve42118.example", "3.9 KB exists: target (42118)", "x"),
             ("long500.example", "100 macros in one domain-spec", "x")]
    for dom, why, lp in cases:
        ev = expect("%s@%s" % (lp, dom), "permerror", "%s: %s" % (dom, why))
        if ev.result == "permerror":
            check("%s: reply is 550 5.7.24 naming %s" % (why, dom),
                  (ev.mail.smtp or "").startswith("550 5.7.24") and dom in ev.mail.smtp,
                  got=ev.mail)
    expect("x@mac4.example", "fail", "control: %{l128} and %{d01} are valid: fail")


@suite.case
def explanation_texts():
    """exp= texts are attacker-controlled: the 550 the MTA gives must stay
    one bounded printable line without a lone %, whatever the text holds;
    a text that is not a valid macro-string, or that libspf2 would choke
    on (CVE-2021-20314: a 4 KB literal; CVE-2023-42118: 127 macros and a
    literal), is dropped; the result stays fail."""
    expect_fail_with_text("ok@exp.example", "exp: a valid text is shown, expanded",
                          want=r"you \(192\.0\.2\.10\) may not send for exp\.example")
    expect_fail_with_text("pct@exp.example", "exp: %% is shown as a percent sign",
                          want=r"100(%%|%) not allowed for exp\.example")
    for lp, why, never in (("crlf", "CR LF and an injected reply line", None),
                           ("lf", "a bare LF", None),
                           ("stray", "a lone % (not a macro-string)", None),
                           ("kb", "1 KB of text", None),
                           ("cve20314", "a 4096-byte literal (CVE-2021-20314)", None),
                           ("cve20314b", "a 507-byte literal", None),
                           ("cve42118", "127 macros and 300 bytes (CVE-2023-42118)", None),
                           ("nonascii", "UTF-8 text", None),
                           ("nul", "a NUL byte", "after"),
                           ("missing", "no such TXT record", None)):
        ev = expect_fail_with_text("%s@exp.example" % lp, "exp: " + why)
        if ev.result == "fail" and never:
            check("exp %s: the reply does not show %r" % (why, never),
                  never not in (ev.mail.smtp or ""), got=ev.mail)
    ev = expect_fail_with_text("a%b@exp.example", "exp: a % in the local part used as %{l}")


@suite.case
def txt_strings_and_sizes():
    """RFC 7208 3.3: the strings of one TXT record are joined without
    spaces.  Records over 512 bytes come over TCP; over AG_SPF_RECORD_MAX
    (4096) authgate refuses them (permerror)."""
    expect("a@split1.example", "pass", "a record in 28 one-byte strings")
    expect("a@split2000.example", "pass",
           "a %d-byte record in one-byte strings (a 4 KB answer over TCP)" %
           len(ZONES["split2000.example"][0][1]))
    expect("a@long4k.example", "pass", "a %d-byte record in 255-byte strings" % len(LONG_RECORD))
    expect("a@long5k.example", "permerror", "a %d-byte record (over 4096)" %
           len(ZONES["long5k.example"][0][1]))
    # libspf2 silently drops terms past its 63rd; authgate refuses to act
    # on part of a record: permerror, saying why (documented in authgate.8)
    ev = expect("a@terms65f.example", "permerror",
                "64 ip4 terms that do not match, then -all")
    check("more than 63 terms: the reply says so",
          "more than 63 terms" in ((ev.mail.smtp or "") if ev.mail else ""), got=ev)
    expect("a@terms65p.example", "permerror",
           "64 ip4 terms that do not match, then the client's")
    expect("a@terms100.example", "permerror", "100 ip4/ip6 terms, the client's last")
    expect("a@multi.example", "permerror", "two v=spf1 records")
    expect("a@notspf.example", "pass", "one v=spf1 record beside v=spf10, spf2.0, v=spf1-all")


@suite.case
def non_ascii_and_control_bytes_in_records():
    for dom, why in (("utf8.example", "a UTF-8 term"),
                     ("utf8dom.example", "a UTF-8 domain in a:"),
                     ("nul.example", "a NUL byte (libspf2 would cut the record there)"),
                     ("lf.example", "a line feed"),
                     ("high.example", "bytes 0xff 0xfe")):
        expect("a@" + dom, "permerror", "%s: %s" % (dom, why))
    ev = evaluate(b"a@caf\xc3\xa9.example", "a UTF-8 sender domain")
    check("a UTF-8 sender domain: none (not a valid domain, RFC 7208 4.3)",
          ev.result == "none", got=ev)


@suite.case
def ptr_forms():
    expect("a@ptrneg.example", "pass", "v=spf1 -ptr:domain-spec.tld +all")
    expect("a@ptr.example", "pass", "v=spf1 ptr (192.0.2.10 -> mail.ptr.example -> 192.0.2.10)")
    expect("a@ptrother.example", "fail", "v=spf1 ptr:other.example -all")
    expect("a@ptrcidr.example", "permerror", "v=spf1 ptr/24 -all")
    expect("a@ptrempty.example", "permerror", "v=spf1 ptr: -all")
    expect("a@ptrmac.example", "fail", "v=spf1 -ptr:%{p}.%{d} ptr:%{d} -all")
    expect("a@ptr.example", "fail", "v=spf1 ptr from 192.0.2.11 (no PTR)", client="192.0.2.11")


@suite.case
def twenty_includes():
    ev = expect("a@inc20.example", "permerror", "20 include: terms")
    if ev.log:
        diag("log: " + ev.log["line"])


@suite.case
def servfail_and_refused():
    expect("a@pass.example", "pass", "control: pass through responder 1", ag_key="ag_r1")
    expect("a@servfail.example", "temperror", "the sender's TXT: SERVFAIL", ag_key="ag_r1")
    expect("a@refused.example", "temperror", "the sender's TXT: REFUSED", ag_key="ag_r1")
    expect("a@incsf.example", "temperror", "include: of a SERVFAIL name", ag_key="ag_r1")
    ev = expect("a@servfail.example", "temperror", "SERVFAIL again", ag_key="ag_r1")
    if ev.result == "temperror":
        check("temperror reply: 451 4.7.24 SPF check of servfail.example could not be completed",
              re.match(r"^451 4\.7\.24 SPF check of servfail\.example could not be completed",
                       ev.mail.smtp or "") is not None, got=ev.mail)


@suite.case
def truncated_answers():
    expect("a@trunc.example", "pass", "TC=1 over UDP, the answer over TCP", ag_key="ag_r1")
    expect("a@truncbig.example", "pass", "a 4 KB record: TC=1, then TCP", ag_key="ag_r1")
    qs = [q for q in S["r1"].queries() if q[1] == "trunc.example."]
    check("the resolver asked again over TCP after TC=1",
          ("udp", "trunc.example.", "TXT") in qs and ("tcp", "trunc.example.", "TXT") in qs,
          got=qs)
    expect("a@pass.example", "temperror", "every answer truncated, no TCP", ag_key="ag_r2")


@suite.case
def daemons_survived():
    for key in ("ag", "ag_r1", "ag_r2"):
        check("%s still running after every case" % key, S[key].alive())
    expect("alice@pass.example", "pass", "a normal pass afterwards")
    # Stop all three at once (each takes seconds to stop); the cleanup
    # waits for them and then reads their logs for sanitizer reports.
    for key in ("ag", "ag_r1", "ag_r2"):
        S[key].terminate()


suite.run()
