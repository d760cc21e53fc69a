/*
 * spf.c - SPF over libspf2, with our DNS layer underneath.
 *
 * libspf2 asks its DNS layer for records through two hooks of
 * SPF_dns_server_t: get_spf (the SPF record of the current domain: the
 * checked domain, then every include: and redirect= target) and lookup
 * (everything else: A, AAAA, MX, PTR for mechanisms, TXT for exp=).  Both
 * are ours.  They answer from lib/dns.c under the evaluation's deadline and
 * keep the RFC 7208 4.6.4 counts for the whole evaluation, which libspf2
 * does not do across includes:
 *   - every get_spf after the first is an include or redirect term;
 *   - MX and PTR lookups are terms, and the A/AAAA lookups of the names
 *     they return are not (we keep those names to recognise them);
 *   - any other A/AAAA lookup is an a or exists term;
 *   - a lookup answering NXDOMAIN or no data is a void lookup.
 * Each record goes through ag_spf_record_check() before libspf2 compiles
 * it; explanation texts through ag_spf_explanation_check().  What the
 * layer finds (a bad record, a limit passed, a DNS timeout, the deadline)
 * is kept in the evaluation and overrides libspf2's answer at the end.
 *
 * The evaluation's state reaches the hooks through a thread-local pointer:
 * libspf2's hooks carry no per-request argument, and an evaluation runs
 * entirely in the calling thread.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#include "log.h"
#include "spf.h"
#include "spfrecord.h"

/* The state of one evaluation, seen by the DNS hooks. */
struct eval {
	struct ag_spf *spf;
	uint64_t deadline;
	unsigned records;	/* get_spf calls */
	unsigned terms;		/* DNS-querying terms (4.6.4) */
	unsigned voids;		/* void lookups (4.6.4) */
	unsigned queries;
	/* the names the last MX or PTR term returned: their A/AAAA lookups
	 * are part of that term, not terms of their own */
	/* every name of the answer, not only the first 10 libspf2 uses: its
	 * choice of names must never make a follow-up count as a term */
	char fnames[AG_DNS_MAX_RR][AG_ADDR_DOMAIN_MAX + 1];
	unsigned nfnames;
	ns_type followup_of;	/* ns_t_mx or ns_t_ptr */
	struct ag_ip client;	/* for the CIDR /0 rewrite (for_libspf2) */
	bool tempfail;		/* a DNS timeout or server failure */
	bool permerror;		/* a bad record, a limit passed */
	char why[160];		/* the first thing our layer found */
};

struct ag_spf {
	SPF_server_t *server;
	SPF_dns_server_t layer;
	struct ag_dns *dns;
};

static __thread struct eval *cur;

/*
 * libspf2 silently drops the terms of a record past its 63rd (so a record
 * with 64 ip4 terms and -all ends neutral); rather than act on part of a
 * record, such a record is a permerror here.
 */
#define AG_SPF_LIBSPF2_TERMS 63

/* The default explanation we give libspf2: it means "no explanation". */
#define AG_SPF_NO_EXP "authgate-no-explanation"

/* RFC 7208 7.3: an expanded domain name is cut to 253 characters. */
#define AG_SPF_NAME_MAX 253

/*
 * libspf2 cannot hold a CIDR length of 0 (it stores "no length" as 0 and
 * its compiler refuses /0), which RFC 7208 5.6 allows.  for_libspf2()
 * rewrites ip4:X/0 and ip6:X/0 as two /1 networks, and an a or mx term
 * whose length for the client's family is 0 as the same term on
 * DOMAIN.AG_SPF_ANY_LABEL: the lookup hook strips the label, looks the
 * real name up, and answers with the client's own address when the real
 * answer has any address, which is what /0 matches.  Records that use
 * the label themselves are refused (pick_record).
 */
#define AG_SPF_ANY_LABEL "agcidrzero"

static const char *const result_names[AG_SPF_NRESULTS] = {
	"none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"
};

const char *
ag_spf_result_name(enum ag_spf_result r)
{
	return (unsigned)r < AG_SPF_NRESULTS ? result_names[r] : "unknown";
}

int
ag_spf_result_parse(const char *name, enum ag_spf_result *out)
{
	for (int i = 0; i < AG_SPF_NRESULTS; i++) {
		if (strcasecmp(name, result_names[i]) == 0) {
			*out = (enum ag_spf_result)i;
			return 0;
		}
	}
	return -1;
}

/* Note what our layer found; the first reason is kept. */
static void __attribute__((format(printf, 3, 4)))
note(struct eval *e, bool perm, const char *fmt, ...)
{
	va_list ap;

	if (perm) {
		e->permerror = true;
	} else {
		e->tempfail = true;
	}
	if (e->why[0] != '\0') {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(e->why, sizeof(e->why), fmt, ap);
	va_end(ap);
}

/* Count one DNS-querying term; false once past the limit. */
static bool
count_term(struct eval *e)
{
	if (++e->terms > AG_SPF_MAX_DNS_TERMS) {
		note(e, true, "more than %d DNS-querying terms",
		    AG_SPF_MAX_DNS_TERMS);
		return false;
	}
	return true;
}

/* Count one void lookup; false once past the limit. */
static bool
count_void(struct eval *e)
{
	if (++e->voids > AG_SPF_MAX_VOID) {
		note(e, true, "more than %d void DNS lookups", AG_SPF_MAX_VOID);
		return false;
	}
	return true;
}

/* Copy DOMAIN into OUT as printable ASCII for a reason text. */
static const char *
printable(const char *s, char *out, size_t outsz)
{
	size_t j = 0;

	for (size_t i = 0; s != NULL && s[i] != '\0' && j + 1 < outsz; i++) {
		unsigned char ch = (unsigned char)s[i];

		out[j++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	out[j] = '\0';
	return out;
}

/* RFC 7208 7.3: drop labels on the left until NAME fits in 253. */
static const char *
name_cut(const char *name)
{
	const char *dot;

	while (strlen(name) > AG_SPF_NAME_MAX &&
	    (dot = strchr(name, '.')) != NULL) {
		name = dot + 1;
	}
	return name;
}

/*
 * Query through lib/dns.c under the evaluation's deadline.  A QUIET
 * lookup's failure is the caller's to weigh, not the evaluation's: the
 * exp= TXT lookup (6.2: a DNS error means no explanation) and the A/AAAA
 * lookup of a PTR name (5.5: an error skips that name).
 */
static ag_status
query(struct eval *e, const char *name, int type, bool quiet,
    struct ag_dns_result **res)
{
	ag_status st;
	char pn[80];

	*res = NULL;
	if (ag_dns_now_ms() >= e->deadline) {
		if (!quiet) {
			note(e, false, "SPF evaluation took longer than allowed");
		}
		return AG_TEMPFAIL;
	}
	e->queries++;
	name = name_cut(name);
	st = ag_dns_query(e->spf->dns, name, type, e->deadline, res);
	switch (st) {
	case AG_OK:
	case AG_NOTFOUND:
		break;
	case AG_PERMFAIL:
		if (!quiet) {
			note(e, true, "oversized DNS answer for %s",
			    printable(name, pn, sizeof(pn)));
		}
		break;
	case AG_INVALID:
		/* not a usable name: no such domain, as resolvers see it */
		st = AG_NOTFOUND;
		break;
	default:
		if (!quiet) {
			note(e, false, "DNS lookup for %s failed or timed out",
			    printable(name, pn, sizeof(pn)));
		}
		break;
	}
	return st;
}

/* A libspf2 answer with no records and HERRNO. */
static SPF_dns_rr_t *
rr_empty(SPF_dns_server_t *layer, const char *domain, ns_type type, int herrno)
{
	return SPF_dns_rr_new_init(layer, domain, type, 0, herrno);
}

/* Decode a wire-format domain name (uncompressed, as libunbound gives
 * RDATA) into OUT; false if malformed. */
static bool
wire_name(const uint8_t *p, size_t len, char *out, size_t outsz)
{
	size_t i = 0, j = 0;

	while (i < len && p[i] != 0) {
		size_t l = p[i++];

		if (l > 63 || i + l > len || j + l + 2 > outsz) {
			return false;
		}
		if (j > 0) {
			out[j++] = '.';
		}
		memcpy(out + j, p + i, l);
		j += l;
		i += l;
	}
	if (i >= len) {
		return false;
	}
	out[j] = '\0';
	return true;
}

/*
 * An explanation text (RFC 7208 6.2) as libspf2 can expand it: libspf2
 * compiles it as one macro-string and does not take a space for a space,
 * so each space becomes the macro "%_", which expands to one.  The result
 * is screened again, as libspf2 will compile it: the check of the text as
 * it came reads " %{i}" as a literal "%" (libspf2 takes a space like a
 * "%"), here it is a macro after a literal, and the compiled form can be
 * larger than the first check saw: past libspf2's 511 bytes, a stack
 * overflow in SPF_record_compile_macro() (found by tests/fuzz).
 */
static bool
exp_text(const struct ag_dns_rr *d, char *out, size_t outsz)
{
	char txt[AG_DNS_TXT_MAX], why[8];
	size_t len, j = 0;

	if (ag_dns_txt_join(d, txt, sizeof(txt), &len) != AG_OK ||
	    strlen(txt) != len) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		if (j + 3 > outsz) {
			return false;
		}
		if (txt[i] == ' ') {
			out[j++] = '%';
			out[j++] = '_';
		} else {
			out[j++] = txt[i];
		}
	}
	out[j] = '\0';
	return ag_spf_explanation_check(out, j, why, sizeof(why)) == AG_OK;
}

/* Fill record IDX of RR from one answer record of TYPE; SUFFIX, if not
 * NULL, is appended to MX names as a label (see AG_SPF_ANY_LABEL). */
static bool
rr_fill(SPF_dns_rr_t *rr, int idx, ns_type type, const struct ag_dns_rr *d,
    const char *suffix)
{
	char buf[AG_DNS_TXT_MAX];
	size_t len = 0;
	const uint8_t *p = d->data;

	switch (type) {
	case ns_t_a:
		if (d->len != 4 ||
		    SPF_dns_rr_buf_realloc(rr, idx, sizeof(struct in_addr))) {
			return false;
		}
		memcpy(&rr->rr[idx]->a, p, 4);
		return true;
	case ns_t_aaaa:
		if (d->len != 16 ||
		    SPF_dns_rr_buf_realloc(rr, idx, sizeof(struct in6_addr))) {
			return false;
		}
		memcpy(&rr->rr[idx]->aaaa, p, 16);
		return true;
	case ns_t_mx:
		if (d->len < 3 || !wire_name(p + 2, d->len - 2, buf, sizeof(buf))) {
			return false;
		}
		len = strlen(buf);
		if (suffix != NULL && snprintf(buf + len, sizeof(buf) - len,
		    ".%s", suffix) >= (int)(sizeof(buf) - len)) {
			return false;
		}
		break;
	case ns_t_ptr:
		if (!wire_name(p, d->len, buf, sizeof(buf))) {
			return false;
		}
		break;
	case ns_t_txt:
		/* only explanations come this way (records: layer_get_spf) */
		if (!exp_text(d, buf, sizeof(buf))) {
			return false;
		}
		break;
	default:
		return false;
	}
	len = strlen(buf) + 1;
	if (SPF_dns_rr_buf_realloc(rr, idx, len) != SPF_E_SUCCESS) {
		return false;
	}
	memcpy(rr->rr[idx]->txt, buf, len);	/* mx, ptr, txt share storage */
	return true;
}

/* Build libspf2's answer from ours. */
static SPF_dns_rr_t *
rr_from(SPF_dns_server_t *layer, const char *domain, ns_type type,
    const struct ag_dns_result *res, const char *suffix)
{
	SPF_dns_rr_t *rr;
	int n = 0;

	rr = SPF_dns_rr_new_init(layer, domain, type, (int)res->ttl,
	    NETDB_SUCCESS);
	if (rr == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < res->n; i++) {
		if (type == ns_t_txt) {
			char chk[AG_DNS_TXT_MAX], why[80];
			size_t len;

			/* an explanation text libspf2 might expand: screen it */
			if (ag_dns_txt_join(&res->rr[i], chk, sizeof(chk), &len)
			    != AG_OK || ag_spf_explanation_check(chk, len, why,
			    sizeof(why)) != AG_OK) {
				continue;
			}
		}
		if (rr_fill(rr, n, type, &res->rr[i], suffix)) {
			n++;
		}
		/* RFC 7208 4.6.4: only the first 10 PTR names are checked.
		 * Given more, libspf2 answers permerror ("too many DNS
		 * lookups") when no name among the first it tries matches,
		 * so which result came depended on the order of the answer. */
		if (type == ns_t_ptr && n >= AG_SPF_MAX_PTR_NAMES) {
			break;
		}
	}
	rr->num_rr = n;
	if (n == 0) {
		rr->herrno = NO_DATA;
	}
	return rr;
}

/* Is DOMAIN one of the names the last MX or PTR term returned? */
static bool
is_followup(const struct eval *e, const char *domain)
{
	size_t len = strlen(domain);

	if (len > 0 && domain[len - 1] == '.') {
		len--;
	}
	for (unsigned i = 0; i < e->nfnames; i++) {
		if (strlen(e->fnames[i]) == len &&
		    strncasecmp(e->fnames[i], domain, len) == 0) {
			return true;
		}
	}
	return false;
}

/* Remember the names of an MX or PTR answer (see is_followup). */
static void
note_followups(struct eval *e, ns_type type, const SPF_dns_rr_t *rr)
{
	e->followup_of = type;
	e->nfnames = 0;
	for (int i = 0; i < rr->num_rr && e->nfnames < AG_DNS_MAX_RR; i++) {
		const char *n = type == ns_t_mx ? rr->rr[i]->mx : rr->rr[i]->ptr;
		size_t len = strlen(n);

		if (len > 0 && n[len - 1] == '.') {
			len--;
		}
		if (len < sizeof(e->fnames[0])) {
			memcpy(e->fnames[e->nfnames], n, len);
			e->fnames[e->nfnames++][len] = '\0';
		}
	}
}

/* Which lookups are terms: see the comment at the top. */
static bool
lookup_counts(struct eval *e, ns_type type, const char *domain)
{
	if (type == ns_t_a || type == ns_t_aaaa) {
		return is_followup(e, domain) || count_term(e);
	}
	if (type == ns_t_mx || type == ns_t_ptr) {
		e->nfnames = 0;
		return count_term(e);
	}
	return true;	/* TXT here is exp=: not a term */
}

/* If DOMAIN ends in the label AG_SPF_ANY_LABEL, the name before it. */
static bool
any_strip(const char *domain, char *out, size_t outsz)
{
	size_t len = strlen(domain), tl = strlen(AG_SPF_ANY_LABEL);

	if (len > 0 && domain[len - 1] == '.') {
		len--;
	}
	if (len <= tl + 1 || domain[len - tl - 1] != '.' ||
	    strncasecmp(domain + len - tl, AG_SPF_ANY_LABEL, tl) != 0 ||
	    len - tl - 1 >= outsz) {
		return false;
	}
	memcpy(out, domain, len - tl - 1);
	out[len - tl - 1] = '\0';
	return true;
}

/* An A/AAAA answer holding just the client's address: a /0 match. */
static SPF_dns_rr_t *
rr_client(SPF_dns_server_t *layer, const char *domain, ns_type type,
    const struct eval *e, const struct ag_dns_result *res)
{
	size_t alen = type == ns_t_a ? 4 : 16;
	SPF_dns_rr_t *rr;

	rr = SPF_dns_rr_new_init(layer, domain, type, (int)res->ttl,
	    NETDB_SUCCESS);
	if (rr == NULL) {
		return NULL;
	}
	if ((e->client.family == AF_INET) != (type == ns_t_a) ||
	    SPF_dns_rr_buf_realloc(rr, 0, alen) != SPF_E_SUCCESS) {
		rr->herrno = NO_DATA;
		return rr;
	}
	memcpy(type == ns_t_a ? (void *)&rr->rr[0]->a : (void *)&rr->rr[0]->aaaa,
	    e->client.addr, alen);
	rr->num_rr = 1;
	return rr;
}

/* libspf2's lookup hook: everything but SPF records. */
static SPF_dns_rr_t *
layer_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
    int should_cache)
{
	struct eval *e = cur;
	struct ag_dns_result *res = NULL;
	char real[AG_ADDR_DOMAIN_MAX + 1], pn[80];
	SPF_dns_rr_t *rr;
	ag_status st;
	bool any, quiet;

	(void)should_cache;
	if (e == NULL || type == ns_t_spf) {
		/* the SPF RR type is obsolete (RFC 7208 3.1): never asked */
		return rr_empty(layer, domain, type, e == NULL ? TRY_AGAIN : NO_DATA);
	}
	any = any_strip(domain, real, sizeof(real));
	quiet = type == ns_t_txt || ((type == ns_t_a || type == ns_t_aaaa) &&
	    e->followup_of == ns_t_ptr && is_followup(e, domain));
	if (!lookup_counts(e, type, domain)) {
		return rr_empty(layer, domain, type, TRY_AGAIN);
	}
	st = query(e, any ? real : domain, type, quiet, &res);
	if (st == AG_NOTFOUND) {
		int herrno = res != NULL && res->nxdomain ? HOST_NOT_FOUND : NO_DATA;

		ag_dns_result_free(res);
		if (type != ns_t_txt && !count_void(e)) {
			return rr_empty(layer, domain, type, TRY_AGAIN);
		}
		return rr_empty(layer, domain, type, herrno);
	}
	if (st != AG_OK) {
		/* libspf2 makes TRY_AGAIN temperror; a PTR name is skipped */
		return rr_empty(layer, domain, type, quiet && type != ns_t_txt ?
		    HOST_NOT_FOUND : TRY_AGAIN);
	}
	if (type == ns_t_mx && res->n > AG_SPF_MAX_MX_NAMES) {
		/* 4.6.4: more than 10 MX records is a permerror */
		note(e, true, "more than %d MX records for %s",
		    AG_SPF_MAX_MX_NAMES, printable(domain, pn, sizeof(pn)));
		ag_dns_result_free(res);
		return rr_empty(layer, domain, type, TRY_AGAIN);
	}
	if (any && (type == ns_t_a || type == ns_t_aaaa)) {
		rr = rr_client(layer, domain, type, e, res);
	} else {
		rr = rr_from(layer, domain, type, res,
		    any && type == ns_t_mx ? AG_SPF_ANY_LABEL : NULL);
	}
	if (rr != NULL && (type == ns_t_mx || type == ns_t_ptr)) {
		note_followups(e, type, rr);
	}
	ag_dns_result_free(res);
	return rr != NULL ? rr : rr_empty(layer, domain, type, TRY_AGAIN);
}

/* ---- the record as libspf2 can run it --------------------------------- */

/* Append LEN bytes of S to OUT (*O used of OUTSZ); false when full. */
static bool
put(char *out, size_t *o, size_t outsz, const char *s, size_t len)
{
	if (*o + len + 1 > outsz) {
		return false;
	}
	memcpy(out + *o, s, len);
	*o += len;
	out[*o] = '\0';
	return true;
}

/* Digits ending at END (exclusive) in T, after START: their start. */
static size_t
digits_back(const char *t, size_t start, size_t end)
{
	while (end > start && isdigit((unsigned char)t[end - 1])) {
		end--;
	}
	return end;
}

/*
 * An a or mx term T (LEN bytes, the name ending at NAME_END) for a client
 * of FAMILY: a CIDR length of 0 for the other family is dropped (it cannot
 * apply), one for the client's family makes the term look up
 * DOMAIN.AG_SPF_ANY_LABEL instead (see there).
 */
static bool
put_dual_cidr(const char *t, size_t len, size_t name_end, int family,
    char *out, size_t *o, size_t outsz)
{
	size_t base = len, d4 = len, d6 = len, e4, p, dlen;
	bool zero4, zero6;
	const char *dom;

	p = digits_back(t, name_end, base);
	if (p < base && p >= name_end + 2 && t[p - 1] == '/' && t[p - 2] == '/') {
		d6 = base = p - 2;
	}
	p = digits_back(t, name_end, base);
	if (p < base && p >= name_end + 1 && t[p - 1] == '/') {
		d4 = base = p - 1;
	}
	e4 = d6 < len ? d6 : len;	/* end of the ip4 length */
	zero4 = d4 < len && e4 - d4 == 2 && t[d4 + 1] == '0';
	zero6 = d6 < len && len - d6 == 3 && t[d6 + 2] == '0';
	if (!zero4 && !zero6) {
		return put(out, o, outsz, t, len);
	}
	if (family == AF_INET ? !zero4 : !zero6) {
		return put(out, o, outsz, t, base) &&
		    (d4 == len || zero4 || put(out, o, outsz, t + d4, e4 - d4)) &&
		    (d6 == len || zero6 || put(out, o, outsz, t + d6, len - d6));
	}
	if (name_end < base && t[name_end] == ':') {
		dom = t + name_end + 1;
		dlen = base - name_end - 1;
	} else {
		dom = "%{d}";
		dlen = 4;
	}
	while (dlen > 0 && dom[dlen - 1] == '.') {
		dlen--;
	}
	return put(out, o, outsz, t, name_end) && put(out, o, outsz, ":", 1) &&
	    put(out, o, outsz, dom, dlen) && put(out, o, outsz, ".", 1) &&
	    put(out, o, outsz, AG_SPF_ANY_LABEL, strlen(AG_SPF_ANY_LABEL));
}

/* One term T (LEN bytes) as libspf2 can run it, into OUT.  REDIRECT
 * says which pass: redirect= only (moved to the end) or all else. */
static bool
put_term(const char *t, size_t len, int family, bool redirect, char *out,
    size_t *o, size_t outsz)
{
	size_t q = (len > 0 && strchr("+-~?", t[0]) != NULL) ? 1 : 0;
	size_t n = 0;

	/* a modifier: name "=" (4.6.1); unknown ones are ignored (6) */
	if (isalpha((unsigned char)t[0])) {
		while (n < len && (isalnum((unsigned char)t[n]) ||
		    strchr("-_.", t[n]) != NULL)) {
			n++;
		}
		if (n < len && t[n] == '=') {
			bool is_redirect = n == 8 && strncasecmp(t, "redirect", 8) == 0;
			bool is_exp = n == 3 && strncasecmp(t, "exp", 3) == 0;

			if (is_redirect != redirect || (!is_redirect && !is_exp)) {
				return true;
			}
			return put(out, o, outsz, " ", 1) && put(out, o, outsz, t, len);
		}
	}
	if (redirect) {
		return true;
	}
	for (n = q; n < len && t[n] != ':' && t[n] != '/'; n++) {
	}
	if (!put(out, o, outsz, " ", 1)) {
		return false;
	}
	if ((n - q == 3 && strncasecmp(t + q, "ip4", 3) == 0) ||
	    (n - q == 3 && strncasecmp(t + q, "ip6", 3) == 0)) {
		bool v4 = t[q + 2] == '4';

		if (len > n + 2 && t[len - 2] == '/' && t[len - 1] == '0') {
			/* X/0 is every address: two halves of the space */
			char two[64];

			snprintf(two, sizeof(two), "%.*sip%c:%s %.*sip%c:%s",
			    (int)q, t, v4 ? '4' : '6', v4 ? "0.0.0.0/1" : "::/1",
			    (int)q, t, v4 ? '4' : '6',
			    v4 ? "128.0.0.0/1" : "8000::/1");
			return put(out, o, outsz, two, strlen(two));
		}
		return put(out, o, outsz, t, len);
	}
	if ((n - q == 1 && strncasecmp(t + q, "a", 1) == 0) ||
	    (n - q == 2 && strncasecmp(t + q, "mx", 2) == 0)) {
		return put_dual_cidr(t, len, n, family, out, o, outsz);
	}
	return put(out, o, outsz, t, len);
}

/*
 * Rewrite the checked record REC into what libspf2 runs as RFC 7208 says:
 * unknown modifiers dropped (libspf2 refuses names with ".", "-", "_"),
 * redirect= moved last (libspf2 evaluates it where it stands, 6.1 says
 * after every mechanism), CIDR lengths of 0 rewritten (AG_SPF_ANY_LABEL).
 */
static bool
for_libspf2(const char *rec, int family, char *out, size_t outsz)
{
	size_t o = 0;

	out[0] = '\0';
	if (!put(out, &o, outsz, "v=spf1", 6)) {
		return false;
	}
	for (int pass = 0; pass < 2; pass++) {
		const char *p = rec + 6;

		while (*p != '\0') {
			size_t len;

			p += strspn(p, " ");
			len = strcspn(p, " ");
			if (len > 0 && !put_term(p, len, family, pass == 1, out, &o,
			    outsz)) {
				return false;
			}
			p += len;
		}
	}
	if (o == 6 && !put(out, &o, outsz, " ", 1)) {
		return false;	/* libspf2 wants "v=spf1 " with the space */
	}
	return true;
}

/* Does TXT mention AG_SPF_ANY_LABEL (reserved for for_libspf2)? */
static bool
any_used(const char *txt)
{
	size_t tl = strlen(AG_SPF_ANY_LABEL);

	for (; *txt != '\0'; txt++) {
		if (strncasecmp(txt, AG_SPF_ANY_LABEL, tl) == 0) {
			return true;
		}
	}
	return false;
}

/* The terms of a record after "v=spf1", separated by spaces. */
static unsigned
count_terms(const char *rec)
{
	unsigned n = 0;
	bool in = false;

	for (const char *p = rec; *p != '\0'; p++) {
		if (*p == ' ') {
			in = false;
		} else if (!in) {
			in = true;
			n++;
		}
	}
	return n > 0 ? n - 1 : 0;
}

/* Find the one SPF record among the TXT answers; checked. */
static SPF_errcode_t
pick_record(struct eval *e, SPF_response_t *resp, const char *domain,
    const struct ag_dns_result *res, char *rec, size_t recsz)
{
	char txt[AG_DNS_TXT_MAX], why[120], pn[80];
	size_t len, found = 0;

	for (size_t i = 0; i < res->n; i++) {
		if (ag_dns_txt_join(&res->rr[i], txt, sizeof(txt), &len) != AG_OK) {
			continue;	/* not an SPF record we could use anyway */
		}
		if (!ag_spf_record_is_spf(txt, len)) {
			continue;
		}
		if (++found > 1) {
			note(e, true, "more than one SPF record for %s",
			    printable(domain, pn, sizeof(pn)));
			return SPF_E_MULTIPLE_RECORDS;
		}
		if (ag_spf_record_check(txt, len, NULL, why, sizeof(why)) != AG_OK) {
			note(e, true, "bad SPF record for %s: %s",
			    printable(domain, pn, sizeof(pn)), why);
			return SPF_E_SYNTAX;
		}
		if (any_used(txt) ||
		    !for_libspf2(txt, e->client.family, rec, recsz)) {
			note(e, true, "SPF record for %s not usable here",
			    printable(domain, pn, sizeof(pn)));
			return SPF_E_SYNTAX;
		}
		if (count_terms(rec) > AG_SPF_LIBSPF2_TERMS) {
			note(e, true, "SPF record for %s has more than %d terms",
			    printable(domain, pn, sizeof(pn)), AG_SPF_LIBSPF2_TERMS);
			return SPF_E_SYNTAX;
		}
	}
	if (found == 0) {
		resp->result = SPF_RESULT_NONE;
		return SPF_E_NOT_SPF;
	}
	return SPF_E_SUCCESS;
}

/* libspf2's get_spf hook: the SPF record of the current domain. */
static SPF_errcode_t
layer_get_spf(SPF_server_t *server, SPF_request_t *req, SPF_response_t *resp,
    SPF_record_t **recp)
{
	struct eval *e = cur;
	struct ag_dns_result *res = NULL;
	char rec[AG_DNS_TXT_MAX + 2];
	SPF_errcode_t err;
	ag_status st;

	*recp = NULL;
	if (e == NULL) {
		return SPF_E_DNS_ERROR;
	}
	if (e->records++ > 0 && !count_term(e)) {
		return SPF_E_BIG_DNS;
	}
	st = query(e, req->cur_dom, ns_t_txt, false, &res);
	if (st == AG_NOTFOUND) {
		ag_dns_result_free(res);
		if (e->records > 1 && !count_void(e)) {
			return SPF_E_BIG_DNS;
		}
		resp->result = SPF_RESULT_NONE;
		return SPF_E_NOT_SPF;
	}
	if (st != AG_OK) {
		return SPF_E_DNS_ERROR;
	}
	err = pick_record(e, resp, req->cur_dom, res, rec, sizeof(rec));
	ag_dns_result_free(res);
	if (err != SPF_E_SUCCESS) {
		return err;
	}
	return SPF_record_compile(server, resp, recp, rec);
}

ag_status
ag_spf_new(struct ag_dns *dns, const char *receiver, struct ag_spf **out,
    char *err, size_t errlen)
{
	struct ag_spf *s;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return AG_NOMEM;
	}
	s->dns = dns;
	s->layer.destroy = NULL;	/* ours: libspf2 must not free it */
	s->layer.lookup = layer_lookup;
	s->layer.get_spf = layer_get_spf;
	s->layer.name = "authgate";
	s->layer.hook = s;
	s->server = SPF_server_new_dns(&s->layer, 0);
	if (s->server == NULL) {
		snprintf(err, errlen, "libspf2: cannot create a server");
		free(s);
		return AG_NOMEM;
	}
	/* our own limit counting replaces libspf2's per-record one */
	SPF_server_set_max_dns_mech(s->server, 2 * AG_SPF_MAX_DNS_TERMS);
	SPF_server_set_max_dns_mx(s->server, AG_SPF_MAX_MX_NAMES);
	SPF_server_set_max_dns_ptr(s->server, AG_SPF_MAX_PTR_NAMES);
	if (receiver != NULL && receiver[0] != '\0') {
		SPF_server_set_rec_dom(s->server, receiver);
	}
	/* libspf2's own default explanation sends people (with the sender
	 * and client address) to a defunct web site: ours marks "none" */
	{
		SPF_response_t *r = NULL;

		SPF_server_set_explanation(s->server, AG_SPF_NO_EXP, &r);
		SPF_response_free(r);
	}
	*out = s;
	return AG_OK;
}

void
ag_spf_free(struct ag_spf *s)
{
	if (s == NULL) {
		return;
	}
	SPF_server_free(s->server);
	free(s);
}

/* Map libspf2's result. */
static enum ag_spf_result
map_result(SPF_result_t r)
{
	switch (r) {
	case SPF_RESULT_PASS:
		return AG_SPF_PASS;
	case SPF_RESULT_FAIL:
		return AG_SPF_FAIL;
	case SPF_RESULT_SOFTFAIL:
		return AG_SPF_SOFTFAIL;
	case SPF_RESULT_NEUTRAL:
		return AG_SPF_NEUTRAL;
	case SPF_RESULT_NONE:
		return AG_SPF_NONE;
	case SPF_RESULT_TEMPERROR:
		return AG_SPF_TEMPERROR;
	default:
		/* libspf2's "invalid" is its name for a syntax error */
		return AG_SPF_PERMERROR;
	}
}

/* Fill the texts of OUT from libspf2's response. */
static void
answer_texts(SPF_response_t *resp, struct ag_spf_answer *out)
{
	const char *t;

	if (out->reason[0] == '\0' && SPF_response_messages(resp) > 0) {
		SPF_error_t *m = SPF_response_message(resp, 0);

		printable(SPF_error_message(m), out->reason, sizeof(out->reason));
	}
	if (out->reason[0] == '\0' &&
	    (t = SPF_response_get_header_comment(resp)) != NULL) {
		printable(t, out->reason, sizeof(out->reason));
	}
	if (out->result == AG_SPF_FAIL &&
	    (t = SPF_response_get_explanation(resp)) != NULL &&
	    strcmp(t, AG_SPF_NO_EXP) != 0) {
		/* attacker-controlled text: printable ASCII, bounded */
		size_t j = 0;

		for (size_t i = 0; t[i] != '\0' && j + 1 < sizeof(out->explanation); i++) {
			unsigned char ch = (unsigned char)t[i];

			/* libspf2 URL-encodes as %3d; RFC 3986 2.1 wants %3D */
			if ((i >= 1 && t[i - 1] == '%' && isxdigit(ch) &&
			    isxdigit((unsigned char)t[i + 1])) ||
			    (i >= 2 && t[i - 2] == '%' &&
			    isxdigit((unsigned char)t[i - 1]) && isxdigit(ch))) {
				ch = (unsigned char)toupper(ch);
			}

			out->explanation[j++] = (ch >= 0x20 && ch < 0x7f) ?
			    (char)ch : ' ';
		}
		out->explanation[j] = '\0';
	}
}

/* Set up the request: client address, HELO, sender. */
static bool
request_setup(SPF_request_t *req, const struct ag_ip *client,
    const char *helo, const char *sender)
{
	if (client->family == AF_INET) {
		struct in_addr a;

		memcpy(&a, client->addr, 4);
		if (SPF_request_set_ipv4(req, a) != SPF_E_SUCCESS) {
			return false;
		}
	} else {
		struct in6_addr a;

		memcpy(&a, client->addr, 16);
		if (SPF_request_set_ipv6(req, a) != SPF_E_SUCCESS) {
			return false;
		}
	}
	if (helo != NULL && helo[0] != '\0' &&
	    SPF_request_set_helo_dom(req, helo) != SPF_E_SUCCESS) {
		return false;
	}
	return SPF_request_set_env_from(req, sender) == 0;
}

/*
 * The domain part of SENDER, if it is a usable FQDN (4.3), in A-labels
 * (RFC 8616 4: DNS holds those; an SMTPUTF8 sender's U-labels would be
 * looked up as raw UTF-8), and in FROM the sender for libspf2 with that
 * domain.
 */
static bool
sender_domain(const char *sender, char *out, size_t outsz, char *from,
    size_t fromsz)
{
	const char *at = strrchr(sender, '@');
	const char *dom = at != NULL ? at + 1 : sender;
	int n;

	if (ag_domain_normalize(dom, out, outsz) != AG_OK ||
	    ag_domain_alabel(out, out, outsz) != AG_OK ||
	    strchr(out, '.') == NULL) {
		out[0] = '\0';		/* no half-made name in the answer */
		return false;
	}
	n = at != NULL ? snprintf(from, fromsz, "%.*s@%s", (int)(at - sender),
	    sender, out) : snprintf(from, fromsz, "%s", out);
	return n >= 0 && (size_t)n < fromsz;
}

ag_status
ag_spf_check(struct ag_spf *s, enum ag_spf_identity id,
    const struct ag_ip *client, const char *helo, const char *sender,
    uint64_t deadline_ms, struct ag_spf_answer *out)
{
	struct eval e = { .spf = s, .deadline = deadline_ms };
	SPF_request_t *req;
	SPF_response_t *resp = NULL;
	uint64_t t0 = ag_dns_now_ms();
	char from[AG_ADDR_MAX + 2];

	memset(out, 0, sizeof(*out));
	out->identity = id;
	if (client == NULL || client->family == 0 || sender == NULL ||
	    !sender_domain(sender, out->domain, sizeof(out->domain), from,
	    sizeof(from))) {
		out->result = AG_SPF_NONE;
		snprintf(out->reason, sizeof(out->reason),
		    client == NULL || client->family == 0 ? "no client address" :
		    "no valid domain to check");
		return AG_OK;
	}
	req = SPF_request_new(s->server);
	if (req == NULL) {
		return AG_NOMEM;
	}
	if (!request_setup(req, client, helo, from)) {
		SPF_request_free(req);
		out->result = AG_SPF_NONE;
		snprintf(out->reason, sizeof(out->reason), "unusable identity");
		return AG_OK;
	}
	e.client = *client;
	cur = &e;
	SPF_request_query_mailfrom(req, &resp);
	cur = NULL;

	out->result = resp != NULL ? map_result(SPF_response_result(resp)) :
	    AG_SPF_TEMPERROR;
	if (e.permerror) {
		out->result = AG_SPF_PERMERROR;
	} else if (e.tempfail) {
		out->result = AG_SPF_TEMPERROR;
	}
	snprintf(out->reason, sizeof(out->reason), "%s", e.why);
	if (resp != NULL) {
		answer_texts(resp, out);
	}
	out->dns_terms = e.terms;
	out->void_lookups = e.voids;
	out->queries = e.queries;
	out->elapsed_ms = (unsigned)(ag_dns_now_ms() - t0);
	SPF_response_free(resp);
	SPF_request_free(req);
	return AG_OK;
}
