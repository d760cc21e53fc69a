#!/usr/bin/python3
"""End to end, real Postfix -> authgate -> smtp-sink, with a real DNS server
(unbound on loopback) serving the senders' SPF records: what the SMTP
client sees for each SPF result (pass, fail, softfail, neutral, none,
permerror, temperror), the headers that reach the next hop
(Authentication-Results parsed with python3-authres, Received-SPF checked
against the RFC 7208 9.1 grammar), the HELO identity, the null sender,
trusted and authenticated clients, per-recipient and per-client rules,
and the time a DNS outage may take.

Clients are presented with XCLIENT ADDR=192.0.2.x (libspf2 passes any
127.0.0.0/8 client unconditionally)."""

import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
import agdns  # noqa: E402
from agtest import check, check_eq, diag  # noqa: E402
from agpostfix import reply  # noqa: E402

suite = agtest.Suite("e2e: SPF through Postfix", case_timeout=120)
S = {}

AUTHSERV = "mx.test.invalid"
CLIENT = "192.0.2.10"            # allowed by pass.example (192.0.2.0/24)
HELO = "client.example"          # has no SPF record: HELO identity "none"
TRUSTED_NET = "203.0.113.0/24"
OFF_NET = "198.51.100.0/24"      # rule: --spf check=off
SOFTREJECT_NET = "192.0.2.128/25"  # rule: --spf softfail=reject

# The lookup-limit records: every a: host exists (no void lookups), none
# is the client; the last term of l10 / l11 is what decides if the limit
# is not hit.
LIM = ["h%d.lim.example" % i for i in range(1, 10)]

ZONES = {
    "pass.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "fail.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")],
    "failexp.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 -all exp=why.failexp.example")],
    "why.failexp.example": [("TXT", "%{i} may not send mail for %{d}")],
    "softfail.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 ~all")],
    "neutral.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 ?all")],
    # a TXT record, but no SPF record: none
    "none.example": [("TXT", "site-verification=0123456789"), ("A", "198.51.100.1")],
    "syntax.example": [("TXT", "v=spf1 ip4:192.0.2.0/33 -all")],
    # 11 DNS-querying terms across three records (include, 5 a, include, 4 a)
    "l11.example": [("TXT", "v=spf1 include:l11a.example ip4:192.0.2.0/24 -all")],
    "l11a.example": [("TXT", "v=spf1 " + " ".join("a:" + h for h in LIM[:5]) +
                      " include:l11b.example -all")],
    "l11b.example": [("TXT", "v=spf1 " + " ".join("a:" + h for h in LIM[5:9]) + " -all")],
    # the same with 10: the limit is not hit, ip4 at the top decides: pass
    "l10.example": [("TXT", "v=spf1 include:l10a.example ip4:192.0.2.0/24 -all")],
    "l10a.example": [("TXT", "v=spf1 " + " ".join("a:" + h for h in LIM[:5]) +
                      " include:l10b.example -all")],
    "l10b.example": [("TXT", "v=spf1 " + " ".join("a:" + h for h in LIM[5:8]) + " -all")],
    "void3.example": [("TXT", "v=spf1 a:nx1.void.example a:nx2.void.example "
                              "a:nx3.void.example ip4:192.0.2.0/24 -all")],
    "void2.example": [("TXT", "v=spf1 a:nx1.void.example a:nx2.void.example "
                              "ip4:192.0.2.0/24 -all")],
    "loop.example": [("TXT", "v=spf1 include:loop2.example ip4:192.0.2.0/24 -all")],
    "loop2.example": [("TXT", "v=spf1 include:loop.example -all")],
    "helo-pass.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "helo-fail.example": [("TXT", "v=spf1 -all")],
}
for i, h in enumerate(LIM):
    ZONES[h] = [("A", "198.51.100.%d" % (i + 1))]

# The slow-DNS server (our Responder): dropped.example is never answered;
# slowchain.example answers at once with a record of 8 a: terms whose hosts
# (under slow.example) are answered after SLOW_DELAY each.
#  - DNSTimeout 1000, SPFTimeout 3000, dropped.example: temperror after
#    one DNSTimeout;
#  - DNSTimeout 5000, SPFTimeout 1500, dropped.example: SPFTimeout cuts the
#    one lookup short;
#  - DNSTimeout 5000, SPFTimeout 1500, slowchain.example: every lookup is
#    answered (after 0.3 s or more: libunbound retransmits on its own), all
#    eight together take longer than SPFTimeout.
SLOW_DELAY = 0.3
SLOW_ZONES = {
    "slowchain.example": [("TXT", "v=spf1 " + " ".join("a:s%d.slow.example" % i
                                                         for i in range(1, 9)) + " -all")],
    "pass.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
}
for _i in range(1, 9):
    SLOW_ZONES["s%d.slow.example" % _i] = [("A", "198.51.100.%d" % _i)]
SLOW_MODES = {"dropped.example": "drop", "slow.example": "slow"}
SLOW_CASES = [
    # sender, why, DNSTimeout, SPFTimeout, the timeout that should end it (ms)
    ("alice@dropped.example", "the sender's TXT never answered", 1000, 3000, 1000),
    ("alice@dropped.example", "the sender's TXT never answered", 5000, 1500, 1500),
    ("alice@slowchain.example", "8 a: lookups of %.1fs or more each" % SLOW_DELAY,
     5000, 1500, 1500),
]
BASE_CONF = {
    "SPFCheck": "yes",
    "TrustedNetworks": "127.0.0.0/8, ::1/128, " + TRUSTED_NET,
    "DNSTimeout": "1000",
}


@suite.setup
def setup():
    agpostfix.require()
    agdns.require()
    agtest.require("authres", "module")
    agtest.require_authgate()
    dns = S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), ZONES).start()
    conf = dict(BASE_CONF, DNSServer=dns.server)
    S["conf"] = conf
    st = S["st"] = agpostfix.Stack(conf=conf)
    r = st.ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["rule_off"] = st.ag.add_rule("--match", "client=" + OFF_NET, "--spf", "check=off")
    S["rule_soft"] = st.ag.add_rule("--match", "client=" + SOFTREJECT_NET,
                                    "--spf", "softfail=reject")
    st.start()


def st():
    return S["st"]


def ag():
    return S["st"].ag


def reconfigure(**settings):
    """Rewrite authgate's configuration as the base settings plus SETTINGS
    and reload it with SIGHUP (a restart costs seconds); wait until the
    daemon says it has reloaded."""
    a = ag()
    for k in list(a.settings):
        if k.startswith("On-SPF") or k == "SPFTimeout":
            del a.settings[k]
    a.settings.update(S["conf"])
    a.settings.update({k.replace("_", "-"): v for k, v in settings.items()})
    a.write_config()
    mark = a.log_mark()
    a.reload()
    ln = a.wait_log(r"configuration reloaded", timeout=10, since=mark)
    check("authgate reloaded its configuration (SIGHUP)", ln is not None and a.alive(),
          got="\n".join(a.log_lines()[mark:]), fatal=True)


# ---------------------------------------------------------------------------
# One SMTP session through Postfix


class Result:
    def __init__(self):
        self.stage = None        # mail | rcpt | data | eod | xclient
        self.mail = None         # 'CODE TEXT' of MAIL FROM
        self.mail_secs = None    # how long the MAIL FROM reply took
        self.rcpts = []
        self.final = None
        self.token = None
        self.msg = None          # the sink's dump of the message, if delivered

    def __repr__(self):
        return "<stage=%s mail=%r (%.2fs) rcpts=%r final=%r>" % (
            self.stage, self.mail, self.mail_secs or 0, self.rcpts, self.final)


def session(addr=CLIENT, helo=HELO, login=None, name="client.example"):
    """A Postfix session that XCLIENT made come from ADDR with HELO (and
    a SASL LOGIN), EHLO done again as HELO."""
    s = st().pf.smtp(helo)
    cmd = "XCLIENT ADDR=%s NAME=%s HELO=%s" % (addr, name, helo)
    if login:
        cmd += " LOGIN=%s" % login
    r = reply(s.docmd(cmd))
    check("XCLIENT %s accepted (220)" % addr, r.startswith("220"), got=r, fatal=True)
    s.ehlo(helo)
    return s


def send(sender, rcpts=("bob@example.net",), addr=CLIENT, helo=HELO, login=None,
         wait_sink=True):
    """MAIL FROM:<SENDER> (timed), RCPT TO each, DATA; the dump at the sink
    when accepted."""
    res = Result()
    res.token = st().token(sender.split("@")[-1] if sender else "null")
    s = session(addr, helo, login)
    try:
        t0 = time.monotonic()
        res.mail = reply(s.docmd("MAIL FROM:<%s>" % sender))
        res.mail_secs = time.monotonic() - t0
        if not res.mail.startswith("2"):
            res.stage, res.final = "mail", res.mail
            return res
        for rc in rcpts:
            res.rcpts.append(reply(s.docmd("RCPT TO:<%s>" % rc)))
        if not any(x.startswith("2") for x in res.rcpts):
            res.stage, res.final = "rcpt", res.rcpts[-1]
            return res
        msg = st().message(res.token, sender or "MAILER-DAEMON@test.invalid", rcpts[0])
        try:
            r = s.data(msg)
            res.stage, res.final = "eod", reply(r)
        except smtplib.SMTPDataError as e:
            res.stage, res.final = "data", reply((e.smtp_code, e.smtp_error))
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass
    if res.stage == "eod" and res.final.startswith("250") and wait_sink:
        res.msg = st().sink.wait_for(res.token)
    return res


def accepted(res, what):
    """The message was accepted and is at the sink (fatal otherwise)."""
    check("%s: accepted (250 at end of data)" % what,
          res.stage == "eod" and res.final.startswith("250"),
          expected="250 2.0.0 Ok: queued as ...", got=res, fatal=True)
    check("%s: the message is at the sink" % what, res.msg is not None, fatal=True)
    return res.msg


def rejected_at_mail(res, code, what, domain=None):
    ok = check("%s: MAIL FROM refused with %s" % (what, code),
               res.stage == "mail" and res.mail.startswith(code + " "),
               expected="%s ..." % code, got=res)
    if ok and domain:
        check("%s: the reply names %s" % (what, domain), domain in res.mail, got=res.mail)
    return ok


def headers(msg):
    return agtest.header_fields(msg)


def our_authres(msg):
    """Every Authentication-Results header at the sink with our authserv-id,
    parsed: a list of [(method, result, reason, props)] lists, one per
    header.  Any A-R that authres cannot parse is a failed check."""
    out = []
    for name, value in headers(msg):
        if name.lower() != "authentication-results":
            continue
        try:
            sid, res = agtest.authres_results(value)
        except Exception as e:
            check("Authentication-Results parses (python3-authres)", False,
                  got="%s: %r" % (value, e))
            continue
        if sid == AUTHSERV:
            out.append(res)
    return out


METHODS = ("spf", "auth")


def check_authres(msg, expected, what, reason_for=(), also_ok=None):
    """Exactly one A-R with our authserv-id, whose spf and auth results
    (method, result, properties) are EXPECTED (order free; or ALSO_OK,
    another such list); results in REASON_FOR (method, result) must carry
    a reason."""
    ars = our_authres(msg)
    if not check("%s: exactly one Authentication-Results from %s" % (what, AUTHSERV),
                 len(ars) == 1, expected=1, got=[v for n, v in headers(msg)
                                                  if n.lower() == "authentication-results"]):
        return None
    # Only the methods this script is about: other checks (dkim=...) add theirs.
    got = sorted((m, r, tuple(sorted(p.items()))) for m, r, _, p in ars[0] if m in METHODS)
    want = sorted((m, r, tuple(sorted(p.items()))) for m, r, p in expected)
    alt = sorted((m, r, tuple(sorted(p.items()))) for m, r, p in also_ok) if also_ok else want
    check("%s: Authentication-Results results" % what, got in (want, alt),
          expected=want if alt == want else "%s or %s" % (want, alt), got=got)
    for method, result in reason_for:
        reasons = [rs for m, r, rs, _ in ars[0] if m == method and r == result]
        check("%s: %s=%s carries a reason" % (what, method, result),
              reasons and all(reasons), got=ars[0])
    names = [n.lower() for n, _ in headers(msg)]
    check("%s: Authentication-Results is above the message's own headers" % what,
          "from" in names and names.index("authentication-results") < names.index("from"),
          got=names)
    return ars[0]


def check_received_spf(msg, result, what, sender, helo=HELO, client=CLIENT):
    """Every Received-SPF follows RFC 7208 9.1; the one for the mailfrom
    identity has RESULT and the session's facts."""
    rs = [v for n, v in headers(msg) if n.lower() == "received-spf"]
    if not check("%s: a Received-SPF header" % what, len(rs) >= 1, got=headers(msg)):
        return
    parsed = []
    for v in rs:
        p = agdns.received_spf(v)
        check("%s: Received-SPF follows the RFC 7208 9.1 grammar" % what, p is not None,
              expected="result [comment] key=value; ... (values with @ or : quoted)", got=v)
        if p:
            parsed.append(p)
    mf = [p for p in parsed if p[2].get("identity") == "mailfrom"]
    if not check("%s: one Received-SPF with identity=mailfrom" % what, len(mf) == 1, got=rs):
        return
    res, comment, kv = mf[0]
    check_eq("%s: Received-SPF result" % what, res, result)
    check_eq("%s: Received-SPF client-ip" % what, kv.get("client-ip"), client)
    check_eq("%s: Received-SPF helo" % what, kv.get("helo"), helo)
    check_eq("%s: Received-SPF envelope-from" % what, kv.get("envelope-from"), sender)
    check("%s: Received-SPF receiver" % what, bool(kv.get("receiver")), got=kv)


def decision_for(mark, sender, timeout=5.0):
    """The decision log line for SENDER after MARK."""
    want = "<%s>" % sender

    def find():
        ds = [d for d in ag().decisions(mark) if d.get("from") == want]
        return ds[-1] if ds else None
    return agtest.wait_until(find, timeout)


def check_log(mark, sender, fields, what):
    d = decision_for(mark, sender)
    if not check("%s: a decision log line for <%s>" % (what, sender), d is not None,
                 got="\n".join(ag().log_lines()[mark:][-10:])):
        return None
    got = {k: d.get(k) for k in fields}
    check_eq("%s: log %s" % (what, " ".join("%s=%s" % kv for kv in fields.items())),
             got, fields, detail=d["line"])
    return d


def mf(sender, result):
    return ("spf", result, {"smtp.mailfrom": sender})


def hl(result, helo=HELO):
    return ("spf", result, {"smtp.helo": helo})


# ---------------------------------------------------------------------------
# Results with the default dispositions


@suite.case
def pass_accepted_with_headers():
    mark = ag().log_mark()
    res = send("alice@pass.example")
    msg = accepted(res, "pass")
    check_authres(msg, [mf("alice@pass.example", "pass"), hl("none")], "pass")
    check_received_spf(msg, "pass", "pass", "alice@pass.example")
    check_log(mark, "alice@pass.example", {"action": "accept", "spf": "pass",
                                           "spf_helo": "none"}, "pass")
    check("pass: no X-Authgate-Tag", not any(n.lower() == "x-authgate-tag"
                                             for n, _ in headers(msg)), got=headers(msg))


@suite.case
def fail_rejected_550_5_7_23():
    mark = ag().log_mark()
    res = send("alice@fail.example")
    if rejected_at_mail(res, "550", "fail", "fail.example"):
        check("fail: 550 5.7.23 SPF fail ... does not designate this host",
              re.match(r"^550 5\.7\.23 SPF fail: fail\.example does not designate this host "
                       r"as a sender", res.mail) is not None, got=res.mail)
        check("fail.example publishes no exp=: the client sees no explanation, and no "
              "third-party URL (libspf2's default 'Please see http://www.openspf.org/...')",
              "openspf.org" not in res.mail, got=res.mail)
    check_log(mark, "alice@fail.example", {"action": "reject", "spf": "fail"}, "fail")
    check("Postfix logs the milter reject at MAIL",
          st().pf.wait_log("milter-reject: MAIL from client.example[%s]" % CLIENT),
          got=agtest.tail(st().pf.maillog, 5))


@suite.case
def fail_with_explanation():
    res = send("alice@failexp.example")
    if rejected_at_mail(res, "550", "fail with exp=", "failexp.example"):
        check("the reply is 550 5.7.23 with the sender's expanded explanation",
              re.match(r"^550 5\.7\.23 SPF fail: failexp\.example does not designate this host "
                       r"as a sender: 192\.0\.2\.10 may not send mail for failexp\.example",
                       res.mail) is not None, got=res.mail)


@suite.case
def softfail_accepted_with_header():
    mark = ag().log_mark()
    res = send("alice@softfail.example")
    msg = accepted(res, "softfail")
    check_authres(msg, [mf("alice@softfail.example", "softfail"), hl("none")], "softfail")
    check_received_spf(msg, "softfail", "softfail", "alice@softfail.example")
    check("softfail (default accept): no X-Authgate-Tag",
          not any(n.lower() == "x-authgate-tag" for n, _ in headers(msg)), got=headers(msg))
    check_log(mark, "alice@softfail.example", {"action": "accept", "spf": "softfail"},
              "softfail")


@suite.case
def neutral_accepted():
    res = send("alice@neutral.example")
    msg = accepted(res, "neutral")
    check_authres(msg, [mf("alice@neutral.example", "neutral"), hl("none")], "neutral")
    check_received_spf(msg, "neutral", "neutral", "alice@neutral.example")


@suite.case
def none_accepted():
    mark = ag().log_mark()
    res = send("alice@none.example")
    msg = accepted(res, "none (TXT but no SPF record)")
    check_authres(msg, [mf("alice@none.example", "none"), hl("none")], "none")
    check_received_spf(msg, "none", "none", "alice@none.example")
    check_log(mark, "alice@none.example", {"spf": "none"}, "none")
    res = send("alice@nxdomain.example")
    msg = accepted(res, "none (no such domain)")
    check_authres(msg, [mf("alice@nxdomain.example", "none"), hl("none")], "none (NXDOMAIN)")


PERMERRORS = [("syntax.example", "syntax error (ip4 /33)"),
              ("l11.example", "11 DNS-querying terms across includes"),
              ("void3.example", "3 void lookups"),
              ("loop.example", "include loop")]


@suite.case
def permerror_accepted_by_default():
    for dom, why in PERMERRORS:
        sender = "alice@" + dom
        mark = ag().log_mark()
        res = send(sender)
        what = "permerror, %s" % why
        if not check("%s: accepted (On-SPFPermerror accept)" % what,
                     res.stage == "eod" and res.final.startswith("250") and res.msg,
                     got=res):
            continue
        check_authres(res.msg, [mf(sender, "permerror"), hl("none")], what,
                      reason_for=[("spf", "permerror")])
        check_received_spf(res.msg, "permerror", what, sender)
        check_log(mark, sender, {"action": "accept", "spf": "permerror"}, what)


@suite.case
def limits_not_reached_are_not_errors():
    for dom, why in (("l10.example", "exactly 10 DNS-querying terms"),
                     ("void2.example", "2 void lookups")):
        res = send("alice@" + dom)
        msg = accepted(res, why)
        check_authres(msg, [mf("alice@" + dom, "pass"), hl("none")], why)


@suite.case
def helo_identity_checked():
    mark = ag().log_mark()
    res = send("alice@pass.example", helo="helo-pass.example")
    msg = accepted(res, "HELO with a pass record")
    check_authres(msg, [mf("alice@pass.example", "pass"),
                        hl("pass", "helo-pass.example")], "HELO pass")
    check_received_spf(msg, "pass", "HELO pass", "alice@pass.example", helo="helo-pass.example")
    check_log(mark, "alice@pass.example", {"spf": "pass", "spf_helo": "pass"}, "HELO pass")
    # The MAIL FROM identity decides: a failing HELO is recorded, not refused.
    res = send("alice@pass.example", helo="helo-fail.example")
    msg = accepted(res, "HELO with a -all record, MAIL FROM pass")
    check_authres(msg, [mf("alice@pass.example", "pass"),
                        hl("fail", "helo-fail.example")], "HELO fail")


@suite.case
def null_sender_checked_as_postmaster_at_helo():
    mark = ag().log_mark()
    res = send("", helo="helo-pass.example")
    msg = accepted(res, "MAIL FROM:<> with HELO helo-pass.example")
    # The HELO identity is the MAIL FROM identity's domain here: a separate
    # smtp.helo result may be left out.
    check_authres(msg, [mf("postmaster@helo-pass.example", "pass")], "null sender",
                  also_ok=[mf("postmaster@helo-pass.example", "pass"),
                           hl("pass", "helo-pass.example")])
    rs = [v for n, v in headers(msg) if n.lower() == "received-spf"]
    ps = [agdns.received_spf(v) for v in rs]
    check("null sender: Received-SPF pass, identity mailfrom, follows the grammar",
          len(rs) >= 1 and all(ps) and
          any(p[0] == "pass" and p[2].get("identity") == "mailfrom" for p in ps), got=rs)
    check_log(mark, "", {"action": "accept", "spf": "pass"}, "null sender")
    res = send("", helo="helo-fail.example")
    if rejected_at_mail(res, "550", "MAIL FROM:<> with HELO helo-fail.example",
                        "helo-fail.example"):
        check("null sender fail: 550 5.7.23", res.mail.startswith("550 5.7.23"), got=res.mail)


@suite.case
def trusted_network_not_checked():
    mark = ag().log_mark()
    res = send("alice@fail.example", addr="203.0.113.5")
    msg = accepted(res, "client 203.0.113.5 in TrustedNetworks, sender fail.example")
    for res_list in our_authres(msg):
        check("trusted: no spf result in Authentication-Results",
              not any(m == "spf" for m, _, _, _ in res_list), got=res_list)
    check("trusted: no Received-SPF", not any(n.lower() == "received-spf"
                                             for n, _ in headers(msg)), got=headers(msg))
    check_log(mark, "alice@fail.example", {"action": "accept", "spf": "skipped:trusted"},
              "trusted")


@suite.case
def authenticated_client_not_checked():
    mark = ag().log_mark()
    res = send("alice@fail.example", login="user")
    msg = accepted(res, "XCLIENT LOGIN=user, sender fail.example")
    check_authres(msg, [("auth", "pass", {"smtp.auth": "user"})], "authenticated")
    check("authenticated: no Received-SPF", not any(n.lower() == "received-spf"
                                                   for n, _ in headers(msg)), got=headers(msg))
    check_log(mark, "alice@fail.example", {"action": "accept", "spf": "skipped:authenticated"},
              "authenticated")


@suite.case
def rule_check_off_for_client_network():
    mark = ag().log_mark()
    res = send("alice@pass.example", addr="198.51.100.20")
    msg = accepted(res, "client 198.51.100.20 (rule --spf check=off), pass.example would fail")
    for res_list in our_authres(msg):
        check("check=off: no spf result in Authentication-Results",
              not any(m == "spf" for m, _, _, _ in res_list), got=res_list)
    check_log(mark, "alice@pass.example", {"action": "accept", "spf": "skipped:rule"},
              "check=off")
    res = send("alice@pass.example", addr="198.51.101.20")
    rejected_at_mail(res, "550", "control: client 198.51.101.20 outside the rule: fail")


@suite.case
def rule_softfail_reject_for_client_network():
    res = send("alice@softfail.example", addr="192.0.2.200")
    if rejected_at_mail(res, "550", "client 192.0.2.200 (rule softfail=reject), softfail",
                        "softfail.example"):
        check("softfail rejected: 550 5.7.23", res.mail.startswith("550 5.7.23"), got=res.mail)
    res = send("alice@softfail.example", addr="192.0.2.20")
    accepted(res, "control: client 192.0.2.20 outside the rule: softfail accepted")


@suite.case
def rule_exempts_postmaster_per_recipient():
    rid = ag().add_rule("--match", "rcpt=postmaster@example.com", "--spf", "fail=accept")
    try:
        def exempt_works():
            r = send("alice@fail.example", ["postmaster@example.com"], wait_sink=False)
            return r if r.stage == "eod" and r.final.startswith("250") else None
        r = agtest.wait_until(exempt_works, 8, 0.3)
        check("the new rule applies within 8 s (PolicyCheckInterval 1)", r is not None,
              fatal=True)
        mark = ag().log_mark()
        res = send("alice@fail.example", ["bob@example.net", "postmaster@example.com",
                                          "carol@example.net"])
        check("MAIL FROM goes on (the decision is per recipient)",
              res.mail is not None and res.mail.startswith("250"), got=res)
        check("RCPT bob: 550 5.7.23", len(res.rcpts) == 3 and
              res.rcpts[0].startswith("550 5.7.23"), got=res.rcpts)
        check("RCPT postmaster@example.com: 250", len(res.rcpts) == 3 and
              res.rcpts[1].startswith("250"), got=res.rcpts)
        check("RCPT carol: 550 5.7.23", len(res.rcpts) == 3 and
              res.rcpts[2].startswith("550 5.7.23"), got=res.rcpts)
        msg = accepted(res, "fail.example to postmaster")
        got = re.findall(r"^X-Rcpt-Args: <([^>]*)>", msg, re.M)
        check_eq("delivered to postmaster@example.com only", got, ["postmaster@example.com"],
                 detail=msg[:600])
        check_authres(msg, [mf("alice@fail.example", "fail"), hl("none")], "exempt postmaster")
        check_received_spf(msg, "fail", "exempt postmaster", "alice@fail.example")
        check_log(mark, "alice@fail.example", {"action": "accept", "spf": "fail"},
                  "exempt postmaster")
        res = send("alice@fail.example", ["bob@example.net"])
        check("without postmaster: refused (550 5.7.23 at MAIL or RCPT)",
              (res.stage == "mail" and res.mail.startswith("550 5.7.23")) or
              (res.stage == "rcpt" and res.rcpts[-1].startswith("550 5.7.23")), got=res)
    finally:
        ag().del_rule(rid)
    r = agtest.wait_until(lambda: send("alice@fail.example", ["postmaster@example.com"],
                                       wait_sink=False).stage in ("mail", "rcpt"), 8, 0.3)
    check("after the rule is deleted, postmaster gets the 550 too", r)


# ---------------------------------------------------------------------------
# Other dispositions (authgate restarted with another configuration)


@suite.case
def softfail_tag():
    reconfigure(**{"On-SPFSoftfail": "tag"})
    try:
        res = send("alice@softfail.example")
        msg = accepted(res, "softfail with On-SPFSoftfail tag")
        tags = [v for n, v in headers(msg) if n.lower() == "x-authgate-tag"]
        check_eq("X-Authgate-Tag at the sink", tags, ["spf=softfail"])
        check_authres(msg, [mf("alice@softfail.example", "softfail"), hl("none")],
                      "softfail tagged")
        res = send("alice@pass.example")
        msg = accepted(res, "control: pass under the same configuration")
        check("pass: no X-Authgate-Tag", not any(n.lower() == "x-authgate-tag"
                                                 for n, _ in headers(msg)), got=headers(msg))
    finally:
        reconfigure()


@suite.case
def permerror_rejected_when_configured():
    reconfigure(**{"On-SPFPermerror": "reject"})
    try:
        for dom, why in PERMERRORS:
            res = send("alice@" + dom)
            if rejected_at_mail(res, "550", "permerror (%s), On-SPFPermerror reject" % why,
                                dom):
                check("%s: 550 5.7.24" % why, res.mail.startswith("550 5.7.24"), got=res.mail)
        res = send("alice@l10.example")
        accepted(res, "control: 10 terms still pass")
    finally:
        reconfigure()


@suite.case
def temperror_dns_server_down():
    dns = S["dns"]
    dns.stop()
    try:
        mark = ag().log_mark()
        res = send("alice@pass.example")
        if rejected_at_mail(res, "451", "DNS server stopped", "pass.example"):
            check("451 4.7.24 SPF check of pass.example could not be completed",
                  re.match(r"^451 4\.7\.24 SPF check of pass\.example could not be completed",
                           res.mail) is not None, got=res.mail)
        check("the reply came within DNSTimeout + 2 s", res.mail_secs < 1.0 + 2.0,
              got="%.2fs" % (res.mail_secs or -1))
        check_log(mark, "alice@pass.example", {"action": "tempfail", "spf": "temperror"},
                  "DNS down")
    finally:
        dns.start()
    t0 = time.monotonic()
    r = agtest.wait_until(lambda: send("alice@pass.example", wait_sink=False).stage == "eod",
                          10, 0.5)
    check("after the DNS server is back, pass mail is accepted again within 10 s", r)
    diag("accepted again %.1fs after the DNS server came back" % (time.monotonic() - t0))


@suite.case
def temperror_dns_server_never_answers():
    slow = S.get("slow") or agdns.Responder(agtest.tmpdir("slowdns"), SLOW_ZONES,
                                            modes=SLOW_MODES, delay=SLOW_DELAY).start()
    S["slow"] = slow
    pf_limit = int(st().pf.settings["milter_command_timeout"].rstrip("s"))
    try:
        for sender, why, dns_tmo, spf_tmo, least in SLOW_CASES:
            reconfigure(DNSServer=slow.server, DNSTimeout=str(dns_tmo), SPFTimeout=str(spf_tmo))
            why += " (DNSTimeout %d, SPFTimeout %d)" % (dns_tmo, spf_tmo)
            res = send("alice@pass.example")
            accepted(res, "control: a record the slow server answers")
            limit = spf_tmo / 1000.0 + 2.0
            mark = ag().log_mark()
            res = send(sender)
            if rejected_at_mail(res, "451", why, sender.split("@")[1]):
                check("%s: 451 4.7.24" % why, res.mail.startswith("451 4.7.24"), got=res.mail)
            secs = res.mail_secs if res.mail_secs is not None else -1
            diag("%s: MAIL FROM reply after %.2fs" % (why, secs))
            check("%s: the reply came in %.1fs < SPFTimeout + 2 s = %.1fs" % (why, secs, limit),
                  0 <= secs < limit)
            check("%s: and well inside Postfix's milter_command_timeout (%ds)" % (why, pf_limit),
                  0 <= secs < pf_limit - 5)
            check("%s: not before the timeout it hit (%.1fs): the slow path was taken" %
                  (why, least / 1000.0), secs >= least / 1000.0 - 0.2, got="%.2fs" % secs)
            check_log(mark, sender, {"action": "tempfail", "spf": "temperror"}, why)
        names = [q[1] for q in slow.queries()]
        check("the slow server was asked for the dropped and the slow names",
              "dropped.example." in names and "s1.slow.example." in names, got=names)
    finally:
        reconfigure()


suite.run()
