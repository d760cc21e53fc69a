/*
 * t_ratespec.c - rate limits in the rule model: the text of a limit
 * (lib/ratespec.c: parse, canonical form, every refusal) and which rules'
 * limits apply to a transaction (ag_policy_rates: layering, exemptions,
 * dry run, recipient conditions).  One labelled case per test point.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

struct spec_case {
	const char *label;
	const char *text;
	const char *canon;	/* NULL: must be refused */
	const char *errpart;	/* a part of the refusal message */
};

static const struct spec_case spec_cases[] = {
	{ "pool", "messages:100/1h", "messages:100/1h", NULL },
	{ "client-ip default prefixes", "messages:100/1h:client-ip",
	    "messages:100/1h:client-ip/32/64", NULL },
	{ "client-ip /24", "messages:5/60:client-ip/24",
	    "messages:5/1m:client-ip/24/64", NULL },
	{ "client-ip /24/48", "recipients:500/1d:client-ip/24/48",
	    "recipients:500/1d:client-ip/24/48", NULL },
	{ "sender", "messages:100/1h:sender", "messages:100/1h:sender", NULL },
	{ "sender-domain bytes M", "bytes:50M/1d:sender-domain",
	    "bytes:50M/1d:sender-domain", NULL },
	{ "sasl-user", "recipients:1000/1d:sasl-user",
	    "recipients:1000/1d:sasl-user", NULL },
	{ "rcpt-domain", "messages:10/10m:rcpt-domain",
	    "messages:10/10m:rcpt-domain", NULL },
	{ "helo", "messages:10/2w:helo", "messages:10/2w:helo", NULL },
	{ "seconds plain", "messages:1/90", "messages:1/90s", NULL },
	{ "limit 0", "messages:0/1h", "messages:0/1h", NULL },
	{ "limit max", "messages:1000000000000000/1s",
	    "messages:1000000000000000/1s", NULL },
	{ "window max", "messages:1/366d", "messages:1/366d", NULL },
	{ "bytes k", "bytes:512k/1h", "bytes:512k/1h", NULL },
	{ "bytes G", "bytes:1G/1d", "bytes:1G/1d", NULL },
	{ "bytes plain", "bytes:1000/1d", "bytes:1000/1d", NULL },
	{ "bytes 2048", "bytes:2048/1d", "bytes:2k/1d", NULL },
	{ "no colon", "messages", NULL, "MEASURE:LIMIT/WINDOW" },
	{ "empty", "", NULL, "MEASURE:LIMIT/WINDOW" },
	{ "bad measure", "mails:1/1h", NULL, "messages, recipients or bytes" },
	{ "no window", "messages:1", NULL, "LIMIT/WINDOW" },
	{ "limit junk", "messages:1x/1h", NULL, "the limit" },
	{ "limit suffix on messages", "messages:10k/1h", NULL, "the limit" },
	{ "limit negative", "messages:-1/1h", NULL, "the limit" },
	{ "limit too big", "messages:1000000000000001/1h", NULL, "the limit" },
	{ "limit overflow", "messages:99999999999999999999999/1h", NULL,
	    "the limit" },
	{ "bytes overflow", "bytes:1000000000000000G/1h", NULL, "the limit" },
	{ "window 0", "messages:1/0s", NULL, "the window" },
	{ "window under 1s", "messages:1/0", NULL, "the window" },
	{ "window unit", "messages:1/1y", NULL, "the window" },
	{ "window too long", "messages:1/367d", NULL, "the window" },
	{ "window two units", "messages:1/1hh", NULL, "the window" },
	{ "window empty", "messages:1/", NULL, "the window" },
	{ "key unknown", "messages:1/1h:recipient", NULL, "the key" },
	{ "key empty", "messages:1/1h:", NULL, "the key" },
	{ "prefix too short", "messages:1/1h:client-ip/8", NULL, "client-ip" },
	{ "prefix v4 too long", "messages:1/1h:client-ip/33", NULL,
	    "client-ip" },
	{ "prefix v6 too short", "messages:1/1h:client-ip/24/16", NULL,
	    "client-ip" },
	{ "prefix v6 too long", "messages:1/1h:client-ip/24/129", NULL,
	    "client-ip" },
	{ "prefix junk", "messages:1/1h:client-ipx", NULL, "client-ip" },
	{ "too long", "messages:1/1h:client-ip/24/64/64/64/64/64/64/64/64/64/"
	    "64/64/64/64/64/64/64/64/64/64/64/64/64/64/64", NULL, "too long" },
	/* the text is quoted in the message, never raw (tests/fuzz) */
	{ "control bytes quoted", "\nmessages\x01", NULL,
	    "rate '\\x0amessages\\x01'" },
};

/* A limit parses to its canonical text, which parses to the same. */
static void
test_spec(void **state)
{
	const struct spec_case *c = *state;
	struct ag_rate_spec sp, back;
	char buf[AG_RATE_SPEC_MAX], err[256] = "";
	ag_status st;

	st = ag_rate_spec_parse(c->text, &sp, err, sizeof(err));
	if (c->canon == NULL) {
		if (st != AG_INVALID || strstr(err, c->errpart) == NULL) {
			fail_msg("%s: '%s' not refused as expected: %s",
			    c->label, c->text, err);
		}
		return;
	}
	if (st != AG_OK) {
		fail_msg("%s: '%s' refused: %s", c->label, c->text, err);
	}
	ag_rate_spec_format(&sp, buf, sizeof(buf));
	assert_string_equal(buf, c->canon);
	assert_int_equal(ag_rate_spec_parse(buf, &back, err, sizeof(err)),
	    AG_OK);
	assert_memory_equal(&sp, &back, sizeof(sp));
}

/* Names and window text at their edges. */
static void
test_names(void **state)
{
	char buf[32];

	(void)state;
	assert_string_equal(ag_rate_measure_name(AG_RM_BYTES), "bytes");
	assert_string_equal(ag_rate_measure_name((enum ag_rate_measure)9), "?");
	assert_string_equal(ag_rate_key_name(AG_RK_HELO), "helo");
	assert_string_equal(ag_rate_key_name((enum ag_rate_key)99), "?");
	assert_string_equal(ag_window_format(1500, buf, sizeof(buf)), "1500ms");
	assert_string_equal(ag_window_format(0, buf, sizeof(buf)), "0ms");
	assert_string_equal(ag_window_format(7 * 86400000ULL, buf,
	    sizeof(buf)), "1w");
	assert_string_equal(ag_window_format(90 * 60000ULL, buf, sizeof(buf)),
	    "90m");
}

/* ---- which rules' limits apply ---------------------------------------- */

/* Rule I of a test policy: its id is I + 1. */
struct rdef {
	int priority;
	enum ag_field field;	/* AG_F_COUNT: no condition */
	const char *value;
	bool limited;		/* carries a limit */
	bool exempt;
	bool dry_run;
	bool enabled;
};

static const struct rdef rdefs[] = {
	/* id 1 */ { 100, AG_F_COUNT, NULL, true, false, false, true },
	/* id 2 */ { 50, AG_F_SENDER_DOMAIN, "corp.example", true, false, false,
	    true },
	/* id 3 */ { 10, AG_F_SENDER, "boss@corp.example", false, true, false,
	    true },
	/* id 4 */ { 10, AG_F_SENDER, "vip@corp.example", true, true, false,
	    true },
	/* id 5 */ { 10, AG_F_SENDER, "trial@corp.example", false, true, true,
	    true },
	/* id 6 */ { 20, AG_F_RCPT_DOMAIN, "partner.example", true, false,
	    false, true },
	/* id 7 */ { 5, AG_F_SENDER, "off@corp.example", true, true, false,
	    false },
	/* id 8: tag only, so it does not exempt */
	/* id 8 */ { 10, AG_F_SENDER, "tag@corp.example", true, true, false,
	    true },
};

static struct ag_policy *
make_policy(void)
{
	struct ag_rule *rules = calloc(NELEM(rdefs), sizeof(*rules));
	struct ag_policy *p = NULL;
	char err[128];
	size_t i;

	assert_non_null(rules);
	for (i = 0; i < NELEM(rdefs); i++) {
		struct ag_rule *r = &rules[i];

		ag_rule_init(r);
		r->id = (int64_t)i + 1;
		r->priority = rdefs[i].priority;
		r->exempt = rdefs[i].exempt;
		r->dry_run = rdefs[i].dry_run;
		r->enabled = rdefs[i].enabled;
		if (i == 7) {
			r->on_limit = AG_DISP_TAG;
		}
		if (rdefs[i].limited) {
			assert_int_equal(ag_rate_spec_parse("messages:1/1h",
			    &r->rate[0], err, sizeof(err)), AG_OK);
			r->nrate = 1;
		}
		if (rdefs[i].field != AG_F_COUNT) {
			r->match = calloc(1, sizeof(*r->match));
			assert_non_null(r->match);
			r->match[0].field = rdefs[i].field;
			r->match[0].value = strdup(rdefs[i].value);
			assert_non_null(r->match[0].value);
			r->nmatch = 1;
		}
	}
	assert_int_equal(ag_policy_new(rules, NELEM(rdefs), &p), AG_OK);
	return p;
}

struct apply_case {
	const char *label;
	const char *sender;	/* local@domain */
	const char *rcpt;	/* NULL: transaction level */
	const char *want;	/* ids in order, e.g. "2 1" */
};

static const struct apply_case apply_cases[] = {
	{ "default only", "a@other.example", NULL, "1" },
	{ "domain layered on default", "a@corp.example", NULL, "2 1" },
	{ "exempt without limits", "boss@corp.example", NULL, "" },
	{ "exempt keeps its own", "vip@corp.example", NULL, "4" },
	{ "dry-run exempt does not loosen", "trial@corp.example", NULL,
	    "2 1" },
	{ "disabled exempt ignored", "off@corp.example", NULL, "2 1" },
	{ "tag-only exempt does not loosen", "tag@corp.example", NULL,
	    "8 2 1" },
	{ "rcpt rule skipped without rcpt", "a@corp.example", NULL, "2 1" },
	{ "rcpt rule with its rcpt", "a@corp.example", "x@partner.example",
	    "6 2 1" },
	{ "rcpt rule, other rcpt", "a@corp.example", "x@else.example",
	    "2 1" },
	{ "exempt before rcpt rule", "boss@corp.example",
	    "x@partner.example", "" },
};

static void
test_apply(void **state)
{
	const struct apply_case *c = *state;
	const struct ag_rule *out[8];
	struct ag_mailaddr sender, rcpt;
	struct ag_facts f;
	struct ag_policy *p = make_policy();
	char got[64] = "";
	size_t n, i, len = 0;

	assert_int_equal(ag_mailaddr_parse(c->sender, &sender), AG_OK);
	memset(&f, 0, sizeof(f));
	f.sender = &sender;
	if (c->rcpt != NULL) {
		assert_int_equal(ag_mailaddr_parse(c->rcpt, &rcpt), AG_OK);
		f.rcpt = &rcpt;
	}
	n = ag_policy_rates(p, &f, out, NELEM(out));
	for (i = 0; i < n && i < NELEM(out); i++) {
		len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%lld",
		    i ? " " : "", (long long)out[i]->id);
	}
	if (strcmp(got, c->want) != 0) {
		fail_msg("%s: got \"%s\", want \"%s\"", c->label, got, c->want);
	}
	/* a short OUT still counts them all */
	assert_int_equal(ag_policy_rates(p, &f, out, 0), n);
	assert_null(ag_policy_find(p, 99));
	assert_int_equal(ag_policy_find(p, 4)->id, 4);
	assert_int_equal(ag_policy_rates(NULL, &f, out, NELEM(out)), 0);
	ag_policy_free(p);
}

int
main(void)
{
	struct CMUnitTest t[NELEM(spec_cases) + NELEM(apply_cases) + 1];
	size_t n = 0, i;

	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_names);
	for (i = 0; i < NELEM(spec_cases); i++) {
		t[n++] = (struct CMUnitTest){ spec_cases[i].label, test_spec,
		    NULL, NULL, (void *)&spec_cases[i] };
	}
	for (i = 0; i < NELEM(apply_cases); i++) {
		t[n++] = (struct CMUnitTest){ apply_cases[i].label, test_apply,
		    NULL, NULL, (void *)&apply_cases[i] };
	}
	return _cmocka_run_group_tests("ratespec", t, n, NULL, NULL);
}
