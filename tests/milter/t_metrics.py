#!/usr/bin/python3
"""The Prometheus endpoint (MetricsListen): every scrape parsed by a
strict reader of the text format 0.0.4 (and by Prometheus' own Python
parser, python3-prometheus-client, when installed); messages that end in
accept, reject (SPF fail), tempfail (a rate rule) and abort move
authgate_messages_total, the SPF and DKIM results, the rule's rate hits
and the Redis error counters by exactly what they should; DNS queries
move the query counter and the latency histogram; the connection and
in-flight gauges follow a session and come back to 0; SIGHUP moves
reloads_total.  The HTTP side: HEAD, 404, 405, 400 for garbage and for
a head over 8 KB; a client that sends nothing delays no scrape and is
cut off at the 5 s deadline; with every slot held by silent clients a
scrape waits at most for the deadline; a port already taken stops the
daemon at start with a clear error; a database that is not one counts
store errors.

The rate counters live in a Redis that is not running (RateBackend on
a closed port, On-RateBackendError local): each rate decision is one
Redis error and one local fallback, counted exactly, while the local
engine still refuses the second message."""

import math
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agdns  # noqa: E402
from agtest import check, check_eq, new_qid  # noqa: E402

suite = agtest.Suite("milter: Prometheus metrics endpoint", case_timeout=60)
S = {}

CLIENT = "192.0.2.10"
ZONES = {
    "pass.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "fail.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")],
}
DEADLINE = 5.0          # AG_MHTTP_DEADLINE_MS
SLOTS = 8               # AG_MHTTP_CLIENTS
CTYPE = "text/plain; version=0.0.4; charset=utf-8"


@suite.setup
def setup():
    agtest.require_authgate()
    S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), ZONES).start()
    S["mport"] = agtest.free_port()
    ag = agtest.Authgate(agtest.tmpdir("ag"), conf={
        "SPFCheck": "yes", "SPFCheckHelo": "yes", "DNSServer": S["dns"].server,
        "DNSTimeout": "1000", "MetricsListen": "127.0.0.1:%d" % S["mport"],
        "RateBackend": "redis://127.0.0.1:%d" % agtest.free_port(),
        "RateBackendTimeout": "100", "On-RateBackendError": "local",
        "RateCheckpointInterval": "3600"})
    S["ag"] = ag
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["rate_rule"] = ag.add_rule("--match", "sender-domain=rate.example",
                                 "--rate", "messages:1/1h:client-ip")
    ag.start()


# ---------------------------------------------------------------------------
# HTTP and the text format

def http(raw, timeout=10.0, port=None):
    """Send RAW bytes (None: send nothing) and read to EOF: (status code
    or None, {header: value}, body bytes, seconds taken)."""
    t0 = time.monotonic()
    data = agtest.exchange("127.0.0.1", port or S["mport"], raw, timeout)
    took = time.monotonic() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0]) if lines else None
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return (int(m.group(1)) if m else None), hdrs, body, took


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'(%s)="((?:[^"\\\n]|\\[\\"n])*)"' % NAME
SERIES = re.compile(r"^(%s)(?:\{(?:%s(?:,%s)*)?\})? (\S+)$" % (NAME, LABEL, LABEL))
LABEL_RX = re.compile(LABEL)


def parse_text(text):
    """Read TEXT strictly as format 0.0.4: {(name, ((label, value), ...)):
    float}.  Raises ValueError naming the first thing wrong."""
    if not text.endswith("\n"):
        raise ValueError("the text does not end with a line feed")
    types, out, family = {}, {}, None
    for n, ln in enumerate(text[:-1].split("\n"), 1):
        if ln.startswith("# HELP "):
            if not re.match(r"^# HELP %s \S" % NAME, ln):
                raise ValueError("line %d: bad HELP: %r" % (n, ln))
            continue
        if ln.startswith("# TYPE "):
            m = re.match(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME, ln)
            if not m or m.group(1) in types:
                raise ValueError("line %d: bad or repeated TYPE: %r" % (n, ln))
            family = m.group(1)
            types[family] = m.group(2)
            continue
        if ln.startswith("#") or ln == "":
            raise ValueError("line %d: stray comment or empty line: %r" % (n, ln))
        m = SERIES.match(ln)
        if not m:
            raise ValueError("line %d: not a series: %r" % (n, ln))
        name = m.group(1)
        # no timestamps are written: the value is the last field
        value = ln.rsplit(" ", 1)[1]
        labels = tuple(LABEL_RX.findall(ln[len(name):].rsplit(" ", 1)[0]))
        if family is None:
            raise ValueError("line %d: series before any TYPE: %r" % (n, ln))
        suffixes = ("_bucket", "_sum", "_count") if types[family] == "histogram" else ("",)
        if not any(name == family + sfx for sfx in suffixes):
            raise ValueError("line %d: %s is not of family %s" % (n, name, family))
        if len({k for k, _ in labels}) != len(labels):
            raise ValueError("line %d: a label twice: %r" % (n, ln))
        key = (name, labels)
        if key in out:
            raise ValueError("line %d: series repeated: %r" % (n, ln))
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError("line %d: bad value: %r" % (n, ln))
    for fam, ty in types.items():
        if ty == "counter" and not fam.endswith("_total"):
            raise ValueError("counter %s does not end in _total" % fam)
        if ty == "histogram":
            check_histogram(fam, out)
    return out


def check_histogram(fam, series):
    """Buckets sorted by le, cumulative, +Inf last and equal to _count."""
    buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in series.items()
                     if n == fam + "_bucket")
    if not buckets or not math.isinf(buckets[-1][0]):
        raise ValueError("%s: no +Inf bucket" % fam)
    if any(b[1] < a[1] for a, b in zip(buckets, buckets[1:])):
        raise ValueError("%s: buckets not cumulative: %r" % (fam, buckets))
    if series.get((fam + "_count", ())) != buckets[-1][1]:
        raise ValueError("%s: _count is not the +Inf bucket" % fam)
    if (fam + "_sum", ()) not in series:
        raise ValueError("%s: no _sum" % fam)


def prom_client_check(text):
    """Prometheus' own Python parser, when installed: None if it reads
    TEXT, else what it said (a skip when it is not installed)."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return "skip"
    try:
        fams = list(text_string_to_metric_families(text))
    except Exception as e:  # noqa: BLE001 - any parse error is the answer
        return "prometheus_client: %s" % e
    return None if fams else "prometheus_client: no families"


def scrape(what="scrape"):
    """GET /metrics, checked (status, type, both parsers): the series."""
    st, hdrs, body, _ = http(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
    check_eq("%s: status" % what, st, 200, fatal=True)
    check_eq("%s: Content-Type" % what, hdrs.get("content-type"), CTYPE)
    check_eq("%s: Content-Length is the body's" % what,
             hdrs.get("content-length"), str(len(body)))
    text = body.decode("utf-8")
    try:
        series = parse_text(text)
    except ValueError as e:
        check("%s: the text format 0.0.4 is valid" % what, False, str(e) + "\n" + text[:3000],
              fatal=True)
    pc = prom_client_check(text)
    if pc != "skip":
        check("%s: prometheus_client parses it" % what, pc is None, pc)
    return series


def get(series, name, **labels):
    """The value of one series (LABELS in the order they are rendered);
    a series that is not there is a failing check (and None)."""
    key = (name, tuple(labels.items()))
    if key not in series:
        check("series %s%s present" % (name, labels or ""), False,
              got=sorted(k for k in series if k[0] == name))
        return None
    return series[key]


def check_moved(before, after, name, want, new=False, **labels):
    """NAME{LABELS} grew by WANT from BEFORE to AFTER; NEW: a series that
    may not exist before (a rule's first hit makes it)."""
    if new and (name, tuple(labels.items())) not in before:
        a = 0.0
    else:
        a = get(before, name, **labels)
    b = get(after, name, **labels)
    if a is None or b is None:
        return
    check_eq("%s%s moved by %s" % (name, labels or "", want), b - a, want)


def wait_series(name, want, timeout=5.0, **labels):
    """Scrape until NAME{LABELS} equals WANT (for gauges that change when
    a thread of the daemon gets to it); returns the last value."""
    last = [None]

    def ok():
        last[0] = get(scrape("wait %s" % name), name, **labels)
        return last[0] == want
    agtest.wait_until(ok, timeout, 0.1)
    return last[0]


# ---------------------------------------------------------------------------
# mail

def send(sender, qid=None):
    c = agtest.open_session(S["ag"], address=CLIENT)
    h, b = agtest.make_message("metrics", sender=sender.strip("<>"))
    t = c.transaction(sender, ["<bob@example.net>"], h, b, queue_id=qid or new_qid())
    c.quit()
    return t


@suite.case
def the_endpoint_answers_at_start():
    s = scrape("first scrape")
    v = agtest.authgate_version() or ""
    check_eq("build_info names the version", get(s, "authgate_build_info",
             version=v.split(" ")[-1]), 1.0)
    st = get(s, "authgate_start_time_seconds")
    check("start time is now-ish", st is not None and abs(st - time.time()) < 120, got=st)
    for a in ("accept", "tempfail", "reject", "discard", "quarantine", "abort"):
        check_eq("messages{action=%s} starts at 0" % a,
                 get(s, "authgate_messages_total", action=a), 0.0)
    check_eq("no connection yet", get(s, "authgate_connections"), 0.0)
    check_eq("the rules were loaded once", get(s, "authgate_reloads_total", what="policy"), 1.0)


@suite.case
def messages_move_the_counters_exactly():
    ag = S["ag"]
    rid = S["rate_rule"]
    before = scrape("before")
    t = send("<alice@pass.example>")
    check("SPF pass: accepted", t.accepted, got=t)
    t = send("<alice@fail.example>")
    check("SPF fail: rejected at MAIL", t.stage == "mail" and t.final.code == "550", got=t)
    t = send("<alice@rate.example>")
    check("rate rule, first message: accepted", t.accepted, got=t)
    t = send("<alice@rate.example>")
    check("rate rule, second message: 451 4.7.1", t.stage == "mail" and
          t.final.code == "451" and t.final.xcode == "4.7.1", got=t)
    # an aborted transaction
    c = agtest.open_session(ag, address=CLIENT)
    c.set_queue_id(new_qid())
    check("abort: MAIL goes on", c.mail("<alice@pass.example>").passes)
    c.abort()
    c.quit()
    after = scrape("after")
    check_moved(before, after, "authgate_messages_total", 2, action="accept")
    check_moved(before, after, "authgate_messages_total", 1, action="reject")
    check_moved(before, after, "authgate_messages_total", 1, action="tempfail")
    check_moved(before, after, "authgate_messages_total", 1, action="abort")
    check_moved(before, after, "authgate_messages_total", 0, action="quarantine")
    R = "authgate_auth_results_total"
    # pass.example twice (one aborted), fail.example, rate.example once (no record)
    check_moved(before, after, R, 2, method="spf", identity="mfrom", result="pass")
    check_moved(before, after, R, 1, method="spf", identity="mfrom", result="fail")
    check_moved(before, after, R, 1, method="spf", identity="mfrom", result="none")
    check_moved(before, after, R, 4, method="spf", identity="helo", result="none")
    # the two accepted messages are unsigned: dkim=none each
    check_moved(before, after, R, 2, method="dkim", result="none")
    check_moved(before, after, R, 0, method="dkim", result="pass")
    check_moved(before, after, "authgate_rate_limit_hits_total", 1, new=True, rule=rid)
    check_moved(before, after, "authgate_rate_limit_hits_total", 0, rule="other")
    # two rate decisions, each one failed Redis call counted locally
    check_moved(before, after, "authgate_redis_errors_total", 2)
    check_moved(before, after, "authgate_redis_local_fallbacks_total", 2)
    check_moved(before, after, "authgate_store_errors_total", 0)
    # DNS: SPF asked unbound (TTL 0: nothing cached)
    q = get(after, "authgate_dns_queries_total") - get(before, "authgate_dns_queries_total")
    h = get(after, "authgate_dns_query_duration_seconds_count") - \
        get(before, "authgate_dns_query_duration_seconds_count")
    check("DNS queries moved", q >= 4, got=q)
    check("the DNS histogram counted them", h >= 4 and h <= q, got=(h, q))
    check("the histogram's sum moved", get(after, "authgate_dns_query_duration_seconds_sum") >
          get(before, "authgate_dns_query_duration_seconds_sum"))
    check_moved(before, after, "authgate_dns_errors_total", 0, kind="timeout")


@suite.case
def gauges_follow_a_session():
    ag = S["ag"]
    c = agtest.open_session(ag, address=CLIENT)
    check_eq("one session open: connections 1", wait_series("authgate_connections", 1.0), 1.0)
    c.set_queue_id(new_qid())
    check("MAIL goes on", c.mail("<alice@pass.example>").passes)
    check_eq("a transaction open: in flight 1",
             wait_series("authgate_messages_in_flight", 1.0), 1.0)
    c.abort()
    check_eq("aborted: in flight 0", wait_series("authgate_messages_in_flight", 0.0), 0.0)
    c.quit()
    check_eq("closed: connections back to 0", wait_series("authgate_connections", 0.0), 0.0)


@suite.case
def sighup_moves_reloads():
    before = scrape("before SIGHUP")
    mark = S["ag"].log_mark()
    S["ag"].reload()
    S["ag"].wait_log("configuration reloaded", since=mark)
    after = scrape("after SIGHUP")
    check_moved(before, after, "authgate_reloads_total", 1, what="config")
    check_moved(before, after, "authgate_reloads_total", 1, what="policy")
    check_eq("counters survive a reload", get(after, "authgate_messages_total", action="reject"),
             get(before, "authgate_messages_total", action="reject"))
    check_moved(before, after, "authgate_reload_failures_total", 0, what="config")
    # a config file that does not parse: the reload fails, what ran stays
    a = S["ag"]
    good = a.settings["DNSTimeout"]
    a.write_config(DNSTimeout="not-a-number")
    mark = a.log_mark()
    a.reload()
    a.wait_log("reload failed, keeping the running config", since=mark)
    failed = scrape("after a failed SIGHUP")
    check_moved(after, failed, "authgate_reload_failures_total", 1, what="config")
    check_moved(after, failed, "authgate_reloads_total", 0, what="config")
    a.write_config(DNSTimeout=good)
    mark = a.log_mark()
    a.reload()
    a.wait_log("configuration reloaded", since=mark)


@suite.case
def http_answers():
    st, hdrs, body, _ = http(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    check_eq("HEAD: 200", st, 200)
    check_eq("HEAD: Content-Type", hdrs.get("content-type"), CTYPE)
    check("HEAD: a length, no body", int(hdrs.get("content-length", "0")) > 1000 and body == b"",
          got=(hdrs, body[:100]))
    st, _, body, _ = http(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
    check("HTTP/1.0 with a query string: 200", st == 200 and b"authgate_messages_total" in body,
          got=(st, body[:200]))
    st, hdrs, body, _ = http(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    check_eq("another path: 404", st, 404)
    st, hdrs, body, _ = http(b"GET /metricsX HTTP/1.1\r\n\r\n")
    check_eq("a longer path: 404", st, 404)
    st, hdrs, _, _ = http(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    check_eq("POST: 405", st, 405)
    check_eq("405 says what is allowed", hdrs.get("allow"), "GET, HEAD")
    for label, raw in (("garbage", b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n"),
                       ("no version", b"GET /metrics\r\n\r\n"),
                       ("HTTP/2", b"GET /metrics HTTP/2.0\r\n\r\n"),
                       ("lower-case method", b"get /metrics HTTP/1.1\r\n\r\n"),
                       ("absolute target", b"GET http://x/metrics HTTP/1.1\r\n\r\n"),
                       ("NUL in the line", b"GET /met\x00rics HTTP/1.1\r\n\r\n"),
                       ("cut short", b"GET /metrics HT")):
        if label == "cut short":
            # half a request line, then our side closes: 400 all the same
            with socket.create_connection(("127.0.0.1", S["mport"]), timeout=10) as s:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                data = s.recv(200)
            check("%s: 400" % label, data.startswith(b"HTTP/1.1 400 "), got=data)
            continue
        st, _, _, _ = http(raw)
        check_eq("%s: 400" % label, st, 400)
    st, _, _, took = http(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 9000)
    check_eq("a head over 8 KB: 400", st, 400)
    check("answered at once, not at the deadline", took < 2.0, got=took)
    scrape("still serving after all that")


@suite.case
def a_silent_client_delays_nobody():
    with socket.create_connection(("127.0.0.1", S["mport"]), timeout=10) as idle:
        t0 = time.monotonic()
        scrape("beside a silent client")
        took = time.monotonic() - t0
        check("the scrape beside it took under 1 s", took < 1.0, got=took)
        idle.settimeout(DEADLINE + 3)
        try:
            data = idle.recv(100)
        except socket.timeout:
            data = None
        took = time.monotonic() - t0
        check("the silent client is closed at the deadline",
              data == b"" and DEADLINE - 1 <= took <= DEADLINE + 2, got=(data, took))


@suite.case
def all_slots_held_a_scrape_waits_at_most_the_deadline():
    idle = [socket.create_connection(("127.0.0.1", S["mport"]), timeout=10) for _ in range(SLOTS)]
    try:
        time.sleep(0.3)         # let the server take them all
        st, _, _, took = http(b"GET /metrics HTTP/1.1\r\n\r\n", timeout=DEADLINE + 5)
        check_eq("the extra scrape gets its answer", st, 200)
        check("it waited no longer than the deadline", took <= DEADLINE + 1.5, got=took)
    finally:
        for s in idle:
            s.close()
    check("the milter kept answering meanwhile", send("<alice@pass.example>").accepted)


@suite.case
def a_taken_port_stops_the_start():
    other = agtest.Authgate(agtest.tmpdir("ag2"), name="authgate2", db=S["ag"].db, conf={
        "MetricsListen": "127.0.0.1:%d" % S["mport"]})
    other.start(wait=False)
    ok = agtest.wait_until(lambda: not other.alive(), 10)
    check("the second daemon exits", ok)
    check_eq("with status 1", other.proc.returncode(), 1)
    check("and says why", other.wait_log(r"cannot listen on MetricsListen 127\.0\.0\.1:%d: "
                                         r"Address already in use" % S["mport"], timeout=2),
          got=agtest.tail(other.log_path))
    check("its milter socket was never served", not other.accepts())
    scrape("the first daemon still serves")


@suite.case
def ipv6_listen():
    port = agtest.free_port(socket.AF_INET6, "::1")
    ag6 = agtest.Authgate(agtest.tmpdir("ag6"), name="authgate6", conf={
        "MetricsListen": "[::1]:%d" % port})
    r = ag6.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    ag6.start()
    data = agtest.exchange("::1", port, b"GET /metrics HTTP/1.1\r\n\r\n")
    check("[::1]: 200 with the metrics", data.startswith(b"HTTP/1.1 200 ") and
          b"\nauthgate_connections 0\n" in data, got=data[:300])
    check_eq("stops cleanly", ag6.stop(), 0)


@suite.case
def a_broken_database_counts_store_errors():
    d = agtest.tmpdir("agdb")
    db = os.path.join(d, "broken.db")
    with open(db, "wb") as f:
        f.write(b"this is not an SQLite database\n" * 200)
    port = agtest.free_port()
    agb = agtest.Authgate(d, name="authgate-db", db=db, conf={
        "MetricsListen": "127.0.0.1:%d" % port})
    agb.start()
    c = agtest.open_session(agb, address=CLIENT)
    c.set_queue_id(new_qid())
    r = c.mail("<alice@pass.example>")
    check("no policy: MAIL gets 451 4.3.0", r.code == "451" and r.xcode == "4.3.0", got=r)
    c.quit()
    st, _, body, _ = http(b"GET /metrics HTTP/1.1\r\n\r\n", port=port)
    series = parse_text(body.decode())
    n = get(series, "authgate_store_errors_total")
    check("store errors counted", n is not None and n >= 1, got=n)
    check_eq("the tempfail counted", get(series, "authgate_messages_total", action="tempfail"), 1.0)
    check_eq("no policy was loaded", get(series, "authgate_reloads_total", what="policy"), 0.0)
    n = get(series, "authgate_reload_failures_total", what="policy")
    check("the failed reads of the rules counted", n is not None and n >= 1, got=n)
    check_eq("stops cleanly", agb.stop(), 0)


@suite.case
def stops_cleanly_with_a_client_connected():
    idle = socket.create_connection(("127.0.0.1", S["mport"]), timeout=10)
    try:
        check_eq("SIGTERM: exit 0", S["ag"].stop(), 0)
    finally:
        idle.close()


suite.run()
