#!/usr/bin/python3
"""End to end, real Postfix -> authgate -> smtp-sink, DMARC (RFC 7489, np=
of RFC 9091): policy records served by a real unbound on loopback, SPF
checked by authgate against records in the same zone, DKIM signatures
made at test time by an independent implementation (dkimpy's dkim
module, a key from opendkim-genkey published in the zone).

Every message comes from a client that XCLIENT presents as 192.0.2.x
(neither trusted nor authenticated), and what is checked is what users
see: the SMTP reply (550 5.7.1 / 451 4.7.1 / 250), where the message
went (the sink, or Postfix's hold queue for quarantine), the
Authentication-Results header (every one at the sink parsed with
python3-authres: dmarc=RESULT header.from=D policy.dmarc=DISPOSITION) and
the decision log line (dmarc=... header_from=... policy=... pct=out
override=config|rule).

Cases: pass by aligned SPF only (the HELO identity only for the null
sender) and by aligned DKIM only; relaxed and strict alignment (adkim,
aspf); the organizational domain's record with sp= and np=; p=reject,
p=quarantine (hold; tag, also beside an SPF tag), p=none, pct=0; no
record; trusted, authenticated and rule-exempt clients (not evaluated);
temperror (a DNS server that fails or never answers _dmarc names, at the
From domain or its organizational domain) with both On-DMARCTemperror
settings; From problems (several From fields, "From :" beside "From:",
several mailboxes, a domain literal, a domain split by a comment
(CVE-2020-12272); a quoted comma, an empty quoted name (CVE-2021-34555),
an encoded word, a fold, a comment, capitals and a final dot are one
mailbox; A-label and U-label IDNs) with both On-DMARCFromError settings;
rules (--dmarc enforce=off by client, by network and by HELO,
enforce=on at a higher priority over off for one address of that
network, --dmarc check=off); forged upstream Authentication-Results and
Received-SPF; DMARCEnforce quarantine and none; malformed and unusual
records (duplicate tags, a rua list over two strings, unknown tags,
DMARC2, two records, a CNAME, 1.4 KB over TCP), the daemon's PID checked
after each; the aggregate report of all of it, record by record.

A message without From cannot be sent through Postfix: its cleanup adds
"From: <envelope sender>" before the milter sees the headers (checked
here); that case goes straight to authgate's milter socket instead.

Checks that fail because of a bug reported but not fixed yet are marked
"KNOWN BUG ... # TODO" (XFAIL under the automake TAP driver; XPASS once
fixed, when the marker should go).

The SPF settings: SPFCheck yes with On-SPFFail accept, so that an SPF
fail reaches the end of the message and DMARC decides (with the default,
reject at MAIL FROM, DMARC would never see it).

Test domains: example.com, example.net and example.org are the only
organizational domains of the usual kind the test resolver may use, and
each has a record of its own (example.com: p=reject, relaxed;
example.net: p=none sp=reject; example.org: p=none sp=none np=reject).
Results that need an organizational domain WITHOUT a record (no record
at all, v=DMARC2, two records) use names under norecord.example (the
.example TLD is not special to libunbound; the Public Suffix List knows no
"example", so norecord.example is its own organizational domain)."""

import os
import re
import smtplib
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
import agdns  # noqa: E402
from agtest import check, check_eq, diag  # noqa: E402
from agpostfix import reply  # noqa: E402

suite = agtest.Suite("e2e: DMARC through Postfix", case_timeout=60, total_timeout=300)
S = {}

AUTHSERV = "mx.test.invalid"
CLIENT = "192.0.2.10"              # allowed by SPF24
OFF_NET = "198.51.100.7"           # not allowed by SPF24: SPF fail
HELO = "client.example"
LIST_CLIENT = "192.0.2.60"         # rule: --dmarc enforce=off
LIST_HELO = "lists.example.org"    # rule: --match helo=... --dmarc enforce=off
NOCHECK_CLIENT = "192.0.2.70"      # rule: --dmarc check=off
TRUSTED_NET = "203.0.113.0/24"
GENKEY = "/usr/sbin/opendkim-genkey"
POSTCAT = "/usr/sbin/postcat"
POSTQUEUE = "/usr/sbin/postqueue"
SEL = "dm"
DNS_TIMEOUT = 1000

ENV_NONE = "nospf.example.com"     # envelope domain without SPF record: spf=none
SPF24 = "v=spf1 ip4:192.0.2.0/24 -all"

ZONES = {
    # organizational domains
    "_dmarc.example.com": [("TXT", "v=DMARC1; p=reject; adkim=r; aspf=r")],
    "_dmarc.example.net": [("TXT", "v=DMARC1; p=none; sp=reject")],
    "_dmarc.example.org": [("TXT", "v=DMARC1; p=none; sp=none; np=reject")],
    "example.com": [("A", "192.0.2.1")],
    "example.net": [("A", "192.0.2.1")],
    "example.org": [("A", "192.0.2.1")],
    # envelope domains
    ENV_NONE: [("A", "192.0.2.1")],
    "bounces.example.net": [("TXT", SPF24)],
    "mail.example.com": [("TXT", SPF24)],
    # 1. SPF only
    "spf.example.com": [("TXT", SPF24)],
    "_dmarc.spf.example.com": [("TXT", "v=DMARC1; p=reject")],
    # 2. DKIM only (the domain's own SPF record fails every client)
    "dkim.example.com": [("TXT", "v=spf1 -all")],
    "_dmarc.dkim.example.com": [("TXT", "v=DMARC1; p=reject")],
    # 3. relaxed and strict
    "strict.example.com": [("TXT", SPF24)],
    "_dmarc.strict.example.com": [("TXT", "v=DMARC1; p=reject; adkim=s; aspf=s")],
    "mail.strict.example.com": [("TXT", SPF24)],
    "relaxed.example.com": [("A", "192.0.2.1")],
    "_dmarc.relaxed.example.com": [("TXT", "v=DMARC1; p=reject; adkim=r; aspf=r")],
    # 4. subdomains of example.net / example.org (nx.example.org: NXDOMAIN)
    "sub.example.net": [("A", "192.0.2.1")],
    "exists.example.org": [("A", "192.0.2.1")],
    # 5-8. policies
    "_dmarc.reject.example.com": [("TXT", "v=DMARC1; p=reject")],
    "_dmarc.quarantine.example.com": [("TXT", "v=DMARC1; p=quarantine")],
    "_dmarc.none.example.com": [("TXT", "v=DMARC1; p=none")],
    "_dmarc.pct0.example.com": [("TXT", "v=DMARC1; p=reject; pct=0")],
    "_dmarc.pct0q.example.com": [("TXT", "v=DMARC1; p=quarantine; pct=0")],
    # 9. no record anywhere
    "norecord.example": [("A", "192.0.2.1")],
    # 15. malformed and unusual records
    "_dmarc.dup.example.com": [("TXT", "v=DMARC1; p=reject; p=none")],
    "_dmarc.rua2.example.com": [("TXT", ["v=DMARC1; p=reject; rua=mailto:a@example.com,",
                                          "mailto:b@example.com"])],
    "_dmarc.unknown.example.com": [("TXT", "v=DMARC1; p=reject; foo=bar")],
    "_dmarc.v2.norecord.example": [("TXT", "v=DMARC2; p=reject")],
    "_dmarc.two.norecord.example": [("TXT", "v=DMARC1; p=reject"),
                                    ("TXT", "v=DMARC1; p=quarantine")],
    "_dmarc.v2.example.com": [("TXT", "v=DMARC2; p=none")],
    # (two different records: an RRset holds identical ones only once)
    "_dmarc.two.example.com": [("TXT", "v=DMARC1; p=none"),
                               ("TXT", "v=DMARC1; p=none; pct=100")],
    "_dmarc.spf1.example.com": [("TXT", "v=spf1 -all"), ("TXT", "v=DMARC1; p=reject")],
    # a policy hosted elsewhere (CNAME), and one too long for a UDP answer
    "_dmarc.cname.example.com": [("CNAME", "cname.dmarc-host.example.net.")],
    "cname.dmarc-host.example.net": [("TXT", "v=DMARC1; p=reject")],
    "_dmarc.long.example.com": [("TXT", ["v=DMARC1; p=reject; rua="] + [
        "mailto:dmarc-aggregate-reports-%02d@reports.long.example.com!10m," % i
        for i in range(22)] + ["mailto:last@example.com"])],
    # an SPF softfail envelope (On-SPFSoftfail tag meets DMARCQuarantine tag)
    "soft.example.net": [("TXT", "v=spf1 ~all")],
    # an IDN: bücher.example; its policy at the A-label name, as DNS has it
    "xn--bcher-kva.example": [("A", "192.0.2.1")],
    "_dmarc.xn--bcher-kva.example": [("TXT", "v=DMARC1; p=reject")],
}
LONG_LEN = len("".join(ZONES["_dmarc.long.example.com"][0][1]))
assert 1232 < LONG_LEN < 2048, LONG_LEN      # between the EDNS size and our record cap
IDN_U = "b\u00fccher.example"
IDN_A = "xn--bcher-kva.example"
# domains whose key (selector SEL) is published
KEY_DOMAINS = ("example.com", "mail.example.com", "dkim.example.com", "strict.example.com",
               "mail.strict.example.com", "reject.example.com", "example.org")

# The DNS server of the temperror case (agdns.Responder, same data):
# _dmarc.temp.example.com gets SERVFAIL, _dmarc.drop.example.com no answer.
# _dmarc.example.org gets SERVFAIL too (exists.example.org has no record of
# its own: the organizational domain's lookup fails).
TEMP_MODES = {"_dmarc.temp.example.com": "servfail", "_dmarc.drop.example.com": "drop",
              "_dmarc.example.org": "servfail"}

BASE_CONF = {
    "DMARCCheck": "yes",
    "SPFCheck": "yes",
    "On-SPFFail": "accept",
    "TrustedNetworks": "127.0.0.0/8, ::1/128, " + TRUSTED_NET,
    "DNSTimeout": str(DNS_TIMEOUT),
}


# ---------------------------------------------------------------------------
# Setup


@suite.setup
def setup():
    agpostfix.require()
    agdns.require()
    for mod in ("authres", "dkim"):
        agtest.require(mod, "module")
    agtest.require(GENKEY)
    agtest.require(POSTCAT)
    agtest.require_authgate()
    keydir = agtest.tmpdir("keys")
    r = agtest.run([GENKEY, "-b", "2048", "-d", "example.com", "-s", SEL, "-D", keydir])
    check("opendkim-genkey -b 2048", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    with open(os.path.join(keydir, SEL + ".txt")) as f:
        record = "".join(re.findall(r'"([^"]*)"', f.read()))
    check("opendkim-genkey: a key record with p=", "p=MI" in record, got=record, fatal=True)
    with open(os.path.join(keydir, SEL + ".private"), "rb") as f:
        S["key"] = f.read()
    zones = dict(ZONES)
    for d in KEY_DOMAINS:
        zones["%s._domainkey.%s" % (SEL, d)] = [("TXT", record)]
    S["zones"] = zones
    dns = S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), zones).start()
    S["conf"] = dict(BASE_CONF, DNSServer=dns.server)
    st = S["st"] = agpostfix.Stack(conf=S["conf"])
    r = st.ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["rule_list"] = st.ag.add_rule("--match", "client=" + LIST_CLIENT,
                                    "--dmarc", "enforce=off")
    S["rule_helo"] = st.ag.add_rule("--match", "helo=" + LIST_HELO, "--dmarc", "enforce=off")
    S["rule_nocheck"] = st.ag.add_rule("--match", "client=" + NOCHECK_CLIENT,
                                       "--dmarc", "check=off")
    st.start()
    S["pid"] = st.ag.proc.pid


def st():
    return S["st"]


def ag():
    return S["st"].ag


def reconfigure(**settings):
    """authgate's configuration as the base plus SETTINGS (On_X -> On-X),
    reloaded with SIGHUP; waits until the daemon says so."""
    a = ag()
    for k in S.pop("reconf_keys", ()):
        a.settings.pop(k, None)
    a.settings.update(S["conf"])
    extra = {k.replace("_", "-"): v for k, v in settings.items()}
    a.settings.update(extra)
    S["reconf_keys"] = list(extra)
    a.write_config()
    mark = a.log_mark()
    a.reload()
    ln = a.wait_log(r"configuration reloaded", timeout=10, since=mark)
    check("authgate reloaded its configuration (SIGHUP)", ln is not None and a.alive(),
          got="\n".join(a.log_lines()[mark:]), fatal=True)


# ---------------------------------------------------------------------------
# Messages


_seq = [0]


def new_sender(domain=ENV_NONE):
    """A MAIL FROM address unique in this run (the log line is found by it)."""
    _seq[0] += 1
    return "b%d.%d@%s" % (os.getpid(), _seq[0], domain)


def message(token, frm=("Alice <alice@example.com>",), extra=(), body=None):
    """A message (bytes, CRLF) with one From field per item of FRM (raw
    values: folds allowed), TOKEN in Subject and Message-ID."""
    hdr = ["From: %s" % f for f in frm] + [
        "To: Bob <bob@example.net>",
        "Subject: DMARC test %s" % token,
        "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
        "Message-ID: <%s@test.example>" % token,
    ] + list(extra)
    if body is None:
        body = b"Hello Bob,\r\n\r\nthis is a DMARC test message.\r\n"
    return ("\r\n".join(hdr) + "\r\n\r\n").encode() + body


def sign(msg, domain, selector=SEL):
    """dkimpy's signature (relaxed/relaxed, rsa-sha256, From signed) of
    DOMAIN prepended to MSG."""
    import dkim
    sig = dkim.sign(msg, selector.encode(), domain.encode(), S["key"], linesep=b"\r\n",
                    canonicalize=(b"relaxed", b"relaxed"))
    check("dkimpy signed for d=%s" % domain, sig.startswith(b"DKIM-Signature:"), got=sig,
          fatal=True)
    return sig + msg


class Result:
    stage = None     # mail | rcpt | data | eod
    final = None     # the last reply, 'CODE TEXT'
    qid = None
    msg = None       # the sink's dump, when delivered
    token = None
    sender = None

    def __repr__(self):
        return "<stage=%s final=%r qid=%s>" % (self.stage, self.final, self.qid)


def send(msg, token, sender=None, addr=CLIENT, helo=HELO, login=None, wait_sink=True):
    """MSG through Postfix from ADDR (XCLIENT, with HELO and a SASL LOGIN
    when given); the dump at the sink (found by TOKEN) when accepted."""
    res = Result()
    res.token = token
    res.sender = sender if sender is not None else new_sender()
    s = st().pf.smtp(HELO, timeout=60)
    try:
        cmd = "XCLIENT ADDR=%s NAME=client.example HELO=%s" % (addr, helo)
        if login:
            cmd += " LOGIN=%s" % login
        r = reply(s.docmd(cmd))
        check("XCLIENT %s accepted (220)" % addr, r.startswith("220"), got=r, fatal=True)
        s.ehlo(helo)
        res.stage, res.final, _ = agpostfix.send_raw(s, res.sender, ["bob@example.net"],
                                                     msg)
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass
    res.qid = agpostfix.queued_id(res.final) if res.final else None
    if wait_sink and res.stage == "eod" and res.final.startswith("250"):
        res.msg = st().sink.wait_for(token, timeout=10)
    return res


def token(label):
    return st().token(label)


# ---------------------------------------------------------------------------
# What to check


def headers(dump):
    return agtest.header_fields(dump)


def all_authres(dump, what):
    """Every Authentication-Results at the sink, parsed (each one that
    python3-authres cannot parse is a failed check): [(id, results, raw)]."""
    out = []
    for name, value in headers(dump):
        if name.lower() != "authentication-results":
            continue
        try:
            sid, res = agtest.authres_results(value)
        except Exception as e:
            check("%s: Authentication-Results parses (python3-authres)" % what, False,
                  got="%s: %r" % (value, e))
            continue
        out.append((sid, res, value))
    return out


def our_dmarc(dump, what):
    """The dmarc results of our one Authentication-Results: a list of
    (result, reason, props); None when there is not exactly one of ours."""
    ours = [a for a in all_authres(dump, what) if a[0].lower() == AUTHSERV]
    if not check("%s: exactly one Authentication-Results from %s" % (what, AUTHSERV),
                 len(ours) == 1, got=[a[2] for a in all_authres(dump, what)]):
        return None
    return [(r, rs, p) for m, r, rs, p in ours[0][1] if m == "dmarc"]


def check_ar(dump, what, result, header_from=None, policy=None):
    """Our A-R has exactly one dmarc result RESULT with header.from
    HEADER_FROM and policy.dmarc POLICY (None: that property absent)."""
    got = our_dmarc(dump, what)
    if got is None:
        return None
    if not check("%s: one dmarc result in Authentication-Results" % what, len(got) == 1,
                 got=got):
        return None
    r, reason, props = got[0]
    want = {"result": result, "header.from": header_from, "policy.dmarc": policy}
    have = {"result": r, "header.from": props.get("header.from"),
            "policy.dmarc": props.get("policy.dmarc")}
    check_eq("%s: A-R dmarc=%s header.from=%s policy.dmarc=%s" %
             (what, result, header_from, policy), have, want)
    return got[0]


def no_dmarc_in_ar(dump, what):
    for sid, res, raw in all_authres(dump, what):
        if sid.lower() == AUTHSERV:
            check("%s: no dmarc result in Authentication-Results" % what,
                  not any(m == "dmarc" for m, _, _, _ in res), got=raw)
            return
    check("%s: no dmarc result (no A-R of ours at all)" % what, True)


def decision_for(mark, sender, timeout=5.0):
    want = "<%s>" % sender

    def find():
        ds = [d for d in ag().decisions(mark) if d.get("from") == want]
        return ds[-1] if ds else None
    return agtest.wait_until(find, timeout)


def check_log(mark, res, fields, what, absent=()):
    """The decision line of RES's sender has FIELDS; the keys in ABSENT
    are not there."""
    d = decision_for(mark, res.sender)
    if not check("%s: a decision log line for <%s>" % (what, res.sender), d is not None,
                 got="\n".join(ag().log_lines()[mark:][-10:])):
        return None
    got = {k: d.get(k) for k in fields}
    check_eq("%s: log %s" % (what, " ".join("%s=%s" % kv for kv in fields.items())),
             got, fields, detail=d["line"])
    for k in absent:
        check("%s: log has no %s=" % (what, k), k not in d, got=d["line"])
    return d


def accepted(res, what):
    check("%s: accepted (250 at end of data)" % what,
          res.stage == "eod" and res.final.startswith("250"),
          expected="250 2.0.0 Ok: queued as ...", got=res, fatal=True)
    check("%s: the message is at the sink" % what, res.msg is not None, fatal=True)
    return res.msg


def rejected(res, what, domain=None, code="550", xcode="5.7.1", text=None):
    """Refused at end of data with CODE XCODE (naming DOMAIN / matching TEXT)."""
    ok = check("%s: refused at end of data with %s %s" % (what, code, xcode),
               res.stage in ("eod", "data") and res.final.startswith("%s %s" % (code, xcode)),
               expected="%s %s ..." % (code, xcode), got=res)
    if ok and domain:
        want = ("Message rejected by the DMARC policy of %s: the author domain is neither "
                "SPF- nor DKIM-aligned" % domain)
        check("%s: the reply says %r" % (what, want), want in res.final, got=res.final)
    if ok and text:
        check("%s: the reply says %r" % (what, text), text in res.final, got=res.final)
    S.setdefault("not_delivered", []).append((what, res.token))
    return ok


def held(res, what):
    """Accepted (250) into Postfix's hold queue; returns the held file's
    headers (postcat) or None."""
    if not check("%s: accepted by the client (250)" % what,
                 res.stage == "eod" and res.final.startswith("250") and res.qid,
                 got=res):
        return None
    S.setdefault("not_delivered", []).append((what, res.token))
    path = os.path.join(st().pf.queue, "hold", res.qid)
    check("%s: queue file %s is in the hold queue" % (what, res.qid),
          agtest.wait_until(lambda: os.path.exists(path), 5), got=sorted(
              os.listdir(os.path.join(st().pf.queue, "hold"))
              if os.path.isdir(os.path.join(st().pf.queue, "hold")) else []))
    r = agtest.run([POSTQUEUE, "-c", st().pf.conf, "-p"], timeout=20)
    check("%s: postqueue -p shows %s as held (!)" % (what, res.qid),
          re.search(r"^%s!" % re.escape(res.qid), r.stdout or "", re.M) is not None,
          got=agtest.fmt_run(r))
    check("%s: Postfix logs the milter hold" % what,
          st().pf.wait_log("%s: milter-hold:" % res.qid), got=agtest.tail(st().pf.maillog, 5))
    r = agtest.run([POSTCAT, "-c", st().pf.conf, "-hq", res.qid], timeout=20)
    check("%s: postcat reads the held message" % what, r.returncode == 0, agtest.fmt_run(r))
    return r.stdout or ""


def check_not_delivered():
    """None of the messages refused or held so far reached the sink (after
    a barrier message, so that anything accepted before it is there)."""
    st().barrier()
    for what, tok in S.pop("not_delivered", []):
        check("%s: nothing at the sink" % what, not st().sink.find(tok),
              got=[m[:300] for m in st().sink.find(tok)])


def check_alive(what):
    check("%s: authgate still runs (same PID %s)" % (what, S["pid"]),
          ag().alive() and ag().proc.pid == S["pid"], got=ag().proc.returncode())


# What the aggregate report must say (RFC 7489 Appendix C: row/source_ip,
# policy_evaluated/disposition and reason) of each message sent: the cases
# note it as they send, aggregate_report_of_what_postfix_saw() counts it.
RULE_EXEMPT = ("local_policy", "exempted by a local rule")
CAPPED = ("local_policy", "disposition capped by local policy")
SAMPLED_OUT = ("sampled_out", None)


def expect_row(from_domain, addr, disposition, reason=(None, None)):
    S.setdefault("rows", {}).setdefault(from_domain.lower().rstrip("."), []).append(
        (addr, disposition) + tuple(reason))


def pass_case(msg, tok, what, from_domain, sender=None, addr=CLIENT, log_extra=None):
    """MSG is delivered with dmarc=pass header.from=FROM_DOMAIN
    policy.dmarc=none and log dmarc=pass."""
    mark = ag().log_mark()
    res = send(msg, tok, sender=sender, addr=addr)
    expect_row(from_domain, addr, "none")
    dump = accepted(res, what)
    check_ar(dump, what, "pass", from_domain, "none")
    fields = {"action": "accept", "dmarc": "pass", "header_from": from_domain}
    fields.update(log_extra or {})
    check_log(mark, res, fields, what, absent=("policy", "override"))
    check("%s: no X-Authgate-Tag" % what,
          not any(n.lower() == "x-authgate-tag" for n, _ in headers(dump)))
    # the MTA agreed to SMFIP_HDR_LEADSPC: our headers still read "Name: value"
    check("%s: our headers are written 'Name: value'" % what,
          dump is not None and "\nAuthentication-Results: mx.test.invalid;" in
          dump.replace("\r\n", "\n"), got=(dump or "")[:800])
    return dump


def reject_case(msg, tok, what, from_domain, sender=None, addr=CLIENT, helo=HELO,
                log_extra=None):
    """MSG is refused with the DMARC 550 naming FROM_DOMAIN, log
    dmarc=fail policy=reject (and LOG_EXTRA)."""
    mark = ag().log_mark()
    res = send(msg, tok, sender=sender, addr=addr, helo=helo)
    expect_row(from_domain, addr, "reject")
    rejected(res, what, from_domain)
    fields = {"action": "reject", "dmarc": "fail", "header_from": from_domain,
              "policy": "reject"}
    fields.update(log_extra or {})
    check_log(mark, res, fields, what, absent=("override", "pct"))
    return res


# ---------------------------------------------------------------------------
# 1-3. Pass by alignment


@suite.case
def pass_by_aligned_spf_only():
    frm = ("Alice <alice@spf.example.com>",)
    tok = token("spfpass")
    dump = pass_case(message(tok, frm), tok, "SPF pass for the From domain, unsigned",
                     "spf.example.com", sender=new_sender("spf.example.com"),
                     log_extra={"spf": "pass"})
    check("SPF pass: Received-SPF pass at the sink",
          any(n.lower() == "received-spf" and v.startswith("pass") for n, v in headers(dump)),
          got=headers(dump))
    # the same envelope from a client outside the SPF record: SPF fail
    tok = token("spffail")
    mark = ag().log_mark()
    res = send(message(tok, frm), tok, sender=new_sender("spf.example.com"), addr=OFF_NET)
    rejected(res, "control: the same from %s (SPF fail)" % OFF_NET, "spf.example.com")
    check_log(mark, res, {"spf": "fail", "dmarc": "fail"}, "control: SPF fail")
    # SPF pass for a domain that is not aligned: fail
    tok = token("spfunal")
    reject_case(message(tok, frm), tok, "SPF pass for bounces.example.net (not aligned)",
                "spf.example.com", sender=new_sender("bounces.example.net"))
    # the HELO identity counts only for the null sender (RFC 7489 3.1.2)
    tok = token("spfhelo")
    reject_case(message(tok, frm), tok, "HELO spf.example.com passes SPF, MAIL FROM %s "
                "(none): not aligned" % ENV_NONE, "spf.example.com", helo="spf.example.com",
                log_extra={"spf": "none", "spf_helo": "pass"})
    tok = token("spfnull")
    mark = ag().log_mark()
    res = send(message(tok, frm), tok, sender="", helo="spf.example.com")
    dump = accepted(res, "MAIL FROM:<>, HELO spf.example.com (SPF pass)")
    check_ar(dump, "null sender, HELO spf.example.com", "pass", "spf.example.com", "none")
    check_log(mark, res, {"dmarc": "pass", "spf": "pass"}, "null sender")
    check_not_delivered()


@suite.case
def pass_by_aligned_dkim_only():
    frm = ("Dora <dora@dkim.example.com>",)
    tok = token("dkimpass")
    pass_case(sign(message(tok, frm), "dkim.example.com"), tok,
              "DKIM d=dkim.example.com, envelope SPF fail (same domain, -all)",
              "dkim.example.com", sender=new_sender("dkim.example.com"),
              log_extra={"spf": "fail", "dkim": "pass:d=dkim.example.com"})
    tok = token("dkimpass2")
    pass_case(sign(message(tok, frm), "dkim.example.com"), tok,
              "DKIM d=dkim.example.com, envelope SPF none (%s)" % ENV_NONE,
              "dkim.example.com", log_extra={"spf": "none"})
    tok = token("dkimnone")
    reject_case(message(tok, frm), tok, "control: unsigned, SPF fail", "dkim.example.com",
                sender=new_sender("dkim.example.com"))
    tok = token("dkimbad")
    bad = sign(message(tok, frm), "dkim.example.com").replace(b"this is a DMARC",
                                                              b"this is a forged DMARC")
    reject_case(bad, tok, "control: body changed after signing (dkim=fail)",
                "dkim.example.com", log_extra={"dkim": "fail:d=dkim.example.com"})
    tok = token("dkimother")
    reject_case(sign(message(tok, frm), "example.org"), tok,
                "control: a passing signature of another organization (d=example.org)",
                "dkim.example.com")
    check_not_delivered()


@suite.case
def relaxed_and_strict_alignment():
    # relaxed (example.com: adkim=r aspf=r): d= and MAIL FROM a subdomain
    tok = token("relaxd")
    pass_case(sign(message(tok, ("<alice@example.com>",)), "mail.example.com"), tok,
              "adkim=r: d=mail.example.com, From example.com", "example.com",
              log_extra={"dkim": "pass:d=mail.example.com"})
    tok = token("relaxs")
    pass_case(message(tok, ("<alice@example.com>",)), tok,
              "aspf=r: MAIL FROM mail.example.com (SPF pass), From example.com", "example.com",
              sender=new_sender("mail.example.com"), log_extra={"spf": "pass"})
    tok = token("relaxsib")
    pass_case(sign(message(tok, ("<alice@relaxed.example.com>",)), "mail.example.com"), tok,
              "adkim=r: d=mail.example.com, From relaxed.example.com (same org)",
              "relaxed.example.com")
    # strict (strict.example.com: adkim=s aspf=s)
    frm = ("<alice@strict.example.com>",)
    tok = token("strictd")
    reject_case(sign(message(tok, frm), "mail.strict.example.com"), tok,
                "adkim=s: d=mail.strict.example.com, From strict.example.com",
                "strict.example.com")
    tok = token("strictdorg")
    reject_case(sign(message(tok, frm), "example.com"), tok,
                "adkim=s: d=example.com (the org domain), From strict.example.com",
                "strict.example.com")
    tok = token("stricts")
    reject_case(message(tok, frm), tok,
                "aspf=s: MAIL FROM mail.strict.example.com (SPF pass)", "strict.example.com",
                sender=new_sender("mail.strict.example.com"))
    tok = token("strictdok")
    pass_case(sign(message(tok, frm), "strict.example.com"), tok,
              "adkim=s: control: d=strict.example.com exactly", "strict.example.com")
    tok = token("strictsok")
    pass_case(message(tok, frm), tok, "aspf=s: control: MAIL FROM strict.example.com",
              "strict.example.com", sender=new_sender("strict.example.com"))
    check_not_delivered()


@suite.case
def organizational_domain_sp_and_np():
    # example.net: p=none; sp=reject
    tok = token("sp")
    reject_case(message(tok, ("<alice@sub.example.net>",)), tok,
                "From sub.example.net, only _dmarc.example.net (sp=reject)", "sub.example.net")
    tok = token("spctl")
    mark = ag().log_mark()
    res = send(message(tok, ("<alice@example.net>",)), tok)
    dump = accepted(res, "control: From example.net itself (p=none)")
    check_ar(dump, "From example.net (p=none)", "fail", "example.net", "none")
    check_log(mark, res, {"dmarc": "fail", "policy": "none"}, "From example.net")
    # example.org: p=none; sp=none; np=reject
    a = agdns.query(S["dns"].port, "nx.example.org.", "A")
    check("the DNS server answers NXDOMAIN for nx.example.org",
          a is not None and a.header.rcode == 3, got=a)
    tok = token("np")
    reject_case(message(tok, ("<alice@nx.example.org>",)), tok,
                "From nx.example.org (NXDOMAIN), _dmarc.example.org np=reject",
                "nx.example.org")
    tok = token("npctl")
    mark = ag().log_mark()
    res = send(message(tok, ("<alice@exists.example.org>",)), tok)
    dump = accepted(res, "control: From exists.example.org (exists: sp=none)")
    check_ar(dump, "From exists.example.org", "fail", "exists.example.org", "none")
    check_log(mark, res, {"dmarc": "fail", "policy": "none"}, "From exists.example.org")
    # example.com has no sp=: p=reject covers its subdomains
    tok = token("nosp")
    reject_case(message(tok, ("<alice@nosub.example.com>",)), tok,
                "From nosub.example.com, _dmarc.example.com p=reject (no sp)",
                "nosub.example.com")
    check_not_delivered()


# ---------------------------------------------------------------------------
# 5-9. Policies


@suite.case
def p_reject():
    tok = token("reject")
    mark = ag().log_mark()
    res = reject_case(message(tok, ("Mallory <ceo@reject.example.com>",)), tok,
                      "p=reject, unsigned, SPF none", "reject.example.com")
    d = decision_for(mark, res.sender)
    if d:
        check("p=reject: Postfix logs the milter reject of %s at end of data" % d["qid"],
              st().pf.wait_log("%s: milter-reject: END-OF-MESSAGE from client.example[%s]: "
                               "5.7.1 Message rejected by the DMARC policy of "
                               "reject.example.com" % (d["qid"], CLIENT)),
              got=agtest.tail(st().pf.maillog, 5))
    check_not_delivered()


@suite.case
def p_quarantine_hold_then_tag():
    frm = ("<alice@quarantine.example.com>",)
    tok = token("quar")
    mark = ag().log_mark()
    res = send(message(tok, frm), tok, wait_sink=False)
    hdrs = held(res, "p=quarantine (DMARCQuarantine hold)")
    if hdrs is not None:
        check_ar(hdrs, "held message (postcat)", "fail", "quarantine.example.com",
                 "quarantine")
        check("held message: no X-Authgate-Tag",
              not any(n.lower() == "x-authgate-tag" for n, _ in headers(hdrs)))
    check_log(mark, res, {"action": "quarantine", "dmarc": "fail",
                          "header_from": "quarantine.example.com", "policy": "quarantine"},
              "p=quarantine hold", absent=("override", "pct"))
    check_not_delivered()
    reconfigure(DMARCQuarantine="tag")
    try:
        tok = token("quartag")
        mark = ag().log_mark()
        res = send(message(tok, frm), tok)
        dump = accepted(res, "p=quarantine (DMARCQuarantine tag)")
        tags = [v for n, v in headers(dump) if n.lower() == "x-authgate-tag"]
        check_eq("tag: X-Authgate-Tag at the sink", tags, ["dmarc=quarantine"])
        check_ar(dump, "tag", "fail", "quarantine.example.com", "quarantine")
        check("tag: not in the hold queue",
              not os.path.exists(os.path.join(st().pf.queue, "hold", res.qid or "-")))
        check_log(mark, res, {"action": "accept", "dmarc": "fail", "policy": "quarantine"},
                  "tag")
        reconfigure(DMARCQuarantine="tag", On_SPFSoftfail="tag")
        tok = token("quartag2")
        res = send(message(tok, frm), tok, sender=new_sender("soft.example.net"))
        dump = accepted(res, "p=quarantine (tag), SPF softfail (On-SPFSoftfail tag)")
        tags = [v for n, v in headers(dump) if n.lower() == "x-authgate-tag"]
        check("SPF softfail tag and DMARC quarantine tag: dmarc=quarantine is among the "
              "X-Authgate-Tag values", any("dmarc=quarantine" in t for t in tags), got=tags)
        check("SPF softfail tag and DMARC quarantine tag: spf=softfail is too",
              any("spf=softfail" in t for t in tags), got=tags)
    finally:
        reconfigure()


@suite.case
def p_none_recorded():
    tok = token("none")
    mark = ag().log_mark()
    res = send(message(tok, ("<alice@none.example.com>",)), tok)
    dump = accepted(res, "p=none")
    check_ar(dump, "p=none", "fail", "none.example.com", "none")
    check_log(mark, res, {"action": "accept", "dmarc": "fail",
                          "header_from": "none.example.com", "policy": "none"}, "p=none",
              absent=("override", "pct"))
    check("p=none: no X-Authgate-Tag",
          not any(n.lower() == "x-authgate-tag" for n, _ in headers(dump)))


@suite.case
def pct_zero():
    tok = token("pct0")
    mark = ag().log_mark()
    res = send(message(tok, ("<alice@pct0.example.com>",)), tok, wait_sink=False)
    expect_row("pct0.example.com", CLIENT, "quarantine", SAMPLED_OUT)
    hdrs = held(res, "p=reject pct=0: quarantined, not rejected")
    if hdrs is not None:
        check_ar(hdrs, "pct=0, held message (postcat)", "fail", "pct0.example.com",
                 "quarantine")
    check_log(mark, res, {"action": "quarantine", "dmarc": "fail", "policy": "quarantine",
                          "pct": "out"}, "p=reject pct=0")
    tok = token("pct0q")
    mark = ag().log_mark()
    res = send(message(tok, ("<alice@pct0q.example.com>",)), tok)
    expect_row("pct0q.example.com", CLIENT, "none", SAMPLED_OUT)
    dump = accepted(res, "p=quarantine pct=0: delivered (none)")
    check_ar(dump, "p=quarantine pct=0", "fail", "pct0q.example.com", "none")
    check_log(mark, res, {"action": "accept", "dmarc": "fail", "policy": "none",
                          "pct": "out"}, "p=quarantine pct=0")
    check_not_delivered()


@suite.case
def no_record_and_skips():
    tok = token("norec")
    mark = ag().log_mark()
    res = send(message(tok, ("<alice@norecord.example>",)), tok)
    dump = accepted(res, "no record (norecord.example)")
    check_ar(dump, "no record", "none", "norecord.example", None)
    check_log(mark, res, {"action": "accept", "dmarc": "none",
                          "header_from": "norecord.example"}, "no record",
              absent=("policy",))
    # not evaluated: trusted client, authenticated client, rule check=off
    for addr, login, why in (("203.0.113.5", None, "trusted"),
                             (CLIENT, "user", "authenticated"),
                             (NOCHECK_CLIENT, None, "rule")):
        tok = token("skip" + why)
        mark = ag().log_mark()
        res = send(message(tok, ("<ceo@reject.example.com>",)), tok, addr=addr, login=login)
        S.setdefault("skipped", []).append((addr, why))
        what = "p=reject failure from a client skipped (%s)" % why
        dump = accepted(res, what)
        no_dmarc_in_ar(dump, what)
        check_log(mark, res, {"action": "accept", "dmarc": "skipped:" + why}, what)


@suite.case
def temperror():
    resp = agdns.Responder(agtest.tmpdir("resp"), S["zones"], modes=TEMP_MODES).start()
    reconfigure(DNSServer=resp.server)
    try:
        tok = token("tctl")
        reject_case(message(tok, ("<ceo@reject.example.com>",)), tok,
                    "control: the same server answers _dmarc.reject.example.com",
                    "reject.example.com")
        for dom, how in (("temp.example.com", "SERVFAIL"), ("drop.example.com", "no answer"),
                         ("exists.example.org", "NXDOMAIN, then SERVFAIL for the org domain")):
            tok = token("temp")
            what = "_dmarc.%s: %s" % (dom, how)
            mark = ag().log_mark()
            t0 = time.monotonic()
            res = send(message(tok, ("<alice@%s>" % dom,)), tok)
            secs = time.monotonic() - t0
            dump = accepted(res, what + " (On-DMARCTemperror accept)")
            check_ar(dump, what, "temperror", dom, None)
            check_log(mark, res, {"action": "accept", "dmarc": "temperror",
                                  "header_from": dom}, what)
            check("%s: answered in %.1fs < 2 x DNSTimeout + 3 s" % (what, secs),
                  secs < 2 * DNS_TIMEOUT / 1000.0 + 3)
        names = [q[1] for q in resp.queries()]
        check("the server was asked for _dmarc.temp.example.com and _dmarc.drop.example.com",
              "_dmarc.temp.example.com." in names and "_dmarc.drop.example.com." in names,
              got=names)
        reconfigure(DNSServer=resp.server, On_DMARCTemperror="tempfail")
        tok = token("temp451")
        mark = ag().log_mark()
        res = send(message(tok, ("<alice@temp.example.com>",)), tok)
        ok = check("On-DMARCTemperror tempfail: 451 4.7.1 at end of data",
                   res.stage in ("eod", "data") and res.final.startswith("451 4.7.1"),
                   got=res)
        S.setdefault("not_delivered", []).append(("temperror 451", tok))
        if ok:
            check("451 names the domain", "temp.example.com" in res.final, got=res.final)
        check_log(mark, res, {"action": "tempfail", "dmarc": "temperror"}, "tempfail")
    finally:
        reconfigure()
        resp.stop()
    check_not_delivered()


# ---------------------------------------------------------------------------
# 11. From problems


FROM_BAD = [
    # (label, From values, the <what> of the 550)
    ("two From fields", ["<a@example.com>", "<b@example.org>"], "more than one From header"),
    ("one From, two mailboxes", ["<a@good.example.com>, <b@evil.example.org>"],
     "more than one address in the From header"),
    ("a domain literal", ["x@[192.0.2.1]"], "the From address has no valid domain"),
    # CVE-2020-12272: OpenDMARC took the domain up to the comment's "("
    # (example.net) while other software read example.com
    ("a comment-split domain (CVE-2020-12272)", ["a@example.net(.example.com"],
     "the From header cannot be parsed"),
]
FROM_ONE = [
    # (label, From value): one mailbox at example.com, signed by example.com
    ("a quoted display name with a comma", '"a, b" <x@example.com>'),
    ("an encoded-word display name", "=?utf-8?q?J=C3=B6rg?= <j@example.com>"),
    ("a folded From field", "Alice Example\r\n  <alice@example.com>"),
    ("a comment and a fold", "alice@example.com\r\n\t(Alice, at work)"),
    # CVE-2021-34555: OpenDMARC crashed on an empty quoted display name
    ("an empty quoted display name (CVE-2021-34555)", '"" <x@example.com>'),
]
NO_FROM_WHAT = "no From header"


def refused_text(what):
    return "Message refused: %s (RFC 5322 requires exactly one author address)" % what


def milter_no_from(what):
    """A message without From straight to authgate's milter socket (as an
    MTA that does not add one would pass it): the transaction and the
    decision line."""
    a = ag()
    mark = a.log_mark()
    qid = agtest.new_qid()
    hdrs = [("To", "<bob@example.net>"), ("Subject", "no From"),
            ("Message-ID", "<%s@test.example>" % qid)]
    c = agtest.open_session(a, address=CLIENT, what=what)
    try:
        tx = c.transaction("<%s>" % new_sender(), ["<bob@example.net>"], hdrs,
                           b"no From here\r\n", queue_id=qid)
    finally:
        c.close()
    ds = a.wait_decision(qid=qid, since=mark, timeout=5)
    check("%s: a decision log line" % what, bool(ds),
          got="\n".join(a.log_lines()[mark:][-10:]))
    return tx, (ds[-1] if ds else None)


def postfix_adds_from():
    """Through Postfix a message without From reaches the milter with the
    From: <envelope sender> that Postfix's cleanup adds (Postfix 3.7, even
    for a remote client): DMARC is evaluated on that address."""
    tok = token("nofrom")
    sender = new_sender("none.example.com")
    mark = ag().log_mark()
    res = send(message(tok, []), tok, sender=sender)
    dump = accepted(res, "no From, through Postfix")
    froms = [v for n, v in headers(dump) if n.lower() == "from"]
    check_eq("no From, through Postfix: Postfix added From: <envelope sender>", froms,
             [sender])
    check_ar(dump, "no From, through Postfix", "fail", "none.example.com", "none")
    check_log(mark, res, {"dmarc": "fail", "header_from": "none.example.com"},
              "no From, through Postfix")


@suite.case
def from_problems_rejected_by_default():
    for label, frm, what in FROM_BAD:
        tok = token("fbad")
        msg = sign(message(tok, frm), "example.com")
        mark = ag().log_mark()
        res = send(msg, tok)
        rejected(res, label + " (signed by example.com)", text=refused_text(what))
        check_log(mark, res, {"action": "reject", "dmarc": "permerror"}, label)
    tx, d = milter_no_from("no From (milter socket)")
    check("no From (milter socket): 550 5.7.1 %s" % refused_text(NO_FROM_WHAT),
          tx.stage == "eom" and tx.final.kind == "reject" and tx.final.code == "550" and
          tx.final.xcode == "5.7.1" and tx.final.text == refused_text(NO_FROM_WHAT),
          got=tx)
    if d:
        check_eq("no From (milter socket): log action=reject dmarc=permerror",
                 (d.get("action"), d.get("dmarc")), ("reject", "permerror"), detail=d["line"])
    postfix_adds_from()
    tok = token("fcase")
    reject_case(message(tok, ["<ceo@REJECT.Example.COM.>"]), tok,
                "From domain in capitals with a final dot", "reject.example.com")
    # obsolete syntax (RFC 5322 4.5.2): white space before the colon.
    # Postfix takes "From :" for a From field, as MUAs do; a second one
    # beside "From:" must not go uncounted.
    tok = token("fobs")
    mark = ag().log_mark()
    res = send(message(tok, ["<alice@norecord.example>"],
                       extra=["From : <ceo@reject.example.com>"]), tok)
    rejected(res, "'From:' (no policy) and 'From :' (p=reject)",
             text=refused_text("more than one From header"))
    check_log(mark, res, {"action": "reject", "dmarc": "permerror"}, "'From:' and 'From :'")
    tok = token("fobs1")
    reject_case(message(tok, [], extra=["From : <ceo@reject.example.com>"]), tok,
                "only 'From :' (p=reject)", "reject.example.com")
    # an IDN: the policy is published at the A-label name
    tok = token("idna")
    reject_case(message(tok, ["<ceo@%s>" % IDN_A]), tok, "From in A-labels (%s)" % IDN_A,
                IDN_A)
    tok = token("idnu")
    mark = ag().log_mark()
    res = send(message(tok, ["J\u00f6rg <ceo@%s>" % IDN_U]), tok)
    ok = res.stage in ("eod", "data") and res.final.startswith("550 5.7.1")
    check("From in U-labels (%s, UTF-8 as RFC 6532 has it): the policy at "
          "_dmarc.%s applies: 550 5.7.1" % (IDN_U, IDN_A), ok, got=res)
    if ok:
        S.setdefault("not_delivered", []).append(("From in U-labels", tok))
    elif res.msg:
        all_authres(res.msg, "From in U-labels, delivered")      # must still parse
    d = decision_for(mark, res.sender)
    if d:
        diag("U-label From: %s" % d["line"])
    for label, frm in FROM_ONE:
        tok = token("fone")
        dump = pass_case(sign(message(tok, [frm]), "example.com"), tok,
                         "one mailbox: %s" % label, "example.com")
        check_eq("one mailbox: %s: the From field at the sink is the one sent" % label,
                 [v for n, v in headers(dump) if n.lower() == "from"], [agtest.unfold(frm)])
        tok = token("fonefail")
        reject_case(message(tok, [frm]), tok, "one mailbox, unsigned: %s" % label,
                    "example.com")
    check_not_delivered()


@suite.case
def from_problems_permerror():
    reconfigure(On_DMARCFromError="permerror")
    try:
        for label, frm, what in FROM_BAD:
            tok = token("fperm")
            mark = ag().log_mark()
            res = send(message(tok, frm), tok)
            dump = accepted(res, "%s (On-DMARCFromError permerror)" % label)
            check_eq("%s: the From fields at the sink are those sent (Postfix passed them "
                     "on unchanged)" % label,
                     [v for n, v in headers(dump) if n.lower() == "from"], frm)
            got = check_ar(dump, label, "permerror", None, None)
            if got:
                check("%s: the A-R says why (%r)" % (label, what),
                      any(what in v for n, v in headers(dump)
                          if n.lower() == "authentication-results"),
                      got=[v for n, v in headers(dump) if n.lower() == "authentication-results"])
            check_log(mark, res, {"action": "accept", "dmarc": "permerror"}, label)
        what = "no From (milter socket, permerror)"
        tx, d = milter_no_from(what)
        check("%s: goes on at end of message" % what, tx.accepted, got=tx)
        ins = [m[1][-1] for m in tx.mods if m[0] in ("insheader", "addheader") and
               m[1][-2].lower() == "authentication-results"]
        if check("%s: one Authentication-Results inserted" % what, len(ins) == 1, got=tx.mods):
            try:
                sid, res = agtest.authres_results(ins[0])
                dm = [(r, p) for m, r, _, p in res if m == "dmarc"]
                check_eq("%s: A-R dmarc=permerror, no header.from" % what,
                         [(r, p.get("header.from")) for r, p in dm], [("permerror", None)],
                         detail=ins[0])
                check("%s: the A-R says why" % what, NO_FROM_WHAT in ins[0], got=ins[0])
            except Exception as e:
                check("%s: Authentication-Results parses (python3-authres)" % what, False,
                      got="%s: %r" % (ins[0], e))
        if d:
            check_eq("%s: log action=accept dmarc=permerror" % what,
                     (d.get("action"), d.get("dmarc")), ("accept", "permerror"),
                     detail=d["line"])
        tok = token("fpermok")
        pass_case(sign(message(tok), "example.com"), tok, "control: one good From",
                  "example.com")
    finally:
        reconfigure()


# ---------------------------------------------------------------------------
# 12. Rules


@suite.case
def mailing_list_exemption():
    frm = ("<ceo@reject.example.com>",)
    for addr, helo, rid, why in ((LIST_CLIENT, HELO, S["rule_list"], "client " + LIST_CLIENT),
                                 (CLIENT, LIST_HELO, S["rule_helo"], "HELO " + LIST_HELO)):
        tok = token("list")
        what = "p=reject failure via %s (rule %s: --dmarc enforce=off)" % (why, rid)
        mark = ag().log_mark()
        res = send(message(tok, frm), tok, addr=addr, helo=helo)
        expect_row("reject.example.com", addr, "none", RULE_EXEMPT)
        dump = accepted(res, what)
        check_ar(dump, what, "fail", "reject.example.com", "none")
        check_log(mark, res, {"action": "accept", "dmarc": "fail",
                              "header_from": "reject.example.com", "policy": "none",
                              "override": "rule"}, what)
    tok = token("nolist")
    reject_case(message(tok, frm), tok, "control: the same from 192.0.2.61",
                "reject.example.com", addr="192.0.2.61")
    tok = token("listpass")
    pass_case(sign(message(tok, frm), "reject.example.com"), tok,
              "a passing message from the list client", "reject.example.com",
              addr=LIST_CLIENT)
    check_not_delivered()


INNET_CLIENT = "192.0.2.99"        # in 192.0.2.0/24, rule: --dmarc enforce=on


def rules_loaded(mark, what):
    """Wait until the daemon has read the rules again after MARK."""
    ln = ag().wait_log(r"policy loaded: \d+ rules", timeout=10, since=mark)
    check("%s: the daemon read the rules again" % what, ln is not None,
          got="\n".join(ag().log_lines()[mark:][-5:]), fatal=True)


@suite.case
def cidr_exemption_and_precedence():
    """--match client=192.0.2.0/24 --dmarc enforce=off exempts the whole
    network; --dmarc enforce=on on a rule of higher priority (a lower
    number) for one address in it enforces the policy again there
    (authgatectl(8): the first matching rule that sets a setting decides).
    Both rules are deleted at the end (CLIENT is in that network)."""
    frm = ("<ceo@reject.example.com>",)
    mark = ag().log_mark()
    off = ag().add_rule("--priority", "200", "--match", "client=192.0.2.0/24",
                        "--dmarc", "enforce=off")
    on = None
    try:
        rules_loaded(mark, "rule %s added" % off)
        tok = token("cidr")
        what = "p=reject failure from %s (rule %s: client=192.0.2.0/24 --dmarc enforce=off)" % (
            CLIENT, off)
        mark = ag().log_mark()
        res = send(message(tok, frm), tok)
        expect_row("reject.example.com", CLIENT, "none", RULE_EXEMPT)
        dump = accepted(res, what)
        check_ar(dump, what, "fail", "reject.example.com", "none")
        check_log(mark, res, {"action": "accept", "dmarc": "fail",
                              "header_from": "reject.example.com", "policy": "none",
                              "override": "rule"}, what)
        tok = token("cidrout")
        reject_case(message(tok, frm), tok, "control: the same from %s (outside the network)"
                    % OFF_NET, "reject.example.com", addr=OFF_NET)
        mark = ag().log_mark()
        on = ag().add_rule("--priority", "50", "--match", "client=" + INNET_CLIENT,
                           "--dmarc", "enforce=on")
        rules_loaded(mark, "rule %s added" % on)
        tok = token("cidron")
        reject_case(message(tok, frm), tok, "from %s: rule %s (priority 50, --dmarc "
                    "enforce=on) comes before rule %s (priority 200, enforce=off): 550"
                    % (INNET_CLIENT, on, off), "reject.example.com", addr=INNET_CLIENT)
        tok = token("cidr2")
        mark = ag().log_mark()
        res = send(message(tok, frm), tok)
        expect_row("reject.example.com", CLIENT, "none", RULE_EXEMPT)
        what = "the rest of the network (%s) is still exempt" % CLIENT
        dump = accepted(res, what)
        check_ar(dump, what, "fail", "reject.example.com", "none")
        check_log(mark, res, {"action": "accept", "override": "rule"}, what)
    finally:
        mark = ag().log_mark()
        for rid in (on, off):
            if rid is not None:
                ag().del_rule(rid)
        rules_loaded(mark, "rules deleted")
    tok = token("cidrgone")
    reject_case(message(tok, frm), tok, "rules deleted: %s gets the 550 again" % CLIENT,
                "reject.example.com")
    check_not_delivered()


# ---------------------------------------------------------------------------
# 13. Forged upstream results (CVE-2019-20790)


FORGED = [
    "Authentication-Results: mx.test.invalid; dmarc=pass header.from=%(d)s",
    "Authentication-Results: MX.TEST.INVALID;\r\n\tspf=pass smtp.mailfrom=%(d)s;\r\n"
    "\tdkim=pass header.d=%(d)s; dmarc=pass header.from=%(d)s",
    "Authentication-Results: relay.example.net; dmarc=pass header.from=%(d)s",
    "Received-SPF: pass (mx.test.invalid: domain of %(d)s designates 192.0.2.10 as "
    "permitted sender) client-ip=192.0.2.10; envelope-from=\"x@%(d)s\"; "
    "receiver=mx.test.invalid; identity=mailfrom;",
]


@suite.case
def forged_upstream_results():
    d = "reject.example.com"
    tok = token("forgedrej")
    msg = message(tok, ("<ceo@%s>" % d,), extra=[f % {"d": d} for f in FORGED])
    reject_case(msg, tok, "forged dmarc/spf/dkim pass, p=reject", d)
    d = "none.example.com"
    tok = token("forgednone")
    msg = message(tok, ("<alice@%s>" % d,), extra=[f % {"d": d} for f in FORGED])
    mark = ag().log_mark()
    res = send(msg, tok)
    dump = accepted(res, "forged pass, p=none")
    ars = all_authres(dump, "forged, p=none")
    ours = [a for a in ars if a[0].lower() == AUTHSERV]
    check_eq("forged, p=none: one A-R with our authserv-id left (ours)", len(ours), 1,
             detail="\n".join(a[2] for a in ars))
    check("forged, p=none: no forged 'dmarc=pass' with our id left",
          not any("dmarc=pass" in a[2] for a in ours), got=[a[2] for a in ours])
    check_ar(dump, "forged, p=none", "fail", d, "none")
    check_eq("forged, p=none: the foreign A-R is kept",
             [a[2] for a in ars if a[0] == "relay.example.net"],
             ["relay.example.net; dmarc=pass header.from=%s" % d])
    check_log(mark, res, {"dmarc": "fail", "forged_ar": "2"}, "forged, p=none")
    check_not_delivered()


# ---------------------------------------------------------------------------
# 14. DMARCEnforce


@suite.case
def dmarc_enforce_caps():
    frm = ("<ceo@reject.example.com>",)
    reconfigure(DMARCEnforce="quarantine")
    try:
        tok = token("encq")
        mark = ag().log_mark()
        res = send(message(tok, frm), tok, wait_sink=False)
        expect_row("reject.example.com", CLIENT, "quarantine", CAPPED)
        hdrs = held(res, "DMARCEnforce quarantine, p=reject failure")
        if hdrs is not None:
            check_ar(hdrs, "DMARCEnforce quarantine, held message (postcat)", "fail",
                     "reject.example.com", "quarantine")
        check_log(mark, res, {"action": "quarantine", "dmarc": "fail",
                              "policy": "quarantine", "override": "config"},
                  "DMARCEnforce quarantine")
        tok = token("encqq")
        res = send(message(tok, ("<a@quarantine.example.com>",)), tok, wait_sink=False)
        held(res, "DMARCEnforce quarantine, p=quarantine failure (no override)")
        reconfigure(DMARCEnforce="none")
        tok = token("encn")
        mark = ag().log_mark()
        res = send(message(tok, frm), tok)
        expect_row("reject.example.com", CLIENT, "none", CAPPED)
        dump = accepted(res, "DMARCEnforce none, p=reject failure")
        check_ar(dump, "DMARCEnforce none", "fail", "reject.example.com", "none")
        check_log(mark, res, {"action": "accept", "dmarc": "fail", "policy": "none",
                              "override": "config"}, "DMARCEnforce none")
    finally:
        reconfigure()
    tok = token("encback")
    reject_case(message(tok, frm), tok, "back to the default (reject)", "reject.example.com")
    check_not_delivered()


# ---------------------------------------------------------------------------
# 15. Malformed and unusual records


@suite.case
def malformed_records():
    cases = [
        # (From domain, why, expected: 'reject' or (result, policy))
        ("dup.example.com", "duplicate p= tag: the record is unusable", ("permerror", None)),
        ("rua2.example.com", "rua= list split over two TXT strings (valid)", "reject"),
        ("unknown.example.com", "unknown tag foo=bar (ignored)", "reject"),
        ("v2.norecord.example", "v=DMARC2 (not a DMARC record), no org record",
         ("none", None)),
        ("two.norecord.example", "two DMARC records, no org record", ("none", None)),
        ("v2.example.com", "v=DMARC2 at the From domain: the org record (p=reject) applies "
         "(RFC 7489 6.6.3 steps 2-3)", "reject"),
        ("spf1.example.com", "an SPF and a DMARC record at _dmarc (the DMARC one counts)",
         "reject"),
        ("cname.example.com", "_dmarc is a CNAME (the server gives the CNAME only: the "
         "resolver follows it)", "reject"),
        ("long.example.com", "a record of %d bytes: past 1232, libunbound's EDNS size, "
         "so truncated over UDP and fetched over TCP" % LONG_LEN, "reject"),
    ]
    for dom, why, want in cases:
        tok = token("mal")
        what = "%s: %s" % (dom, why)
        if want == "reject":
            reject_case(message(tok, ("<alice@%s>" % dom,)), tok, what, dom)
        else:
            mark = ag().log_mark()
            res = send(message(tok, ("<alice@%s>" % dom,)), tok)
            dump = accepted(res, what)
            check_ar(dump, what, want[0], dom, want[1])
            check_log(mark, res, {"action": "accept", "dmarc": want[0]}, what)
        check_alive(what)
    # RFC 7489 6.6.3: only when no record is left at the From domain does
    # discovery go on to the organizational domain (step 3: "If the set is
    # now empty"); several records end it with no policy (step 5).
    dom = "two.example.com"
    tok = token("two")
    mark = ag().log_mark()
    res = send(message(tok, ("<alice@%s>" % dom,)), tok)
    ok = check("two DMARC records at _dmarc.two.example.com: no policy, accepted "
               "(RFC 7489 6.6.3 step 5), not the org domain's p=reject",
               res.stage == "eod" and res.final.startswith("250"), got=res)
    if ok:
        res.msg = res.msg or st().sink.wait_for(tok)
        if res.msg:
            check_ar(res.msg, "two records at the From domain", "none", dom, None)
    else:
        S.setdefault("not_delivered", []).append(("two records, refused", tok))
    check_not_delivered()
    check_alive("after every malformed record")


def report_records(xml):
    """The records of a report: sorted [(source_ip, count, disposition,
    reason type, reason comment, header_from)]."""
    out = []
    for rec in ET.fromstring(xml).findall("record"):
        row = rec.find("row")
        pe = row.find("policy_evaluated")
        reason = pe.find("reason")
        out.append((row.findtext("source_ip"), int(row.findtext("count")),
                    pe.findtext("disposition"),
                    reason.findtext("type") if reason is not None else None,
                    reason.findtext("comment") if reason is not None else None,
                    rec.find("identifiers").findtext("header_from")))
    return sorted(out, key=lambda x: tuple("" if v is None else str(v) for v in x))


def expected_records(domain):
    """The records the messages this script sent (expect_row) add up to."""
    counts = {}
    for addr, disp, rtype, rcomment in S.get("rows", {}).get(domain, []):
        k = (addr, disp, rtype, rcomment)
        counts[k] = counts.get(k, 0) + 1
    return sorted(((a, n, d, t, c, domain) for (a, d, t, c), n in counts.items()),
                  key=lambda x: tuple("" if v is None else str(v) for v in x))


def dmarc_report(domain):
    """authgatectl dmarc-report for DOMAIN over this run, once its records
    are what this script sent (the watcher writes the history every
    PolicyCheckInterval, 1 s here; 10 s at most): (run result, records)."""
    args = ("dmarc-report", "--domain", domain, "--since", "0",
            "--until", str(int(time.time()) + 60))
    want = expected_records(domain)
    got = {}

    def ready():
        r = got["r"] = ag().ctl(*args)
        if r.returncode != 0 or "<feedback>" not in (r.stdout or ""):
            return False
        got["recs"] = report_records(r.stdout)
        return got["recs"] == want
    agtest.wait_until(ready, 10.0)
    r = got["r"]
    check("dmarc-report --domain %s: exit 0, a <feedback> document" % domain,
          r.returncode == 0 and "<feedback>" in (r.stdout or ""), agtest.fmt_run(r), fatal=True)
    return r, got.get("recs", [])


@suite.case
def aggregate_report_of_what_postfix_saw():
    """authgatectl dmarc-report over the messages this script sent through
    Postfix: valid against RFC 7489's schema (xmllint), with exactly the
    records the cases' messages add up to (expect_row): for
    reject.example.com the rejections, the rule exemptions, the dispositions
    capped by DMARCEnforce and the passes; for pct0.example.com the one
    message sampled out; nothing from the clients DMARC skips."""
    xsd = os.path.join(os.environ.get("AG_SRCDIR", "."), "tests", "dmarc", "rua.xsd")
    r, recs = dmarc_report("reject.example.com")
    path = os.path.join(agtest.tmpdir("xml"), "report.xml")
    with open(path, "w") as f:
        f.write(r.stdout)
    x = agtest.run(["/usr/bin/xmllint", "--noout", "--schema", xsd, path])
    check("the report validates against rua.xsd (RFC 7489 Appendix C)", x.returncode == 0,
          agtest.fmt_run(x))
    pp = ET.fromstring(r.stdout).find("policy_published")
    check_eq("policy_published domain", pp.findtext("domain"), "reject.example.com")
    check_eq("policy_published p", pp.findtext("p"), "reject")
    want = expected_records("reject.example.com")
    check("reject.example.com: the cases sent a rejection, a rule exemption and a capped "
          "disposition from %s" % CLIENT,
          {("reject", None), ("none", RULE_EXEMPT[0]), ("quarantine", CAPPED[0])} <=
          {(w[2], w[3]) for w in want if w[0] == CLIENT}, got=want)
    check_eq("reject.example.com: the records (source_ip, count, disposition, reason type, "
             "reason comment, header_from) are what this script sent", recs, want)
    for addr, why in S.get("skipped", []):
        if addr == CLIENT:
            # the same address as the evaluated mail: its count above is exact
            continue
        check("reject.example.com: no record from %s (%s, not evaluated)" % (addr, why),
              not any(x[0] == addr for x in recs), got=recs)
    check_eq("the clients DMARC skips were among the senders",
             sorted(w for _, w in S.get("skipped", [])), ["authenticated", "rule", "trusted"])
    r, recs = dmarc_report("pct0.example.com")
    check_eq("pct0.example.com (p=reject pct=0): one record, quarantine, reason sampled_out",
             recs, [(CLIENT, 1, "quarantine", "sampled_out", None, "pct0.example.com")])
    check_eq("pct0.example.com: that is what this script sent", recs,
             expected_records("pct0.example.com"))
    check_eq("policy_published pct 0", ET.fromstring(r.stdout).find("policy_published")
             .findtext("pct"), "0")


suite.run()
