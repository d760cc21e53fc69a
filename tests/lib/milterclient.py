"""milterclient: the MTA side of the milter protocol (version 6), speaking
to a filter the way Postfix does.

    c = MilterClient("inet:12345@127.0.0.1")
    c.negotiate()
    r = c.connect("client.example", "4", 40000, "192.0.2.10")
    r = c.helo("client.example")
    r = c.mail("<alice@example.org>", "SIZE=1000")
    r = c.rcpt("<bob@example.net>")
    r = c.data()
    r = c.header("Subject", "hi") ... c.eoh(); c.body(b"..."); mods, r = c.eom()

Every phase method sends the phase's macros first (SMFIC_MACRO, the same
default macro sets Postfix 3.7 sends; macros=False sends no macro packet,
a dict sends exactly those; no_macros() turns all of them off), skips the command when the filter negotiated it away
(SMFIP_NO*), does not wait for a reply when the filter negotiated
SMFIP_NR_* (returns Reply 'noreply'), and returns the filter's Reply.
Reads are bounded (size and time); a closed connection raises Closed.
"""

import socket
import struct

# Commands (MTA -> filter)
SMFIC_ABORT = b"A"
SMFIC_BODY = b"B"
SMFIC_CONNECT = b"C"
SMFIC_MACRO = b"D"
SMFIC_BODYEOB = b"E"
SMFIC_HELO = b"H"
SMFIC_QUIT_NC = b"K"
SMFIC_HEADER = b"L"
SMFIC_MAIL = b"M"
SMFIC_EOH = b"N"
SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"
SMFIC_RCPT = b"R"
SMFIC_DATA = b"T"
SMFIC_UNKNOWN = b"U"

# Replies (filter -> MTA)
REPLY_NAMES = {
    b"+": "addrcpt", b"-": "delrcpt", b"2": "addrcpt_par", b"4": "shutdown",
    b"a": "accept", b"b": "replbody", b"c": "continue", b"d": "discard",
    b"e": "chgfrom", b"f": "conn_fail", b"h": "addheader", b"i": "insheader",
    b"l": "setsymlist", b"m": "chgheader", b"p": "progress", b"q": "quarantine",
    b"r": "reject", b"s": "skip", b"t": "tempfail", b"y": "replycode",
    b"O": "optneg",
}
FINAL = {b"a", b"c", b"d", b"r", b"t", b"y", b"s", b"4", b"f"}
MODIFICATIONS = {b"+", b"-", b"2", b"b", b"e", b"h", b"i", b"m", b"q"}

# Actions
SMFIF_ADDHDRS = 0x01
SMFIF_CHGBODY = 0x02
SMFIF_ADDRCPT = 0x04
SMFIF_DELRCPT = 0x08
SMFIF_CHGHDRS = 0x10
SMFIF_QUARANTINE = 0x20
SMFIF_CHGFROM = 0x40
SMFIF_ADDRCPT_PAR = 0x80
SMFIF_SETSYMLIST = 0x100
ALL_ACTIONS = 0x1FF

# Protocol flags
SMFIP_NOCONNECT = 0x1
SMFIP_NOHELO = 0x2
SMFIP_NOMAIL = 0x4
SMFIP_NORCPT = 0x8
SMFIP_NOBODY = 0x10
SMFIP_NOHDRS = 0x20
SMFIP_NOEOH = 0x40
SMFIP_NR_HDR = 0x80
SMFIP_NOUNKNOWN = 0x100
SMFIP_NODATA = 0x200
SMFIP_SKIP = 0x400
SMFIP_RCPT_REJ = 0x800
SMFIP_NR_CONN = 0x1000
SMFIP_NR_HELO = 0x2000
SMFIP_NR_MAIL = 0x4000
SMFIP_NR_RCPT = 0x8000
SMFIP_NR_DATA = 0x10000
SMFIP_NR_UNKN = 0x20000
SMFIP_NR_EOH = 0x40000
SMFIP_NR_BODY = 0x80000
SMFIP_HDR_LEADSPC = 0x100000
# What Postfix 3.x offers with milter_protocol = 6.
POSTFIX_PROTOCOL = 0x1FFFFF

# Macro stages in an OPTNEG symbol list
STAGES = {0: "connect", 1: "helo", 2: "mail", 3: "rcpt", 4: "data", 5: "eom", 6: "eoh"}

# Postfix 3.7's default milter_*_macros (header and body stages: the queue
# id, as captured from a real Postfix).
POSTFIX_MACROS = {
    "connect": ("j", "{daemon_name}", "{daemon_addr}", "v", "_"),
    "helo": ("{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"),
    "mail": ("i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}",
             "{mail_host}", "{mail_mailer}"),
    "rcpt": ("i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"),
    "data": ("i",),
    "header": ("i",),
    "eoh": ("i",),
    "body": ("i",),
    "eom": ("i",),
}
CHUNK = 65535          # MILTER_CHUNK_SIZE: the largest body chunk
MAX_REPLY = 1 << 20    # refuse a reply packet larger than this


class MilterError(Exception):
    pass


class Closed(MilterError):
    """The filter closed the connection."""


class Reply:
    """One filter reply.  name: accept|continue|reject|tempfail|discard|
    replycode|skip|noreply|...; for replycode, code/xcode/text are parsed
    from 'CODE XCODE TEXT'.  kind folds replycode into reject (5xx) or
    tempfail (4xx); smtp is the reply an MTA would give."""

    def __init__(self, cmd, data=b""):
        self.cmd = cmd
        self.data = data
        self.name = REPLY_NAMES.get(cmd, "unknown(%r)" % cmd) if cmd else "noreply"
        self.code = self.xcode = self.text = None
        if cmd == b"y":
            s = data.rstrip(b"\0").decode("utf-8", "replace")
            parts = s.split(" ", 2)
            self.code = parts[0][:3]
            if len(parts) > 1 and parts[1][:1].isdigit() and "." in parts[1]:
                self.xcode = parts[1]
                self.text = parts[2] if len(parts) > 2 else ""
            else:
                self.text = s[4:]
            self.smtp = s
        elif cmd == b"r":
            self.code, self.xcode, self.text = "550", "5.7.1", "Command rejected"
            self.smtp = "550 5.7.1 Command rejected"
        elif cmd == b"t":
            self.code, self.xcode, self.text = "451", "4.7.1", "Service unavailable - try again later"
            self.smtp = "451 4.7.1 Service unavailable - try again later"
        else:
            self.smtp = None

    @property
    def kind(self):
        if self.cmd == b"y":
            return {"4": "tempfail", "5": "reject"}.get(self.code[:1], "replycode")
        if self.cmd is None:
            return "continue"
        return self.name

    @property
    def passes(self):
        """True when the MTA would go on with the transaction."""
        return self.kind in ("continue", "accept", "skip", "noreply")

    def __repr__(self):
        if self.smtp:
            return "<Reply %s %r>" % (self.name, self.smtp)
        if self.data:
            return "<Reply %s %r>" % (self.name, self.data[:200])
        return "<Reply %s>" % self.name


NOREPLY = Reply(None)


def parse_socket(spec):
    """'inet:PORT@HOST' | 'inet6:PORT@HOST' | 'unix:PATH' (or 'local:PATH')
    -> (family, address)."""
    kind, _, rest = spec.partition(":")
    if kind in ("inet", "inet6"):
        port, _, host = rest.partition("@")
        host = host or ("127.0.0.1" if kind == "inet" else "::1")
        fam = socket.AF_INET6 if (kind == "inet6" or ":" in host) else socket.AF_INET
        return fam, (host.strip("[]"), int(port))
    if kind in ("unix", "local"):
        return socket.AF_UNIX, rest
    if spec.startswith("/"):
        return socket.AF_UNIX, spec
    raise ValueError("bad socket spec %r" % spec)


def _z(s):
    if isinstance(s, str):
        s = s.encode("utf-8", "surrogateescape")
    return s + b"\0"


class MilterClient:
    def __init__(self, spec, timeout=10.0, connect=True):
        self.spec = spec
        self.timeout = timeout
        self.sock = None
        self.version = None
        self.actions = 0
        self.protocol = 0
        self.symlists = {}
        # Macro values known so far (None or missing: not sent, as Postfix
        # leaves out undefined macros).  connect(), mail(), rcpt() fill in
        # the client, sender, recipient and queue id.
        self.values = {"j": "mx.test.invalid", "{daemon_name}": "mx.test.invalid",
                       "{daemon_addr}": "127.0.0.1", "{daemon_port}": "25",
                       "v": "Postfix 3.7.11", "{mail_mailer}": "smtp",
                       "{mail_host}": "[127.0.0.1]:25", "{rcpt_mailer}": "smtp",
                       "{rcpt_host}": "[127.0.0.1]:25"}
        self.macros_off = False
        self.queue_id = "4ABC123DEF"
        if connect:
            self.open()

    # -- transport --
    def open(self):
        fam, addr = parse_socket(self.spec)
        s = socket.socket(fam, socket.SOCK_STREAM)
        if fam != socket.AF_UNIX:
            # a macro packet and its command go out as two writes (Postfix
            # makes one): without this, Nagle holds the second until the
            # filter's delayed ACK, 40 ms for every command
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.timeout)
        s.connect(addr)
        self.sock = s
        return self

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, cmd, data=b""):
        self.sock.sendall(struct.pack("!I", len(data) + 1) + cmd + data)

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except socket.timeout:
                raise MilterError("no reply from filter within %.1fs" % self.sock.gettimeout())
            except ConnectionResetError:
                raise Closed("connection reset by filter")
            if not chunk:
                raise Closed("filter closed the connection")
            buf += chunk
        return buf

    def read_packet(self):
        (n,) = struct.unpack("!I", self._recv_exact(4))
        if n < 1 or n > MAX_REPLY:
            raise MilterError("bad reply length %d" % n)
        body = self._recv_exact(n)
        return body[:1], body[1:]

    def read_reply(self):
        """The next non-progress reply."""
        while True:
            cmd, data = self.read_packet()
            if cmd != b"p":
                return Reply(cmd, data)

    def poll_reply(self, timeout=3.0):
        """A reply within TIMEOUT, or the string 'timeout' (none came: the
        filter ignored the command) or 'closed'."""
        self.sock.settimeout(timeout)
        try:
            return self.read_reply()
        except Closed:
            return "closed"
        except MilterError as e:
            if "no reply" in str(e):
                return "timeout"
            raise
        finally:
            if self.sock:
                self.sock.settimeout(self.timeout)

    def is_closed(self, timeout=2.0):
        """True when the filter has closed the connection (EOF or reset)
        within TIMEOUT; data that arrives instead is returned as False."""
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(4096)
            return d == b""
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        finally:
            self.sock.settimeout(self.timeout)

    # -- negotiation --
    def negotiate(self, version=6, actions=ALL_ACTIONS, protocol=POSTFIX_PROTOCOL):
        self.send(SMFIC_OPTNEG, struct.pack("!III", version, actions, protocol))
        cmd, data = self.read_packet()
        if cmd != b"O" or len(data) < 12:
            raise MilterError("bad OPTNEG reply %r %r" % (cmd, data[:50]))
        self.version, self.actions, self.protocol = struct.unpack("!III", data[:12])
        rest = data[12:]
        while len(rest) >= 4:
            (where,) = struct.unpack("!I", rest[:4])
            names, _, rest = rest[4:].partition(b"\0")
            self.symlists[STAGES.get(where, where)] = names.decode().split()
        return self.version, self.actions, self.protocol

    def _flag(self, f):
        return bool(self.protocol & f)

    def macros(self, stage_cmd, values):
        """Send SMFIC_MACRO for STAGE_CMD with VALUES (dict name -> value;
        a None value is left out)."""
        data = stage_cmd
        for k, v in values.items():
            if v is None:
                continue
            data += _z(k) + _z(v)
        self.send(SMFIC_MACRO, data)

    def stage_macros(self, stage):
        """The macros Postfix would send for STAGE: the filter's symbol
        list for it when it asked for one at OPTNEG, else Postfix's
        default milter_*_macros set; each with its value when known."""
        names = self.symlists.get(stage, POSTFIX_MACROS.get(stage, ()))
        return {n: self.values.get(n) for n in names}

    def _phase(self, stage, cmd, data, no_flag, nr_flag, macros):
        """MACROS: None = what Postfix sends for STAGE (a macro packet is
        sent even when it is empty, as Postfix does), False = send no
        macro packet at all, a dict = exactly those."""
        if macros is None:
            macros = False if self.macros_off else self.stage_macros(stage)
        if macros is not False:
            self.macros(cmd, macros)
        if no_flag and self._flag(no_flag):
            return Reply(b"c")
        self.send(cmd, data)
        if nr_flag and self._flag(nr_flag):
            return NOREPLY
        return self.read_reply()

    # -- SMTP phases --
    def connect(self, hostname="client.example", family="4", port=40000,
                address="192.0.2.10", macros=None):
        """FAMILY: '4', '6', 'L' (unix socket: ADDRESS is a path) or 'U'
        (unknown: no port or address is sent)."""
        data = _z(hostname) + family.encode()
        if family != "U":
            data += struct.pack("!H", port) + _z(address)
        self.values.update({"{client_name}": hostname, "{client_ptr}": hostname,
                            "{client_addr}": address if family in "46" else None,
                            "{client_port}": str(port) if family in "46" else None,
                            "_": "%s [%s]" % (hostname, address if family in "46" else
                                              "unknown")})
        return self._phase("connect", SMFIC_CONNECT, data, SMFIP_NOCONNECT,
                           SMFIP_NR_CONN, macros)

    def helo(self, name="client.example", macros=None):
        return self._phase("helo", SMFIC_HELO, _z(name), SMFIP_NOHELO, SMFIP_NR_HELO, macros)

    def mail(self, sender="<alice@example.org>", *args, macros=None, auth=None):
        """AUTH: a SASL login name ({auth_authen}, {auth_type} macros)."""
        self.values["i"] = None       # Postfix assigns it with the first RCPT
        self.values["{mail_addr}"] = sender.strip("<>")
        self.values["{auth_authen}"] = auth
        self.values["{auth_type}"] = "PLAIN" if auth else None
        data = _z(sender) + b"".join(_z(a) for a in args)
        return self._phase("mail", SMFIC_MAIL, data, SMFIP_NOMAIL, SMFIP_NR_MAIL, macros)

    def rcpt(self, rcpt="<bob@example.net>", *args, macros=None):
        self.values["{rcpt_addr}"] = rcpt.strip("<>")
        self.values["i"] = self.queue_id
        data = _z(rcpt) + b"".join(_z(a) for a in args)
        return self._phase("rcpt", SMFIC_RCPT, data, SMFIP_NORCPT, SMFIP_NR_RCPT, macros)

    def data(self, macros=None):
        return self._phase("data", SMFIC_DATA, b"", SMFIP_NODATA, SMFIP_NR_DATA, macros)

    def header(self, name, value, macros=None):
        if self._flag(SMFIP_HDR_LEADSPC):
            value = " " + value
        return self._phase("header", SMFIC_HEADER, _z(name) + _z(value), SMFIP_NOHDRS,
                           SMFIP_NR_HDR, macros)

    def eoh(self, macros=None):
        return self._phase("eoh", SMFIC_EOH, b"", SMFIP_NOEOH, SMFIP_NR_EOH, macros)

    def body(self, data, macros=None):
        """Send DATA in chunks of at most 64 KB; stops at the first reply
        that is not continue (skip included) and returns it."""
        if self._flag(SMFIP_NOBODY):
            return Reply(b"c")
        if macros is None:
            macros = False if self.macros_off else self.stage_macros("body")
        last = Reply(b"c")
        for i in range(0, len(data), CHUNK):
            if macros is not False:
                self.macros(SMFIC_BODY, macros)
            self.send(SMFIC_BODY, data[i:i + CHUNK])
            if self._flag(SMFIP_NR_BODY):
                last = NOREPLY
                continue
            last = self.read_reply()
            if last.cmd != b"c":
                break
        return last

    def eom(self, macros=None):
        """End of message: returns (modifications, final reply), each
        modification a (name, [fields...]) tuple."""
        if macros is None:
            macros = False if self.macros_off else self.stage_macros("eom")
        if macros is not False:
            self.macros(SMFIC_BODYEOB, macros)
        self.send(SMFIC_BODYEOB, b"")
        mods = []
        while True:
            cmd, data = self.read_packet()
            if cmd == b"p":
                continue
            if cmd in MODIFICATIONS:
                mods.append(_parse_mod(cmd, data))
                continue
            return mods, Reply(cmd, data)

    def abort(self):
        self.send(SMFIC_ABORT)

    def quit(self):
        try:
            self.send(SMFIC_QUIT)
        except OSError:
            pass
        self.close()

    def quit_nc(self):
        self.send(SMFIC_QUIT_NC)

    def unknown(self, line):
        return self._phase("unknown", SMFIC_UNKNOWN, _z(line), SMFIP_NOUNKNOWN,
                           SMFIP_NR_UNKN, False)

    # -- whole transactions --
    def session(self, hostname="client.example", family="4", port=40000,
                address="192.0.2.10", helo="client.example", macros=None):
        """negotiate + connect + helo; returns the first reply that does
        not pass, or the helo reply."""
        self.negotiate()
        r = self.connect(hostname, family, port, address,
                         macros=None if macros is None else macros.get("connect"))
        if not r.passes:
            return r
        return self.helo(helo, macros=None if macros is None else macros.get("helo"))

    def transaction(self, sender="<alice@example.org>", rcpts=("<bob@example.net>",),
                    headers=(), body=b"", mail_args=(), queue_id=None, auth=None):
        """MAIL .. EOM.  Returns a Transaction with every reply; stops at
        the first reply that ends the transaction (and sends ABORT then,
        as an MTA does).  RCPT replies that fail do not stop it if some
        recipient was accepted."""
        t = Transaction()
        if queue_id:
            self.set_queue_id(queue_id)
        t.mail = self.mail(sender, *mail_args, auth=auth)
        t.replies.append(("mail", t.mail))
        if not t.mail.passes:
            t.final = t.mail
            t.stage = "mail"
            self.abort()
            return t
        for rc in rcpts:
            t.rcpts.append(self.rcpt(rc))
            t.replies.append(("rcpt", t.rcpts[-1]))
        if not any(r.passes for r in t.rcpts):
            t.final = t.rcpts[-1]
            t.stage = "rcpt"
            self.abort()
            return t
        r = self.data()
        t.replies.append(("data", r))
        if not r.passes:
            t.final, t.stage = r, "data"
            self.abort()
            return t
        for name, value in headers:
            r = self.header(name, value)
            t.replies.append(("header", r))
            if not r.passes:
                t.final, t.stage = r, "header"
                self.abort()
                return t
            if r.cmd == b"s":
                break
        r = self.eoh()
        t.replies.append(("eoh", r))
        if not r.passes:
            t.final, t.stage = r, "eoh"
            self.abort()
            return t
        if body:
            r = self.body(body)
            t.replies.append(("body", r))
            if not r.passes:
                t.final, t.stage = r, "body"
                self.abort()
                return t
        t.mods, t.final = self.eom()
        t.replies.append(("eom", t.final))
        t.stage = "eom"
        return t

    def set_queue_id(self, qid):
        """Use QID as the 'i' macro from the next RCPT on."""
        self.queue_id = qid

    def no_macros(self):
        """Send no SMFIC_MACRO packet at all from now on (no j, no i, no
        {client_addr}, nothing)."""
        self.macros_off = True


class Transaction:
    def __init__(self):
        self.mail = None
        self.rcpts = []
        self.final = None
        self.stage = None
        self.mods = []
        self.replies = []     # (stage, Reply) in order

    @property
    def accepted(self):
        return self.stage == "eom" and self.final.kind in ("accept", "continue")

    def __repr__(self):
        return "<Transaction stage=%s final=%r mail=%r rcpts=%r mods=%r>" % (
            self.stage, self.final, self.mail, self.rcpts, self.mods)


def _parse_mod(cmd, data):
    name = REPLY_NAMES[cmd]
    if cmd in (b"h",):
        f = data.split(b"\0")
        return (name, [f[0].decode(errors="replace"), f[1].decode(errors="replace")])
    if cmd in (b"i", b"m"):
        (idx,) = struct.unpack("!I", data[:4])
        f = data[4:].split(b"\0")
        return (name, [idx, f[0].decode(errors="replace"), f[1].decode(errors="replace")])
    if cmd == b"b":
        return (name, [data])
    return (name, [x.decode(errors="replace") for x in data.split(b"\0") if x])
