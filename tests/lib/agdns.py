"""agdns: DNS servers for authgate's integration tests, on loopback only.

    zones = {
        "example.org": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
                        ("A", "192.0.2.1"), ("MX", "10 mx.example.org.")],
        "mx.example.org": [("A", "192.0.2.25")],
    }
    dns = Unbound(agtest.tmpdir("dns"), zones).start()
    ag = agtest.Authgate(dir, conf={"SPFCheck": "yes", "DNSServer": dns.server})
    ...
    dns.restart({...new zones...})       # new data, same port
    dns.stop()                           # nothing listens there any more

Unbound is the real server: `unbound -d -c FILE` on a free 127.0.0.1 port
(UDP and TCP), `local-zone: "." static`, so it answers every name from its
local data (unknown names: NXDOMAIN, known names without the asked type:
NOERROR with no data) and never recurses anywhere (and its outgoing
interface is 127.0.0.1 should anything make it try).  The configuration is
the least that works as root here: no user switch, no chroot, no pid file,
no remote control, module-config "iterator".  Every answer has TTL 0 (the
daemon's resolver caches nothing, so restart() with new data shows at
once).  It is waited for with a real query and stopped by its PID.

Zone data: a dict NAME -> list of (TYPE, VALUE).  For TXT, VALUE is text
(str: UTF-8; bytes: as is), split into 255-byte character-strings, or a
list/tuple of strings given as the character-strings themselves (to
control the split: one record of many strings).  Other types (A, AAAA, MX,
PTR, CNAME, NS, ...) take their presentation form ("10 mx.example.").
Names may be given with or without the final dot.

Unbound cannot misbehave on request, so Responder is a small DNS server
of our own (this file run as a program, in its own process, stopped by
PID) that answers from the same kind of zone data, with a behaviour per
name or for every name:
    "answer"    answer normally (NXDOMAIN for unknown names)
    "slow"      answer after DELAY seconds
    "late"      answer every query of a name DELAY seconds after the first
                query of that name came (as a recursive resolver does that
                needs that long to resolve it: the retries get the answer
                once it is there)
    "drop"      never answer
    "servfail"  SERVFAIL
    "refused"   REFUSED
    "truncate"  over UDP an empty answer with TC=1; over TCP (when TCP is
                on) the real answer
    "tcpbroken" over UDP an empty answer with TC=1; over TCP the query is
                read and the connection closed without an answer
    "cut"       the real answer cut short in its last record (TC=0): a
                malformed reply, over UDP and TCP
TCP is optional (tcp=False: nothing listens on the TCP port, so a client
that retries over TCP after TC=1 gets its connection refused).  Every
query it receives is logged (queries()).  Note for "slow": libunbound (the
daemon's resolver) retransmits after its retransmission timeout (376 ms
at first, down to 50 ms once it has seen fast answers) and takes only the
answer to its latest try, so answers slower than that arrive only once its
timeout has doubled enough: use short delays, or "drop", for timeouts.

received_spf() checks a Received-SPF header against RFC 7208 9.1.

Standard library plus dnslib (python3-dnslib) for the wire format.
"""

import json
import os
import socket
import struct
import sys
import threading
import time

try:
    import dnslib
except ImportError:     # agtest.require("dnslib", "module") reports it
    dnslib = None

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

PYTHON = "/usr/bin/python3"
UNBOUND = "/usr/sbin/unbound"
PING_NAME = "agdns-ping.invalid."     # Responder answers it at once, always
CLOSE = object()   # what Responder's answer() returns to close a TCP connection unanswered


def require():
    """unbound and dnslib present (skip, or fail when CI=true)."""
    import agtest
    agtest.require(UNBOUND)
    agtest.require("dnslib", "module")


# ---------------------------------------------------------------------------
# Zone data


def fqdn(name):
    name = name.strip()
    return name if name.endswith(".") else name + "."


def txt_strings(value):
    """A TXT VALUE -> list of bytes character-strings (each <= 255 bytes)."""
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            b = v.encode("utf-8") if isinstance(v, str) else bytes(v)
            if len(b) > 255:
                raise ValueError("TXT character-string over 255 bytes: %r..." % b[:40])
            out.append(b)
        return out
    b = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if not b:
        return [b""]
    return [b[i:i + 255] for i in range(0, len(b), 255)]


def _escape_txt(b):
    """One character-string in zone-file syntax: quoted, every byte that is
    not plainly safe inside unbound's single-quoted local-data as \\DDD."""
    out = []
    for ch in b:
        if 0x20 <= ch < 0x7F and chr(ch) not in "\"\\'":
            out.append(chr(ch))
        else:
            out.append("\\%03d" % ch)
    return '"' + "".join(out) + '"'


def normalize(zones):
    """ZONES -> {fqdn: [(TYPE, value)]}, TXT values as lists of bytes."""
    out = {}
    for name, rrs in (zones or {}).items():
        key = fqdn(name).lower()
        lst = out.setdefault(key, [])
        for rtype, value in rrs:
            rtype = rtype.upper()
            if rtype == "TXT":
                lst.append((rtype, txt_strings(value)))
            else:
                lst.append((rtype, str(value)))
    return out


# ---------------------------------------------------------------------------
# Ports and queries


def free_port():
    """A port free on 127.0.0.1 for both UDP and TCP right now (see
    agtest.free_port: never the kernel's port 0, which races with test
    scripts running beside this one)."""
    import agtest
    return agtest.free_port()


def query(port, name, qtype="TXT", tcp=False, timeout=2.0, host="127.0.0.1"):
    """Ask the server on HOST:PORT (loopback) NAME/QTYPE; returns the
    dnslib.DNSRecord answer, or None on timeout / refused."""
    if not host.startswith("127.") and host != "::1":
        raise ValueError("agdns.query: loopback only, not %s" % host)
    q = dnslib.DNSRecord.question(name, qtype)
    try:
        raw = q.send(host, port, tcp=tcp, timeout=timeout)
    except (socket.timeout, OSError):
        return None
    try:
        return dnslib.DNSRecord.parse(raw)
    except Exception:
        return None


def txt_of(answer):
    """The TXT records of a dnslib answer, each as bytes (strings joined)."""
    if answer is None:
        return []
    return [b"".join(rr.rdata.data) for rr in answer.rr
            if rr.rtype == dnslib.QTYPE.TXT]


def _tail(path, n=20):
    try:
        with open(path, "r", errors="replace") as f:
            return "\n".join(f.read().splitlines()[-n:])
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)


# ---------------------------------------------------------------------------
# Received-SPF (RFC 7208 9.1)

import re as _re

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = r"%s+(?:\.%s+)*" % (_ATEXT, _ATEXT)
_QSTRING = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x09\x20-\x7e])*"'
_CTEXT = r"(?:[^()\\\x00-\x08\x0a-\x1f\x7f]|\\[\x09\x20-\x7e])"
_COMMENT = r"\((?:%s|\(%s*\))*\)" % (_CTEXT, _CTEXT)     # one level of nesting
_KEY = r"[A-Za-z][A-Za-z0-9_.-]*"
_PAIR = r"(%s)[ \t]*=[ \t]*(%s|%s)" % (_KEY, _DOT_ATOM, _QSTRING)
RECEIVED_SPF_RE = _re.compile(
    r"^(pass|fail|softfail|neutral|none|temperror|permerror)"
    r"(?:[ \t]+(%s))?"
    r"(?:[ \t]+(%s(?:[ \t]*;[ \t]*%s)*[ \t]*;?))?[ \t]*$" % (_COMMENT, _PAIR, _PAIR), _re.I)


def received_spf(value):
    """Parse an (unfolded) Received-SPF VALUE by the RFC 7208 9.1 grammar
    (comments nested one level deep at most).  Returns (result, comment, {key: value}) with
    quoted values unquoted, or None when it does not follow the grammar."""
    value = value.strip()
    m = RECEIVED_SPF_RE.match(value)
    if not m:
        return None
    pairs = {}
    if m.group(3):
        for pm in _re.finditer(_PAIR, m.group(3)):
            v = pm.group(2)
            if v.startswith('"'):
                v = _re.sub(r"\\(.)", r"\1", v[1:-1])
            pairs[pm.group(1).lower()] = v
    return m.group(1).lower(), m.group(2), pairs


# ---------------------------------------------------------------------------
# Unbound


class Unbound:
    """unbound serving ZONES on 127.0.0.1:PORT (UDP and TCP)."""

    def __init__(self, workdir, zones=None, name="unbound", ttl=0, port=None):
        self.dir = workdir
        self.name = name
        self.ttl = ttl              # 0: the daemon's resolver caches nothing
        self.zones = normalize(zones)
        self.port = port or free_port()
        self.conf = os.path.join(workdir, name + ".conf")
        self.log = os.path.join(workdir, name + ".log")
        self.proc = None
        import agtest
        self.hook = agtest.on_failure(self._diag)

    @property
    def server(self):
        """The DNSServer setting for authgate: 127.0.0.1@PORT."""
        return "127.0.0.1@%d" % self.port

    def local_data(self):
        lines = []
        for name, rrs in sorted(self.zones.items()):
            for rtype, value in rrs:
                if rtype == "TXT":
                    rdata = " ".join(_escape_txt(s) for s in value)
                else:
                    rdata = value
                    if "'" in rdata:
                        raise ValueError("' in %s %s data" % (name, rtype))
                lines.append("  local-data: '%s %d IN %s %s'" % (name, self.ttl, rtype, rdata))
        return lines

    def write_config(self):
        lines = [
            "# generated by tests/lib/agdns.py",
            "server:",
            "  interface: 127.0.0.1@%d" % self.port,
            "  port: %d" % self.port,
            "  do-ip6: no",
            "  do-udp: yes",
            "  do-tcp: yes",
            "  do-daemonize: no",
            "  username: \"\"",
            "  chroot: \"\"",
            "  directory: \"%s\"" % self.dir,
            "  pidfile: \"\"",
            "  logfile: \"\"",
            "  use-syslog: no",
            "  verbosity: 1",
            "  num-threads: 1",
            "  module-config: \"iterator\"",
            # Never anywhere but loopback, even if something made it recurse.
            "  outgoing-interface: 127.0.0.1",
            "  access-control: 127.0.0.0/8 allow",
            "  minimal-responses: yes",
            "  local-zone: \".\" static",
        ] + self.local_data() + [
            "remote-control:",
            "  control-enable: no",
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=10.0):
        import agtest
        if self.proc and self.proc.alive():
            raise RuntimeError("unbound already running")
        self.write_config()
        r = agtest.run(["/usr/sbin/unbound-checkconf", self.conf], timeout=20)
        if r.returncode != 0:
            raise RuntimeError("unbound-checkconf refused %s:\n%s" % (self.conf, agtest.fmt_run(r)))
        self.proc = agtest.Proc([UNBOUND, "-d", "-c", self.conf], name=self.name,
                                stdout=self.log, stderr=self.log).start()

        def ready():
            if not self.proc.alive():
                raise RuntimeError("unbound exited (%s):\n%s" %
                                   (self.proc.returncode(), _tail(self.log)))
            a = query(self.port, "agdns-ready.invalid.", "A", timeout=0.5)
            return a is not None and a.header.rcode == dnslib.RCODE.NXDOMAIN
        if not agtest.wait_until(ready, timeout, 0.05):
            raise RuntimeError("unbound on %d not answering after %.0fs:\n%s" %
                               (self.port, timeout, _tail(self.log)))
        return self

    def stop(self):
        if self.proc:
            self.proc.stop()

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def restart(self, zones=None):
        """Stop, take the new ZONES (when given), start on the same port."""
        self.stop()
        if zones is not None:
            self.zones = normalize(zones)
        return self.start()

    def update(self, zones):
        """Add or replace names (and restart)."""
        self.zones.update(normalize(zones))
        return self.restart()

    def _diag(self):
        rc = self.proc.returncode() if self.proc is not None else None
        if rc is not None and rc not in (0, -15):
            from agtest import diag
            diag("--- %s exited with %s ---" % (self.name, self.proc.returncode()))
            diag(_tail(self.log))


# ---------------------------------------------------------------------------
# Responder: a misbehaving DNS server of our own


MODES = ("answer", "slow", "late", "drop", "servfail", "refused", "truncate", "tcpbroken",
         "cut")


class Responder:
    """Our own DNS server in a child process (see the module doc).
    MODE: the behaviour for every name; MODES: {name: mode} overrides
    (a name also covers its subdomains); DELAY the seconds of "slow" and
    "late", DELAYS: {name: seconds} overrides."""

    def __init__(self, workdir, zones=None, mode="answer", modes=None, delay=3.0,
                 tcp=True, name="responder", delays=None):
        if mode not in MODES or any(m not in MODES for m in (modes or {}).values()):
            raise ValueError("mode must be one of %s" % (MODES,))
        self.dir = workdir
        self.name = name
        self.zones = normalize(zones)
        self.mode = mode
        self.modes = {fqdn(k).lower(): v for k, v in (modes or {}).items()}
        self.delay = delay
        self.delays = {fqdn(k).lower(): float(v) for k, v in (delays or {}).items()}
        self.tcp = tcp
        self.port = free_port()
        self.conf = os.path.join(workdir, name + ".json")
        self.log = os.path.join(workdir, name + ".log")
        self.qlog = os.path.join(workdir, name + ".queries")
        self.ready_file = os.path.join(workdir, name + ".ready")
        self.proc = None

    @property
    def server(self):
        return "127.0.0.1@%d" % self.port

    def start(self, timeout=10.0):
        import agtest
        zones = {n: [(t, [s.decode("latin-1") for s in v] if t == "TXT" else v)
                     for t, v in rrs] for n, rrs in self.zones.items()}
        with open(self.conf, "w") as f:
            json.dump({"port": self.port, "zones": zones, "mode": self.mode,
                       "modes": self.modes, "delay": self.delay, "delays": self.delays,
                       "tcp": self.tcp,
                       "qlog": self.qlog, "ready": self.ready_file}, f)
        for p in (self.ready_file, self.qlog):
            if os.path.exists(p):
                os.unlink(p)
        self.proc = agtest.Proc([PYTHON, os.path.abspath(__file__), "serve", self.conf],
                                name=self.name, stdout=self.log, stderr=self.log).start()

        def ready():
            if not self.proc.alive():
                raise RuntimeError("%s exited (%s):\n%s" %
                                   (self.name, self.proc.returncode(), _tail(self.log)))
            if not os.path.exists(self.ready_file):
                return False
            a = query(self.port, PING_NAME, "A", timeout=0.5)
            return a is not None and a.header.rcode == 0
        if not agtest.wait_until(ready, timeout, 0.05):
            raise RuntimeError("%s on %d not ready after %.0fs:\n%s" %
                               (self.name, self.port, timeout, _tail(self.log)))
        return self

    def stop(self):
        if self.proc:
            self.proc.stop()

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def queries(self):
        """Every query received so far (the ping excluded), as
        (proto, name, type) tuples, in order."""
        out = []
        try:
            with open(self.qlog) as f:
                for ln in f:
                    parts = ln.rstrip("\n").split(" ", 2)
                    if len(parts) == 3 and parts[1].lower() != PING_NAME:
                        out.append((parts[0], parts[1], parts[2]))
        except OSError:
            pass
        return out


def _serve(conf_path):
    """The Responder process."""
    with open(conf_path) as f:
        conf = json.load(f)
    zones = {n: [(t, [s.encode("latin-1") for s in v] if t == "TXT" else v)
                 for t, v in rrs] for n, rrs in conf["zones"].items()}
    modes = conf["modes"]
    default = conf["mode"]
    delays = conf.get("delays") or {}
    qlog_lock = threading.Lock()
    qlog = open(conf["qlog"], "a", buffering=1)
    first_seen = {}          # "late": (name, type) -> when first asked

    def for_name(table, name, default):
        """TABLE's value for NAME or its nearest parent, else DEFAULT."""
        n = name.lower()
        while True:
            if n in table:
                return table[n]
            if n in (".", ""):
                return default
            n = n.split(".", 1)[1] if "." in n.rstrip(".") else "."

    def mode_for(name):
        return for_name(modes, name, default)

    def rdata(rtype, value):
        if rtype == "TXT":
            return dnslib.TXT(value)
        if rtype == "A":
            return dnslib.A(value)
        if rtype == "AAAA":
            return dnslib.AAAA(value)
        if rtype == "MX":
            pref, host = value.split()
            return dnslib.MX(host, int(pref))
        if rtype == "PTR":
            return dnslib.PTR(value)
        if rtype == "CNAME":
            return dnslib.CNAME(value)
        if rtype == "NS":
            return dnslib.NS(value)
        raise ValueError(rtype)

    def answer(req, proto):
        """(reply bytes or None, delay seconds)."""
        q = req.q
        name = str(q.qname)
        qtype = dnslib.QTYPE.get(q.qtype)
        with qlog_lock:
            qlog.write("%s %s %s\n" % (proto, name, qtype))
        reply = req.reply()      # id, question, QR, RD copied; RA, AA set
        if name.lower() == PING_NAME:
            reply.add_answer(dnslib.RR(name, dnslib.QTYPE.A, rdata=dnslib.A("127.0.0.1"), ttl=0))
            return reply.pack(), 0
        mode = mode_for(name)
        if mode == "drop":
            return None, 0
        if mode == "servfail":
            reply.header.rcode = dnslib.RCODE.SERVFAIL
            return reply.pack(), 0
        if mode == "refused":
            reply.header.rcode = dnslib.RCODE.REFUSED
            return reply.pack(), 0
        if mode in ("truncate", "tcpbroken") and proto == "udp":
            reply.header.tc = 1
            return reply.pack(), 0
        if mode == "tcpbroken":
            return CLOSE, 0
        rrs = zones.get(name.lower())
        if rrs is None:
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        else:
            for rtype, value in rrs:
                if rtype == qtype or (rtype == "CNAME" and qtype != "CNAME"):
                    reply.add_answer(dnslib.RR(name, getattr(dnslib.QTYPE, rtype),
                                               rdata=rdata(rtype, value), ttl=0))
        data = reply.pack()
        if mode == "cut":
            return data[:max(12, len(data) - 4)], 0
        if proto == "udp" and len(data) > 512 and not req.ar:
            reply = req.reply()
            reply.header.tc = 1
            data = reply.pack()
        delay = for_name(delays, name, float(conf["delay"]))
        if mode == "late":
            with qlog_lock:
                t = first_seen.setdefault((name.lower(), qtype), time.monotonic())
            return data, max(0.0, t + delay - time.monotonic())
        return data, (delay if mode == "slow" else 0)

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", conf["port"]))
    tcp = None
    if conf["tcp"]:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("127.0.0.1", conf["port"]))
        tcp.listen(16)

    def later(seconds, fn, *args):
        if seconds <= 0:
            fn(*args)
        else:
            t = threading.Timer(seconds, fn, args)
            t.daemon = True
            t.start()

    def udp_loop():
        while True:
            data, peer = udp.recvfrom(65535)
            try:
                req = dnslib.DNSRecord.parse(data)
                out, wait = answer(req, "udp")
            except Exception as e:
                sys.stderr.write("bad udp query from %s: %r\n" % (peer, e))
                continue
            if out is not None:
                later(wait, udp.sendto, out, peer)

    def tcp_conn(c):
        try:
            c.settimeout(30)
            while True:
                hdr = b""
                while len(hdr) < 2:
                    chunk = c.recv(2 - len(hdr))
                    if not chunk:
                        return
                    hdr += chunk
                (n,) = struct.unpack("!H", hdr)
                data = b""
                while len(data) < n:
                    chunk = c.recv(n - len(data))
                    if not chunk:
                        return
                    data += chunk
                out, wait = answer(dnslib.DNSRecord.parse(data), "tcp")
                if out is CLOSE:
                    return
                if out is None:
                    continue
                if wait:
                    time.sleep(wait)
                c.sendall(struct.pack("!H", len(out)) + out)
        except Exception as e:
            sys.stderr.write("tcp: %r\n" % (e,))
        finally:
            c.close()

    def tcp_loop():
        while True:
            c, _ = tcp.accept()
            threading.Thread(target=tcp_conn, args=(c,), daemon=True).start()

    if tcp:
        threading.Thread(target=tcp_loop, daemon=True).start()
    with open(conf["ready"], "w") as f:
        f.write("%d\n" % os.getpid())
    sys.stderr.write("responder pid %d on 127.0.0.1:%d (udp%s), mode %s\n" %
                     (os.getpid(), conf["port"], "+tcp" if tcp else "", default))
    sys.stderr.flush()
    udp_loop()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        _serve(sys.argv[2])
    else:
        sys.stderr.write("usage: agdns.py serve CONFIG.json (started by agdns.Responder)\n")
        sys.exit(2)
