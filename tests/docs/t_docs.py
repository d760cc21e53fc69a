#!/usr/bin/python3
"""What an administrator reads: the manual pages (mandoc -Tlint with style
warnings and groff -ww say nothing about any of them; authgatectl(8)
describes every verb that `authgatectl --help` lists), `authgatectl VERB
--help`, and the bash completion (packaging/bash-completion/authgatectl
offers every verb, sub-verb and option the help names), authgatectl's
exit codes (2 for bad usage, 1 for a missing database, one line on
standard error, for every verb) and --json (one JSON document from every
verb that prints a table or a record).  (That
authgate.conf(5) names every configuration keyword is
tests/unit/t_config.c's.)"""

import glob
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq  # noqa: E402

suite = agtest.Suite("documentation: man pages, --help, completion")
PAGES = sorted(glob.glob(os.path.join(agtest.SRCDIR, "man", "*.[0-9]")))


@suite.setup
def setup():
    agtest.require("mandoc")
    agtest.require("groff")
    check("the three pages are there", len(PAGES) == 3, got=PAGES, fatal=True)


@suite.case
def lint_clean():
    for page in PAGES:
        name = os.path.basename(page)
        r = agtest.run(["mandoc", "-Tlint", "-W", "style", page])
        check_eq("%s: mandoc -Tlint -W style says nothing" % name,
                 (r.stdout + r.stderr).strip(), "")
        r = agtest.run(["groff", "-ww", "-man", "-z", page])
        check_eq("%s: groff -ww says nothing" % name, r.stderr.strip(), "")


def help_verbs():
    """'rule add', 'counters reset', ... from authgatectl --help."""
    r = agtest.run([agtest.binpath("authgatectl"), "--help"])
    text = r.stdout + r.stderr
    verbs = []
    in_verbs = False
    for ln in text.splitlines():
        if ln.startswith("verbs:"):
            in_verbs = True
            continue
        if in_verbs and not ln.startswith("  "):
            break
        if not in_verbs or ln.startswith("   "):
            continue      # continuation lines of one verb's options
        for alt in ln.strip().split(" | "):
            words = [w for w in alt.split() if re.match(r"^[a-z][a-z-]*$", w)]
            if words and words[0] in ("rule", "counters", "sign", "key"):
                verbs.append(" ".join(words[:2]))
            elif words:
                verbs.append(words[0])
    return verbs


@suite.case
def every_verb_documented():
    verbs = help_verbs()
    check("authgatectl --help lists verbs", len(verbs) >= 15, got=verbs)
    r = agtest.run(["mandoc", "-Tascii", os.path.join(agtest.SRCDIR, "man", "authgatectl.8")])
    page = re.sub(r".\x08", "", r.stdout)
    # the COMMANDS section, where each verb has its entry
    m = re.search(r"^COMMANDS$(.*?)^[A-Z][A-Z ]+$", page, re.M | re.S)
    check("authgatectl(8) has a COMMANDS section", m is not None, fatal=True)
    commands = m.group(1)
    for v in verbs:
        check("authgatectl(8) COMMANDS describes %r" % v,
              re.search(r"^\s+(\S.*, )?" + re.escape(v) + r"\b", commands, re.M)
              is not None)



@suite.case
def every_verb_has_help():
    """authgatectl VERB --help: that verb's usage, exit 0, no config read
    (-c names a file that does not exist)."""
    ctl = agtest.binpath("authgatectl")
    tops = sorted(set(v.split()[0] for v in help_verbs()))
    check("verbs to ask", len(tops) >= 7, got=tops)
    for v in tops:
        r = agtest.run([ctl, "-c", "/nonexistent/authgate.conf", v, "--help"])
        check_eq("%s --help: exit 0" % v, r.returncode, 0, detail=agtest.fmt_run(r))
        lines = r.stdout.splitlines()
        check("%s --help: a usage line, then its entries" % v,
              len(lines) >= 3 and lines[0].startswith("usage:") and
              all(ln.startswith("  " + v) or ln.startswith("    ")
                  for ln in lines[1:-1]) and any(ln.startswith("  " + v) for ln in lines),
              got=r.stdout)
    r = agtest.run([ctl, "rule", "add", "--help"])
    check("rule add --help names --max-size", "--max-size" in r.stdout, got=r.stdout)
    r = agtest.run([ctl, "bogus", "--help"])
    check_eq("an unknown verb with --help: exit 2", r.returncode, 2, detail=agtest.fmt_run(r))


COMPLETION = os.path.join(agtest.SRCDIR, "packaging", "bash-completion", "authgatectl")


def complete(*words):
    """What the completion offers for `authgatectl WORDS...` (the last
    word is the one being completed)."""
    words = ["authgatectl"] + list(words)
    script = ('. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
              '_authgatectl; printf "%s\\n" "${COMPREPLY[@]}"')
    r = agtest.run(["bash", "-c", script, "bash", COMPLETION] + words)
    check_eq("completion of %r runs" % " ".join(words), r.returncode, 0,
             detail=agtest.fmt_run(r))
    return set(x for x in r.stdout.splitlines() if x)


def help_entries():
    """{'rule add': '...its usage text...', ...} from authgatectl --help."""
    r = agtest.run([agtest.binpath("authgatectl"), "--help"])
    entries, cur = {}, None
    in_verbs = False
    for ln in r.stdout.splitlines():
        if ln.startswith("verbs:"):
            in_verbs = True
            continue
        if in_verbs and not ln.startswith("  "):
            break
        if not in_verbs:
            continue
        if ln.startswith("   ") and cur:
            entries[cur] += " " + ln.strip()
            continue
        for alt in ln.strip().split(" | "):
            w = alt.split()
            cur = " ".join(w[:2]) if w[0] in ("rule", "counters", "sign", "key") else w[0]
            entries[cur] = alt
    return entries


@suite.case
def completion_offers_what_help_names():
    agtest.require("bash")
    check("bash -n accepts the completion script",
          agtest.run(["bash", "-n", COMPLETION]).returncode == 0)
    entries = help_entries()
    tops = set(v.split()[0] for v in entries)
    check_eq("verbs offered", complete(""), tops)
    for v in entries:
        w = v.split()
        if len(w) == 2:
            check("%s: sub-verb %s offered" % (w[0], w[1]), w[1] in complete(w[0], ""))
        opts = set(re.findall(r"(--[a-z][a-z-]*)", entries[v]))
        if opts:
            offered = complete(*(w + ["--"]))
            check("%s: every option of its help offered" % v, opts <= offered,
                  got=sorted(opts - offered))
    check_eq("--match values", complete("rule", "add", "--match", "sender-d"),
             {"sender-domain="})
    check_eq("--on-limit values", complete("rule", "add", "--on-limit", ""),
             {"tempfail", "reject", "tag"})
    check_eq("report --by values", complete("report", "--by", "s"),
             {"sender-domain", "sender", "sasl-user"})


# a sample call of each verb and sub-verb that is valid but for the database
SAMPLE = {
    "init": [], "rule add": ["--max-size", "1M"], "rule list": [], "rule show": ["1"],
    "rule del": ["1"], "rule enable": ["1"], "rule disable": ["1"],
    "check": ["--client-ip", "192.0.2.1", "--rcpt", "bob@example.net"],
    "counters list": [], "counters reset": ["k"],
    "sign add": ["--domain", "example.com", "--selector", "s1", "--key", "/nonexistent/k.pem"],
    "sign replace": ["1", "--selector", "s2", "--key", "/nonexistent/k.pem"],
    "sign list": [], "sign del": ["1"], "sign enable": ["1"], "sign disable": ["1"],
    "key generate": ["--domain", "example.com", "--selector", "s1", "--dir", "/nonexistent/keys"],
    "key list": ["--dir", "/nonexistent/keys"], "key test": ["example.com", "s1"],
    "dmarc-report": ["--domain", "example.com", "--since", "2026-01-01", "--until", "2026-01-02"],
    "report": [],
}


def ctl_run(tmp, *args):
    conf = os.path.join(tmp, "authgate.conf")
    with open(conf, "w") as f:
        f.write("ControlSocket %s\nDNSServer 127.0.0.1@9\n" % os.path.join(tmp, "none.ctl"))
    return agtest.run([agtest.binpath("authgatectl"), "-c", conf, "-d",
                       os.path.join(tmp, "db", "authgate.db")] + list(args))


@suite.case
def exit_codes_are_consistent():
    """Every verb: an unknown option is bad usage (2); a database that is
    not there is a runtime failure (1), except for init, which makes it,
    and the verbs that do not read it; either way one line on standard
    error starting 'authgatectl:' and nothing on standard output."""
    tmp = agtest.tmpdir("exit")
    key = os.path.join(tmp, "k.pem")
    r = agtest.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024",
                    "-out", key])
    check_eq("a key file for sign add", r.returncode, 0, detail=agtest.fmt_run(r))
    verbs = help_verbs()
    check_eq("a sample call for every verb of --help", sorted(set(verbs) - set(SAMPLE)), [])
    for v in verbs:
        w = v.split() + [key if a == "/nonexistent/k.pem" else a for a in SAMPLE.get(v, [])]
        r = ctl_run(tmp, *(w + ["--no-such-option"]))
        check_eq("%s --no-such-option: exit 2" % v, r.returncode, 2, detail=agtest.fmt_run(r))
        one = r.stderr.splitlines()
        check("%s --no-such-option: one line 'authgatectl: ...', nothing on stdout" % v,
              len(one) == 1 and one[0].startswith("authgatectl: ") and r.stdout == "",
              got=(r.stdout, r.stderr))
        if v in ("init", "key generate", "key list", "key test", "counters list",
                 "counters reset"):
            continue        # these do not need the database (init makes it)
        r = ctl_run(tmp, *w)
        check_eq("%s without a database: exit 1" % v, r.returncode, 1, detail=agtest.fmt_run(r))
        one = r.stderr.splitlines()
        check("%s without a database: one line naming it, nothing on stdout" % v,
              len(one) == 1 and one[0].startswith("authgatectl: ") and "authgate.db" in one[0]
              and r.stdout == "", got=(r.stdout, r.stderr))


@suite.case
def json_wherever_a_table_is_printed():
    """--json gives one JSON document for every verb that prints a table
    or a record (dmarc-report is XML by its RFC)."""
    import json
    tmp = agtest.tmpdir("json")
    os.makedirs(os.path.join(tmp, "db"), mode=0o700)
    for args in (["init"], ["rule", "add", "--max-size", "1M"], ["rule", "list"],
                 ["rule", "show", "1"], ["sign", "list"], ["key", "list", "--dir", tmp],
                 ["check", "--client-ip", "192.0.2.1", "--rcpt", "bob@example.net"],
                 ["report"], ["report", "--by", "client"]):
        r = ctl_run(tmp, "--json", *args)
        check_eq("--json %s: exit 0" % " ".join(args), r.returncode, 0, detail=agtest.fmt_run(r))
        try:
            json.loads(r.stdout)
            ok = True
        except ValueError as e:
            ok = e
        check("--json %s: one JSON document" % " ".join(args), ok is True,
              got=(ok, r.stdout[:500]))


suite.run()
