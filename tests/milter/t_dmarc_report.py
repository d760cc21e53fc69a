#!/usr/bin/python3
"""DMARC results kept in the history and `authgatectl dmarc-report`, over
the milter protocol: a real daemon with DMARCCheck yes, its DNS from a
real unbound on loopback (tests/lib/agdns.py), messages from two client
addresses for example.com (p=reject): passes by aligned SPF and by
aligned DKIM (an Ed25519 signature made at test time with dkimpy),
failures the policy rejects (550 at end of message), a failure from a
subdomain (the record of example.com applies through sp), and a pass for
example.org that example.com's report must not show.

The report must validate against tests/dmarc/rua.xsd (RFC 7489 Appendix
C) with xmllint and hold, parsed with xml.etree, the expected records:
one per identical content, with its count, disposition, alignment,
identifiers and SPF and DKIM results.  The rows are written by the
daemon's watcher, not by the sessions; writing them never makes a
policy reload.  A row still queued when the daemon stops gracefully is
written then, and every row is still there after a restart.  Bad
arguments exit 2; a domain without results exits 1 with nothing on
standard output.  Pruning by HistoryDays is unit-tested (t_history)."""

import base64
import calendar
import os
import sqlite3
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agdns  # noqa: E402
from agtest import check, check_eq, new_qid  # noqa: E402

suite = agtest.Suite("milter: DMARC history and aggregate reports", case_timeout=90,
                     total_timeout=400)
S = {}

XMLLINT = "/usr/bin/xmllint"
XSD = os.path.join(agtest.SRCDIR, "tests", "dmarc", "rua.xsd")
AUTHSERV = "mx.example.net"
IN_NET = "192.0.2.10"          # SPF-authorized for example.com
OFF_NET = "198.51.100.20"      # SPF-authorized for example.net only
HELO = "client.example.net"

BASE = {"SPFCheck": "yes", "DMARCCheck": "yes", "DKIMVerify": "yes",
        "AuthservID": AUTHSERV, "DNSTimeout": "2000", "HistoryDays": "30"}


def zones(dkim_record):
    return {
        "example.com": [("TXT", "v=spf1 ip4:%s -all" % IN_NET)],
        "_dmarc.example.com": [("TXT", "v=DMARC1; p=reject; "
                                       "rua=mailto:dmarc-reports@example.com")],
        "sel1._domainkey.example.com": [("TXT", dkim_record)],
        "mail.example.com": [("A", "192.0.2.1")],
        "example.net": [("TXT", "v=spf1 ip4:%s -all" % OFF_NET)],
        "client.example.net": [("A", OFF_NET)],
        "example.org": [("TXT", "v=spf1 ip4:%s -all" % IN_NET)],
        "_dmarc.example.org": [("TXT", "v=DMARC1; p=none")],
    }


@suite.setup
def setup():
    agdns.require()
    agtest.require(XMLLINT)
    for mod in ("dkim", "nacl"):
        agtest.require(mod, "module")
    agtest.require_authgate()
    import nacl.signing
    sk = nacl.signing.SigningKey.generate()
    S["key"] = base64.b64encode(bytes(sk))
    record = "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(sk.verify_key)).decode()
    S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), zones(record)).start()
    a = agtest.Authgate(agtest.tmpdir("ag"), conf=dict(BASE, DNSServer=S["dns"].server))
    r = a.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["ag"] = a
    S["t0"] = int(time.time()) - 5
    a.start()


# ---------------------------------------------------------------------------
# Messages


def message(frm, subject):
    """(headers, body) of a plain message from FRM."""
    return agtest.make_message(subject, sender=frm, rcpt="bob@example.net")


def signed(frm, subject):
    """(headers, body) of a message from FRM signed by example.com (sel1,
    Ed25519, relaxed/relaxed: the signature field goes over the milter
    unfolded)."""
    import dkim
    h, b = message(frm, subject)
    raw = agtest.message_bytes(h, b)
    sig = dkim.sign(raw, b"sel1", b"example.com", S["key"], signature_algorithm=b"ed25519-sha256",
                    canonicalize=(b"relaxed", b"relaxed"), linesep=b"\r\n")
    name, _, value = sig.decode().partition(":")
    value = agtest.unfold(value).strip("\r\n").strip()
    return [(name, value)] + h, b


def send(client, sender, hb, what):
    """One transaction over a fresh connection; returns the Transaction."""
    a = S["ag"]
    c = agtest.open_session(a, address=client, helo=HELO, what=what)
    h, b = hb
    try:
        t = c.transaction("<%s>" % sender, ["<bob@example.net>"], h, b, queue_id=new_qid())
    finally:
        c.close()
    check("%s: authgate still running" % what, a.alive(), fatal=True)
    return t


def accepted(t, what):
    check("%s: accepted" % what, t.accepted, expected="accept at end of message", got=t)


def rejected(t, what):
    r = t.final
    check("%s: 550 5.7.1 at end of message (DMARC p=reject)" % what,
          t.stage == "eom" and r is not None and r.kind == "reject" and
          getattr(r, "code", None) == "550", expected="550 5.7.1 at eom", got=t)


# ---------------------------------------------------------------------------
# Reports


def day(t):
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def report(*args, domain="example.com"):
    """authgatectl dmarc-report; returns the completed run."""
    return S["ag"].ctl("dmarc-report", "--domain", domain, *args)


def period():
    """--since/--until covering the whole test."""
    return ("--since", str(S["t0"]), "--until", str(int(time.time()) + 60))


def validate(xml_text, what):
    """xmllint --schema tests/dmarc/rua.xsd; returns the parsed tree."""
    path = os.path.join(agtest.tmpdir("xml"), "report.xml")
    with open(path, "w") as f:
        f.write(xml_text)
    r = agtest.run([XMLLINT, "--noout", "--schema", XSD, path])
    check("%s: the report validates against rua.xsd (RFC 7489 Appendix C)" % what,
          r.returncode == 0, agtest.fmt_run(r) + "\n" + xml_text[:3000])
    try:
        return ET.fromstring(xml_text)
    except ET.ParseError as e:
        check("%s: the report parses" % what, False, got="%s\n%s" % (e, xml_text[:3000]))
        raise agtest.Abort("unparseable report")


def records(root):
    """Every record as a dict; DKIM results as a tuple of
    (domain, selector, result)."""
    out = []
    for rec in root.findall("record"):
        row = rec.find("row")
        pe = row.find("policy_evaluated")
        ids = rec.find("identifiers")
        ar = rec.find("auth_results")
        spf = ar.find("spf")
        out.append({
            "ip": row.findtext("source_ip"),
            "count": int(row.findtext("count")),
            "disposition": pe.findtext("disposition"),
            "dkim": pe.findtext("dkim"),
            "spf": pe.findtext("spf"),
            "header_from": ids.findtext("header_from"),
            "envelope_from": ids.findtext("envelope_from"),
            "spf_auth": (spf.findtext("domain"), spf.findtext("scope"), spf.findtext("result")),
            "dkim_auth": tuple((d.findtext("domain"), d.findtext("selector"), d.findtext("result"))
                               for d in ar.findall("dkim")),
        })
    return out


def find(recs, **want):
    return [r for r in recs if all(r.get(k) == v for k, v in want.items())]


def wait_rows(n, timeout=10):
    """Wait until the database holds N DMARC results (the watcher writes
    them every PolicyCheckInterval second)."""
    def got():
        with sqlite3.connect(S["ag"].db, timeout=5) as con:
            return con.execute("SELECT count(*) FROM dmarc_result").fetchone()[0] >= n
    return agtest.wait_until(got, timeout, 0.1)


def db_rows():
    with sqlite3.connect(S["ag"].db, timeout=5) as con:
        return con.execute("SELECT count(*) FROM dmarc_result").fetchone()[0]


# ---------------------------------------------------------------------------
# Cases


@suite.case
def messages_pass_and_fail():
    a = S["ag"]
    S["mark"] = a.log_mark()
    for i in range(2):
        t = send(IN_NET, "alice@example.com", message("alice@example.com", "pass %d" % i),
                 "SPF-aligned pass %d" % i)
        accepted(t, "SPF-aligned pass %d" % i)
    for i in range(2):
        t = send(OFF_NET, "bounce@example.net", message("bob@example.com", "fail %d" % i),
                 "unaligned %d" % i)
        rejected(t, "unaligned failure %d" % i)
    t = send(OFF_NET, "bounce@example.net", signed("bob@example.com", "dkim"), "DKIM-aligned")
    accepted(t, "DKIM-aligned pass (SPF passes for example.net only)")
    t = send(OFF_NET, "bounce@example.net", message("carol@mail.example.com", "sub"), "subdomain")
    rejected(t, "failure from mail.example.com (example.com's record, sp=p=reject)")
    t = send(IN_NET, "alice@example.org", message("alice@example.org", "org"), "example.org")
    accepted(t, "example.org pass (p=none)")
    check("the 7 results reach the database (the watcher writes them)", wait_rows(7),
          got="%d rows" % db_rows())
    check_eq("exactly 7 rows", db_rows(), 7)


@suite.case
def report_example_com():
    span = period()     # once: the clock may turn a second between two calls
    r = report(*span)
    if not check("dmarc-report exits 0", r.returncode == 0, agtest.fmt_run(r)):
        return
    root = validate(r.stdout, "example.com")
    check_eq("the root element", root.tag, "feedback")
    md = root.find("report_metadata")
    check_eq("org_name defaults to AuthservID", md.findtext("org_name"), AUTHSERV)
    check_eq("email defaults to postmaster@AuthservID", md.findtext("email"),
             "postmaster@" + AUTHSERV)
    since, until = S["t0"], int(span[3])
    check_eq("report_id defaults to domain!begin!end", md.findtext("report_id"),
             "example.com!%d!%d" % (since, until - 1))
    check_eq("date_range begin is --since", md.findtext("date_range/begin"), str(since))
    check_eq("date_range end is the last second before --until",
             md.findtext("date_range/end"), str(until - 1))
    pp = root.find("policy_published")
    check_eq("policy_published", {k: pp.findtext(k) for k in
                                  ("domain", "adkim", "aspf", "p", "sp", "pct", "fo")},
             {"domain": "example.com", "adkim": "r", "aspf": "r", "p": "reject",
              "sp": "reject", "pct": "100", "fo": "0"})
    recs = records(root)
    check_eq("4 records (identical messages grouped)", len(recs), 4, detail=r.stdout)
    check_eq("messages counted: 6 (example.org's not among them)",
             sum(x["count"] for x in recs), 6)
    check("no record for example.org", not find(recs, header_from="example.org"), got=recs)
    p = find(recs, ip=IN_NET)
    check_eq("the SPF-aligned passes: one record, count 2", p and {k: p[0][k] for k in (
        "count", "disposition", "dkim", "spf", "header_from", "envelope_from", "spf_auth",
        "dkim_auth")},
        {"count": 2, "disposition": "none", "dkim": "fail", "spf": "pass",
         "header_from": "example.com", "envelope_from": "example.com",
         "spf_auth": ("example.com", "mfrom", "pass"), "dkim_auth": ()})
    f = find(recs, ip=OFF_NET, header_from="example.com", disposition="reject")
    check_eq("the rejected failures: one record, count 2", f and {k: f[0][k] for k in (
        "count", "dkim", "spf", "envelope_from", "spf_auth", "dkim_auth")},
        {"count": 2, "dkim": "fail", "spf": "fail", "envelope_from": "example.net",
         "spf_auth": ("example.net", "mfrom", "pass"), "dkim_auth": ()})
    d = find(recs, ip=OFF_NET, header_from="example.com", disposition="none")
    check_eq("the DKIM-aligned pass", d and {k: d[0][k] for k in (
        "count", "dkim", "spf", "dkim_auth", "spf_auth")},
        {"count": 1, "dkim": "pass", "spf": "fail",
         "dkim_auth": (("example.com", "sel1", "pass"),),
         "spf_auth": ("example.net", "mfrom", "pass")})
    s = find(recs, header_from="mail.example.com")
    check_eq("the subdomain's failure, under example.com's record", s and {k: s[0][k] for k in (
        "ip", "count", "disposition", "dkim", "spf")},
        {"ip": OFF_NET, "count": 1, "disposition": "reject", "dkim": "fail", "spf": "fail"})


@suite.case
def report_options_and_dates():
    today, tomorrow = day(time.time()), day(time.time() + 86400)
    r = report("--since", today, "--until", tomorrow, "--org-name", "Example <Mail> & Co",
               "--email", "dmarc@example.net", "--report-id", "r-1")
    if not check("YYYY-MM-DD bounds: exit 0", r.returncode == 0, agtest.fmt_run(r)):
        return
    root = validate(r.stdout, "options")
    md = root.find("report_metadata")
    check_eq("--org-name (escaped in the XML, read back)", md.findtext("org_name"),
             "Example <Mail> & Co")
    check("the markup is escaped", "Example &lt;Mail&gt; &amp; Co" in r.stdout, got=r.stdout[:600])
    check_eq("--email", md.findtext("email"), "dmarc@example.net")
    check_eq("--report-id", md.findtext("report_id"), "r-1")
    midnight = calendar.timegm(time.strptime(today, "%Y-%m-%d"))
    check_eq("begin is midnight UTC", md.findtext("date_range/begin"), str(midnight))
    check_eq("end is the second before the next midnight", md.findtext("date_range/end"),
             str(midnight + 86399))
    check_eq("the day's records", sum(x["count"] for x in records(root)), 6)
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(S["t0"]))
    r = report("--since", iso, "--until", tomorrow, domain="EXAMPLE.ORG")
    check("ISO 8601 bound and an upper-case domain: exit 0", r.returncode == 0, agtest.fmt_run(r))
    if r.returncode == 0:
        root = validate(r.stdout, "example.org")
        check_eq("example.org: its own record", root.findtext("policy_published/p"), "none")
        check_eq("example.org: one message", [(x["ip"], x["count"]) for x in records(root)],
                 [(IN_NET, 1)])


@suite.case
def report_errors():
    r = report(*period(), domain="example.net")
    check("no results for example.net: exit 1", r.returncode == 1, agtest.fmt_run(r))
    check("and nothing on standard output", (r.stdout or "") == "", got=r.stdout)
    check("and it says so", "no DMARC results for example.net between" in (r.stderr or ""),
          got=r.stderr)
    old = ("--since", "2001-01-01", "--until", "2001-01-02")
    r = report(*old)
    check("a period before any message: exit 1", r.returncode == 1, agtest.fmt_run(r))
    bad = [
        ("no --domain", ["dmarc-report", "--since", "0", "--until", "1"]),
        ("no --until", ["dmarc-report", "--domain", "example.com", "--since", "0"]),
        ("bad date", ["dmarc-report", "--domain", "example.com", "--since", "2026-13-01",
                      "--until", "2027-01-01"]),
        ("bad time", ["dmarc-report", "--domain", "example.com", "--since", "yesterday",
                      "--until", "1"]),
        ("until before since", ["dmarc-report", "--domain", "example.com", "--since", "100",
                                "--until", "100"]),
        ("bad domain", ["dmarc-report", "--domain", "exa mple.com", "--since", "0",
                        "--until", "1"]),
        ("unknown option", ["dmarc-report", "--domain", "example.com", "--since", "0",
                            "--until", "1", "--gzip"]),
        ("missing value", ["dmarc-report", "--domain"]),
    ]
    for what, args in bad:
        r = S["ag"].ctl(*args)
        check("%s: exit 2" % what, r.returncode == 2, agtest.fmt_run(r))
        check("%s: one line 'authgatectl: ...' and no output" % what,
              (r.stderr or "").startswith("authgatectl: ") and
              (r.stderr or "").count("\n") == 1 and not r.stdout, agtest.fmt_run(r))


@suite.case
def history_writes_make_no_reload():
    a = S["ag"]
    lines = [ln for ln in a.log_lines()[S["mark"]:] if "policy loaded" in ln]
    check("no policy reload while the results were written", not lines, got=lines)
    with sqlite3.connect(a.db, timeout=5) as con:
        trig = con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                           "AND tbl_name = 'dmarc_result'").fetchone()[0]
    check_eq("dmarc_result has no trigger", trig, 0)


@suite.case
def local_overrides_are_reasons():
    """A disposition lighter than the policy's says why: DMARCEnforce
    (capped at quarantine, tagged) and DryRun (logged, not done)."""
    a = agtest.Authgate(agtest.tmpdir("ag2"), name="authgate-ag2",
                        conf=dict(BASE, DNSServer=S["dns"].server, DMARCEnforce="quarantine",
                                  DMARCQuarantine="tag"))
    r = a.ctl("init")
    check("second instance: authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    main, S["ag"] = S["ag"], a
    try:
        a.start()
        t = send(OFF_NET, "bounce@example.net", message("bob@example.com", "capped"), "capped")
        accepted(t, "DMARCEnforce quarantine, tag: the failure is accepted (tagged)")
        a.stop()
        a.write_config(DMARCEnforce="reject", DryRun="yes")
        a.start()
        t = send(OFF_NET, "bounce@example.net", message("bob@example.com", "dry"), "dry run")
        accepted(t, "DryRun: the failure p=reject asks to reject is accepted")
        a.stop()
        r = report(*period())
        if not check("dmarc-report: exit 0", r.returncode == 0, agtest.fmt_run(r)):
            return
        root = validate(r.stdout, "overrides")
        got = sorted((rec.findtext("row/policy_evaluated/disposition"),
                      rec.findtext("row/policy_evaluated/reason/type"),
                      rec.findtext("row/policy_evaluated/reason/comment"))
                     for rec in root.findall("record"))
        check_eq("dispositions and reasons", got,
                 [("none", "local_policy", "dry run: policy not enforced"),
                  ("quarantine", "local_policy", "disposition capped by local policy")])
    finally:
        S["ag"] = main


@suite.case
def temperror_kept_unless_tempfailed():
    """_dmarc.example.com answers SERVFAIL: with On-DMARCTemperror accept
    the message is delivered and its temperror kept; answered 451 instead,
    it will come again and is not counted now."""
    dns = agdns.Responder(agtest.tmpdir("r1"), zones(""), name="responder-r1",
                          modes={"_dmarc.example.com": "servfail"}).start()
    a = agtest.Authgate(agtest.tmpdir("ag3"), name="authgate-ag3",
                        conf=dict(BASE, DNSServer=dns.server, DKIMVerify="no"))
    r = a.ctl("init")
    check("third instance: authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    main, S["ag"] = S["ag"], a
    try:
        a.start()
        t = send(IN_NET, "alice@example.com", message("alice@example.com", "t1"), "temperror")
        accepted(t, "On-DMARCTemperror accept: delivered")
        a.stop()
        a.write_config(On_DMARCTemperror="tempfail")
        a.start()
        t = send(IN_NET, "alice@example.com", message("alice@example.com", "t2"), "tempfail")
        check("On-DMARCTemperror tempfail: 451 at end of message",
              t.stage == "eom" and t.final.kind == "tempfail", got=t)
        a.stop()
        check_eq("one row: the tempfailed message is not kept", db_rows(), 1)
        r = report(*period())
        if not check("dmarc-report: exit 0", r.returncode == 0, agtest.fmt_run(r)):
            return
        root = validate(r.stdout, "temperror")
        check("no record found: said in report_metadata/error",
              "no DMARC policy record" in (root.findtext("report_metadata/error") or ""),
              got=r.stdout[:800])
        check_eq("the record", [(x["ip"], x["count"], x["disposition"], x["spf_auth"])
                                for x in records(root)],
                 [(IN_NET, 1, "none", ("example.com", "mfrom", "pass"))])
    finally:
        S["ag"] = main
        dns.stop()


@suite.case
def kept_across_restart():
    a = S["ag"]
    # the watcher now sleeps an hour: a row can only be written at the stop
    a.stop()
    a.write_config(PolicyCheckInterval="3600", RateCheckpointInterval="3600")
    a.start()
    t = send(IN_NET, "alice@example.com", message("alice@example.com", "late"), "before stop")
    accepted(t, "a pass just before the stop")
    time.sleep(0.5)
    check_eq("still queued (sessions never write; the watcher sleeps)", db_rows(), 7)
    rc = a.stop()
    check_eq("graceful stop: exit status 0", rc, 0)
    check_eq("written at the graceful stop", db_rows(), 8)
    a.write_config(PolicyCheckInterval="1", RateCheckpointInterval="30")
    a.start()
    r = report(*period())
    if not check("after the restart: exit 0", r.returncode == 0, agtest.fmt_run(r)):
        return
    recs = records(validate(r.stdout, "after restart"))
    check_eq("every result is still there (7 for example.com)", sum(x["count"] for x in recs), 7)
    check_eq("the SPF-aligned passes now count 3", [x["count"] for x in find(recs, ip=IN_NET)],
             [3])


suite.run()
