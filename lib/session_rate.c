/*
 * session_rate.c - rate limits in a transaction: which limits apply, when
 * they are decided, and the quota a message holds until it ends.
 *
 * When.  Limits of rules without recipient conditions are decided at MAIL
 * FROM: messages (cost 1) and bytes (cost SIZE=, or 1 when the client
 * declared no size, so that an exhausted quota refuses at once).
 * Recipients are counted at each RCPT TO (cost 1), where rules with
 * recipient conditions, and limits keyed by rcpt-domain, are decided too
 * (messages and bytes then once per counter per message).  At end of
 * message, byte holds are trued up to the real size: more is taken, or
 * the excess given back.
 *
 * Holds.  Whatever is taken is held by the message (struct rate_hold, one
 * per counter; a counter taken again adds to its hold) until the message
 * ends: accepted at end of message, the quota stays used (commit);
 * otherwise (rejected, aborted, connection lost) every hold is given back
 * where it was taken.  Within one phase, a refusal by one limit gives
 * back what the other limits took in that phase (an undo list), so a
 * refused recipient costs nothing.
 *
 * Layering: ag_policy_rates() lists every matching rule with limits down
 * to an exemption; all of them must pass.  A rule in dry run, or with
 * --on-limit tag, only notes "would" for the log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "rate.h"
#include "session_int.h"

#define RATE_RULES_MAX 64	/* layered rules considered per decision */
#define RATE_UNDO_MAX (RATE_RULES_MAX * AG_RATE_MAX_PER_RULE)

/* What one phase took, to give back if a later limit refuses. */
struct undo {
	size_t hold;
	uint64_t cost;
};

struct phase {
	struct undo u[RATE_UNDO_MAX];
	size_t n;
	size_t first;		/* holds from here on are new in this phase */
};

/* The counter name of limit IDX of rule R for this transaction; false
 * when the key does not apply (no SASL user, no client address). */
static bool
rate_key(const struct ag_conn *c, const struct ag_rule *r, size_t idx,
    const struct ag_mailaddr *rcpt, char *buf, size_t bufsz, size_t *len)
{
	const struct ag_rate_spec *sp = &r->rate[idx];
	const struct msg *m = c->msg;
	char val[AG_ADDR_MAX + 64], ip[AG_IP_STRLEN + 8];
	struct ag_cidr net;
	size_t i;
	int n;

	val[0] = '\0';
	switch (sp->key) {
	case AG_RK_POOL:
		break;
	case AG_RK_CLIENT_IP:
		if (!c->have_ip) {
			return false;
		}
		snprintf(ip, sizeof(ip), "%s/%u", c->ipstr,
		    c->ip.family == AF_INET ? sp->prefix4 : sp->prefix6);
		if (ag_cidr_parse(ip, &net) != AG_OK) {
			return false;
		}
		ag_cidr_format(&net, val, sizeof(val));
		break;
	case AG_RK_SENDER:
		if (m->sender.is_null) {
			snprintf(val, sizeof(val), "<>");
		} else {
			ag_mailaddr_format(&m->sender, val, sizeof(val));
		}
		break;
	case AG_RK_SENDER_DOMAIN:
		snprintf(val, sizeof(val), "%s", m->sender.is_null ? "<>" :
		    m->sender.domain[0] != '\0' ? m->sender.domain : "-");
		break;
	case AG_RK_SASL_USER:
		if (c->auth[0] == '\0') {
			return false;
		}
		snprintf(val, sizeof(val), "%s", c->auth);
		break;
	case AG_RK_RCPT_DOMAIN:
		if (rcpt == NULL) {
			return false;
		}
		snprintf(val, sizeof(val), "%s",
		    rcpt->domain[0] != '\0' ? rcpt->domain : "-");
		break;
	case AG_RK_HELO:
		snprintf(val, sizeof(val), "%s",
		    c->helo[0] != '\0' ? c->helo : "-");
		break;
	}
	if (sp->key == AG_RK_SENDER || sp->key == AG_RK_SASL_USER) {
		for (i = 0; val[i] != '\0'; i++) {
			if (val[i] >= 'A' && val[i] <= 'Z') {
				val[i] = (char)(val[i] - 'A' + 'a');
			}
		}
	}
	if (sp->key == AG_RK_POOL) {
		n = snprintf(buf, bufsz, "%lld.%zu:pool", (long long)r->id,
		    idx + 1);
	} else {
		n = snprintf(buf, bufsz, "%lld.%zu:%s=%s", (long long)r->id,
		    idx + 1, ag_rate_key_name(sp->key), val);
	}
	if (n < 0) {
		return false;
	}
	*len = (size_t)n < bufsz ? (size_t)n : bufsz - 1;
	return true;
}

/* The hold for KEY, or NULL. */
static struct rate_hold *
hold_find(struct msg *m, const char *key, size_t keylen, size_t *at)
{
	size_t i;

	for (i = 0; i < m->nholds; i++) {
		if (m->holds[i].keylen == keylen &&
		    memcmp(m->holds[i].key, key, keylen) == 0) {
			*at = i;
			return &m->holds[i];
		}
	}
	return NULL;
}

/* "3 messages per 1h for client-ip 192.0.2.1/32" */
static void
limit_text(const struct ag_rate_spec *sp, const char *key, char *buf,
    size_t bufsz)
{
	const char *what = strchr(key, ':'), *eq, *name;
	char win[24];
	int namelen;

	ag_window_format(sp->window_ms, win, sizeof(win));
	what = what != NULL ? what + 1 : key;
	eq = strchr(what, '=');
	/* "1 message", "2 messages" */
	name = ag_rate_measure_name(sp->measure);
	namelen = (int)strlen(name) - (sp->limit == 1 ? 1 : 0);
	if (sp->key == AG_RK_POOL || eq == NULL) {
		snprintf(buf, bufsz, "%llu %.*s per %s", (unsigned long long)
		    sp->limit, namelen, name, win);
	} else {
		snprintf(buf, bufsz, "%llu %.*s per %s for %.*s %s",
		    (unsigned long long)sp->limit, namelen, name, win,
		    (int)(eq - what), what, eq + 1);
	}
}

/* The verdict of a refusal by limit SP of rule R. */
static void
refusal(struct ag_verdict *v, const struct ag_rule *r,
    const struct ag_rate_spec *sp, const char *key, uint64_t cost,
    const struct ag_rate_result *res)
{
	char what[AG_ADDR_MAX + 128];

	limit_text(sp, key, what, sizeof(what));
	if (sp->measure == AG_RM_BYTES && cost > sp->limit) {
		ag_verdict_set(v, AG_ACT_REJECT, "552", "5.3.4", "rate",
		    "Message larger than the byte quota allows (%s)", what);
	} else if (r->on_limit == AG_DISP_REJECT) {
		ag_verdict_set(v, AG_ACT_REJECT, "550", "5.7.1", "rate",
		    "Rate limit exceeded: %s", what);
	} else if (res->retry_ms == AG_RATE_NEVER) {
		ag_verdict_set(v, AG_ACT_TEMPFAIL, "451", "4.7.1", "rate",
		    "Rate limit reached: %s", what);
	} else {
		ag_verdict_set(v, AG_ACT_TEMPFAIL, "451", "4.7.1", "rate",
		    "Rate limit reached: %s, try again in %llu seconds", what,
		    (unsigned long long)((res->retry_ms + 999) / 1000));
	}
	v->rule_id = r->id;
}

/* Give back what phase P took. */
static void
phase_undo(struct ag_conn *c, struct phase *p)
{
	struct msg *m = c->msg;
	size_t i;

	for (i = p->n; i-- > 0;) {
		struct rate_hold *h = &m->holds[p->u[i].hold];

		ag_rater_release(m->snap->rater, h->key, h->keylen, &h->lim,
		    p->u[i].cost, h->where);
		h->cost -= p->u[i].cost;
	}
	/* holds created in this phase are the last ones: drop them */
	while (m->nholds > p->first) {
		free(m->holds[--m->nholds].key);
	}
	p->n = 0;
}

/*
 * Take COST on limit IDX of rule R.  Returns true when the phase may go
 * on (allowed, or only a "would"), false with V final or set to the
 * refusal when the phase must stop.
 */
static bool
take_one(struct ag_conn *c, const struct ag_rule *r, size_t idx,
    const struct ag_mailaddr *rcpt, uint64_t cost, bool once,
    struct phase *p, struct ag_verdict *v)
{
	struct msg *m = c->msg;
	const struct ag_rate_spec *sp = &r->rate[idx];
	struct ag_rate_limit lim = { sp->limit, sp->window_ms };
	struct ag_rate_result res;
	enum ag_rate_where where;
	struct rate_hold *h, *nh;
	char key[AG_RATE_KEY_MAX + 1];
	size_t keylen, at = 0;
	ag_status st;

	if (!rate_key(c, r, idx, rcpt, key, sizeof(key), &keylen)) {
		return true;
	}
	h = hold_find(m, key, keylen, &at);
	if (h != NULL && once) {
		return true;	/* counted for this message already */
	}
	if (h == NULL && m->nholds >= AG_SESSION_RATE_HOLDS_MAX) {
		ag_verdict_set(v, AG_ACT_TEMPFAIL, "452", "4.5.3", "rcpts",
		    "Too many distinct rate counters for one message: send "
		    "the rest in another message");
		return false;
	}
	if (p->n >= RATE_UNDO_MAX) {
		return true;	/* cannot happen: bounded by the rules */
	}
	st = ag_rater_take(m->snap->rater, key, keylen, &lim, cost, &res,
	    &where);
	if (st == AG_TEMPFAIL) {
		ag_verdict_set(v, AG_ACT_TEMPFAIL, "451", "4.3.0", "rate-backend",
		    "Rate limit service unavailable, please try again later");
		return false;
	}
	if (st != AG_OK) {
		ag_log_err("rate limit %s: %s", key, ag_status_str(st));
		return true;	/* no memory for the key: admitted, logged */
	}
	if (!res.allowed) {
		refusal(v, r, sp, key, cost, &res);
		snprintf(m->rate_hit, sizeof(m->rate_hit), "%s", key);
		m->rate_rule = r->id;
		ag_metrics_rate_hit(r->id);
		/* a dry-run rule or a tag limit only notes it */
		return !sess_decide(c, r->dry_run || r->on_limit == AG_DISP_TAG,
		    v);
	}
	if (where == AG_RW_NONE || cost == 0) {
		return true;
	}
	if (h == NULL) {
		nh = reallocarray(m->holds, m->nholds + 1, sizeof(*nh));
		if (nh == NULL || (key[keylen] = '\0',
		    (nh[m->nholds].key = strdup(key)) == NULL)) {
			if (nh != NULL) {
				m->holds = nh;
			}
			ag_rater_release(m->snap->rater, key, keylen, &lim, cost,
			    where);
			return true;	/* uncounted rather than refused */
		}
		m->holds = nh;
		at = m->nholds++;
		h = &m->holds[at];
		h->keylen = keylen;
		h->lim = lim;
		h->measure = sp->measure;
		h->cost = 0;
		h->where = where;
		h->rule = r;
		h->idx = idx;
	}
	h->cost += cost;
	p->u[p->n].hold = at;
	p->u[p->n].cost = cost;
	p->n++;
	return true;
}

/* Does limit SP of rule R wait for a recipient? */
static bool
per_rcpt(const struct ag_rule *r, const struct ag_rate_spec *sp)
{
	size_t i;

	if (sp->key == AG_RK_RCPT_DOMAIN || sp->measure == AG_RM_RECIPIENTS) {
		return true;
	}
	for (i = 0; i < r->nmatch; i++) {
		if (r->match[i].field == AG_F_RCPT ||
		    r->match[i].field == AG_F_RCPT_DOMAIN) {
			return true;
		}
	}
	return false;
}

/* The byte cost known before the data: SIZE=, else 1 (see the top). */
static uint64_t
declared_bytes(const struct msg *m)
{
	return m->have_declared && m->declared_size > 0 ? m->declared_size : 1;
}

/*
 * Decide the limits that apply at this phase: RCPT NULL at MAIL FROM.
 * Returns true when V is final.
 */
static bool
rate_phase(struct ag_conn *c, const struct ag_mailaddr *rcpt,
    struct ag_verdict *v)
{
	struct msg *m = c->msg;
	const struct ag_rule *rules[RATE_RULES_MAX];
	struct ag_facts f;
	struct phase *p;
	size_t nr, i, j;
	bool go = true;

	if (m->snap->policy == NULL || m->snap->rater == NULL) {
		return false;
	}
	memset(&f, 0, sizeof(f));
	f.client = c->have_ip ? &c->ip : NULL;
	f.helo = c->helo[0] != '\0' ? c->helo : NULL;
	f.sender = &m->sender;
	f.sasl_user = c->auth[0] != '\0' ? c->auth : NULL;
	f.trusted = m->trusted;
	f.rcpt = rcpt;
	nr = ag_policy_rates(m->snap->policy, &f, rules, RATE_RULES_MAX);
	if (nr == 0) {
		return false;
	}
	if (nr > RATE_RULES_MAX) {
		nr = RATE_RULES_MAX;	/* documented bound */
	}
	if ((p = malloc(sizeof(*p))) == NULL) {
		return false;	/* uncounted rather than refused */
	}
	p->n = 0;
	p->first = m->nholds;
	for (i = 0; go && i < nr; i++) {
		const struct ag_rule *r = rules[i];

		for (j = 0; go && j < r->nrate; j++) {
			const struct ag_rate_spec *sp = &r->rate[j];
			bool later = per_rcpt(r, sp);

			if (rcpt == NULL) {
				if (later) {
					continue;
				}
				go = take_one(c, r, j, NULL,
				    sp->measure == AG_RM_BYTES ?
				    declared_bytes(m) : 1, false, p, v);
			} else if (sp->measure == AG_RM_RECIPIENTS) {
				go = take_one(c, r, j, rcpt, 1, false, p, v);
			} else if (later) {
				go = take_one(c, r, j, rcpt,
				    sp->measure == AG_RM_BYTES ?
				    declared_bytes(m) : 1, true, p, v);
			}
		}
	}
	if (!go) {
		phase_undo(c, p);
	}
	free(p);
	return !go;
}

void
sess_rate_mail(struct ag_conn *c, struct ag_verdict *v)
{
	(void)rate_phase(c, NULL, v);
}

bool
sess_rate_rcpt(struct ag_conn *c, const struct ag_mailaddr *rcpt,
    struct ag_verdict *v)
{
	return rate_phase(c, rcpt, v);
}

/* True up the byte holds to the real size; V may become final. */
void
sess_rate_eom(struct ag_conn *c, struct ag_verdict *v)
{
	struct msg *m = c->msg;
	struct ag_rate_result res;
	enum ag_rate_where where;
	size_t i;

	for (i = 0; i < m->nholds; i++) {
		struct rate_hold *h = &m->holds[i];
		const struct ag_rate_spec *sp = &h->rule->rate[h->idx];
		uint64_t extra;

		if (h->measure != AG_RM_BYTES || h->cost == m->size) {
			continue;
		}
		if (h->cost > m->size) {
			ag_rater_release(m->snap->rater, h->key, h->keylen,
			    &h->lim, h->cost - m->size, h->where);
			h->cost = m->size;
			continue;
		}
		extra = m->size - h->cost;
		if (ag_rater_take(m->snap->rater, h->key, h->keylen, &h->lim,
		    extra, &res, &where) != AG_OK || where != h->where) {
			if (where != h->where) {
				ag_rater_release(m->snap->rater, h->key,
				    h->keylen, &h->lim, extra, where);
			}
			continue;	/* the backend changed: keep what we hold */
		}
		if (res.allowed) {
			h->cost += extra;
			continue;
		}
		refusal(v, h->rule, sp, h->key, m->size, &res);
		snprintf(m->rate_hit, sizeof(m->rate_hit), "%s", h->key);
		m->rate_rule = h->rule->id;
		ag_metrics_rate_hit(h->rule->id);
		if (sess_decide(c, h->rule->dry_run ||
		    h->rule->on_limit == AG_DISP_TAG, v)) {
			return;		/* msg_end gives every hold back */
		}
	}
}

/* The message ends: keep the quota (COMMIT) or give it all back. */
void
sess_rate_end(struct msg *m, bool commit)
{
	size_t i;

	for (i = 0; i < m->nholds; i++) {
		struct rate_hold *h = &m->holds[i];

		if (!commit) {
			ag_rater_release(m->snap->rater, h->key, h->keylen,
			    &h->lim, h->cost, h->where);
		}
		free(h->key);
	}
	free(m->holds);
	m->holds = NULL;
	m->nholds = 0;
}
