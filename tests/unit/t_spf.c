/*
 * t_spf.c - lib/spf.c over the resolver's local data: identities, the
 * override of libspf2's answers by our DNS layer (bad records, limits,
 * deadline), and texts that are safe to show.  The full RFC 7208 suite
 * runs in tests/spf/conformance.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dns.h"
#include "log.h"
#include "spf.h"

static struct ag_dns *dns;
static struct ag_spf *spf;

/* Zone data for every case. */
static const char *const zone[] = {
	"pass.test. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"",
	"fail.test. 300 IN TXT \"v=spf1 -all\"",
	"soft.test. 300 IN TXT \"v=spf1 ~all\"",
	"neutral.test. 300 IN TXT \"v=spf1 ?all\"",
	"bare.test. 300 IN TXT \"v=spf1\"",
	"nospf.test. 300 IN TXT \"just some text\"",
	"two.test. 300 IN TXT \"v=spf1 -all\"",
	"two.test. 300 IN TXT \"v=spf1 +all\"",
	"syntax.test. 300 IN TXT \"v=spf1 ip4:192.0.2.0/33 -all\"",
	"macro.test. 300 IN TXT \"v=spf1 exists:%{l0r}.%{d} -all\"",
	"loop.test. 300 IN TXT \"v=spf1 include:loop.test -all\"",
	"void.test. 300 IN TXT \"v=spf1 a:n1.void.test a:n2.void.test "
	    "a:n3.void.test -all\"",
	"many.test. 300 IN TXT \"v=spf1 a:h1.many.test a:h2.many.test "
	    "a:h3.many.test a:h4.many.test a:h5.many.test a:h6.many.test "
	    "a:h7.many.test a:h8.many.test a:h9.many.test a:h10.many.test "
	    "a:h11.many.test -all\"",
	"exp.test. 300 IN TXT \"v=spf1 -all exp=why.exp.test\"",
	"why.exp.test. 300 IN TXT \"You are not %{i}, go away\"",
	/* with its spaces as "%_" over libspf2's 511 bytes (tests/fuzz) */
	"big.exp.test. 300 IN TXT \"v=spf1 -all exp=why.big.exp.test\"",
	"why.big.exp.test. 300 IN TXT \""
	    "o%{d}' %{i} is}o%{d}'%{d}'%{d}} %{d}'A%{d}'AA%{d}'%{d}'%"
	    "{d}A%{d}'%{d}'A%{d}'%{d}'A%{i} %{d}A%{d}A%{d}'A%{d}'%{d}"
	    "'A%{d}'%{d}'A%{d}'A%{d}'A%{i}'%{i} %{d}A%{d}A%{d}'A%{d}'"
	    "%{d}'A%{d}'%{d}'A%{d}A%{d}'A%{i} %{d}'%{d}'A%{d}'A%{i} %"
	    "{d}'A%{d}'A" "\"",
	"helo.test. 300 IN TXT \"v=spf1 a -all\"",
	"helo.test. 300 IN A 192.0.2.25",
	"v6.test. 300 IN TXT \"v=spf1 ip6:2001:db8::/32 -all\"",
	"xn--bcher-kva.test. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"",
	"h1.many.test. 300 IN A 192.0.2.1", "h2.many.test. 300 IN A 192.0.2.1",
	"h3.many.test. 300 IN A 192.0.2.1", "h4.many.test. 300 IN A 192.0.2.1",
	"h5.many.test. 300 IN A 192.0.2.1", "h6.many.test. 300 IN A 192.0.2.1",
	"h7.many.test. 300 IN A 192.0.2.1", "h8.many.test. 300 IN A 192.0.2.1",
	"h9.many.test. 300 IN A 192.0.2.1", "h10.many.test. 300 IN A 192.0.2.1",
	"h11.many.test. 300 IN A 192.0.2.1",
};

static int
setup(void **state)
{
	struct ag_dns_opts o = { "127.0.0.1@9", 300 };
	char err[256];
	size_t i;

	(void)state;
	ag_log_open("t_spf", LOG_MAIL, 0);
	if (ag_dns_new(&o, &dns, err, sizeof(err)) != AG_OK) {
		fail_msg("resolver: %s", err);
	}
	assert_int_equal(ag_dns_add_local_zone(dns, "test.", "static"), AG_OK);
	for (i = 0; i < sizeof(zone) / sizeof(zone[0]); i++) {
		if (ag_dns_add_local(dns, zone[i]) != AG_OK) {
			fail_msg("local data: %s", zone[i]);
		}
	}
	if (ag_spf_new(dns, "mx.test", &spf, err, sizeof(err)) != AG_OK) {
		fail_msg("spf: %s", err);
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	ag_spf_free(spf);
	ag_dns_free(dns);
	return 0;
}

static void
test_results(void **state)
{
	static const struct {
		const char *label, *ip, *helo, *sender;
		enum ag_spf_identity id;
		enum ag_spf_result want;
		const char *reason_has;	/* substring of the reason, or NULL */
	} cases[] = {
		{ "pass", "192.0.2.10", "h.test", "a@pass.test", AG_SPF_MAILFROM,
		  AG_SPF_PASS, NULL },
		{ "fail outside the range", "198.51.100.1", "h.test", "a@pass.test",
		  AG_SPF_MAILFROM, AG_SPF_FAIL, NULL },
		{ "fail", "192.0.2.10", "h.test", "a@fail.test", AG_SPF_MAILFROM,
		  AG_SPF_FAIL, NULL },
		{ "softfail", "192.0.2.10", "h.test", "a@soft.test",
		  AG_SPF_MAILFROM, AG_SPF_SOFTFAIL, NULL },
		{ "neutral", "192.0.2.10", "h.test", "a@neutral.test",
		  AG_SPF_MAILFROM, AG_SPF_NEUTRAL, NULL },
		{ "bare v=spf1 is neutral", "192.0.2.10", "h.test", "a@bare.test",
		  AG_SPF_MAILFROM, AG_SPF_NEUTRAL, NULL },
		{ "no SPF record", "192.0.2.10", "h.test", "a@nospf.test",
		  AG_SPF_MAILFROM, AG_SPF_NONE, NULL },
		{ "no such domain", "192.0.2.10", "h.test", "a@nx.test",
		  AG_SPF_MAILFROM, AG_SPF_NONE, NULL },
		{ "two records", "192.0.2.10", "h.test", "a@two.test",
		  AG_SPF_MAILFROM, AG_SPF_PERMERROR, "more than one" },
		{ "syntax error", "192.0.2.10", "h.test", "a@syntax.test",
		  AG_SPF_MAILFROM, AG_SPF_PERMERROR, "bad SPF record" },
		{ "macro attack kept from libspf2", "192.0.2.10", "h.test",
		  "a@macro.test", AG_SPF_MAILFROM, AG_SPF_PERMERROR, NULL },
		{ "include loop", "192.0.2.10", "h.test", "a@loop.test",
		  AG_SPF_MAILFROM, AG_SPF_PERMERROR, NULL },
		{ "three void lookups", "198.51.100.1", "h.test", "a@void.test",
		  AG_SPF_MAILFROM, AG_SPF_PERMERROR, "void" },
		{ "eleven DNS terms", "198.51.100.1", "h.test", "a@many.test",
		  AG_SPF_MAILFROM, AG_SPF_PERMERROR, "DNS-querying" },
		{ "HELO identity", "192.0.2.25", "helo.test", "postmaster@helo.test",
		  AG_SPF_HELO, AG_SPF_PASS, NULL },
		{ "HELO identity fails", "192.0.2.26", "helo.test",
		  "postmaster@helo.test", AG_SPF_HELO, AG_SPF_FAIL, NULL },
		{ "IPv6 client", "2001:db8::1", "h.test", "a@v6.test",
		  AG_SPF_MAILFROM, AG_SPF_PASS, NULL },
		{ "IPv4-mapped client is IPv4", "::ffff:192.0.2.10", "h.test",
		  "a@pass.test", AG_SPF_MAILFROM, AG_SPF_PASS, NULL },
		{ "not a domain", "192.0.2.10", "h.test", "a@[192.0.2.1]",
		  AG_SPF_MAILFROM, AG_SPF_NONE, NULL },
		{ "single label", "192.0.2.10", "h.test", "a@localhost",
		  AG_SPF_MAILFROM, AG_SPF_NONE, NULL },
		/* SMTPUTF8: the A-label's record (RFC 8616 4; tests/fuzz) */
		{ "U-label sender domain", "192.0.2.10", "h.test",
		  "j\xc3\xb6rg@b\xc3\xbc" "cher.test", AG_SPF_MAILFROM,
		  AG_SPF_PASS, NULL },
		{ "U-label sender domain fails", "198.51.100.1", "h.test",
		  "a@B\xc3\x9c" "CHER.test", AG_SPF_MAILFROM, AG_SPF_FAIL, NULL },
		/* U+00BC maps to "1", U+2044, "4": no A-label, no domain */
		{ "U-label with no A-label", "192.0.2.10", "h.test",
		  "a@b\xc2\xbc" "cher.test", AG_SPF_MAILFROM, AG_SPF_NONE,
		  "no valid domain" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ag_spf_answer a;
		struct ag_ip ip;

		assert_int_equal(ag_ip_parse(cases[i].ip, &ip), AG_OK);
		assert_int_equal(ag_spf_check(spf, cases[i].id, &ip, cases[i].helo,
		    cases[i].sender, ag_dns_now_ms() + 5000, &a), AG_OK);
		if (a.result != cases[i].want) {
			fail_msg("%s: got %s, want %s (%s)", cases[i].label,
			    ag_spf_result_name(a.result),
			    ag_spf_result_name(cases[i].want), a.reason);
		}
		for (const char *p = a.domain; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
				fail_msg("%s: domain \"%s\" is not printable ASCII",
				    cases[i].label, a.domain);
			}
		}
		if (cases[i].reason_has != NULL &&
		    strstr(a.reason, cases[i].reason_has) == NULL) {
			fail_msg("%s: reason \"%s\" lacks \"%s\"", cases[i].label,
			    a.reason, cases[i].reason_has);
		}
	}
}

static void
test_explanation_is_safe(void **state)
{
	struct ag_spf_answer a;
	struct ag_ip ip;

	(void)state;
	assert_int_equal(ag_ip_parse("192.0.2.77", &ip), AG_OK);
	assert_int_equal(ag_spf_check(spf, AG_SPF_MAILFROM, &ip, "h.test",
	    "a@exp.test", ag_dns_now_ms() + 5000, &a), AG_OK);
	assert_int_equal(a.result, AG_SPF_FAIL);
	if (strstr(a.explanation, "You are not 192.0.2.77, go away") == NULL) {
		fail_msg("explanation not expanded: \"%s\"", a.explanation);
	}
	for (const char *p = a.explanation; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
			fail_msg("unsafe byte 0x%02x in explanation", *p);
		}
	}
	/* an explanation too big for libspf2 as it gets it: none, no crash */
	assert_int_equal(ag_spf_check(spf, AG_SPF_MAILFROM, &ip, "h.test",
	    "a@big.exp.test", ag_dns_now_ms() + 5000, &a), AG_OK);
	assert_int_equal(a.result, AG_SPF_FAIL);
	assert_string_equal(a.explanation, "");
}

static void
test_deadline(void **state)
{
	struct ag_spf_answer a;
	struct ag_ip ip;

	(void)state;
	assert_int_equal(ag_ip_parse("192.0.2.10", &ip), AG_OK);
	/* a deadline already past: temperror, without a lookup */
	assert_int_equal(ag_spf_check(spf, AG_SPF_MAILFROM, &ip, "h.test",
	    "a@pass.test", ag_dns_now_ms() - 1, &a), AG_OK);
	assert_int_equal(a.result, AG_SPF_TEMPERROR);
	/* a name outside the local zone goes to the dead server: temperror */
	assert_int_equal(ag_spf_check(spf, AG_SPF_MAILFROM, &ip, "h.test",
	    "a@elsewhere.example", ag_dns_now_ms() + 2000, &a), AG_OK);
	if (a.result != AG_SPF_TEMPERROR) {
		fail_msg("dead server: got %s (%s)", ag_spf_result_name(a.result),
		    a.reason);
	}
	if (a.elapsed_ms > 1500) {
		fail_msg("dead server: took %u ms with DNSTimeout 300",
		    a.elapsed_ms);
	}
}

static void
test_names(void **state)
{
	enum ag_spf_result r;

	(void)state;
	for (int i = 0; i < AG_SPF_NRESULTS; i++) {
		assert_int_equal(ag_spf_result_parse(
		    ag_spf_result_name((enum ag_spf_result)i), &r), 0);
		assert_int_equal((int)r, i);
	}
	assert_int_equal(ag_spf_result_parse("PASS", &r), 0);
	assert_int_equal(ag_spf_result_parse("bogus", &r), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_results),
		cmocka_unit_test(test_explanation_is_safe),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
