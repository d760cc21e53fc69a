/*
 * t_policy.c - unit tests for lib/policy.c: condition syntax, matching
 * one rule against the facts of a transaction or a recipient, and the
 * precedence that picks one rule per setting (limits and SPF settings),
 * and whether the SPF decision has to wait for the recipients.
 *
 * Table-driven: every case has a label, which is also its TAP test name.
 * All cases run as one cmocka group, so the TAP output has one plan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "policy.h"

#define MAXM 6		/* conditions per rule in a table */
#define MAXR 6		/* rules per table case */
#define NO AG_LIMIT_UNSET

/* ---- helpers ---------------------------------------------------------- */

/* The facts of a case, as text. */
struct fspec {
	const char *client;	/* NULL: unknown */
	const char *helo;
	const char *sender;	/* "<>" is the null sender; NULL: none yet */
	const char *sasl;
	bool trusted;
	const char *rcpt;	/* NULL: transaction level */
};

/* Parsed facts with their storage. */
struct fbuf {
	struct ag_ip ip;
	struct ag_mailaddr sender, rcpt;
	struct ag_facts f;
};

static void
facts_build(const char *label, const struct fspec *s, struct fbuf *b)
{
	memset(b, 0, sizeof(*b));
	if (s->client != NULL) {
		if (ag_ip_parse(s->client, &b->ip) != AG_OK) {
			fail_msg("%s: test client '%s' does not parse", label,
			    s->client);
		}
		b->f.client = &b->ip;
	}
	if (s->sender != NULL) {
		if (ag_mailaddr_parse(s->sender, &b->sender) != AG_OK) {
			fail_msg("%s: test sender '%s' does not parse", label,
			    s->sender);
		}
		b->f.sender = &b->sender;
	}
	if (s->rcpt != NULL) {
		if (ag_mailaddr_parse(s->rcpt, &b->rcpt) != AG_OK) {
			fail_msg("%s: test rcpt '%s' does not parse", label,
			    s->rcpt);
		}
		b->f.rcpt = &b->rcpt;
	}
	b->f.helo = s->helo;
	b->f.sasl_user = s->sasl;
	b->f.trusted = s->trusted;
}

/*
 * A rule as text: conditions are "field=value"; an entry "spf:SETTINGS"
 * in the same list sets SPF settings ("spf:fail=reject,check=off").
 */
struct rspec {
	int64_t id;
	int priority;
	bool disabled;
	bool dry_run;
	int64_t max_size;
	int64_t max_rcpts;
	const char *m[MAXM];
};

/* SPF result names as the tests write them (lib/spf.c is not linked). */
static const char *const spf_names[AG_SPF_NRESULTS] = {
	[AG_SPF_NONE] = "none",
	[AG_SPF_NEUTRAL] = "neutral",
	[AG_SPF_PASS] = "pass",
	[AG_SPF_FAIL] = "fail",
	[AG_SPF_SOFTFAIL] = "softfail",
	[AG_SPF_TEMPERROR] = "temperror",
	[AG_SPF_PERMERROR] = "permerror",
};

/* Index of SPF setting NAME: a result, AG_SPF_NRESULTS for "check". */
static size_t
spf_index(const char *label, const char *name)
{
	size_t i;

	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		if (strcmp(name, spf_names[i]) == 0) {
			return i;
		}
	}
	if (strcmp(name, "check") != 0) {
		fail_msg("%s: bad test SPF setting '%s'", label, name);
	}
	return AG_SPF_NRESULTS;
}

/* A setting's value as the tests write it: a disposition, on or off. */
static int64_t
spf_value(const char *label, size_t idx, const char *text)
{
	enum ag_disp d;

	if (idx == AG_SPF_NRESULTS) {
		if (strcmp(text, "on") != 0 && strcmp(text, "off") != 0) {
			fail_msg("%s: bad test check value '%s'", label, text);
		}
		return strcmp(text, "on") == 0;
	}
	if (ag_disp_parse(text, &d) != 0) {
		fail_msg("%s: bad test disposition '%s'", label, text);
	}
	return (int64_t)d;
}

/* Apply "fail=reject,check=off" (NULL: nothing) to R. */
static void
spf_apply(const char *label, const char *spec, struct ag_rule *r)
{
	char buf[256], *tok, *save = NULL, *eq;
	size_t idx;

	if (spec == NULL) {
		return;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if ((eq = strchr(tok, '=')) == NULL) {
			fail_msg("%s: bad test SPF spec '%s'", label, spec);
		}
		*eq = '\0';
		idx = spf_index(label, tok);
		if (idx == AG_SPF_NRESULTS) {
			r->spf_check = spf_value(label, idx, eq + 1);
		} else {
			r->spf_disp[idx] = spf_value(label, idx, eq + 1);
		}
	}
}

/* Fill R from S (allocating); fails the test on a bad spec. */
static void
rule_build(const char *label, const struct rspec *s, struct ag_rule *r)
{
	size_t n = 0, i;

	ag_rule_init(r);
	r->id = s->id;
	r->priority = s->priority;
	r->enabled = !s->disabled;
	r->dry_run = s->dry_run;
	r->max_size = s->max_size;
	r->max_rcpts = s->max_rcpts;
	while (n < MAXM && s->m[n] != NULL) {
		n++;
	}
	r->match = calloc(n ? n : 1, sizeof(*r->match));
	if (r->match == NULL) {
		fail_msg("%s: out of memory", label);
	}
	for (i = 0; i < n; i++) {
		const char *eq = strchr(s->m[i], '=');
		char name[32];

		if (strncmp(s->m[i], "spf:", 4) == 0) {
			spf_apply(label, s->m[i] + 4, r);
			continue;
		}
		if (eq == NULL || (size_t)(eq - s->m[i]) >= sizeof(name)) {
			fail_msg("%s: bad test condition '%s'", label, s->m[i]);
		}
		memcpy(name, s->m[i], (size_t)(eq - s->m[i]));
		name[eq - s->m[i]] = '\0';
		if (ag_field_parse(name, &r->match[r->nmatch].field) != 0) {
			fail_msg("%s: unknown field '%s'", label, name);
		}
		r->match[r->nmatch].value = strdup(eq + 1);
		r->nmatch++;
	}
}

/* Build a snapshot from the specs (stopping at id 0). */
static struct ag_policy *
policy_build(const char *label, const struct rspec *specs, size_t max)
{
	struct ag_policy *p = NULL;
	struct ag_rule *rules;
	size_t n = 0, i;
	ag_status st;

	while (n < max && specs[n].id != 0) {
		n++;
	}
	rules = calloc(n ? n : 1, sizeof(*rules));
	if (rules == NULL) {
		fail_msg("%s: out of memory", label);
	}
	for (i = 0; i < n; i++) {
		rule_build(label, &specs[i], &rules[i]);
	}
	st = ag_policy_new(rules, n, &p);
	if (st != AG_OK) {
		fail_msg("%s: ag_policy_new: %s", label, ag_status_str(st));
	}
	return p;
}

/* ---- field names ----------------------------------------------------- */

static void
test_field_names(void **state)
{
	static const char *const want[AG_F_COUNT] = {
		"client", "helo", "sender", "sender-domain", "sasl-user",
		"rcpt", "rcpt-domain", "trusted", "authenticated",
	};
	enum ag_field f;
	unsigned i;

	(void)state;
	for (i = 0; i < AG_F_COUNT; i++) {
		if (strcmp(ag_field_name((enum ag_field)i), want[i]) != 0) {
			fail_msg("field %u: name '%s', want '%s'", i,
			    ag_field_name((enum ag_field)i), want[i]);
		}
		if (ag_field_parse(want[i], &f) != 0 || f != (enum ag_field)i) {
			fail_msg("field '%s' does not parse back", want[i]);
		}
	}
	if (ag_field_parse("Client", &f) == 0 ||
	    ag_field_parse("bogus", &f) == 0 || ag_field_parse("", &f) == 0 ||
	    ag_field_parse(NULL, &f) == 0) {
		fail_msg("a bad field name parsed");
	}
	if (strcmp(ag_field_name(AG_F_COUNT), "?") != 0) {
		fail_msg("out-of-range field has a name");
	}
}

/* ---- normalization ---------------------------------------------------- */

struct norm_case {
	const char *label;
	enum ag_field field;
	const char *in;
	const char *want;	/* NULL: AG_INVALID expected */
};

static const struct norm_case norm_cases[] = {
	{ "client v4 host", AG_F_CLIENT, "192.0.2.1", "192.0.2.1/32" },
	{ "client v4 net, host bits cleared", AG_F_CLIENT, "192.0.2.77/24",
	    "192.0.2.0/24" },
	{ "client v4 /0", AG_F_CLIENT, "0.0.0.0/0", "0.0.0.0/0" },
	{ "client v6 net upper case", AG_F_CLIENT, "2001:DB8::/32",
	    "2001:db8::/32" },
	{ "client v6 host", AG_F_CLIENT, "2001:db8::1", "2001:db8::1/128" },
	{ "client v4-mapped is v4", AG_F_CLIENT, "::ffff:192.0.2.1",
	    "192.0.2.1/32" },
	{ "client bad octet", AG_F_CLIENT, "192.0.2.300", NULL },
	{ "client prefix too long", AG_F_CLIENT, "192.0.2.0/33", NULL },
	{ "client v6 prefix too long", AG_F_CLIENT, "2001:db8::/129", NULL },
	{ "client a name", AG_F_CLIENT, "mail.example.com", NULL },
	{ "client empty", AG_F_CLIENT, "", NULL },
	{ "helo lower-cased, dot dropped", AG_F_HELO, "Mail.Example.COM.",
	    "mail.example.com" },
	{ "helo subdomain pattern", AG_F_HELO, ".Example.com",
	    ".example.com" },
	{ "helo lone dot", AG_F_HELO, ".", NULL },
	{ "helo double leading dot", AG_F_HELO, "..example.com", NULL },
	{ "helo empty label", AG_F_HELO, "a..example.com", NULL },
	{ "helo space", AG_F_HELO, "mail example.com", NULL },
	{ "helo empty", AG_F_HELO, "", NULL },
	{ "sender domain lower-cased", AG_F_SENDER, "User@Example.COM",
	    "User@example.com" },
	{ "sender brackets dropped", AG_F_SENDER, "<u@x.example>",
	    "u@x.example" },
	{ "sender null", AG_F_SENDER, "<>", "<>" },
	{ "sender no domain", AG_F_SENDER, "postmaster", NULL },
	{ "sender empty local", AG_F_SENDER, "@example.com", NULL },
	{ "sender empty domain", AG_F_SENDER, "user@", NULL },
	{ "sender space in local", AG_F_SENDER, "a b@example.com", NULL },
	{ "sender bad domain", AG_F_SENDER, "u@exa mple.com", NULL },
	{ "sender SQL text", AG_F_SENDER, "'; DROP TABLE rules; --", NULL },
	{ "sender-domain", AG_F_SENDER_DOMAIN, "EXAMPLE.org", "example.org" },
	{ "sender-domain subdomains", AG_F_SENDER_DOMAIN, ".example.org",
	    ".example.org" },
	{ "sender-domain an address", AG_F_SENDER_DOMAIN, "u@example.org",
	    NULL },
	{ "sasl-user kept as is", AG_F_SASL_USER, "Alice@Example",
	    "Alice@Example" },
	{ "sasl-user with space", AG_F_SASL_USER, "alice smith",
	    "alice smith" },
	{ "sasl-user empty", AG_F_SASL_USER, "", NULL },
	{ "sasl-user tab", AG_F_SASL_USER, "a\tb", NULL },
	{ "sasl-user newline", AG_F_SASL_USER, "a\nb", NULL },
	{ "rcpt", AG_F_RCPT, "Bob@EXAMPLE.net", "Bob@example.net" },
	{ "rcpt null refused", AG_F_RCPT, "<>", NULL },
	{ "rcpt-domain subdomains", AG_F_RCPT_DOMAIN, ".Example.NET",
	    ".example.net" },
	{ "rcpt-domain bad", AG_F_RCPT_DOMAIN, "exa_mple!.net", NULL },
	{ "trusted YES", AG_F_TRUSTED, "YES", "yes" },
	{ "trusted no", AG_F_TRUSTED, "no", "no" },
	{ "trusted maybe", AG_F_TRUSTED, "maybe", NULL },
	{ "authenticated yes", AG_F_AUTHENTICATED, "yes", "yes" },
	{ "authenticated 1", AG_F_AUTHENTICATED, "1", NULL },
	{ "field out of range", AG_F_COUNT, "x", NULL },
};

static void
test_normalize(void **state)
{
	const struct norm_case *c = *state;
	char out[512], again[512], err[128] = "";
	ag_status st;

	st = ag_match_normalize(c->field, c->in, out, sizeof(out), err,
	    sizeof(err));
	if (c->want == NULL) {
		if (st != AG_INVALID) {
			fail_msg("%s: '%s' accepted as '%s'", c->label, c->in,
			    st == AG_OK ? out : "?");
		}
		if (err[0] == '\0') {
			fail_msg("%s: no error message", c->label);
		}
		return;
	}
	if (st != AG_OK) {
		fail_msg("%s: '%s' refused: %s", c->label, c->in, err);
	}
	if (strcmp(out, c->want) != 0) {
		fail_msg("%s: '%s' gave '%s', want '%s'", c->label, c->in, out,
		    c->want);
	}
	/* Normalizing is idempotent: the store normalizes again on load. */
	st = ag_match_normalize(c->field, out, again, sizeof(again), err,
	    sizeof(err));
	if (st != AG_OK || strcmp(again, out) != 0) {
		fail_msg("%s: '%s' is not stable (%s)", c->label, out, err);
	}
}

static void
test_normalize_limits(void **state)
{
	char user[300], out[512], small[4], err[128];

	(void)state;
	memset(user, 'u', 255);
	user[255] = '\0';
	if (ag_match_normalize(AG_F_SASL_USER, user, out, sizeof(out), err,
	    sizeof(err)) != AG_OK) {
		fail_msg("255-byte SASL user refused: %s", err);
	}
	user[255] = 'u';
	user[256] = '\0';
	if (ag_match_normalize(AG_F_SASL_USER, user, out, sizeof(out), err,
	    sizeof(err)) != AG_INVALID) {
		fail_msg("256-byte SASL user accepted");
	}
	if (ag_match_normalize(AG_F_HELO, "example.com", small, sizeof(small),
	    err, sizeof(err)) != AG_INVALID) {
		fail_msg("value longer than the output buffer accepted");
	}
	if (ag_match_normalize(AG_F_HELO, NULL, out, sizeof(out), err,
	    sizeof(err)) != AG_INVALID) {
		fail_msg("NULL value accepted");
	}
	if (ag_match_normalize(AG_F_TRUSTED, "maybe", out, sizeof(out), NULL,
	    0) != AG_INVALID) {
		fail_msg("NULL error buffer: bad value accepted");
	}
}

/* ---- matching one rule ------------------------------------------------ */

struct match_case {
	const char *label;
	const char *m[MAXM];
	struct fspec facts;
	bool want;
};

#define F(client, helo, sender, sasl, trusted, rcpt) \
	{ client, helo, sender, sasl, trusted, rcpt }
#define BASE_FACTS F("192.0.2.10", "mail.example.com", \
	"Alice@Example.com", NULL, false, NULL)

static const struct match_case match_cases[] = {
	{ "empty rule matches all", { NULL }, BASE_FACTS, true },
	{ "empty rule matches unknown facts", { NULL },
	    F(NULL, NULL, NULL, NULL, false, NULL), true },
	{ "client v4 in /24", { "client=192.0.2.0/24" }, BASE_FACTS, true },
	{ "client v4 outside /24", { "client=198.51.100.0/24" }, BASE_FACTS,
	    false },
	{ "client v4 host", { "client=192.0.2.10" }, BASE_FACTS, true },
	{ "client v4 /0", { "client=0.0.0.0/0" }, BASE_FACTS, true },
	{ "client v6 in /32", { "client=2001:db8::/32" },
	    F("2001:db8:1::5", NULL, NULL, NULL, false, NULL), true },
	{ "client v6 outside /48", { "client=2001:db8:2::/48" },
	    F("2001:db8:1::5", NULL, NULL, NULL, false, NULL), false },
	{ "client v4 rule, v6 client", { "client=0.0.0.0/0" },
	    F("2001:db8::1", NULL, NULL, NULL, false, NULL), false },
	{ "client v4-mapped client", { "client=192.0.2.0/24" },
	    F("::ffff:192.0.2.9", NULL, NULL, NULL, false, NULL), true },
	{ "client unknown (unix socket)", { "client=0.0.0.0/0" },
	    F(NULL, "x.example", "a@b.example", NULL, false, NULL), false },
	{ "helo exact", { "helo=mail.example.com" }, BASE_FACTS, true },
	{ "helo other", { "helo=mx.example.com" }, BASE_FACTS, false },
	{ "helo subdomain pattern", { "helo=.example.com" }, BASE_FACTS,
	    true },
	{ "helo subdomain pattern not self", { "helo=.example.com" },
	    F("192.0.2.10", "example.com", NULL, NULL, false, NULL), false },
	{ "helo not given", { "helo=.example.com" },
	    F("192.0.2.10", NULL, NULL, NULL, false, NULL), false },
	{ "sender case-insensitive", { "sender=alice@EXAMPLE.com" },
	    BASE_FACTS, true },
	{ "sender other local", { "sender=bob@example.com" }, BASE_FACTS,
	    false },
	{ "sender null matches <>", { "sender=<>" },
	    F("192.0.2.10", NULL, "<>", NULL, false, NULL), true },
	{ "sender <> not a real sender", { "sender=<>" }, BASE_FACTS, false },
	{ "sender address not null", { "sender=alice@example.com" },
	    F("192.0.2.10", NULL, "<>", NULL, false, NULL), false },
	{ "sender before MAIL FROM", { "sender=<>" },
	    F("192.0.2.10", NULL, NULL, NULL, false, NULL), false },
	{ "sender-domain exact", { "sender-domain=example.com" }, BASE_FACTS,
	    true },
	{ "sender-domain subdomain", { "sender-domain=.example.com" },
	    F(NULL, NULL, "a@lists.example.com", NULL, false, NULL), true },
	{ "sender-domain pattern not self", { "sender-domain=.example.com" },
	    BASE_FACTS, false },
	{ "sender-domain never null sender", { "sender-domain=example.com" },
	    F(NULL, NULL, "<>", NULL, false, NULL), false },
	{ "sender-domain sender without domain",
	    { "sender-domain=example.com" },
	    F(NULL, NULL, "<postmaster>", NULL, false, NULL), false },
	{ "sasl-user exact", { "sasl-user=alice" },
	    F(NULL, NULL, NULL, "alice", false, NULL), true },
	{ "sasl-user case-sensitive", { "sasl-user=alice" },
	    F(NULL, NULL, NULL, "Alice", false, NULL), false },
	{ "sasl-user unauthenticated", { "sasl-user=alice" }, BASE_FACTS,
	    false },
	{ "authenticated yes", { "authenticated=yes" },
	    F(NULL, NULL, NULL, "alice", false, NULL), true },
	{ "authenticated yes, not", { "authenticated=yes" }, BASE_FACTS,
	    false },
	{ "authenticated no", { "authenticated=no" }, BASE_FACTS, true },
	{ "authenticated no, but is", { "authenticated=no" },
	    F(NULL, NULL, NULL, "alice", false, NULL), false },
	{ "trusted yes", { "trusted=yes" },
	    F("127.0.0.1", NULL, NULL, NULL, true, NULL), true },
	{ "trusted yes, not", { "trusted=yes" }, BASE_FACTS, false },
	{ "trusted no", { "trusted=no" }, BASE_FACTS, true },
	{ "rcpt exact", { "rcpt=bob@example.net" },
	    F(NULL, NULL, NULL, NULL, false, "<Bob@Example.NET>"), true },
	{ "rcpt other", { "rcpt=bob@example.net" },
	    F(NULL, NULL, NULL, NULL, false, "<carol@example.net>"), false },
	{ "rcpt at transaction level", { "rcpt=bob@example.net" },
	    BASE_FACTS, false },
	{ "rcpt-domain", { "rcpt-domain=example.net" },
	    F(NULL, NULL, NULL, NULL, false, "<bob@example.net>"), true },
	{ "rcpt-domain subdomain", { "rcpt-domain=.example.net" },
	    F(NULL, NULL, NULL, NULL, false, "<bob@a.b.example.net>"), true },
	{ "rcpt-domain at transaction level", { "rcpt-domain=.example.net" },
	    BASE_FACTS, false },
	{ "AND: both hold", { "client=192.0.2.0/24",
	    "sender-domain=example.com" }, BASE_FACTS, true },
	{ "AND: one fails", { "client=192.0.2.0/24",
	    "sender-domain=example.org" }, BASE_FACTS, false },
	{ "AND: unknown fact fails", { "client=192.0.2.0/24",
	    "helo=mail.example.com" },
	    F("192.0.2.10", NULL, NULL, NULL, false, NULL), false },
	{ "OR: second value", { "sender-domain=example.org",
	    "sender-domain=example.com" }, BASE_FACTS, true },
	{ "OR: no value", { "sender-domain=example.org",
	    "sender-domain=example.net" }, BASE_FACTS, false },
	{ "OR within, AND across", { "client=198.51.100.0/24",
	    "client=192.0.2.0/24", "sender-domain=example.org",
	    "sender-domain=example.com", "authenticated=no" }, BASE_FACTS,
	    true },
	{ "OR within, AND across, one field fails", {
	    "client=198.51.100.0/24", "client=192.0.2.0/24",
	    "sender-domain=example.org", "sender-domain=example.com",
	    "authenticated=yes" }, BASE_FACTS, false },
};

static void
test_match(void **state)
{
	const struct match_case *c = *state;
	struct rspec spec = { .id = 1, .priority = 100, .max_size = 1,
	    .max_rcpts = NO };
	struct ag_policy *p;
	struct ag_eval ev;
	struct fbuf fb;
	bool got;

	memcpy(spec.m, c->m, sizeof(spec.m));
	p = policy_build(c->label, &spec, 1);
	facts_build(c->label, &c->facts, &fb);
	got = ag_rule_matches(ag_policy_rule(p, 0), &fb.f);
	ag_policy_eval(p, &fb.f, &ev);
	ag_policy_free(p);
	if (got != c->want) {
		fail_msg("%s: matched=%d, want %d", c->label, got, c->want);
	}
	if (ev.nmatched != (c->want ? 1u : 0u) ||
	    ev.max_size.value != (c->want ? 1 : NO)) {
		fail_msg("%s: eval disagrees with ag_rule_matches "
		    "(nmatched=%zu)", c->label, ev.nmatched);
	}
}

/* ---- precedence --------------------------------------------------------- */

struct eval_case {
	const char *label;
	struct rspec rules[MAXR];
	struct fspec facts;
	struct ag_setting size, rcpts;	/* value, rule, trial, trial rule */
	size_t nmatched;
};

#define UNSET_S { NO, 0, NO, 0 }
#define TX F("192.0.2.10", "mail.example.com", "a@example.com", NULL, \
	false, NULL)
#define TX_RCPT F("192.0.2.10", "mail.example.com", "a@example.com", \
	NULL, false, "<b@example.net>")

static const struct eval_case eval_cases[] = {
	{ "no rules", { { 0 } }, TX, UNSET_S, UNSET_S, 0 },
	{ "nothing matches", { { 1, 100, false, false, 10, 5,
	    { "sender-domain=example.org" } } }, TX, UNSET_S, UNSET_S, 0 },
	{ "default rule", { { 1, 1000, false, false, 100, 50, { NULL } } },
	    TX, { 100, 1, NO, 0 }, { 50, 1, NO, 0 }, 1 },
	{ "lower priority number first", {
	    { 1, 100, false, false, 10, NO, { NULL } },
	    { 2, 10, false, false, 20, NO, { NULL } } },
	    TX, { 20, 2, NO, 0 }, UNSET_S, 2 },
	{ "same priority: lower id first", {
	    { 7, 50, false, false, 70, NO, { NULL } },
	    { 3, 50, false, false, 30, NO, { NULL } },
	    { 5, 50, false, false, 50, NO, { NULL } } },
	    TX, { 30, 3, NO, 0 }, UNSET_S, 3 },
	{ "per setting: narrow size, default rcpts", {
	    { 1, 1000, false, false, 10, 50, { NULL } },
	    { 2, 10, false, false, 99, NO,
	      { "sender-domain=example.com" } } },
	    TX, { 99, 2, NO, 0 }, { 50, 1, NO, 0 }, 2 },
	{ "per setting: two rules, one setting each", {
	    { 4, 20, false, false, NO, 7, { "client=192.0.2.0/24" } },
	    { 9, 10, false, false, 123, NO, { "helo=.example.com" } } },
	    TX, { 123, 9, NO, 0 }, { 7, 4, NO, 0 }, 2 },
	{ "narrow rule does not match", {
	    { 1, 1000, false, false, 10, 50, { NULL } },
	    { 2, 10, false, false, 99, NO,
	      { "sender-domain=example.org" } } },
	    TX, { 10, 1, NO, 0 }, { 50, 1, NO, 0 }, 1 },
	{ "rule without settings counts, decides nothing", {
	    { 1, 10, false, false, NO, NO, { NULL } },
	    { 2, 20, false, false, 5, NO, { NULL } } },
	    TX, { 5, 2, NO, 0 }, UNSET_S, 2 },
	{ "disabled rule skipped", {
	    { 1, 1000, false, false, 10, NO, { NULL } },
	    { 2, 1, true, false, 99, NO, { NULL } } },
	    TX, { 10, 1, NO, 0 }, UNSET_S, 1 },
	{ "all disabled", { { 1, 1, true, false, 99, 9, { NULL } } },
	    TX, UNSET_S, UNSET_S, 0 },
	{ "dry-run rule is tried, the next rule decides", {
	    { 1, 1000, false, false, 10, 50, { NULL } },
	    { 2, 5, false, true, 1, NO, { "client=192.0.2.10" } } },
	    TX, { 10, 1, 1, 2 }, { 50, 1, NO, 0 }, 2 },
	{ "looser dry-run rule does not lift the limit", {
	    { 1, 1000, false, false, 10, NO, { NULL } },
	    { 2, 5, false, true, 100000, NO, { "client=192.0.2.10" } } },
	    TX, { 10, 1, 100000, 2 }, UNSET_S, 2 },
	{ "dry-run rule behind the deciding rule is not tried", {
	    { 1, 5, false, false, 10, NO, { NULL } },
	    { 2, 1000, false, true, 1, NO, { NULL } } },
	    TX, { 10, 1, NO, 0 }, UNSET_S, 2 },
	{ "rcpt rule skipped at transaction level", {
	    { 1, 1000, false, false, 10, 50, { NULL } },
	    { 2, 1, false, false, 99, 99, { "rcpt-domain=example.net" } } },
	    TX, { 10, 1, NO, 0 }, { 50, 1, NO, 0 }, 1 },
	{ "rcpt rule decides for its recipient", {
	    { 1, 1000, false, false, 10, 50, { NULL } },
	    { 2, 1, false, false, 99, NO, { "rcpt-domain=example.net" } } },
	    TX_RCPT, { 99, 2, NO, 0 }, { 50, 1, NO, 0 }, 2 },
	{ "rcpt rule, other recipient", {
	    { 1, 1000, false, false, 10, 50, { NULL } },
	    { 2, 1, false, false, 99, NO, { "rcpt=c@example.net" } } },
	    TX_RCPT, { 10, 1, NO, 0 }, { 50, 1, NO, 0 }, 1 },
};

static void
check_setting(const char *label, const char *name,
    const struct ag_setting *got, const struct ag_setting *want)
{
	if (got->value != want->value || got->rule_id != want->rule_id ||
	    got->trial != want->trial ||
	    got->trial_rule_id != want->trial_rule_id) {
		fail_msg("%s: %s = %lld (rule %lld, trial %lld rule %lld), "
		    "want %lld (rule %lld, trial %lld rule %lld)", label, name,
		    (long long)got->value, (long long)got->rule_id,
		    (long long)got->trial, (long long)got->trial_rule_id,
		    (long long)want->value, (long long)want->rule_id,
		    (long long)want->trial, (long long)want->trial_rule_id);
	}
}

/* Rules without SPF settings leave every SPF setting unset. */
static void
check_spf_unset(const char *label, const struct ag_eval *ev)
{
	static const struct ag_setting unset = { NO, 0, NO, 0 };
	size_t i;

	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		check_setting(label, spf_names[i], &ev->spf_disp[i], &unset);
	}
	check_setting(label, "spf check", &ev->spf_check, &unset);
}

static void
test_eval(void **state)
{
	const struct eval_case *c = *state;
	struct ag_policy *p;
	struct ag_eval ev;
	struct fbuf fb;

	p = policy_build(c->label, c->rules, MAXR);
	facts_build(c->label, &c->facts, &fb);
	ag_policy_eval(p, &fb.f, &ev);
	ag_policy_free(p);
	check_setting(c->label, "max-size", &ev.max_size, &c->size);
	check_setting(c->label, "max-rcpts", &ev.max_rcpts, &c->rcpts);
	if (ev.nmatched != c->nmatched) {
		fail_msg("%s: nmatched %zu, want %zu", c->label, ev.nmatched,
		    c->nmatched);
	}
	check_spf_unset(c->label, &ev);
}

/* ---- SPF settings ------------------------------------------------------- */

/* One expected SPF setting: NAME is a result or "check". */
struct spf_want {
	const char *name;
	const char *value;	/* NULL: no enforcing rule */
	int64_t rule;
	const char *trial;	/* NULL: no trial */
	int64_t trial_rule;
};

struct spf_case {
	const char *label;
	struct rspec rules[MAXR];
	struct fspec facts;
	struct spf_want want[AG_SPF_NRESULTS + 2]; /* the rest: unset */
};

#define TX_TO(rcpt) F("192.0.2.10", "mail.example.com", "a@example.com", \
	NULL, false, rcpt)
#define DEFAULT_SPF(id, spf) { id, 1000, false, false, NO, NO, { spf } }

static const struct spf_case spf_cases[] = {
	{ "spf: no rule sets it", {
	    { 1, 1000, false, false, 10, 50, { NULL } } }, TX, { { NULL } } },
	{ "spf: one rule, several results", {
	    DEFAULT_SPF(1, "spf:fail=reject,softfail=tag,temperror=tempfail,"
	    "none=accept") }, TX,
	    { { "fail", "reject", 1, NULL, 0 },
	      { "softfail", "tag", 1, NULL, 0 },
	      { "temperror", "tempfail", 1, NULL, 0 },
	      { "none", "accept", 1, NULL, 0 } } },
	{ "spf: every result, and check", {
	    DEFAULT_SPF(1, "spf:none=tag,neutral=tag,pass=accept,fail=reject,"
	    "softfail=tempfail,temperror=tempfail,permerror=reject,"
	    "check=on") }, TX,
	    { { "none", "tag", 1, NULL, 0 }, { "neutral", "tag", 1, NULL, 0 },
	      { "pass", "accept", 1, NULL, 0 },
	      { "fail", "reject", 1, NULL, 0 },
	      { "softfail", "tempfail", 1, NULL, 0 },
	      { "temperror", "tempfail", 1, NULL, 0 },
	      { "permerror", "reject", 1, NULL, 0 },
	      { "check", "on", 1, NULL, 0 } } },
	{ "spf: decided per result", {
	    DEFAULT_SPF(1, "spf:fail=reject,softfail=accept"),
	    { 2, 10, false, false, NO, NO, { "sender-domain=example.com",
	      "spf:softfail=reject" } } }, TX,
	    { { "fail", "reject", 1, NULL, 0 },
	      { "softfail", "reject", 2, NULL, 0 } } },
	{ "spf: accept (0) decides, it is not unset", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 10, false, false, NO, NO, { "client=192.0.2.0/24",
	      "spf:fail=accept" } } }, TX,
	    { { "fail", "accept", 2, NULL, 0 } } },
	{ "spf: same priority, lower id first", {
	    { 7, 50, false, false, NO, NO, { "spf:fail=tag" } },
	    { 3, 50, false, false, NO, NO, { "spf:fail=tempfail" } } }, TX,
	    { { "fail", "tempfail", 3, NULL, 0 } } },
	{ "spf: limits and SPF from different rules", {
	    { 1, 1000, false, false, 10, NO, { "spf:fail=reject" } },
	    { 2, 10, false, false, 99, NO, { NULL } } }, TX,
	    { { "fail", "reject", 1, NULL, 0 } } },
	{ "spf: narrow rule does not match", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 10, false, false, NO, NO, { "sender-domain=example.org",
	      "spf:fail=accept" } } }, TX,
	    { { "fail", "reject", 1, NULL, 0 } } },
	{ "spf: disabled rule skipped", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 10, true, false, NO, NO, { "spf:fail=accept,check=off" } } },
	    TX, { { "fail", "reject", 1, NULL, 0 } } },
	{ "spf: dry-run rule is tried, the next rule decides", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 5, false, true, NO, NO, { "client=192.0.2.10",
	      "spf:fail=accept,softfail=reject" } } }, TX,
	    { { "fail", "reject", 1, "accept", 2 },
	      { "softfail", NULL, 0, "reject", 2 } } },
	{ "spf: first dry-run rule is the trial", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 5, false, true, NO, NO, { "spf:fail=tag" } },
	    { 3, 6, false, true, NO, NO, { "spf:fail=accept" } } }, TX,
	    { { "fail", "reject", 1, "tag", 2 } } },
	{ "spf: dry-run rule behind the deciding rule is not tried", {
	    { 1, 5, false, false, NO, NO, { "spf:fail=reject" } },
	    { 2, 1000, false, true, NO, NO, { "spf:fail=accept" } } }, TX,
	    { { "fail", "reject", 1, NULL, 0 } } },
	{ "spf: check off for a trusted relay", {
	    DEFAULT_SPF(1, "spf:check=on,fail=reject"),
	    { 2, 10, false, false, NO, NO, { "client=192.0.2.0/24",
	      "spf:check=off" } } }, TX,
	    { { "check", "off", 2, NULL, 0 },
	      { "fail", "reject", 1, NULL, 0 } } },
	{ "spf: check off only tried in dry run", {
	    DEFAULT_SPF(1, "spf:check=on"),
	    { 2, 10, false, true, NO, NO, { "client=192.0.2.0/24",
	      "spf:check=off" } } }, TX,
	    { { "check", "on", 1, "off", 2 } } },
	{ "spf: check unset when no rule sets it", {
	    { 2, 10, false, false, NO, NO, { "spf:fail=tag" } } }, TX,
	    { { "fail", "tag", 2, NULL, 0 } } },
	{ "spf: rcpt rule skipped at transaction level", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 10, false, false, NO, NO, { "rcpt=postmaster@example.net",
	      "spf:fail=accept" } } }, TX,
	    { { "fail", "reject", 1, NULL, 0 } } },
	{ "spf: rcpt rule exempts its recipient", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 10, false, false, NO, NO, { "rcpt=postmaster@example.net",
	      "spf:fail=accept" } } }, TX_TO("<Postmaster@Example.NET>"),
	    { { "fail", "accept", 2, NULL, 0 } } },
	{ "spf: rcpt rule, other recipient", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 10, false, false, NO, NO, { "rcpt=postmaster@example.net",
	      "spf:fail=accept" } } }, TX_TO("<bob@example.net>"),
	    { { "fail", "reject", 1, NULL, 0 } } },
};

/* The expected setting for result (or check) index I of C. */
static void
spf_expect(const struct spf_case *c, size_t i, struct ag_setting *want)
{
	const char *name = i < AG_SPF_NRESULTS ? spf_names[i] : "check";
	const struct spf_want *w;

	want->value = want->trial = NO;
	want->rule_id = want->trial_rule_id = 0;
	for (w = c->want; w->name != NULL; w++) {
		if (strcmp(w->name, name) != 0) {
			continue;
		}
		if (w->value != NULL) {
			want->value = spf_value(c->label, i, w->value);
			want->rule_id = w->rule;
		}
		if (w->trial != NULL) {
			want->trial = spf_value(c->label, i, w->trial);
			want->trial_rule_id = w->trial_rule;
		}
	}
}

static void
test_spf_eval(void **state)
{
	const struct spf_case *c = *state;
	struct ag_setting want;
	struct ag_policy *p;
	struct ag_eval ev;
	struct fbuf fb;
	char name[32];
	size_t i;

	for (i = 0; c->want[i].name != NULL; i++) {
		spf_index(c->label, c->want[i].name);	/* a typo fails */
	}
	p = policy_build(c->label, c->rules, MAXR);
	facts_build(c->label, &c->facts, &fb);
	ag_policy_eval(p, &fb.f, &ev);
	ag_policy_free(p);
	for (i = 0; i <= AG_SPF_NRESULTS; i++) {
		spf_expect(c, i, &want);
		snprintf(name, sizeof(name), "spf %s",
		    i < AG_SPF_NRESULTS ? spf_names[i] : "check");
		check_setting(c->label, name, i < AG_SPF_NRESULTS ?
		    &ev.spf_disp[i] : &ev.spf_check, &want);
	}
}

/* ---- does the SPF decision wait for RCPT TO? ---------------------------- */

struct per_rcpt_case {
	const char *label;
	struct rspec rules[MAXR];
	bool want;
};

static const struct per_rcpt_case per_rcpt_cases[] = {
	{ "per-rcpt: no rules", { { 0 } }, false },
	{ "per-rcpt: default rule sets SPF", {
	    DEFAULT_SPF(1, "spf:fail=reject") }, false },
	{ "per-rcpt: sender rule sets SPF", {
	    { 1, 10, false, false, NO, NO, { "sender-domain=example.com",
	      "spf:fail=accept" } } }, false },
	{ "per-rcpt: rcpt rule with a limit, no SPF setting", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 10, false, false, 10, 5, { "rcpt=postmaster@example.net" } } },
	    false },
	{ "per-rcpt: rcpt rule sets a disposition", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 10, false, false, NO, NO, { "rcpt=postmaster@example.net",
	      "spf:fail=accept" } } }, true },
	{ "per-rcpt: rcpt-domain rule sets check", {
	    { 2, 10, false, false, NO, NO, { "rcpt-domain=.example.net",
	      "spf:check=off" } } }, true },
	{ "per-rcpt: rcpt and other conditions", {
	    { 2, 10, false, false, NO, NO, { "client=192.0.2.0/24",
	      "rcpt=abuse@example.net", "spf:permerror=tag" } } }, true },
	{ "per-rcpt: disabled rcpt rule", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 10, true, false, NO, NO, { "rcpt=postmaster@example.net",
	      "spf:fail=accept" } } }, false },
	{ "per-rcpt: dry-run rcpt rule (its trial is per recipient)", {
	    { 2, 10, false, true, NO, NO, { "rcpt=postmaster@example.net",
	      "spf:fail=accept" } } }, true },
	{ "per-rcpt: after several other rules", {
	    DEFAULT_SPF(1, "spf:fail=reject"),
	    { 2, 5, false, false, 10, NO, { "rcpt-domain=example.org" } },
	    { 3, 7, true, false, NO, NO, { "rcpt-domain=example.org",
	      "spf:fail=tag" } },
	    { 4, 900, false, false, NO, NO, { "rcpt=x@example.org",
	      "spf:softfail=reject" } } }, true },
};

static void
test_per_rcpt(void **state)
{
	const struct per_rcpt_case *c = *state;
	struct ag_policy *p;
	bool got;

	p = policy_build(c->label, c->rules, MAXR);
	got = ag_policy_spf_per_rcpt(p);
	ag_policy_free(p);
	if (got != c->want) {
		fail_msg("%s: spf_per_rcpt %d, want %d", c->label, got,
		    c->want);
	}
}

/* ---- dispositions and rule_init ----------------------------------------- */

static void
test_disp_names(void **state)
{
	static const char *const want[] = { "accept", "tag", "tempfail",
		"reject" };
	static const char *const bad[] = { "Accept", "REJECT", "", "drop",
		"rejec", "reject ", "quarantine" };
	enum ag_disp d;
	unsigned i;

	(void)state;
	if (AG_DISP_ACCEPT != 0 || AG_DISP_REJECT != 3) {
		fail_msg("disposition numbers changed (they are stored)");
	}
	for (i = 0; i < 4; i++) {
		if (strcmp(ag_disp_name((enum ag_disp)i), want[i]) != 0) {
			fail_msg("disposition %u: name '%s', want '%s'", i,
			    ag_disp_name((enum ag_disp)i), want[i]);
		}
		if (ag_disp_parse(want[i], &d) != 0 || d != (enum ag_disp)i) {
			fail_msg("disposition '%s' does not parse back",
			    want[i]);
		}
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (ag_disp_parse(bad[i], &d) == 0) {
			fail_msg("bad disposition '%s' parsed", bad[i]);
		}
	}
	if (ag_disp_parse(NULL, &d) == 0) {
		fail_msg("NULL disposition parsed");
	}
	if (strcmp(ag_disp_name((enum ag_disp)4), "?") != 0 ||
	    strcmp(ag_disp_name((enum ag_disp)-1), "?") != 0) {
		fail_msg("out-of-range disposition has a name");
	}
}

/* Is every setting of R unset? */
static bool
rule_unset(const struct ag_rule *r)
{
	size_t i;

	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		if (r->spf_disp[i] != NO) {
			return false;
		}
	}
	return r->max_size == NO && r->max_rcpts == NO && r->spf_check == NO;
}

static void
test_rule_init(void **state)
{
	struct ag_rule r;

	(void)state;
	memset(&r, 0x5a, sizeof(r));
	ag_rule_init(&r);
	if (!rule_unset(&r) || !r.enabled || r.dry_run ||
	    r.priority != AG_PRIORITY_DEFAULT || r.id != 0 || r.nmatch != 0 ||
	    r.match != NULL || r.comment != NULL) {
		fail_msg("ag_rule_init: not an empty enabled rule");
	}
	r.spf_disp[AG_SPF_FAIL] = AG_DISP_REJECT;
	r.spf_check = 0;
	r.comment = strdup("freed");
	r.match = calloc(1, sizeof(*r.match));
	r.match[0].value = strdup("x");
	r.nmatch = 1;
	ag_rule_clear(&r);
	if (!rule_unset(&r) || r.comment != NULL || r.nmatch != 0) {
		fail_msg("ag_rule_clear: SPF settings or contents left");
	}
}

/* Out-of-range SPF settings never get into a snapshot. */
static void
test_spf_out_of_range(void **state)
{
	static const struct {
		const char *label;
		int result;	/* -1: spf_check */
		int64_t value;
	} cases[] = {
		{ "disposition past reject", AG_SPF_FAIL, AG_DISP_REJECT + 1 },
		{ "negative disposition", AG_SPF_NONE, -2 },
		{ "check 2", -1, 2 },
		{ "check -5", -1, -5 },
	};
	struct rspec ok = { 1, 1, false, false, NO, NO, { NULL } };
	struct ag_policy *p;
	struct ag_rule *rules;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rules = calloc(1, sizeof(*rules));
		if (rules == NULL) {
			fail_msg("out of memory");
		}
		rule_build(cases[i].label, &ok, &rules[0]);
		if (cases[i].result < 0) {
			rules[0].spf_check = cases[i].value;
		} else {
			rules[0].spf_disp[cases[i].result] = cases[i].value;
		}
		p = (struct ag_policy *)&p;
		if (ag_policy_new(rules, 1, &p) != AG_INVALID || p != NULL) {
			fail_msg("%s: accepted into a snapshot",
			    cases[i].label);
		}
	}
}

/* ---- the snapshot itself ------------------------------------------------ */

static void
test_snapshot_order(void **state)
{
	static const struct rspec rules[] = {
		{ 4, 100, false, false, 1, NO, { NULL } },
		{ 2, 100, true, false, 1, NO, { NULL } },
		{ 9, 5, false, false, 1, NO, { "helo=Mail.Example.COM" } },
		{ 1, 1000, false, false, 1, NO, { NULL } },
		{ 0 },
	};
	static const int64_t want[] = { 9, 2, 4, 1 };
	struct ag_policy *p;
	const struct ag_rule *r;
	size_t i;

	(void)state;
	p = policy_build("order", rules, 5);
	if (ag_policy_count(p) != 4) {
		fail_msg("order: %zu rules kept, want 4 (disabled kept)",
		    ag_policy_count(p));
	}
	for (i = 0; i < 4; i++) {
		r = ag_policy_rule(p, i);
		if (r == NULL || r->id != want[i]) {
			fail_msg("order: position %zu holds rule %lld, want "
			    "%lld", i, r ? (long long)r->id : -1LL,
			    (long long)want[i]);
		}
	}
	r = ag_policy_rule(p, 0);
	if (strcmp(r->match[0].value, "mail.example.com") != 0) {
		fail_msg("order: value not normalized: '%s'",
		    r->match[0].value);
	}
	if (ag_policy_rule(p, 4) != NULL) {
		fail_msg("order: rule past the end");
	}
	ag_policy_free(p);
}

static void
test_snapshot_edges(void **state)
{
	struct rspec bad = { 1, 1, false, false, 1, NO, { "client=bogus" } };
	struct ag_policy *p = (struct ag_policy *)&p;
	struct ag_rule *rules;
	struct ag_facts f;
	struct ag_eval ev;

	(void)state;
	if (ag_policy_new(NULL, 0, &p) != AG_OK || ag_policy_count(p) != 0) {
		fail_msg("empty policy not built");
	}
	memset(&f, 0, sizeof(f));
	ag_policy_eval(p, &f, &ev);
	if (ev.nmatched != 0 || ev.max_size.value != NO) {
		fail_msg("empty policy matched something");
	}
	ag_policy_free(p);
	ag_policy_free(NULL);
	ag_policy_eval(NULL, &f, &ev);
	if (ev.max_rcpts.value != NO || ag_policy_count(NULL) != 0 ||
	    ag_policy_rule(NULL, 0) != NULL || ag_policy_spf_per_rcpt(NULL) ||
	    ev.spf_check.value != NO || ev.spf_disp[AG_SPF_FAIL].value != NO) {
		fail_msg("NULL policy not handled");
	}
	/* A bad value: refused, and the rules are freed (ASan checks). */
	rules = calloc(1, sizeof(*rules));
	if (rules == NULL) {
		fail_msg("out of memory");
	}
	rule_build("bad", &bad, &rules[0]);
	rules[0].comment = strdup("freed on error");
	p = (struct ag_policy *)&p;
	if (ag_policy_new(rules, 1, &p) != AG_INVALID || p != NULL) {
		fail_msg("bad client value accepted into a snapshot");
	}
	ag_rule_clear(NULL);
}

/* ---- the table of tests ------------------------------------------------ */

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int
main(void)
{
	struct CMUnitTest *t;
	size_t n = 0, i, total;
	int rc;

	total = 7 + NELEM(norm_cases) + NELEM(match_cases) +
	    NELEM(eval_cases) + NELEM(spf_cases) + NELEM(per_rcpt_cases);
	t = calloc(total, sizeof(*t));
	if (t == NULL) {
		return 1;
	}
	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_field_names);
	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_normalize_limits);
	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_snapshot_order);
	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_snapshot_edges);
	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_disp_names);
	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_rule_init);
	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_spf_out_of_range);
	for (i = 0; i < NELEM(norm_cases); i++) {
		t[n++] = (struct CMUnitTest){ norm_cases[i].label,
		    test_normalize, NULL, NULL, (void *)&norm_cases[i] };
	}
	for (i = 0; i < NELEM(match_cases); i++) {
		t[n++] = (struct CMUnitTest){ match_cases[i].label, test_match,
		    NULL, NULL, (void *)&match_cases[i] };
	}
	for (i = 0; i < NELEM(eval_cases); i++) {
		t[n++] = (struct CMUnitTest){ eval_cases[i].label, test_eval,
		    NULL, NULL, (void *)&eval_cases[i] };
	}
	for (i = 0; i < NELEM(spf_cases); i++) {
		t[n++] = (struct CMUnitTest){ spf_cases[i].label,
		    test_spf_eval, NULL, NULL, (void *)&spf_cases[i] };
	}
	for (i = 0; i < NELEM(per_rcpt_cases); i++) {
		t[n++] = (struct CMUnitTest){ per_rcpt_cases[i].label,
		    test_per_rcpt, NULL, NULL, (void *)&per_rcpt_cases[i] };
	}
	rc = _cmocka_run_group_tests("policy", t, n, NULL, NULL);
	free(t);
	return rc;
}
