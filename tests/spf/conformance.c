/*
 * conformance.c - the RFC 7208 test suite (openspf.org release 2014.04,
 * 16 sections, 203 tests) run through authgate's own SPF path:
 * ag_spf_check() over lib/dns.c, libunbound underneath.
 *
 * The suite comes from tests/spf/rfc7208-tests.txt (made from the YAML by
 * tests/spf/conv.py; the format is described there).  For each section a
 * fresh resolver is made:
 *   - every record is local data, under local-zone "." static, so a name
 *     without data is NXDOMAIN and a name without data of the asked type
 *     is NODATA, as the suite's own driver answers;
 *   - a TIMEOUT name, and a CNAME owner (libunbound's local data gives
 *     the CNAME but does not follow it), gets a typetransparent local
 *     zone: what local data does not answer goes to the forwarder, a
 *     responder thread on a loopback UDP port that never answers for
 *     TIMEOUT names (a real timeout, under ag_dns's per-query timeout),
 *     serves the section's data like an authoritative server (CNAME
 *     chains included) and answers NXDOMAIN for anything else; names
 *     under such a name that have records get static zones of their own.
 *
 * Output is TAP, one point per test, named section/test.  Tests listed in
 * tests/spf/known-failures.txt print "not ok ... # TODO" when they fail
 * (an expected failure) and "ok ... # TODO" when they pass, which the TAP
 * driver counts as an unexpected pass, so that the list is kept honest.
 * A test passes when the result is one of those the suite allows and,
 * where the suite names an explanation other than its driver's
 * placeholder "DEFAULT", the explanation is that text.
 *
 * Usage: conformance [-v] [-s SUITE] [-k KNOWN] [TEST...]
 * Files default to $AG_SRCDIR/tests/spf/..., else tests/spf/... .
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "addr.h"
#include "dns.h"
#include "spf.h"

#define SUITE_TESTS 203		/* in release 2014.04 */
#define QUERY_TIMEOUT_MS 300	/* ag_dns per-query timeout */
#define CHECK_DEADLINE_MS 4000	/* one ag_spf_check */
#define MAX_RESULTS 4
#define LINE_MAX_LEN 1024

struct test {
	char *section;		/* points into the section's name */
	char *name;
	char *helo;
	char *host;
	char *mailfrom;
	char *spec;
	char *explanation;	/* NULL if the suite names none */
	enum ag_spf_result results[MAX_RESULTS];
	size_t nresults;
	char *known;		/* reason from known-failures.txt, or NULL */
	bool selected;
};

struct rr {
	char *owner;		/* presentation form, absolute */
	char *type;
	char *data;
};

struct timeout_name {
	char *owner;
	char *types;		/* the types still answered (conv.py writes
				 * records of these only), space separated */
};

struct section {
	char *name;
	struct rr *rr;
	size_t nrr;
	struct timeout_name *to;
	size_t nto;
	struct test *tests;
	size_t ntests;
};

struct suite {
	struct section *sec;
	size_t nsec;
	size_t ntests;
};

static bool verbose;

/* ---- small helpers ------------------------------------------------- */

static void __attribute__((noreturn, format(printf, 1, 2)))
bail(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(99);
}

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size);

	if (p == NULL) {
		bail("out of memory");
	}
	return p;
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL) {
		bail("out of memory");
	}
	return p;
}

/* Append one element of SIZE bytes to *V (N elements); returns it zeroed. */
static void *
grow(void *vp, size_t *n, size_t size)
{
	void **v = vp;
	char *p = realloc(*v, (*n + 1) * size);

	if (p == NULL) {
		bail("out of memory");
	}
	*v = p;
	memset(p + *n * size, 0, size);
	return p + (*n)++ * size;
}

/* A path under the source tree: $AG_SRCDIR/REL if set, else REL. */
static char *
src_path(const char *rel)
{
	const char *top = getenv("AG_SRCDIR");
	char *p;
	size_t len;

	if (top == NULL || top[0] == '\0') {
		return xstrdup(rel);
	}
	len = strlen(top) + strlen(rel) + 2;
	p = xcalloc(1, len);
	snprintf(p, len, "%s/%s", top, rel);
	return p;
}

/* Lower-case copy of a domain name in presentation form, no final dot. */
static void
name_key(const char *in, char *out, size_t outsz)
{
	size_t j = 0;

	for (size_t i = 0; in[i] != '\0' && j + 1 < outsz; i++) {
		char c = in[i];

		out[j++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	while (j > 0 && out[j - 1] == '.') {
		j--;
	}
	out[j] = '\0';
}

/* Is A (a key) equal to B or a subdomain of B (a key)? */
static bool
name_under(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la == lb) {
		return strcmp(a, b) == 0;
	}
	return la > lb && a[la - lb - 1] == '.' && strcmp(a + la - lb, b) == 0;
}

/* ---- reading the suite ---------------------------------------------- */

/* Split "key value" in place: returns the value ("" if none). */
static char *
split_key(char *line)
{
	char *sp = strchr(line, ' ');

	if (sp == NULL) {
		return line + strlen(line);
	}
	*sp = '\0';
	return sp + 1;
}

/* Handle one line inside "test ... end". */
static void
test_line(struct test *t, const char *key, char *val, const char *where)
{
	if (strcmp(key, "helo") == 0) {
		t->helo = xstrdup(val);
	} else if (strcmp(key, "host") == 0) {
		t->host = xstrdup(val);
	} else if (strcmp(key, "mailfrom") == 0) {
		t->mailfrom = xstrdup(val);
	} else if (strcmp(key, "spec") == 0) {
		t->spec = xstrdup(val);
	} else if (strcmp(key, "explanation") == 0) {
		t->explanation = xstrdup(val);
	} else if (strcmp(key, "result") == 0) {
		for (char *r = strtok(val, " "); r != NULL; r = strtok(NULL, " ")) {
			if (t->nresults == MAX_RESULTS ||
			    ag_spf_result_parse(r, &t->results[t->nresults]) != 0) {
				bail("%s: bad result %s", where, r);
			}
			t->nresults++;
		}
	} else {
		bail("%s: unknown key %s", where, key);
	}
}

/* Handle one line outside a test. */
static struct test *
section_line(struct suite *s, const char *key, char *val, const char *where)
{
	struct section *sec = s->nsec > 0 ? &s->sec[s->nsec - 1] : NULL;

	if (strcmp(key, "section") == 0) {
		sec = grow(&s->sec, &s->nsec, sizeof(*sec));
		sec->name = xstrdup(val);
		return NULL;
	}
	if (sec == NULL) {
		bail("%s: %s before any section", where, key);
	}
	if (strcmp(key, "rr") == 0) {
		struct rr *r = grow(&sec->rr, &sec->nrr, sizeof(*r));
		char *type = split_key(val);
		char *data = split_key(type);

		r->owner = xstrdup(val);
		r->type = xstrdup(type);
		r->data = xstrdup(data);
		return NULL;
	}
	if (strcmp(key, "timeout") == 0) {
		struct timeout_name *to = grow(&sec->to, &sec->nto, sizeof(*to));
		char *types = split_key(val);

		to->owner = xstrdup(val);
		to->types = xstrdup(types);
		return NULL;
	}
	if (strcmp(key, "test") == 0) {
		struct test *t = grow(&sec->tests, &sec->ntests, sizeof(*t));

		t->section = sec->name;
		t->name = xstrdup(val);
		t->selected = true;
		s->ntests++;
		return t;
	}
	bail("%s: unknown line %s", where, key);
}

static void
suite_read(const char *path, struct suite *s)
{
	char line[LINE_MAX_LEN], where[300];
	struct test *t = NULL;
	unsigned lineno = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		bail("%s: %s", path, strerror(errno));
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t len = strlen(line);
		char *val;

		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (len == 0 || line[len - 1] != '\n') {
			bail("%s: line too long or unterminated", where);
		}
		line[len - 1] = '\0';
		if (line[0] == '\0' || line[0] == '#') {
			continue;
		}
		val = split_key(line);
		if (t != NULL) {
			if (strcmp(line, "end") == 0) {
				if (t->nresults == 0 || t->host == NULL) {
					bail("%s: test %s incomplete", where, t->name);
				}
				t = NULL;
			} else {
				test_line(t, line, val, where);
			}
			continue;
		}
		t = section_line(s, line, val, where);
	}
	fclose(f);
	if (t != NULL) {
		bail("%s: test %s not ended", path, t->name);
	}
}

/* Find a test by name. */
static struct test *
suite_find(struct suite *s, const char *name)
{
	for (size_t i = 0; i < s->nsec; i++) {
		for (size_t j = 0; j < s->sec[i].ntests; j++) {
			if (strcmp(s->sec[i].tests[j].name, name) == 0) {
				return &s->sec[i].tests[j];
			}
		}
	}
	return NULL;
}

/* Read known-failures.txt: "TEST REASON" a line; mark the tests. */
static void
known_read(const char *path, struct suite *s)
{
	char line[LINE_MAX_LEN];
	unsigned lineno = 0, bad = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		if (errno == ENOENT) {
			return;
		}
		bail("%s: %s", path, strerror(errno));
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *reason;
		struct test *t;

		lineno++;
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#') {
			continue;
		}
		reason = line + strcspn(line, " \t");
		if (*reason != '\0') {
			*reason++ = '\0';
		}
		reason += strspn(reason, " \t");
		t = suite_find(s, line);
		if (t == NULL || reason[0] == '\0') {
			printf("# %s:%u: %s\n", path, lineno, t == NULL ?
			    "no such test" : "no reason given");
			bad++;
			continue;
		}
		t->known = xstrdup(reason);
	}
	fclose(f);
	if (bad > 0) {
		bail("%s: %u bad entries", path, bad);
	}
}

static void
suite_free(struct suite *s)
{
	for (size_t i = 0; i < s->nsec; i++) {
		struct section *sec = &s->sec[i];

		for (size_t j = 0; j < sec->nrr; j++) {
			free(sec->rr[j].owner);
			free(sec->rr[j].type);
			free(sec->rr[j].data);
		}
		for (size_t j = 0; j < sec->nto; j++) {
			free(sec->to[j].owner);
			free(sec->to[j].types);
		}
		for (size_t j = 0; j < sec->ntests; j++) {
			struct test *t = &sec->tests[j];

			free(t->name);
			free(t->helo);
			free(t->host);
			free(t->mailfrom);
			free(t->spec);
			free(t->explanation);
			free(t->known);
		}
		free(sec->rr);
		free(sec->to);
		free(sec->tests);
		free(sec->name);
	}
	free(s->sec);
}

/* ---- DNS wire form, for the responder --------------------------------- */

#define WIRE_NAME_MAX 255	/* RFC 1035 2.3.4 */
#define ANSWER_MAX 1232		/* what unbound offers in EDNS by default */
#define RR_TTL 300

static const struct {
	const char *name;
	int type;
} rr_types[] = {
	{ "A", 1 }, { "CNAME", 5 }, { "PTR", 12 }, { "MX", 15 }, { "TXT", 16 },
	{ "AAAA", 28 }, { "SPF", 99 },
};

static int
rr_type(const char *name)
{
	for (size_t i = 0; i < sizeof(rr_types) / sizeof(rr_types[0]); i++) {
		if (strcmp(rr_types[i].name, name) == 0) {
			return rr_types[i].type;
		}
	}
	return -1;
}

/* One character of presentation form at *P, \DDD and \X decoded. */
static int
pres_char(const char **p)
{
	const char *s = *p;

	if (s[0] != '\\') {
		*p = s + 1;
		return (unsigned char)s[0];
	}
	if (s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9' &&
	    s[3] >= '0' && s[3] <= '9') {
		*p = s + 4;
		return (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	}
	if (s[1] == '\0') {
		return -1;
	}
	*p = s + 2;
	return (unsigned char)s[1];
}

/* A name in presentation form (up to a space or the end) to wire form. */
static size_t
wire_name(const char **pp, uint8_t *out, size_t outsz)
{
	const char *p = *pp;
	size_t o = 0, lab = 0;

	if (outsz < 1) {
		return 0;
	}
	out[0] = 0;
	if (p[0] == '.' && (p[1] == '\0' || p[1] == ' ')) {
		*pp = p + 1;
		return 1;	/* the root */
	}
	while (*p != '\0' && *p != ' ') {
		int c;

		if (*p == '.') {
			if (out[lab] == 0) {
				return 0;
			}
			p++;
			if (*p == '\0' || *p == ' ') {
				break;
			}
			lab = ++o;
			if (o >= outsz) {
				return 0;
			}
			out[lab] = 0;
			continue;
		}
		if ((c = pres_char(&p)) < 0 || c > 255 || out[lab] == 63 ||
		    o + 2 >= outsz) {
			return 0;
		}
		out[++o] = (uint8_t)c;
		out[lab]++;
	}
	if (out[lab] == 0 || o + 2 > outsz || o + 2 > WIRE_NAME_MAX) {
		return 0;
	}
	out[++o] = 0;
	*pp = p;
	return o + 1;
}

/* Do wire names A and B match, ignoring ASCII case? */
static bool
wire_equal(const uint8_t *a, const uint8_t *b)
{
	for (;;) {
		size_t l = *a;

		if (*b != l) {
			return false;
		}
		if (l == 0) {
			return true;
		}
		for (size_t i = 1; i <= l; i++) {
			int x = a[i], y = b[i];

			x = (x >= 'A' && x <= 'Z') ? x - 'A' + 'a' : x;
			y = (y >= 'A' && y <= 'Z') ? y - 'A' + 'a' : y;
			if (x != y) {
				return false;
			}
		}
		a += l + 1;
		b += l + 1;
	}
}

/* TXT RDATA from quoted strings. */
static size_t
wire_txt(const char *p, uint8_t *out, size_t outsz)
{
	size_t o = 0;

	while (*p == '"') {
		size_t len = o++;

		p++;
		while (*p != '"') {
			int c = pres_char(&p);

			if (c < 0 || c > 255 || o >= outsz || o - len > 255) {
				return 0;
			}
			out[o++] = (uint8_t)c;
		}
		out[len] = (uint8_t)(o - len - 1);
		p++;
		p += strspn(p, " ");
	}
	return *p == '\0' ? o : 0;
}

/* RDATA of TYPE from presentation form; its length, 0 if malformed. */
static size_t
wire_rdata(int type, const char *data, uint8_t *out, size_t outsz)
{
	const char *p = data;
	char *end;
	unsigned long pref;

	switch (type) {
	case 1:
		return outsz >= 4 && inet_pton(AF_INET, data, out) == 1 ? 4 : 0;
	case 28:
		return outsz >= 16 && inet_pton(AF_INET6, data, out) == 1 ? 16 : 0;
	case 5:
	case 12:
		return wire_name(&p, out, outsz);
	case 15:
		pref = strtoul(data, &end, 10);
		if (end == data || *end != ' ' || pref > 65535 || outsz < 3) {
			return 0;
		}
		out[0] = (uint8_t)(pref >> 8);
		out[1] = (uint8_t)pref;
		p = end + 1;
		pref = wire_name(&p, out + 2, outsz - 2);
		return pref > 0 ? pref + 2 : 0;
	case 16:
	case 99:
		return wire_txt(data, out, outsz);
	default:
		return 0;
	}
}

/* ---- the responder: the forwarder, for TIMEOUT and CNAME names ------- */

struct responder {
	int fd;
	int port;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t lock;
	const struct section *sec;	/* whose names; under lock */
	atomic_uint dropped;
	atomic_uint answered;
};

/* Is wire name Q the owner of a TIMEOUT line of SEC? */
static bool
is_timeout(const struct section *sec, const uint8_t *q)
{
	uint8_t w[WIRE_NAME_MAX];

	for (size_t i = 0; sec != NULL && i < sec->nto; i++) {
		const char *p = sec->to[i].owner;

		if (wire_name(&p, w, sizeof(w)) > 0 && wire_equal(w, q)) {
			return true;
		}
	}
	return false;
}

/* Append the records of OWNER (wire) and TYPE in SEC to the answer;
 * the number appended, or -1 when the packet is full. */
static int
add_records(const struct section *sec, const uint8_t *owner, int type,
    uint8_t *pkt, size_t *len)
{
	uint8_t w[WIRE_NAME_MAX], rd[ANSWER_MAX];
	size_t olen = 0, rdlen;
	int n = 0;

	while (owner[olen] != 0) {
		olen += owner[olen] + 1u;
	}
	olen++;
	for (size_t i = 0; i < sec->nrr; i++) {
		const char *p = sec->rr[i].owner;
		int t = rr_type(sec->rr[i].type);

		if (t != type || wire_name(&p, w, sizeof(w)) == 0 ||
		    !wire_equal(w, owner)) {
			continue;
		}
		rdlen = wire_rdata(t, sec->rr[i].data, rd, sizeof(rd));
		if (rdlen == 0) {
			bail("cannot encode %s %s %s", sec->rr[i].owner,
			    sec->rr[i].type, sec->rr[i].data);
		}
		if (*len + olen + 10 + rdlen > ANSWER_MAX) {
			return -1;
		}
		memcpy(pkt + *len, owner, olen);
		*len += olen;
		pkt[(*len)++] = (uint8_t)(t >> 8);
		pkt[(*len)++] = (uint8_t)t;
		pkt[(*len)++] = 0;
		pkt[(*len)++] = 1;		/* class IN */
		pkt[(*len)++] = 0;
		pkt[(*len)++] = 0;
		pkt[(*len)++] = RR_TTL >> 8;
		pkt[(*len)++] = RR_TTL & 0xff;
		pkt[(*len)++] = (uint8_t)(rdlen >> 8);
		pkt[(*len)++] = (uint8_t)rdlen;
		memcpy(pkt + *len, rd, rdlen);
		*len += rdlen;
		n++;
	}
	return n;
}

/* The CNAME target of OWNER in SEC into TARGET; false if none. */
static bool
cname_target(const struct section *sec, const uint8_t *owner, uint8_t *target)
{
	uint8_t w[WIRE_NAME_MAX];

	for (size_t i = 0; i < sec->nrr; i++) {
		const char *p = sec->rr[i].owner, *q = sec->rr[i].data;

		if (strcmp(sec->rr[i].type, "CNAME") == 0 &&
		    wire_name(&p, w, sizeof(w)) > 0 && wire_equal(w, owner) &&
		    wire_name(&q, target, WIRE_NAME_MAX) > 0) {
			return true;
		}
	}
	return false;
}

/* Has SEC records at wire name Q? */
static bool
has_name(const struct section *sec, const uint8_t *q)
{
	uint8_t w[WIRE_NAME_MAX];

	for (size_t i = 0; i < sec->nrr; i++) {
		const char *p = sec->rr[i].owner;

		if (wire_name(&p, w, sizeof(w)) > 0 && wire_equal(w, q)) {
			return true;
		}
	}
	return false;
}

/*
 * The answer to QNAME/QTYPE from SEC, after the question in PKT (*LEN
 * bytes), as an authoritative server for all of it gives it: the CNAME
 * chain from QNAME (up to a repeated name), then the records of the last
 * name.  libunbound follows a CNAME it was given by asking the forwarder
 * for the target, so names with local data are served here too.
 * Returns the answer count, -1 for NXDOMAIN.
 */
static int
answer(const struct section *sec, const uint8_t *qname, int qtype,
    uint8_t *pkt, size_t *len)
{
	uint8_t chain[8][WIRE_NAME_MAX];
	int n = 0, k;
	size_t depth = 0;

	memcpy(chain[0], qname, WIRE_NAME_MAX);
	while (depth + 1 < 8 && cname_target(sec, chain[depth], chain[depth + 1])) {
		if ((k = add_records(sec, chain[depth], 5, pkt, len)) < 0) {
			return n;
		}
		n += k;
		depth++;
		for (size_t i = 0; i < depth; i++) {
			if (wire_equal(chain[i], chain[depth])) {
				return n;	/* a loop: the resolver's to find */
			}
		}
		if (qtype == 5) {
			return n;
		}
	}
	if (depth == 0 && !has_name(sec, qname)) {
		return -1;
	}
	k = add_records(sec, chain[depth], qtype, pkt, len);
	return k < 0 ? n : n + k;
}

/* Answer one query in BUF (LEN bytes), or not. */
static void
respond(struct responder *r, uint8_t *buf, size_t len,
    const struct sockaddr_in *from, socklen_t fromlen)
{
	uint8_t qname[WIRE_NAME_MAX], pkt[ANSWER_MAX];
	size_t end = 12, qlen = 0, plen;
	int qtype, n;

	if (len < 12 || (buf[2] & 0x80) != 0 || buf[4] != 0 || buf[5] != 1) {
		return;
	}
	while (end < len && buf[end] != 0 && buf[end] <= 63 &&
	    qlen + buf[end] + 2u <= sizeof(qname)) {
		memcpy(qname + qlen, buf + end, buf[end] + 1u);
		qlen += buf[end] + 1u;
		end += buf[end] + 1u;
	}
	if (end >= len || buf[end] != 0 || end + 5 > len) {
		return;
	}
	qname[qlen] = 0;
	end++;
	qtype = buf[end] << 8 | buf[end + 1];
	end += 4;
	memcpy(pkt, buf, end);
	plen = end;
	pthread_mutex_lock(&r->lock);
	if (is_timeout(r->sec, qname)) {
		pthread_mutex_unlock(&r->lock);
		atomic_fetch_add(&r->dropped, 1);
		return;		/* the point: no answer at all */
	}
	n = r->sec != NULL ? answer(r->sec, qname, qtype, pkt, &plen) : -1;
	pthread_mutex_unlock(&r->lock);
	pkt[2] = (uint8_t)(0x84 | (buf[2] & 0x79));	/* QR AA, opcode, RD */
	pkt[3] = (uint8_t)(0x80 | (n < 0 ? 3 : 0));	/* RA, NXDOMAIN */
	pkt[6] = 0;
	pkt[7] = (uint8_t)(n < 0 ? 0 : n);
	memset(pkt + 8, 0, 4);
	atomic_fetch_add(&r->answered, 1);
	(void)sendto(r->fd, pkt, plen, 0, (const struct sockaddr *)from,
	    fromlen);
}

static void *
responder_run(void *arg)
{
	struct responder *r = arg;
	uint8_t buf[4096];

	while (!atomic_load(&r->stop)) {
		struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
		struct sockaddr_in from;
		socklen_t fromlen = sizeof(from);
		ssize_t n;

		if (poll(&pfd, 1, 100) <= 0) {
			continue;
		}
		n = recvfrom(r->fd, buf, sizeof(buf), 0,
		    (struct sockaddr *)&from, &fromlen);
		if (n > 0) {
			respond(r, buf, (size_t)n, &from, fromlen);
		}
	}
	return NULL;
}

static void
responder_start(struct responder *r)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t salen = sizeof(sa);

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (r->fd < 0 || bind(r->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(r->fd, (struct sockaddr *)&sa, &salen) != 0) {
		bail("responder socket: %s", strerror(errno));
	}
	r->port = ntohs(sa.sin_port);
	if (pthread_create(&r->thread, NULL, responder_run, r) != 0) {
		bail("responder thread");
	}
}

static void
responder_stop(struct responder *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	close(r->fd);
	pthread_mutex_destroy(&r->lock);
}

static void
responder_set(struct responder *r, const struct section *sec)
{
	pthread_mutex_lock(&r->lock);
	r->sec = sec;
	pthread_mutex_unlock(&r->lock);
}

/* ---- one section's resolver ------------------------------------------ */

/*
 * Names the responder answers: TIMEOUT names (it never does) and CNAME
 * owners (libunbound's local data gives a CNAME but does not follow it,
 * as a recursive resolver would).  Is OWNER one (or, with BELOW, a name
 * strictly under one)?
 */
static bool
forwarded(const struct section *sec, const char *owner, bool below)
{
	char a[300], b[300];

	name_key(owner, a, sizeof(a));
	for (size_t i = 0; i < sec->nto + sec->nrr; i++) {
		const char *f;

		if (i < sec->nto) {
			f = sec->to[i].owner;
		} else if (strcmp(sec->rr[i - sec->nto].type, "CNAME") == 0) {
			f = sec->rr[i - sec->nto].owner;
		} else {
			continue;
		}
		name_key(f, b, sizeof(b));
		if (below ? name_under(a, b) && strcmp(a, b) != 0 :
		    strcmp(a, b) == 0) {
			return true;
		}
	}
	return false;
}

/* Make ZONE a local zone of TYPE; false with a reason in ERR. */
static bool
zone_add(struct ag_dns *d, const char *zone, const char *type, char *err,
    size_t errlen)
{
	ag_status st = ag_dns_add_local_zone(d, zone, type);

	if (st != AG_OK) {
		snprintf(err, errlen, "local-zone %s %s: %s", zone, type,
		    ag_status_str(st));
		return false;
	}
	return true;
}

/*
 * Zones and data of SEC into D; on failure a reason in ERR.  Everything
 * is local data under "." static, except the forwarded names: each gets
 * a typetransparent zone (the types a TIMEOUT name still answers are its
 * local data; all else goes to the responder), and a name under one that
 * has records gets a static zone of its own, so that only the forwarded
 * name itself and names without data reach the responder.
 */
static bool
section_load(struct ag_dns *d, const struct section *sec, char *err,
    size_t errlen)
{
	char rr[LINE_MAX_LEN + 64];
	ag_status st;

	if (!zone_add(d, ".", "static", err, errlen)) {
		return false;
	}
	for (size_t i = 0; i < sec->nrr; i++) {
		const char *o = sec->rr[i].owner;

		if ((forwarded(sec, o, false) &&
		    !zone_add(d, o, "typetransparent", err, errlen)) ||
		    (forwarded(sec, o, true) && !forwarded(sec, o, false) &&
		    !zone_add(d, o, "static", err, errlen))) {
			return false;
		}
	}
	for (size_t i = 0; i < sec->nto; i++) {
		if (!zone_add(d, sec->to[i].owner, "typetransparent", err,
		    errlen)) {
			return false;
		}
	}
	for (size_t i = 0; i < sec->nrr; i++) {
		if (strcmp(sec->rr[i].type, "CNAME") == 0) {
			continue;	/* the responder's */
		}
		snprintf(rr, sizeof(rr), "%s %d IN %s %s", sec->rr[i].owner,
		    RR_TTL, sec->rr[i].type, sec->rr[i].data);
		if ((st = ag_dns_add_local(d, rr)) != AG_OK) {
			snprintf(err, errlen, "local-data %.300s: %s", rr,
			    ag_status_str(st));
			return false;
		}
	}
	return true;
}

static struct ag_dns *
section_dns(const struct section *sec, int port, char *err, size_t errlen)
{
	struct ag_dns_opts o = { .timeout_ms = QUERY_TIMEOUT_MS };
	struct ag_dns *d = NULL;
	char servers[64];
	ag_status st;

	snprintf(servers, sizeof(servers), "127.0.0.1@%d", port);
	o.servers = servers;
	if ((st = ag_dns_new(&o, &d, err, errlen)) != AG_OK) {
		return NULL;
	}
	if (!section_load(d, sec, err, errlen)) {
		ag_dns_free(d);
		return NULL;
	}
	return d;
}

/* ---- running the tests ----------------------------------------------- */

struct tally {
	unsigned n;		/* test points printed */
	unsigned pass;		/* tests that pass, known failures or not */
	unsigned fail;		/* unexpected failures */
	unsigned xfail;		/* known failures that fail */
	unsigned xpass;		/* known failures that pass */
};

/* "Initial processing" -> "initial-processing" */
static void
slug(const char *in, char *out, size_t outsz)
{
	size_t j = 0;

	for (size_t i = 0; in[i] != '\0' && j + 1 < outsz; i++) {
		char c = in[i];

		out[j++] = c == ' ' ? '-' : (c >= 'A' && c <= 'Z') ?
		    (char)(c - 'A' + 'a') : c;
	}
	out[j] = '\0';
}

/* Results allowed by T, as "a|b". */
static void
expected_text(const struct test *t, char *out, size_t outsz)
{
	size_t j = 0;

	out[0] = '\0';
	for (size_t i = 0; i < t->nresults && j < outsz; i++) {
		j += (size_t)snprintf(out + j, outsz - j, "%s%s", i > 0 ? "|" : "",
		    ag_spf_result_name(t->results[i]));
	}
}

/* Run T; false with WHY ("expected X got Y (reason)") if it fails. */
static bool
run_one(struct ag_spf *spf, const struct test *t, char *why, size_t whylen,
    struct ag_spf_answer *ans)
{
	char sender[AG_ADDR_MAX + 16], exp[64];
	struct ag_ip ip;
	enum ag_spf_identity id = AG_SPF_MAILFROM;
	bool ok = false;

	if (ag_ip_parse(t->host, &ip) != AG_OK) {
		snprintf(why, whylen, "cannot parse host %s", t->host);
		return false;
	}
	if (t->mailfrom == NULL || t->mailfrom[0] == '\0') {
		/* RFC 7208 2.4: the null sender is postmaster@HELO */
		id = AG_SPF_HELO;
		snprintf(sender, sizeof(sender), "postmaster@%s",
		    t->helo != NULL ? t->helo : "");
	} else {
		snprintf(sender, sizeof(sender), "%s", t->mailfrom);
	}
	if (ag_spf_check(spf, id, &ip, t->helo, sender,
	    ag_dns_now_ms() + CHECK_DEADLINE_MS, ans) != AG_OK) {
		snprintf(why, whylen, "ag_spf_check failed (out of memory)");
		return false;
	}
	for (size_t i = 0; i < t->nresults; i++) {
		ok = ok || ans->result == t->results[i];
	}
	expected_text(t, exp, sizeof(exp));
	if (!ok) {
		snprintf(why, whylen, "expected %s got %s (%s)", exp,
		    ag_spf_result_name(ans->result), ans->reason);
		return false;
	}
	if (t->explanation != NULL && strcmp(t->explanation, "DEFAULT") != 0 &&
	    ans->result == AG_SPF_FAIL &&
	    strcmp(t->explanation, ans->explanation) != 0) {
		snprintf(why, whylen, "expected explanation \"%s\" got \"%s\"",
		    t->explanation, ans->explanation);
		return false;
	}
	return true;
}

/* Print the TAP line of T. */
static void
report(struct tally *ty, const struct test *t, bool ok, const char *why)
{
	char sec[80];

	slug(t->section, sec, sizeof(sec));
	ty->n++;
	ty->pass += ok;
	if (t->known == NULL) {
		ty->fail += !ok;
		if (ok) {
			printf("ok %u - %s/%s\n", ty->n, sec, t->name);
		} else {
			printf("not ok %u - %s/%s # %s\n", ty->n, sec, t->name, why);
		}
	} else if (ok) {
		ty->xpass++;
		printf("ok %u - %s/%s # TODO known failure now passes: "
		    "take it off known-failures.txt\n", ty->n, sec, t->name);
	} else {
		ty->xfail++;
		printf("not ok %u - %s/%s # TODO known failure: %s; %s\n", ty->n,
		    sec, t->name, t->known, why);
	}
}

static void
run_section(struct tally *ty, struct responder *r, const struct section *sec)
{
	char err[512], why[600];
	struct ag_dns *d;
	struct ag_spf *spf = NULL;
	size_t nsel = 0;

	for (size_t i = 0; i < sec->ntests; i++) {
		nsel += sec->tests[i].selected;
	}
	if (nsel == 0) {
		return;
	}
	printf("# section: %s\n", sec->name);
	responder_set(r, sec);
	d = section_dns(sec, r->port, err, sizeof(err));
	if (d != NULL && ag_spf_new(d, "receiver.test", &spf, err,
	    sizeof(err)) != AG_OK) {
		spf = NULL;
	}
	for (size_t i = 0; i < sec->ntests; i++) {
		const struct test *t = &sec->tests[i];
		struct ag_spf_answer ans;
		bool ok;

		if (!t->selected) {
			continue;
		}
		memset(&ans, 0, sizeof(ans));
		if (spf == NULL) {
			snprintf(why, sizeof(why), "setup failed: %s", err);
			ok = false;
		} else {
			ok = run_one(spf, t, why, sizeof(why), &ans);
		}
		if (verbose) {
			printf("# %s: %s from %s helo %s -> %s (%s) exp \"%s\" "
			    "terms %u voids %u queries %u %ums\n", t->name,
			    t->mailfrom, t->host, t->helo,
			    ag_spf_result_name(ans.result), ans.reason,
			    ans.explanation, ans.dns_terms, ans.void_lookups,
			    ans.queries, ans.elapsed_ms);
		}
		report(ty, t, ok, why);
	}
	ag_spf_free(spf);
	ag_dns_free(d);
	responder_set(r, NULL);
}

int
main(int argc, char **argv)
{
	struct suite s = { 0 };
	struct responder r;
	struct tally ty = { 0 };
	char *suite_path = NULL, *known_path = NULL;
	size_t nsel = 0;
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "vs:k:")) != -1) {
		switch (opt) {
		case 'v':
			verbose = true;
			break;
		case 's':
			suite_path = xstrdup(optarg);
			break;
		case 'k':
			known_path = xstrdup(optarg);
			break;
		default:
			fprintf(stderr, "usage: conformance [-v] [-s SUITE] "
			    "[-k KNOWN] [TEST...]\n");
			return 2;
		}
	}
	if (suite_path == NULL) {
		suite_path = src_path("tests/spf/rfc7208-tests.txt");
	}
	if (known_path == NULL) {
		known_path = src_path("tests/spf/known-failures.txt");
	}
	suite_read(suite_path, &s);
	if (s.ntests != SUITE_TESTS) {
		bail("%s: %zu tests, expected %d", suite_path, s.ntests,
		    SUITE_TESTS);
	}
	known_read(known_path, &s);
	nsel = s.ntests;
	if (optind < argc) {
		for (size_t i = 0; i < s.nsec; i++) {
			for (size_t j = 0; j < s.sec[i].ntests; j++) {
				s.sec[i].tests[j].selected = false;
			}
		}
		nsel = 0;
		for (int i = optind; i < argc; i++) {
			struct test *t = suite_find(&s, argv[i]);

			if (t == NULL) {
				bail("no test named %s", argv[i]);
			}
			nsel += !t->selected;
			t->selected = true;
		}
	}
	printf("1..%zu\n", nsel);
	responder_start(&r);
	for (size_t i = 0; i < s.nsec; i++) {
		run_section(&ty, &r, &s.sec[i]);
	}
	responder_stop(&r);
	printf("# responder: %u queries dropped (TIMEOUT names), %u answered\n",
	    atomic_load(&r.dropped), atomic_load(&r.answered));
	printf("# %u unexpected failures, %u known failures, %u known failures "
	    "passing\n", ty.fail, ty.xfail, ty.xpass);
	printf("# conformance: %u of %u pass\n", ty.pass, ty.n);
	suite_free(&s);
	free(suite_path);
	free(known_path);
	return 0;
}
