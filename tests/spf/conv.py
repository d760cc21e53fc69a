#!/usr/bin/python3
"""conv.py - turn the RFC 7208 SPF test suite (YAML) into the line format
that tests/spf/conformance.c reads, so that the build needs no Python.

Run by hand when the suite changes, and commit the output:

    /usr/bin/python3 tests/spf/conv.py \
        /usr/share/doc/python3-spf/rfc7208-tests.yml.gz \
        > tests/spf/rfc7208-tests.txt

The suite is the openspf.org one (release 2014.04), as shipped by Debian's
python3-spf.  Its zone data is read the way its own driver (testspf.py)
reads it:
  - an SPF entry is also served as TXT, unless the name has a TXT entry
    ("TXT: NONE" is such an entry: it stops the copy and is no record);
  - TIMEOUT at a name makes every lookup of that exact name time out,
    except lookups of a type the name has records of listed before it;
  - strings are UTF-8 encoded; a TXT string list is one record of several
    character-strings (an empty list: see txt_rdata).

Output format (one item a line; fields separated by one space; a value is
the rest of the line):
    section NAME
    rr OWNER TYPE RDATA       RDATA in zone-file presentation form
    timeout OWNER TYPE...     lookups of OWNER time out except these types
    test NAME
    helo VALUE | host VALUE | mailfrom VALUE   (VALUE may be empty)
    result R [R...]           any of these is a pass
    explanation TEXT          expected explanation of a fail, if given
    spec REF
    end
Lines starting with '#' are comments.
"""
import gzip
import sys

import yaml

TYPES = ('A', 'AAAA', 'MX', 'PTR', 'TXT', 'SPF', 'CNAME')


def qname(name):
    """A domain name in presentation form, absolute: bytes outside
    letters, digits and "-_./:%*" become \\DDD."""
    out = []
    for b in name.rstrip('.').encode('utf-8'):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in '-_./:%*'):
            out.append(c)
        else:
            out.append('\\%03d' % b)
    return ''.join(out) + '.'


def txt_rdata(v):
    """RDATA of a TXT/SPF record: a string, or a list of strings.  A
    string longer than 255 bytes is split (DNS joins them back)."""
    if isinstance(v, str):
        v = [v]
    if not v:
        # A TXT record with no strings at all (the driver's "null text")
        # is not valid RDATA (RFC 1035 3.3.14: one or more strings), and
        # libunbound answers SERVFAIL for it: serve one empty string, the
        # nearest record DNS can carry, which is just as much not SPF.
        return '""'
    parts = []
    for s in v:
        b = s.encode('utf-8')
        if not b:
            parts.append('""')
        while b:
            parts.append(charstring(b[:255]))
            b = b[255:]
    return ' '.join(parts)


def charstring(b):
    """One <character-string> of bytes B, quoted, with \\DDD for anything
    but printable ASCII, and \\" \\\\ for the quote and the backslash."""
    out = ['"']
    for c in b:
        if c in (0x22, 0x5c):
            out.append('\\' + chr(c))
        elif 0x20 <= c < 0x7f:
            out.append(chr(c))
        else:
            out.append('\\%03d' % c)
    out.append('"')
    return ''.join(out)


def zone_lines(zonedata):
    """The rr and timeout lines of one section, as testspf.py sees it."""
    lines = []
    for owner, entries in zonedata.items():
        has_txt = any(isinstance(e, dict) and 'TXT' in e for e in entries)
        seen = []		# types listed before a TIMEOUT
        rrs = []
        timeout = None
        for e in entries:
            if e == 'TIMEOUT':
                if timeout is None:
                    timeout = list(seen)
                continue
            if not isinstance(e, dict) or len(e) != 1:
                raise SystemExit('%s: odd zone entry %r' % (owner, e))
            (t, v), = e.items()
            if t not in TYPES:
                raise SystemExit('%s: unknown type %s' % (owner, t))
            if v == 'TIMEOUT':
                raise SystemExit('%s: per-type TIMEOUT not handled' % owner)
            if t in ('TXT', 'SPF') and (v == 'NONE' or v == ['NONE']):
                continue
            seen.append(t)
            rrs.append((t, v))
        if not has_txt:
            # the driver serves SPF records as TXT too (appended, so
            # after any TIMEOUT: such a TXT lookup still times out)
            rrs += [('TXT', v) for t, v in rrs if t == 'SPF']
        if timeout is not None:
            # only the types listed before TIMEOUT answer; the rest time out
            rrs = [(t, v) for t, v in rrs if t in timeout]
        for t, v in rrs:
            if t in ('TXT', 'SPF'):
                data = txt_rdata(v)
            elif t == 'MX':
                data = '%d %s' % (v[0], qname(v[1]) if v[1] else '.')
            elif t in ('PTR', 'CNAME'):
                data = qname(v)
            else:
                data = str(v)
            lines.append('rr %s %s %s' % (qname(owner), t, data))
        if timeout is not None:
            lines.append(' '.join(['timeout', qname(owner)] +
                                  sorted(set(timeout))))
    return lines


def value(v):
    v = '' if v is None else str(v)
    if '\n' in v or v != v.strip(' '):
        raise SystemExit('value not representable: %r' % v)
    return v


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else \
        '/usr/share/doc/python3-spf/rfc7208-tests.yml.gz'
    opener = gzip.open if src.endswith('.gz') else open
    with opener(src, 'rb') as f:
        docs = list(yaml.safe_load_all(f))
    out = ['# RFC 7208 SPF test suite (openspf.org release 2014.04), from',
           '# python3-spf\'s rfc7208-tests.yml.  Generated by',
           '# tests/spf/conv.py: do not edit; see the format there.']
    ntests = 0
    for d in docs:
        out.append('')
        out.append('section ' + value(d['description']))
        out += zone_lines(d['zonedata'])
        for name, t in d['tests'].items():
            res = t['result']
            res = [res] if isinstance(res, str) else list(res)
            out.append('test ' + value(name))
            for k in ('helo', 'host', 'mailfrom'):
                out.append(('%s %s' % (k, value(t.get(k)))).rstrip(' '))
            out.append('result ' + ' '.join(value(r) for r in res))
            if 'explanation' in t:
                out.append('explanation ' + value(t['explanation']))
            if 'spec' in t:
                out.append('spec ' + value(t['spec']))
            out.append('end')
            ntests += 1
    out.append('')
    out.append('# %d sections, %d tests' % (len(docs), ntests))
    sys.stdout.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
