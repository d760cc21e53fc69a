/*
 * t_dmarc.c - DMARC evaluation (lib/dmarc.c) over a real resolver that
 * serves local data: where the policy is found (From domain, then the
 * organizational domain with sp and np), SPF alignment relaxed and
 * strict, pct, and every result (pass, fail, none, temperror,
 * permerror).  DKIM alignment is exercised end to end (tests/e2e), where
 * real signatures exist.  One labelled case per test point.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "dmarc.h"
#include "log.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static struct ag_dns *dns;
static struct ag_dmarc *dmarc;

static const char *const zone[] = {
	"_dmarc.example.com. 300 IN TXT \"v=DMARC1; p=reject\"",
	"_dmarc.strict.example.com. 300 IN TXT "
	    "\"v=DMARC1; p=reject; aspf=s; pct=50\"",
	"_dmarc.example.org. 300 IN TXT \"v=DMARC1; p=quarantine; sp=none\"",
	"www.example.org. 300 IN A 192.0.2.1",
	"_dmarc.example.net. 300 IN TXT "
	    "\"v=DMARC1; p=none; sp=reject; np=quarantine\"",
	"mail.example.net. 300 IN A 192.0.2.2",
	"_dmarc.dup.example.net. 300 IN TXT \"v=DMARC1; p=reject; p=none\"",
	"_dmarc.two.example.net. 300 IN TXT \"v=DMARC1; p=reject\"",
	"_dmarc.two.example.net. 300 IN TXT \"v=DMARC1; p=none\"",
	"_dmarc.v2.example.net. 300 IN TXT \"v=DMARC2; p=reject\"",
	"_dmarc.split.example.net. 300 IN TXT \"v=DMARC1; p=reject; "
	    "rua=mailto:a@example.net,\" \"mailto:b@example.net\"",
	"_dmarc.other.example.net. 300 IN TXT \"v=spf1 -all\"",
};

static int
setup(void **state)
{
	struct ag_dns_opts o = { "127.0.0.1@9", 200 };
	char err[256];
	size_t i;

	(void)state;
	ag_log_open("t_dmarc", LOG_MAIL, 0);
	if (ag_dns_new(&o, &dns, err, sizeof(err)) != AG_OK) {
		fail_msg("resolver: %s", err);
	}
	assert_int_equal(ag_dns_add_local_zone(dns, "example.com.", "static"),
	    AG_OK);
	assert_int_equal(ag_dns_add_local_zone(dns, "example.org.", "static"),
	    AG_OK);
	assert_int_equal(ag_dns_add_local_zone(dns, "example.net.", "static"),
	    AG_OK);
	assert_int_equal(ag_dns_add_local_zone(dns, "example.info.", "static"),
	    AG_OK);
	/* REFUSED: a temporary failure for lib/dns.c */
	assert_int_equal(ag_dns_add_local_zone(dns, "example.edu.", "refuse"),
	    AG_OK);
	for (i = 0; i < NELEM(zone); i++) {
		if (ag_dns_add_local(dns, zone[i]) != AG_OK) {
			fail_msg("local data refused: %s", zone[i]);
		}
	}
	err[0] = '\0';
	if (ag_dmarc_new(dns, NULL, &dmarc, err, sizeof(err)) != AG_OK) {
		fail_msg("dmarc: %s", err);
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	ag_dmarc_free(dmarc);
	ag_dns_free(dns);
	return 0;
}

struct dcase {
	const char *label;
	const char *from;
	enum ag_spf_result spf;
	const char *spf_domain;
	unsigned sample;
	enum ag_dmarc_res result;
	const char *record_domain;	/* "" when no record */
	const char *policy_tag;
	enum ag_dmarc_policy disposition;
	bool sampled_out;
};

static const struct dcase cases[] = {
	{ "pass: SPF aligned, same domain", "example.com", AG_SPF_PASS,
	    "example.com", 0, AG_DMARC_PASS, "example.com", "p",
	    AG_DMARC_P_NONE, false },
	{ "pass: SPF relaxed, subdomain envelope", "example.com", AG_SPF_PASS,
	    "bounce.example.com", 0, AG_DMARC_PASS, "example.com", "p",
	    AG_DMARC_P_NONE, false },
	{ "fail: SPF passed for another domain", "example.com", AG_SPF_PASS,
	    "example.org", 0, AG_DMARC_FAIL, "example.com", "p",
	    AG_DMARC_P_REJECT, false },
	{ "fail: SPF aligned but softfail", "example.com", AG_SPF_SOFTFAIL,
	    "example.com", 0, AG_DMARC_FAIL, "example.com", "p",
	    AG_DMARC_P_REJECT, false },
	{ "fail: no SPF domain", "example.com", AG_SPF_PASS, NULL, 0,
	    AG_DMARC_FAIL, "example.com", "p", AG_DMARC_P_REJECT, false },
	{ "strict: subdomain envelope fails", "strict.example.com",
	    AG_SPF_PASS, "bounce.strict.example.com", 10, AG_DMARC_FAIL,
	    "strict.example.com", "p", AG_DMARC_P_REJECT, false },
	{ "strict: same domain passes", "strict.example.com", AG_SPF_PASS,
	    "strict.example.com", 10, AG_DMARC_PASS, "strict.example.com",
	    "p", AG_DMARC_P_NONE, false },
	{ "pct 50: sample 49 is in", "strict.example.com", AG_SPF_FAIL, NULL,
	    49, AG_DMARC_FAIL, "strict.example.com", "p", AG_DMARC_P_REJECT,
	    false },
	{ "pct 50: sample 50 is out: reject becomes quarantine",
	    "strict.example.com", AG_SPF_FAIL, NULL, 50, AG_DMARC_FAIL,
	    "strict.example.com", "p", AG_DMARC_P_QUARANTINE, true },
	{ "organizational domain: sp applies", "www.example.org",
	    AG_SPF_NONE, NULL, 0, AG_DMARC_FAIL, "example.org", "sp",
	    AG_DMARC_P_NONE, false },
	{ "organizational domain, own record: p", "example.org", AG_SPF_NONE,
	    NULL, 0, AG_DMARC_FAIL, "example.org", "p",
	    AG_DMARC_P_QUARANTINE, false },
	{ "existing subdomain: sp", "mail.example.net", AG_SPF_NONE, NULL, 0,
	    AG_DMARC_FAIL, "example.net", "sp", AG_DMARC_P_REJECT, false },
	{ "non-existent subdomain: np", "nowhere.example.net", AG_SPF_NONE,
	    NULL, 0, AG_DMARC_FAIL, "example.net", "np",
	    AG_DMARC_P_QUARANTINE, false },
	{ "relaxed across the organizational domain", "mail.example.net",
	    AG_SPF_PASS, "example.net", 0, AG_DMARC_PASS, "example.net",
	    "sp", AG_DMARC_P_NONE, false },
	{ "duplicate tags: permerror", "dup.example.net", AG_SPF_NONE, NULL,
	    0, AG_DMARC_PERMERROR, "", "p", AG_DMARC_P_NONE, false },
	{ "two records: none, and no look further", "two.example.net", AG_SPF_NONE, NULL, 0,
	    AG_DMARC_NONE, "", "p", AG_DMARC_P_NONE, false },
	{ "v=DMARC2 at the From domain: the organizational one applies",
	    "v2.example.net", AG_SPF_NONE, NULL, 0, AG_DMARC_FAIL,
	    "example.net", "sp", AG_DMARC_P_REJECT, false },
	{ "rua split over two strings: a valid record", "split.example.net",
	    AG_SPF_NONE, NULL, 0, AG_DMARC_FAIL, "split.example.net", "p",
	    AG_DMARC_P_REJECT, false },
	{ "only an SPF record there: the organizational one applies",
	    "other.example.net", AG_SPF_NONE, NULL, 0, AG_DMARC_FAIL,
	    "example.net", "sp", AG_DMARC_P_REJECT, false },
	{ "no record anywhere: none", "mail.example.info", AG_SPF_PASS,
	    "mail.example.info", 0, AG_DMARC_NONE, "", "p", AG_DMARC_P_NONE,
	    false },
	{ "server failure: temperror", "example.edu", AG_SPF_PASS,
	    "example.edu", 0, AG_DMARC_TEMPERROR, "", "p", AG_DMARC_P_NONE,
	    false },
};

static void
test_case(void **state)
{
	const struct dcase *c = *state;
	struct ag_dmarc_input in;
	struct ag_dmarc_answer a;

	memset(&in, 0, sizeof(in));
	in.from_domain = c->from;
	in.spf_result = c->spf;
	in.spf_domain = c->spf_domain;
	in.sample = c->sample;
	assert_int_equal(ag_dmarc_check(dmarc, &in, &a), AG_OK);
	if (a.result != c->result) {
		fail_msg("%s: result %s, want %s (%s)", c->label,
		    ag_dmarc_res_name(a.result), ag_dmarc_res_name(c->result),
		    a.reason);
	}
	assert_string_equal(a.record_domain, c->record_domain);
	assert_int_equal(a.have_record, c->record_domain[0] != '\0');
	if (a.have_record) {
		assert_string_equal(a.policy_tag, c->policy_tag);
	}
	if (a.result == AG_DMARC_FAIL &&
	    (a.disposition != c->disposition ||
	    a.sampled_out != c->sampled_out)) {
		fail_msg("%s: disposition %s%s, want %s%s", c->label,
		    ag_dmarc_policy_name(a.disposition),
		    a.sampled_out ? " (pct)" : "",
		    ag_dmarc_policy_name(c->disposition),
		    c->sampled_out ? " (pct)" : "");
	}
	assert_string_equal(a.from_domain, c->from);
	assert_true(a.result == AG_DMARC_PASS || a.reason[0] != '\0');
}

static void
test_names(void **state)
{
	char org[256];

	(void)state;
	assert_string_equal(ag_dmarc_res_name(AG_DMARC_PASS), "pass");
	assert_string_equal(ag_dmarc_res_name(AG_DMARC_TEMPERROR), "temperror");
	assert_string_equal(ag_dmarc_res_name((enum ag_dmarc_res)99),
	    "permerror");
	assert_true(ag_dmarc_org_domain(dmarc, "a.b.example.co.uk", org,
	    sizeof(org)));
	assert_string_equal(org, "example.co.uk");
}

int
main(void)
{
	struct CMUnitTest t[NELEM(cases) + 1];
	size_t n = 0, i;

	t[n++] = (struct CMUnitTest)cmocka_unit_test(test_names);
	for (i = 0; i < NELEM(cases); i++) {
		t[n++] = (struct CMUnitTest){ cases[i].label, test_case, NULL,
		    NULL, (void *)&cases[i] };
	}
	return _cmocka_run_group_tests("dmarc", t, n, setup, teardown);
}
