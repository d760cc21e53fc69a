/*
 * session_dmarc.c - DMARC in a transaction: the From header as it
 * streams, the evaluation at end of message (lib/dmarc.c), the local
 * overrides, and the answer.
 *
 * From.  Every From header is counted; the first one's value is kept (up
 * to AG_SESSION_FROM_MAX bytes; longer is a From we cannot read).  None,
 * several, or one that is not exactly one mailbox with a domain name is
 * a From problem: On-DMARCFromError says reject (550 5.7.1) or record
 * dmarc=permerror and go on (CVE-2019-16378, CVE-2021-34555,
 * CVE-2020-12272).
 *
 * Overrides, the lighter wins: the published policy after pct, then
 * DMARCEnforce (the strongest disposition this site honours), then a
 * rule's --dmarc enforce=off (a trusted forwarder or a mailing list:
 * failures are recorded only).  A temporary DNS failure is temperror and
 * gets On-DMARCTemperror (accept or 451), never a rejection.
 *
 * Quarantine is DMARCQuarantine: hold (the MTA's hold queue, through the
 * milter's quarantine action, with every header we add) or tag (an
 * X-Authgate-Tag header).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "authres.h"
#include "dmarc.h"
#include "fromhdr.h"
#include "log.h"
#include "session_int.h"

/* A uniform number in 0..99 for pct (never fails: falls back to time). */
static unsigned
pct_sample(void)
{
	unsigned v;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
		v = (unsigned)ag_dns_now_ms() * 2654435761u;
	}
	return v % 100;
}

bool
sess_dmarc_header(struct ag_conn *c, const char *name, const char *value)
{
	struct msg *m = c->msg;
	size_t len;

	if (name == NULL || strcasecmp(name, "From") != 0) {
		return true;
	}
	if (m->from_count < UINT32_MAX) {
		m->from_count++;
	}
	if (m->from_count > 1 || value == NULL) {
		return true;
	}
	len = strlen(value);
	if (len > AG_SESSION_FROM_MAX) {
		m->from_too_long = true;
		return true;
	}
	m->from_value = strdup(value);
	return m->from_value != NULL;
}

/* Why DMARC is not evaluated for this message, or NULL. */
static const char *
skip_reason(const struct ag_conn *c)
{
	const struct msg *m = c->msg;

	if (!m->snap->cfg->dmarc_check) {
		return "off";
	}
	if (m->dmarc_check.value == 0) {
		return "rule";
	}
	if (c->auth[0] != '\0') {
		return "authenticated";
	}
	if (m->trusted) {
		return "trusted";
	}
	if (m->snap->dmarc == NULL) {
		return "no-resolver";
	}
	return NULL;
}

/* The From domain, or a From problem in V (per On-DMARCFromError). */
static bool
from_domain(struct ag_conn *c, struct ag_from *from, struct ag_verdict *v)
{
	struct msg *m = c->msg;
	const char *what;

	m->from_status = m->from_count == 0 ? AG_FROM_NONE :
	    m->from_count > 1 ? AG_FROM_MULTIPLE : m->from_too_long ?
	    AG_FROM_SYNTAX : ag_from_parse(m->from_value,
	    strlen(m->from_value), from);
	/* DNS holds A-labels: a UTF-8 From domain is looked up as one, or
	 * its policy could be sidestepped by writing it in U-labels */
	if (m->from_status == AG_FROM_OK &&
	    ag_domain_alabel(from->domain, from->domain,
	    sizeof(from->domain)) != AG_OK) {
		m->from_status = AG_FROM_BAD_DOMAIN;
	}
	if (m->from_status == AG_FROM_OK) {
		return true;
	}
	switch (m->from_status) {
	case AG_FROM_NONE:
		what = m->from_count == 0 ? "no From header" :
		    "no address in the From header";
		break;
	case AG_FROM_MULTIPLE:
		what = m->from_count > 1 ? "more than one From header" :
		    "more than one address in the From header";
		break;
	case AG_FROM_BAD_DOMAIN:
		what = "the From address has no valid domain";
		break;
	default:
		what = "the From header cannot be parsed";
		break;
	}
	m->dmarc_result = AG_DMARC_PERMERROR;
	snprintf(m->dmarc_reason, sizeof(m->dmarc_reason), "%s", what);
	if (m->snap->cfg->on_dmarc_from_error == AG_DMARC_FROMERR_REJECT) {
		ag_verdict_set(v, AG_ACT_REJECT, "550", "5.7.1", "dmarc-from",
		    "Message refused: %s (RFC 5322 requires exactly one "
		    "author address)", what);
		sess_decide(c, false, v);
	}
	return false;
}

/* The disposition that is enforced, after the local overrides. */
static enum ag_dmarc_policy
enforced(struct msg *m, enum ag_dmarc_policy d)
{
	enum ag_dmarc_policy cap =
	    (enum ag_dmarc_policy)m->snap->cfg->dmarc_enforce;

	if (d > cap) {
		d = cap;
		m->dmarc_override = "config";
	}
	if (d != AG_DMARC_P_NONE && m->dmarc_enforce.value == 0) {
		d = AG_DMARC_P_NONE;
		m->dmarc_override = "rule";
		m->dmarc_rule = m->dmarc_enforce.rule_id;
	}
	return d;
}

void
sess_dmarc_eom(struct ag_conn *c, struct ag_verdict *v)
{
	struct msg *m = c->msg;
	const struct ag_config *cfg = m->snap->cfg;
	struct ag_dmarc_input in;
	struct ag_from from;

	m->dmarc_skip = skip_reason(c);
	if (m->dmarc_skip != NULL) {
		return;
	}
	m->dmarc_done = true;
	if (!from_domain(c, &from, v)) {
		return;
	}
	snprintf(m->from_domain, sizeof(m->from_domain), "%s", from.domain);
	m->dmarc = calloc(1, sizeof(*m->dmarc));
	if (m->dmarc == NULL) {
		m->dmarc_done = false;
		m->dmarc_skip = "no-memory";
		return;
	}
	memset(&in, 0, sizeof(in));
	in.from_domain = from.domain;
	in.spf_result = m->spf_done ? m->spf.result : AG_SPF_NONE;
	in.spf_domain = m->spf_done ? m->spf.domain : NULL;
	in.dkim = m->dkim;
	in.deadline_ms = ag_dns_now_ms() + cfg->dns_timeout * 2;
	in.sample = pct_sample();
	if (ag_dmarc_check(m->snap->dmarc, &in, m->dmarc) != AG_OK) {
		free(m->dmarc);
		m->dmarc = NULL;
		m->dmarc_done = false;
		m->dmarc_skip = "no-memory";
		return;
	}
	m->dmarc_result = m->dmarc->result;
	snprintf(m->dmarc_reason, sizeof(m->dmarc_reason), "%s",
	    m->dmarc->reason);
	if (m->dmarc->result == AG_DMARC_TEMPERROR) {
		if (cfg->on_dmarc_temperror == 1) {	/* tempfail */
			ag_verdict_set(v, AG_ACT_TEMPFAIL, "451", "4.7.1",
			    "dmarc", "The DMARC policy of %s could not be "
			    "fetched, please try again later", from.domain);
			sess_decide(c, false, v);
		}
		return;
	}
	if (m->dmarc->result != AG_DMARC_FAIL) {
		return;
	}
	m->dmarc_applied = enforced(m, m->dmarc->disposition);
	if (m->dmarc_applied == AG_DMARC_P_REJECT) {
		ag_verdict_set(v, AG_ACT_REJECT, "550", "5.7.1", "dmarc",
		    "Message rejected by the DMARC policy of %s: the author "
		    "domain is neither SPF- nor DKIM-aligned", from.domain);
		sess_decide(c, false, v);
	} else if (m->dmarc_applied == AG_DMARC_P_QUARANTINE) {
		if (cfg->dmarc_quarantine == AG_DMARC_QUAR_HOLD) {
			m->dmarc_hold = true;
		} else {
			/* beside any tag SPF set: "spf=softfail dmarc=..." */
			size_t len = strlen(m->tag);

			snprintf(m->tag + len, sizeof(m->tag) - len, "%s%s",
			    len > 0 ? " " : "", "dmarc=quarantine");
		}
	}
}

/* The quarantine verdict, once the headers are added. */
void
sess_dmarc_hold(struct ag_conn *c, struct ag_verdict *v)
{
	struct msg *m = c->msg;

	if (!m->dmarc_hold || ag_verdict_is_final(v)) {
		return;
	}
	ag_verdict_set(v, AG_ACT_QUARANTINE, "", "", "dmarc",
	    "DMARC quarantine policy of %s", m->from_domain);
	if (m->snap->cfg->dry_run) {
		sess_decide(c, false, v);
	}
}

/* The dmarc result for Authentication-Results. */
bool
sess_dmarc_authres(const struct msg *m, struct ag_authres *ar)
{
	struct ag_authres_prop p[2];
	size_t np = 0;
	const char *comment = NULL;

	if (!m->dmarc_done) {
		return true;
	}
	if (m->from_domain[0] != '\0') {
		p[np++] = (struct ag_authres_prop){ "header", "from",
		    m->from_domain };
	}
	if (m->dmarc != NULL && m->dmarc->have_record) {
		p[np++] = (struct ag_authres_prop){ "policy", "dmarc",
		    ag_dmarc_policy_name(m->dmarc_result == AG_DMARC_FAIL ?
		    m->dmarc_applied : AG_DMARC_P_NONE) };
	}
	if (m->dmarc_result != AG_DMARC_PASS && m->dmarc_reason[0] != '\0') {
		comment = m->dmarc_reason;
	}
	return ag_authres_add(ar, "dmarc", ag_dmarc_res_name(m->dmarc_result),
	    comment, p, np) == AG_OK;
}

/* The log field: " dmarc=RESULT[:DISPOSITION][:override]". */
void
sess_dmarc_logfields(const struct msg *m, char *buf, size_t bufsz)
{
	char dom[96];

	buf[0] = '\0';
	if (m->dmarc_skip != NULL && !m->dmarc_done) {
		snprintf(buf, bufsz, " dmarc=skipped:%s", m->dmarc_skip);
		return;
	}
	if (!m->dmarc_done) {
		return;
	}
	ag_log_escape(dom, sizeof(dom), m->from_domain[0] != '\0' ?
	    m->from_domain : "-");
	if (m->dmarc_result == AG_DMARC_FAIL) {
		snprintf(buf, bufsz, " dmarc=fail header_from=%s policy=%s%s%s%s",
		    dom, ag_dmarc_policy_name(m->dmarc_applied),
		    m->dmarc != NULL && m->dmarc->sampled_out ? " pct=out" : "",
		    m->dmarc_override != NULL ? " override=" : "",
		    m->dmarc_override != NULL ? m->dmarc_override : "");
	} else {
		snprintf(buf, bufsz, " dmarc=%s header_from=%s",
		    ag_dmarc_res_name(m->dmarc_result), dom);
	}
}

void
sess_dmarc_free(struct msg *m)
{
	free(m->from_value);
	m->from_value = NULL;
	free(m->dmarc);
	m->dmarc = NULL;
}
