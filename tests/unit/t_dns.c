/*
 * t_dns.c - unit tests for lib/dns.c: forwarder parsing, name checks,
 * TXT joining, answers from local data, and answers from a real DNS
 * server on loopback: a tiny responder started by the test in a thread
 * (UDP on 127.0.0.1, a free port), answering from a table, with modes
 * chosen by the first label of the name:
 *   dead*      never answers          servfail*  SERVFAIL
 *   refused*   REFUSED                slow*      A 192.0.2.2 after a delay
 *   big.example.   100 TXT records, 1.6 KB in one datagram (the
 *                  responder ignores EDNS sizes; libunbound takes it)
 *   a.example.     A 192.0.2.1        txt.example.  TXT "v=spf1 " "-all"
 *   qT-I.example.  A 10.0.T.I         anything else NXDOMAIN
 * (not under test.: unbound serves that as an empty local zone).
 * Nothing leaves the machine.  Table-driven cases carry a label that a
 * failure names; threads collect their failures for the main thread.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dns.h"
#include "dnscache.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Timing: the per-query timeout used against the responder, and how late
 * an answer to a timeout may be (sanitizers and a loaded CI included). */
#define T_TIMEOUT_MS 300
#define T_MARGIN_MS 150

/* Fail naming LABEL unless status GOT equals WANT. */
static void
check_status(const char *label, ag_status got, ag_status want)
{
	if (got != want) {
		fail_msg("%s: status %s, want %s", label, ag_status_str(got),
		    ag_status_str(want));
	}
}

/* Sleep MS milliseconds. */
static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	(void)nanosleep(&ts, NULL);
}

/* ==== the responder ================================================== */

#define R_MSG_MAX 4096
#define R_PEND_MAX 64

/* An answer held back until DUE (slow* names). */
struct r_pend {
	uint64_t due;
	struct sockaddr_in to;
	uint8_t msg[R_MSG_MAX];
	size_t len;
};

struct responder {
	int udp, stop[2], port;
	unsigned delay_ms;
	pthread_t tid;
	atomic_uint requests;	/* queries received */
	atomic_uint late_sent;	/* held-back answers sent */
	struct r_pend pend[R_PEND_MAX];	/* responder thread only */
	size_t npend;
};

/* The question of a query. */
struct r_q {
	char name[256];		/* lower case, trailing dot */
	int type;
	size_t qend;		/* offset after the question */
};

/* An answer being built. */
struct r_msg {
	uint8_t b[R_MSG_MAX];
	size_t len;
};

/* Parse the question of query M. */
static bool
r_parse(const uint8_t *m, size_t len, struct r_q *q)
{
	size_t i = 12, o = 0, l, k;

	if (len < 12 || m[4] != 0 || m[5] != 1) {
		return false;
	}
	while (i < len && m[i] != 0) {
		l = m[i];
		if (l > 63 || i + 1 + l >= len || o + l + 2 > sizeof(q->name)) {
			return false;
		}
		for (k = 0; k < l; k++) {
			q->name[o++] = (char)tolower(m[i + 1 + k]);
		}
		q->name[o++] = '.';
		i += 1 + l;
	}
	if (i + 5 > len) {
		return false;
	}
	q->name[o] = '\0';
	q->type = m[i + 1] << 8 | m[i + 2];
	q->qend = i + 5;
	return true;
}

/* Start answer B to query M with RCODE: header and question. */
static void
r_start(struct r_msg *b, const uint8_t *m, const struct r_q *q, int rcode)
{
	memset(b->b, 0, 12);
	b->b[0] = m[0];
	b->b[1] = m[1];
	b->b[2] = (uint8_t)(0x80 | (m[2] & 0x79));	/* QR, opcode, RD */
	b->b[3] = (uint8_t)(0x80 | rcode);		/* RA */
	b->b[5] = 1;
	memcpy(b->b + 12, m + 12, q->qend - 12);
	b->len = q->qend;
}

/* Append a record of TYPE (class IN, TTL 300) for the question's name. */
static void
r_add(struct r_msg *b, int type, const void *rdata, size_t rdlen)
{
	const uint8_t h[12] = { 0xc0, 12, (uint8_t)(type >> 8), (uint8_t)type,
		0, 1, 0, 0, 0x01, 0x2c, (uint8_t)(rdlen >> 8), (uint8_t)rdlen };

	if (b->len + 12 + rdlen > sizeof(b->b)) {
		return;
	}
	memcpy(b->b + b->len, h, 12);
	memcpy(b->b + b->len + 12, rdata, rdlen);
	b->len += 12 + rdlen;
	if (++b->b[7] == 0) {
		b->b[6]++;	/* ANCOUNT */
	}
}

/* True if NAME starts with PREFIX. */
static bool
r_prefix(const char *name, const char *prefix)
{
	return strncmp(name, prefix, strlen(prefix)) == 0;
}

/* Names served from the table: fill B; false if NAME is not there. */
static bool
r_table(const struct r_q *q, struct r_msg *b)
{
	static const struct {
		const char *name;
		int type;
		const char *rdata;
		size_t len;
	} tab[] = {
		{ "a.example.", AG_DNS_A, "\xc0\x00\x02\x01", 4 },
		{ "txt.example.", AG_DNS_TXT, "\x07v=spf1 \x04-all", 13 },
		{ "big.example.", AG_DNS_TXT, NULL, 0 },	/* 100 records */
	};
	uint8_t rd[8];
	unsigned t, i;
	int end = 0;

	for (i = 0; i < NELEM(tab); i++) {
		if (strcmp(q->name, tab[i].name) == 0) {
			if (q->type == tab[i].type && tab[i].rdata != NULL) {
				r_add(b, tab[i].type, tab[i].rdata, tab[i].len);
			}
			break;
		}
	}
	for (t = 0; i == 2 && q->type == tab[2].type && t < 100; t++) {
		snprintf((char *)rd, sizeof(rd), "\x03r%02u", t);
		r_add(b, AG_DNS_TXT, rd, 4);
	}
	if (i < NELEM(tab)) {
		return true;
	}
	if (sscanf(q->name, "q%u-%u.example.%n", &t, &i, &end) != 2 ||
	    (size_t)end != strlen(q->name) || t > 255 || i > 255) {
		return false;
	}
	rd[0] = 10;
	rd[1] = 0;
	rd[2] = (uint8_t)t;
	rd[3] = (uint8_t)i;
	if (q->type == AG_DNS_A) {
		r_add(b, AG_DNS_A, rd, 4);
	}
	return true;
}

enum r_when { R_NOW, R_LATER, R_NEVER };

/* Build the answer to query M into B and say when to send it. */
static enum r_when
r_answer(const uint8_t *m, size_t len, struct r_msg *b)
{
	struct r_q q;

	if (!r_parse(m, len, &q) || r_prefix(q.name, "dead")) {
		return R_NEVER;
	}
	r_start(b, m, &q, r_prefix(q.name, "servfail") ? 2 :
	    r_prefix(q.name, "refused") ? 5 : 0);
	if (b->b[3] != 0x80) {
		return R_NOW;	/* SERVFAIL or REFUSED */
	}
	if (r_prefix(q.name, "slow")) {
		if (q.type == AG_DNS_A) {
			r_add(b, AG_DNS_A, "\xc0\x00\x02\x02", 4);
		}
		return R_LATER;
	}
	if (!r_table(&q, b)) {
		b->b[3] |= 3;	/* NXDOMAIN */
	}
	return R_NOW;
}

/* Answer one UDP query, now, later or never. */
static void
r_udp(struct responder *r)
{
	uint8_t m[R_MSG_MAX];
	struct r_msg b;
	struct sockaddr_in from;
	socklen_t flen = sizeof(from);
	struct r_pend *p;
	enum r_when when;
	ssize_t n;

	n = recvfrom(r->udp, m, sizeof(m), 0, (struct sockaddr *)&from, &flen);
	if (n <= 0) {
		return;
	}
	atomic_fetch_add(&r->requests, 1);
	when = r_answer(m, (size_t)n, &b);
	if (when == R_NOW) {
		(void)sendto(r->udp, b.b, b.len, 0, (struct sockaddr *)&from,
		    flen);
	} else if (when == R_LATER && r->npend < R_PEND_MAX) {
		p = &r->pend[r->npend++];
		p->due = ag_dns_now_ms() + r->delay_ms;
		p->to = from;
		memcpy(p->msg, b.b, b.len);
		p->len = b.len;
	}
}

/* Send the held-back answers that are due; milliseconds to the next. */
static int
r_flush(struct responder *r)
{
	uint64_t now = ag_dns_now_ms(), next = UINT64_MAX;
	size_t i = 0;

	while (i < r->npend) {
		if (r->pend[i].due <= now) {
			(void)sendto(r->udp, r->pend[i].msg, r->pend[i].len, 0,
			    (struct sockaddr *)&r->pend[i].to,
			    sizeof(r->pend[i].to));
			atomic_fetch_add(&r->late_sent, 1);
			r->pend[i] = r->pend[--r->npend];
			continue;
		}
		if (r->pend[i].due < next) {
			next = r->pend[i].due;
		}
		i++;
	}
	return next == UINT64_MAX ? -1 : (int)(next - now);
}

/* The responder thread: serve until the stop pipe is written. */
static void *
r_main(void *arg)
{
	struct responder *r = arg;
	struct pollfd pfd[2] = { { r->udp, POLLIN, 0 },
		{ r->stop[0], POLLIN, 0 } };

	for (;;) {
		if ((poll(pfd, 2, r_flush(r)) < 0 && errno != EINTR) ||
		    pfd[1].revents != 0) {
			break;
		}
		if (pfd[0].revents != 0) {
			r_udp(r);
		}
	}
	return NULL;
}

/* Bind a UDP socket on a free port of 127.0.0.1. */
static bool
r_bind(struct responder *r)
{
	struct sockaddr_in sa;
	socklen_t slen = sizeof(sa);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->udp = socket(AF_INET, SOCK_DGRAM, 0);
	if (r->udp < 0 || bind(r->udp, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(r->udp, (struct sockaddr *)&sa, &slen) != 0) {
		close(r->udp);
		return false;
	}
	r->port = ntohs(sa.sin_port);
	return true;
}

/* Start a responder holding slow* answers back DELAY_MS. */
static bool
r_start_server(struct responder *r, unsigned delay_ms)
{
	memset(r, 0, sizeof(*r));
	r->delay_ms = delay_ms;
	r->stop[0] = r->stop[1] = -1;
	if (!r_bind(r)) {
		return false;
	}
	if (pipe(r->stop) == 0 &&
	    pthread_create(&r->tid, NULL, r_main, r) == 0) {
		return true;
	}
	close(r->udp);
	close(r->stop[0]);
	close(r->stop[1]);
	return false;
}

/* Stop the responder and close its sockets. */
static void
r_stop_server(struct responder *r)
{
	(void)write(r->stop[1], "x", 1);
	pthread_join(r->tid, NULL);
	close(r->udp);
	close(r->stop[0]);
	close(r->stop[1]);
}

/* ==== fixtures ======================================================= */

/* A resolver pointed at a fresh responder; set up and torn down by cmocka. */
struct fix {
	unsigned timeout_ms, delay_ms;
	struct responder *r;
	struct ag_dns *d;
};

/* Start the responder and a resolver that uses it. */
static int
fix_setup(void **state)
{
	struct fix *f = *state;
	struct ag_dns_opts o = { NULL, f->timeout_ms };
	char servers[64], err[256] = "cannot start the test DNS server";

	f->d = NULL;
	f->r = calloc(1, sizeof(*f->r));
	if (f->r != NULL && r_start_server(f->r, f->delay_ms)) {
		snprintf(servers, sizeof(servers), "127.0.0.1@%d", f->r->port);
		o.servers = servers;
		if (ag_dns_new(&o, &f->d, err, sizeof(err)) == AG_OK) {
			return 0;
		}
		r_stop_server(f->r);
	}
	free(f->r);
	f->r = NULL;
	print_error("%s\n", err);
	return -1;
}

/* Free the resolver, then stop the responder. */
static int
fix_teardown(void **state)
{
	struct fix *f = *state;

	ag_dns_free(f->d);
	r_stop_server(f->r);
	free(f->r);
	return 0;
}

/* A resolver that only answers from local data (its forwarder is a closed
 * port on loopback), with zone test. static. */
static struct ag_dns *
local_resolver(void)
{
	struct ag_dns_opts o = { "127.0.0.1@9", 300 };
	struct ag_dns *d = NULL;
	char err[256];

	if (ag_dns_new(&o, &d, err, sizeof(err)) != AG_OK) {
		fail_msg("ag_dns_new: %s", err);
	}
	check_status("zone test.", ag_dns_add_local_zone(d, "test.", "static"),
	    AG_OK);
	return d;
}

static uint64_t last_ms;	/* how long query_want's query took */

/* Query NAME/TYPE expecting WANT; returns the result (may be NULL). */
static struct ag_dns_result *
query_want(struct ag_dns *d, const char *label, const char *name, int type,
    uint64_t deadline, ag_status want)
{
	struct ag_dns_result *res = NULL;
	uint64_t t0 = ag_dns_now_ms();
	ag_status st = ag_dns_query(d, name, type, deadline, &res);
	const char *set = res != NULL ? "set" : "NULL";

	last_ms = ag_dns_now_ms() - t0;
	if (st != want || (st == AG_OK || st == AG_NOTFOUND) != (res != NULL)) {
		ag_dns_result_free(res);
		fail_msg("%s: %s: status %s, result %s; want %s", label, name,
		    ag_status_str(st), set, ag_status_str(want));
	}
	return res;
}

/* Query expecting WANT, not looking at the result. */
static void
expect(struct ag_dns *d, const char *label, const char *name, int type,
    uint64_t deadline, ag_status want)
{
	ag_dns_result_free(query_want(d, label, name, type, deadline, want));
}

/* ==== forwarders ===================================================== */

/* Server strings that ag_dns_new accepts and refuses. */
static void
test_forwarders(void **state)
{
	static const struct {
		const char *label, *servers;
		ag_status want;
	} cases[] = {
		{ "v4", "127.0.0.1", AG_OK },
		{ "v4 port", "127.0.0.1@5353", AG_OK },
		{ "v6", "::1", AG_OK },
		{ "v6 port", "::1@5353", AG_OK },
		{ "v6 long", "2001:db8:0:0:0:0:0:1@53", AG_OK },
		{ "two, space", "127.0.0.1@5353 ::1", AG_OK },
		{ "two, comma", "192.0.2.1,192.0.2.2@53", AG_OK },
		{ "mixed separators", " 192.0.2.1 ,\t::1@65535 , ", AG_OK },
		{ "port 1", "192.0.2.1@1", AG_OK },
		{ "host name", "localhost", AG_INVALID },
		{ "three octets", "1.2.3", AG_INVALID },
		{ "octet 256", "1.2.3.256", AG_INVALID },
		{ "v6 two ::", "1::2::3", AG_INVALID },
		{ "v6 scope", "fe80::1%eth0", AG_INVALID },
		{ "bracketed v6", "[::1]:53", AG_INVALID },
		{ "colon port", "127.0.0.1:53", AG_INVALID },
		{ "empty port", "127.0.0.1@", AG_INVALID },
		{ "port 0", "127.0.0.1@0", AG_INVALID },
		{ "port 65536", "127.0.0.1@65536", AG_INVALID },
		{ "port 6 digits", "127.0.0.1@000053", AG_INVALID },
		{ "port junk", "127.0.0.1@53x", AG_INVALID },
		{ "port sign", "127.0.0.1@-53", AG_INVALID },
		{ "two @", "127.0.0.1@53@53", AG_INVALID },
		{ "no address", "@53", AG_INVALID },
		{ "good then bad", "127.0.0.1 nameserver", AG_INVALID },
		{ "semicolon", "127.0.0.1;::1", AG_INVALID },
	};
	char err[256], big[1100];
	struct ag_dns_opts o;
	struct ag_dns *d;
	ag_status st;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		o.servers = cases[i].servers;
		o.timeout_ms = 300;
		d = NULL;
		err[0] = '\0';
		st = ag_dns_new(&o, &d, err, sizeof(err));
		ag_dns_free(d);
		check_status(cases[i].label, st, cases[i].want);
		if ((st == AG_OK) != (d != NULL) ||
		    (st == AG_OK) != (err[0] == '\0')) {
			fail_msg("%s: handle %p, message \"%s\"", cases[i].label,
			    (void *)d, err);
		}
	}
	/* a list longer than the bound */
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big + sizeof(big) - 10, "127.0.0.1", 9);
	o.servers = big;
	d = NULL;
	check_status("list over 1024 bytes", ag_dns_new(&o, &d, err,
	    sizeof(err)), AG_INVALID);
	if (d != NULL) {
		ag_dns_free(d);
		fail_msg("list over 1024 bytes: handle set");
	}
	check_status("no out", ag_dns_new(&o, NULL, err, sizeof(err)),
	    AG_INVALID);
	ag_dns_free(NULL);
}

/* ==== names ========================================================== */

/* A name of LEN characters (< 300) ending in ".test", labels of LABEL. */
static const char *
long_name(char *buf, size_t len, size_t label)
{
	size_t i;

	memset(buf, 'a', len - 5);
	for (i = label; i < len - 5; i += label + 1) {
		buf[i] = '.';
	}
	memcpy(buf + len - 5, ".test", 6);
	return buf;
}

/* Names that are refused before any query, and names just inside. */
static void
test_bad_names(void **state)
{
	static const struct {
		const char *label, *name;
	} bad[] = {
		{ "empty", "" }, { "root only", "." },
		{ "two dots", ".." }, { "leading dot", ".a.test" },
		{ "empty label", "a..test" },
		{ "two trailing dots", "a.test.." }, { "tab", "a\tb.test" },
		{ "newline", "a.test\n" }, { "control", "a\001.test" },
		{ "DEL", "a\177.test" }, { "escape", "a\\.b.test" },
	};
	struct ag_dns *d = local_resolver();
	struct ag_dns_result *res;
	char buf[300];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		expect(d, bad[i].label, bad[i].name, AG_DNS_A, 0, AG_INVALID);
	}
	expect(d, "NULL", NULL, AG_DNS_A, 0, AG_INVALID);
	expect(d, "type 0", "a.test", 0, 0, AG_INVALID);
	expect(d, "type 65536", "a.test", 65536, 0, AG_INVALID);
	check_status("no out", ag_dns_query(d, "a.test", AG_DNS_A, 0, NULL),
	    AG_INVALID);
	check_status("no resolver", ag_dns_query(NULL, "a.test", AG_DNS_A, 0,
	    &res), AG_INVALID);
	/* lengths: 253 (and a trailing dot) is the most; labels 63 */
	expect(d, "253 characters", long_name(buf, 253, 63),
	    AG_DNS_A, 0, AG_NOTFOUND);
	strcat(buf, ".");
	expect(d, "253 and a dot", buf, AG_DNS_A, 0, AG_NOTFOUND);
	expect(d, "254 characters", long_name(buf, 254, 63),
	    AG_DNS_A, 0, AG_INVALID);
	expect(d, "label of 63", long_name(buf, 68, 63), AG_DNS_A,
	    0, AG_NOTFOUND);
	expect(d, "label of 64", long_name(buf, 69, 64), AG_DNS_A,
	    0, AG_INVALID);
	memset(buf, 'a', sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = '\0';
	expect(d, "299 characters", buf, AG_DNS_A, 0, AG_INVALID);
	ag_dns_free(d);
}

/* ==== local data ===================================================== */

/* True if some record of RES has RDATA (LEN bytes). */
static bool
has_rdata(const struct ag_dns_result *res, const void *rdata, size_t len)
{
	size_t i;

	for (i = 0; i < res->n; i++) {
		if (res->rr[i].len == len &&
		    memcmp(res->rr[i].data, rdata, len) == 0) {
			return true;
		}
	}
	return false;
}

/* Records of every kind, NXDOMAIN and no-data, from local data. */
static void
test_local_data(void **state)
{
	static const char *data[] = {
		"a.test. 300 IN A 192.0.2.1",
		"a.test. 300 IN A 192.0.2.2",
		"a.test. 300 IN AAAA 2001:db8::1",
		"mx.test. 300 IN MX 10 mail.test.",
		"txt.test. 300 IN TXT \"v=spf1 \" \"ip4:192.0.2.0/24\" \" -all\"",
		"multi.test. 300 IN TXT \"one\"",
		"multi.test. 300 IN TXT \"two\" \"2\"",
		"1.2.0.192.in-addr.arpa. 300 IN PTR mail.test.",
		"_dmarc.test. 300 IN TXT \"v=DMARC1; p=none\"",
	};
	static const struct {
		const char *label, *name;
		int type;
		ag_status want;
		size_t n;
		bool nx;
		const char *rdata;	/* one of the records, wire form */
		size_t rdlen;
	} cases[] = {
		{ "A", "a.test", AG_DNS_A, AG_OK, 2, 0, "\xc0\x00\x02\x02", 4 },
		{ "trailing dot", "a.test.", AG_DNS_A, AG_OK, 2, 0, "\xc0\0\2\1", 4 },
		{ "upper case", "A.TEST", AG_DNS_A, AG_OK, 2, 0, "\xc0\0\2\1", 4 },
		{ "AAAA", "a.test", AG_DNS_AAAA, AG_OK, 1, 0,
		    "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16 },
		{ "MX", "mx.test", AG_DNS_MX, AG_OK, 1, 0,
		    "\x00\x0a\x04mail\x04test", 13 },
		{ "TXT, three strings", "txt.test", AG_DNS_TXT, AG_OK, 1, 0,
		    "\x07v=spf1 \x10ip4:192.0.2.0/24\x05 -all", 31 },
		{ "TXT, two records", "multi.test", AG_DNS_TXT, AG_OK, 2, 0,
		    "\x03two\x01" "2", 6 },
		{ "PTR", "1.2.0.192.in-addr.arpa", AG_DNS_PTR, AG_OK, 1, 0,
		    "\x04mail\x04test", 11 },
		{ "underscore", "_dmarc.test", AG_DNS_TXT, AG_OK, 1, 0,
		    "\x10v=DMARC1; p=none", 17 },
		{ "NXDOMAIN", "nx.test", AG_DNS_A, AG_NOTFOUND, 0, 1, NULL, 0 },
		{ "NXDOMAIN below", "x.a.test", AG_DNS_A, AG_NOTFOUND, 0, 1, NULL,
		    0 },
		{ "no data (MX of A)", "a.test", AG_DNS_MX, AG_NOTFOUND, 0, 0, NULL,
		    0 },
		{ "no data (A of MX)", "mx.test", AG_DNS_A, AG_NOTFOUND, 0, 0, NULL,
		    0 },
	};
	struct ag_dns *d = local_resolver();
	struct ag_dns_result *res;
	const char *label;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(data); i++) {
		check_status(data[i], ag_dns_add_local(d, data[i]), AG_OK);
	}
	for (i = 0; i < NELEM(cases); i++) {
		label = cases[i].label;
		res = query_want(d, label, cases[i].name, cases[i].type, 0,
		    cases[i].want);
		if (res->n != cases[i].n || res->nxdomain != cases[i].nx ||
		    res->rcode != (cases[i].nx ? 3 : 0) || res->packet == NULL ||
		    res->packet_len < 12 || (res->n == 0) != (res->rr == NULL)) {
			fail_msg("%s: n=%zu nxdomain=%d rcode=%d packet %zu bytes",
			    label, res->n, res->nxdomain, res->rcode,
			    res->packet_len);
		}
		if (cases[i].rdata != NULL && (res->ttl != 300 ||
		    !has_rdata(res, cases[i].rdata, cases[i].rdlen))) {
			fail_msg("%s: ttl %u, or rdata not as expected", label,
			    res->ttl);
		}
		ag_dns_result_free(res);
	}
	ag_dns_free(d);
}

/* Bad local data; data and zones added after the first query work. */
static void
test_local_more(void **state)
{
	struct ag_dns *d = local_resolver();
	struct ag_dns_result *res;
	int saved = dup(2), null = open("/dev/null", O_WRONLY);

	(void)state;
	/* libunbound reports the syntax error on stderr: keep TAP clean */
	(void)dup2(null, 2);
	check_status("bad data", ag_dns_add_local(d, "x.test. IN A 1.2"),
	    AG_INVALID);
	(void)dup2(saved, 2);
	close(saved);
	close(null);
	check_status("bad zone type", ag_dns_add_local_zone(d, "z.", "nope"),
	    AG_INVALID);
	check_status("NULL data", ag_dns_add_local(d, NULL), AG_INVALID);
	expect(d, "before", "late.test", AG_DNS_A, 0, AG_NOTFOUND);
	check_status("add after query",
	    ag_dns_add_local(d, "late.test. 300 IN A 192.0.2.9"), AG_OK);
	res = query_want(d, "after", "late.test", AG_DNS_A, 0, AG_OK);
	if (!has_rdata(res, "\xc0\x00\x02\x09", 4)) {
		fail_msg("after: wrong address");
	}
	ag_dns_result_free(res);
	check_status("zone after query",
	    ag_dns_add_local_zone(d, "other.", "static"), AG_OK);
	res = query_want(d, "zone after", "x.other", AG_DNS_A, 0, AG_NOTFOUND);
	if (!res->nxdomain) {
		fail_msg("zone after: not NXDOMAIN");
	}
	ag_dns_result_free(res);
	ag_dns_free(d);
}

/* ==== the table of answers in front of libunbound ==================== */

/* Answers with a TTL are served from the table: the same data, the TTL
 * left; names compare without case or the trailing dot; TTL 0 is never
 * kept; new local data empties the table. */
static void
test_cache_resolver(void **state)
{
	struct ag_dns *d = local_resolver();
	struct ag_dns_result *a, *b;
	struct ag_dns_stats st0, st1;

	(void)state;
	check_status("add", ag_dns_add_local(d,
	    "c.test. 300 IN TXT \"v=spf1 -all\""), AG_OK);
	check_status("add ttl 0", ag_dns_add_local(d, "z.test. 0 IN A 192.0.2.3"),
	    AG_OK);
	ag_dns_stats(d, &st0);
	a = query_want(d, "first", "c.test", AG_DNS_TXT, 0, AG_OK);
	b = query_want(d, "again", "C.Test.", AG_DNS_TXT, 0, AG_OK);
	ag_dns_stats(d, &st1);
	assert_int_equal(st1.queries - st0.queries, 2);
	assert_int_equal(st1.cached - st0.cached, 1);
	assert_int_equal(b->n, 1);
	assert_int_equal(b->rr[0].len, a->rr[0].len);
	assert_memory_equal(b->rr[0].data, a->rr[0].data, a->rr[0].len);
	assert_int_equal(b->packet_len, a->packet_len);
	assert_memory_equal(b->packet, a->packet, a->packet_len);
	assert_true(b->ttl > 0 && b->ttl <= 300);
	ag_dns_result_free(a);
	ag_dns_result_free(b);
	/* another type of the same name is another answer */
	expect(d, "A of c", "c.test", AG_DNS_A, 0, AG_NOTFOUND);
	ag_dns_stats(d, &st0);
	assert_int_equal(st0.cached, st1.cached);
	/* TTL 0: asked every time */
	expect(d, "ttl 0", "z.test", AG_DNS_A, 0, AG_OK);
	expect(d, "ttl 0 again", "z.test", AG_DNS_A, 0, AG_OK);
	ag_dns_stats(d, &st1);
	assert_int_equal(st1.cached, st0.cached);
	/* new data is seen at once */
	check_status("add more", ag_dns_add_local(d,
	    "c.test. 300 IN TXT \"second\""), AG_OK);
	a = query_want(d, "after add", "c.test", AG_DNS_TXT, 0, AG_OK);
	assert_int_equal(a->n, 2);
	ag_dns_result_free(a);
	ag_dns_stats(d, &st0);
	assert_int_equal(st0.cached, st1.cached);
	ag_dns_free(d);
}

/* Threads asking the same few names: the table under concurrent puts
 * and gets (ThreadSanitizer runs this, tests/tsan.sh). */
struct cache_worker {
	struct ag_dns *d;
	int t;
	int bad;
};

static void *
cache_worker_main(void *arg)
{
	struct cache_worker *w = arg;
	char name[32], want[8];

	for (int i = 0; i < 2000; i++) {
		struct ag_dns_result *res = NULL;
		int k = (i + w->t) % 8;

		snprintf(name, sizeof(name), "c%d.test", k);
		snprintf(want, sizeof(want), "v%d", k);
		if (ag_dns_query(w->d, name, AG_DNS_TXT, 0, &res) != AG_OK ||
		    res->n != 1 || res->rr[0].len != 3 ||
		    memcmp(res->rr[0].data + 1, want, 2) != 0) {
			w->bad++;
		}
		ag_dns_result_free(res);
		if (i % 500 == 0 && w->t == 0) {
			/* new data empties the table while others read */
			char rr[64];

			snprintf(rr, sizeof(rr), "x%d.test. 300 IN A 192.0.2.1", i);
			(void)ag_dns_add_local(w->d, rr);
		}
	}
	return NULL;
}

static void
test_cache_threads(void **state)
{
	struct ag_dns *d = local_resolver();
	struct cache_worker w[4];
	pthread_t tid[4];
	struct ag_dns_stats st;
	char rr[64];

	(void)state;
	for (int k = 0; k < 8; k++) {
		snprintf(rr, sizeof(rr), "c%d.test. 300 IN TXT \"v%d\"", k, k);
		check_status(rr, ag_dns_add_local(d, rr), AG_OK);
	}
	for (int t = 0; t < 4; t++) {
		w[t] = (struct cache_worker){ d, t, 0 };
		assert_int_equal(pthread_create(&tid[t], NULL, cache_worker_main,
		    &w[t]), 0);
	}
	for (int t = 0; t < 4; t++) {
		assert_int_equal(pthread_join(tid[t], NULL), 0);
		assert_int_equal(w[t].bad, 0);
	}
	ag_dns_stats(d, &st);
	print_message("# %llu queries, %llu from the table\n",
	    (unsigned long long)st.queries, (unsigned long long)st.cached);
	assert_true(st.cached > st.queries / 2);
	ag_dns_free(d);
}

/* An answer of N TXT records of LEN bytes each, built by hand. */
static struct ag_dns_result *
fake_answer(size_t n, size_t len, unsigned ttl)
{
	struct ag_dns_result *r;
	uint8_t *p;

	r = calloc(1, sizeof(*r) + n * (sizeof(struct ag_dns_rr) + len) + 12);
	assert_non_null(r);
	r->n = n;
	r->ttl = ttl;
	r->rr = n > 0 ? (struct ag_dns_rr *)(r + 1) : NULL;
	p = (uint8_t *)(r + 1) + n * sizeof(struct ag_dns_rr);
	for (size_t i = 0; i < n; i++) {
		memset(p, 'a' + (int)i, len);
		r->rr[i].data = p;
		r->rr[i].len = len;
		p += len;
	}
	memset(p, 0x42, 12);
	r->packet = p;
	r->packet_len = 12;
	return r;
}

/* lib/dnscache.c on its own, with the clock given: expiry, the TTL cap,
 * the size cap, statuses, replacement and clearing. */
static void
test_cache_table(void **state)
{
	struct ag_dns_cache *c = ag_dns_cache_new();
	struct ag_dns_result *r, *got = NULL;
	ag_status st = AG_INVALID;

	(void)state;
	assert_non_null(c);
	r = fake_answer(2, 10, 2);
	ag_dns_cache_put(c, "x.test.", AG_DNS_TXT, 1000, AG_OK, r);
	assert_true(ag_dns_cache_get(c, "X.TEST", AG_DNS_TXT, 2999, &st, &got));
	assert_int_equal(st, AG_OK);
	assert_int_equal(got->n, 2);
	assert_int_equal(got->ttl, 1);		/* 1.001 s left, rounded up */
	assert_memory_equal(got->rr[1].data, "bbbbbbbbbb", 10);
	assert_ptr_not_equal(got->rr[1].data, r->rr[1].data);
	assert_memory_equal(got->packet, r->packet, 12);
	ag_dns_result_free(got);
	got = NULL;
	assert_false(ag_dns_cache_get(c, "x.test", AG_DNS_TXT, 3000, &st, &got));
	assert_false(ag_dns_cache_get(c, "x.test", AG_DNS_A, 1001, &st, &got));
	assert_false(ag_dns_cache_get(c, "y.test", AG_DNS_TXT, 1001, &st, &got));
	assert_null(got);
	/* NOTFOUND is kept; TEMPFAIL and TTL 0 are not */
	r->ttl = 50;
	ag_dns_cache_put(c, "nx.test", AG_DNS_A, 0, AG_NOTFOUND, r);
	ag_dns_cache_put(c, "tf.test", AG_DNS_A, 0, AG_TEMPFAIL, r);
	assert_true(ag_dns_cache_get(c, "nx.test", AG_DNS_A, 49999, &st, &got));
	assert_int_equal(st, AG_NOTFOUND);
	ag_dns_result_free(got);
	assert_false(ag_dns_cache_get(c, "tf.test", AG_DNS_A, 1, &st, &got));
	r->ttl = 0;
	ag_dns_cache_put(c, "t0.test", AG_DNS_A, 0, AG_OK, r);
	assert_false(ag_dns_cache_get(c, "t0.test", AG_DNS_A, 0, &st, &got));
	/* a day's TTL is kept at most AG_DNS_CACHE_TTL_MAX */
	r->ttl = 86400;
	ag_dns_cache_put(c, "day.test", AG_DNS_A, 0, AG_OK, r);
	assert_true(ag_dns_cache_get(c, "day.test", AG_DNS_A,
	    AG_DNS_CACHE_TTL_MAX * 1000ULL - 1, &st, &got));
	ag_dns_result_free(got);
	assert_false(ag_dns_cache_get(c, "day.test", AG_DNS_A,
	    AG_DNS_CACHE_TTL_MAX * 1000ULL, &st, &got));
	free(r);
	/* an answer over the size bound is not kept */
	r = fake_answer(2, AG_DNS_CACHE_ENTRY_MAX / 2, 300);
	ag_dns_cache_put(c, "big.test", AG_DNS_TXT, 0, AG_OK, r);
	assert_false(ag_dns_cache_get(c, "big.test", AG_DNS_TXT, 1, &st, &got));
	free(r);
	/* a newer answer replaces the older; clear forgets everything */
	r = fake_answer(1, 4, 300);
	ag_dns_cache_put(c, "x.test", AG_DNS_TXT, 0, AG_OK, r);
	r->rr[0].len = 3;
	ag_dns_cache_put(c, "x.test", AG_DNS_TXT, 0, AG_OK, r);
	assert_true(ag_dns_cache_get(c, "x.test", AG_DNS_TXT, 1, &st, &got));
	assert_int_equal(got->rr[0].len, 3);
	ag_dns_result_free(got);
	ag_dns_cache_clear(c);
	assert_false(ag_dns_cache_get(c, "x.test", AG_DNS_TXT, 1, &st, &got));
	/* many names: every slot used, nothing grows past the table */
	for (int i = 0; i < 3 * AG_DNS_CACHE_SLOTS; i++) {
		char name[32];

		snprintf(name, sizeof(name), "n%d.test", i);
		ag_dns_cache_put(c, name, AG_DNS_A, 0, AG_OK, r);
	}
	assert_true(ag_dns_cache_get(c, "n12287.test", AG_DNS_A, 1, &st, &got));
	ag_dns_result_free(got);
	free(r);
	ag_dns_cache_free(c);
}

/* ==== TXT ============================================================ */

/* Joining TXT strings: by hand-built RDATA, good and malformed. */
static void
test_txt_join(void **state)
{
	static const struct {
		const char *label, *data;
		size_t len, outsz;
		ag_status want;
		const char *text;
		size_t textlen;
	} cases[] = {
		{ "one string", "\x03" "abc", 4, 64, AG_OK, "abc", 3 },
		{ "three strings", "\x02" "ab\x01" "c\x03" "def", 9, 64, AG_OK,
		    "abcdef", 6 },
		{ "empty string", "\x00", 1, 64, AG_OK, "", 0 },
		{ "empty strings", "\x00\x01" "a\x00", 4, 64, AG_OK, "a", 1 },
		{ "NUL inside", "\x03" "a\0b", 4, 64, AG_OK, "a\0b", 3 },
		{ "exactly fits", "\x03" "abc", 4, 4, AG_OK, "abc", 3 },
		{ "one too long", "\x03" "abc", 4, 3, AG_PERMFAIL, "", 0 },
		{ "no strings", "", 0, 64, AG_PERMFAIL, "", 0 },
		{ "length past end", "\x04" "abc", 4, 64, AG_PERMFAIL, "", 0 },
		{ "second past end", "\x01" "a\x05" "bc", 5, 64, AG_PERMFAIL, "", 0 },
		{ "dangling length", "\x01" "a\x01", 3, 64, AG_PERMFAIL, "", 0 },
		{ "255 of 2", "\xff" "ab", 3, 64, AG_PERMFAIL, "", 0 },
	};
	struct ag_dns_rr rr;
	char out[64];
	size_t i, len;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		rr.data = (const uint8_t *)cases[i].data;
		rr.len = cases[i].len;
		len = 99;
		memset(out, 'x', sizeof(out));
		check_status(cases[i].label, ag_dns_txt_join(&rr, out,
		    cases[i].outsz, &len), cases[i].want);
		if (len != cases[i].textlen || out[len] != '\0' ||
		    memcmp(out, cases[i].text, len) != 0) {
			fail_msg("%s: got %zu bytes \"%.*s\"", cases[i].label,
			    len, (int)len, out);
		}
	}
	rr.data = (const uint8_t *)"\x01" "a";
	rr.len = 2;
	check_status("NULL rr", ag_dns_txt_join(NULL, out, 8, &len), AG_INVALID);
	check_status("NULL out", ag_dns_txt_join(&rr, NULL, 8, &len),
	    AG_INVALID);
	check_status("outsz 0", ag_dns_txt_join(&rr, out, 0, &len), AG_INVALID);
	check_status("NULL len", ag_dns_txt_join(&rr, out, 8, NULL), AG_OK);
	rr.data = NULL;
	check_status("NULL data", ag_dns_txt_join(&rr, out, 8, &len),
	    AG_PERMFAIL);
}

/*
 * A TXT record of 32 strings of 255 bytes and one of LAST, 'k' each:
 * its RDATA into RD (returns the length) and its local-data line into S.
 */
static size_t
txt_make(uint8_t *rd, char *s, const char *name, size_t last)
{
	size_t i, l, o = 0, so = (size_t)sprintf(s, "%s 300 IN TXT", name);

	for (i = 0; i <= 32; i++) {
		l = i < 32 ? 255 : last;
		rd[o++] = (uint8_t)l;
		memset(rd + o, 'k', l);
		o += l;
		s[so++] = ' ';
		s[so++] = '"';
		memset(s + so, 'k', l);
		so += l;
		s[so++] = '"';
	}
	s[so] = '\0';
	return o;
}

/* AG_DNS_TXT_MAX: a record of exactly that many bytes, and one more. */
static void
test_txt_bounds(void **state)
{
	static uint8_t rd[AG_DNS_TXT_MAX + 64];
	static char out[AG_DNS_TXT_MAX + 64], line[AG_DNS_TXT_MAX + 200];
	struct ag_dns *d = local_resolver();
	struct ag_dns_result *res;
	struct ag_dns_rr rr = { rd, 0 };
	size_t len;

	(void)state;
	rr.len = txt_make(rd, line, "max.test.", 32);	/* 8192 bytes */
	check_status("add 8192", ag_dns_add_local(d, line), AG_OK);
	check_status("8192 into 8193", ag_dns_txt_join(&rr, out,
	    AG_DNS_TXT_MAX + 1, &len), AG_OK);
	if (len != AG_DNS_TXT_MAX || strspn(out, "k") != AG_DNS_TXT_MAX) {
		fail_msg("8192: got %zu bytes", len);
	}
	rr.len = txt_make(rd, line, "over.test.", 33);
	check_status("add 8193", ag_dns_add_local(d, line), AG_OK);
	check_status("8193 into 8193", ag_dns_txt_join(&rr, out,
	    AG_DNS_TXT_MAX + 1, &len), AG_PERMFAIL);
	check_status("8193 into more", ag_dns_txt_join(&rr, out, sizeof(out),
	    &len), AG_OK);
	res = query_want(d, "query 8192", "max.test", AG_DNS_TXT, 0, AG_OK);
	check_status("join 8192", ag_dns_txt_join(&res->rr[0], out,
	    AG_DNS_TXT_MAX + 1, &len), AG_OK);
	ag_dns_result_free(res);
	expect(d, "query 8193", "over.test", AG_DNS_TXT, 0, AG_PERMFAIL);
	ag_dns_free(d);
}

/* ==== a real server on loopback ====================================== */

/* Fail unless RES holds exactly one A record of ADDR (dotted quad). */
static void
check_a(const char *label, const struct ag_dns_result *res, const char *addr)
{
	uint8_t want[4];

	if (inet_pton(AF_INET, addr, want) != 1 || res->n != 1 ||
	    res->rr[0].len != 4 || memcmp(res->rr[0].data, want, 4) != 0) {
		fail_msg("%s: not one A record of %s (n=%zu)", label, addr,
		    res->n);
	}
}

/* Fail unless the counters are QUERIES, TIMEOUTS and FAILURES. */
static void
check_stats(const char *label, struct ag_dns *d, uint64_t queries,
    uint64_t timeouts, uint64_t failures)
{
	struct ag_dns_stats s;

	ag_dns_stats(d, &s);
	if (s.queries != queries || s.timeouts != timeouts ||
	    s.failures != failures) {
		fail_msg("%s: queries/timeouts/failures %" PRIu64 "/%" PRIu64
		    "/%" PRIu64 ", want %" PRIu64 "/%" PRIu64 "/%" PRIu64, label,
		    s.queries, s.timeouts, s.failures, queries, timeouts,
		    failures);
	}
}

/* Print how long the last query took; fail unless in LO..HI ms. */
static void
check_ms(const char *label, uint64_t lo, uint64_t hi)
{
	printf("# %s: %llu ms\n", label, (unsigned long long)last_ms);
	if (last_ms < lo || last_ms > hi) {
		fail_msg("%s: %llu ms, want %llu..%llu", label,
		    (unsigned long long)last_ms, (unsigned long long)lo,
		    (unsigned long long)hi);
	}
}

/* Answers from the server; the second time, from the cache. */
static void
test_server_answers(void **state)
{
	struct fix *f = *state;
	struct ag_dns_result *res;
	char txt[64];
	unsigned before;
	size_t len;

	res = query_want(f->d, "A", "a.example", AG_DNS_A, 0, AG_OK);
	check_a("A", res, "192.0.2.1");
	if (res->ttl == 0 || res->ttl > 300 || res->packet_len < 12) {
		fail_msg("A: ttl %u, packet %zu bytes", res->ttl,
		    res->packet_len);
	}
	ag_dns_result_free(res);
	res = query_want(f->d, "TXT", "txt.example", AG_DNS_TXT, 0, AG_OK);
	check_status("TXT join", ag_dns_txt_join(&res->rr[0], txt, sizeof(txt),
	    &len), AG_OK);
	ag_dns_result_free(res);
	if (strcmp(txt, "v=spf1 -all") != 0) {
		fail_msg("TXT: \"%s\"", txt);
	}
	res = query_want(f->d, "NXDOMAIN", "nx.example", AG_DNS_A, 0,
	    AG_NOTFOUND);
	if (!res->nxdomain || res->n != 0 || res->rcode != 3) {
		fail_msg("NXDOMAIN: nxdomain=%d n=%zu", res->nxdomain, res->n);
	}
	ag_dns_result_free(res);
	res = query_want(f->d, "no data", "a.example", AG_DNS_AAAA, 0,
	    AG_NOTFOUND);
	if (res->nxdomain || res->n != 0 || res->rcode != 0) {
		fail_msg("no data: nxdomain=%d n=%zu", res->nxdomain, res->n);
	}
	ag_dns_result_free(res);
	res = query_want(f->d, "table", "q3-7.example", AG_DNS_A, 0, AG_OK);
	check_a("table", res, "10.0.3.7");
	ag_dns_result_free(res);
	before = atomic_load(&f->r->requests);
	res = query_want(f->d, "A again", "A.example.", AG_DNS_A, 0, AG_OK);
	check_a("A again", res, "192.0.2.1");
	ag_dns_result_free(res);
	expect(f->d, "TXT again", "txt.example", AG_DNS_TXT, 0, AG_OK);
	if (atomic_load(&f->r->requests) != before) {
		fail_msg("cache: %u queries reached the server",
		    atomic_load(&f->r->requests) - before);
	}
	check_stats("answers", f->d, 7, 0, 0);
}

/* SERVFAIL and REFUSED are temporary, and come before the timeout;
 * 100 records are over the bound. */
static void
test_server_errors(void **state)
{
	struct fix *f = *state;

	expect(f->d, "SERVFAIL", "servfail.example", AG_DNS_A, 0, AG_TEMPFAIL);
	check_ms("SERVFAIL", 0, T_TIMEOUT_MS - 1);
	expect(f->d, "REFUSED", "refused.example", AG_DNS_A, 0, AG_TEMPFAIL);
	check_ms("REFUSED", 0, T_TIMEOUT_MS - 1);
	expect(f->d, "100 TXT", "big.example", AG_DNS_TXT, 0, AG_PERMFAIL);
	check_ms("100 TXT", 0, T_TIMEOUT_MS - 1);
	check_stats("errors", f->d, 3, 0, 3);
}

/* A server that never answers: tempfail when the timeout is up. */
static void
test_server_timeout(void **state)
{
	struct fix *f = *state;

	expect(f->d, "dead", "dead.example", AG_DNS_A, 0, AG_TEMPFAIL);
	check_ms("no answer, timeout 300 ms", T_TIMEOUT_MS,
	    T_TIMEOUT_MS + T_MARGIN_MS);
	check_stats("dead", f->d, 1, 1, 0);
	/* the server still works for other names */
	expect(f->d, "after dead", "a.example", AG_DNS_A, 0, AG_OK);
}

/* A deadline sooner than the timeout wins; a past deadline fails at once. */
static void
test_server_deadline(void **state)
{
	struct fix *f = *state;
	unsigned before;

	expect(f->d, "deadline", "dead1.example", AG_DNS_A,
	    ag_dns_now_ms() + 120, AG_TEMPFAIL);
	check_ms("no answer, deadline 120 ms, timeout 2000 ms", 120,
	    120 + T_MARGIN_MS);
	before = atomic_load(&f->r->requests);
	expect(f->d, "past deadline", "a.example", AG_DNS_A,
	    ag_dns_now_ms() - 1, AG_TEMPFAIL);
	check_ms("past deadline", 0, 20);
	if (atomic_load(&f->r->requests) != before) {
		fail_msg("past deadline: the query was sent");
	}
	check_stats("deadline", f->d, 2, 2, 0);
}

/* An answer that comes late but within the timeout is taken. */
static void
test_server_slow(void **state)
{
	struct fix *f = *state;
	struct ag_dns_result *res;

	res = query_want(f->d, "slow", "slow.example", AG_DNS_A, 0, AG_OK);
	check_a("slow", res, "192.0.2.2");
	ag_dns_result_free(res);
	check_ms("answer after 100 ms", f->delay_ms, T_TIMEOUT_MS - 1);
}

/*
 * An answer after the waiter gave up: libunbound still takes it (and
 * caches it) while the request is already gone; nothing may crash or
 * leak (run under ASan), and the next query is served from the cache.
 */
static void
test_server_late(void **state)
{
	struct fix *f = *state;
	unsigned reqs = 0, i;

	expect(f->d, "late", "slow-late.example", AG_DNS_A,
	    ag_dns_now_ms() + 100, AG_TEMPFAIL);
	check_ms("answer after 250 ms, deadline 100 ms", 100, 100 + T_MARGIN_MS);
	/* wait until the server has sent every answer it owes */
	for (i = 0; i < 100; i++) {
		reqs = atomic_load(&f->r->requests);
		if (reqs > 0 && atomic_load(&f->r->late_sent) == reqs) {
			break;
		}
		sleep_ms(20);
	}
	sleep_ms(50);
	expect(f->d, "late, cached", "slow-late.example", AG_DNS_A, 0, AG_OK);
	if (i == 100 || atomic_load(&f->r->requests) != reqs) {
		fail_msg("late: the late answer was not taken and cached");
	}
	check_stats("late", f->d, 2, 1, 0);
}

#define CONC_THREADS 8
#define CONC_QUERIES 50

/* One querying thread of the concurrency tests. */
struct worker {
	struct ag_dns *d;
	unsigned t;
	bool race;		/* slow names, deadlines about the delay */
	unsigned ok, tempfail;
	char err[200];		/* the first failure */
};

/* Ask CONC_QUERIES names, checking every answer. */
static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct ag_dns_result *res;
	uint8_t want[4] = { 192, 0, 2, 2 };
	uint64_t deadline = 0;
	char name[64];
	ag_status st;
	unsigned i;

	for (i = 0; i < CONC_QUERIES; i++) {
		if (w->race) {
			snprintf(name, sizeof(name), "slow-%u-%u.example", w->t, i);
			deadline = ag_dns_now_ms() + 20 + (w->t + i) % 3;
		} else {
			snprintf(name, sizeof(name), "q%u-%u.example", w->t, i);
			memcpy(want, (uint8_t[4]){ 10, 0, (uint8_t)w->t,
			    (uint8_t)i }, 4);
		}
		res = NULL;
		st = ag_dns_query(w->d, name, AG_DNS_A, deadline, &res);
		if (st == AG_OK && res->n == 1 && res->rr[0].len == 4 &&
		    memcmp(res->rr[0].data, want, 4) == 0) {
			w->ok++;
		} else if (st == AG_TEMPFAIL && w->race && res == NULL) {
			w->tempfail++;
		} else if (w->err[0] == '\0') {
			snprintf(w->err, sizeof(w->err), "%s: status %s", name,
			    ag_status_str(st));
		}
		ag_dns_result_free(res);
	}
	return NULL;
}

/* Run CONC_THREADS workers on D; fail with the first failure seen. */
static void
run_workers(struct ag_dns *d, bool race, unsigned *ok, unsigned *tempfail)
{
	struct worker w[CONC_THREADS];
	pthread_t tid[CONC_THREADS];
	unsigned i, started = 0;
	char first[200] = "";

	*ok = *tempfail = 0;
	memset(w, 0, sizeof(w));
	for (i = 0; i < CONC_THREADS; i++) {
		w[i].d = d;
		w[i].t = i;
		w[i].race = race;
		if (pthread_create(&tid[i], NULL, worker_main, &w[i]) != 0) {
			break;
		}
		started++;
	}
	for (i = 0; i < started; i++) {
		pthread_join(tid[i], NULL);
		*ok += w[i].ok;
		*tempfail += w[i].tempfail;
		if (first[0] == '\0' && w[i].err[0] != '\0') {
			snprintf(first, sizeof(first), "%s", w[i].err);
		}
	}
	if (started != CONC_THREADS || first[0] != '\0') {
		fail_msg("%u of %u threads; %s", started, CONC_THREADS, first);
	}
}

/* 8 threads x 50 queries, all answered correctly. */
static void
test_server_concurrent(void **state)
{
	struct fix *f = *state;
	unsigned ok, tempfail;
	uint64_t t0 = ag_dns_now_ms();

	run_workers(f->d, false, &ok, &tempfail);
	printf("# %u threads x %u queries: %u answered in %llu ms\n",
	    CONC_THREADS, CONC_QUERIES, ok,
	    (unsigned long long)(ag_dns_now_ms() - t0));
	if (ok != CONC_THREADS * CONC_QUERIES) {
		fail_msg("%u of %u answered", ok, CONC_THREADS * CONC_QUERIES);
	}
	check_stats("concurrent", f->d, CONC_THREADS * CONC_QUERIES, 0, 0);
}

/*
 * Deadlines about the server's delay, so that answers and give-ups
 * cross (both ways of dns_abandon_locked happen): every query is either
 * answered right or a tempfail, and answers arriving after the waiter
 * left are freed (ASan, TSan).
 */
static void
test_server_race(void **state)
{
	struct fix *f = *state;
	unsigned ok, tempfail;
	struct ag_dns_stats s;

	run_workers(f->d, true, &ok, &tempfail);
	sleep_ms(100);	/* let late answers reach the dispatcher */
	ag_dns_stats(f->d, &s);
	printf("# race: %u answered, %u gave up\n", ok, tempfail);
	if (ok + tempfail != CONC_THREADS * CONC_QUERIES ||
	    s.timeouts != tempfail || s.failures != 0) {
		fail_msg("race: %u + %u; %llu timeouts, %llu failures", ok,
		    tempfail, (unsigned long long)s.timeouts,
		    (unsigned long long)s.failures);
	}
}

/* ==== main =========================================================== */

static struct fix fx_answers = { T_TIMEOUT_MS, 0, NULL, NULL };
static struct fix fx_errors = { T_TIMEOUT_MS, 0, NULL, NULL };
static struct fix fx_timeout = { T_TIMEOUT_MS, 0, NULL, NULL };
static struct fix fx_deadline = { 2000, 0, NULL, NULL };
static struct fix fx_slow = { T_TIMEOUT_MS, 100, NULL, NULL };
static struct fix fx_late = { 2000, 250, NULL, NULL };
static struct fix fx_concurrent = { 2000, 0, NULL, NULL };
static struct fix fx_race = { 2000, 20, NULL, NULL };

#define SERVER_TEST(fn, fx) \
	cmocka_unit_test_prestate_setup_teardown(fn, fix_setup, fix_teardown, \
	    &fx)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forwarders),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_local_data),
		cmocka_unit_test(test_local_more),
		cmocka_unit_test(test_cache_resolver),
		cmocka_unit_test(test_cache_table),
		cmocka_unit_test(test_cache_threads),
		cmocka_unit_test(test_txt_join),
		cmocka_unit_test(test_txt_bounds),
		SERVER_TEST(test_server_answers, fx_answers),
		SERVER_TEST(test_server_errors, fx_errors),
		SERVER_TEST(test_server_timeout, fx_timeout),
		SERVER_TEST(test_server_deadline, fx_deadline),
		SERVER_TEST(test_server_slow, fx_slow),
		SERVER_TEST(test_server_late, fx_late),
		SERVER_TEST(test_server_concurrent, fx_concurrent),
		SERVER_TEST(test_server_race, fx_race),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
