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
 *     they return are not (we note how many such follow-ups to expect);
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
	unsigned followups;	/* A/AAAA lookups of MX/PTR names to come */
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

		out[j++] = (ch > 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	out[j] = '\0';
	return out;
}

/* Query through lib/dns.c under the evaluation's deadline. */
static ag_status
query(struct eval *e, const char *name, int type, struct ag_dns_result **res)
{
	ag_status st;
	char pn[80];

	*res = NULL;
	if (ag_dns_now_ms() >= e->deadline) {
		note(e, false, "SPF evaluation took longer than allowed");
		return AG_TEMPFAIL;
	}
	e->queries++;
	st = ag_dns_query(e->spf->dns, name, type, e->deadline, res);
	switch (st) {
	case AG_OK:
	case AG_NOTFOUND:
		break;
	case AG_PERMFAIL:
		note(e, true, "oversized DNS answer for %s",
		    printable(name, pn, sizeof(pn)));
		break;
	case AG_INVALID:
		/* not a usable name: no such domain, as resolvers see it */
		st = AG_NOTFOUND;
		break;
	default:
		note(e, false, "DNS lookup for %s failed or timed out",
		    printable(name, pn, sizeof(pn)));
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
 * so each space becomes the macro "%_", which expands to one.
 */
static bool
exp_text(const struct ag_dns_rr *d, char *out, size_t outsz)
{
	char txt[AG_DNS_TXT_MAX];
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
	return true;
}

/* Fill record IDX of RR from one answer record of TYPE. */
static bool
rr_fill(SPF_dns_rr_t *rr, int idx, ns_type type, const struct ag_dns_rr *d)
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
    const struct ag_dns_result *res)
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
		if (rr_fill(rr, n, type, &res->rr[i])) {
			n++;
		}
	}
	rr->num_rr = n;
	if (n == 0) {
		rr->herrno = NO_DATA;
	}
	return rr;
}

/* Which lookups are terms: see the comment at the top. */
static bool
lookup_counts(struct eval *e, ns_type type)
{
	if (type == ns_t_a || type == ns_t_aaaa) {
		if (e->followups > 0) {
			e->followups--;
			return true;
		}
		return count_term(e);
	}
	if (type == ns_t_mx || type == ns_t_ptr) {
		e->followups = 0;
		return count_term(e);
	}
	return true;	/* TXT here is exp=: not a term */
}

/* libspf2's lookup hook: everything but SPF records. */
static SPF_dns_rr_t *
layer_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
    int should_cache)
{
	struct eval *e = cur;
	struct ag_dns_result *res = NULL;
	SPF_dns_rr_t *rr;
	ag_status st;

	(void)should_cache;
	if (e == NULL || type == ns_t_spf) {
		/* the SPF RR type is obsolete (RFC 7208 3.1): never asked */
		return rr_empty(layer, domain, type, e == NULL ? TRY_AGAIN : NO_DATA);
	}
	if (!lookup_counts(e, type)) {
		return rr_empty(layer, domain, type, TRY_AGAIN);
	}
	st = query(e, domain, type, &res);
	if (st == AG_NOTFOUND) {
		int herrno = res != NULL && res->nxdomain ? HOST_NOT_FOUND : NO_DATA;

		ag_dns_result_free(res);
		if (type != ns_t_txt && !count_void(e)) {
			return rr_empty(layer, domain, type, TRY_AGAIN);
		}
		return rr_empty(layer, domain, type, herrno);
	}
	if (st != AG_OK) {
		return rr_empty(layer, domain, type, TRY_AGAIN);
	}
	rr = rr_from(layer, domain, type, res);
	if (rr != NULL && (type == ns_t_mx || type == ns_t_ptr)) {
		e->followups = rr->num_rr < AG_SPF_MAX_MX_NAMES ?
		    (unsigned)rr->num_rr : AG_SPF_MAX_MX_NAMES;
	}
	ag_dns_result_free(res);
	return rr != NULL ? rr : rr_empty(layer, domain, type, TRY_AGAIN);
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
		/* libspf2 wants "v=spf1 " with the space */
		snprintf(rec, recsz, "%s%s", txt, len == 6 ? " " : "");
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
	st = query(e, req->cur_dom, ns_t_txt, &res);
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
	    (t = SPF_response_get_explanation(resp)) != NULL) {
		/* attacker-controlled text: printable ASCII, bounded */
		size_t j = 0;

		for (size_t i = 0; t[i] != '\0' && j + 1 < sizeof(out->explanation); i++) {
			unsigned char ch = (unsigned char)t[i];

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

/* The domain part of SENDER, if it is a usable FQDN (4.3). */
static bool
sender_domain(const char *sender, char *out, size_t outsz)
{
	const char *at = strrchr(sender, '@');
	const char *dom = at != NULL ? at + 1 : sender;

	if (ag_domain_normalize(dom, out, outsz) != AG_OK ||
	    strchr(out, '.') == NULL) {
		return false;
	}
	return true;
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

	memset(out, 0, sizeof(*out));
	out->identity = id;
	if (client == NULL || client->family == 0 || sender == NULL ||
	    !sender_domain(sender, out->domain, sizeof(out->domain))) {
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
	if (!request_setup(req, client, helo, sender)) {
		SPF_request_free(req);
		out->result = AG_SPF_NONE;
		snprintf(out->reason, sizeof(out->reason), "unusable identity");
		return AG_OK;
	}
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
