"""tests/bench/run: authgate's benchmarks, side by side (tests/bench/README.md).

    tests/bench/run [--quick] [--out DIR] [e2e] [micro] [milter] [scale]

Sections (default: all, in the order micro e2e milter scale):
  e2e     smtp-source -> private Postfix -> smtp-sink; no milter, nullmilter,
          authgate (SPF + DKIM + size + rate), OpenDKIM (verify), alternating
  micro   DKIM verifications/s (lib/dkim.c) against raw OpenSSL and
          `openssl speed`; SPF evaluations/s with a warm cache; rate decisions/s
  milter  milter level with milterload: authgate vs nullmilter vs OpenDKIM
  scale   authgate vs message size, concurrency, number of rules, rate keys
Each section prints a markdown table and writes it to OUT/SECTION.md; the
machine goes to OUT/machine.md; scale also writes .dat files and gnuplot
PNGs.  --quick: a short smoke version of each.  Needs root (Postfix), the
built tree (make; make bench-micro is run here; milterload and nullmilter
come from `make bench` and are skipped when missing).
"""

import argparse
import os
import shutil
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib as B    # noqa: E402  (puts tests/lib on sys.path)
import agtest           # noqa: E402
import agpostfix        # noqa: E402

SECTIONS = ("micro", "e2e", "milter", "scale", "memory")


class Skipped(Exception):
    """A whole section cannot run here (the reason is its table)."""


class Ctx:
    def __init__(self, quick, out):
        self.quick = quick
        self.out = out
        self.tmp = agtest.tmpdir("bench")
        self._fix = None
        self._dns = None
        self._files = {}

    @property
    def fixture(self):
        if self._fix is None:
            self._fix = B.Fixture(self.path("keys"))
        return self._fix

    @property
    def dns(self):
        """The private unbound, with a TTL (so the daemons cache), shared by
        every section."""
        if self._dns is None:
            self._dns = B.dns_server(self.path("dns"), self.fixture)
        return self._dns

    def path(self, name):
        p = os.path.join(self.tmp, name)
        os.makedirs(p, exist_ok=True)
        return p

    def msgfile(self, size=4096, key="rsa", lf=False):
        """A signed message file (CRLF, or LF for smtp-source, which adds
        CRLF to every line itself)."""
        k = (size, key, lf)
        if k not in self._files:
            p = os.path.join(self.path("msgs"), "m%d-%s%s.eml" % (size, key, "-lf" if lf else ""))
            data = self.fixture.message(size, key)
            if lf:
                data = data.replace(b"\r\n", b"\n")
            with open(p, "wb") as f:
                f.write(data)
            self._files[k] = p
        return self._files[k]


def ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"


def write_md(ctx, name, title, lines):
    text = "## %s\n\n%s\n" % (title, "\n".join(lines))
    print(text)
    sys.stdout.flush()
    with open(os.path.join(ctx.out, name + ".md"), "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------
# micro


def make_bench():
    """Build what the sections run: milterload, nullmilter and the
    micro-benchmarks (a clean clone has only `make` done)."""
    r = agtest.run(["make", "-C", agtest.BUILDDIR, "bench", "bench-micro"], timeout=600)
    if r.returncode != 0:
        raise RuntimeError("make bench bench-micro failed:\n" + agtest.fmt_run(r))


def openssl_speed(seconds):
    """verify/s of `openssl speed -seconds S rsa2048 ed25519` (one core)."""
    r = agtest.run(["openssl", "speed", "-seconds", str(seconds), "rsa2048", "ed25519"],
                   timeout=20 * seconds + 60)
    out = {}
    for ln in (r.stdout or "").splitlines():
        f = ln.split()
        if ln.startswith("rsa 2048 bits") and len(f) >= 7:
            out["rsa2048"] = float(f[-1])
        elif "Ed25519" in ln and len(f) >= 2:
            out["ed25519"] = float(f[-1])
    return out


def micro(ctx):
    lines = []
    fx = ctx.fixture
    zone = fx.zone_file(os.path.join(ctx.path("micro"), "zone.txt"))
    secs = 1 if ctx.quick else 10
    B.note("micro: verifybench (%d s a line)" % secs)
    r = agtest.run([B.bench_tool("verifybench"), zone, secs,
                    "rsa2048=" + ctx.msgfile(4096, "rsa"),
                    "ed25519=" + ctx.msgfile(4096, "ed")], timeout=20 * secs + 60)
    vb = {}
    for ln in r.stdout.splitlines():
        if ln.startswith("RESULT "):
            d = B.parse_result(ln)
            vb[d["name"]] = d
    if r.returncode != 0 or len(vb) < 6:
        raise RuntimeError("verifybench failed:\n" + agtest.fmt_run(r))
    B.note("micro: openssl speed")
    sp = openssl_speed(1 if ctx.quick else 3)
    lines.append("### DKIM verification, one core (4 KB message, relaxed/relaxed, key from "
                 "the resolver's local data)")
    lines.append("")
    rows = []
    for alg in ("rsa2048", "ed25519"):
        full = vb[alg]["cpu_rate"]
        raw = vb["raw-" + alg]["cpu_rate"]
        parse = vb["parse-" + alg]["cpu_rate"]
        spd = sp.get(alg)
        rows.append([alg, full, "%.0f" % (1e6 / full), raw, parse,
                     spd if spd else "-", ratio(full, raw), ratio(full, spd)])
    lines += B.table(["key", "lib/dkim.c verifies/s", "µs each", "raw EVP_DigestVerify/s",
                      "d2i_PUBKEY + verify/s", "openssl speed verify/s",
                      "lib/dkim.c / raw", "lib/dkim.c / openssl speed"], rows)
    lines.append("")
    lines.append("Rates per CPU second, one thread pinned to CPU 0, medians of 5 rounds taken "
                 "in turn (verifybench).  `raw`: the key parsed once; `d2i_PUBKEY + verify`: "
                 "the public key parsed from DER before each verify, as libopendkim does for "
                 "every message.")

    # SPF
    dns = ctx.dns
    ssecs = 1 if ctx.quick else 6
    lines += ["", "### SPF evaluations with a warm cache (lib/spf.c over a private unbound, "
              "TTL 3600)", ""]
    rows = []
    for client, where in (("192.0.2.10", "matches the 2nd term (ip4)"),
                          ("198.51.100.26", "matches the last term of the include (mx)")):
        B.note("micro: spfbench client %s" % client)
        r = agtest.run([B.bench_tool("spfbench"), dns.server, ssecs, client, B.SENDER, 1, 2],
                       timeout=10 * ssecs + 60)
        res = [B.parse_result(ln) for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode != 0 or len(res) != 2:
            raise RuntimeError("spfbench failed:\n" + agtest.fmt_run(r))
        for d in res:
            rows.append([client, where, d["result"], str(d["threads"]), d["rate"],
                         "%.1f" % d["us"]])
    lines += B.table(["client", "record", "result", "threads", "evaluations/s",
                      "µs per evaluation per thread"], rows)
    lines.append("")
    lines.append("Record: `v=spf1 ip4:127.0.0.1 ip4:192.0.2.0/24 include:_spf.example.net "
                 "-all`, the include `v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 "
                 "ip6:2001:db8::/32 a:mail.example.net mx:example.net -all`.  Wall-clock "
                 "rates, medians of 3 rounds (spfbench).")

    # rate
    B.note("micro: ratebench")
    keys = 100000 if ctx.quick else 1000000
    rsecs = 1 if ctx.quick else 2
    r = agtest.run([B.bench_tool("ratebench"), keys, 24, rsecs], timeout=300)
    if r.returncode != 0:
        raise RuntimeError("ratebench failed:\n" + agtest.fmt_run(r))
    lines += ["", "### Rate decisions (lib/ratelimit.c, ratebench %d keys, %d s a line)" %
              (keys, rsecs), "", "```"]
    lines += [ln for ln in r.stdout.splitlines()
              if ln.startswith("table, 1 key ") or "keys " in ln and ln.startswith("table")
              or ln.startswith("RSS")]
    lines.append("```")
    write_md(ctx, "micro", "Micro-benchmarks", lines)


# ---------------------------------------------------------------------------
# e2e


class E2EConfig:
    def __init__(self, label, milter=None, daemon=None):
        self.label = label
        self.milter = milter        # Postfix's smtpd_milters value
        self.daemon = daemon        # object with .pid, or None
        self.pf = None
        self.runs = []              # dicts


def smtp_source(port, n, msgfile, sessions=10):
    return agtest.run(["/usr/sbin/smtp-source", "-s", sessions, "-m", n, "-F", msgfile,
                       "-f", B.SENDER, "-t", B.RCPT, "-M", B.HELO,
                       "127.0.0.1:%d" % port], timeout=600)


def spool_count(sink):
    return len(os.listdir(sink.spool))


def spool_clear(sink):
    for n in os.listdir(sink.spool):
        try:
            os.unlink(os.path.join(sink.spool, n))
        except OSError:
            pass


def e2e_run(cfg, sink, n, msgfile):
    """One smtp-source run through CFG's Postfix; waits until every message
    has arrived at the sink (or 120 s) before it reads the CPU times."""
    spool_clear(sink)
    master = cfg.pf.master_pid()
    pf0 = B.tree_cpu_ms(master)
    d0 = B.cpu_ms(cfg.daemon.pid) if cfg.daemon else None
    t0 = time.monotonic()
    r = smtp_source(cfg.pf.port, n, msgfile)
    t1 = time.monotonic()
    agtest.wait_until(lambda: spool_count(sink) >= n, 120, 0.05)
    t2 = time.monotonic()
    arrived = spool_count(sink)
    pf1 = B.tree_cpu_ms(master)
    d1 = B.cpu_ms(cfg.daemon.pid) if cfg.daemon else None
    res = {"rate": n / (t1 - t0), "secs": t1 - t0, "drain": t2 - t1, "arrived": arrived,
           "n": n, "rc": r.returncode,
           "pf_ms": (pf1 - pf0) / n if pf0 is not None and pf1 is not None else None,
           "milter_ms": (d1 - d0) / n if d0 is not None and d1 is not None else None}
    if r.returncode != 0 or arrived < n:
        res["error"] = "smtp-source exit %s, %d of %d arrived: %s" % (
            r.returncode, arrived, n, (r.stderr or r.stdout)[-300:])
    return res


def e2e_sanity(cfg, sink, msgfile):
    """One message through CFG; the sink's copy must show what the filter
    is supposed to have done.  Returns a line for the report."""
    spool_clear(sink)
    r = smtp_source(cfg.pf.port, 1, msgfile, sessions=1)
    if not agtest.wait_until(lambda: spool_count(sink) >= 1, 30, 0.05):
        raise RuntimeError("%s: the sanity message did not arrive (%s)\n%s" % (
            cfg.label, agtest.fmt_run(r), agtest.tail(cfg.pf.maillog)))
    time.sleep(0.2)
    text = sink.messages()[0]
    ar = [v for k, v in agtest.header_fields(text) if k.lower() == "authentication-results"]
    need = {"authgate": ("spf=pass", "dkim=pass"),
            "OpenDKIM": ("dkim=pass",)}.get(cfg.label.split()[0], ())
    for w in need:
        if not any(w in v for v in ar):
            raise RuntimeError("%s: the delivered message lacks %s in Authentication-Results "
                               "(the filter is not doing its work):\n%s" %
                               (cfg.label, w, text[:3000]))
    return "%s: %s" % (cfg.label, "; ".join(ar) if ar else "no Authentication-Results")


def e2e(ctx):
    agpostfix.require()
    n = 150 if ctx.quick else 1000
    rounds = 3 if ctx.quick else 4
    msg = ctx.msgfile(4096, "rsa", lf=True)
    sink = agpostfix.Sink(ctx.path("e2e-sink")).start()
    cfgs = [E2EConfig("no milter")]
    notes = []
    # unix sockets, as MTAs and filters are usually wired on one host; the
    # full run adds the filters on inet sockets (see the note in the table)
    kinds = ["unix"] if ctx.quick else ["unix", "inet"]
    nm = B.bench_tool("nullmilter")
    if nm:
        d = B.NullMilter(ctx.path("e2e-null"), nm).start()
        cfgs.append(E2EConfig("nullmilter", B.postfix_milter(d.socket), d))
    else:
        notes.append("nullmilter: skipped, tests/bench/nullmilter is not built (make bench)")
    daemons = []
    for kind in kinds:
        sfx = "" if kind == "unix" else " (inet)"
        ag = B.authgate(ctx.path("e2e-ag-" + kind), ctx.dns, socket_kind=kind).start()
        daemons.append(ag)
        cfgs.append(E2EConfig("authgate" + sfx, B.postfix_milter(ag.socket), ag.proc))
        if os.access(B.OPENDKIM, os.X_OK):
            od = B.OpenDKIM(ctx.path("e2e-odkim-" + kind), ctx.dns, socket_kind=kind).start()
            daemons.append(od)
            cfgs.append(E2EConfig("OpenDKIM" + sfx, B.postfix_milter(od.socket), od))
        elif kind == "unix":
            notes.append("OpenDKIM: skipped, %s is not installed (tests/deps.sh)" % B.OPENDKIM)
    for i, c in enumerate(cfgs):
        c.pf = agpostfix.Postfix(ctx.path("e2e-pf%d" % i), sink.port, milter=c.milter)
        agtest.remove_failure_hook(c.pf.hook)
        c.pf.start()
    checks = [e2e_sanity(c, sink, msg) for c in cfgs]
    for c in cfgs:                       # warm up: processes, caches
        e2e_run(c, sink, max(20, n // 10), msg)
    for k in range(rounds):
        for c in cfgs:
            res = e2e_run(c, sink, n, msg)
            B.note("e2e round %d %-10s %7.1f msgs/s (drain %.1f s)%s" % (
                k + 1, c.label, res["rate"], res["drain"],
                "  ERROR " + res["error"] if "error" in res else ""))
            c.runs.append(res)
    base = B.median([r["rate"] for r in cfgs[0].runs])
    null = next((c for c in cfgs if c.label == "nullmilter"), None)
    nullr = B.median([r["rate"] for r in null.runs]) if null else None
    rows = []
    for c in cfgs:
        rates = [r["rate"] for r in c.runs]
        m = B.median(rates)
        pf = B.median([r["pf_ms"] for r in c.runs])
        ml = B.median([r["milter_ms"] for r in c.runs])
        errs = [r["error"] for r in c.runs if "error" in r]
        rows.append([c.label, m, "%.0f–%.0f" % (min(rates), max(rates)), ratio(m, base),
                     ratio(m, nullr) if nullr else "-",
                     "%.2f" % pf if pf is not None else "-",
                     "%.2f" % ml if ml is not None else "-",
                     "%d/%d" % (sum(r["arrived"] for r in c.runs), sum(r["n"] for r in c.runs))
                     + (" (%d runs failed)" % len(errs) if errs else "")])
        notes += ["%s: %s" % (c.label, e) for e in errs[:3]]
    lines = B.table(["configuration", "msgs/s (median)", "range", "× no milter",
                     "× nullmilter", "Postfix CPU ms/msg", "milter CPU ms/msg", "arrived"], rows)
    lines += ["", "smtp-source -s 10 -m %d, a %d-byte message signed with RSA-2048 "
              "(relaxed/relaxed), one message per session; %d rounds taken in turn "
              "(A B C D A B C D ...), medians.  msgs/s from smtp-source's wall time; every "
              "message counted at the sink before the next run.  CPU per message from "
              "/proc: Postfix = the master, its reaped children and its live children; "
              "milter = the daemon's process."
              % (n, os.path.getsize(msg), rounds), "",
              "Filters on unix sockets; rows marked (inet) on a loopback TCP socket, where "
              "every message waits on TCP delayed acknowledgements (Nagle) between Postfix "
              "and the libmilter filter: about 100 ms per message and session for any filter "
              "that adds a header (a session does about 10 messages/s).", "",
              "authgate: SPF (MAIL FROM and HELO) + DKIM verify + a size rule + a per-sender "
              "rate rule, TrustedNetworks none (127.0.0.1 is otherwise trusted and not "
              "checked), DMARC off; OpenDKIM: Mode v.  Both ask the same private unbound "
              "(TTL 3600, cache warm).", "", "Checks (one message each, before the runs):", ""]
    lines += ["- " + s for s in checks]
    if notes:
        lines += [""] + ["- " + s for s in notes]
    write_md(ctx, "e2e", "End to end: smtp-source → Postfix → smtp-sink", lines)
    for c in cfgs:
        c.pf.stop()
    for d in daemons:
        d.stop()
    if nm:
        cfgs[1].daemon.stop()
    sink.stop()


# ---------------------------------------------------------------------------
# milter


def need_milterload():
    p = B.bench_tool("milterload")
    if not p:
        raise Skipped("skipped: tests/bench/milterload is not built (`make bench`)")
    return p


def ml_run(ml, sock, pid, msgfiles, n, what, **kw):
    """One milterload run against the daemon PID; the result dict with
    cpu_ms (per message) added.  Raises on errors."""
    c0 = B.cpu_ms(pid)
    res, r = B.milterload(ml, sock, msgfiles, n=n, **kw)
    c1 = B.cpu_ms(pid)
    if res is None or r.returncode != 0 or res.get("errors"):
        raise RuntimeError("milterload against %s failed:\n%s" % (what, agtest.fmt_run(r)))
    res["cpu_ms"] = (c1 - c0) / res["msgs"] if res.get("msgs") else None
    res["rss_kb"] = B.rss_kb(pid)
    return res


def accepted(res):
    return res.get("accept", 0) + res.get("continue", 0)


def milter(ctx):
    ml = need_milterload()
    n = 500 if ctx.quick else 5000
    rounds = 3 if ctx.quick else 5
    msg = ctx.msgfile(4096, "rsa")
    peers = []
    notes = []
    ag = B.authgate(ctx.path("milter-ag"), ctx.dns, socket_kind="unix").start()
    peers.append(["authgate", ag.socket, ag.proc])
    nm = B.bench_tool("nullmilter")
    if nm:
        d = B.NullMilter(ctx.path("milter-null"), nm).start()
        peers.append(["nullmilter", d.socket, d])
    else:
        notes.append("nullmilter: skipped, tests/bench/nullmilter is not built (make bench)")
    if os.access(B.OPENDKIM, os.X_OK):
        od = B.OpenDKIM(ctx.path("milter-odkim"), ctx.dns).start()
        peers.append(["OpenDKIM", od.socket, od])
    else:
        notes.append("OpenDKIM: skipped, not installed")
    runs = {p[0]: [] for p in peers}
    for label, sock, d in peers:        # warm up, and check what it does
        res = ml_run(ml, sock, d.pid, [msg], 200, label)
        if accepted(res) != res["msgs"]:
            raise RuntimeError("%s did not accept every message: %r" % (label, res))
        hdrs = res.get("addheader", 0) + res.get("insheader", 0)
        notes.append("%s: warm-up of 200: %d accepted, %d headers added" % (
            label, accepted(res), hdrs))
    for k in range(rounds):
        for label, sock, d in peers:
            res = ml_run(ml, sock, d.pid, [msg], n, label)
            if accepted(res) != res["msgs"]:
                notes.append("%s, round %d: only %d of %d accepted: %r" % (
                    label, k + 1, accepted(res), res["msgs"], res))
            B.note("milter round %d %-10s %8.1f msgs/s %.3f ms CPU/msg" % (
                k + 1, label, res["rate"], res["cpu_ms"] or 0))
            runs[label].append(res)
    med = {lb: {f: B.median([r.get(f) for r in rs]) for f in ("rate", "cpu_ms", "p50", "p99")}
           for lb, rs in runs.items()}
    null = med.get("nullmilter", {})
    odk = med.get("OpenDKIM", {})
    rows = []
    for label, _, _ in peers:
        m = med[label]
        rates = [r["rate"] for r in runs[label]]
        rows.append([label, m["rate"], "%.0f–%.0f" % (min(rates), max(rates)),
                     ratio(m["rate"], null.get("rate")), ratio(m["rate"], odk.get("rate")),
                     "%.3f" % m["p50"], "%.3f" % m["p99"], "%.3f" % m["cpu_ms"],
                     ratio(m["cpu_ms"], null.get("cpu_ms"))])
    lines = B.table(["filter", "msgs/s (median)", "range", "× nullmilter", "× OpenDKIM",
                     "p50 ms", "p99 ms", "CPU ms/msg", "CPU × nullmilter"], rows)
    lines += ["", "milterload -c 10 -p 1 -n %d (a new connection per message), the same %d-byte "
              "RSA-2048-signed message, client %s; %d rounds taken in turn, medians.  CPU per "
              "message: utime+stime of the daemon from /proc over the run.  authgate as in "
              "e2e (SPF, DKIM, size and rate rules)." % (n, os.path.getsize(msg), B.CLIENT,
                                                         rounds), ""]
    lines += ["- " + s for s in notes]
    write_md(ctx, "milter", "Milter level (milterload)", lines)
    for _, _, d in peers:
        d.stop()


# ---------------------------------------------------------------------------
# scale

def plot(ctx, name, title, xlabel, dat, logx=True):
    """NAME.png from NAME.dat: msgs/s on the left axis, RSS MB on the right."""
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot not installed: no plot"
    png = os.path.join(ctx.out, name + ".png")
    script = "\n".join([
        "set terminal pngcairo size 800,480 font ',10'",
        "set output '%s'" % png,
        "set title '%s'" % title,
        "set xlabel '%s'" % xlabel,
        "set ylabel 'messages/s'", "set y2label 'RSS (MB)'",
        "set ytics nomirror", "set y2tics", "set yrange [0:*]", "set y2range [0:*]",
        "set key outside bottom center horizontal",
        "set grid",
        "set logscale x" if logx else "",
        "plot '%s' using 1:2 with linespoints lw 2 title 'messages/s', "
        "'' using 1:($3/1024) axes x1y2 with linespoints lw 2 title 'RSS MB'" % dat,
    ])
    r = agtest.run([gp], input=script, timeout=60)
    return "" if r.returncode == 0 else "gnuplot failed: " + r.stderr[-300:]


def write_dat(ctx, name, cols, rows):
    p = os.path.join(ctx.out, name + ".dat")
    with open(p, "w") as f:
        f.write("# " + " ".join(cols) + "\n")
        for r in rows:
            f.write(" ".join(str(x) for x in r) + "\n")
    return p


def sweep(ctx, name, title, xlabel, pts, lines):
    """Write NAME.dat/png from PTS [(x, result dict)] and add a table."""
    cols = ["x", "msgs_per_s", "rss_kb", "p50_ms", "p99_ms", "cpu_ms_per_msg"]
    rows = [[x, "%.1f" % r["rate"], r["rss_kb"], r["p50"], r["p99"], "%.3f" % r["cpu_ms"]]
            for x, r in pts]
    dat = write_dat(ctx, name, cols, rows)
    err = plot(ctx, name, title, xlabel, dat)
    lines += ["", "### " + title, ""]
    lines += B.table([xlabel, "msgs", "msgs/s", "p50 ms", "p99 ms", "CPU ms/msg",
                      "RSS after (MB)"] + (["extra"] if any("extra" in r for _, r in pts) else []),
                     [[str(x), str(r["msgs"]), r["rate"], "%.2f" % r["p50"], "%.2f" % r["p99"],
                       "%.3f" % r["cpu_ms"], "%.1f" % (r["rss_kb"] / 1024.0)]
                      + ([r.get("extra", "")] if any("extra" in q for _, q in pts) else [])
                      for x, r in pts])
    lines += ["", "Data: `%s.dat`, plot: `%s.png`%s" % (name, name, ("  (" + err + ")") if err else "")]


def fresh_authgate(ctx, name, conf=None):
    return B.authgate(ctx.path(name), ctx.dns, conf=conf, socket_kind="unix")


def scale(ctx):
    ml = need_milterload()
    q = ctx.quick
    lines = ["authgate alone (SPF, DKIM, size and rate rules as in e2e), milterload -c 10 -p 1 "
             "unless said otherwise, one run per point; RSS of the daemon after the run."]

    # message size
    ag = fresh_authgate(ctx, "scale-size").start()
    sizes = [(1024, 300, 5000), (10240, 300, 5000), (102400, 100, 2000),
             (1048576, 20, 300), (10485760, 4, 40)]
    pts = []
    for size, nq, nf in sizes:
        msg = ctx.msgfile(size, "rsa")
        n = nq if q else nf
        B.note("scale: size %d, %d messages" % (size, n))
        r = ml_run(ml, ag.socket, ag.proc.pid, [msg], n, "authgate",
                   conc=min(10, n))
        r["extra"] = "%.1f MB/s" % (r["rate"] * os.path.getsize(msg) / 1e6)
        pts.append((size, r))
    sweep(ctx, "scale-size", "Throughput vs message size", "message bytes", pts, lines)
    ag.stop()

    # concurrency
    ag = fresh_authgate(ctx, "scale-conc").start()
    pts = []
    msg = ctx.msgfile(4096, "rsa")
    for conc in (1, 10, 50, 200, 500):
        n = max(conc * 2, 300) if q else max(conc * 10, 3000)
        B.note("scale: concurrency %d, %d messages" % (conc, n))
        r = ml_run(ml, ag.socket, ag.proc.pid, [msg], n, "authgate", conc=conc)
        try:
            r["extra"] = "%d threads after" % agtest.proc_stats(ag.proc.pid)["threads"]
        except (OSError, KeyError):
            pass
        pts.append((conc, r))
    sweep(ctx, "scale-conc", "Throughput vs concurrent connections", "connections", pts, lines)
    ag.stop()

    # number of rules
    ag = fresh_authgate(ctx, "scale-rules")
    pts = []
    have = 0
    for count in (10, 1000, 10000, 100000):
        B.bulk_rules(ag, count - have, start=have + 1)
        have = count
        t0 = time.monotonic()
        ag.start(timeout=120)
        t_start = time.monotonic() - t0
        n = 300 if q else 3000
        B.note("scale: %d rules, %d messages" % (count, n))
        r = ml_run(ml, ag.socket, ag.proc.pid, [msg], n, "authgate")
        r["extra"] = "ready in %.1f s" % t_start
        pts.append((count, r))
        ag.stop()
    sweep(ctx, "scale-rules", "Throughput vs number of rules (+1 that applies)", "rules",
          pts, lines)

    # rate keys
    # the rate table alone: SPF and DKIM off, so that a million messages
    # take minutes, not a quarter of an hour
    ag = fresh_authgate(ctx, "scale-keys", conf={"SPFCheck": "no", "DKIMVerify": "no"}).start()
    pts = []
    unsigned = ctx.msgfile(4096, None)
    keylist = (1, 1000, 10000) if q else (1, 1000, 100000, 1000000)
    for keys in keylist:
        n = max(keys, 300 if q else 5000)
        B.note("scale: %d rate keys, %d messages" % (keys, n))
        r = ml_run(ml, ag.socket, ag.proc.pid, [unsigned], n, "authgate", perconn=10,
                   sender="u%d@example.com", keys=keys, timeout=3600)
        pts.append((keys, r))
    sweep(ctx, "scale-keys", "Throughput vs distinct rate keys (per-sender rule)",
          "distinct senders", pts, lines)
    lines += ["", "Rate keys: authgate with SPF and DKIM off (the size and rate rules on), an "
              "unsigned 4 KB message, 10 messages per connection, MAIL FROM u%d@example.com with %d = message number mod keys, so "
              "every key is used at least once; a rule limits each sender."]
    ag.stop()
    write_md(ctx, "scale", "Scale (authgate)", lines)

# ---------------------------------------------------------------------------
# memory


def memory(ctx):
    """A million messages through one daemon, in 20 runs: RSS, open files
    and threads after each, so that growth per message would show."""
    ml = need_milterload()
    total = 20000 if ctx.quick else 1000000
    steps = 20
    ag = fresh_authgate(ctx, "memory").start()
    msg = ctx.msgfile(4096, "rsa")
    pid = ag.proc.pid
    # 1,000 senders in turn, so the rate table (a per-sender rule) and the
    # history writer see many keys, not one
    start = agtest.proc_stats(pid)
    rows = [[0, 0, B.rss_kb(pid), start.get("fds", 0), start.get("threads", 0), "-"]]
    sent = 0
    t0 = time.monotonic()
    for k in range(steps):
        n = total // steps
        r = ml_run(ml, ag.socket, pid, [msg], n, "authgate", sender="u%d@example.org",
                   keys=1000, timeout=3600)
        sent += r["msgs"]
        st = agtest.proc_stats(pid)
        rows.append([k + 1, sent, r["rss_kb"], st.get("fds", 0), st.get("threads", 0),
                     "%.1f" % r["rate"]])
        B.note("memory: %d messages, RSS %d kB, %.1f msgs/s" % (sent, r["rss_kb"], r["rate"]))
    took = time.monotonic() - t0
    ag.stop()
    dat = write_dat(ctx, "memory", ["step", "messages", "rss_kb", "fds", "threads",
                                    "msgs_per_s"], rows)
    err = ""
    gp = shutil.which("gnuplot")
    if gp:
        png = os.path.join(ctx.out, "memory.png")
        script = "\n".join([
            "set terminal pngcairo size 800,480 font ',10'",
            "set output '%s'" % png,
            "set title 'authgate RSS over %d messages'" % total,
            "set xlabel 'messages'", "set ylabel 'RSS (MB)'", "set yrange [0:*]",
            "set grid", "set key off",
            "plot '%s' using 2:($3/1024) with linespoints lw 2" % dat])
        r = agtest.run([gp], input=script, timeout=60)
        err = "" if r.returncode == 0 else "gnuplot failed: " + r.stderr[-300:]
    else:
        err = "gnuplot not installed: no plot"
    rss = [row[2] for row in rows[1:]]
    half = rss[len(rss) // 2:]
    lines = B.table(["after messages", "RSS (MB)", "open files", "threads", "msgs/s"],
                    [[str(row[1]), "%.1f" % (row[2] / 1024.0), str(row[3]), str(row[4]),
                      row[5]] for row in rows])
    lines += ["", "RSS at rest before the first message: %.1f MB; over the second half of "
              "the run (%d to %d messages): %.1f to %.1f MB.  %d messages in %.0f s."
              % (rows[0][2] / 1024.0, rows[len(rows) // 2][1], sent, min(half) / 1024.0,
                 max(half) / 1024.0, sent, took),
              "",
              "authgate as in e2e (SPF, DKIM, size and rate rules), milterload -c 10 -p 1, the "
              "4 KB RSA-signed message, MAIL FROM u0..u999@example.org, in %d runs of %d; "
              "after each run the daemon's VmRSS, open files and threads from /proc."
              % (steps, total // steps),
              "", "Data: `memory.dat`, plot: `memory.png`%s" % (("  (" + err + ")") if err else "")]
    write_md(ctx, "memory", "Memory over %d messages" % total, lines)


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(prog="tests/bench/run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke version of each")
    ap.add_argument("--out", default=os.path.join(agtest.SRCDIR, "docs", "bench"),
                    help="where results go (default docs/bench/)")
    ap.add_argument("sections", nargs="*", metavar="SECTION",
                    help="any of: " + " ".join(SECTIONS) + " (default: all)")
    a = ap.parse_args()
    bad = [s for s in a.sections if s not in SECTIONS]
    if bad:
        ap.error("unknown section %s (sections: %s)" % (", ".join(bad), " ".join(SECTIONS)))
    want = [s for s in SECTIONS if s in a.sections] if a.sections else list(SECTIONS)
    if not os.access(agtest.AUTHGATE, os.X_OK):
        sys.exit("tests/bench/run: %s is not built (make)" % agtest.AUTHGATE)
    os.makedirs(a.out, exist_ok=True)
    make_bench()
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit("killed by signal %d" % s))
    m = ["# Benchmark machine", ""] + B.machine() + [
        "", "Run: `tests/bench/run %s`" % " ".join((["--quick"] if a.quick else []) + want)]
    with open(os.path.join(a.out, "machine.md"), "w") as f:
        f.write("\n".join(m) + "\n")
    print("\n".join(m) + "\n")
    ctx = Ctx(a.quick, a.out)
    failed = 0
    t00 = time.monotonic()
    try:
        for s in want:
            t0 = time.monotonic()
            B.note("== %s" % s)
            try:
                globals()[s](ctx)
            except Skipped as e:
                write_md(ctx, s, s, [str(e)])
            except Exception:
                failed += 1
                tb = traceback.format_exc()
                B.note(tb)
                write_md(ctx, s, s, ["FAILED:", "", "```", tb[-3000:], "```"])
            B.note("== %s took %.0f s" % (s, time.monotonic() - t0))
    except KeyboardInterrupt:
        failed += 1
    finally:
        agtest.run_cleanups()
    B.note("all took %.0f s" % (time.monotonic() - t00))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
