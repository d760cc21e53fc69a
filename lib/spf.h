/*
 * spf.h - SPF (RFC 7208) for the MAIL FROM and HELO identities, over
 * libspf2 with our own DNS layer (lib/dns.c) plugged in underneath.
 *
 * The DNS layer is where libspf2 is defended: every query has the
 * evaluation's deadline, every SPF record is checked strictly
 * (lib/spfrecord.c) before libspf2 parses it, explanation texts are
 * screened, and the RFC 7208 4.6.4 limits (10 DNS-querying terms across
 * includes, 2 void lookups) are counted across the whole evaluation.
 * Anything our layer finds wrong overrides libspf2's answer.
 *
 * Thread safety: one struct ag_spf serves every thread; an evaluation
 * runs entirely in the calling thread.
 */
#ifndef AG_SPF_H
#define AG_SPF_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "dns.h"
#include "status.h"

enum ag_spf_result {
	AG_SPF_NONE = 0,
	AG_SPF_NEUTRAL,
	AG_SPF_PASS,
	AG_SPF_FAIL,
	AG_SPF_SOFTFAIL,
	AG_SPF_TEMPERROR,
	AG_SPF_PERMERROR,
	AG_SPF_NRESULTS
};

/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror" */
const char *ag_spf_result_name(enum ag_spf_result r);
int ag_spf_result_parse(const char *name, enum ag_spf_result *out); /* 0/-1 */

/* Which identity was checked (RFC 7208 2.3, 2.4). */
enum ag_spf_identity { AG_SPF_MAILFROM, AG_SPF_HELO };

/* The outcome of one evaluation; every text is printable ASCII. */
struct ag_spf_answer {
	enum ag_spf_result result;
	enum ag_spf_identity identity;
	char domain[AG_ADDR_DOMAIN_MAX + 1];	/* the domain checked */
	char reason[160];	/* why: "matched ip4:192.0.2.0/24", "11 DNS terms" */
	char explanation[200];	/* exp= text for fail, sanitised, or "" */
	char mechanism[80];	/* the mechanism that matched, or "" */
	unsigned dns_terms;	/* DNS-querying terms evaluated */
	unsigned void_lookups;
	unsigned queries;	/* DNS queries made */
	unsigned elapsed_ms;
};

struct ag_spf;

/*
 * Make the checker over DNS (not owned; must outlive it).  RECEIVER is our
 * host name, for Received-SPF and libspf2's default explanation.
 */
ag_status ag_spf_new(struct ag_dns *dns, const char *receiver,
    struct ag_spf **out, char *err, size_t errlen);
void ag_spf_free(struct ag_spf *s);	/* NULL is fine */

/*
 * Evaluate the MAIL FROM identity: SENDER (local@domain; the null sender
 * is passed as postmaster@HELO by the caller, RFC 7208 2.4) from CLIENT,
 * with HELO for the %{h} macro.  Or the HELO identity (postmaster@HELO).
 * DEADLINE_MS (ag_dns_now_ms() clock) bounds the whole evaluation: past
 * it the result is temperror.  A domain that is not a valid FQDN gives
 * none (4.3).  Returns AG_OK (the result is in *OUT, errors included) or
 * AG_NOMEM.
 */
ag_status ag_spf_check(struct ag_spf *s, enum ag_spf_identity id,
    const struct ag_ip *client, const char *helo, const char *sender,
    uint64_t deadline_ms, struct ag_spf_answer *out);

#endif
