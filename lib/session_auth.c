/*
 * session_auth.c - the sender-authentication part of a session: SPF at
 * MAIL FROM (decided there, or per recipient), DKIM verification as the
 * message streams, the removal of Authentication-Results headers that
 * claim our authserv-id, and the headers we add at the top of accepted
 * mail.  State lives in the message (lib/session_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "authres.h"
#include "dkim.h"
#include "log.h"
#include "metrics.h"
#include "session_int.h"
#include "spf.h"

/* The dkim results of M, one per signature up to MAX of them and as many
 * as the header holds, or dkim=none; returns how many went in. */
static size_t
dkim_results(struct ag_authres *ar, const struct ag_dkim_msg *dm, size_t max)
{
	size_t n = ag_dkim_count(dm), i;

	if (n == 0) {
		return ag_authres_add(ar, "dkim", "none", NULL, NULL, 0) == AG_OK;
	}
	for (i = 0; i < n && i < max; i++) {
		const struct ag_dkim_result *r = ag_dkim_get(dm, i);
		struct ag_authres_prop p[5] = {
			{ "header", "d", r->domain },
			{ "header", "i", r->identity },
			{ "header", "s", r->selector },
			{ "header", "a", r->algorithm },
			{ "header", "b", r->b },
		};
		size_t np = 0;

		/* properties we know, in order, skipping empty ones */
		for (size_t j = 0; j < 5; j++) {
			if (p[j].value[0] != '\0') {
				p[np++] = p[j];
			}
		}
		if (ag_authres_add(ar, "dkim", ag_dkim_res_name(r->result),
		    r->result != AG_DKIM_PASS && r->reason[0] != '\0' ?
		    r->reason : NULL, p, np) != AG_OK) {
			break;	/* the header is full: the rest are left out */
		}
	}
	return i;
}

/* The enhanced status code of an SPF refusal (RFC 7372). */
static const char *
spf_xcode(enum ag_spf_result r, bool temp)
{
	switch (r) {
	case AG_SPF_PERMERROR:
	case AG_SPF_TEMPERROR:
		return temp ? "4.7.24" : "5.7.24";
	case AG_SPF_FAIL:
	case AG_SPF_SOFTFAIL:
		return temp ? "4.7.23" : "5.7.23";
	default:
		return temp ? "4.7.1" : "5.7.1";
	}
}

/* The verdict DISP gives SPF answer A, from RULE. */
static void
spf_verdict(struct msg *m, enum ag_disp disp, int64_t rule,
    struct ag_verdict *v)
{
	const struct ag_spf_answer *a = &m->spf;
	const char *what = ag_spf_result_name(a->result);
	bool temp = disp == AG_DISP_TEMPFAIL;

	ag_verdict_continue(v);
	if (disp == AG_DISP_ACCEPT || disp == AG_DISP_TAG) {
		return;
	}
	if (a->result == AG_SPF_TEMPERROR) {
		ag_verdict_set(v, temp ? AG_ACT_TEMPFAIL : AG_ACT_REJECT,
		    temp ? "451" : "550", spf_xcode(a->result, temp), "spf",
		    "SPF check of %s could not be completed (%s), please try "
		    "again later", a->domain, a->reason[0] != '\0' ? a->reason :
		    "DNS trouble");
	} else if (a->result == AG_SPF_PERMERROR) {
		ag_verdict_set(v, temp ? AG_ACT_TEMPFAIL : AG_ACT_REJECT,
		    temp ? "451" : "550", spf_xcode(a->result, temp), "spf",
		    "SPF record of %s is broken (%s)", a->domain,
		    a->reason[0] != '\0' ? a->reason : "permerror");
	} else {
		ag_verdict_set(v, temp ? AG_ACT_TEMPFAIL : AG_ACT_REJECT,
		    temp ? "451" : "550", spf_xcode(a->result, temp), "spf",
		    "SPF %s: %s does not designate this host as a sender%s%s",
		    what, a->domain, a->explanation[0] != '\0' ? ": " : "",
		    a->explanation);
	}
	v->rule_id = rule;
}

/* Decide what the SPF result gets under EV (transaction or recipient). */
static bool
spf_decide(struct ag_conn *c, const struct ag_eval *ev, struct ag_verdict *v)
{
	struct msg *m = c->msg;
	enum ag_spf_result r = m->spf.result;
	const struct ag_setting *s = &ev->spf_disp[r];
	enum ag_disp disp;
	int64_t rule = 0;

	if (s->value != AG_LIMIT_UNSET) {
		disp = (enum ag_disp)s->value;
		rule = s->rule_id;
	} else {
		disp = (enum ag_disp)m->snap->cfg->spf_disp[r];
	}
	if (disp == AG_DISP_TAG && m->tag[0] == '\0') {
		snprintf(m->tag, sizeof(m->tag), "spf=%s", ag_spf_result_name(r));
	}
	spf_verdict(m, disp, rule, v);
	if (sess_decide(c, false, v)) {
		return true;
	}
	if (s->trial != AG_LIMIT_UNSET && s->trial != (int64_t)disp) {
		struct ag_verdict t;

		spf_verdict(m, (enum ag_disp)s->trial, s->trial_rule_id, &t);
		sess_decide(c, true, &t);
	}
	return false;
}

/* Why SPF is not checked for this message, or NULL. */
static const char *
spf_skip_reason(const struct ag_conn *c, const struct ag_eval *ev)
{
	const struct msg *m = c->msg;

	if (!m->snap->cfg->spf_check) {
		return "off";
	}
	if (c->auth[0] != '\0') {
		return "authenticated";
	}
	if (m->trusted) {
		return "trusted";
	}
	if (ev->spf_check.value == 0) {
		return "rule";
	}
	if (!c->have_ip) {
		return "no-client-address";
	}
	return NULL;
}

/* Evaluate the MAIL FROM (and HELO) identities under one deadline. */
static ag_status
spf_run(struct ag_conn *c)
{
	struct msg *m = c->msg;
	const struct ag_config *cfg = m->snap->cfg;
	uint64_t deadline = ag_dns_now_ms() + cfg->spf_timeout;
	char helo_id[AG_ADDR_MAX + 1] = "";
	ag_status st;

	if (c->helo[0] != '\0') {
		snprintf(helo_id, sizeof(helo_id), "postmaster@%s", c->helo);
	}
	if (m->sender.is_null || m->sender.domain[0] == '\0') {
		/* RFC 7208 2.4: the null sender is checked as postmaster@HELO */
		snprintf(m->spf_identity, sizeof(m->spf_identity), "%s", helo_id);
	} else {
		ag_mailaddr_format(&m->sender, m->spf_identity,
		    sizeof(m->spf_identity));
	}
	if (m->snap->spf == NULL) {
		m->spf.result = AG_SPF_TEMPERROR;
		snprintf(m->spf.reason, sizeof(m->spf.reason), "no resolver");
		snprintf(m->spf.domain, sizeof(m->spf.domain), "%s",
		    m->sender.domain);
		m->spf_done = true;
		return AG_OK;
	}
	/* %{h} needs a name: a HELO that is no domain name is "unknown",
	 * never the client's raw text */
	st = ag_spf_check(m->snap->spf, AG_SPF_MAILFROM, &c->ip,
	    c->helo[0] != '\0' ? c->helo : "unknown", m->spf_identity,
	    deadline, &m->spf);
	if (st != AG_OK) {
		return st;
	}
	m->spf_done = true;
	if (cfg->spf_check_helo && helo_id[0] != '\0' &&
	    strcmp(helo_id, m->spf_identity) != 0) {
		st = ag_spf_check(m->snap->spf, AG_SPF_HELO, &c->ip, c->helo,
		    helo_id, deadline, &m->spf_helo);
		m->spf_helo_done = st == AG_OK;
	}
	return AG_OK;
}

/* SPF at MAIL FROM: check, and decide unless a recipient may change it. */
static void
spf_mail(struct ag_conn *c, const struct ag_eval *ev, struct ag_verdict *v)
{
	struct msg *m = c->msg;

	m->spf_skip = spf_skip_reason(c, ev);
	if (m->spf_skip != NULL) {
		return;
	}
	if (spf_run(c) != AG_OK) {
		sess_failure_action(m->snap->cfg->on_internal_error, v, "internal",
		    "Temporary internal error, please try again later");
		return;
	}
	m->spf_per_rcpt = ag_policy_spf_per_rcpt(m->snap->policy);
	if (!m->spf_per_rcpt) {
		spf_decide(c, ev, v);
	}
}

/* The Received-SPF header of the MAIL FROM result. */
static char *
received_spf(const struct ag_conn *c)
{
	const struct msg *m = c->msg;
	struct ag_received_spf r = {
		.result = ag_spf_result_name(m->spf.result),
		.comment = m->spf.reason[0] != '\0' ? m->spf.reason : NULL,
		.client_ip = c->ipstr,
		.envelope_from = m->spf_identity,
		.helo = c->helo_raw,
		.receiver = m->snap->cfg->authserv_id,
		.identity = "mailfrom",
		.mechanism = m->spf.mechanism[0] != '\0' ? m->spf.mechanism : NULL,
		.problem = (m->spf.result == AG_SPF_PERMERROR ||
		    m->spf.result == AG_SPF_TEMPERROR) && m->spf.reason[0] != '\0' ?
		    m->spf.reason : NULL,
	};

	return ag_received_spf_render(&r);
}

/* The Authentication-Results value with at most MAX dkim results (*NDKIM:
 * how many went in); NULL when no memory, or the dmarc result did not
 * fit. */
static char *
auth_results_build(const struct ag_conn *c, size_t max, size_t *ndkim)
{
	const struct msg *m = c->msg;
	struct ag_authres *ar = ag_authres_new(m->snap->cfg->authserv_id);
	char *out = NULL;
	bool ok = ar != NULL;

	if (ok && c->auth[0] != '\0') {
		struct ag_authres_prop p = { "smtp", "auth", c->auth };

		ok = ag_authres_add(ar, "auth", "pass", NULL, &p, 1) == AG_OK;
	}
	if (ok && m->spf_done) {
		struct ag_authres_prop p = { "smtp", "mailfrom", m->spf_identity };
		bool err = m->spf.result == AG_SPF_PERMERROR ||
		    m->spf.result == AG_SPF_TEMPERROR;

		ok = ag_authres_add(ar, "spf", ag_spf_result_name(m->spf.result),
		    err && m->spf.reason[0] != '\0' ? m->spf.reason : NULL,
		    &p, 1) == AG_OK;
	}
	if (ok && m->spf_helo_done) {
		struct ag_authres_prop p = { "smtp", "helo", c->helo };

		ok = ag_authres_add(ar, "spf",
		    ag_spf_result_name(m->spf_helo.result), NULL, &p, 1) == AG_OK;
	}
	*ndkim = 0;
	if (ok && m->dkim != NULL) {
		*ndkim = dkim_results(ar, m->dkim, max);
	}
	if (ok) {
		ok = sess_dmarc_authres(m, ar);
	}
	if (ok) {
		out = ag_authres_render(ar);
	}
	ag_authres_free(ar);
	return out;
}

/*
 * The Authentication-Results header: auth, spf, dkim and dmarc results.
 * The header holds AG_AUTHRES_MAX_RESULTS results and AG_AUTHRES_HEADER_MAX
 * bytes: when the DKIM results of a message with many signatures leave no
 * room for the DMARC result, it is built again with fewer of them (DMARC
 * matters more than the last signature; the log line has them all).
 */
static char *
auth_results(const struct ag_conn *c)
{
	const struct msg *m = c->msg;
	size_t max = SIZE_MAX, ndkim = 0;
	char *out = NULL;

	for (;;) {
		out = auth_results_build(c, max, &ndkim);
		/* MAX shrinks each time round (dkim=none is never taken out):
		 * out of memory ends the loop too */
		if (out != NULL || !m->dmarc_done || ndkim == 0 ||
		    ndkim - 1 >= max) {
			break;
		}
		max = ndkim - 1;
	}
	if (out != NULL && m->dkim != NULL && ndkim < ag_dkim_count(m->dkim)) {
		ag_log_notice("dkim results %zu to %zu left out of "
		    "Authentication-Results", ndkim + 1,
		    ag_dkim_count(m->dkim));
	}
	return out;
}

/* Is ID (from an incoming header) ours, or one we are told to strip? */
static bool
id_is_ours(const struct ag_config *cfg, const char *id)
{
	const char *p = cfg->authserv_strip;

	if (strcasecmp(id, cfg->authserv_id) == 0) {
		return true;
	}
	while (p != NULL && *p != '\0') {
		size_t len = strcspn(p, " ");

		if (len == strlen(id) && strncasecmp(p, id, len) == 0) {
			return true;
		}
		p += len;
		p += *p == ' ';
	}
	return false;
}

/*
 * Remember header number N of Authentication-Results as forged.  Every
 * one is kept: leaving any out would let it through.  The list grows with
 * the message (4 bytes for a header of at least 26), which the MTA's
 * message size limit bounds.
 */
static bool
forged_add(struct msg *m, unsigned n)
{
	if (m->nforged == m->forged_cap) {
		size_t cap = m->forged_cap == 0 ? 4 : m->forged_cap * 2;
		unsigned *p;

		if (cap > SIZE_MAX / sizeof(*p)) {
			return false;
		}
		p = realloc(m->ar_forged, cap * sizeof(*p));
		if (p == NULL) {
			return false;
		}
		m->ar_forged = p;
		m->forged_cap = cap;
	}
	m->ar_forged[m->nforged++] = n;
	return true;
}

void
sess_auth_mail(struct ag_conn *c, const struct ag_eval *ev,
    struct ag_verdict *v)
{
	struct msg *m = c->msg;

	spf_mail(c, ev, v);
	m->dkim_req = ev->dkim_require;
	m->dmarc_check = ev->dmarc_check;
	m->dmarc_enforce = ev->dmarc_enforce;
	sess_sign_mail(c);
	m->dkim_skip = NULL;
	if (!m->snap->cfg->dkim_verify) {
		m->dkim_skip = "off";
	} else if (c->auth[0] != '\0') {
		m->dkim_skip = "authenticated";
	} else if (m->trusted) {
		m->dkim_skip = "trusted";
	} else if (m->snap->dkim == NULL) {
		m->dkim_skip = "no-resolver";
	}
}

bool
sess_auth_rcpt(struct ag_conn *c, const struct ag_eval *ev,
    struct ag_verdict *v)
{
	struct msg *m = c->msg;

	return m->spf_per_rcpt && m->spf_done && spf_decide(c, ev, v);
}

bool
sess_auth_header(struct ag_conn *c, const char *name, const char *value)
{
	struct msg *m = c->msg;
	char id[256];

	if (!sess_dmarc_header(c, name, value) ||
	    !sess_sign_header(c, name != NULL ? name : "",
	    value != NULL ? value : "")) {
		return false;
	}
	if (name != NULL && strcasecmp(name, "Authentication-Results") == 0) {
		/* ours, or one no parser can attribute: removed (RFC 8601 5) */
		m->ar_seen++;
		if ((value == NULL ||
		    ag_authres_parse_id(value, id, sizeof(id)) != AG_OK ||
		    id_is_ours(m->snap->cfg, id)) && !forged_add(m, m->ar_seen)) {
			return false;
		}
	}
	if (m->dkim_skip != NULL) {
		return true;
	}
	if (m->dkim == NULL) {
		const struct ag_config *cfg = m->snap->cfg;

		m->dkim = ag_dkim_msg_new(m->snap->dkim, c->qid[0] != '\0' ?
		    c->qid : "NOQUEUE", cfg->dkim_max_sigs,
		    ag_dns_now_ms() + cfg->dkim_timeout);
		if (m->dkim == NULL) {
			return false;
		}
	}
	return ag_dkim_header(m->dkim, name != NULL ? name : "",
	    value != NULL ? value : "") == AG_OK;
}

bool
sess_auth_eoh(struct ag_conn *c)
{
	struct msg *m = c->msg;

	if (!sess_sign_eoh(c)) {
		return false;
	}
	return m->dkim == NULL || ag_dkim_eoh(m->dkim) == AG_OK;
}

bool
sess_auth_body(struct ag_conn *c, const unsigned char *buf, size_t len)
{
	struct msg *m = c->msg;

	if (!sess_sign_body(c, buf, len)) {
		return false;
	}
	return m->dkim == NULL || ag_dkim_body(m->dkim, buf, len) == AG_OK;
}

/*
 * Remove the forged headers, last first: deleting the first would shift
 * the numbers of the others and let copies survive (CVE-2022-48521).
 */
static bool
forged_remove(struct msg *m)
{
	for (size_t i = m->nforged; i > 0; i--) {
		if (!sess_edit_add(m, AG_EDIT_DELETE, (int)m->ar_forged[i - 1],
		    "Authentication-Results", NULL)) {
			return false;
		}
	}
	return true;
}

/* Is signing domain D the required domain REQ or a subdomain of it? */
static bool
domain_covers(const char *req, const char *d)
{
	size_t lr = strlen(req), ld = strlen(d);

	return strcasecmp(req, d) == 0 || (ld > lr + 1 &&
	    d[ld - lr - 1] == '.' && strcasecmp(d + ld - lr, req) == 0);
}

/* The verdict for a message lacking the signature of D, or none. */
static void
dkim_missing(const struct msg *m, const char *d, struct ag_verdict *v)
{
	bool pass = false, policy = false, temp = false, other = false;

	ag_verdict_continue(v);
	for (size_t i = 0; i < ag_dkim_count(m->dkim); i++) {
		const struct ag_dkim_result *r = ag_dkim_get(m->dkim, i);
		bool ours = domain_covers(d, r->domain);

		pass |= ours && r->result == AG_DKIM_PASS;
		policy |= ours && r->result == AG_DKIM_POLICY;
		temp |= ours && r->result == AG_DKIM_TEMPERROR;
		other |= !ours && r->result == AG_DKIM_PASS;
	}
	if (pass) {
		return;
	}
	if (temp) {
		if (m->snap->cfg->on_dkim_temperror != AG_ACT_ACCEPT) {
			ag_verdict_set(v, AG_ACT_TEMPFAIL, "451", "4.7.20", "dkim",
			    "The DKIM key of %s could not be fetched, please try "
			    "again later", d);
		}
	} else if (policy) {
		ag_verdict_set(v, AG_ACT_REJECT, "550", "5.7.21", "dkim",
		    "No acceptable DKIM signature of %s (weak key or "
		    "algorithm, RFC 8301, or body only partly signed)", d);
	} else if (other) {
		ag_verdict_set(v, AG_ACT_REJECT, "550", "5.7.22", "dkim",
		    "No passing DKIM signature of %s (only of other domains)", d);
	} else {
		ag_verdict_set(v, AG_ACT_REJECT, "550", "5.7.20", "dkim",
		    "No passing DKIM signature of %s, which must sign its mail",
		    d);
	}
}

/*
 * A rule requires a passing signature of the sender domain (or of a
 * subdomain): enforce it, or remember the trial of a dry-run rule.
 */
static void
dkim_require(struct ag_conn *c, struct ag_verdict *v)
{
	struct msg *m = c->msg;
	const struct ag_setting *s = &m->dkim_req;
	bool enforce = s->value == 1;

	if ((!enforce && s->trial != 1) || m->dkim == NULL ||
	    m->sender.is_null || m->sender.domain[0] == '\0') {
		return;		/* not required, or not verified */
	}
	dkim_missing(m, m->sender.domain, v);
	v->rule_id = enforce ? s->rule_id : s->trial_rule_id;
	sess_decide(c, !enforce, v);
}

/* Count the DKIM results of a message verified (NULL: not verified):
 * one per signature, as in Authentication-Results, or none. */
static void
dkim_metrics(const struct ag_dkim_msg *dm)
{
	size_t n = dm != NULL ? ag_dkim_count(dm) : 0;

	if (dm != NULL && n == 0) {
		ag_metrics_auth(AG_MET_DKIM, AG_DKIM_NONE);
	}
	for (size_t i = 0; i < n; i++) {
		ag_metrics_auth(AG_MET_DKIM, ag_dkim_get(dm, i)->result);
	}
}

bool
sess_auth_eom(struct ag_conn *c, struct ag_verdict *vd)
{
	struct msg *m = c->msg;
	char *v;

	if (m->dkim != NULL && ag_dkim_eom(m->dkim) != AG_OK) {
		return false;
	}
	dkim_metrics(m->dkim);
	dkim_require(c, vd);
	if (ag_verdict_is_final(vd)) {
		return true;
	}
	sess_dmarc_eom(c, vd);
	if (ag_verdict_is_final(vd)) {
		return true;
	}
	if (!forged_remove(m)) {
		return false;
	}
	/* inserted at the top: the last one inserted ends up first */
	if (m->tag[0] != '\0') {
		if ((v = strdup(m->tag)) == NULL ||
		    !sess_edit_add(m, AG_EDIT_INSERT, 0, "X-Authgate-Tag", v)) {
			return false;
		}
	}
	if (m->spf_done) {
		if ((v = received_spf(c)) == NULL ||
		    !sess_edit_add(m, AG_EDIT_INSERT, 0, "Received-SPF", v)) {
			return false;
		}
	}
	if (m->spf_done || m->dkim != NULL || m->dmarc_done ||
	    c->auth[0] != '\0') {
		if ((v = auth_results(c)) == NULL ||
		    !sess_edit_add(m, AG_EDIT_INSERT, 0, "Authentication-Results",
		    v)) {
			return false;
		}
	}
	/* last: the signatures go on top of everything */
	if (!sess_sign_eom(c, vd)) {
		return false;
	}
	if (ag_verdict_is_final(vd)) {
		return true;
	}
	sess_dmarc_hold(c, vd);
	return true;
}

/* The SPF fields of the log line: " spf=RESULT[ spf_helo=RESULT]". */
static void
spf_logfields(const struct msg *m, char *buf, size_t bufsz)
{
	buf[0] = '\0';		/* neither checked nor skipped: no field */
	if (m->spf_skip != NULL) {
		snprintf(buf, bufsz, " spf=skipped:%s", m->spf_skip);
	} else if (m->spf_done) {
		snprintf(buf, bufsz, " spf=%s%s%s",
		    ag_spf_result_name(m->spf.result),
		    m->spf_helo_done ? " spf_helo=" : "",
		    m->spf_helo_done ? ag_spf_result_name(m->spf_helo.result) : "");
	}
}

/*
 * D= as it goes into the log's comma-separated dkim= list: escaped, and
 * its commas too, or a d= of "x,pass:d=bank.example" would add an entry.
 */
static const char *
dkim_logdomain(char *out, size_t outsz, const char *d)
{
	char esc[80];
	size_t j = 0;

	ag_log_escape(esc, sizeof(esc), d);
	for (size_t i = 0; esc[i] != '\0' && j + 4 < outsz; i++) {
		if (esc[i] == ',') {
			memcpy(out + j, "\\x2c", 4);
			j += 4;
		} else {
			out[j++] = esc[i];
		}
	}
	out[j] = '\0';
	return out;
}

/* The DKIM fields of the log line: " dkim=pass:d=example.com,...". */
static void
dkim_logfields(const struct msg *m, char *buf, size_t bufsz)
{
	size_t used = 0, n;

	buf[0] = '\0';
	if (m->dkim_skip != NULL || m->dkim == NULL) {
		return;
	}
	n = ag_dkim_count(m->dkim);
	used = (size_t)snprintf(buf, bufsz, " dkim=%s", n == 0 ? "none" : "");
	for (size_t i = 0; i < n && i < 5 && used < bufsz; i++) {
		const struct ag_dkim_result *r = ag_dkim_get(m->dkim, i);
		char d[80];

		used += (size_t)snprintf(buf + used, bufsz - used, "%s%s:d=%s",
		    i > 0 ? "," : "", ag_dkim_res_name(r->result),
		    dkim_logdomain(d, sizeof(d), r->domain));
	}
	if (n > 5 && used < bufsz) {
		snprintf(buf + used, bufsz - used, ",+%zu", n - 5);
	}
}

void
sess_auth_logfields(const struct msg *m, char *buf, size_t bufsz)
{
	char spf[96], dkim[256], dmarc[192], sign[300], forged[32] = "";

	spf_logfields(m, spf, sizeof(spf));
	dkim_logfields(m, dkim, sizeof(dkim));
	sess_dmarc_logfields(m, dmarc, sizeof(dmarc));
	sess_sign_logfields(m, sign, sizeof(sign));
	if (m->nforged > 0) {
		snprintf(forged, sizeof(forged), " forged_ar=%zu", m->nforged);
	}
	snprintf(buf, bufsz, "%s%s%s%s%s", spf, dkim, dmarc, sign, forged);
}

void
sess_auth_metrics(const struct msg *m)
{
	if (m->spf_done) {
		ag_metrics_auth(AG_MET_SPF_MFROM, m->spf.result);
	}
	if (m->spf_helo_done) {
		ag_metrics_auth(AG_MET_SPF_HELO, m->spf_helo.result);
	}
	if (m->dmarc_done) {
		ag_metrics_auth(AG_MET_DMARC, (unsigned)m->dmarc_result);
	}
}

void
sess_auth_free(struct msg *m)
{
	ag_dkim_msg_free(m->dkim);
	m->dkim = NULL;
	sess_dmarc_free(m);
	sess_sign_free(m);
	free(m->ar_forged);
	m->ar_forged = NULL;
	m->nforged = m->forged_cap = 0;
}
