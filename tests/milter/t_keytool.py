#!/usr/bin/python3
"""`authgatectl key generate|list|test`: DKIM signing keys and their DNS
records, checked against OpenSSL's own tools and a real unbound on
loopback (tests/lib/agdns.py).

generate: RSA 2048 and Ed25519 keys written into a directory it makes
(mode 0700), each file mode 0600 and PKCS#8 PEM (`openssl pkey` reads it,
"BEGIN PRIVATE KEY"), no temporary file left; the TXT record printed has
the right name, strings of at most 255 bytes, and a p= equal to what
OpenSSL computes from the file (`openssl pkey -pubout -outform DER`,
base64; for Ed25519 the raw 32-byte key, the last 32 bytes of the DER
SubjectPublicKeyInfo); the private key appears nowhere in the output.
Refused: --bits 512 (RFC 8301) and other bad sizes (exit 2), an existing
file without --force (exit 1, file unchanged), bad domains and selectors
(exit 2).

list: both keys with their type and size, and a mode 0644 copy flagged
(the signer's loader refuses it).

test: the generated record published -> exit 0 "matches"; another key's
p= -> exit 1 "does not match"; no record, a revoked key (empty p=), no p=,
a k= of the other type -> exit 1 with the reason; the DNS server down
(DNSServer at a closed port) -> exit 1 with a DNS error, within the
DNSTimeout."""

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agdns  # noqa: E402
from agtest import check, check_eq, check_match  # noqa: E402

suite = agtest.Suite("authgatectl key generate/list/test", case_timeout=90, total_timeout=400)
S = {}

OPENSSL = "/usr/bin/openssl"
TXT_RE = re.compile(r'^(\S+)\. IN TXT \(((?:\s*"[^"]*")+)\s*\)\s*$', re.M)


def ctl(*args, ag=None):
    return (ag or S["ag"]).ctl(*args)


def openssl_p(path, ed25519):
    """The p= value OpenSSL computes for the private key in PATH: base64 of
    the DER SubjectPublicKeyInfo, for Ed25519 of its last 32 bytes (the
    raw key, RFC 8463 4.2); None when openssl fails."""
    r = subprocess.run([OPENSSL, "pkey", "-in", path, "-pubout", "-outform", "DER"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0 or not r.stdout:
        return None
    return base64.b64encode(r.stdout[-32:] if ed25519 else r.stdout).decode()


def parse_record(out):
    """(name, [strings]) of the TXT record in OUT, or (None, [])."""
    m = TXT_RE.search(out or "")
    if not m:
        return None, []
    return m.group(1), re.findall(r'"([^"]*)"', m.group(2))


def pem_body(path):
    """The base64 lines of the PEM file at PATH."""
    with open(path) as f:
        return [ln for ln in f.read().splitlines() if ln and not ln.startswith("-----")]


def no_secret(label, path, r):
    """Neither the PEM armour nor any line of the key is in R's output."""
    text = (r.stdout or "") + (r.stderr or "")
    leaked = [ln for ln in pem_body(path) if ln in text]
    check(label + ": private key not printed", "PRIVATE KEY" not in text and not leaked,
          expected="no private key material", got=text)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@suite.setup
def setup():
    agdns.require()
    agtest.require(OPENSSL)
    agtest.require_authgate()
    S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), {"example.com": [("A", "192.0.2.1")]}).start()
    S["ag"] = agtest.Authgate(agtest.tmpdir("ag"),
                              conf={"DNSServer": S["dns"].server, "DNSTimeout": "2000"})
    S["base"] = agtest.tmpdir("keys")
    S["dir"] = os.path.join(S["base"], "sub", "keys")    # made by generate


@suite.case
def generate_rsa_2048():
    d = S["dir"]
    r = ctl("key", "generate", "--domain", "Example.COM", "--selector", "sel1", "--dir", d)
    check_eq("exit 0", r.returncode, 0, agtest.fmt_run(r), fatal=True)
    path = os.path.join(d, "example.com.sel1.key")
    check("key file written", os.path.isfile(path), agtest.fmt_run(r), fatal=True)
    S["rsa"] = path
    check_eq("directory made with mode 0700", oct(mode_of(d)), oct(0o700))
    check_eq("key file mode 0600", oct(mode_of(path)), oct(0o600))
    check_eq("no other file in the directory", sorted(os.listdir(d)), ["example.com.sel1.key"])
    with open(path) as f:
        head = f.readline().strip()
    check_eq("PKCS#8 PEM", head, "-----BEGIN PRIVATE KEY-----")
    v = agtest.run([OPENSSL, "pkey", "-in", path, "-noout"])
    check_eq("openssl pkey reads it", v.returncode, 0, agtest.fmt_run(v))
    t = agtest.run([OPENSSL, "pkey", "-in", path, "-noout", "-text"])
    check_match("RSA of 2048 bits", r"Private-Key: \(2048 bit", t.stdout)
    name, strings = parse_record(r.stdout)
    check_eq("record name", name, "sel1._domainkey.example.com", r.stdout)
    check("strings of at most 255 bytes", strings and all(len(s.encode()) <= 255 for s in strings),
          got=strings)
    check("split in more than one string (a 2048-bit key is longer than 255)",
          len(strings) >= 2, got=strings)
    want = "v=DKIM1; k=rsa; p=" + (openssl_p(path, False) or "?")
    check_eq("p= is the public key OpenSSL computes", "".join(strings), want)
    S["rsa_record"] = strings
    check_match("prints the sign add command",
                r"^authgatectl sign add --domain example\.com --selector sel1 --key %s "
                r"--algorithm rsa-sha256$" % re.escape(path), r.stdout)
    no_secret("generate", path, r)


@suite.case
def generate_ed25519_json():
    d = S["dir"]
    r = ctl("--json", "key", "generate", "--domain", "example.com", "--selector", "ed1",
            "--algorithm", "ed25519", "--dir", d)
    check_eq("exit 0", r.returncode, 0, agtest.fmt_run(r), fatal=True)
    try:
        j = json.loads(r.stdout)
    except ValueError:
        j = None
    check("one JSON object", isinstance(j, dict), got=r.stdout, fatal=True)
    path = os.path.join(d, "example.com.ed1.key")
    S["ed"] = path
    want = {"domain": "example.com", "selector": "ed1", "algorithm": "ed25519", "bits": 256,
            "key_file": path, "txt_name": "ed1._domainkey.example.com"}
    check_eq("members", {k: j.get(k) for k in want}, want)
    check_eq("key file mode 0600", oct(mode_of(path)), oct(0o600))
    with open(path) as f:
        check_eq("PKCS#8 PEM", f.readline().strip(), "-----BEGIN PRIVATE KEY-----")
    t = agtest.run([OPENSSL, "pkey", "-in", path, "-noout", "-text"])
    check_match("openssl sees an Ed25519 key", r"ED25519 Private-Key", t.stdout)
    p = openssl_p(path, True)
    check_eq("txt_value p= is the raw 32-byte key", j.get("txt_value"),
             "v=DKIM1; k=ed25519; p=%s" % p)
    check_eq("p= decodes to 32 bytes", len(base64.b64decode(p or "")), 32)
    S["ed_value"] = j.get("txt_value")
    no_secret("generate --json", path, r)


@suite.case
def bad_sizes_refused():
    d = S["dir"]
    for args, what in ((["--bits", "512"], "RSA 512"), (["--bits", "1023"], "RSA 1023"),
                       (["--bits", "8192"], "RSA 8192"), (["--bits", "2k"], "--bits 2k"),
                       (["--algorithm", "ed25519", "--bits", "2048"], "Ed25519 with --bits"),
                       (["--algorithm", "dsa"], "DSA")):
        r = ctl("key", "generate", "--domain", "example.org", "--selector", "small",
                "--dir", d, *args)
        check_eq("%s: exit 2" % what, r.returncode, 2, agtest.fmt_run(r))
    r = ctl("key", "generate", "--domain", "example.org", "--selector", "small",
            "--dir", d, "--bits", "512")
    check_match("512: the message cites RFC 8301", r"RFC 8301", r.stderr)
    check("no file written", not os.path.exists(os.path.join(d, "example.org.small.key")),
          got=os.listdir(d))


@suite.case
def existing_key_kept_without_force():
    path = S["rsa"]
    with open(path, "rb") as f:
        before = f.read()
    r = ctl("key", "generate", "--domain", "example.com", "--selector", "sel1", "--dir", S["dir"])
    check_eq("exit 1", r.returncode, 1, agtest.fmt_run(r))
    check_match("says it exists and how to replace it", r"exists.*--force", r.stderr)
    with open(path, "rb") as f:
        check("file unchanged", f.read() == before)
    # --force on a copy, so that the published key stays the one of sel1
    copy = os.path.join(S["base"], "force")
    os.makedirs(copy)
    shutil.copy2(path, os.path.join(copy, "example.com.sel1.key"))
    r = ctl("key", "generate", "--domain", "example.com", "--selector", "sel1", "--dir", copy,
            "--force")
    check_eq("--force: exit 0", r.returncode, 0, agtest.fmt_run(r))
    newp = os.path.join(copy, "example.com.sel1.key")
    with open(newp, "rb") as f:
        check("--force: a new key", f.read() != before)
    check_eq("--force: mode 0600", oct(mode_of(newp)), oct(0o600))
    check_eq("--force: no temporary file left", os.listdir(copy), ["example.com.sel1.key"])


@suite.case
def bad_names_refused():
    d = S["dir"]
    cases = (("exa mple.com", "sel"), ("example", "sel"), ("-x.example.com", "sel"),
             ("ex_ample.com", "sel"), ("example.com", "bad_sel"), ("example.com", "-sel"),
             ("example.com", "sel-"), ("example.com", "a..b"), ("example.com", ".sel"),
             ("example.com", "x" * 64), ("example.com", ""), ("example.com", "s\u00e9l"),
             ("example.com", "sel/../x"))
    for dom, sel in cases:
        r = ctl("key", "generate", "--domain", dom, "--selector", sel, "--dir", d)
        check_eq("domain %r selector %r: exit 2" % (dom, sel), r.returncode, 2,
                 agtest.fmt_run(r))
    r = ctl("key", "generate", "--selector", "sel", "--dir", d)
    check_eq("no --domain: exit 2", r.returncode, 2, agtest.fmt_run(r))
    check_eq("only the two keys in the directory", sorted(os.listdir(d)),
             ["example.com.ed1.key", "example.com.sel1.key"])
    # a dotted selector is a selector (RFC 6376 3.1: sub-domain *("." sub-domain))
    other = os.path.join(S["base"], "dotted")
    r = ctl("key", "generate", "--domain", "example.net", "--selector", "2026.Mail",
            "--dir", other, "--bits", "1024")
    check_eq("dotted selector: exit 0", r.returncode, 0, agtest.fmt_run(r))
    name, _ = parse_record(r.stdout)
    check_eq("dotted selector: record name, lower case", name,
             "2026.mail._domainkey.example.net")
    check("dotted selector: file", os.path.isfile(os.path.join(other,
                                                               "example.net.2026.mail.key")),
          got=os.listdir(other) if os.path.isdir(other) else None)


@suite.case
def list_flags_open_modes():
    d = S["dir"]
    loose = os.path.join(d, "example.com.loose.key")
    shutil.copy(S["rsa"], loose)
    os.chmod(loose, 0o644)
    try:
        r = ctl("--json", "key", "list", "--dir", d)
        check_eq("--json: exit 0", r.returncode, 0, agtest.fmt_run(r))
        try:
            rows = {e["file"]: e for e in json.loads(r.stdout)}
        except (ValueError, KeyError, TypeError):
            rows = {}
        check_eq("three files", sorted(rows), ["example.com.ed1.key", "example.com.loose.key",
                                               "example.com.sel1.key"], r.stdout)
        rsa = rows.get("example.com.sel1.key", {})
        check_eq("RSA key", (rsa.get("algorithm"), rsa.get("bits"), rsa.get("mode"),
                             rsa.get("status"), rsa.get("warning")),
                 ("rsa", 2048, "0600", "ok", None))
        ed = rows.get("example.com.ed1.key", {})
        check_eq("Ed25519 key", (ed.get("algorithm"), ed.get("bits"), ed.get("mode"),
                                 ed.get("status")), ("ed25519", 256, "0600", "ok"))
        lo = rows.get("example.com.loose.key", {})
        check_eq("0644 copy: mode", lo.get("mode"), "0644")
        check("0644 copy: flagged", bool(lo.get("warning")), got=lo)
        check_eq("0644 copy: the loader refuses it", lo.get("status"), "error", lo)
        check("0644 copy: the error names the mode",
              re.search(r"0?644|mode|permission|group|other", lo.get("error") or "") is not None,
              got=lo)
        t = ctl("key", "list", "--dir", d)
        check_eq("text: exit 0", t.returncode, 0, agtest.fmt_run(t))
        line = [ln for ln in t.stdout.splitlines() if ln.startswith("example.com.loose.key")]
        check("text: 0644 copy has a WARNING", line and "WARNING" in line[0], got=t.stdout)
        good = [ln for ln in t.stdout.splitlines() if ln.startswith("example.com.sel1.key")]
        check("text: RSA key ok without warning",
              good and re.search(r"\brsa\s+2048\s+0600\s+ok\s*$", good[0]) is not None,
              got=t.stdout)
        no_secret("list", S["rsa"], t)
    finally:
        os.unlink(loose)
    r = ctl("key", "list", "--dir", os.path.join(S["base"], "missing"))
    check_eq("missing directory: exit 1", r.returncode, 1, agtest.fmt_run(r))


@suite.case
def test_against_dns():
    # another RSA key, whose p= is published under a selector of example.com
    other_dir = os.path.join(S["base"], "other")
    r = ctl("--json", "key", "generate", "--domain", "example.org", "--selector", "sel1",
            "--dir", other_dir)
    check_eq("another key: exit 0", r.returncode, 0, agtest.fmt_run(r), fatal=True)
    other_value = json.loads(r.stdout)["txt_value"]
    rsa_value = "".join(S["rsa_record"])
    S["dns"].restart({
        "example.com": [("A", "192.0.2.1")],
        # exactly the strings generate printed
        "sel1._domainkey.example.com": [("TXT", S["rsa_record"])],
        "ed1._domainkey.example.com": [("TXT", S["ed_value"])],
        "other._domainkey.example.com": [("TXT", other_value)],
        "revoked._domainkey.example.com": [("TXT", "v=DKIM1; k=rsa; p=")],
        "nop._domainkey.example.com": [("TXT", "v=DKIM1; k=rsa")],
        "ktype._domainkey.example.com": [("TXT", rsa_value.replace("k=rsa", "k=ed25519"))],
        "folded._domainkey.example.com": [("TXT", rsa_value.replace("p=", "p = ")
                                           .replace("A", " A") + ";")],
        "two._domainkey.example.com": [("TXT", S["rsa_record"]), ("TXT", other_value)],
        "spf._domainkey.example.com": [("TXT", "v=spf1 -all")],
        "dkim2._domainkey.example.com": [("TXT", rsa_value.replace("DKIM1", "DKIM2"))],
    })
    key = S["rsa"]
    r = ctl("key", "test", "example.com", "sel1", "--dir", S["dir"])
    check_eq("published record: exit 0", r.returncode, 0, agtest.fmt_run(r))
    check_eq("published record: says it matches", r.stdout.strip(),
             "key example.com sel1: the published record matches %s" % key)
    no_secret("test", key, r)
    r = ctl("--json", "key", "test", "example.com", "ed1", "--dir", S["dir"])
    check_eq("Ed25519 record: exit 0", r.returncode, 0, agtest.fmt_run(r))
    try:
        j = json.loads(r.stdout)
    except ValueError:
        j = {}
    check_eq("Ed25519 record: --json", (j.get("match"), j.get("result"), j.get("algorithm"),
                                        j.get("txt_name")),
             (True, "match", "ed25519", "ed1._domainkey.example.com"), r.stdout)
    r = ctl("key", "test", "example.com", "folded", "--key", key)
    check_eq("FWS inside the tag-list and p=: exit 0", r.returncode, 0, agtest.fmt_run(r))

    for sel, result, pattern in (
            ("other", "different-key", r"does not match"),
            ("nosuch", "no-record", r"no TXT record at nosuch\._domainkey\.example\.com"),
            ("revoked", "revoked", r"revoked"),
            ("nop", "no-p", r"no p="),
            ("ktype", "k-mismatch", r"k=ed25519.*rsa key"),
            ("two", "several-records", r"2 TXT records"),
            ("spf", "bad-record", r"v=spf1 -all, not v=DKIM1"),
            ("dkim2", "bad-record", r"v=DKIM2, not v=DKIM1")):
        r = ctl("key", "test", "example.com", sel, "--key", key)
        check_eq("%s: exit 1" % sel, r.returncode, 1, agtest.fmt_run(r))
        check_match("%s: says why" % sel,
                    r"^authgatectl: key example\.com %s: .*%s" % (sel, pattern), r.stderr)
        j = ctl("--json", "key", "test", "example.com", sel, "--key", key)
        try:
            res = json.loads(j.stdout)
        except ValueError:
            res = {}
        check_eq("%s: --json result" % sel, (j.returncode, res.get("match"), res.get("result")),
                 (1, False, result), agtest.fmt_run(j))

    r = ctl("key", "test", "example.com", "sel1", "--key", os.path.join(S["base"], "nokey"))
    check_eq("missing key file: exit 1", r.returncode, 1, agtest.fmt_run(r))
    r = ctl("key", "test", "example.com")
    check_eq("no selector: exit 2", r.returncode, 2, agtest.fmt_run(r))
    r = ctl("key", "test", "example.com", "bad_sel")
    check_eq("bad selector: exit 2", r.returncode, 2, agtest.fmt_run(r))


@suite.case
def generate_for_userid():
    """Run as root with UserID set, the key (and a directory made for it)
    goes to that user: the daemon reads keys after dropping privileges."""
    import pwd
    if os.geteuid() != 0:
        raise agtest.Skip("needs root")
    nobody = pwd.getpwnam("nobody")
    ag = agtest.Authgate(agtest.tmpdir("uid"), conf={"DNSServer": S["dns"].server,
                                                     "UserID": "nobody"})
    d = os.path.join(S["base"], "uid", "keys")
    r = ctl("key", "generate", "--domain", "example.net", "--selector", "u1",
            "--algorithm", "ed25519", "--dir", d, ag=ag)
    check_eq("exit 0", r.returncode, 0, agtest.fmt_run(r), fatal=True)
    path = os.path.join(d, "example.net.u1.key")
    st = os.stat(path)
    check_eq("key file owned by UserID", (st.st_uid, st.st_gid),
             (nobody.pw_uid, nobody.pw_gid))
    check_eq("key file mode 0600", oct(stat.S_IMODE(st.st_mode)), oct(0o600))
    dst = os.stat(d)
    check_eq("directory owned by UserID, mode 0700",
             (dst.st_uid, oct(stat.S_IMODE(dst.st_mode))), (nobody.pw_uid, oct(0o700)))
    check_eq("the parent made stays root's", os.stat(os.path.dirname(d)).st_uid, 0)
    r = ctl("key", "list", "--dir", d, ag=ag)
    check_match("it loads", r"^example\.net\.u1\.key\s+ed25519\s+256\s+0600 ok$", r.stdout)


@suite.case
def test_dns_down():
    port = agtest.free_port()      # nothing listens there
    ag = agtest.Authgate(agtest.tmpdir("down"),
                         conf={"DNSServer": "127.0.0.1@%d" % port, "DNSTimeout": "800"})
    t0 = time.monotonic()
    r = ctl("key", "test", "example.com", "sel1", "--dir", S["dir"], ag=ag)
    took = time.monotonic() - t0
    check_eq("exit 1", r.returncode, 1, agtest.fmt_run(r))
    check_match("a DNS error", r"^authgatectl: key example\.com sel1: DNS lookup of "
                r"sel1\._domainkey\.example\.com failed", r.stderr)
    check("within a few seconds of DNSTimeout 800 ms", took < 10, got="%.1fs" % took)
    j = ctl("--json", "key", "test", "example.com", "sel1", "--dir", S["dir"], ag=ag)
    try:
        res = json.loads(j.stdout)
    except ValueError:
        res = {}
    check_eq("--json result", (j.returncode, res.get("result")), (1, "dns-error"),
             agtest.fmt_run(j))


def sign_table():
    r = ctl("sign", "list", "--json")
    check_eq("sign list --json: exit 0", r.returncode, 0, agtest.fmt_run(r), fatal=True)
    try:
        return {e["id"]: e for e in json.loads(r.stdout)}
    except (ValueError, KeyError, TypeError):
        check("sign list --json: a JSON array of entries", False, got=r.stdout, fatal=True)


@suite.case
def sign_replace_enable_disable():
    """sign replace ID: the old entry gone and the new one in its place in
    one transaction, with the old settings unless given; every refusal
    changes nothing.  sign disable/enable ID flip the entry."""
    r = ctl("key", "generate", "--domain", "example.com", "--selector", "sel2", "--dir", S["dir"])
    check_eq("second RSA key generated", r.returncode, 0, agtest.fmt_run(r), fatal=True)
    rsa2 = os.path.join(S["dir"], "example.com.sel2.key")
    r = ctl("init")
    check_eq("authgatectl init", r.returncode, 0, agtest.fmt_run(r), fatal=True)
    r = ctl("--json", "sign", "add", "--domain", "example.com", "--selector", "sel1", "--key",
            S["rsa"], "--match", ".example.com", "--canonicalization", "simple/relaxed",
            "--headers", "from:to:subject", "--expire", "7d")
    check_eq("sign add: exit 0", r.returncode, 0, agtest.fmt_run(r), fatal=True)
    old = json.loads(r.stdout)["id"]
    before = sign_table()

    r = ctl("--json", "sign", "replace", str(old), "--selector", "sel2", "--key", rsa2)
    check_eq("sign replace: exit 0", r.returncode, 0, agtest.fmt_run(r), fatal=True)
    j = json.loads(r.stdout)
    new = j.get("id")
    check("sign replace --json: the new id and the one replaced",
          isinstance(new, int) and new != old and j.get("replaced") == old, got=j)
    t = sign_table()
    check("sign replace: the old entry is gone", old not in t, got=t)
    e = t.get(new, {})
    want = {"match": ".example.com", "domain": "example.com", "selector": "sel2",
            "algorithm": "rsa-sha256", "key_file": rsa2, "canonicalization": "simple/relaxed",
            "headers": "from:to:subject", "expire": 604800, "enabled": True, "key": "ok"}
    check_eq("sign replace: the new entry keeps the old settings, with the new selector and key",
             {k: e.get(k) for k in want}, want)
    check_eq("sign replace: one entry, as before", len(t), len(before))

    for label, args, code, text in (
            ("a key of another type (the entry is RSA)",
             ("sign", "replace", str(new), "--selector", "ed1", "--key", S["ed"]), 1,
             r"not RSA|type"),
            ("no such entry", ("sign", "replace", "9999", "--selector", "sel2", "--key", rsa2), 1,
             r"no such signing key: 9999"),
            ("a bad id", ("sign", "replace", "x1", "--selector", "sel2", "--key", rsa2), 2,
             r"bad id 'x1'"),
            ("no --key", ("sign", "replace", str(new), "--selector", "sel3"), 2,
             r"needs --selector and --key"),
            ("a missing key file", ("sign", "replace", str(new), "--selector", "sel3", "--key",
                                    os.path.join(S["dir"], "nonesuch.key")), 1, r"no such file"),
            ("a bad selector", ("sign", "replace", str(new), "--selector", "a b", "--key", rsa2),
             2, r"bad selector"),
            ("a bad option", ("sign", "replace", str(new), "--selector", "s", "--key", rsa2,
                              "--bogus", "1"), 2, r"unknown option '--bogus'")):
        r = ctl(*args)
        check_eq("sign replace, %s: exit %d" % (label, code), r.returncode, code,
                 agtest.fmt_run(r))
        check_match("sign replace, %s: says why" % label, text, r.stderr)
        check_eq("sign replace, %s: the table is unchanged" % label, sign_table(), t)

    r = ctl("--json", "sign", "replace", str(new), "--selector", "ed1", "--key", S["ed"],
            "--algorithm", "ed25519", "--canonicalization", "relaxed/relaxed")
    check_eq("sign replace with another algorithm: exit 0", r.returncode, 0, agtest.fmt_run(r),
             fatal=True)
    ed_id = json.loads(r.stdout)["id"]
    e = sign_table().get(ed_id, {})
    check_eq("sign replace with another algorithm: the options given win",
             (e.get("algorithm"), e.get("selector"), e.get("canonicalization"), e.get("match")),
             ("ed25519-sha256", "ed1", "relaxed/relaxed", ".example.com"))

    r = ctl("sign", "disable", str(ed_id))
    check_eq("sign disable: exit 0", r.returncode, 0, agtest.fmt_run(r))
    check_eq("sign disable: the entry is off", sign_table().get(ed_id, {}).get("enabled"), False)
    r = ctl("sign", "list")
    check_match("sign list shows ENABLED no", r"(?m)^%d\s.*\sno\s" % ed_id, r.stdout)
    r = ctl("--json", "sign", "enable", str(ed_id))
    check_eq("sign enable --json", (r.returncode, r.stdout.strip()),
             (0, '{"id":%d,"done":"enable"}' % ed_id))
    check_eq("sign enable: the entry is on, its key usable",
             (sign_table().get(ed_id, {}).get("enabled"), sign_table().get(ed_id, {}).get("key")),
             (True, "ok"))
    for verb in ("enable", "disable", "del"):
        r = ctl("sign", verb, "9999")
        check_eq("sign %s 9999: exit 1" % verb, r.returncode, 1, agtest.fmt_run(r))
        check_match("sign %s 9999: no such key" % verb, r"no such signing key: 9999", r.stderr)
    r = ctl("sign", "del", str(ed_id))
    check_eq("sign del: exit 0, the table empty", (r.returncode, sign_table()), (0, {}))


suite.run()
