#!/usr/bin/python3
"""What an administrator reads: the manual pages (mandoc -Tlint with style
warnings and groff -ww say nothing about any of them; authgatectl(8)
describes every verb that `authgatectl --help` lists), `authgatectl VERB
--help`, and the bash completion (packaging/bash-completion/authgatectl
offers every verb, sub-verb and option the help names).  (That
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


suite.run()
