#!/usr/bin/python3
"""End to end, real Postfix -> authgate -> smtp-sink, DKIM: keys made at
test time (opendkim-genkey: RSA 1024 and 2048; Ed25519 with python3-nacl)
and served by a real unbound on loopback; messages signed at test time by
an independent implementation, dkimpy (its dkimsign program, and its
dkim module where dkimsign has no option: l=, a chosen h= list).

Every message goes through Postfix from a client presented with XCLIENT
ADDR=192.0.2.x (neither trusted nor authenticated), and what is checked
is what users see: the SMTP replies, the Authentication-Results header at
the sink (parsed with python3-authres and compared with the results
expected for each signature: result, header.d/i/s/a/b; reasons checked in
the raw text, since python3-authres 1.2.0 drops a quoted property value
that is not the last of its result) and the decision log line (dkim=).

Cases: simple/simple, relaxed/relaxed, relaxed/simple, RSA 1024 and 2048,
Ed25519, l=, two signatures, d= a subdomain, i= a subdomain; tampered
header and body (fail); revoked key and no key (permerror); a key lookup
that is never answered (temperror, within DKIMTimeout); the RFC 8463
Appendix A message (keys of tests/unit/dkim); forged
Authentication-Results (removed, ours on top; also 8,300 copies at once);
bad input: 200 signatures,
a 40 KB h=, header lines over 998 bytes, 1,000 header fields, a body
without its final CRLF."""

import base64
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

suite = agtest.Suite("e2e: DKIM through Postfix", case_timeout=60)
S = {}

AUTHSERV = "mx.test.invalid"
CLIENT = "192.0.2.10"
HELO = "client.example"
DKIMSIGN = "/usr/bin/dkimsign"
GENKEY = "/usr/sbin/opendkim-genkey"
UNIT_DKIM = os.path.join(agtest.SRCDIR, "tests", "unit", "dkim")
MAX_SIGS = 5
DKIM_TIMEOUT = 1500

BASE_CONF = {
    "TrustedNetworks": "127.0.0.0/8, ::1/128",
    "DKIMMaxSignatures": str(MAX_SIGS),
    "DKIMTimeout": "5000",
    "DNSTimeout": "1000",
    "AuthservIDStrip": "mx2.test.invalid",
}


# ---------------------------------------------------------------------------
# Keys and zone data


def genkey_rsa(bits, selector, keydir, domain="example.com"):
    """opendkim-genkey: (private key file, key record text)."""
    r = agtest.run([GENKEY, "-b", bits, "-d", domain, "-s", selector, "-D", keydir])
    check("opendkim-genkey -b %d -s %s" % (bits, selector), r.returncode == 0,
          agtest.fmt_run(r), fatal=True)
    with open(os.path.join(keydir, selector + ".txt")) as f:
        txt = f.read()
    record = "".join(re.findall(r'"([^"]*)"', txt))
    check("opendkim-genkey %s: a key record with p=" % selector, "p=MI" in record,
          got=txt, fatal=True)
    return os.path.join(keydir, selector + ".private"), record


def genkey_ed25519(keydir, name="ed"):
    """An Ed25519 key as dkimpy reads it (the base64 seed): (file, record)."""
    import nacl.signing
    sk = nacl.signing.SigningKey.generate()
    path = os.path.join(keydir, name + ".key")
    with open(path, "wb") as f:
        f.write(base64.b64encode(bytes(sk)) + b"\n")
    return path, "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(sk.verify_key)).decode()


def unit_zone_records(names):
    """TXT records of NAMES from tests/unit/dkim/zone.txt, each as its
    list of character-strings."""
    out = {}
    with open(os.path.join(UNIT_DKIM, "zone.txt")) as f:
        for ln in f:
            m = re.match(r"^(\S+)\.\s+\d+\s+IN\s+TXT\s+(.*)$", ln.strip())
            if m and m.group(1) in names:
                out.setdefault(m.group(1), []).append(("TXT", re.findall(r'"([^"]*)"',
                                                                          m.group(2))))
    return out


# ---------------------------------------------------------------------------
# Messages and signatures


def message(token, subject=None, extra=(), body=None, frm="Alice Example <alice@example.com>"):
    """An unsigned message (bytes, CRLF): folded and tabbed fields, trailing
    white space and empty lines at the end of the body, so that simple and
    relaxed canonicalization differ.  TOKEN is in the Message-ID."""
    hdr = [
        "From: %s" % frm,
        "To: Bob Example <bob@example.net>,\r\n\tCarol Example <carol@example.net>",
        "Subject: %s" % (subject or "DKIM test,\r\n  folded over two lines"),
        "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
        "Message-ID: <%s@example.com>" % token,
        "X-Tabbed:\tvalue after a tab",
    ] + list(extra)
    if body is None:
        body = (b"Hello Bob,  \r\n\r\nthis body has trailing white space\t \r\n"
                b"and  doubled   spaces.\r\n\r\n\r\n")
    return ("\r\n".join(hdr) + "\r\n\r\n").encode() + body


def dkimsign(msg, selector, domain, keyfile, hcanon=None, bcanon=None, signalg=None,
             identity=None):
    """dkimpy's dkimsign program over MSG: the signed message (signature on
    top).  /usr/bin/dkimsign is a wrapper that calls dkim.dkimsign.main();
    that main() is run here in-process, with its argv, stdin and stdout
    given to it, since a new python3 per message costs 0.6 s (importing
    dkim pulls in dnspython and httpx)."""
    import io
    import dkim.dkimsign
    argv = []
    if hcanon:
        argv += ["--hcanon", hcanon]
    if bcanon:
        argv += ["--bcanon", bcanon]
    if signalg:
        argv += ["--signalg", signalg]
    if identity:
        argv += ["--identity", identity]
    argv += [selector, domain, keyfile]
    out, err = io.BytesIO(), io.StringIO()
    saved = sys.argv, sys.stdin, sys.stdout, sys.stderr
    try:
        sys.argv = [DKIMSIGN] + argv
        sys.stdin = io.TextIOWrapper(io.BytesIO(msg))
        sys.stdout = io.TextIOWrapper(out)     # main() detaches it: writes go to OUT
        sys.stderr = err
        rc = dkim.dkimsign.main()
    except SystemExit as e:
        rc = e.code
    finally:
        sys.argv, sys.stdin, sys.stdout, sys.stderr = saved
    signed = out.getvalue()
    check("dkimsign %s" % " ".join(argv[:-1]), not rc and signed.startswith(b"DKIM-Signature:"),
          got="exit %r: %s" % (rc, err.getvalue()), fatal=True)
    return signed


def dkim_module_sign(msg, selector, domain, keyfile, **kw):
    """dkimpy's dkim.sign (for what dkimsign has no option for): the
    signature field prepended to MSG."""
    import dkim
    with open(keyfile, "rb") as f:
        key = f.read()
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key, linesep=b"\r\n", **kw)
    return sig + msg


def dkimverify(msg):
    """dkimpy's own verdict on MSG (its first signature), with DNS answered
    from our zone data: True/False."""
    import dkim
    zones = S["zones_flat"]

    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        v = zones.get(n.rstrip(".").lower())
        return v.encode() if v else None
    try:
        return dkim.verify(msg, dnsfunc=dnsfunc)
    except Exception:
        return False


def signatures(msg):
    """The DKIM-Signature fields of MSG in order, each as {tag: value}
    (white space removed from b=)."""
    out = []
    for name, value in agtest.header_fields(msg.decode("utf-8", "replace")):
        if name.lower() != "dkim-signature":
            continue
        tags = {}
        for part in value.split(";"):
            if "=" in part:
                k, v = part.split("=", 1)
                tags[k.strip()] = re.sub(r"\s+", "", v) if k.strip() in ("b", "bh", "h") \
                    else v.strip()
        out.append(tags)
    return out


def want_from_sig(tags, result, reason=None):
    """The result expected for the signature TAGS: (result, props, reason)."""
    props = {"header.d": tags["d"], "header.s": tags["s"], "header.a": tags["a"],
             "header.b": tags["b"][:8], "header.i": tags.get("i") or "@" + tags["d"]}
    return (result, props, reason)


# ---------------------------------------------------------------------------
# Through Postfix


class Result:
    stage = None
    final = None
    secs = None
    msg = None

    def __repr__(self):
        return "<stage=%s final=%r (%.2fs)>" % (self.stage, self.final, self.secs or 0)


def send(msg, sender="alice@example.com", addr=CLIENT, token=None, wait_sink=True):
    """MSG through Postfix from ADDR (XCLIENT); end-of-data timed; the
    dump at the sink (found by TOKEN) when accepted."""
    st = S["st"]
    res = Result()
    s = st.pf.smtp(HELO, timeout=120)
    try:
        r = reply(s.docmd("XCLIENT ADDR=%s NAME=client.example HELO=%s" % (addr, HELO)))
        check("XCLIENT %s accepted (220)" % addr, r.startswith("220"), got=r, fatal=True)
        s.ehlo(HELO)
        r = s.docmd("MAIL FROM:<%s>" % sender)
        if r[0] >= 400:
            res.stage, res.final = "mail", reply(r)
            return res
        r = s.docmd("RCPT TO:<bob@example.net>")
        if r[0] >= 400:
            res.stage, res.final = "rcpt", reply(r)
            return res
        t0 = time.monotonic()
        try:
            r = s.data(msg)
            res.stage, res.final = "eod", reply(r)
        except smtplib.SMTPDataError as e:
            res.stage, res.final = "data", reply((e.smtp_code, e.smtp_error))
        res.secs = time.monotonic() - t0
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass
    if wait_sink and res.stage == "eod" and res.final.startswith("250") and token:
        res.msg = st.sink.wait_for(token)
    return res


def accepted(res, what):
    check("%s: accepted (250 at end of data)" % what,
          res.stage == "eod" and res.final.startswith("250"),
          expected="250 2.0.0 Ok: queued as ...", got=res, fatal=True)
    check("%s: the message is at the sink" % what, res.msg is not None, fatal=True)
    return res.msg


def authres_headers(dump):
    """Every Authentication-Results at the sink: [(position, raw value)]."""
    return [(i, v) for i, (n, v) in enumerate(agtest.header_fields(dump))
            if n.lower() == "authentication-results"]


def ours(dump, what):
    """Our one Authentication-Results at the sink, parsed, and checked to
    sit above the message's own fields (Postfix's Received included).
    Returns (raw unfolded value, [(method, result, reason, props)])."""
    fields = agtest.header_fields(dump)
    mine = []
    for pos, value in authres_headers(dump):
        try:
            sid, res = agtest.authres_results(value)
        except Exception as e:
            check("%s: Authentication-Results parses (python3-authres)" % what, False,
                  got="%s: %r" % (value, e))
            continue
        if sid.lower() == AUTHSERV:
            mine.append((pos, value, res))
    if not check("%s: exactly one Authentication-Results from %s" % (what, AUTHSERV),
                 len(mine) == 1, got=[v[:200] for _, v in authres_headers(dump)]):
        return None, []
    pos, value, res = mine[0]
    names = [n.lower() for n, _ in fields]
    # the sink's own trace fields come first; then ours, then Postfix's
    # Received, then the message as it was sent
    pf_received = [i for i, (n, v) in enumerate(fields)
                   if n.lower() == "received" and "by %s (Postfix)" % AUTHSERV in v]
    check("%s: ours is above Postfix's Received and every field of the message" % what,
          pf_received and pos < pf_received[0] and pos < names.index("from"),
          got=names[:12])
    return value, res


def check_dkim(dump, want, what):
    """The dkim results of our header are WANT, in order: a list of
    (result, {prop: value}, reason substring or None)."""
    value, res = ours(dump, what)
    if value is None:
        return None
    got = [(r, p, rs) for m, r, rs, p in res if m == "dkim"]
    check_eq("%s: dkim results" % what, [g[0] for g in got], [w[0] for w in want],
             detail=value)
    for i, (g, w) in enumerate(zip(got, want)):
        label = "%s: result %d (%s)" % (what, i + 1, w[0])
        # python3-authres drops a quoted property value unless it is the
        # last of its result: compare what it returns, the rest in the text
        missing = {k: v for k, v in w[1].items() if k not in g[1]}
        shown = {k: g[1][k] for k in w[1] if k in g[1]}
        check_eq("%s: properties" % label, shown, {k: w[1][k] for k in shown}, detail=value)
        for k, v in missing.items():
            check("%s: %s=%s in the header text" % (label, k, v),
                  re.search(r"%s=(%s|\"%s\")(\s|;|$)" % (re.escape(k), re.escape(v),
                                                        re.escape(v)), value) is not None,
                  got=value)
        if w[0] == "pass":
            check("%s: no reason on a pass" % label, not g[2], got=g[2])
        elif w[2]:
            check("%s: reason mentions %r" % (label, w[2]),
                  bool(g[2]) and w[2].lower() in g[2].lower(), got=g[2], detail=value)
    return got


def decision(mark, timeout=5.0):
    """The last decision log line after MARK."""
    def find():
        ds = S["st"].ag.decisions(mark)
        return ds[-1] if ds else None
    return agtest.wait_until(find, timeout)


def check_log(mark, dkim_field, what):
    d = decision(mark)
    if check("%s: a decision log line" % what, d is not None,
             got="\n".join(S["st"].ag.log_lines()[mark:][-10:])):
        check_eq("%s: log dkim=" % what, d.get("dkim"), dkim_field, detail=d["line"])
    return d


def token(label):
    return S["st"].token(label)


def one(what, msg, tok, want, log=None):
    """MSG through Postfix: accepted, WANT at the sink, LOG as dkim=."""
    st = S["st"]
    mark = st.ag.log_mark()
    res = send(msg, token=tok)
    dump = accepted(res, what)
    got = check_dkim(dump, want, what)
    if log is not None:
        check_log(mark, log, what)
    return dump, got, res


# ---------------------------------------------------------------------------
# Setup


@suite.setup
def setup():
    agpostfix.require()
    agdns.require()
    for mod in ("authres", "dkim", "nacl"):
        agtest.require(mod, "module")
    agtest.require(GENKEY)
    agtest.require(DKIMSIGN)
    agtest.require_authgate()
    keydir = agtest.tmpdir("keys")
    K = S["keys"] = {}
    K["r1024"], rec1024 = genkey_rsa(1024, "r1024", keydir)
    K["r2048"], rec2048 = genkey_rsa(2048, "r2048", keydir)
    K["ed"], rec_ed = genkey_ed25519(keydir)
    zones = {
        "r1024._domainkey.example.com": [("TXT", rec1024)],
        "r2048._domainkey.example.com": [("TXT", rec2048)],
        "ed._domainkey.example.com": [("TXT", rec_ed)],
        "r2048._domainkey.mail.example.org": [("TXT", rec2048)],
        "revoked._domainkey.example.com": [("TXT", "v=DKIM1; k=rsa; p=")],
        # nokey._domainkey.example.com: no such name (NXDOMAIN)
    }
    zones.update(unit_zone_records({"brisbane._domainkey.football.example.com",
                                    "test._domainkey.football.example.com"}))
    check("RFC 8463 key records read from tests/unit/dkim/zone.txt",
          "brisbane._domainkey.football.example.com" in zones and
          "test._domainkey.football.example.com" in zones, got=sorted(zones), fatal=True)
    S["zones"] = zones
    S["zones_flat"] = {n: "".join(v[0][1]) if isinstance(v[0][1], list) else v[0][1]
                       for n, v in zones.items()}
    dns = S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), zones).start()
    S["conf"] = dict(BASE_CONF, DNSServer=dns.server)
    st = S["st"] = agpostfix.Stack(conf=S["conf"])
    r = st.ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    st.start()


def reconfigure(**settings):
    """authgate's configuration as the base plus SETTINGS, reloaded (SIGHUP)."""
    a = S["st"].ag
    for k in ("DKIMTimeout", "DNSTimeout", "DNSServer"):
        a.settings.pop(k, None)
    a.settings.update(S["conf"])
    a.settings.update(settings)
    a.write_config()
    mark = a.log_mark()
    a.reload()
    ln = a.wait_log(r"configuration reloaded", timeout=10, since=mark)
    check("authgate reloaded its configuration (SIGHUP)", ln is not None and a.alive(),
          got="\n".join(a.log_lines()[mark:]), fatal=True)


def key(name):
    return S["keys"][name]


# ---------------------------------------------------------------------------
# Signatures that pass


@suite.case
def unsigned_is_dkim_none():
    tok = token("unsigned")
    dump, got, _ = one("unsigned", message(tok), tok, [("none", {}, None)], log="none")


@suite.case
def canonicalizations_pass():
    for hc, bc, k in (("simple", "simple", "r2048"), ("relaxed", "relaxed", "r2048"),
                      ("relaxed", "simple", "r1024")):
        what = "%s/%s, RSA %s" % (hc, bc, k[1:])
        tok = token(hc[0] + bc[0])
        signed = dkimsign(message(tok), k, "example.com", key(k), hcanon=hc, bcanon=bc)
        tags = signatures(signed)[0]
        check_eq("%s: dkimsign wrote c=%s/%s" % (what, hc, bc), tags.get("c"),
                 "%s/%s" % (hc, bc))
        one(what, signed, tok, [want_from_sig(tags, "pass")], log="pass:d=example.com")


@suite.case
def ed25519_passes():
    tok = token("ed")
    signed = dkimsign(message(tok), "ed", "example.com", key("ed"), signalg="ed25519-sha256")
    tags = signatures(signed)[0]
    check_eq("Ed25519: a=ed25519-sha256", tags.get("a"), "ed25519-sha256")
    one("Ed25519 (RFC 8463)", signed, tok, [want_from_sig(tags, "pass")],
        log="pass:d=example.com")


@suite.case
def length_tag_with_text_appended_is_policy():
    """Text after the part l= covers is unsigned: dkim=policy, saying so
    (authgate.8), never a pass that would vouch for it."""
    tok = token("l")
    msg = message(tok)
    signed = dkim_module_sign(msg, "r2048", "example.com", key("r2048"), length=True,
                              canonicalize=(b"relaxed", b"relaxed"))
    tags = signatures(signed)[0]
    check("l=: the signature has l=%d" % (len(msg) - msg.index(b"\r\n\r\n") - 4),
          "l" in tags, got=tags)
    signed += b"Appended after signing: outside l=.\r\n"
    one("l= with text appended after signing", signed, tok,
        [want_from_sig(tags, "policy", "partly signed")], log="policy:d=example.com")


@suite.case
def two_signatures_rsa_and_ed25519():
    tok = token("two")
    signed = dkimsign(message(tok), "r2048", "example.com", key("r2048"),
                      hcanon="relaxed", bcanon="relaxed")
    signed = dkimsign(signed, "ed", "example.com", key("ed"), signalg="ed25519-sha256")
    sigs = signatures(signed)
    check_eq("two: Ed25519 on top, RSA below", [s["a"] for s in sigs],
             ["ed25519-sha256", "rsa-sha256"])
    one("RSA and Ed25519 signatures", signed, tok,
        [want_from_sig(sigs[0], "pass"), want_from_sig(sigs[1], "pass")],
        log="pass:d=example.com,pass:d=example.com")


@suite.case
def subdomains():
    tok = token("subd")
    signed = dkimsign(message(tok, frm="Alice <alice@mail.example.org>"), "r2048",
                      "mail.example.org", key("r2048"))
    tags = signatures(signed)[0]
    one("d= a subdomain (mail.example.org)", signed, tok, [want_from_sig(tags, "pass")],
        log="pass:d=mail.example.org")
    tok = token("subi")
    signed = dkimsign(message(tok), "r2048", "example.com", key("r2048"),
                      identity="alerts@news.example.com")
    tags = signatures(signed)[0]
    check_eq("i= in a subdomain: dkimsign wrote i=", tags.get("i"), "alerts@news.example.com")
    one("i= in a subdomain of d=", signed, tok, [want_from_sig(tags, "pass")],
        log="pass:d=example.com")


@suite.case
def rfc8463_appendix_a():
    with open(os.path.join(UNIT_DKIM, "rfc8463.eml"), "rb") as f:
        raw = f.read()
    tok = token("rfc8463")
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    # a field of our own below the signed ones (none of them signs it)
    msg = head + b"\r\nX-Token: " + tok.encode() + b"\r\n\r\n" + body
    sigs = signatures(msg)
    check_eq("RFC 8463 A.3: two signatures, Ed25519 first", [s["a"] for s in sigs],
             ["ed25519-sha256", "rsa-sha256"])
    one("RFC 8463 Appendix A", msg, tok,
        [want_from_sig(sigs[0], "pass"), want_from_sig(sigs[1], "pass")],
        log="pass:d=football.example.com,pass:d=football.example.com")


# ---------------------------------------------------------------------------
# Signatures that do not pass


@suite.case
def tampered_header_fails():
    tok = token("tamperh")
    signed = dkimsign(message(tok, subject="Pay 10 EUR"), "r2048", "example.com",
                      key("r2048"), hcanon="relaxed", bcanon="relaxed")
    tags = signatures(signed)[0]
    bad = signed.replace(b"Subject: Pay 10 EUR", b"Subject: Pay 1000 EUR")
    check("the Subject was changed after signing", bad != signed, fatal=True)
    check("dkimpy agrees: the tampered message does not verify", not dkimverify(bad))
    one("Subject changed after signing", bad, tok,
        [want_from_sig(tags, "fail", "signature did not verify")], log="fail:d=example.com")


@suite.case
def tampered_body_fails():
    tok = token("tamperb")
    signed = dkimsign(message(tok), "r2048", "example.com", key("r2048"),
                      hcanon="relaxed", bcanon="relaxed")
    tags = signatures(signed)[0]
    bad = signed.replace(b"Hello Bob,", b"Hello Eve,")
    check("the body was changed after signing", bad != signed, fatal=True)
    one("body changed after signing", bad, tok,
        [want_from_sig(tags, "fail", "body hash")], log="fail:d=example.com")


@suite.case
def revoked_key_permerror():
    tok = token("revoked")
    signed = dkimsign(message(tok), "revoked", "example.com", key("r2048"))
    tags = signatures(signed)[0]
    one("revoked key (empty p=)", signed, tok, [want_from_sig(tags, "permerror", "revoked")],
        log="permerror:d=example.com")


@suite.case
def missing_key_permerror():
    tok = token("nokey")
    signed = dkimsign(message(tok), "nokey", "example.com", key("r2048"))
    tags = signatures(signed)[0]
    a = agdns.query(S["dns"].port, "nokey._domainkey.example.com.", "TXT")
    check("the DNS server answers NXDOMAIN for nokey._domainkey.example.com",
          a is not None and a.header.rcode == 3, got=a)
    one("no key record (NXDOMAIN)", signed, tok, [want_from_sig(tags, "permerror", "no key")],
        log="permerror:d=example.com")


@suite.case
def key_lookup_never_answered_temperror():
    """The key server never answers for one name: temperror after
    DKIMTimeout (DNSTimeout is longer, so DKIMTimeout is what ends it), and
    Postfix's transaction completes long before its milter timeouts."""
    zones = dict(S["zones"])
    resp = agdns.Responder(agtest.tmpdir("resp"), zones,
                           modes={"_domainkey.example.net": "drop"}).start()
    pf_limit = int(S["st"].pf.settings["milter_content_timeout"].rstrip("s"))
    reconfigure(DNSServer=resp.server, DKIMTimeout=str(DKIM_TIMEOUT), DNSTimeout="5000")
    try:
        tok = token("ctl")
        signed = dkimsign(message(tok), "r2048", "example.com", key("r2048"))
        one("control: a key the same server answers", signed, tok,
            [want_from_sig(signatures(signed)[0], "pass")])
        tok = token("slow")
        signed = dkimsign(message(tok), "slow", "example.net", key("r2048"))
        tags = signatures(signed)[0]
        dump, got, res = one("key lookup never answered", signed, tok,
                             [want_from_sig(tags, "temperror", "timed out")],
                             log="temperror:d=example.net")
        secs = res.secs or -1
        diag("end of data answered after %.2fs" % secs)
        limit = DKIM_TIMEOUT / 1000.0 + 2.0
        check("the reply came in %.2fs < DKIMTimeout + 2 s = %.1fs" % (secs, limit),
              0 <= secs < limit)
        check("not before DKIMTimeout (%.1fs): the lookup was waited for" %
              (DKIM_TIMEOUT / 1000.0), secs >= DKIM_TIMEOUT / 1000.0 - 0.2,
              got="%.2fs" % secs)
        check("well inside Postfix's milter_content_timeout (%ds)" % pf_limit,
              0 <= secs < pf_limit - 10)
        names = [q[1] for q in resp.queries()]
        check("the key server was asked for slow._domainkey.example.net",
              "slow._domainkey.example.net." in names, got=names)
        # three signatures, three keys never answered: DKIMTimeout bounds
        # all the lookups of the message together, not each one
        tok = token("slow3")
        signed = message(tok)
        for sel in ("slow3", "slow2", "slow1"):
            signed = dkimsign(signed, sel, "example.net", key("r2048"))
        sigs = signatures(signed)
        dump, got, res = one("three keys never answered", signed, tok,
                             [want_from_sig(t, "temperror") for t in sigs],
                             log="temperror:d=example.net,temperror:d=example.net,"
                                 "temperror:d=example.net")
        secs = res.secs or -1
        diag("three keys never answered: end of data answered after %.2fs" % secs)
        check("three keys never answered: %.2fs < one DKIMTimeout + 2 s = %.1fs" %
              (secs, limit), 0 <= secs < limit)
    finally:
        reconfigure()
        resp.stop()


# ---------------------------------------------------------------------------
# Forged Authentication-Results through Postfix


@suite.case
def forged_authentication_results_removed():
    tok = token("forged")
    big = "mx.test.invalid; dkim=pass header.d=paypal.com\r\n " + "\r\n ".join(
        "x%d.y=%s" % (i, "z" * 90) for i in range(700))
    forged = [
        "Authentication-Results: mx.test.invalid; dkim=pass header.d=paypal.com",
        "Authentication-Results: (comment) MX.Test.Invalid;\r\n\tspf=pass smtp.mailfrom=paypal.com",
        "Authentication-Results: relay.example.net; spf=pass smtp.mailfrom=example.com",
        "Authentication-Results: mx2.test.invalid; dkim=pass header.d=paypal.com",
        "Authentication-Results: " + big,
    ]
    msg = message(tok, extra=forged)
    signed = dkimsign(msg, "r2048", "example.com", key("r2048"))
    tags = signatures(signed)[0]
    mark = S["st"].ag.log_mark()
    res = send(signed, token=tok)
    dump = accepted(res, "forged Authentication-Results")
    ars = authres_headers(dump)
    texts = [v for _, v in ars]
    check("forged: no copy claiming mx.test.invalid (any case) or mx2.test.invalid reaches "
          "the sink but ours",
          sum(1 for v in texts if re.match(r"(\(comment\)\s*)?mx2?\.test\.invalid;", v, re.I))
          == 1, got=[t[:120] for t in texts])
    check("forged: the 70 KB copy is gone", not any("x5.y=" in v for v in texts),
          got=[t[:120] for t in texts])
    check_eq("forged: the foreign one is kept, unchanged",
             [v for v in texts if v.startswith("relay.example.net")],
             ["relay.example.net; spf=pass smtp.mailfrom=example.com"])
    check_dkim(dump, [want_from_sig(tags, "pass")], "forged")
    pos_ours = [p for p, v in ars if v.lower().startswith(AUTHSERV)]
    pos_foreign = [p for p, v in ars if v.startswith("relay.example.net")]
    check("forged: ours above the foreign one", pos_ours and pos_foreign and
          pos_ours[0] < pos_foreign[0], got=ars)
    d = decision(mark)
    check_eq("forged: log forged_ar=4", d.get("forged_ar") if d else None, "4",
             detail=d["line"] if d else None)


@suite.case(timeout=60)
def forged_copies_by_the_thousand():
    """8,300 one-line forged copies: Postfix takes them all and passes them
    all to the milter.  None may reach the next hop."""
    n = 8300
    tok = token("forged8k")
    forged = ["Authentication-Results: mx.test.invalid; dkim=pass header.d=paypal.com n.n=%d" % i
              for i in range(n)]
    msg = message(tok, extra=forged)
    mark = S["st"].ag.log_mark()
    res = send(msg, token=tok)
    diag("%d forged copies: %s after %.2fs" % (n, res.final, res.secs or -1))
    dump = accepted(res, "%d forged copies" % n)
    left = [v for _, v in authres_headers(dump) if "paypal.com" in v]
    check("%d forged copies: none reaches the sink" % n, not left,
          got="%d forged copies at the sink, e.g. %s" % (len(left), left[:2]))
    check_dkim(dump, [("none", {}, None)], "%d forged copies" % n)
    d = decision(mark)
    check_eq("%d forged copies: log forged_ar=%d" % (n, n), d.get("forged_ar") if d else None,
             str(n))


# ---------------------------------------------------------------------------
# Bad input


@suite.case
def two_hundred_signatures():
    """200 valid Ed25519 signatures: answered quickly, the first
    DKIMMaxSignatures evaluated (pass), every other one neutral, not
    evaluated."""
    tok = token("200")
    msg = message(tok)
    sigs = b""
    for i in range(200):
        sigs = dkim_module_sign(msg, "ed", "example.com", key("ed"),
                                signature_algorithm=b"ed25519-sha256")[:-len(msg)] + sigs
    signed = sigs + msg
    diag("200 signatures: header block of %d bytes" % signed.index(b"\r\n\r\n"))
    mark = S["st"].ag.log_mark()
    res = send(signed, token=tok)
    diag("200 signatures: end of data answered after %.2fs" % (res.secs or -1))
    dump = accepted(res, "200 signatures")
    check("200 signatures: answered in under 3 s", res.secs is not None and res.secs < 3.0,
          got="%.2fs" % (res.secs or -1))
    value, parsed = ours(dump, "200 signatures")
    got = [(r, rs) for m, r, rs, p in parsed if m == "dkim"]
    diag("200 signatures: %d dkim results in Authentication-Results" % len(got))
    check_eq("200 signatures: the first %d pass" % MAX_SIGS, [g[0] for g in got[:MAX_SIGS]],
             ["pass"] * MAX_SIGS, detail=value[:2000] if value else None)
    rest = got[MAX_SIGS:]
    check("200 signatures: results past the %dth are reported" % MAX_SIGS, len(rest) >= 1,
          got=len(got))
    check("200 signatures: every one past the %dth is neutral, \"not evaluated\"" % MAX_SIGS,
          rest and all(r == "neutral" and rs and "not evaluated" in rs for r, rs in rest),
          got=rest[:5])
    check("200 signatures: at most 200 results", len(got) <= 200, got=len(got))
    d = decision(mark)
    if check("200 signatures: a decision log line", d is not None):
        check("200 signatures: log dkim= names the first five and +195",
              d.get("dkim", "").startswith("pass:d=example.com,") and
              d.get("dkim", "").endswith(",+195"), got=d["line"])


@suite.case
def h_tag_of_40kb():
    """Signatures whose h= is over 40 KB: 2,800 names of fields the message
    does not have (allowed: RFC 6376 5.4.2) and the real ones, first or
    last.  They are valid signatures (dkimpy verifies them): pass, or, if
    authgate declines to evaluate so long a list, a result that says so
    (neutral, policy or permerror with a reason) -- never fail, which would
    call a genuine signature broken; and quickly."""
    real = [b"from", b"to", b"subject", b"date", b"message-id"]
    absent = [b"x-absent-%05d" % i for i in range(2800)]
    for order, names in (("real fields first", real + absent),
                         ("real fields last", absent + real)):
        what = "40 KB h=, %s" % order
        tok = token("h40k")
        msg = message(tok)
        signed = dkim_module_sign(msg, "r2048", "example.com", key("r2048"),
                                  include_headers=names, canonicalize=(b"relaxed", b"relaxed"))
        tags = signatures(signed)[0]
        check("%s: the h= is over 40 KB" % what, len(tags["h"]) > 40000, got=len(tags["h"]))
        check("%s: dkimpy verifies the signature" % what, dkimverify(signed))
        mark = S["st"].ag.log_mark()
        res = send(signed, token=tok)
        diag("%s: end of data answered after %.2fs: %s" % (what, res.secs or -1, res.final))
        dump = accepted(res, what)
        check("%s: answered in under 3 s" % what, res.secs is not None and res.secs < 3.0,
              got="%.2fs" % (res.secs or -1))
        value, parsed = ours(dump, what)
        got = [(r, rs, p) for m, r, rs, p in parsed if m == "dkim"]
        diag("%s: %r" % (what, got))
        if not check("%s: one dkim result" % what, len(got) == 1, got=value):
            continue
        r, rs, p = got[0]
        check("%s: pass, or not evaluated with a reason (not fail)" % what,
              r == "pass" or (r in ("neutral", "policy", "permerror") and rs),
              expected="pass (dkimpy: valid)", got=(r, rs),
              detail="log: %s" % (decision(mark) or {}).get("line"))
        check_eq("%s: header.d and header.s" % what, (p.get("header.d"), p.get("header.s")),
                 ("example.com", "r2048"))


@suite.case
def header_lines_over_998_bytes():
    """A signed Subject of 1,500 bytes on one line (over RFC 5322's 998,
    under Postfix's line_length_limit of 2048) and one of 5,000 bytes
    (Postfix stores it in pieces): simple/simple signatures."""
    for n in (1500, 5000):
        tok = token("long%d" % n)
        subject = "long " + "x" * (n - len("Subject: long "))
        msg = message(tok, subject=subject)
        line = [ln for ln in msg.split(b"\r\n") if ln.startswith(b"Subject:")][0]
        check("the Subject line is %d bytes" % n, len(line) == n, got=len(line))
        signed = dkimsign(msg, "r2048", "example.com", key("r2048"), hcanon="simple",
                          bcanon="simple")
        tags = signatures(signed)[0]
        res = send(signed, token=tok)
        what = "a %d-byte header line" % n
        if res.stage == "eod" and res.final.startswith("250"):
            dump = accepted(res, what)
            check_dkim(dump, [want_from_sig(tags, "pass")], what)
        else:
            check("%s: Postfix refuses it with a 5xx (its own limit)" % what,
                  res.final and res.final.startswith("5"), got=res)


@suite.case
def thousand_header_fields():
    tok = token("1000")
    extra = ["X-Filler-%04d: value %d" % (i, i) for i in range(1000)]
    msg = message(tok, extra=extra)
    signed = dkimsign(msg, "r2048", "example.com", key("r2048"), hcanon="relaxed",
                      bcanon="relaxed")
    tags = signatures(signed)[0]
    res = send(signed, token=tok)
    diag("1,000 header fields: %s after %.2fs" % (res.final, res.secs or -1))
    what = "1,000 header fields"
    if res.stage == "eod" and res.final.startswith("250"):
        dump = accepted(res, what)
        check("1,000 header fields: answered in under 3 s", res.secs < 3.0,
              got="%.2fs" % res.secs)
        check_dkim(dump, [want_from_sig(tags, "pass")], what)
        check("1,000 header fields: all of them at the sink",
              len(re.findall(r"^X-Filler-\d{4}:", dump, re.M)) == 1000)
    else:
        check("%s: refused by Postfix with a 5xx (its own limit)" % what,
              res.final and res.final.startswith("5"), got=res)


@suite.case
def body_without_final_crlf():
    """Signed over a body whose last line has no CRLF; SMTP adds one.  RFC
    6376 3.4.3 and 3.4.4 add the CRLF too, so the signature holds."""
    for hc, bc in (("simple", "simple"), ("relaxed", "relaxed")):
        tok = token("nocrlf" + bc[0])
        msg = message(tok, body=b"first line\r\nlast line without CRLF")
        signed = dkimsign(msg, "r2048", "example.com", key("r2048"), hcanon=hc, bcanon=bc)
        check("%s: the signed message still ends without CRLF" % bc,
              signed.endswith(b"without CRLF"), got=signed[-30:])
        check("dkimpy verifies %s with the CRLF SMTP adds" % bc, dkimverify(signed + b"\r\n"))
        tags = signatures(signed)[0]
        one("body without final CRLF, %s/%s" % (hc, bc), signed, tok,
            [want_from_sig(tags, "pass")], log="pass:d=example.com")


@suite.case
def still_running():
    check("authgate still running after every case", S["st"].ag.alive())
    tok = token("last")
    signed = dkimsign(message(tok), "r2048", "example.com", key("r2048"))
    one("a last message", signed, tok, [want_from_sig(signatures(signed)[0], "pass")])


suite.run()
