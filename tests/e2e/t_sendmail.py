#!/usr/bin/python3
"""End to end with a real Sendmail (Debian's sendmail-bin, unpacked, see
tests/lib/agsendmail.py): Sendmail -> authgate (unix socket,
INPUT_MAIL_FILTER with F=T, T=S:30s;R:30s;E:5m) -> smtp-sink, side by side
with Postfix -> the same authgate -> the same sink.

Every case sends the same thing through both MTAs and checks what users
see: the SMTP replies (code, enhanced code and text), the fields authgate
adds at the sink (Authentication-Results parsed with python3-authres,
Received-SPF checked against RFC 7208 9.1) and the decision log line.
The comparison is the assertion: Sendmail must give what Postfix gives,
and each must give what is expected.

Cases: a plain message (log line with Sendmail's queue id and the client);
size (SIZE= at MAIL FROM, the real size at end of data); SPF fail
(550 5.7.23 at MAIL FROM) and pass (Received-SPF and
Authentication-Results); DKIM signed with python3-dkim, simple/simple and
relaxed/relaxed (dkim=pass); forged Authentication-Results removed; a
rate rule (the third message gets 451 4.7.1); DMARC (on for every case:
dmarc=none where the zones publish no policy) with a p=reject failure
(550 5.7.1 at end of data) and a p=quarantine failure (Postfix's hold
queue; Sendmail's smfi_quarantine: an hf file in its queue with the
reason on its q line, listed by mailq -qQ); and authgate stopped
(Sendmail's own 451 4.3.2 at MAIL FROM, F=T).

Sendmail has no XCLIENT and libspf2 passes any 127.0.0.0/8 client, so
the script runs in a network namespace of its own whose loopback
interface also carries the client addresses (agsendmail.private_network):
both MTAs see real TCP clients from 192.0.2.10."""

import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agsendmail  # noqa: E402

CLIENT = "192.0.2.10"            # pass.example allows 192.0.2.0/24
NO_NET = agsendmail.private_network([CLIENT + "/32"])

import agtest  # noqa: E402
import agpostfix  # noqa: E402
import agdns  # noqa: E402
from agtest import check, check_eq, diag  # noqa: E402
from agpostfix import reply  # noqa: E402

suite = agtest.Suite("e2e: Sendmail and Postfix side by side", case_timeout=60)
S = {}

AUTHSERV = "mx.test.invalid"
HELO = "client.example"
MTAS = ("postfix", "sendmail")
RCPT = "bob@example.net"
GENKEY = "/usr/sbin/opendkim-genkey"

ZONES = {
    "pass.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "fail.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")],
    # DMARC policies (the PSL knows no "example": each is its own
    # organizational domain)
    "_dmarc.reject.example": [("TXT", "v=DMARC1; p=reject")],
    "_dmarc.quarantine.example": [("TXT", "v=DMARC1; p=quarantine")],
}


@suite.setup
def setup():
    if NO_NET:
        if agtest.IN_CI:
            check("a private network namespace", False, NO_NET, fatal=True)
        raise agtest.Skip(NO_NET)
    agpostfix.require()
    S["binary"] = agsendmail.require()
    agdns.require()
    agtest.require("authres", "module")
    agtest.require("dkim", "module")
    agtest.require(GENKEY)
    agtest.require_authgate()
    keydir = agtest.tmpdir("keys")
    r = agtest.run([GENKEY, "-b", "2048", "-d", "example.com", "-s", "sel", "-D", keydir])
    check("opendkim-genkey", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    with open(os.path.join(keydir, "sel.txt")) as f:
        record = "".join(re.findall(r'"([^"]*)"', f.read()))
    with open(os.path.join(keydir, "sel.private"), "rb") as f:
        S["key"] = f.read()
    zones = dict(ZONES)
    zones["sel._domainkey.example.com"] = [("TXT", record)]
    dns = S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), zones).start()

    sink = S["sink"] = agpostfix.Sink(agtest.tmpdir("sink"))
    ag = S["ag"] = agtest.Authgate(agtest.tmpdir("ag"), socket_kind="unix", conf={
        "SPFCheck": "yes", "DNSServer": dns.server, "DNSTimeout": "1000",
        "DMARCCheck": "yes",
        "TrustedNetworks": "127.0.0.0/8, ::1/128",
        # Postfix's smtpd (user postfix) connects to the socket too
        "UMask": "0000"})
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["size_rule"] = ag.add_rule("--match", "sender-domain=small.example", "--max-size", "10k")
    S["rate_rule"] = ag.add_rule("--match", "sender-domain=rate.example",
                                 "--rate", "messages:2/1h:sender")
    sink.start()
    ag.start()
    S["postfix"] = agpostfix.Postfix(agtest.tmpdir("pf"), sink.port, milter=ag.socket)
    S["sendmail"] = agsendmail.Sendmail(agtest.tmpdir("sm"), sink.port, milter=ag.socket,
                                        binary_path=S["binary"])
    t0 = time.monotonic()
    S["postfix"].start()
    t1 = time.monotonic()
    S["sendmail"].start()
    diag("Postfix started in %.2fs, Sendmail in %.2fs" % (t1 - t0, time.monotonic() - t1))
    sm = S["sendmail"]
    check_eq("Sendmail's pid file names the process started (stopped by that PID)",
             agtest.wait_until(sm.daemon_pid, 5), sm.proc.pid)
    S["seq"] = 0


# ---------------------------------------------------------------------------
# Sending


class Res:
    """One transaction through one MTA."""

    def __init__(self, mta, token):
        self.mta = mta
        self.token = token
        self.stage = None       # mail | rcpt | data | eod
        self.final = None       # 'CODE TEXT' of the last reply
        self.rcpts = []
        self.msg = None         # the sink's dump, when accepted

    @property
    def qid(self):
        if self.stage != "eod" or not self.final.startswith("250"):
            return None
        if self.mta == "postfix":
            return agpostfix.queued_id(self.final)
        return agsendmail.queued_id(self.final)

    def __repr__(self):
        return "<%s stage=%s final=%r rcpts=%r>" % (self.mta, self.stage, self.final, self.rcpts)


def token(label):
    S["seq"] += 1
    return "smtok-%s-%d-%d" % (label, os.getpid(), S["seq"])


def plain(tok, sender, size=0, extra=()):
    h, b = agtest.make_message(tok, size=size, sender=sender, rcpt=RCPT,
                               msgid="<%s@test.invalid>" % tok, extra_headers=extra)
    return agtest.message_bytes(h, b)


def send(mta, sender, msg, tok, mail_params="", source=CLIENT, helo=HELO, wait=True):
    """MSG through MTA from SOURCE: raw MAIL/RCPT/DATA (no SIZE= unless in
    MAIL_PARAMS); the sink's dump when accepted."""
    res = Res(mta, tok)
    s = S[mta].smtp(helo, source=source) if mta == "sendmail" else \
        smtplib.SMTP(local_hostname=helo, timeout=30, source_address=(source, 0))
    try:
        if mta == "postfix":
            s.connect("127.0.0.1", S["postfix"].port)
            s.ehlo(helo)
        res.stage, res.final, res.rcpts = agpostfix.send_raw(s, sender, [RCPT], msg,
                                                             mail_params)
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass
    if wait and res.stage == "eod" and res.final.startswith("250"):
        res.msg = S["sink"].wait_for(tok)
    return res


def both(label, sender, build, **kw):
    """The same message (BUILD(token) -> bytes) through each MTA: {mta: Res}."""
    out = {}
    for mta in MTAS:
        tok = token("%s-%s" % (label, mta[:2]))
        out[mta] = send(mta, sender, build(tok), tok, **kw)
    return out


def barrier():
    """A plain message through Postfix, waited for at the sink: what
    Postfix accepted before it has had its chance to arrive (Sendmail
    delivers before it answers: DeliveryMode interactive)."""
    tok = token("barrier")
    res = send("postfix", "barrier@example.org", plain(tok, "barrier@example.org"), tok)
    return check("barrier message delivered", res.msg is not None, got=res)


# ---------------------------------------------------------------------------
# Views that must be the same for both MTAs


# Sendmail puts the address of the command in front of the text of a 050,
# 250, 252, 450, 550 or 553 reply (sendmail/err.c, fmtmsg()): a milter's
# "550 5.7.23 SPF fail: ..." at MAIL FROM reaches the client as
# "550 5.7.23 <alice@fail.example>... SPF fail: ...".
SM_ADDR_PREFIX = r"^<[^<>]*>\.\.\. "


def reply_view(text):
    """(code, enhanced code, text) of an authgate reply; for a 250 only
    the codes (the rest is the MTA's own text); Sendmail's address in
    front of the text left out (SM_ADDR_PREFIX), a retry time as N, the
    rate test's per-MTA sender as MTA@."""
    m = re.match(r"^(\d{3}) (\d\.\d{1,3}\.\d{1,3}) ?(.*)$", text or "")
    if not m:
        return (text, None, None)
    if m.group(1) == "250":
        return (m.group(1), m.group(2), None)
    t = re.sub(SM_ADDR_PREFIX, "", m.group(3))
    t = re.sub(r"try again in \d+ seconds", "try again in N seconds", t)
    t = re.sub(r"\b(postfix|sendmail)@rate\.example", "MTA@rate.example", t)
    return (m.group(1), m.group(2), t)


def outcome(res):
    return (res.stage, reply_view(res.final), [reply_view(r) for r in res.rcpts])


def is_ours(name, value):
    if name.lower() in ("received-spf",) or name.lower().startswith("x-authgate"):
        return True
    if name.lower() != "authentication-results":
        return False
    try:
        return agtest.authres_results(value)[0].lower() == AUTHSERV
    except Exception:
        return False


def added(msg):
    """The fields authgate added, in order, header.b= masked (each MTA's
    copy of a message has its own signature)."""
    return [(n, re.sub(r"header\.b=\S+?(?=[;\s]|$)", "header.b=*", v))
            for n, v in agtest.header_fields(msg) if is_ours(n, v)]


def layout(msg, mta):
    """Field names from the top down, past the sink's own trace fields,
    with the MTA's Received as 'received(MTA)' and every field authgate
    added as itself: where authgate's fields land."""
    out = []
    for n, v in agtest.header_fields(msg):
        ln = n.lower()
        if ln.startswith("x-") and not ln.startswith("x-authgate") and ln != "x-tabbed":
            continue        # smtp-sink's X-Client-Addr etc.
        if ln == "received" and "by smtp-sink" in v:
            continue
        if ln == "received":
            ln = "received(%s)" % mta
        out.append(ln)
    return out


def compare(what, res):
    """Sendmail's result is Postfix's: replies, authgate's fields and
    their place, and the decision line's verdict fields."""
    pf, sm = res["postfix"], res["sendmail"]
    check_eq("%s: Sendmail's replies are Postfix's" % what, outcome(sm), outcome(pf))
    if pf.msg is not None or sm.msg is not None:
        check_eq("%s: the fields authgate added at the sink are the same" % what,
                 added(sm.msg or ""), added(pf.msg or ""))
        check_eq("%s: and in the same place" % what,
                 [x.replace("(sendmail)", "(mta)") for x in layout(sm.msg or "", "sendmail")],
                 [x.replace("(postfix)", "(mta)") for x in layout(pf.msg or "", "postfix")])


VERDICT = ("action", "rule", "reason", "code", "spf", "spf_helo", "dkim", "rcpts", "helo",
           "rate", "forged_ar")


def decision(res, mark, sender, timeout=5.0):
    """The decision line of RES: by queue id when accepted, else the last
    line for SENDER after MARK."""
    ag = S["ag"]
    qid = res.qid

    def find():
        ds = [d for d in ag.decisions(mark) if (d["qid"] == qid if qid else
                                                d.get("from") == "<%s>" % sender)]
        return ds[-1] if ds else None
    return agtest.wait_until(find, timeout)


def compare_log(what, res, marks, sender):
    ds = {m: decision(res[m], marks[m], sender) for m in MTAS}
    for m in MTAS:
        check("%s: a decision line for the %s message" % (what, m), ds[m] is not None,
              got="\n".join(S["ag"].log_lines()[marks[m]:][-8:]))
    if ds["postfix"] and ds["sendmail"]:
        pick = (lambda d: {k: d.get(k) for k in VERDICT})
        check_eq("%s: the decision is logged the same" % what, pick(ds["sendmail"]),
                 pick(ds["postfix"]), detail="%s\n%s" % (ds["postfix"]["line"],
                                                         ds["sendmail"]["line"]))
    return ds


def run_both(label, sender, build, **kw):
    """both() with a log mark before each MTA's message."""
    out, marks = {}, {}
    for mta in MTAS:
        marks[mta] = S["ag"].log_mark()
        tok = token("%s-%s" % (label, mta[:2]))
        out[mta] = send(mta, sender, build(tok), tok, **kw)
    return out, marks


def our_authres(msg, what):
    """Our one Authentication-Results, parsed: [(method, result, reason,
    props)]."""
    ars = [v for n, v in agtest.header_fields(msg) if n.lower() == "authentication-results" and
           is_ours(n, v)]
    if not check("%s: exactly one Authentication-Results from %s" % (what, AUTHSERV),
                 len(ars) == 1, got=ars):
        return []
    return agtest.authres_results(ars[0])[1]


def accepted(what, res):
    for m in MTAS:
        check("%s via %s: 250 at end of data, at the sink" % (what, m),
              res[m].stage == "eod" and res[m].final.startswith("250") and
              res[m].msg is not None, got=res[m], fatal=True)


# ---------------------------------------------------------------------------
# Cases


@suite.case
def plain_message_and_log_line():
    sender = "alice@example.org"
    res, marks = run_both("plain", sender, lambda t: plain(t, sender))
    accepted("plain", res)
    sm = res["sendmail"]
    check("Sendmail's 250 names its queue id", sm.qid is not None, got=sm.final)
    msg = sm.msg
    check("Sendmail's Received at the sink shows the client", "[%s]" % CLIENT in msg,
          got=msg[:800])
    ars = our_authres(msg, "plain via sendmail")
    check_eq("plain via sendmail: spf=none for MAIL FROM and HELO, dkim=none, dmarc=none",
             sorted((m, r, tuple(sorted(p))) for m, r, _, p in ars),
             [("dkim", "none", ()), ("dmarc", "none", ("header.from",)),
              ("spf", "none", ("smtp.helo",)), ("spf", "none", ("smtp.mailfrom",))])
    ds = compare_log("plain", res, marks, sender)
    d = ds["sendmail"]
    if d:
        check_eq("the Sendmail message's log line has Sendmail's queue id", d["qid"], sm.qid,
                 detail=d["line"])
        check_eq("and the client as Postfix's line has it (no reverse DNS: unknown)",
                 d.get("client"), "unknown[%s]" % CLIENT, detail=d["line"])
        check_eq("and the sender", d.get("from"), "<%s>" % sender, detail=d["line"])
        check_eq("and action=accept", d.get("action"), "accept", detail=d["line"])
    compare("plain", res)
    diag("where authgate's fields land: postfix %s" % layout(res["postfix"].msg, "postfix"),
         "sendmail %s" % layout(msg, "sendmail"))


@suite.case
def size_param_over_limit_at_mail_from():
    out = {}
    marks = {}
    for mta in MTAS:
        marks[mta] = S["ag"].log_mark()
        if mta == "sendmail":
            s = S[mta].smtp(HELO, source=CLIENT)
        else:
            s = smtplib.SMTP(local_hostname=HELO, timeout=30, source_address=(CLIENT, 0))
            s.connect("127.0.0.1", S[mta].port)
            s.ehlo(HELO)
        out[mta] = [reply(s.docmd("MAIL FROM:<alice@small.example> SIZE=20000"))]
        s.rset()
        out[mta].append(reply(s.docmd("MAIL FROM:<alice@small.example> SIZE=5000")))
        s.quit()
    sm = [d for d in S["ag"].decisions(marks["sendmail"]) if d.get("reason") == "size"]
    check("Sendmail sends its queue id at MAIL: the refusal's line has it, not NOQUEUE",
          len(sm) == 1 and re.match(r"^[0-9A-Za-z]{8,}$", sm[0]["qid"]) is not None,
          got=[d["line"] for d in sm])
    for mta in MTAS:
        check("%s: SIZE=20000 over 10k: 552 5.3.4" % mta, out[mta][0].startswith("552 5.3.4 "),
              got=out[mta])
        check("%s: SIZE=5000: 250" % mta, out[mta][1].startswith("250"), got=out[mta])
    check_eq("Sendmail's replies are Postfix's", [reply_view(x) for x in out["sendmail"]],
             [reply_view(x) for x in out["postfix"]])


@suite.case
def oversize_without_size_param_after_data():
    sender = "alice@small.example"
    res, marks = run_both("big", sender, lambda t: plain(t, sender, size=20000))
    for m in MTAS:
        check("%s: 20 KB without SIZE=: 552 5.3.4 at end of data" % m,
              res[m].stage == "eod" and res[m].final.startswith("552 5.3.4 "), got=res[m])
    compare("oversize", res)
    compare_log("oversize", res, marks, sender)
    if barrier():
        for m in MTAS:
            check("%s: nothing at the sink" % m, S["sink"].find(res[m].token) == [])


@suite.case
def spf_fail_rejected_at_mail_from():
    sender = "alice@fail.example"
    res, marks = run_both("spffail", sender, lambda t: plain(t, sender))
    check("postfix: 550 5.7.23 at MAIL FROM", res["postfix"].stage == "mail" and
          re.match(r"^550 5\.7\.23 SPF fail: fail\.example does not designate this host",
                   res["postfix"].final) is not None, got=res["postfix"])
    check("sendmail: 550 5.7.23 at MAIL FROM, the sender in front of the text (Sendmail's "
          "own doing for 550)", res["sendmail"].stage == "mail" and
          re.match(r"^550 5\.7\.23 <alice@fail\.example>\.\.\. SPF fail: fail\.example "
                   r"does not designate this host", res["sendmail"].final) is not None,
          got=res["sendmail"])
    compare("SPF fail", res)
    ds = compare_log("SPF fail", res, marks, sender)
    if ds["sendmail"]:
        check_eq("Sendmail: log action=reject spf=fail",
                 (ds["sendmail"].get("action"), ds["sendmail"].get("spf")), ("reject", "fail"),
                 detail=ds["sendmail"]["line"])


@suite.case
def spf_pass_headers():
    sender = "alice@pass.example"
    res, marks = run_both("spfpass", sender, lambda t: plain(t, sender))
    accepted("SPF pass", res)
    for m in MTAS:
        msg = res[m].msg
        ars = our_authres(msg, "SPF pass via %s" % m)
        check_eq("%s: spf=pass smtp.mailfrom=%s" % (m, sender),
                 [(r, p) for meth, r, _, p in ars if meth == "spf" and "smtp.mailfrom" in p],
                 [("pass", {"smtp.mailfrom": sender})])
        rs = [v for n, v in agtest.header_fields(msg) if n.lower() == "received-spf"]
        parsed = [agdns.received_spf(v) for v in rs]
        mf = [p for p in parsed if p and p[2].get("identity") == "mailfrom"]
        check("%s: one Received-SPF for mailfrom, RFC 7208 9.1 grammar" % m,
              len(mf) == 1 and all(parsed), got=rs)
        if mf:
            check_eq("%s: Received-SPF pass, client-ip, helo, envelope-from" % m,
                     (mf[0][0], mf[0][2].get("client-ip"), mf[0][2].get("helo"),
                      mf[0][2].get("envelope-from")), ("pass", CLIENT, HELO, sender))
    compare("SPF pass", res)
    compare_log("SPF pass", res, marks, sender)


def dkim_message(tok, frm="Alice Example <alice@example.com>", extra=()):
    """A message whose simple and relaxed canonical forms differ: folded
    and tabbed fields, trailing white space, empty lines at the end."""
    hdr = [
        "From: %s" % frm,
        "To: Bob Example <bob@example.net>,\r\n\tCarol Example <carol@example.net>",
        "Subject: DKIM through %s,\r\n  folded" % tok,
        "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
        "Message-ID: <%s@example.com>" % tok,
        "X-Tabbed:\tvalue after a tab",
    ] + list(extra)
    body = (b"Hello Bob,  \r\n\r\nthis body has trailing white space\t \r\n"
            b"and  doubled   spaces.\r\n\r\n\r\n")
    return ("\r\n".join(hdr) + "\r\n\r\n").encode() + body


def sign(msg, canon):
    import dkim
    c = canon.encode()
    return dkim.sign(msg, b"sel", b"example.com", S["key"], canonicalize=(c, c),
                     linesep=b"\r\n") + msg


@suite.case
def dkim_signed_passes():
    sender = "alice@example.com"
    for canon in ("simple", "relaxed"):
        res, marks = run_both("dkim" + canon[0], sender,
                              lambda t: sign(dkim_message(t), canon))
        what = "DKIM %s/%s" % (canon, canon)
        accepted(what, res)
        for m in MTAS:
            ars = our_authres(res[m].msg, "%s via %s" % (what, m))
            got = [(r, p.get("header.d"), p.get("header.s")) for meth, r, _, p in ars
                   if meth == "dkim"]
            check_eq("%s via %s: dkim=pass header.d=example.com header.s=sel" % (what, m), got,
                     [("pass", "example.com", "sel")])
        compare(what, res)
        ds = compare_log(what, res, marks, sender)
        if ds["sendmail"]:
            check_eq("%s: Sendmail's log dkim=pass:d=example.com" % what,
                     ds["sendmail"].get("dkim"), "pass:d=example.com",
                     detail=ds["sendmail"]["line"])


@suite.case
def forged_authentication_results_removed():
    sender = "alice@example.com"
    forged = [
        "Authentication-Results: mx.test.invalid; dkim=pass header.d=paypal.com",
        "Authentication-Results: (comment) MX.Test.Invalid;\r\n\tspf=pass smtp.mailfrom=paypal.com",
        "Authentication-Results: relay.example.net; spf=pass smtp.mailfrom=example.com",
    ]
    res, marks = run_both("forged", sender,
                          lambda t: sign(dkim_message(t, extra=forged), "relaxed"))
    accepted("forged", res)
    for m in MTAS:
        ars = [v for n, v in agtest.header_fields(res[m].msg)
               if n.lower() == "authentication-results"]
        check("%s: no forged copy claiming %s reaches the sink" % (m, AUTHSERV),
              sum(1 for v in ars if re.match(r"(\(comment\)\s*)?mx\.test\.invalid;", v, re.I))
              == 1 and not any("paypal" in v for v in ars), got=ars)
        check_eq("%s: the foreign one is kept, unchanged" % m,
                 [v for v in ars if v.startswith("relay.example.net")],
                 ["relay.example.net; spf=pass smtp.mailfrom=example.com"])
        got = [(meth, r) for meth, r, _, _ in our_authres(res[m].msg, "forged via " + m)
               if meth == "dkim"]
        check_eq("%s: ours says dkim=pass" % m, got, [("dkim", "pass")])
    compare("forged", res)
    ds = compare_log("forged", res, marks, sender)
    if ds["sendmail"]:
        check_eq("Sendmail: log forged_ar=2", ds["sendmail"].get("forged_ar"), "2",
                 detail=ds["sendmail"]["line"])


@suite.case
def rate_limit_third_message_451():
    out = {}
    for mta in MTAS:
        sender = "%s@rate.example" % mta
        out[mta] = []
        for i in range(3):
            tok = token("rate-%s-%d" % (mta[:2], i))
            out[mta].append(send(mta, sender, plain(tok, sender), tok))
    for mta in MTAS:
        r = out[mta]
        check("%s: messages 1 and 2 accepted" % mta,
              all(x.stage == "eod" and x.final.startswith("250") for x in r[:2]), got=r)
        check("%s: message 3 gets 451 4.7.1 Rate limit reached at MAIL FROM" % mta,
              r[2].stage == "mail" and
              re.match(r"^451 4\.7\.1 Rate limit reached: .*try again in \d+ seconds$",
                       r[2].final) is not None, got=r[2])
    check_eq("Sendmail's replies are Postfix's", [outcome(x) for x in out["sendmail"]],
             [outcome(x) for x in out["postfix"]])


# ---------------------------------------------------------------------------
# DMARC: an unaligned From (the envelope passes SPF for pass.example, the
# message is not signed)


def unaligned(tok, from_domain):
    h, b = agtest.make_message(tok, sender="alice@pass.example", rcpt=RCPT,
                               msgid="<%s@test.invalid>" % tok)
    h = [("From", "CEO <ceo@%s>" % from_domain) if n == "From" else (n, v) for n, v in h]
    return agtest.message_bytes(h, b)


def check_dmarc_log(what, ds, fields):
    for m in MTAS:
        d = ds.get(m)
        if d:
            check_eq("%s via %s: log %s" % (what, m, " ".join("%s=%s" % kv
                                                              for kv in fields.items())),
                     {k: d.get(k) for k in fields}, fields, detail=d["line"])


@suite.case
def dmarc_reject_550():
    sender = "alice@pass.example"
    res, marks = run_both("dmrej", sender, lambda t: unaligned(t, "reject.example"))
    want = ("550", "5.7.1", "Message rejected by the DMARC policy of reject.example: the "
            "author domain is neither SPF- nor DKIM-aligned")
    for m in MTAS:
        check_eq("%s: p=reject, From unaligned: refused at end of data, 550 5.7.1 naming "
                 "reject.example" % m, (res[m].stage, reply_view(res[m].final)),
                 ("eod", want))
    check("sendmail: the reply is 550 5.7.1 (the text as above, any address Sendmail puts "
          "in front aside)", re.match(r"^550 5\.7\.1 (%s)?Message rejected by the DMARC "
                                      r"policy of reject\.example:" % SM_ADDR_PREFIX[1:],
                                      res["sendmail"].final or "") is not None,
          got=res["sendmail"].final)
    diag("DMARC p=reject: Sendmail's reply %r" % res["sendmail"].final)
    compare("DMARC p=reject", res)
    ds = compare_log("DMARC p=reject", res, marks, sender)
    check_dmarc_log("DMARC p=reject", ds, {"action": "reject", "dmarc": "fail",
                                           "header_from": "reject.example",
                                           "policy": "reject"})
    if barrier():
        for m in MTAS:
            check("%s: the refused message is not at the sink" % m,
                  S["sink"].find(res[m].token) == [])


def sendmail_queue_file(qid):
    """(name, text) of Sendmail's control file for QID (qf, or hf when
    quarantined), or (None, None)."""
    for pre in ("hf", "qf"):
        p = os.path.join(S["sendmail"].queue, pre + qid)
        if os.path.exists(p):
            with open(p, errors="replace") as f:
                return pre + qid, f.read()
    return None, None


@suite.case
def dmarc_quarantine_held():
    sender = "alice@pass.example"
    res, marks = run_both("dmquar", sender, lambda t: unaligned(t, "quarantine.example"),
                          wait=False)
    for m in MTAS:
        check("%s: p=quarantine, From unaligned: 250 at end of data" % m,
              res[m].stage == "eod" and res[m].final.startswith("250") and
              res[m].qid is not None, got=res[m])
    check_eq("Sendmail's replies are Postfix's", outcome(res["sendmail"]),
             outcome(res["postfix"]))
    reason = "DMARC quarantine policy of quarantine.example"
    qid = res["sendmail"].qid
    if qid:
        got = agtest.wait_until(lambda: (lambda nt: nt if nt[0] else None)(
            sendmail_queue_file(qid)), 5)
        name, text = got or (None, None)
        check_eq("sendmail: %s is quarantined in its queue (hf%s, not qf)" % (qid, qid),
                 name, "hf" + qid, detail=sorted(os.listdir(S["sendmail"].queue)))
        qlines = [ln[1:] for ln in (text or "").splitlines() if ln.startswith("q")]
        check_eq("sendmail: the queue file's q line is authgate's reason", qlines, [reason],
                 detail=text)
        r = agtest.run(S["sendmail"].wrap("-bp", "-qQ"), timeout=30)
        check("sendmail: mailq -qQ lists %s with the reason" % qid,
              r.returncode == 0 and qid in r.stdout and reason in r.stdout,
              agtest.fmt_run(r))
    pqid = res["postfix"].qid
    if pqid:
        hold = os.path.join(S["postfix"].queue, "hold", pqid)
        check("postfix: %s is in the hold queue" % pqid,
              agtest.wait_until(lambda: os.path.exists(hold), 5), got=hold)
    ds = compare_log("DMARC p=quarantine", res, marks, sender)
    check_dmarc_log("DMARC p=quarantine", ds, {"action": "quarantine", "dmarc": "fail",
                                               "header_from": "quarantine.example",
                                               "policy": "quarantine"})
    if barrier():
        for m in MTAS:
            check("%s: the quarantined message is not at the sink" % m,
                  S["sink"].find(res[m].token) == [])


def man_page_mc_lines():
    """The .mc lines of authgate(8), SENDMAIL, as an administrator would
    copy them (roff escapes undone)."""
    with open(os.path.join(agtest.SRCDIR, "man", "authgate.8")) as f:
        text = f.read()
    sec = text[text.index(".SH SENDMAIL"):text.index(".SH FILES")]
    blocks = re.findall(r"^\.nf\n(.*?)^\.fi$", sec, re.M | re.S)
    return "".join(blocks).replace("\\(ga", "`").replace("\\(aq", "'")


@suite.case
def man_page_mc_lines_work():
    """A second Sendmail built from the man page's lines alone (the socket
    path changed) passes mail through authgate."""
    lines = man_page_mc_lines()
    check("authgate(8) SENDMAIL has INPUT_MAIL_FILTER and confMILTER_MACROS_ lines",
          "INPUT_MAIL_FILTER(`authgate'," in lines and "confMILTER_MACROS_CONNECT" in lines,
          got=lines, fatal=True)
    lines = lines.replace("unix:/run/authgate/authgate.sock", S["ag"].socket)
    sm = agsendmail.Sendmail(agtest.tmpdir("sm-man"), S["sink"].port, milter=None,
                             extra_mc=lines.splitlines(), binary_path=S["binary"])
    sm.start()
    try:
        with open(sm.cf) as f:
            cf = f.read()
        check("the .cf has the filter with F=T and the timeouts",
              "\nXauthgate, S=%s, F=T, T=S:30s;R:30s;E:5m\n" % S["ag"].socket in cf,
              got=[ln for ln in cf.splitlines() if ln.startswith("X")])
        check("and the connect macros with {client_addr} and {client_name}",
              "\nO Milter.macros.connect=j, _, {daemon_name}, {if_name}, {if_addr}, "
              "{client_addr}, {client_name}\n" in cf,
              got=[ln for ln in cf.splitlines() if "Milter.macros" in ln])
        mark = S["ag"].log_mark()
        tok = token("man")
        c = sm.smtp(HELO, source=CLIENT)
        stage, rep, rr = agpostfix.send_raw(c, "alice@example.org", [RCPT],
                                            plain(tok, "alice@example.org"))
        c.quit()
        check("a message through it: 250", stage == "eod" and rep.startswith("250"),
              got=(stage, rep, rr))
        qid = agsendmail.queued_id(rep)
        check("at the sink", S["sink"].wait_for(tok) is not None)
        if qid:
            agtest.check_decision(S["ag"], qid, "accept", since=mark,
                                  what="authgate's line with Sendmail's queue id")
    finally:
        sm.stop()


@suite.case
def authgate_down_sendmail_451_4_3_2():
    ag = S["ag"]
    ag.stop()
    try:
        tok = token("down")
        res = send("sendmail", "alice@example.org", plain(tok, "alice@example.org"), tok)
        check("authgate stopped, F=T: Sendmail answers MAIL FROM with 451 4.3.2",
              res.stage == "mail" and res.final.startswith("451 4.3.2"), got=res)
        tok = token("down")
        pf = send("postfix", "alice@example.org", plain(tok, "alice@example.org"), tok)
        diag("for comparison, Postfix with milter_default_action=tempfail: %r" % pf)
        check("Postfix (milter_default_action=tempfail) refuses it too, with a 4xx",
              pf.final is not None and pf.final.startswith("4"), got=pf)
    finally:
        ag.start()
    tok = token("up")
    res = send("sendmail", "alice@example.org", plain(tok, "alice@example.org"), tok)
    check("authgate started again: Sendmail accepts the next message",
          res.stage == "eod" and res.final.startswith("250") and res.msg is not None, got=res)


suite.run()
