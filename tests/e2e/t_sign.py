#!/usr/bin/python3
"""End to end, real Postfix -> authgate -> smtp-sink, DKIM signing of
outbound mail (issue 7).

Keys are made with `authgatectl key generate`, their TXT records served
by a real unbound on loopback, and the signing table filled with
`authgatectl sign add`.  Messages go through Postfix from a client that
XCLIENT presents as 192.0.2.x with LOGIN=alice (SASL), or from 127.0.0.1
itself (TrustedNetworks), and every signature at the sink is verified by
an independent implementation, dkimpy, whose key lookups ask the same
unbound (dnslib), so the key that verifies is the one published in DNS.

Cases: RSA-2048 relaxed/relaxed, Ed25519, both at once; simple/simple,
relaxed/simple and Ed25519 simple/simple over bodies with and without a
final CRLF, an empty body, folded headers, an 8-bit Subject and
"Subject:x" without a space, a 300 KB body with dot lines; b= at
several folding columns under simple/simple; over-signed From and x= (--expire);
a second hop where authgate verifies its own signatures; what is and is
not signed (inbound, no entry, ".domain" and "*" patterns, case, two
From fields, DKIMSign no); key rollovers under traffic (sign add + del,
then sign replace: never both keys); a message in
progress keeps its table; IDN domains; keys refused by `sign add` and
keys broken after they were added (451 4.3.0, `sign list` UNUSABLE,
On-SignError accept); `key test`; and no key material in any log.

Checks labelled "BUG PROBE" fail on a known defect of the daemon or
authgatectl (IDN patterns and d=, see the idn_domains case).
"""

import glob
import json
import os
import re
import smtplib
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
import agdns  # noqa: E402
from agtest import check, check_eq, diag  # noqa: E402
from agpostfix import reply  # noqa: E402

suite = agtest.Suite("e2e: DKIM signing through Postfix", case_timeout=60, total_timeout=300)
S = {}

AUTHSERV = "mx.test.invalid"
OUT_ADDR = "192.0.2.60"        # untrusted address: outbound only with LOGIN
IN_ADDR = "192.0.2.10"         # untrusted, no LOGIN: inbound
HELO = "client.example"
LOGIN = "alice"
TEMPFAIL_TEXT = "451 4.3.0 The message cannot be signed (DKIM) now, please try again later"

BASE_CONF = {
    "TrustedNetworks": "127.0.0.0/8, ::1/128",
    "DNSTimeout": "1000",
    "DKIMTimeout": "3000",
}

# The signing table of setup: name -> (match, d=, s=, algorithm, extra sign add args).
# Each key gets its TXT record at s._domainkey.d.
ENTRIES = [
    ("com_rsa", "example.com", "example.com", "s1", "rsa", []),
    ("com_ed", "example.com", "example.com", "e1", "ed25519", []),
    ("com_sub", ".example.com", "example.com", "sub", "rsa", []),
    ("org_ss", "example.org", "example.org", "o1", "rsa",
     ["--canonicalization", "simple/simple"]),
    ("rr", "rr.example.net", "rr.example.net", "r1", "rsa",
     ["--canonicalization", "relaxed/relaxed"]),
    ("rs", "rs.example.net", "rs.example.net", "r1", "rsa",
     ["--canonicalization", "relaxed/simple"]),
    ("ed_only", "ed.example.net", "ed.example.net", "e1", "ed25519", []),
    ("ed_ss", "eds.example.net", "eds.example.net", "e1", "ed25519",
     ["--canonicalization", "simple/simple"]),
    ("xp", "x.example.net", "x.example.net", "x1", "rsa",
     ["--expire", "7d", "--headers", "from:to:subject"]),
    ("roll1", "roll.example.net", "roll.example.net", "s1", "rsa", []),
    ("bad", "bad.example.net", "bad.example.net", "b1", "rsa", []),
]


# ---------------------------------------------------------------------------
# Helpers: CLI, keys, DNS


def ag():
    return S["st"].ag


def ctl(*args):
    return ag().ctl(*args)


def keygen(domain, selector, alg="rsa", bits=None, json_out=True, force=False):
    """authgatectl key generate into the key directory: the parsed --json
    answer (checked: file mode 0600, PKCS#8 PEM)."""
    args = ["key", "generate", "--domain", domain, "--selector", selector,
            "--algorithm", alg, "--dir", S["keydir"]]
    if bits:
        args += ["--bits", str(bits)]
    if force:
        args.append("--force")
    if json_out:
        args.append("--json")
    r = ctl(*args)
    check("key generate %s %s (%s): exit 0" % (domain, selector, alg), r.returncode == 0,
          agtest.fmt_run(r), fatal=True)
    if not json_out:
        return r
    try:
        k = json.loads(r.stdout)
    except ValueError:
        check("key generate --json: JSON on stdout", False, got=r.stdout, fatal=True)
    st_ = os.stat(k["key_file"])
    check_eq("key generate %s %s: key file mode 0600" % (domain, selector),
             oct(stat.S_IMODE(st_.st_mode)), "0o600")
    with open(k["key_file"], "rb") as f:
        pem = f.read()
    check("key generate %s %s: a PKCS#8 PEM private key" % (domain, selector),
          pem.startswith(b"-----BEGIN PRIVATE KEY-----"), got=pem[:40])
    S.setdefault("pems", []).append(pem)
    return k


def publish(zones):
    """Add names to the DNS zone (unbound is restarted with them)."""
    S["dns"].update(zones)


def dns_txt(name, timeout=5):
    """dkimpy's dnsfunc: the TXT record of NAME from our unbound."""
    n = name.decode() if isinstance(name, bytes) else name
    a = agdns.query(S["dns"].port, agdns.fqdn(n), "TXT", timeout=2.0)
    txts = agdns.txt_of(a)
    return txts[0] if txts else None


def sign_add(domain, selector, key_file, *extra):
    """authgatectl sign add; returns the new id (fatal on failure)."""
    r = ctl("sign", "add", "--domain", domain, "--selector", selector, "--key", key_file,
            *extra)
    m = re.match(r"^\s*(\d+)\s*$", r.stdout or "")
    check("sign add %s %s %s: exit 0 and the new id" % (domain, selector, " ".join(extra)),
          r.returncode == 0 and m is not None, agtest.fmt_run(r), fatal=True)
    S["nkeys"] = S.get("nkeys", 0) + 1
    return m.group(1)


def sign_del(eid, what=""):
    r = ctl("sign", "del", str(eid))
    check("sign del %s %s: exit 0" % (eid, what), r.returncode == 0, agtest.fmt_run(r),
          fatal=True)
    S["nkeys"] -= 1


def sign_list():
    r = ctl("sign", "list", "--json")
    check("sign list --json: exit 0", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    try:
        return json.loads(r.stdout)
    except ValueError:
        check("sign list --json: JSON", False, got=r.stdout, fatal=True)


def table_reloaded(mark, timeout=6.0):
    """Wait for the daemon's 'signing table loaded: N keys' after MARK, N
    the number of entries the table has now."""
    pat = r"signing table loaded: %d keys" % S["nkeys"]
    ln = ag().wait_log(pat, timeout=timeout, since=mark)
    check("the daemon reloaded its signing table (%s)" % pat, ln is not None,
          got="\n".join(ag().log_lines()[mark:][-10:]), fatal=True)
    time.sleep(0.05)     # the snapshot is published right after the log line
    return ln


def reconfigure(**settings):
    """authgate's configuration as the base plus SETTINGS, reloaded (SIGHUP)."""
    a = ag()
    a.settings.pop("On-SignError", None)
    a.settings.update(S["conf"])
    a.write_config(**settings)
    mark = a.log_mark()
    a.reload()
    ln = a.wait_log(r"configuration reloaded", timeout=10, since=mark)
    check("authgate reloaded its configuration (SIGHUP)", ln is not None and a.alive(),
          got="\n".join(a.log_lines()[mark:]), fatal=True)
    return mark


# ---------------------------------------------------------------------------
# Messages


def message(tok, frm, subject=None, body=None, extra=(), raw_subject=None):
    """A message (bytes, CRLF): folded To and Subject, a tab, trailing white
    space, TOKEN in the Message-ID (and Subject)."""
    hdr = [
        "From: Alice Example <%s>" % frm,
        "To: Bob Example <bob@example.net>,\r\n\tCarol Example <carol@example.net>",
        raw_subject if raw_subject is not None else
        "Subject: %s" % (subject or "signing test %s,\r\n  folded over two lines" % tok),
        "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
        "Message-ID: <%s@example.com>" % tok,
        "X-Tabbed:\tvalue after a tab   ",
    ] + list(extra)
    if body is None:
        body = (b"Hello Bob,  \r\n\r\nthis body has trailing white space\t \r\n"
                b"and  doubled   spaces.\r\n\r\n\r\n")
    head = "\r\n".join(hdr).encode("utf-8") + b"\r\n"
    return head + b"\r\n" + body


class Result:
    stage = None
    final = None
    qid = None
    raw = None      # the dump at the sink (bytes, CRLF), when delivered
    tok = None

    def __repr__(self):
        return "<stage=%s final=%r qid=%s>" % (self.stage, self.final, self.qid)


def sink_raw(tok):
    """The sink's dump holding TOK, as bytes with CRLF line ends, or None."""
    needle = tok.encode()
    for p in sorted(glob.glob(os.path.join(S["st"].sink.spool, "*"))):
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if needle in data:
            return re.sub(rb"\r?\n", b"\r\n", data)
    return None


def wait_sink(tok, timeout=15.0):
    return agtest.wait_until(lambda: sink_raw(tok), timeout, 0.1)


def send(msg, tok, sender, login=LOGIN, addr=OUT_ADDR, xclient=True, wait=True):
    """MSG through Postfix.  With XCLIENT (ADDR, and LOGIN when given), or
    without (xclient=False: the client is 127.0.0.1, trusted)."""
    res = Result()
    res.tok = tok
    s = S["st"].pf.smtp(HELO, timeout=60)
    try:
        if xclient:
            cmd = "XCLIENT ADDR=%s NAME=client.example HELO=%s" % (addr, HELO)
            if login:
                cmd += " LOGIN=%s" % login
            r = reply(s.docmd(cmd))
            if not r.startswith("220"):
                res.stage, res.final = "xclient", r
                return res
            s.ehlo(HELO)
        res.stage, res.final, _ = agpostfix.send_raw(s, sender, ["bob@example.net"], msg)
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass
    res.qid = agpostfix.queued_id(res.final)
    if wait and res.stage == "eod" and res.final.startswith("250"):
        res.raw = wait_sink(tok)
    return res


def accepted(res, what):
    check("%s: accepted (250 at end of data)" % what,
          res.stage == "eod" and (res.final or "").startswith("250"),
          expected="250 2.0.0 Ok: queued as ...", got=res, fatal=True)
    check("%s: the message is at the sink" % what, res.raw is not None, fatal=True)
    return res.raw


def fields(raw):
    return agtest.header_fields(raw.decode("utf-8", "replace"))


def sig_tags(value):
    tags = {}
    for part in value.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            k = k.strip()
            tags[k] = re.sub(r"\s+", "", v) if k in ("b", "bh", "h") else v.strip()
    return tags


def signatures(raw):
    """The DKIM-Signature fields of RAW in order, as {tag: value}."""
    return [sig_tags(v) for n, v in fields(raw) if n.lower() == "dkim-signature"]


def dkimpy_verify(raw):
    """dkimpy's verdict on every signature of RAW (keys from our unbound):
    a list of (tags, True/False, error text)."""
    import dkim
    out = []
    sigs = signatures(raw)
    for i, tags in enumerate(sigs):
        d = dkim.DKIM(raw)
        try:
            ok = bool(d.verify(idx=i, dnsfunc=dns_txt))
            err = None if ok else "verify() returned False"
        except Exception as e:
            ok, err = False, "%s: %s" % (type(e).__name__, e)
        out.append((tags, ok, err))
    return out


def check_signed(raw, what, want):
    """RAW carries exactly the signatures WANT, a list of (d, s, a), in that
    order, on top of the header, and dkimpy verifies every one of them."""
    ver = dkimpy_verify(raw)
    got = [(t.get("d"), t.get("s"), t.get("a")) for t, _, _ in ver]
    check_eq("%s: DKIM-Signatures (d, s, a)" % what, got, want)
    for t, ok, err in ver:
        check("%s: dkimpy verifies d=%s s=%s a=%s c=%s" % (what, t.get("d"), t.get("s"),
                                                          t.get("a"), t.get("c")),
              ok, got=err, detail=raw[:3000].decode("utf-8", "replace"))
    names = [n.lower() for n, _ in fields(strip_sink_lines(raw))]
    if want:
        check("%s: the signatures are on top (above Authentication-Results and Received)"
              % what, names[:len(want)] == ["dkim-signature"] * len(want), got=names[:8])
    return ver


def decision(qid, timeout=5.0):
    ds = ag().wait_decision(qid=qid, timeout=timeout)
    return ds[-1] if ds else None


def check_log(res, what, sign=None, action="accept", absent=()):
    """The decision line of RES: sign= (None: no sign= field), action=."""
    d = decision(res.qid) if res.qid else None
    if d is None and res.qid is None:
        # refused at end of data: Postfix gave no queue id in the reply
        mark = S.get("mark", 0)
        ds = ag().decisions(mark)
        d = ds[-1] if ds else None
    if not check("%s: a decision log line" % what, d is not None,
                 got="\n".join(ag().log_lines()[-10:])):
        return None
    check_eq("%s: log sign=" % what, d.get("sign"), sign, detail=d["line"])
    check_eq("%s: log action=" % what, d.get("action"), action, detail=d["line"])
    for k in absent:
        check("%s: log has no %s= field" % (what, k), k not in d, got=d["line"])
    return d


def our_authres(raw, what):
    """Our Authentication-Results (parsed) at the sink, or None."""
    mine = []
    for n, v in fields(raw):
        if n.lower() != "authentication-results":
            continue
        try:
            sid, res = agtest.authres_results(v)
        except Exception as e:
            check("%s: Authentication-Results parses" % what, False, got="%s: %r" % (v, e))
            continue
        if sid.lower() == AUTHSERV:
            mine.append((v, res))
    check("%s: one Authentication-Results of ours" % what, len(mine) == 1,
          got=[v for v, _ in mine])
    return mine[0] if mine else (None, [])


def tok_of(label):
    return S["st"].token(label)


def outbound(frm_domain, what, msg=None, want=None, tok=None, sign_field=None, **kw):
    """One outbound message From alice@FRM_DOMAIN (LOGIN=alice): accepted,
    signed as WANT (verified), and the log's sign= field."""
    tok = tok or tok_of(frm_domain.split(".")[0])
    msg = msg if msg is not None else message(tok, "alice@%s" % frm_domain)
    res = send(msg, tok, "alice@%s" % frm_domain, **kw)
    raw = accepted(res, what)
    ver = check_signed(raw, what, want or [])
    if sign_field is not False:
        exp = sign_field or (",".join("%s/%s" % (d, s) for d, s, _ in want) if want
                             else None)
        check_log(res, what, sign=exp)
    return res, raw, ver


# ---------------------------------------------------------------------------
# Setup


@suite.setup
def setup():
    agpostfix.require()
    agdns.require()
    for mod in ("authres", "dkim", "nacl"):
        agtest.require(mod, "module")
    agtest.require_authgate()
    S["keydir"] = os.path.join(agtest.tmpdir("keys"), "k")   # made by key generate
    S["spare"] = agtest.tmpdir("spare")
    dns = S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), {}).start()
    S["conf"] = dict(BASE_CONF, DNSServer=dns.server)
    st = S["st"] = agpostfix.Stack(conf=S["conf"])
    r = st.ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    # one key in text form: the record printed for the zone file
    r = keygen("example.org", "o1", json_out=False)
    m = re.search(r"^(o1\._domainkey\.example\.org\.)\s+IN\s+TXT\s+\((.*?)\)", r.stdout,
                  re.M | re.S)
    check("key generate (text): prints 'o1._domainkey.example.org. IN TXT ( \"...\" )'",
          m is not None, got=r.stdout, fatal=True)
    txt_org = "".join(re.findall(r'"([^"]*)"', m.group(2)))
    check("key generate (text): the record is v=DKIM1; k=rsa; p=...",
          txt_org.startswith("v=DKIM1; k=rsa; p=MII"), got=txt_org)
    keys = {"org_ss": {"key_file": os.path.join(S["keydir"], "example.org.o1.key"),
                       "txt_name": "o1._domainkey.example.org", "txt_value": txt_org}}
    with open(keys["org_ss"]["key_file"], "rb") as f:
        S.setdefault("pems", []).append(f.read())
    for name, match, d, sel, alg, extra in ENTRIES:
        if name in keys:
            continue
        k = keygen(d, sel, alg)
        check_eq("key generate --json %s: fields" % name,
                 (k.get("domain"), k.get("selector"), k.get("algorithm"), k.get("bits"),
                  k.get("txt_name")),
                 (d, sel, alg, 2048 if alg == "rsa" else 256, "%s._domainkey.%s" % (sel, d)))
        keys[name] = k
    S["keys"] = keys
    zones = {k["txt_name"]: [("TXT", k["txt_value"])] for k in keys.values()}
    S["dns"].update(zones)
    ids = {}
    for name, match, d, sel, alg, extra in ENTRIES:
        args = list(extra) + ["--algorithm", alg]
        if match != d:
            args += ["--match", match]
        ids[name] = sign_add(d, sel, keys[name]["key_file"], *args)
    S["ids"] = ids
    st.start()
    table_reloaded(0)


# ---------------------------------------------------------------------------
# 1. RSA, Ed25519, both


@suite.case
def rsa_ed25519_and_both():
    outbound("rr.example.net", "RSA-2048 relaxed/relaxed",
             want=[("rr.example.net", "r1", "rsa-sha256")])
    res, raw, ver = outbound("ed.example.net", "Ed25519 alone",
                             want=[("ed.example.net", "e1", "ed25519-sha256")])
    res, raw, ver = outbound("example.com", "RSA and Ed25519 at once",
                             want=[("example.com", "s1", "rsa-sha256"),
                                   ("example.com", "e1", "ed25519-sha256")])
    S["both_raw"] = raw
    if ver:
        t = ver[0][0]
        check_eq("both: c=relaxed/relaxed (the default)", t.get("c"), "relaxed/relaxed")
        check("both: no x= without --expire", "x" not in t, got=t)
        check("both: t= is now", abs(int(t.get("t", "0")) - time.time()) < 120, got=t.get("t"))
    # outbound is not checked: no spf/dkim/dmarc result, auth=pass
    value, parsed = our_authres(raw, "both")
    methods = {m: (r, p) for m, r, _, p in parsed}
    check("both: Authentication-Results has auth=pass smtp.auth=alice",
          methods.get("auth", (None, {}))[0] == "pass" and
          methods["auth"][1].get("smtp.auth") == LOGIN, got=value)
    check("both: outbound is not verified (no dkim=, spf=, dmarc= result)",
          not ({"dkim", "spf", "dmarc"} & set(methods)), got=value)
    d = decision(res.qid)
    if d:
        check("both: log has no dkim= field (outbound is not verified)", "dkim" not in d,
              got=d["line"])
    # a trusted client (127.0.0.1, no XCLIENT, no login) is signed too
    tok = tok_of("trusted")
    res = send(message(tok, "alice@example.com"), tok, "alice@example.com", xclient=False)
    raw = accepted(res, "trusted 127.0.0.1, no LOGIN")
    check_signed(raw, "trusted 127.0.0.1, no LOGIN",
                 [("example.com", "s1", "rsa-sha256"), ("example.com", "e1", "ed25519-sha256")])
    check_log(res, "trusted 127.0.0.1", sign="example.com/s1,example.com/e1")


# ---------------------------------------------------------------------------
# 2. canonicalizations and awkward messages


def awkward_messages(domain):
    """(label, tok, message) for DOMAIN: final CRLF, none, empty body, no
    body at all, 8-bit Subject and body, Subject:x, long folded header."""
    frm = "alice@%s" % domain
    out = []
    tok = tok_of("crlf")
    out.append(("body ends in CRLF, folded headers", tok, message(tok, frm)))
    tok = tok_of("nocrlf")
    out.append(("body without final CRLF", tok,
                message(tok, frm, body=b"first line\r\nlast line without CRLF")))
    tok = tok_of("empty")
    out.append(("empty body", tok, message(tok, frm, body=b"")))
    tok = tok_of("blanks")
    out.append(("body of empty lines only", tok, message(tok, frm, body=b"\r\n\r\n\r\n")))
    tok = tok_of("utf8")
    out.append(("8-bit UTF-8 Subject and body", tok,
                message(tok, frm, subject="Gr\u00fc\u00dfe aus K\u00f6ln \u2713 %s" % tok,
                        extra=["MIME-Version: 1.0",
                               "Content-Type: text/plain; charset=utf-8",
                               "Content-Transfer-Encoding: 8bit"],
                        body="Gr\u00fc\u00dfe, \u00e9t\u00e9 \u2713\r\n".encode())))
    tok = tok_of("nospace")
    out.append(("Subject:x without a space", tok,
                message(tok, frm, raw_subject="Subject:x")))
    tok = tok_of("spaces")
    out.append(("Subject with two leading spaces and trailing white space", tok,
                message(tok, frm, raw_subject="Subject:  spaced out \t ")))
    tok = tok_of("big")
    lines, i = [], 0
    while sum(len(x) for x in lines) < 300000:
        i += 1
        ln = b"line %d " % i + b"x" * (i * 37 % 180)
        if i % 7 == 0:
            ln = b"." + ln                   # dot-stuffed by SMTP
        if i % 5 == 0:
            ln += b" \t "                    # trailing white space
        if i % 11 == 0:
            ln = b""
        lines.append(ln + b"\r\n")
    out.append(("300 KB body: leading dots, trailing white space, empty lines", tok,
                message(tok, frm, body=b"".join(lines) + b".\r\n..\r\n\r\n\r\n")))
    tok = tok_of("fold")
    out.append(("headers folded many times", tok,
                message(tok, frm, extra=["References: <a@example.com>\r\n <b@example.com>"
                                         "\r\n\t<c@example.com>",
                                         "Cc:   spaced@example.net  ,\r\n \t "
                                         "other@example.net\t"])))
    return out


@suite.case(timeout=90)
def canonicalizations_and_awkward_bodies():
    plan = [("example.org", ("example.org", "o1", "rsa-sha256"), "simple/simple"),
            ("rs.example.net", ("rs.example.net", "r1", "rsa-sha256"), "relaxed/simple"),
            ("rr.example.net", ("rr.example.net", "r1", "rsa-sha256"), "relaxed/relaxed"),
            ("eds.example.net", ("eds.example.net", "e1", "ed25519-sha256"), "simple/simple")]
    sent = []
    for domain, want, canon in plan:
        for label, tok, msg in awkward_messages(domain):
            what = "%s %s (%s): %s" % (want[2], canon, domain, label)
            sent.append((what, want, canon, msg,
                         send(msg, tok, "alice@%s" % domain, wait=False)))
    for what, want, canon, msg, res in sent:
        if res.stage == "eod" and (res.final or "").startswith("250"):
            res.raw = wait_sink(res.tok)
        raw = accepted(res, what)
        ver = check_signed(raw, what, [want])
        if ver:
            check_eq("%s: c=" % what, ver[0][0].get("c"), canon)
        if "Subject:x" in what:
            check("%s: the sink got 'Subject:x' unchanged" % what, b"\r\nSubject:x\r\n" in raw,
                  got=[ln for ln in raw.split(b"\r\n") if ln.lower().startswith(b"subject")])
        if "UTF-8" in what:
            check("%s: the 8-bit Subject arrived as sent" % what,
                  "Gr\u00fc\u00dfe aus K\u00f6ln".encode() in raw)
        check_log(res, what, sign="%s/%s" % (want[0], want[1]))
        if "Subject:x" in what or "two leading" in what:
            S.setdefault("hop2_msgs", []).append((what, raw))


DEFAULT_LIST = ["Reply-To", "Cc", "In-Reply-To", "References", "List-Id", "List-Help",
                "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner",
                "List-Archive", "Sender", "Resent-Date", "Content-ID"]


@suite.case(timeout=90)
def b_tag_folding_sweep():
    """Under simple header canonicalization the signature's folding is
    hashed, so every place a line break can fall must verify.  Where b=
    falls depends on the length of h=: one more field signed per message
    moves it, over 15 positions, for Ed25519 and RSA under simple/simple."""
    sent = []
    for domain, want in (("eds.example.net", ("eds.example.net", "e1", "ed25519-sha256")),
                         ("example.org", ("example.org", "o1", "rsa-sha256"))):
        for n in range(len(DEFAULT_LIST) + 1):
            tok = tok_of("sweep%d" % n)
            extra = ["%s: <v%d@example.com>" % (h, i) for i, h in enumerate(DEFAULT_LIST[:n])]
            msg = message(tok, "alice@%s" % domain, extra=extra)
            sent.append(("%s simple/simple, %d more fields signed" % (want[2], n), want,
                         send(msg, tok, "alice@%s" % domain, wait=False)))
    cols = set()
    for what, want, res in sent:
        if res.stage == "eod" and (res.final or "").startswith("250"):
            res.raw = wait_sink(res.tok)
        raw = accepted(res, what)
        check_signed(raw, what, [want])
        m = re.search(rb"\r\n([^\r\n]*?)\bb=", raw[raw.find(b"DKIM-Signature:"):])
        if m:
            cols.add(len(m.group(1).expandtabs(8)))
    diag("b= began at %d different columns: %s" % (len(cols), sorted(cols)))
    check("the sweep put b= at several columns", len(cols) >= 3, got=sorted(cols))


# ---------------------------------------------------------------------------
# 3. h= over-signs From; x= with --expire


@suite.case
def oversigned_from_and_expire():
    res, raw, ver = outbound("x.example.net", "--expire 7d --headers from:to:subject",
                             want=[("x.example.net", "x1", "rsa-sha256")])
    if ver:
        t = ver[0][0]
        h = [x.lower() for x in t.get("h", "").split(":")]
        check_eq("--headers: h= names From twice (over-signed), To and Subject",
                 sorted(h), ["from", "from", "subject", "to"])
        check("--expire 7d: x= present", "x" in t and "t" in t, got=t)
        if "x" in t and "t" in t:
            check_eq("--expire 7d: x= - t= = 604800", int(t["x"]) - int(t["t"]), 604800)
    # the default list over-signs From as well, and leaves Postfix's Received out
    ver = dkimpy_verify(S["both_raw"]) if "both_raw" in S else []
    if ver:
        h = [x.lower() for x in ver[0][0].get("h", "").split(":")]
        check_eq("default h=: From named twice (one From in the message)", h.count("from"), 2)
        check("default h=: Subject, Date, To, Message-ID signed",
              all(x in h for x in ("subject", "date", "to", "message-id")), got=h)
        check("default h=: no Received, no Authentication-Results",
              "received" not in h and "authentication-results" not in h, got=h)
    # a From added after signing breaks the over-signed signature
    import dkim
    hacked = raw.replace(b"\r\nFrom: ", b"\r\nFrom: Mallory <m@example.net>\r\nFrom: ", 1)
    d = dkim.DKIM(hacked)
    try:
        okh = d.verify(idx=0, dnsfunc=dns_txt)
    except Exception:
        okh = False
    check("a second From added after signing: dkimpy no longer verifies", not okh)


# ---------------------------------------------------------------------------
# 4. second hop: authgate verifies its own signatures


def strip_sink_lines(raw):
    """The message as the sink received it: without smtp-sink's own lines
    at the top (X-Client-Addr, X-Client-Proto, X-Helo-Args, X-Mail-Args,
    X-Rcpt-Args, and its Received field "by smtp-sink")."""
    lines = raw.split(b"\r\n")
    i = 0
    while i < len(lines) and re.match(rb"^X-(Client-Addr|Client-Proto|Helo-Args|Mail-Args|"
                                      rb"Rcpt-Args):", lines[i]):
        i += 1
    if i < len(lines) and lines[i].startswith(b"Received:"):
        j = i + 1
        while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
            j += 1
        if b"by smtp-sink" in b"\r\n".join(lines[i:j]):
            i = j
    return b"\r\n".join(lines[i:])


@suite.case
def second_hop_verifies():
    raw = S.get("both_raw")
    check("the signed RSA+Ed25519 message of case 1 is there", raw is not None, fatal=True)
    msg = strip_sink_lines(raw)
    check_eq("second hop: the first hop's message starts with its signatures",
             [n.lower() for n, _ in fields(msg)][:3],
             ["dkim-signature", "dkim-signature", "authentication-results"])
    # a new token in an unsigned field on top, so that the second copy is
    # found at the sink (the signed fields are left as they are)
    tok = tok_of("hop2")
    msg2 = b"X-Hop2: " + tok.encode() + b"\r\n" + msg
    before = len(signatures(msg))
    res = send(msg2, tok, "alice@example.com", login=None, addr=IN_ADDR)
    raw2 = accepted(res, "second hop (inbound, untrusted, no LOGIN)")
    sigs2 = signatures(raw2)
    check_eq("second hop: not signed again (inbound)", len(sigs2), before)
    ver = dkimpy_verify(raw2)
    check("second hop: dkimpy still verifies both signatures at the sink",
          len(ver) == 2 and all(ok for _, ok, _ in ver), got=[(t.get("s"), ok, e)
                                                            for t, ok, e in ver])
    value, parsed = our_authres(raw2, "second hop")
    dk = [(r, p) for m, r, _, p in parsed if m == "dkim"]
    check_eq("second hop: authgate's dkim results", [r for r, _ in dk], ["pass", "pass"],
             detail=value)
    check("second hop: dkim=pass header.d=example.com (both signatures)",
          value is not None and
          len(re.findall(r"dkim=pass[^;]*header\.d=example\.com", value or "")) == 2,
          got=value)
    check("second hop: a=rsa-sha256 and a=ed25519-sha256 both pass",
          value is not None and re.search(r"header\.a=rsa-sha256", value) and
          re.search(r"header\.a=ed25519-sha256", value), got=value)
    check("second hop: the first hop's auth=pass (ours, now forged) is gone",
          "smtp.auth=alice" not in (value or "") and
          not any("smtp.auth=alice" in v for n, v in fields(raw2)
                  if n.lower() == "authentication-results"), got=value)
    for what, raw1 in S.get("hop2_msgs", []):
        tok = tok_of("hop2s")
        res1 = send(b"X-Hop2: " + tok.encode() + b"\r\n" + strip_sink_lines(raw1), tok,
                    "alice@example.com", login=None, addr=IN_ADDR)
        raw_b = accepted(res1, "second hop of %s" % what)
        t = signatures(raw_b)[0] if signatures(raw_b) else {}
        v, p = our_authres(raw_b, "second hop of %s" % what)
        check("second hop of %s: authgate says dkim=pass header.d=%s" % (what, t.get("d")),
              [r for m_, r, _, _ in p if m_ == "dkim"] == ["pass"] and
              ("header.d=%s" % t.get("d")) in (v or ""), got=v)
    d = decision(res.qid)
    if check("second hop: a decision line", d is not None):
        check_eq("second hop: log dkim=", d.get("dkim"), "pass:d=example.com,pass:d=example.com",
                 detail=d["line"])
        check("second hop: no sign= field (inbound)", "sign" not in d, got=d["line"])
        check_eq("second hop: log forged_ar=1 (the first hop's header)", d.get("forged_ar"), "1",
                 detail=d["line"])


# ---------------------------------------------------------------------------
# 5. what is signed


@suite.case
def what_is_signed():
    # inbound: untrusted, no LOGIN -> not signed
    tok = tok_of("inbound")
    res = send(message(tok, "alice@example.com"), tok, "alice@example.com", login=None,
               addr=IN_ADDR)
    raw = accepted(res, "inbound From example.com")
    check_eq("inbound: no DKIM-Signature added", signatures(raw), [])
    check_log(res, "inbound", sign=None)
    # outbound, no entry for the From domain
    outbound("unlisted.example", "outbound, no entry for the From domain", want=[],
             sign_field="none")
    # subdomain of a ".example.com" entry; deeper too
    outbound("sub.example.com", "From sub.example.com, entry .example.com",
             want=[("example.com", "sub", "rsa-sha256")])
    outbound("a.b.example.com", "From a.b.example.com, entry .example.com",
             want=[("example.com", "sub", "rsa-sha256")])
    # case does not matter, in the domain or in the field name
    tok = tok_of("upper")
    res = send(message(tok, "alice@EXAMPLE.Com").replace(b"From:", b"FROM:", 1), tok,
               "alice@example.com")
    raw = accepted(res, "FROM: alice@EXAMPLE.Com")
    check_signed(raw, "FROM: alice@EXAMPLE.Com",
                 [("example.com", "s1", "rsa-sha256"), ("example.com", "e1", "ed25519-sha256")])
    # two From fields: no single author domain to choose keys by
    tok = tok_of("twofrom")
    res = send(message(tok, "alice@example.com", extra=["From: <mallory@example.org>"]), tok,
               "alice@example.com")
    raw = accepted(res, "two From fields")
    check_eq("two From fields: not signed", signatures(raw), [])
    check_log(res, "two From fields", sign="none")
    # not a subdomain: notexample.com
    outbound("notexample.com", "From notexample.com (no dot before example.com)", want=[],
             sign_field="none")
    # the envelope sender does not choose the key: the From header does
    tok = tok_of("envdiff")
    res = send(message(tok, "alice@example.org"), tok, "bounce@unlisted.example")
    raw = accepted(res, "MAIL FROM unlisted.example, From example.org")
    check_signed(raw, "MAIL FROM unlisted.example, From example.org",
                 [("example.org", "o1", "rsa-sha256")])
    # "*": signs anything without a more specific entry
    k = keygen("example.org", "any", "rsa")
    publish({k["txt_name"]: [("TXT", k["txt_value"])]})
    mark = ag().log_mark()
    star = sign_add("example.org", "any", k["key_file"], "--match", "*")
    try:
        table_reloaded(mark)
        outbound("unlisted.example", "'*' entry: From unlisted.example",
                 want=[("example.org", "any", "rsa-sha256")])
        outbound("example.com", "'*' entry: From example.com keeps its own keys",
                 want=[("example.com", "s1", "rsa-sha256"),
                       ("example.com", "e1", "ed25519-sha256")])
        outbound("deep.sub.example.com", "'*' entry: From deep.sub.example.com keeps .example.com",
                 want=[("example.com", "sub", "rsa-sha256")])
    finally:
        mark = ag().log_mark()
        sign_del(star, "('*')")
        table_reloaded(mark)
    outbound("unlisted.example", "'*' deleted: unsigned again", want=[], sign_field="none")
    # DKIMSign no: outbound unsigned, no sign= field
    reconfigure(DKIMSign="no")
    try:
        tok = tok_of("signoff")
        res = send(message(tok, "alice@example.com"), tok, "alice@example.com")
        raw = accepted(res, "DKIMSign no")
        check_eq("DKIMSign no: not signed", signatures(raw), [])
        check_log(res, "DKIMSign no", sign=None)
    finally:
        ag().settings.pop("DKIMSign", None)
        reconfigure()


# ---------------------------------------------------------------------------
# 6. rollover under traffic


def roll_traffic(tag, switch, n_msgs=40, period=0.2):
    """Send N_MSGS messages From roll.example.net, one every PERIOD
    seconds, from a thread; SWITCH() runs 2 s in.  The results."""
    results = [None] * n_msgs

    def sender():
        for i in range(n_msgs):
            t0 = time.monotonic()
            tok = tok_of("%s%d" % (tag, i))
            try:
                results[i] = send(message(tok, "alice@roll.example.net"), tok,
                                  "alice@roll.example.net", wait=False)
            except Exception as e:      # reported below
                r = Result()
                r.tok, r.stage, r.final = tok, "exception", repr(e)
                results[i] = r
            time.sleep(max(0.0, period - (time.monotonic() - t0)))

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    try:
        time.sleep(2.0)
        switch()
    finally:
        th.join(60)
    check("%s: the sender thread finished" % tag, not th.is_alive())
    bad_reply = [(i, r) for i, r in enumerate(results)
                 if r is None or not (r.stage == "eod" and (r.final or "").startswith("250"))]
    check("%s: all %d messages accepted" % (tag, n_msgs), not bad_reply, got=bad_reply[:5])
    return results


def roll_check(tag, results, old, new, both_ok):
    """Every message of RESULTS carries one valid RSA signature of
    roll.example.net: selector OLD, then NEW (both at once only when
    BOTH_OK, and only at the switch), none unsigned or bad; the log's
    sign= field says the same."""
    seq, problems, both = [], [], []
    for i, r in enumerate(results):
        if r is None or r.stage != "eod":
            continue
        raw = wait_sink(r.tok, timeout=10)
        if raw is None:
            problems.append((i, "not at the sink"))
            continue
        ver = dkimpy_verify(raw)
        sels = [t.get("s") for t, _, _ in ver]
        if not ver:
            problems.append((i, "unsigned"))
        for t, ok, err in ver:
            if not ok or t.get("d") != "roll.example.net" or t.get("a") != "rsa-sha256":
                problems.append((i, "bad signature d=%s s=%s: %s" % (t.get("d"), t.get("s"),
                                                                     err)))
        if both_ok and len(ver) == 2 and sorted(sels) == sorted([old, new]):
            both.append(i)      # signed in the moment between sign add and sign del
        elif len(ver) != 1:
            problems.append((i, "%d signatures: %s" % (len(ver), sels)))
        d = decision(r.qid, timeout=2) if r.qid else None
        want_log = ",".join("roll.example.net/%s" % s for s in sels)
        if d is None or d.get("sign") != want_log:
            problems.append((i, "log sign=%s, signatures %s" % (d and d.get("sign"), sels)))
        seq.append("+".join(sorted(sels)))
    diag("%s: selectors in sending order: %s" % (tag, " ".join(seq)))
    check("%s: every message carries exactly one valid RSA signature of roll.example.net%s, "
          "none unsigned or bad" % (tag, " (%s and %s together only at the switch)" % (old, new)
                                    if both_ok else ""),
          not problems, got=problems[:10])
    if both_ok:
        diag("%s: %d message(s) signed by %s and %s while both were in the table: %s"
             % (tag, len(both), old, new, both))
    first_new = seq.index(new) if new in seq else None
    check("%s: %s before, %s after (no %s signature once %s alone has signed)"
          % (tag, old, new, old, new),
          first_new is not None and not any(old in x.split("+") for x in seq[first_new:]),
          got=seq)
    last_old = max(i for i, x in enumerate(seq) if x == old) if old in seq else -1
    check("%s: %s and %s signatures together only between the last %s and the first %s"
          % (tag, old, new, old, new),
          all(last_old < i < (first_new if first_new is not None else len(seq))
              for i, x in enumerate(seq) if "+" in x), got=seq)
    check("%s: several messages signed by each key (the switch happened under traffic)" % tag,
          seq.count(old) >= 3 and seq.count(new) >= 3, got=seq)
    errs = [ln for ln in ag().log_lines() if "sign=error" in ln or "cannot sign" in ln]
    check("%s: no sign=error in the log" % tag, not errs, got=errs[:5])


@suite.case(timeout=120)
def rollover_under_traffic():
    def add_then_del():
        k2 = keygen("roll.example.net", "s2", "rsa")
        S["keys"]["roll2_file"] = k2["key_file"]
        publish({k2["txt_name"]: [("TXT", k2["txt_value"])]})    # s1 stays published
        mark = ag().log_mark()
        new_id = sign_add("roll.example.net", "s2", k2["key_file"])
        sign_del(S["ids"]["roll1"], "(s1)")
        t_switch = time.monotonic()
        S["ids"]["roll2"] = new_id
        del S["ids"]["roll1"]
        table_reloaded(mark)
        diag("rollover: table reloaded %.2fs after sign del" % (time.monotonic() - t_switch))

    # sign add and sign del are two commits: a reload may fall between
    # them, and the table then has both keys until the next reload
    # (PolicyCheckInterval plus the time a reload takes)
    roll_check("rollover", roll_traffic("roll", add_then_del), "s1", "s2", True)

    def replace():
        k3 = keygen("roll.example.net", "s3", "rsa")
        S["keys"]["roll3_file"] = k3["key_file"]
        publish({k3["txt_name"]: [("TXT", k3["txt_value"])]})    # s2 stays published
        mark = ag().log_mark()
        r = ctl("sign", "replace", S["ids"]["roll2"], "--selector", "s3", "--key",
                k3["key_file"])
        m = re.match(r"^\s*(\d+)\s*$", r.stdout or "")
        check("sign replace %s --selector s3: exit 0 and the new id" % S["ids"]["roll2"],
              r.returncode == 0 and m is not None, agtest.fmt_run(r), fatal=True)
        S["ids"]["roll3"] = m.group(1)
        del S["ids"]["roll2"]
        table_reloaded(mark)

    # sign replace is one transaction: never both keys, never neither
    roll_check("rollover by sign replace", roll_traffic("rollr", replace), "s2", "s3", False)
    r = ctl("key", "test", "roll.example.net", "s2", "--dir", S["keydir"])
    check("rollover: key test roll.example.net s2: the published record matches",
          r.returncode == 0 and "matches" in r.stdout, agtest.fmt_run(r))


@suite.case
def message_in_progress_keeps_its_snapshot():
    """MAIL and RCPT given, then the only entry for roll.example.net is
    deleted and its key file moved away; DATA afterwards: the message is
    signed with the table (and key) it started with.  The next message
    is not signed."""
    rid = S["ids"].get("roll3")
    check("the rollover left roll.example.net's s3 entry", rid is not None, fatal=True)
    key_file = S["keys"].get("roll3_file")
    tok = tok_of("inprogress")
    s = S["st"].pf.smtp(HELO, timeout=60)
    moved = key_file + ".moved"
    try:
        r = reply(s.docmd("XCLIENT ADDR=%s NAME=client.example HELO=%s LOGIN=%s" %
                          (OUT_ADDR, HELO, LOGIN)))
        check("XCLIENT accepted", r.startswith("220"), got=r, fatal=True)
        s.ehlo(HELO)
        r = reply(s.docmd("MAIL FROM:<alice@roll.example.net>"))
        check("MAIL accepted", r.startswith("250"), got=r, fatal=True)
        r = reply(s.docmd("RCPT TO:<bob@example.net>"))
        check("RCPT accepted", r.startswith("250"), got=r, fatal=True)
        mark = ag().log_mark()
        sign_del(rid, "(roll.example.net s3, while a message is in progress)")
        del S["ids"]["roll3"]
        os.rename(key_file, moved)
        table_reloaded(mark)
        try:
            r = reply(s.data(message(tok, "alice@roll.example.net")))
        except smtplib.SMTPDataError as e:
            r = reply((e.smtp_code, e.smtp_error))
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass
    res = Result()
    res.stage, res.final, res.tok = "eod", r, tok
    res.qid = agpostfix.queued_id(r)
    if r.startswith("250"):
        res.raw = wait_sink(tok)
    raw = accepted(res, "entry deleted during the transaction")
    check_signed(raw, "entry deleted during the transaction",
                 [("roll.example.net", "s3", "rsa-sha256")])
    check_log(res, "entry deleted during the transaction", sign="roll.example.net/s3")
    outbound("roll.example.net", "the next message, entry gone", want=[], sign_field="none")


def probe_signed(res, what, want):
    """A BUG PROBE: RES delivered and signed exactly as WANT (d, s, a),
    every signature verified by dkimpy, and the log's sign= field.  One
    check for the signatures and one for the log, so that a known bug
    shows as two clear lines."""
    raw = accepted(res, what)
    ver = dkimpy_verify(raw)
    got = [(t.get("d"), t.get("s"), t.get("a"), ok) for t, ok, _ in ver]
    check_eq("%s: signed (d, s, a, dkimpy verifies)" % what, got,
             [w + (True,) for w in want])
    d = decision(res.qid)
    check_eq("%s: log sign=" % what, d.get("sign") if d else None,
             ",".join("%s/%s" % (w[0], w[1]) for w in want),
             detail=d["line"] if d else None)


@suite.case
def idn_domains():
    """From domains in U-labels (UTF-8 header, RFC 6532) or A-labels, and
    signing table entries written with U-labels.  The daemon looks keys up
    by the A-label form of the From domain (session_sign.c from_domain()
    -> ag_domain_alabel), while `sign add` stores patterns and d= as
    given (ag_domain_normalize keeps U-labels)."""
    a_b = "b\u00fccher.example".encode("idna").decode()      # xn--bcher-kva.example
    a_m = "m\u00fcnchen.example".encode("idna").decode()     # xn--mnchen-3ya.example
    kb = keygen(a_b, "i1", "rsa")
    km = keygen(a_m, "i1", "rsa")
    publish({kb["txt_name"]: [("TXT", kb["txt_value"])],
             km["txt_name"]: [("TXT", km["txt_value"])]})
    mark = ag().log_mark()
    added = []
    try:
        # A-label d=, the pattern written as a U-label
        added.append(sign_add(a_b, "i1", kb["key_file"], "--match", "b\u00fccher.example"))
        # U-label d=, an A-label pattern that matches
        r = ctl("sign", "add", "--domain", "m\u00fcnchen.example", "--selector", "i1",
                "--key", km["key_file"], "--match", a_m)
        m_refused = r.returncode != 0
        if not m_refused:
            added.append(r.stdout.strip())
            S["nkeys"] += 1
        diag("sign add --domain m\u00fcnchen.example --match %s: exit %s %s" %
             (a_m, r.returncode, (r.stdout + r.stderr).strip()))
        table_reloaded(mark)
        lst = {str(e["id"]): e for e in sign_list()}
        diag("sign list: %r" % ([(lst[i]["match"], lst[i]["domain"]) for i in added],))
        for frm in ("b\u00fccher.example", a_b):
            tok = tok_of("idn")
            res = send(message(tok, "alice@%s" % frm), tok, "alice@%s" % a_b)
            probe_signed(res, "BUG PROBE: From alice@%s, entry --domain %s --match "
                         "b\u00fccher.example" % (frm, a_b), [(a_b, "i1", "rsa-sha256")])
        if m_refused:
            check("sign add --domain m\u00fcnchen.example (U-label d=): refused up front",
                  True)
        else:
            tok = tok_of("idnm")
            S["mark"] = ag().log_mark()
            res = send(message(tok, "alice@%s" % a_m), tok, "alice@%s" % a_m, wait=True)
            what = ("BUG PROBE: From alice@%s, entry --domain m\u00fcnchen.example --match %s "
                    "(accepted by sign add)" % (a_m, a_m))
            if res.final and res.final.startswith("250"):
                probe_signed(res, what, [(a_m, "i1", "rsa-sha256")])
            else:
                check("%s: signed d=%s, not refused at end of data" % (what, a_m), False,
                      got=res.final, detail="\n".join(ag().log_lines()[S["mark"]:][-3:]))
    finally:
        mark = ag().log_mark()
        for eid in added:
            sign_del(eid)
        table_reloaded(mark)


# ---------------------------------------------------------------------------
# 7. bad keys


def write_file(path, data, mode=0o600):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


@suite.case(timeout=90)
def bad_keys():
    spare = S["spare"]
    before = sign_list()
    good_pem = open(S["keys"]["rr"]["key_file"], "rb").read()
    ed_file = S["keys"]["ed_only"]["key_file"]
    missing = os.path.join(spare, "missing.key")
    open_key = os.path.join(spare, "open.key")
    write_file(open_key, good_pem, 0o644)
    garbage = os.path.join(spare, "garbage.key")
    write_file(garbage, b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n"
               b"-----END PRIVATE KEY-----\n")
    cases = [
        ("a missing file", missing, "rsa", r"missing\.key.*(no such file|does not exist)"),
        ("a 0644 key", open_key, "rsa", r"open\.key.*0644"),
        ("a garbage PEM", garbage, "rsa", r"garbage\.key"),
        ("an Ed25519 key with --algorithm rsa", ed_file, "rsa", r"(?i)ed25519.*rsa|type"),
    ]
    for what, path, alg, pat in cases:
        r = ctl("sign", "add", "--domain", "refused.example.net", "--selector", "z",
                "--key", path, "--algorithm", alg)
        check_eq("sign add with %s: exit 1" % what, r.returncode, 1, detail=agtest.fmt_run(r))
        check("sign add with %s: a message saying why on stderr" % what,
              re.search(pat, r.stderr, re.I | re.S) is not None,
              expected="/%s/" % pat, got=r.stderr)
        check("sign add with %s: no key material in the message" % what,
              "BEGIN" not in r.stdout + r.stderr, got=r.stderr)
    check_eq("refused keys: nothing inserted", [e["id"] for e in sign_list()],
             [e["id"] for e in before])
    # an RSA key with --algorithm ed25519
    r = ctl("sign", "add", "--domain", "refused.example.net", "--selector", "z",
            "--key", S["keys"]["rr"]["key_file"], "--algorithm", "ed25519")
    check_eq("sign add with an RSA key and --algorithm ed25519: exit 1", r.returncode, 1,
             detail=agtest.fmt_run(r))

    # break a key after it was added: chmod 0644, then SIGHUP
    bad_file = S["keys"]["bad"]["key_file"]
    bad_pem = open(bad_file, "rb").read()
    outbound("bad.example.net", "bad.example.net before the key breaks",
             want=[("bad.example.net", "b1", "rsa-sha256")])
    os.chmod(bad_file, 0o644)
    try:
        entry = [e for e in sign_list() if str(e["id"]) == S["ids"]["bad"]]
        check("sign list --json: the broken entry's key says the mode",
              entry and entry[0]["key"] != "ok" and "0644" in entry[0]["key"], got=entry)
        r = ctl("sign", "list")
        line = [ln for ln in r.stdout.splitlines() if ln.startswith(S["ids"]["bad"] + " ")]
        check("sign list: the entry shows UNUSABLE and the reason",
              line and "UNUSABLE" in line[0] and "0644" in line[0], got=r.stdout)
        mark = reconfigure()
        ln = ag().wait_log(r"signing key %s \(d=bad\.example\.net s=b1\)" % S["ids"]["bad"],
                           since=mark)
        check("the reload logs the unusable key", ln is not None,
              got="\n".join(ag().log_lines()[mark:]))
        tok = tok_of("bad644")
        S["mark"] = ag().log_mark()
        res = send(message(tok, "alice@bad.example.net"), tok, "alice@bad.example.net",
                   wait=False)
        check_eq("key mode 0644: end of data answered", res.final, TEMPFAIL_TEXT)
        ln = ag().wait_log(r"cannot sign: key d=bad\.example\.net s=b1: .*%s.*0644" %
                           re.escape(bad_file), since=S["mark"])
        check("key mode 0644: log 'cannot sign: key d=bad.example.net s=b1: ...FILE...0644...'",
              ln is not None, got="\n".join(ag().log_lines()[S["mark"]:]))
        check_log(res, "key mode 0644", sign="error", action="tempfail")
        # other domains still sign
        outbound("example.com", "example.com while bad.example.net's key is broken",
                 want=[("example.com", "s1", "rsa-sha256"),
                       ("example.com", "e1", "ed25519-sha256")])

        # garbage in the file (mode 0600), picked up by a table change
        write_file(bad_file, b"-----BEGIN RSA PRIVATE KEY-----\ngarbage\n"
                   b"-----END RSA PRIVATE KEY-----\n")
        mark = ag().log_mark()
        dummy = sign_add("dummy.example.net", "d1", S["keys"]["rr"]["key_file"])
        table_reloaded(mark)
        mark = ag().log_mark()
        sign_del(dummy, "(dummy)")
        table_reloaded(mark)
        r = ctl("sign", "list")
        line = [ln for ln in r.stdout.splitlines() if ln.startswith(S["ids"]["bad"] + " ")]
        check("garbage key: sign list shows UNUSABLE", line and "UNUSABLE" in line[0],
              got=r.stdout)
        tok = tok_of("badgarbage")
        S["mark"] = ag().log_mark()
        res = send(message(tok, "alice@bad.example.net"), tok, "alice@bad.example.net",
                   wait=False)
        check_eq("garbage key: end of data answered", res.final, TEMPFAIL_TEXT)
        ln = ag().wait_log(r"cannot sign: key d=bad\.example\.net s=b1: .*%s.*no usable" %
                           re.escape(bad_file), since=S["mark"])
        check("garbage key: log names the key, the file and the reason", ln is not None,
              got="\n".join(ag().log_lines()[S["mark"]:]))
        check_log(res, "garbage key", sign="error", action="tempfail")

        # On-SignError accept: unsigned, sign=error
        reconfigure(On_SignError="accept")
        tok = tok_of("badaccept")
        res = send(message(tok, "alice@bad.example.net"), tok, "alice@bad.example.net")
        raw = accepted(res, "On-SignError accept")
        check_eq("On-SignError accept: delivered unsigned", signatures(raw), [])
        check_log(res, "On-SignError accept", sign="error", action="accept")
    finally:
        write_file(bad_file, bad_pem)
        ag().settings.pop("On-SignError", None)
        reconfigure()
    outbound("bad.example.net", "bad.example.net after the key is repaired",
             want=[("bad.example.net", "b1", "rsa-sha256")])


# ---------------------------------------------------------------------------
# 8. key test; no key material anywhere


@suite.case
def key_test():
    for d, s in (("example.com", "s1"), ("example.com", "e1"), ("example.org", "o1")):
        r = ctl("key", "test", d, s, "--dir", S["keydir"])
        check("key test %s %s: exit 0, the published record matches" % (d, s),
              r.returncode == 0 and "matches" in r.stdout, agtest.fmt_run(r))
    r = ctl("key", "test", "example.com", "s1", "--dir", S["keydir"], "--json")
    try:
        j = json.loads(r.stdout)
    except ValueError:
        j = None
    check("key test --json: match true, result match",
          j is not None and j.get("match") is True and j.get("result") == "match",
          agtest.fmt_run(r))
    # controls: a key whose record is not published, a record of another key
    k = keygen("unpublished.example.net", "u1", "rsa")
    r = ctl("key", "test", "unpublished.example.net", "u1", "--dir", S["keydir"])
    check("key test of an unpublished key: exit 1, no record",
          r.returncode == 1 and "no TXT record" in r.stderr, agtest.fmt_run(r))
    # an existing key file is never overwritten without --force
    with open(k["key_file"], "rb") as f:
        pem = f.read()
    r = ctl("key", "generate", "--domain", "unpublished.example.net", "--selector", "u1",
            "--dir", S["keydir"])
    with open(k["key_file"], "rb") as f:
        same = f.read() == pem
    check("key generate over an existing key without --force: refused, the file unchanged",
          r.returncode != 0 and same, agtest.fmt_run(r))
    r = ctl("key", "test", "example.com", "s1", "--key", k["key_file"])
    check("key test with another key file: exit 1, another key",
          r.returncode == 1 and "another key" in r.stderr, agtest.fmt_run(r))


@suite.case
def no_key_material_in_logs():
    logs = {"authgate": ag().log_path, "postfix": S["st"].pf.maillog}
    pems = S.get("pems", [])
    check("key material known for %d keys" % len(pems), len(pems) >= len(ENTRIES))
    chunks = set()
    for pem in pems:
        for ln in pem.decode().splitlines():
            if ln and not ln.startswith("-----") and len(ln) >= 24:
                chunks.add(ln[:24])
    for name, path in logs.items():
        try:
            with open(path, "r", errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        check("%s log: no 'BEGIN' and no 'PRIVATE KEY'" % name,
              "BEGIN" not in text and "PRIVATE KEY" not in text,
              got=[ln for ln in text.splitlines() if "BEGIN" in ln or "PRIVATE" in ln][:5])
        leaked = [c for c in chunks if c in text]
        check("%s log: no line of any private key's base64" % name, not leaked,
              got=leaked[:3])
    check("authgate still running", ag().alive())


suite.run()
