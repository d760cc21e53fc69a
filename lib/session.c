/*
 * session.c - per-connection and per-message state, the order of the
 * checks, and the verdict of each SMTP phase.
 *
 * Ownership: a struct ag_conn owns its current message (struct msg); the
 * message pins one config/policy snapshot from MAIL FROM until it ends,
 * so a reload never changes the rules under a transaction in flight.
 * msg_end() is the one place a message is logged and freed; it is reached
 * from a final verdict, end of message, abort and ag_conn_free.  There a
 * message DMARC evaluated leaves its results in the history queue (a copy
 * in memory: the engine's watcher writes it to the database).
 *
 * Size accounting (documented in authgate.8): the message size is the sum
 * of every header line as "Name: value" plus CRLF, the blank line, and the
 * body bytes as the MTA passes them.  The body is counted, never stored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "addr.h"
#include "history.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "session.h"
#include "session_int.h"

/* Messages in progress in the whole process (for a graceful stop). */
static unsigned in_flight;

unsigned
ag_session_in_flight(void)
{
	return __atomic_load_n(&in_flight, __ATOMIC_RELAXED);
}

/* Copy a possibly NULL string into a fixed buffer, cut to fit. */
static void
copy_bounded(char *dst, size_t dstsz, const char *src)
{
	snprintf(dst, dstsz, "%s", src != NULL ? src : "");
}

/* Saturating add for byte counters. */
static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

struct ag_conn *
ag_conn_new(struct ag_engine *e, const struct ag_conn_info *info,
    struct ag_verdict *v)
{
	struct ag_conn *c;

	ag_verdict_continue(v);
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		return NULL;
	}
	c->eng = e;
	if (info != NULL) {
		if (info->client_addr != NULL && info->client_addr[0] != '\0' &&
		    ag_ip_parse(info->client_addr, &c->ip) == AG_OK) {
			c->have_ip = true;
		} else if (info->sa != NULL &&
		    ag_ip_from_sockaddr(info->sa, &c->ip) == AG_OK) {
			c->have_ip = true;
		}
		/* Sendmail names a client without reverse DNS "[ADDR]";
		 * Postfix says "unknown", and so does the log */
		if (info->client_name != NULL && info->client_name[0] != '[') {
			copy_bounded(c->client_name, sizeof(c->client_name),
			    info->client_name);
		}
	}
	if (c->have_ip) {
		ag_ip_format(&c->ip, c->ipstr, sizeof(c->ipstr));
	} else {
		copy_bounded(c->ipstr, sizeof(c->ipstr), "unknown");
	}
	if (c->client_name[0] == '\0') {
		copy_bounded(c->client_name, sizeof(c->client_name), "unknown");
	}
	return c;
}

void
ag_conn_set_queue_id(struct ag_conn *c, const char *qid)
{
	if (c != NULL && qid != NULL && qid[0] != '\0') {
		copy_bounded(c->qid, sizeof(c->qid), qid);
	}
}

void
ag_conn_set_auth(struct ag_conn *c, const char *authen)
{
	if (c != NULL && authen != NULL && authen[0] != '\0') {
		copy_bounded(c->auth, sizeof(c->auth), authen);
	}
}

void
ag_conn_helo(struct ag_conn *c, const char *helo, struct ag_verdict *v)
{
	ag_verdict_continue(v);
	copy_bounded(c->helo_raw, sizeof(c->helo_raw), helo);
	if (helo == NULL ||
	    ag_domain_normalize(helo, c->helo, sizeof(c->helo)) != AG_OK) {
		c->helo[0] = '\0';
	}
}

/* Free an array of header edits. */
static void
edits_free_array(struct ag_edit *ed, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ed[i].name);
		free(ed[i].value);
	}
	free(ed);
}

/* Write the one log line of a message that ended with verdict V. */
static void
msg_log(struct ag_conn *c, const struct ag_verdict *v, const char *how)
{
	struct msg *m = c->msg;
	char qid[80], name[LOGVAL_MAX], helo[LOGVAL_MAX], from[LOGVAL_MAX];
	char addr[AG_ADDR_MAX + 2], would[128] = "", auth[LOGVAL_MAX] = "";
	char rule[24] = "-", bad[40] = "", spf[900] = "";
	char rate[AG_RATE_KEY_MAX * 2 + 16] = "";

	ag_log_escape(qid, sizeof(qid), c->qid[0] != '\0' ? c->qid : "NOQUEUE");
	ag_log_escape(name, sizeof(name), c->client_name);
	ag_log_escape(helo, sizeof(helo), c->helo_raw);
	if (m->sender_bad) {
		ag_log_escape(from, sizeof(from), m->sender_raw);
	} else {
		ag_mailaddr_format(&m->sender, addr, sizeof(addr));
		ag_log_escape(from, sizeof(from), addr);
	}
	if (v->rule_id > 0) {
		snprintf(rule, sizeof(rule), "%lld", (long long)v->rule_id);
	}
	if (c->auth[0] != '\0') {
		char esc[LOGVAL_MAX];

		snprintf(auth, sizeof(auth), " sasl_user=%s",
		    ag_log_escape(esc, sizeof(esc), c->auth));
	}
	if (m->nrcpt_bad > 0) {
		snprintf(bad, sizeof(bad), " rejected_rcpts=%zu", m->nrcpt_bad);
	}
	sess_auth_logfields(m, spf, sizeof(spf));
	if (m->rate_hit[0] != '\0') {
		char esc[AG_RATE_KEY_MAX * 2];

		snprintf(rate, sizeof(rate), " rate_limit=%s",
		    ag_log_escape(esc, sizeof(esc), m->rate_hit));
	}
	if (m->have_would) {
		snprintf(would, sizeof(would),
		    " dry_run=yes would=%s would_code=%s would_rule=%lld "
		    "would_reason=%s", ag_action_name(m->would.action),
		    m->would.xcode, (long long)m->would.rule_id,
		    m->would.reason != NULL ? m->would.reason : "-");
	}
	ag_log_info("%s: client=%s[%s] helo=%s from=<%s>%s rcpts=%zu%s size=%llu%s "
	    "action=%s%s%s rule=%s reason=%s%s%s%s",
	    qid, name, c->ipstr, helo[0] != '\0' ? helo : "-", from, auth,
	    m->nrcpt_ok, bad,
	    (unsigned long long)(m->size > 0 ? m->size : m->declared_size), spf,
	    how != NULL ? how : ag_action_name(v->action),
	    v->xcode[0] != '\0' ? " code=" : "", v->xcode, rule,
	    v->reason != NULL ? v->reason : "-", m->trusted ? " trusted=yes" : "",
	    rate, would);
}

/*
 * What the DMARC policy did to the message, for the history: the
 * disposition applied (after pct and the local overrides), and why it is
 * not the one the policy asked for (RFC 7489 Appendix C
 * PolicyOverrideType), if it is not.  V is the message's final verdict.
 */
static enum ag_dmarc_policy
history_disposition(const struct msg *m, const struct ag_verdict *v,
    struct ag_history_row *r)
{
	enum ag_dmarc_policy d = (enum ag_dmarc_policy)m->dmarc_applied;

	if (m->dmarc_result != AG_DMARC_FAIL || m->dmarc == NULL) {
		return AG_DMARC_P_NONE;
	}
	r->sampled_out = m->dmarc->sampled_out;
	if (m->dmarc_override != NULL) {
		r->reason = "local_policy";
		r->reason_comment = strcmp(m->dmarc_override, "rule") == 0 ?
		    "exempted by a local rule" :
		    "disposition capped by local policy";
	}
	/* DryRun: the rejection or the hold was logged, not done */
	if ((d == AG_DMARC_P_REJECT && v->action != AG_ACT_REJECT) ||
	    (d == AG_DMARC_P_QUARANTINE && m->dmarc_hold &&
	    v->action != AG_ACT_QUARANTINE)) {
		r->reason = "local_policy";
		r->reason_comment = "dry run: policy not enforced";
		return AG_DMARC_P_NONE;
	}
	return d;
}

/*
 * Queue the DMARC results of the ending message for the history.  A
 * message answered with a temporary failure is left out: the client
 * sends it again, and it is counted then.
 */
static void
msg_history(struct ag_conn *c, const struct ag_verdict *v)
{
	struct ag_history_dkim dk[AG_HISTORY_DKIM_MAX];
	struct ag_history_row r;
	struct msg *m = c->msg;
	const struct ag_dmarc_answer *a = m->dmarc;
	size_t i, n;

	if (!m->dmarc_done || v == NULL || v->action == AG_ACT_TEMPFAIL ||
	    !c->have_ip || m->snap->history == NULL ||
	    m->snap->cfg->history_days == 0) {
		return;		/* no source_ip: a report could not name it */
	}
	memset(&r, 0, sizeof(r));
	r.time = (int64_t)time(NULL);
	r.source_ip = c->ipstr;
	r.header_from = m->from_domain;
	r.envelope_from = m->sender.is_null ? "" : m->sender.domain;
	r.result = (enum ag_dmarc_res)m->dmarc_result;
	if (a != NULL && a->have_record) {
		r.policy_domain = a->record_domain;
		r.p = a->rec.p;
		r.sp = a->rec.sp;
		r.pct = a->rec.pct;
		r.adkim_strict = a->rec.adkim_strict;
		r.aspf_strict = a->rec.aspf_strict;
		r.fo = a->rec.fo;
		r.dkim_aligned = a->dkim_aligned;
		r.spf_aligned = a->spf_aligned;
	}
	r.disposition = history_disposition(m, v, &r);
	if (m->spf_done) {
		r.spf_domain = m->spf.domain;
		r.spf_scope = m->spf.identity;
		r.spf_result = m->spf.result;
	}
	n = m->dkim != NULL ? ag_dkim_count(m->dkim) : 0;
	for (i = 0; i < n && i < AG_HISTORY_DKIM_MAX; i++) {
		const struct ag_dkim_result *d = ag_dkim_get(m->dkim, i);

		dk[i] = (struct ag_history_dkim){ d->domain, d->selector,
		    d->result };
	}
	r.ndkim = i;
	r.dkim = dk;
	(void)ag_history_push(m->snap->history, &r);	/* drops are logged */
}

/* The DKIM result of the message history: pass when a signature
 * passed, else the first signature's result; NULL when not verified. */
static const char *
msg_dkim_summary(const struct msg *m)
{
	size_t n;

	if (m->dkim_skip != NULL || m->dkim == NULL) {
		return NULL;
	}
	if ((n = ag_dkim_count(m->dkim)) == 0) {
		return "none";
	}
	for (size_t i = 0; i < n; i++) {
		if (ag_dkim_get(m->dkim, i)->result == AG_DKIM_PASS) {
			return ag_dkim_res_name(AG_DKIM_PASS);
		}
	}
	return ag_dkim_res_name(ag_dkim_get(m->dkim, 0)->result);
}

/* Queue the ending message for the message history: what its log line
 * (msg_log) says, as a row. */
static void
msg_record(struct ag_conn *c, const struct ag_verdict *v, const char *how)
{
	struct ag_msglog_row r;
	struct msg *m = c->msg;
	char addr[AG_ADDR_MAX + 2], code[24] = "";

	if (v == NULL || m->snap->history == NULL ||
	    m->snap->cfg->history_days == 0) {
		return;
	}
	memset(&r, 0, sizeof(r));
	r.time = (int64_t)time(NULL);
	r.qid = c->qid;
	r.client_ip = c->have_ip ? c->ipstr : NULL;
	r.client_name = c->client_name;
	r.helo = c->helo_raw;
	if (m->sender_bad) {
		r.sender = m->sender_raw;
	} else if (!m->sender.is_null) {
		ag_mailaddr_format(&m->sender, addr, sizeof(addr));
		r.sender = addr;
	}
	r.sender_domain = m->sender.is_null ? "" : m->sender.domain;
	r.sasl_user = c->auth[0] != '\0' ? c->auth : NULL;
	r.from_domain = m->from_domain[0] != '\0' ? m->from_domain : NULL;
	r.rcpts = m->nrcpt_ok;
	r.rejected_rcpts = m->nrcpt_bad;
	r.size = m->size > 0 ? m->size : m->declared_size;
	r.action = how != NULL ? how : ag_action_name(v->action);
	if (v->rcode[0] != '\0') {
		snprintf(code, sizeof(code), "%s %s", v->rcode, v->xcode);
	}
	r.code = code;
	r.rule = v->rule_id;
	r.reason = v->reason;
	if (m->spf_done) {
		r.spf = ag_spf_result_name(m->spf.result);
		r.spf_helo = m->spf_helo_done ?
		    ag_spf_result_name(m->spf_helo.result) : NULL;
	}
	r.dkim = msg_dkim_summary(m);
	r.dmarc = m->dmarc_done ?
	    ag_dmarc_res_name((enum ag_dmarc_res)m->dmarc_result) : NULL;
	if (m->rate_hit[0] != '\0') {
		r.rate_key = m->rate_hit;
		r.rate_rule = m->rate_rule;
	}
	r.would = m->have_would ? ag_action_name(m->would.action) : NULL;
	r.trusted = m->trusted;
	(void)ag_history_push_msg(m->snap->history, &r);	/* drops logged */
}

/* End the current message: log it (when V is given) and free it. */
static void
msg_end(struct ag_conn *c, const struct ag_verdict *v, const char *how)
{
	struct msg *m = c->msg;

	if (m == NULL) {
		return;
	}
	if (v != NULL) {
		msg_log(c, v, how);
		ag_metrics_message(how != NULL ? how : ag_action_name(v->action));
		sess_auth_metrics(m);
	}
	msg_history(c, v);
	msg_record(c, v, how);
	sess_rate_end(m, how != NULL && (strcmp(how, "accept") == 0 ||
	    strcmp(how, "quarantine") == 0));
	edits_free_array(m->edits, m->nedits);
	sess_auth_free(m);
	ag_snapshot_release(m->snap);
	__atomic_sub_fetch(&in_flight, 1, __ATOMIC_RELAXED);
	free(m);
	c->msg = NULL;
	c->qid[0] = '\0';
}

/* The facts the rules see; RCPT may be NULL. */
static void
facts_fill(const struct ag_conn *c, const struct ag_mailaddr *rcpt,
    struct ag_facts *f)
{
	memset(f, 0, sizeof(*f));
	f->client = c->have_ip ? &c->ip : NULL;
	f->helo = c->helo[0] != '\0' ? c->helo : NULL;
	f->sender = c->msg != NULL ? &c->msg->sender : NULL;
	f->sasl_user = c->auth[0] != '\0' ? c->auth : NULL;
	f->trusted = c->msg != NULL ? c->msg->trusted : false;
	f->rcpt = rcpt;
}

/*
 * Turn a policy decision into the verdict of this phase.  A decision of a
 * dry-run rule, or under DryRun, is remembered for the log and the phase
 * continues.  Returns true when V is final.
 */
bool
sess_decide(struct ag_conn *c, bool rule_dry, struct ag_verdict *v)
{
	struct msg *m = c->msg;

	if (!ag_verdict_is_final(v)) {
		return false;
	}
	if (rule_dry || (m != NULL && m->snap->cfg->dry_run)) {
		if (m != NULL && !m->have_would) {
			m->would = *v;
			m->have_would = true;
		}
		ag_verdict_continue(v);
		v->dry_run = true;
		return false;
	}
	return true;
}

/* Answer with the configured action for a failure class. */
void
sess_failure_action(enum ag_action act, struct ag_verdict *v, const char *reason,
    const char *text)
{
	if (act == AG_ACT_ACCEPT) {
		ag_verdict_continue(v);
		v->reason = reason;
		return;
	}
	ag_verdict_set(v, AG_ACT_TEMPFAIL, "451", "4.3.0", reason, "%s", text);
}

/* Parse the ESMTP parameters of MAIL FROM (argv[1..]). */
static bool
mail_params(struct msg *m, char **argv, struct ag_verdict *v)
{
	for (size_t i = 1; argv[i] != NULL; i++) {
		const char *p = argv[i];

		if (strncasecmp(p, "SIZE=", 5) != 0) {
			continue;	/* others are the MTA's business */
		}
		if (m->have_declared) {
			ag_verdict_set(v, AG_ACT_REJECT, "501", "5.5.4", "syntax",
			    "Duplicate SIZE= parameter");
			return false;
		}
		if (ag_size_parse(p + 5, &m->declared_size) != AG_OK) {
			ag_verdict_set(v, AG_ACT_REJECT, "501", "5.5.4", "syntax",
			    "Invalid SIZE= parameter: a decimal byte count is "
			    "required (RFC 1870)");
			return false;
		}
		m->have_declared = true;
	}
	return true;
}

/* Set V to the size rejection for LIMIT from RULE. */
static void
size_verdict(struct ag_verdict *v, int64_t limit, int64_t rule)
{
	ag_verdict_set(v, AG_ACT_REJECT, "552", "5.3.4", "size",
	    "Message size exceeds the limit of %lld bytes for this sender",
	    (long long)limit);
	v->rule_id = rule;
}

/* Set V to the refusal of one recipient over LIMIT from RULE. */
static void
rcpts_verdict(struct ag_verdict *v, int64_t limit, int64_t rule)
{
	ag_verdict_set(v, AG_ACT_TEMPFAIL, "452", "4.5.3", "rcpts",
	    "Too many recipients for this message (limit %lld): send the "
	    "rest in another message", (long long)limit);
	v->rule_id = rule;
}

/*
 * Is AMOUNT over the setting S?  Over the enforced value, V becomes the
 * verdict MK makes (final, unless DryRun); over a tried dry-run value only,
 * the outcome is remembered for the log.  Returns true when V is final.
 */
static bool
over_limit(struct ag_conn *c, const struct ag_setting *s, uint64_t amount,
    void (*mk)(struct ag_verdict *, int64_t, int64_t), struct ag_verdict *v)
{
	if (s->value != AG_LIMIT_UNSET && amount > (uint64_t)s->value) {
		mk(v, s->value, s->rule_id);
		return sess_decide(c, false, v);
	}
	if (s->trial != AG_LIMIT_UNSET && amount > (uint64_t)s->trial) {
		mk(v, s->trial, s->trial_rule_id);
		sess_decide(c, true, v);
	}
	return false;
}

/* Keep in ACC the smaller of each part of ACC and S. */
static void
setting_min(struct ag_setting *acc, const struct ag_setting *s)
{
	if (s->value != AG_LIMIT_UNSET &&
	    (acc->value == AG_LIMIT_UNSET || s->value < acc->value)) {
		acc->value = s->value;
		acc->rule_id = s->rule_id;
	}
	if (s->trial != AG_LIMIT_UNSET &&
	    (acc->trial == AG_LIMIT_UNSET || s->trial < acc->trial)) {
		acc->trial = s->trial;
		acc->trial_rule_id = s->trial_rule_id;
	}
}

/* Append a header edit to the message; false when out of memory. */
bool
sess_edit_add(struct msg *m, enum ag_edit_op op, int index, const char *name,
    char *value)
{
	struct ag_edit *ed;

	ed = realloc(m->edits, (m->nedits + 1) * sizeof(*ed));
	if (ed == NULL || (name = strdup(name)) == NULL) {
		if (ed != NULL) {
			m->edits = ed;
		}
		free(value);
		return false;
	}
	m->edits = ed;
	ed[m->nedits].op = op;
	ed[m->nedits].index = index;
	ed[m->nedits].name = (char *)(uintptr_t)name;
	ed[m->nedits].value = value;
	m->nedits++;
	return true;
}

/* Start a message: pin a snapshot and check what MAIL FROM declares. */
static void
mail_check(struct ag_conn *c, char **argv, struct ag_verdict *v)
{
	struct msg *m = c->msg;
	struct ag_facts f;
	struct ag_eval ev;

	if (argv == NULL || argv[0] == NULL ||
	    ag_mailaddr_parse(argv[0], &m->sender) != AG_OK) {
		m->sender_bad = true;
		copy_bounded(m->sender_raw, sizeof(m->sender_raw),
		    argv != NULL ? argv[0] : NULL);
		ag_verdict_set(v, AG_ACT_REJECT, "501", "5.1.7", "syntax",
		    "Bad sender address syntax");
		return;
	}
	if (!mail_params(m, argv, v)) {
		return;
	}
	if (m->snap->policy == NULL) {
		sess_failure_action(m->snap->cfg->on_database_error, v, "database",
		    "Policy database unavailable, please try again later");
		if (v->action != AG_ACT_CONTINUE) {
			return;
		}
		m->nopolicy = true;	/* no rules: the config's defaults apply */
	}
	facts_fill(c, NULL, &f);
	ag_policy_eval(m->snap->policy, &f, &ev);
	m->size_limit = ev.max_size;
	if (m->have_declared &&
	    over_limit(c, &ev.max_size, m->declared_size, size_verdict, v)) {
		return;
	}
	sess_rate_mail(c, v);
	if (ag_verdict_is_final(v)) {
		return;
	}
	sess_auth_mail(c, &ev, v);
}

void
ag_conn_mail(struct ag_conn *c, char **argv, struct ag_verdict *v)
{
	struct msg *m;

	ag_verdict_continue(v);
	if (c->msg != NULL) {
		/* the MTA started a new transaction without an abort */
		msg_end(c, v, "abort");
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		ag_log_err("out of memory starting a message");
		ag_verdict_set(v, AG_ACT_TEMPFAIL, "451", "4.3.0", "internal",
		    "Temporary internal error, please try again later");
		return;
	}
	m->snap = ag_engine_acquire(c->eng);
	__atomic_add_fetch(&in_flight, 1, __ATOMIC_RELAXED);
	m->dkim_skip = "not-reached";	/* until sess_auth_mail decides */
	m->size_limit.value = AG_LIMIT_UNSET;
	m->size_limit.trial = AG_LIMIT_UNSET;
	m->trusted = c->have_ip &&
	    ag_cidr_list_match(&m->snap->cfg->trusted, &c->ip);
	c->msg = m;

	mail_check(c, argv, v);
	if (ag_verdict_is_final(v)) {
		msg_end(c, v, NULL);
	}
}

/* Out of memory in a phase: the On-InternalError answer. */
static void
out_of_memory(struct ag_conn *c, struct ag_verdict *v)
{
	ag_log_err("out of memory handling a message");
	sess_failure_action(c->msg->snap->cfg->on_internal_error, v, "internal",
	    "Temporary internal error, please try again later");
}

/* Refuse RCPT before MAIL and similar misuse: a temporary answer. */
static void
protocol_error(struct ag_verdict *v, const char *what)
{
	ag_log_warning("protocol error: %s", what);
	ag_verdict_set(v, AG_ACT_TEMPFAIL, "451", "4.3.0", "protocol",
	    "Protocol error (%s), please try again later", what);
}

/* Check one recipient against the limits that apply to it. */
static void
rcpt_check(struct ag_conn *c, const struct ag_mailaddr *rcpt,
    struct ag_verdict *v)
{
	struct msg *m = c->msg;
	struct ag_facts f;
	struct ag_eval ev;

	facts_fill(c, rcpt, &f);
	ag_policy_eval(m->snap->policy, &f, &ev);
	if (over_limit(c, &ev.max_rcpts, (uint64_t)m->nrcpt_ok + 1,
	    rcpts_verdict, v)) {
		return;
	}
	if (m->have_declared &&
	    over_limit(c, &ev.max_size, m->declared_size, size_verdict, v)) {
		return;
	}
	if (sess_auth_rcpt(c, &ev, v)) {
		return;
	}
	/* last: a recipient refused for another reason costs no quota */
	if (sess_rate_rcpt(c, rcpt, v)) {
		return;
	}
	/* the message must fit the smallest limit of its recipients */
	setting_min(&m->size_limit, &ev.max_size);
}

void
ag_conn_rcpt(struct ag_conn *c, char **argv, struct ag_verdict *v)
{
	struct ag_mailaddr rcpt;
	struct msg *m = c->msg;

	ag_verdict_continue(v);
	if (m == NULL) {
		protocol_error(v, "RCPT before MAIL");
		return;
	}
	if (argv == NULL || argv[0] == NULL ||
	    ag_mailaddr_parse(argv[0], &rcpt) != AG_OK || rcpt.is_null) {
		ag_verdict_set(v, AG_ACT_REJECT, "501", "5.1.3", "syntax",
		    "Bad recipient address syntax");
	} else if (!m->nopolicy) {
		rcpt_check(c, &rcpt, v);
	}
	if (ag_verdict_is_final(v)) {
		m->nrcpt_bad++;
	} else if (m->nrcpt_ok < AG_SESSION_MAX_RCPTS_SEEN) {
		m->nrcpt_ok++;
	}
}

/* Over the size limit now?  Sets V (final unless dry-run). */
static void
size_so_far(struct ag_conn *c, struct ag_verdict *v)
{
	over_limit(c, &c->msg->size_limit, c->msg->size, size_verdict, v);
}

void
ag_conn_set_leadspc(struct ag_conn *c, bool on)
{
	if (c != NULL) {
		c->leadspc = on;
	}
}

void
ag_conn_header(struct ag_conn *c, const char *name, const char *value,
    struct ag_verdict *v)
{
	struct msg *m = c->msg;
	char small[512], *raw = small;
	size_t vlen;
	uint64_t n;

	ag_verdict_continue(v);
	if (m == NULL) {
		protocol_error(v, "header before MAIL");
		return;
	}
	if (value == NULL) {
		value = "";
	}
	/* RAW: exactly what follows the colon (see ag_conn_set_leadspc) */
	vlen = strlen(value);
	if (!c->leadspc) {
		if (vlen + 2 > sizeof(small) && (raw = malloc(vlen + 2)) == NULL) {
			out_of_memory(c, v);
			return;
		}
		raw[0] = ' ';
		memcpy(raw + 1, value, vlen + 1);
		value = raw;
		vlen++;
	}
	n = sat_add(strlen(name != NULL ? name : ""), vlen);
	m->size = sat_add(m->size, sat_add(n, 3));	/* ":" and CRLF */
	if (!sess_auth_header(c, name, value)) {
		out_of_memory(c, v);
	}
	if (raw != small) {
		free(raw);
	}
}

void
ag_conn_eoh(struct ag_conn *c, struct ag_verdict *v)
{
	ag_verdict_continue(v);
	if (c->msg == NULL) {
		protocol_error(v, "end of headers before MAIL");
		return;
	}
	c->msg->size = sat_add(c->msg->size, 2);
	size_so_far(c, v);
	if (!ag_verdict_is_final(v) && !sess_auth_eoh(c)) {
		out_of_memory(c, v);
	}
	if (ag_verdict_is_final(v)) {
		msg_end(c, v, NULL);
	}
}

void
ag_conn_body(struct ag_conn *c, const unsigned char *buf, size_t len,
    struct ag_verdict *v)
{
	ag_verdict_continue(v);
	if (c->msg == NULL) {
		protocol_error(v, "body before MAIL");
		return;
	}
	c->msg->size = sat_add(c->msg->size, len);
	size_so_far(c, v);
	if (!ag_verdict_is_final(v) && !sess_auth_body(c, buf, len)) {
		out_of_memory(c, v);
	}
	if (ag_verdict_is_final(v)) {
		msg_end(c, v, NULL);
	}
}

void
ag_conn_eom(struct ag_conn *c, struct ag_verdict *v,
    const struct ag_edit **edits, size_t *nedits)
{
	struct msg *m = c->msg;

	ag_verdict_continue(v);
	*edits = NULL;
	*nedits = 0;
	if (m == NULL) {
		protocol_error(v, "end of message before MAIL");
		return;
	}
	size_so_far(c, v);
	if (!ag_verdict_is_final(v)) {
		sess_rate_eom(c, v);
	}
	if (!ag_verdict_is_final(v) && !sess_auth_eom(c, v)) {
		out_of_memory(c, v);
	}
	/* a quarantined message is accepted (into the hold queue) */
	if (ag_verdict_is_final(v) && v->action != AG_ACT_QUARANTINE) {
		msg_end(c, v, NULL);
		return;
	}
	/* hand the edits to the connection: they outlive the message */
	edits_free_array(c->edits, c->nedits);
	c->edits = m->edits;
	c->nedits = m->nedits;
	m->edits = NULL;
	m->nedits = 0;
	*edits = c->edits;
	*nedits = c->nedits;
	msg_end(c, v, v->action == AG_ACT_QUARANTINE ? "quarantine" : "accept");
}

void
ag_conn_abort(struct ag_conn *c)
{
	struct ag_verdict v;

	if (c == NULL || c->msg == NULL) {
		return;
	}
	ag_verdict_continue(&v);
	msg_end(c, &v, "abort");
}

void
ag_conn_free(struct ag_conn *c)
{
	if (c == NULL) {
		return;
	}
	ag_conn_abort(c);
	edits_free_array(c->edits, c->nedits);
	free(c);
}
