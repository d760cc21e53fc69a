/*
 * dmarc.h - DMARC evaluation (RFC 7489) of one message: the policy record
 * of the RFC5322.From domain (or of its organizational domain), the
 * alignment of the SPF-authenticated domain and of every passing DKIM
 * signature with the From domain, and the disposition the published
 * policy asks for, after pct.
 *
 * What to do with the answer (local overrides, the SMTP reply, the
 * headers) is the session's business (session_dmarc.c); this module only
 * looks up and decides.  Upstream Authentication-Results and Received-SPF
 * headers play no part: the inputs are our own SPF and DKIM results
 * (CVE-2019-20790).
 *
 * Thread safety: one struct ag_dmarc serves every thread.
 */
#ifndef AG_DMARC_H
#define AG_DMARC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "dkim.h"
#include "dmarcrec.h"
#include "dns.h"
#include "spf.h"
#include "status.h"

/* Results as RFC 7489 11.2 registers them for Authentication-Results. */
enum ag_dmarc_res {
	AG_DMARC_NONE = 0,	/* no policy record */
	AG_DMARC_PASS,
	AG_DMARC_FAIL,
	AG_DMARC_TEMPERROR,	/* the record could not be fetched */
	AG_DMARC_PERMERROR	/* From unusable, or the record unusable */
};

const char *ag_dmarc_res_name(enum ag_dmarc_res r);	/* "pass", ... */

struct ag_dmarc_input {
	const char *from_domain;	/* RFC5322.From domain, A-labels */
	enum ag_spf_result spf_result;	/* of the MAIL FROM (or HELO) identity */
	const char *spf_domain;		/* the domain SPF checked, or NULL */
	const struct ag_dkim_msg *dkim;	/* verified signatures, or NULL */
	uint64_t deadline_ms;		/* ag_dns_now_ms() clock; 0: timeout */
	unsigned sample;		/* 0..99, uniform: decides pct */
};

struct ag_dmarc_answer {
	enum ag_dmarc_res result;
	char from_domain[AG_ADDR_DOMAIN_MAX + 1];
	char org_domain[AG_ADDR_DOMAIN_MAX + 1];
	char record_domain[AG_ADDR_DOMAIN_MAX + 1]; /* where the record is */
	bool have_record;
	struct ag_dmarc_record rec;
	enum ag_dmarc_policy policy;	/* the p, sp or np that applies */
	const char *policy_tag;		/* "p", "sp" or "np" (static) */
	enum ag_dmarc_policy disposition; /* after pct */
	bool sampled_out;		/* pct made the disposition lighter */
	bool spf_aligned;
	bool dkim_aligned;
	char dkim_domain[AG_ADDR_DOMAIN_MAX + 1]; /* the aligned d=, or "" */
	char reason[160];		/* why (for the header comment, logs) */
};

struct ag_dmarc;

/*
 * The evaluator over DNS (not owned; must outlive it) and the Public
 * Suffix List PSL_FILE (NULL: Debian's).  A list that cannot be read
 * falls back to libpsl's built-in one, with a warning in ERR and AG_OK.
 */
ag_status ag_dmarc_new(struct ag_dns *dns, const char *psl_file,
    struct ag_dmarc **out, char *err, size_t errlen);
void ag_dmarc_free(struct ag_dmarc *d);	/* NULL is fine */

/* Evaluate IN into OUT.  AG_NOMEM only: every other trouble is a
 * result (temperror, permerror). */
ag_status ag_dmarc_check(struct ag_dmarc *d, const struct ag_dmarc_input *in,
    struct ag_dmarc_answer *out);

/* The organizational domain of DOMAIN (for reports); false if unknown. */
bool ag_dmarc_org_domain(const struct ag_dmarc *d, const char *domain,
    char *out, size_t outsz);

#endif
