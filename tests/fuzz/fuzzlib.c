/*
 * fuzzlib.c - input reading, the DNS answer table and the invariant
 * checks shared by the harnesses (see fuzzlib.h).
 *
 * DNS answers are made as libunbound makes them (struct ub_result: the
 * RDATA of each record in data[], and the whole reply packet, which
 * libopendkim parses) and handed to lib/dns.c through its fuzz hook, so
 * that from there on an answer takes the path one from the network takes.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <unbound.h>

#include "dns.h"
#include "fuzzlib.h"
#include "log.h"

/* Bounds on the table: entries, records of one answer (lib/dns.c refuses
 * more than AG_DNS_MAX_RR: a few more are allowed to reach that). */
#define FZ_DNS_MAX 256
#define FZ_DNS_MAX_ANSWER 72
#define FZ_NAME_MAX 300
#define FZ_RDATA_MAX 9000

enum fz_kind { FZ_RR, FZ_NXDOMAIN, FZ_SERVFAIL, FZ_REFUSED, FZ_TIMEOUT,
    FZ_NOMEM };

struct fz_entry {
	char name[FZ_NAME_MAX];	/* lower case, no trailing dot */
	enum fz_kind kind;
	int type;
	uint8_t *rdata;
	size_t len;
};

static struct fz_entry table[FZ_DNS_MAX];
static size_t ntable;
static unsigned nqueries;

char *
fz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL) {
		abort();
	}
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

const char *
fz_line(const char *buf, size_t size, size_t *pos, size_t *len)
{
	const char *s, *nl;

	if (*pos >= size) {
		return NULL;
	}
	s = buf + *pos;
	nl = memchr(s, '\n', size - *pos);
	*len = nl != NULL ? (size_t)(nl - s) : size - *pos;
	*pos += *len + (nl != NULL);
	return s;
}

bool
fz_word(const char *s, size_t len, const char *w, const char **rest,
    size_t *restlen)
{
	size_t wl = strlen(w);

	if (len < wl || memcmp(s, w, wl) != 0 || (len > wl && s[wl] != ' ')) {
		return false;
	}
	*rest = len > wl ? s + wl + 1 : s + len;
	*restlen = len > wl ? len - wl - 1 : 0;
	return true;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

char *
fz_unescape(const char *s, size_t len, size_t *outlen)
{
	char *out = malloc(len + 1);
	size_t i, o = 0;

	if (out == NULL) {
		abort();
	}
	for (i = 0; i < len; i++) {
		if (s[i] != '\\' || i + 1 >= len) {
			out[o++] = s[i];
			continue;
		}
		switch (s[i + 1]) {
		case '\\': out[o++] = '\\'; i++; break;
		case 'n': out[o++] = '\n'; i++; break;
		case 'r': out[o++] = '\r'; i++; break;
		case 't': out[o++] = '\t'; i++; break;
		case '0': out[o++] = '\0'; i++; break;
		case 'x':
			if (i + 3 < len && hexval(s[i + 2]) >= 0 &&
			    hexval(s[i + 3]) >= 0) {
				out[o++] = (char)(hexval(s[i + 2]) * 16 +
				    hexval(s[i + 3]));
				i += 3;
			} else {
				out[o++] = s[i];
			}
			break;
		default:
			out[o++] = s[i];
			break;
		}
	}
	out[o] = '\0';
	if (outlen != NULL) {
		*outlen = o;
	}
	return out;
}

/* ---- DNS ---------------------------------------------------------------- */

void
fz_dns_clear(void)
{
	for (size_t i = 0; i < ntable; i++) {
		free(table[i].rdata);
	}
	ntable = 0;
	nqueries = 0;
}

unsigned
fz_dns_queries(void)
{
	return nqueries;
}

/* NAME (LEN bytes) lower-cased into OUT without a trailing dot. */
static bool
name_copy(char *out, const char *name, size_t len)
{
	if (len > 0 && name[len - 1] == '.') {
		len--;
	}
	if (len >= FZ_NAME_MAX) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	out[len] = '\0';
	return true;
}

/* NAME in wire format (labels as given, even over 63: that is the
 * malformed data a consumer must survive) into OUT; its length or 0. */
static size_t
wire_name(uint8_t *out, size_t outsz, const char *name)
{
	size_t o = 0, len = strlen(name), i = 0;

	if (len > 0 && name[len - 1] == '.') {
		len--;
	}
	while (i < len) {
		const char *dot = memchr(name + i, '.', len - i);
		size_t l = dot != NULL ? (size_t)(dot - (name + i)) : len - i;

		if (l > 255 || o + 1 + l + 1 > outsz) {
			return 0;
		}
		out[o++] = (uint8_t)l;
		memcpy(out + o, name + i, l);
		o += l;
		i += l + 1;
	}
	if (o + 1 > outsz) {
		return 0;
	}
	out[o++] = 0;
	return o;
}

/* Append a character-string of TXT (cut into 255-byte pieces). */
static size_t
txt_put(uint8_t *out, size_t o, const char *s, size_t len)
{
	do {
		size_t l = len > 255 ? 255 : len;

		if (o + 1 + l > FZ_RDATA_MAX) {
			break;
		}
		out[o++] = (uint8_t)l;
		memcpy(out + o, s, l);
		o += l;
		s += l;
		len -= l;
	} while (len > 0);
	return o;
}

/* The RDATA of TYPE from DATA (decoded); its length, or 0 if unusable. */
static size_t
rdata_make(const char *type, int *qtype, const char *data, size_t dlen,
    uint8_t *out)
{
	size_t o = 0;

	if (strcasecmp(type, "A") == 0) {
		*qtype = AG_DNS_A;
		return inet_pton(AF_INET, data, out) == 1 ? 4 : 0;
	}
	if (strcasecmp(type, "AAAA") == 0) {
		*qtype = AG_DNS_AAAA;
		return inet_pton(AF_INET6, data, out) == 1 ? 16 : 0;
	}
	if (strcasecmp(type, "PTR") == 0) {
		*qtype = AG_DNS_PTR;
		return wire_name(out, FZ_RDATA_MAX, data);
	}
	if (strcasecmp(type, "MX") == 0) {
		char *end;
		unsigned long pref = strtoul(data, &end, 10);

		*qtype = AG_DNS_MX;
		while (*end == ' ') {
			end++;
		}
		out[0] = (uint8_t)(pref >> 8);
		out[1] = (uint8_t)pref;
		o = wire_name(out + 2, FZ_RDATA_MAX - 2, end);
		return o > 0 ? o + 2 : 0;
	}
	if (strcasecmp(type, "TXT") == 0) {
		const char *p = data, *bar;

		*qtype = AG_DNS_TXT;
		while ((bar = memchr(p, '|', dlen - (size_t)(p - data))) != NULL) {
			o = txt_put(out, o, p, (size_t)(bar - p));
			p = bar + 1;
		}
		return txt_put(out, o, p, dlen - (size_t)(p - data));
	}
	if (strcasecmp(type, "TXTRAW") == 0) {
		*qtype = AG_DNS_TXT;
		o = dlen < FZ_RDATA_MAX ? dlen : FZ_RDATA_MAX;
		memcpy(out, data, o);
		return o;
	}
	return 0;
}

void
fz_dns_line(const char *s, size_t len)
{
	static const struct {
		const char *name;
		enum fz_kind kind;
	} kinds[] = { { "NXDOMAIN", FZ_NXDOMAIN }, { "SERVFAIL", FZ_SERVFAIL },
	    { "REFUSED", FZ_REFUSED }, { "TIMEOUT", FZ_TIMEOUT },
	    { "NOMEM", FZ_NOMEM } };
	struct fz_entry *e;
	const char *sp, *sp2;
	char type[16], *data;
	uint8_t *rd;
	size_t tl, dlen, rl;

	if (ntable >= FZ_DNS_MAX || (sp = memchr(s, ' ', len)) == NULL) {
		return;
	}
	e = &table[ntable];
	if (!name_copy(e->name, s, (size_t)(sp - s))) {
		return;
	}
	sp++;
	sp2 = memchr(sp, ' ', len - (size_t)(sp - s));
	tl = sp2 != NULL ? (size_t)(sp2 - sp) : len - (size_t)(sp - s);
	if (tl == 0 || tl >= sizeof(type)) {
		return;
	}
	memcpy(type, sp, tl);
	type[tl] = '\0';
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (strcasecmp(type, kinds[i].name) == 0) {
			e->kind = kinds[i].kind;
			e->type = 0;
			e->rdata = NULL;
			e->len = 0;
			ntable++;
			return;
		}
	}
	data = sp2 != NULL ? fz_unescape(sp2 + 1, len - (size_t)(sp2 + 1 - s),
	    &dlen) : fz_unescape("", 0, &dlen);
	rd = malloc(FZ_RDATA_MAX);
	if (rd == NULL) {
		abort();
	}
	rl = rdata_make(type, &e->type, data, dlen, rd);
	free(data);
	if (rl == 0 && strcasecmp(type, "TXTRAW") != 0) {
		free(rd);
		return;
	}
	e->kind = FZ_RR;
	e->rdata = rd;
	e->len = rl;
	ntable++;
}

/* Does entry pattern P match NAME (both lower case, no trailing dot)? */
static bool
name_match(const char *p, const char *name, bool wild)
{
	size_t pl, nl;

	if (!wild) {
		return strcmp(p, name) == 0;
	}
	if (strcmp(p, "*") == 0) {
		return true;
	}
	if (strncmp(p, "*.", 2) != 0) {
		return false;
	}
	pl = strlen(p + 1);	/* ".suffix" */
	nl = strlen(name);
	return nl > pl && strcmp(name + nl - pl, p + 1) == 0;
}

/* Append bytes to the packet being built. */
static void
pkt_put(uint8_t *pkt, size_t *o, const void *p, size_t n)
{
	memcpy(pkt + *o, p, n);
	*o += n;
}

/* The reply packet: header, the question, and the N records of IDX. */
static void
packet_make(struct ub_result *ub, const char *qname, int qtype, int rcode,
    const size_t *idx, size_t n)
{
	size_t size = 12 + FZ_NAME_MAX + 6, o = 0, ql;
	uint8_t *pkt, hdr[12] = { 0x12, 0x34, 0x81, 0x80 }, q[FZ_NAME_MAX + 2];

	for (size_t i = 0; i < n; i++) {
		size += 12 + table[idx[i]].len;
	}
	ql = wire_name(q, sizeof(q), qname);
	if (ql == 0 || (pkt = malloc(size)) == NULL) {
		return;
	}
	hdr[3] = (uint8_t)(0x80 | (rcode & 0x0f));
	hdr[5] = 1;				/* QDCOUNT */
	hdr[6] = (uint8_t)(n >> 8);		/* ANCOUNT */
	hdr[7] = (uint8_t)n;
	pkt_put(pkt, &o, hdr, sizeof(hdr));
	pkt_put(pkt, &o, q, ql);
	pkt_put(pkt, &o, (uint8_t[]){ 0, (uint8_t)qtype, 0, 1 }, 4);
	for (size_t i = 0; i < n; i++) {
		const struct fz_entry *e = &table[idx[i]];
		uint8_t rr[10] = { 0, (uint8_t)e->type, 0, 1, 0, 0, 0x01, 0x2c,
		    (uint8_t)(e->len >> 8), (uint8_t)e->len };

		pkt_put(pkt, &o, (uint8_t[]){ 0xc0, 0x0c }, 2);
		pkt_put(pkt, &o, rr, sizeof(rr));
		pkt_put(pkt, &o, e->rdata, e->len);
	}
	ub->answer_packet = pkt;
	ub->answer_len = (int)o;
}

/* lib/dns.c's fuzz hook: the answer to NAME/TYPE from the table. */
static int
fz_answer(const char *name, int type, struct ub_result **out)
{
	char key[FZ_NAME_MAX];
	size_t idx[FZ_DNS_MAX_ANSWER], n = 0, i;
	struct ub_result *ub;
	bool found = false, wild;
	int rcode = 0;

	nqueries++;
	*out = NULL;
	if (!name_copy(key, name, strlen(name))) {
		return UB_SERVFAIL;
	}
	for (wild = false; !found; wild = true) {
		for (i = 0; i < ntable; i++) {
			const struct fz_entry *e = &table[i];

			if (!name_match(e->name, key, wild)) {
				continue;
			}
			if (!found && e->kind != FZ_RR) {
				switch (e->kind) {
				case FZ_TIMEOUT:
					return UB_SERVFAIL;
				case FZ_NOMEM:
					return UB_NOMEM;
				case FZ_NXDOMAIN:
					rcode = 3;
					break;
				case FZ_SERVFAIL:
					rcode = 2;
					break;
				default:
					rcode = 5;
					break;
				}
				found = true;
				break;
			}
			found = true;
			if (e->kind == FZ_RR && e->type == type &&
			    n < FZ_DNS_MAX_ANSWER) {
				idx[n++] = i;
			}
		}
		if (wild) {
			break;
		}
	}
	if (!found) {
		rcode = 3;
	}
	if (rcode != 0) {
		n = 0;
	}
	ub = calloc(1, sizeof(*ub));
	if (ub == NULL) {
		abort();
	}
	ub->qname = strdup(name);
	ub->qtype = type;
	ub->qclass = 1;
	ub->data = calloc(n + 1, sizeof(char *));
	ub->len = calloc(n + 1, sizeof(int));
	if (ub->qname == NULL || ub->data == NULL || ub->len == NULL) {
		abort();
	}
	for (i = 0; i < n; i++) {
		const struct fz_entry *e = &table[idx[i]];

		ub->data[i] = malloc(e->len + 1);
		if (ub->data[i] == NULL) {
			abort();
		}
		memcpy(ub->data[i], e->rdata, e->len);
		ub->len[i] = (int)e->len;
	}
	ub->havedata = n > 0;
	ub->rcode = rcode;
	ub->nxdomain = rcode == 3;
	ub->ttl = 300;
	packet_make(ub, name, type, rcode, idx, n);
	*out = ub;
	return 0;
}

void
fz_dns_install(void)
{
	ag_dns_fuzz_answer = fz_answer;
}

/* ---- checks --------------------------------------------------------- */

void
fz_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("fuzz invariant broken: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

void
fz_check_printable(const char *what, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p > 0x7e) {
			fz_fail("%s: byte 0x%02x at %zu", what, *p,
			    (size_t)(p - (const unsigned char *)s));
		}
	}
}

void
fz_check_header_value(const char *what, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\n') {
			if (p[1] != ' ' && p[1] != '\t') {
				fz_fail("%s: LF not followed by SP or TAB", what);
			}
		} else if ((*p < 0x20 && *p != '\t') || *p > 0x7e) {
			fz_fail("%s: byte 0x%02x at %zu", what, *p,
			    (size_t)(p - (const unsigned char *)s));
		}
	}
}

/* ---- logging -------------------------------------------------------- */

bool fz_verbose;

/*
 * lib/log.c's syslog(3) calls end here: the whole line is built as in the
 * daemon (fuzzed values pass through the formatting), then dropped, or
 * written to standard error with AG_FUZZ_LOG=1.
 */
void
syslog(int pri, const char *fmt, ...)
{
	char line[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (fz_verbose) {
		fprintf(stderr, "log<%d>: %s\n", pri & LOG_PRIMASK, line);
	}
}

void
fz_log_setup(void)
{
	const char *e = getenv("AG_FUZZ_LOG");

	fz_verbose = e != NULL && strcmp(e, "1") == 0;
	ag_log_open("authgate-fuzz", LOG_MAIL, 0);
	ag_log_set_level(LOG_DEBUG);
}
