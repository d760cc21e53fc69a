/*
 * fuzz_spf.c - SPF as it runs in the daemon: libspf2 over our DNS layer
 * (lib/spf.c), the strict record check in front of it, the limits across
 * includes, and the records and answers all from the input, so that
 * libspf2's macro expansion (%{l1r+}, %{d0}, ...) and its parser see what
 * our layer lets through.
 *
 * Input: lines.  "ip ADDR", "helo NAME", "from LOCAL@DOMAIN", "identity
 * helo" set the evaluation (defaults: 192.0.2.10, mail.example.com,
 * user@example.com, the MAIL FROM identity); "dns NAME TYPE DATA" lines
 * are the DNS (tests/fuzz/fuzzlib.h); other lines are ignored.
 * Checks: every text of the answer is printable; the result is one of
 * RFC 7208's; the DNS terms and queries stay within the limits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "fuzzlib.h"
#include "spf.h"
#include "spfrecord.h"

/* RFC 7208 4.6.4: 10 DNS terms, each mx or ptr up to 10 more names; our
 * layer adds the record lookups.  Anything past this is a runaway. */
#define FZ_SPF_MAX_QUERIES 250

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct ag_dns *dns;
static struct ag_spf *spf;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct ag_dns_opts o = { "127.0.0.1@9", 1000 };
	char err[256];

	fz_log_setup();
	fz_dns_install();
	if (ag_dns_new(&o, &dns, err, sizeof(err)) != AG_OK ||
	    ag_spf_new(dns, "mx.example.org", &spf, err, sizeof(err)) != AG_OK) {
		fz_fail("setup: %s", err);
	}
	return 0;
}

/* Set *DST to a decoded copy of REST (freeing the old one). */
static void
param(char **dst, const char *rest, size_t len)
{
	free(*dst);
	*dst = fz_unescape(rest, len, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data, *s, *rest;
	char *ip = NULL, *helo = NULL, *from = NULL;
	size_t pos = 0, len, rl;
	enum ag_spf_identity id = AG_SPF_MAILFROM;
	struct ag_spf_answer a;
	struct ag_ip client;

	fz_dns_clear();
	while ((s = fz_line(buf, size, &pos, &len)) != NULL) {
		if (fz_word(s, len, "dns", &rest, &rl)) {
			fz_dns_line(rest, rl);
		} else if (fz_word(s, len, "ip", &rest, &rl)) {
			param(&ip, rest, rl);
		} else if (fz_word(s, len, "helo", &rest, &rl)) {
			param(&helo, rest, rl);
		} else if (fz_word(s, len, "from", &rest, &rl)) {
			param(&from, rest, rl);
		} else if (fz_word(s, len, "identity", &rest, &rl)) {
			id = rl == 4 && memcmp(rest, "helo", 4) == 0 ?
			    AG_SPF_HELO : AG_SPF_MAILFROM;
		}
	}
	if (ag_ip_parse(ip != NULL ? ip : "192.0.2.10", &client) != AG_OK) {
		goto out;
	}
	if (ag_spf_check(spf, id, &client, helo != NULL ? helo :
	    "mail.example.com", from != NULL ? from : "user@example.com",
	    ag_dns_now_ms() + 15000, &a) != AG_OK) {
		goto out;
	}
	if (fz_verbose) {
		fprintf(stderr, "spf: %s (%s) mechanism %s, %u terms, %u void, "
		    "%u queries; exp %s\n", ag_spf_result_name(a.result),
		    a.reason, a.mechanism, a.dns_terms, a.void_lookups,
		    fz_dns_queries(), a.explanation);
	}
	if ((unsigned)a.result >= AG_SPF_NRESULTS) {
		fz_fail("result %d", (int)a.result);
	}
	fz_check_printable("domain", a.domain);
	fz_check_printable("reason", a.reason);
	fz_check_printable("explanation", a.explanation);
	fz_check_printable("mechanism", a.mechanism);
	if (fz_dns_queries() > FZ_SPF_MAX_QUERIES) {
		fz_fail("%u DNS queries for one evaluation", fz_dns_queries());
	}
	if (a.dns_terms > AG_SPF_MAX_DNS_TERMS + 1 && a.result !=
	    AG_SPF_PERMERROR) {
		fz_fail("%u DNS terms, result %s", a.dns_terms,
		    ag_spf_result_name(a.result));
	}
out:
	free(ip);
	free(helo);
	free(from);
	return 0;
}
