/*
 * policy.c - the rule model: condition syntax, matching one transaction
 * (or one recipient) against a rule, and the precedence that turns the
 * rules into one value per setting.
 *
 * A snapshot (struct ag_policy) owns its rules, sorted by priority then
 * id, and is never modified after ag_policy_new(): any number of threads
 * may evaluate it at once.  Evaluation tries only the rules that the
 * index (policy_index.c) finds for the facts, plus the rules it cannot
 * index, in precedence order; each goes through ag_rule_matches(), so
 * the outcome is that of a scan of every rule (ag_policy_eval_linear(),
 * kept for tests and benchmarks), without its cost per rule.
 *
 * The null sender: it has no address and no domain.  A sender-domain
 * condition never matches it; a sender condition matches it only when
 * written "<>".  Facts that are unknown (no client address on a unix
 * socket, no HELO, no MAIL FROM yet, no recipient at transaction level)
 * never satisfy a condition on them.  Addresses compare without regard
 * to case (local part included); sasl-user compares exactly;
 * authenticated=yes means a SASL user is known.
 *
 * SPF settings (a disposition per SPF result, and whether to check at
 * all) follow the same precedence as the limits, one setting per result.
 * The SPF result names are not needed here, so this file does not link
 * against lib/spf.c (nor libspf2).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"
#include "policy_index.h"

/* SASL user names: RFC 4616 allows 255 octets for authcid. */
#define AG_SASL_USER_MAX 255

struct ag_policy {
	size_t n;
	struct ag_rule *rules;	/* sorted: priority asc, then id asc */
	unsigned *fields;	/* per rule: bit (1 << field) per condition */
	struct ag_pindex *index;	/* built last, from the sorted rules */
	struct by_id *by_id;	/* ids ascending, for ag_policy_find() */
	bool spf_per_rcpt;	/* see ag_policy_spf_per_rcpt() */
};

/* A rule's id and its place in precedence order. */
struct by_id {
	int64_t id;
	size_t i;
};

#define RCPT_FIELDS ((1u << AG_F_RCPT) | (1u << AG_F_RCPT_DOMAIN))

static const char *const disp_names[] = {
	[AG_DISP_ACCEPT] = "accept",
	[AG_DISP_TAG] = "tag",
	[AG_DISP_TEMPFAIL] = "tempfail",
	[AG_DISP_REJECT] = "reject",
};

#define AG_DISP_COUNT (sizeof(disp_names) / sizeof(disp_names[0]))

static const char *const field_names[AG_F_COUNT] = {
	[AG_F_CLIENT] = "client",
	[AG_F_HELO] = "helo",
	[AG_F_SENDER] = "sender",
	[AG_F_SENDER_DOMAIN] = "sender-domain",
	[AG_F_SASL_USER] = "sasl-user",
	[AG_F_RCPT] = "rcpt",
	[AG_F_RCPT_DOMAIN] = "rcpt-domain",
	[AG_F_TRUSTED] = "trusted",
	[AG_F_AUTHENTICATED] = "authenticated",
};

/* The field's name, or "?" for a value out of range. */
const char *
ag_field_name(enum ag_field f)
{
	if ((unsigned)f >= AG_F_COUNT) {
		return "?";
	}
	return field_names[f];
}

/* Exact (case-sensitive) lookup of a field name. */
int
ag_field_parse(const char *name, enum ag_field *out)
{
	unsigned i;

	if (name == NULL) {
		return -1;
	}
	for (i = 0; i < AG_F_COUNT; i++) {
		if (strcmp(name, field_names[i]) == 0) {
			*out = (enum ag_field)i;
			return 0;
		}
	}
	return -1;
}

/* The disposition's name, or "?" for a value out of range. */
const char *
ag_disp_name(enum ag_disp d)
{
	if ((unsigned)d >= AG_DISP_COUNT) {
		return "?";
	}
	return disp_names[d];
}

/* Exact (case-sensitive) lookup of a disposition name. */
int
ag_disp_parse(const char *name, enum ag_disp *out)
{
	unsigned i;

	if (name == NULL) {
		return -1;
	}
	for (i = 0; i < AG_DISP_COUNT; i++) {
		if (strcmp(name, disp_names[i]) == 0) {
			*out = (enum ag_disp)i;
			return 0;
		}
	}
	return -1;
}

/*
 * Every setting unset, so that a rule built here decides nothing it was
 * not told to: a zeroed spf_disp[] would read as "accept" for every
 * result, a zeroed spf_check as "do not check".
 */
void
ag_rule_init(struct ag_rule *r)
{
	size_t i;

	memset(r, 0, sizeof(*r));
	r->priority = AG_PRIORITY_DEFAULT;
	r->enabled = true;
	r->max_size = AG_LIMIT_UNSET;
	r->max_rcpts = AG_LIMIT_UNSET;
	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		r->spf_disp[i] = AG_LIMIT_UNSET;
	}
	r->spf_check = AG_LIMIT_UNSET;
	r->dkim_require = AG_LIMIT_UNSET;
	r->dmarc_check = AG_LIMIT_UNSET;
	r->dmarc_enforce = AG_LIMIT_UNSET;
	r->on_limit = AG_LIMIT_UNSET;
}

/* Copy S into OUT or fail with "too long". */
static ag_status
copy_out(const char *s, char *out, size_t outsz, char *err, size_t errlen)
{
	if (strlen(s) >= outsz) {
		snprintf(err, errlen, "value too long");
		return AG_INVALID;
	}
	memcpy(out, s, strlen(s) + 1);
	return AG_OK;
}

/* An IP address or CIDR network, in canonical text. */
static ag_status
norm_client(const char *value, char *out, size_t outsz, char *err,
    size_t errlen)
{
	struct ag_cidr c;
	char buf[AG_CIDR_STRLEN];

	if (ag_cidr_parse(value, &c) != AG_OK) {
		snprintf(err, errlen, "not an IP address or CIDR network");
		return AG_INVALID;
	}
	ag_cidr_format(&c, buf, sizeof(buf));
	return copy_out(buf, out, outsz, err, errlen);
}

/* "example.com" or ".example.com" (every proper subdomain). */
static ag_status
norm_domain_pattern(const char *value, char *out, size_t outsz, char *err,
    size_t errlen)
{
	char buf[AG_ADDR_DOMAIN_MAX + 2];
	const char *name = value;
	size_t off = 0;

	if (value[0] == '.') {
		buf[0] = '.';
		name++;
		off = 1;
	}
	if (name[0] == '\0' || name[0] == '.' ||
	    ag_domain_normalize(name, buf + off, sizeof(buf) - off) != AG_OK ||
	    buf[off] == '\0') {
		snprintf(err, errlen, "not a domain name (or .domain for "
		    "subdomains)");
		return AG_INVALID;
	}
	/* as mail addresses give it (ag_mailaddr_parse): A-labels */
	(void)ag_domain_alabel(buf + off, buf + off, sizeof(buf) - off);
	return copy_out(buf, out, outsz, err, errlen);
}

/* A local part as an administrator writes it: printable, no space, no '@'. */
static bool
local_part_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > AG_ADDR_LOCAL_MAX) {
		return false;
	}
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= 0x20 || ch == 0x7f || ch == '@' || ch == '<' ||
		    ch == '>') {
			return false;
		}
	}
	return true;
}

/*
 * "local@domain", optionally in angle brackets; "<>" for the null sender
 * when NULL_OK.  The domain is normalized, the local part kept as given.
 */
static ag_status
norm_address(const char *value, bool null_ok, char *out, size_t outsz,
    char *err, size_t errlen)
{
	char buf[AG_ADDR_MAX + 8], dom[AG_ADDR_DOMAIN_MAX + 1];
	const char *at, *s = value;
	size_t len = strlen(value);

	if (strcmp(value, "<>") == 0) {
		if (!null_ok) {
			snprintf(err, errlen, "the null address <> is not a "
			    "recipient");
			return AG_INVALID;
		}
		return copy_out("<>", out, outsz, err, errlen);
	}
	if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
		s++;
		len -= 2;
	}
	at = memchr(s, '@', len);
	if (at == NULL || !local_part_ok(s, (size_t)(at - s)) ||
	    (size_t)(at + 1 - s) >= len || len - (size_t)(at + 1 - s) >
	    AG_ADDR_DOMAIN_MAX) {
		snprintf(err, errlen, "not a mail address local@domain%s",
		    null_ok ? " (or <> for the null sender)" : "");
		return AG_INVALID;
	}
	memcpy(buf, at + 1, len - (size_t)(at + 1 - s));
	buf[len - (size_t)(at + 1 - s)] = '\0';
	if (ag_domain_normalize(buf, dom, sizeof(dom)) != AG_OK) {
		snprintf(err, errlen, "bad domain in mail address");
		return AG_INVALID;
	}
	(void)ag_domain_alabel(dom, dom, sizeof(dom));	/* as above */
	if ((size_t)snprintf(buf, sizeof(buf), "%.*s@%s", (int)(at - s), s,
	    dom) >= sizeof(buf)) {
		snprintf(err, errlen, "value too long");
		return AG_INVALID;
	}
	return copy_out(buf, out, outsz, err, errlen);
}

/* A SASL user name: kept exactly, no control characters. */
static ag_status
norm_sasl_user(const char *value, char *out, size_t outsz, char *err,
    size_t errlen)
{
	size_t i, len = strlen(value);

	if (len == 0 || len > AG_SASL_USER_MAX) {
		snprintf(err, errlen, "a SASL user name is 1 to %d bytes",
		    AG_SASL_USER_MAX);
		return AG_INVALID;
	}
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)value[i];

		if (ch < 0x20 || ch == 0x7f) {
			snprintf(err, errlen, "control character in SASL user "
			    "name");
			return AG_INVALID;
		}
	}
	return copy_out(value, out, outsz, err, errlen);
}

/* "yes" or "no", in any case. */
static ag_status
norm_yesno(const char *value, char *out, size_t outsz, char *err,
    size_t errlen)
{
	if (strcasecmp(value, "yes") == 0) {
		return copy_out("yes", out, outsz, err, errlen);
	}
	if (strcasecmp(value, "no") == 0) {
		return copy_out("no", out, outsz, err, errlen);
	}
	snprintf(err, errlen, "must be yes or no");
	return AG_INVALID;
}

/* Validate VALUE for field F and write its canonical text into OUT. */
ag_status
ag_match_normalize(enum ag_field f, const char *value, char *out,
    size_t outsz, char *err, size_t errlen)
{
	char dummy[1];

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	if (value == NULL || out == NULL || outsz == 0) {
		snprintf(err, errlen, "missing value");
		return AG_INVALID;
	}
	switch (f) {
	case AG_F_CLIENT:
		return norm_client(value, out, outsz, err, errlen);
	case AG_F_HELO:
	case AG_F_SENDER_DOMAIN:
	case AG_F_RCPT_DOMAIN:
		return norm_domain_pattern(value, out, outsz, err, errlen);
	case AG_F_SENDER:
		return norm_address(value, true, out, outsz, err, errlen);
	case AG_F_RCPT:
		return norm_address(value, false, out, outsz, err, errlen);
	case AG_F_SASL_USER:
		return norm_sasl_user(value, out, outsz, err, errlen);
	case AG_F_TRUSTED:
	case AG_F_AUTHENTICATED:
		return norm_yesno(value, out, outsz, err, errlen);
	case AG_F_COUNT:
		break;
	}
	snprintf(err, errlen, "unknown field");
	return AG_INVALID;
}

/* Does the normalized pattern "local@domain" (or "<>") match A? */
static bool
address_matches(const char *pattern, const struct ag_mailaddr *a)
{
	const char *at;
	size_t llen;

	if (a == NULL) {
		return false;
	}
	if (a->is_null) {
		return strcmp(pattern, "<>") == 0;
	}
	at = strrchr(pattern, '@');
	if (at == NULL) {
		return false;
	}
	llen = (size_t)(at - pattern);
	return strlen(a->local) == llen &&
	    strncasecmp(a->local, pattern, llen) == 0 &&
	    strcasecmp(a->domain, at + 1) == 0;
}

/* A domain condition against an address's domain; never the null sender. */
static bool
addr_domain_matches(const char *pattern, const struct ag_mailaddr *a)
{
	if (a == NULL || a->is_null || a->domain[0] == '\0') {
		return false;
	}
	return ag_domain_match(pattern, a->domain);
}

/* Does one condition hold for F? */
static bool
match_one(const struct ag_match *m, const struct ag_facts *f)
{
	switch (m->field) {
	case AG_F_CLIENT:
		return f->client != NULL && f->client->family != 0 &&
		    ag_cidr_match(&m->cidr, f->client);
	case AG_F_HELO:
		return f->helo != NULL && f->helo[0] != '\0' &&
		    ag_domain_match(m->value, f->helo);
	case AG_F_SENDER:
		return address_matches(m->value, f->sender);
	case AG_F_SENDER_DOMAIN:
		return addr_domain_matches(m->value, f->sender);
	case AG_F_SASL_USER:
		return f->sasl_user != NULL &&
		    strcmp(m->value, f->sasl_user) == 0;
	case AG_F_RCPT:
		return f->rcpt != NULL && !f->rcpt->is_null &&
		    address_matches(m->value, f->rcpt);
	case AG_F_RCPT_DOMAIN:
		return addr_domain_matches(m->value, f->rcpt);
	case AG_F_TRUSTED:
		return m->yes == f->trusted;
	case AG_F_AUTHENTICATED:
		return m->yes ==
		    (f->sasl_user != NULL && f->sasl_user[0] != '\0');
	case AG_F_COUNT:
		break;
	}
	return false;
}

/* AND across fields, OR within one field. */
bool
ag_rule_matches(const struct ag_rule *r, const struct ag_facts *f)
{
	unsigned present = 0, held = 0, bit;
	size_t i;

	if (r == NULL || f == NULL) {
		return false;
	}
	for (i = 0; i < r->nmatch; i++) {
		const struct ag_match *m = &r->match[i];

		if ((unsigned)m->field >= AG_F_COUNT) {
			return false;	/* never from a snapshot */
		}
		bit = 1u << m->field;
		present |= bit;
		if ((held & bit) == 0 && match_one(m, f)) {
			held |= bit;
		}
	}
	return present == held;
}

/* Free the contents of one rule and reset it as ag_rule_init() does. */
void
ag_rule_clear(struct ag_rule *r)
{
	size_t i;

	if (r == NULL) {
		return;
	}
	for (i = 0; i < r->nmatch; i++) {
		free(r->match[i].value);
	}
	free(r->match);
	free(r->comment);
	ag_rule_init(r);
}

/* Does R set any SPF setting? */
static bool
rule_sets_spf(const struct ag_rule *r)
{
	size_t i;

	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		if (r->spf_disp[i] != AG_LIMIT_UNSET) {
			return true;
		}
	}
	return r->spf_check != AG_LIMIT_UNSET;
}

/* Are R's SPF settings unset or in range? */
static bool
rule_spf_ok(const struct ag_rule *r)
{
	size_t i;

	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		if (r->spf_disp[i] != AG_LIMIT_UNSET &&
		    (r->spf_disp[i] < 0 ||
		    r->spf_disp[i] >= (int64_t)AG_DISP_COUNT)) {
			return false;
		}
	}
	return (r->spf_check == AG_LIMIT_UNSET || r->spf_check == 0 ||
	    r->spf_check == 1) && (r->dkim_require == AG_LIMIT_UNSET ||
	    r->dkim_require == 1);
}

/*
 * Normalize M's value in place and fill its parsed forms, so that a
 * snapshot never depends on its builder having done so.
 */
static ag_status
match_compile(struct ag_match *m)
{
	char buf[AG_ADDR_MAX + 8], err[128];
	char *v;
	ag_status st;

	st = ag_match_normalize(m->field, m->value, buf, sizeof(buf), err,
	    sizeof(err));
	if (st != AG_OK) {
		return st;
	}
	if (strcmp(buf, m->value) != 0) {
		if ((v = strdup(buf)) == NULL) {
			return AG_NOMEM;
		}
		free(m->value);
		m->value = v;
	}
	memset(&m->cidr, 0, sizeof(m->cidr));
	m->yes = false;
	if (m->field == AG_F_CLIENT && ag_cidr_parse(m->value, &m->cidr) !=
	    AG_OK) {
		return AG_INVALID;
	}
	if (m->field == AG_F_TRUSTED || m->field == AG_F_AUTHENTICATED) {
		m->yes = strcmp(m->value, "yes") == 0;
	}
	return AG_OK;
}

/* Precedence order: priority ascending, then id ascending. */
static int
rule_cmp(const void *a, const void *b)
{
	const struct ag_rule *x = a, *y = b;

	if (x->priority != y->priority) {
		return x->priority < y->priority ? -1 : 1;
	}
	if (x->id != y->id) {
		return x->id < y->id ? -1 : 1;
	}
	return 0;
}

/* Id ascending, then precedence (the first of equal ids is found). */
static int
by_id_cmp(const void *a, const void *b)
{
	const struct by_id *x = a, *y = b;

	if (x->id != y->id) {
		return x->id < y->id ? -1 : 1;
	}
	return x->i < y->i ? -1 : x->i > y->i;
}

/* Build a snapshot; owns RULES from the start, also on failure. */
ag_status
ag_policy_new(struct ag_rule *rules, size_t nrules, struct ag_policy **out)
{
	struct ag_policy *p;
	ag_status st = AG_OK;
	size_t i, j;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		st = AG_NOMEM;
		goto fail;
	}
	p->n = nrules;
	p->rules = rules;
	rules = NULL;
	p->fields = calloc(nrules ? nrules : 1, sizeof(*p->fields));
	if (p->fields == NULL) {
		ag_policy_free(p);
		return AG_NOMEM;
	}
	for (i = 0; i < p->n && st == AG_OK; i++) {
		if (!rule_spf_ok(&p->rules[i])) {
			st = AG_INVALID;
		}
		for (j = 0; j < p->rules[i].nmatch && st == AG_OK; j++) {
			st = match_compile(&p->rules[i].match[j]);
		}
	}
	if (st != AG_OK) {
		ag_policy_free(p);
		return st;
	}
	if (p->n > 1) {
		qsort(p->rules, p->n, sizeof(*p->rules), rule_cmp);
	}
	for (i = 0; i < p->n; i++) {
		for (j = 0; j < p->rules[i].nmatch; j++) {
			p->fields[i] |= 1u << p->rules[i].match[j].field;
		}
		/* A dry-run rule counts too: its trial is per recipient. */
		if (p->rules[i].enabled && (p->fields[i] & RCPT_FIELDS) != 0 &&
		    rule_sets_spf(&p->rules[i])) {
			p->spf_per_rcpt = true;
		}
	}
	if ((p->by_id = calloc(p->n ? p->n : 1, sizeof(*p->by_id))) == NULL) {
		ag_policy_free(p);
		return AG_NOMEM;
	}
	for (i = 0; i < p->n; i++) {
		p->by_id[i] = (struct by_id){ p->rules[i].id, i };
	}
	qsort(p->by_id, p->n, sizeof(*p->by_id), by_id_cmp);
	st = ag_pindex_build(p->rules, p->n, &p->index);
	if (st != AG_OK) {
		ag_policy_free(p);
		return st;
	}
	*out = p;
	return AG_OK;
fail:
	for (i = 0; i < nrules; i++) {
		ag_rule_clear(&rules[i]);
	}
	free(rules);
	return st;
}

/* Free a snapshot and every rule in it. */
void
ag_policy_free(struct ag_policy *p)
{
	size_t i;

	if (p == NULL) {
		return;
	}
	for (i = 0; i < p->n; i++) {
		ag_rule_clear(&p->rules[i]);
	}
	free(p->rules);
	free(p->fields);
	ag_pindex_free(p->index);
	free(p->by_id);
	free(p);
}

/* Number of rules, disabled ones included. */
size_t
ag_policy_count(const struct ag_policy *p)
{
	return p == NULL ? 0 : p->n;
}

/* The I-th rule in precedence order, or NULL past the end. */
const struct ag_rule *
ag_policy_rule(const struct ag_policy *p, size_t i)
{
	if (p == NULL || i >= p->n) {
		return NULL;
	}
	return &p->rules[i];
}

/* Must the SPF decision wait for RCPT TO?  Computed in ag_policy_new(). */
bool
ag_policy_spf_per_rcpt(const struct ag_policy *p)
{
	return p != NULL && p->spf_per_rcpt;
}

/* Take VALUE from rule R for setting S unless an earlier rule set it. */
static void
setting_take(struct ag_setting *s, int64_t value, const struct ag_rule *r)
{
	if (s->value != AG_LIMIT_UNSET || value < 0) {
		return;
	}
	if (r->dry_run) {
		if (s->trial == AG_LIMIT_UNSET) {
			s->trial = value;
			s->trial_rule_id = r->id;
		}
		return;
	}
	s->value = value;
	s->rule_id = r->id;
}

/* No rule has set S yet. */
static void
setting_init(struct ag_setting *s)
{
	s->value = AG_LIMIT_UNSET;
	s->rule_id = 0;
	s->trial = AG_LIMIT_UNSET;
	s->trial_rule_id = 0;
}

/* No rule has decided anything yet. */
static void
eval_init(struct ag_eval *out)
{
	size_t k;

	setting_init(&out->max_size);
	setting_init(&out->max_rcpts);
	for (k = 0; k < AG_SPF_NRESULTS; k++) {
		setting_init(&out->spf_disp[k]);
	}
	setting_init(&out->spf_check);
	setting_init(&out->dkim_require);
	setting_init(&out->dmarc_check);
	setting_init(&out->dmarc_enforce);
	out->nmatched = 0;
}

/* Could rule I match F at all?  Disabled rules and rcpt rules without one
 * are skipped before the conditions are read. */
static inline bool
rule_eligible(const struct ag_policy *p, size_t i, const struct ag_facts *f)
{
	return p->rules[i].enabled &&
	    (f->rcpt != NULL || (p->fields[i] & RCPT_FIELDS) == 0) &&
	    ag_rule_matches(&p->rules[i], f);
}

/* Matching rule R takes every setting no earlier rule decided. */
static void
eval_take(const struct ag_rule *r, struct ag_eval *out)
{
	size_t k;

	out->nmatched++;
	setting_take(&out->max_size, r->max_size, r);
	setting_take(&out->max_rcpts, r->max_rcpts, r);
	for (k = 0; k < AG_SPF_NRESULTS; k++) {
		setting_take(&out->spf_disp[k], r->spf_disp[k], r);
	}
	setting_take(&out->spf_check, r->spf_check, r);
	setting_take(&out->dkim_require, r->dkim_require, r);
	setting_take(&out->dmarc_check, r->dmarc_check, r);
	setting_take(&out->dmarc_enforce, r->dmarc_enforce, r);
}

/*
 * The rules C yields for F, in precedence order; the first matching
 * enabled rule not in dry run that sets a setting decides it.
 */
static void
eval_over(const struct ag_policy *p, const struct ag_facts *f,
    struct ag_pcand *c, struct ag_eval *out)
{
	size_t i;

	while (ag_pcand_next(c, &i)) {
		if (rule_eligible(p, i, f)) {
			eval_take(&p->rules[i], out);
		}
	}
	ag_pcand_done(c);
}

/* Evaluate F through the index: the candidates only, in precedence order. */
void
ag_policy_eval(const struct ag_policy *p, const struct ag_facts *f,
    struct ag_eval *out)
{
	struct ag_pcand c;

	eval_init(out);
	if (p == NULL || f == NULL) {
		return;
	}
	ag_pcand_gather(p->index, p->n, f, &c);
	eval_over(p, f, &c, out);
}

/* The same without the index: every rule in turn. */
void
ag_policy_eval_linear(const struct ag_policy *p, const struct ag_facts *f,
    struct ag_eval *out)
{
	struct ag_pcand c;

	eval_init(out);
	if (p == NULL || f == NULL) {
		return;
	}
	ag_pcand_gather(NULL, p->n, f, &c);
	eval_over(p, f, &c, out);
}

/* Rules with limits among those C yields, down to the first enforced
 * exemption. */
static size_t
rates_over(const struct ag_policy *p, const struct ag_facts *f,
    struct ag_pcand *c, const struct ag_rule **out, size_t max)
{
	size_t i, n = 0;

	while (ag_pcand_next(c, &i)) {
		const struct ag_rule *r = &p->rules[i];

		if ((r->nrate == 0 && !r->exempt) || !rule_eligible(p, i, f)) {
			continue;
		}
		if (r->nrate > 0) {
			if (n < max) {
				out[n] = r;
			}
			n++;
		}
		/* only an enforcing rule may loosen what is enforced */
		if (r->exempt && !r->dry_run && r->on_limit != AG_DISP_TAG) {
			break;
		}
	}
	ag_pcand_done(c);
	return n;
}

/* The rules whose limits apply to F, through the index. */
size_t
ag_policy_rates(const struct ag_policy *p, const struct ag_facts *f,
    const struct ag_rule **out, size_t max)
{
	struct ag_pcand c;

	if (p == NULL || f == NULL) {
		return 0;
	}
	ag_pcand_gather(p->index, p->n, f, &c);
	return rates_over(p, f, &c, out, max);
}

/* The same without the index: every rule in turn. */
size_t
ag_policy_rates_linear(const struct ag_policy *p, const struct ag_facts *f,
    const struct ag_rule **out, size_t max)
{
	struct ag_pcand c;

	if (p == NULL || f == NULL) {
		return 0;
	}
	ag_pcand_gather(NULL, p->n, f, &c);
	return rates_over(p, f, &c, out, max);
}

/* The snapshot's index, for tests and benchmarks. */
const struct ag_pindex *
ag_policy_index(const struct ag_policy *p)
{
	return p != NULL ? p->index : NULL;
}

/* Binary search: the counters listing looks up a rule per key. */
const struct ag_rule *
ag_policy_find(const struct ag_policy *p, int64_t id)
{
	size_t lo = 0, hi, mid;

	if (p == NULL) {
		return NULL;
	}
	hi = p->n;
	while (lo < hi) {	/* the first entry with an id >= ID */
		mid = lo + (hi - lo) / 2;
		if (p->by_id[mid].id < id) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return lo < p->n && p->by_id[lo].id == id ? &p->rules[p->by_id[lo].i] :
	    NULL;
}
