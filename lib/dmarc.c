/*
 * dmarc.c - DMARC evaluation (see dmarc.h).
 *
 * Policy discovery (RFC 7489 6.6.3): the record at _dmarc.FROM; if there
 * is none, the record at _dmarc.ORG, where ORG is the organizational
 * domain of FROM, and then the sp= policy (np= for a From domain that
 * does not exist, RFC 9091) applies.  A temporary DNS failure at either
 * step is temperror (never a rejection); an answer that cannot be read,
 * or a record that is not usable, is permerror; several DMARC records, or
 * none, mean no policy (none).
 *
 * Result: pass when SPF passed for a domain aligned with FROM (aspf), or
 * some DKIM signature passed for a domain aligned with FROM (adkim);
 * fail otherwise.  The disposition of a failure is the policy that
 * applies, made one step lighter when the message falls outside pct
 * (6.6.4: reject becomes quarantine, quarantine becomes none).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmarc.h"
#include "orgdomain.h"

struct ag_dmarc {
	struct ag_dns *dns;
	struct ag_psl *psl;
};

/* L_MULTI: several DMARC records at one name: policy discovery ends
 * there, with no policy (RFC 7489 6.6.3 step 5). */
enum lookup { L_FOUND, L_NONE, L_MULTI, L_TEMP, L_PERM };

const char *
ag_dmarc_res_name(enum ag_dmarc_res r)
{
	switch (r) {
	case AG_DMARC_NONE:
		return "none";
	case AG_DMARC_PASS:
		return "pass";
	case AG_DMARC_FAIL:
		return "fail";
	case AG_DMARC_TEMPERROR:
		return "temperror";
	case AG_DMARC_PERMERROR:
		return "permerror";
	}
	return "permerror";
}

ag_status
ag_dmarc_new(struct ag_dns *dns, const char *psl_file, struct ag_dmarc **out,
    char *err, size_t errlen)
{
	struct ag_dmarc *d;
	ag_status st;

	*out = NULL;
	if (errlen > 0) {
		err[0] = '\0';
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return AG_NOMEM;
	}
	d->dns = dns;
	st = ag_psl_open(psl_file, &d->psl, err, errlen);
	if (st != AG_OK) {
		free(d);
		return st;
	}
	*out = d;
	return AG_OK;
}

void
ag_dmarc_free(struct ag_dmarc *d)
{
	if (d == NULL) {
		return;
	}
	ag_psl_free(d->psl);
	free(d);
}

bool
ag_dmarc_org_domain(const struct ag_dmarc *d, const char *domain, char *out,
    size_t outsz)
{
	return ag_org_domain(d->psl, domain, out, outsz);
}

/* The TXT records at _dmarc.DOMAIN, picked and parsed into REC. */
static enum lookup
lookup_record(struct ag_dmarc *d, const char *domain, uint64_t deadline,
    struct ag_dmarc_record *rec, char *why, size_t whylen)
{
	struct ag_dns_result *res = NULL;
	char name[AG_ADDR_DOMAIN_MAX + 16];
	char *bufs[AG_DNS_MAX_RR];
	const char *txts[AG_DNS_MAX_RR];
	size_t lens[AG_DNS_MAX_RR], n = 0, i;
	enum ag_dmarc_rec_status rs;
	enum lookup out = L_NONE;
	size_t ndmarc = 0;
	ag_status st;

	if ((size_t)snprintf(name, sizeof(name), "_dmarc.%s", domain) >= 254) {
		snprintf(why, whylen, "_dmarc.%.120s is too long a name", domain);
		return L_NONE;
	}
	st = ag_dns_query(d->dns, name, AG_DNS_TXT, deadline, &res);
	switch (st) {
	case AG_OK:
		break;
	case AG_NOTFOUND:
	case AG_INVALID:
		ag_dns_result_free(res);
		snprintf(why, whylen, "no record at %.120s", name);
		return L_NONE;
	case AG_PERMFAIL:
		snprintf(why, whylen, "unreadable answer for %.120s", name);
		return L_PERM;
	default:
		snprintf(why, whylen, "lookup of %.120s failed", name);
		return L_TEMP;
	}
	for (i = 0; i < res->n && n < AG_DNS_MAX_RR; i++) {
		size_t len = 0;

		bufs[n] = malloc(AG_DNS_TXT_MAX + 1);
		if (bufs[n] == NULL) {
			out = L_TEMP;
			snprintf(why, whylen, "out of memory");
			break;
		}
		if (ag_dns_txt_join(&res->rr[i], bufs[n], AG_DNS_TXT_MAX + 1,
		    &len) != AG_OK) {
			free(bufs[n]);
			continue;	/* a malformed TXT: not a policy */
		}
		txts[n] = bufs[n];
		lens[n] = len;
		n++;
	}
	ag_dns_result_free(res);
	for (i = 0; out == L_NONE && i < n; i++) {
		ndmarc += ag_dmarc_record_is_dmarc(txts[i], lens[i]);
	}
	if (out == L_NONE && ndmarc > 1) {
		snprintf(why, whylen, "%zu DMARC records at %.120s", ndmarc,
		    name);
		out = L_MULTI;
	} else if (out == L_NONE) {
		rs = ag_dmarc_record_pick(txts, lens, n, rec, why, whylen);
		out = rs == AG_DMARC_REC_OK ? L_FOUND :
		    rs == AG_DMARC_REC_INVALID ? L_PERM : L_NONE;
		if (out == L_NONE && why[0] == '\0') {
			snprintf(why, whylen, "no DMARC record at %.120s", name);
		}
	}
	for (i = 0; i < n; i++) {
		free(bufs[i]);
	}
	return out;
}

/* Does DOMAIN exist (RFC 9091: not NXDOMAIN)?  Unknown counts as yes. */
static bool
domain_exists(struct ag_dmarc *d, const char *domain, uint64_t deadline)
{
	struct ag_dns_result *res = NULL;
	ag_status st;
	bool nx;

	st = ag_dns_query(d->dns, domain, AG_DNS_A, deadline, &res);
	nx = st == AG_NOTFOUND && res != NULL && res->nxdomain;
	ag_dns_result_free(res);
	return !nx;
}

/* One step lighter (6.6.4). */
static enum ag_dmarc_policy
lighter(enum ag_dmarc_policy p)
{
	return p == AG_DMARC_P_REJECT ? AG_DMARC_P_QUARANTINE : AG_DMARC_P_NONE;
}

/* Alignment of SPF and of each passing DKIM signature. */
static void
align(struct ag_dmarc *d, const struct ag_dmarc_input *in,
    struct ag_dmarc_answer *a)
{
	size_t i, n;

	char spf[AG_ADDR_DOMAIN_MAX + 1];

	/* an SMTPUTF8 envelope domain compares in A-labels too */
	a->spf_aligned = in->spf_result == AG_SPF_PASS &&
	    in->spf_domain != NULL && in->spf_domain[0] != '\0' &&
	    ag_domain_alabel(in->spf_domain, spf, sizeof(spf)) == AG_OK &&
	    ag_dmarc_aligned(d->psl, spf, a->from_domain, a->rec.aspf_strict);
	n = in->dkim != NULL ? ag_dkim_count(in->dkim) : 0;
	for (i = 0; i < n; i++) {
		const struct ag_dkim_result *r = ag_dkim_get(in->dkim, i);

		if (r->result == AG_DKIM_PASS && ag_dmarc_aligned(d->psl,
		    r->domain, a->from_domain, a->rec.adkim_strict)) {
			a->dkim_aligned = true;
			snprintf(a->dkim_domain, sizeof(a->dkim_domain), "%s",
			    r->domain);
			break;
		}
	}
}

ag_status
ag_dmarc_check(struct ag_dmarc *d, const struct ag_dmarc_input *in,
    struct ag_dmarc_answer *a)
{
	enum lookup l;

	memset(a, 0, sizeof(*a));
	a->policy_tag = "p";
	snprintf(a->from_domain, sizeof(a->from_domain), "%s",
	    in->from_domain);
	if (!ag_org_domain(d->psl, a->from_domain, a->org_domain,
	    sizeof(a->org_domain))) {
		snprintf(a->org_domain, sizeof(a->org_domain), "%s",
		    a->from_domain);
	}
	l = lookup_record(d, a->from_domain, in->deadline_ms, &a->rec,
	    a->reason, sizeof(a->reason));
	if (l == L_FOUND) {
		snprintf(a->record_domain, sizeof(a->record_domain), "%s",
		    a->from_domain);
		a->policy = a->rec.p;
	} else if (l == L_NONE && strcmp(a->org_domain, a->from_domain) != 0) {
		a->reason[0] = '\0';
		l = lookup_record(d, a->org_domain, in->deadline_ms, &a->rec,
		    a->reason, sizeof(a->reason));
		if (l == L_FOUND) {
			snprintf(a->record_domain, sizeof(a->record_domain),
			    "%s", a->org_domain);
			a->policy = a->rec.p;
			if (a->rec.has_sp) {
				a->policy = a->rec.sp;
				a->policy_tag = "sp";
			}
			if (a->rec.has_np && !domain_exists(d, a->from_domain,
			    in->deadline_ms)) {
				a->policy = a->rec.np;
				a->policy_tag = "np";
			}
		}
	}
	switch (l) {
	case L_MULTI:
		a->result = AG_DMARC_NONE;
		return AG_OK;
	case L_TEMP:
		a->result = AG_DMARC_TEMPERROR;
		return AG_OK;
	case L_PERM:
		a->result = AG_DMARC_PERMERROR;
		return AG_OK;
	case L_NONE:
		a->result = AG_DMARC_NONE;
		return AG_OK;
	case L_FOUND:
		break;
	}
	a->have_record = true;
	a->reason[0] = '\0';
	align(d, in, a);
	if (a->spf_aligned || a->dkim_aligned) {
		a->result = AG_DMARC_PASS;
		a->disposition = AG_DMARC_P_NONE;
		snprintf(a->reason, sizeof(a->reason), "%s aligned",
		    a->dkim_aligned && a->spf_aligned ? "DKIM and SPF" :
		    a->dkim_aligned ? "DKIM" : "SPF");
		return AG_OK;
	}
	a->result = AG_DMARC_FAIL;
	a->disposition = a->policy;
	if (a->policy != AG_DMARC_P_NONE && in->sample >= a->rec.pct) {
		a->disposition = lighter(a->policy);
		a->sampled_out = true;
	}
	snprintf(a->reason, sizeof(a->reason), "no aligned SPF or DKIM pass");
	return AG_OK;
}
