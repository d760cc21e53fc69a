/*
 * fuzz_dkim.c - DKIM verification as it runs in the daemon (lib/dkim.c
 * over libopendkim): DKIM-Signature fields as they stream in, key
 * records through our DNS layer (lib/dns.c, libopendkim's query hooks),
 * the body in chunks, the results read out.
 *
 * Input: "dns NAME TYPE DATA" lines (tests/fuzz/fuzzlib.h) and "max N"
 * (signatures evaluated, 1-50), then a line "--", then a message as a
 * file holds it (read by lib/msgfile.c, as the offline mode reads one:
 * one call per header field with folds kept, body chunks).
 * Checks: every signature read is reported at most once, with a known
 * result and printable texts; a pass names its d=; no more key queries
 * than signatures evaluated.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim.h"
#include "dns.h"
#include "fuzzlib.h"
#include "msgfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct ag_dns *dns;
static struct ag_dkim *dkim;

struct run {
	struct ag_dkim_msg *m;
	unsigned nsig;		/* DKIM-Signature fields given */
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct ag_dns_opts o = { "127.0.0.1@9", 1000 };
	char err[256];

	fz_log_setup();
	fz_dns_install();
	if (ag_dns_new(&o, &dns, err, sizeof(err)) != AG_OK ||
	    ag_dkim_new(dns, &dkim, err, sizeof(err)) != AG_OK) {
		fz_fail("setup: %s", err);
	}
	return 0;
}

static int
on_header(void *arg, const char *name, const char *value)
{
	struct run *r = arg;

	size_t len = strlen(name);

	/* white space before the colon is allowed (RFC 5322 4.5.8) */
	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t')) {
		len--;
	}
	r->nsig += len == 14 && strncasecmp(name, "DKIM-Signature", 14) == 0;
	return ag_dkim_header(r->m, name, value) != AG_OK;
}

static int
on_eoh(void *arg)
{
	struct run *r = arg;

	return ag_dkim_eoh(r->m) != AG_OK;
}

static int
on_body(void *arg, const unsigned char *buf, size_t len)
{
	struct run *r = arg;

	return ag_dkim_body(r->m, buf, len) != AG_OK;
}

static void
check_results(const struct run *r, unsigned max)
{
	size_t n = ag_dkim_count(r->m);

	if (n > r->nsig) {
		fz_fail("%zu results for %u signatures", n, r->nsig);
	}
	if (fz_dns_queries() > max) {
		fz_fail("%u key queries, at most %u signatures evaluated",
		    fz_dns_queries(), max);
	}
	for (size_t i = 0; i < n; i++) {
		const struct ag_dkim_result *d = ag_dkim_get(r->m, i);

		if (d == NULL || (unsigned)d->result >= AG_DKIM_NRESULTS) {
			fz_fail("result %zu missing or unknown", i);
		}
		fz_check_printable("d=", d->domain);
		fz_check_printable("i=", d->identity);
		fz_check_printable("s=", d->selector);
		fz_check_printable("a=", d->algorithm);
		fz_check_printable("b=", d->b);
		fz_check_printable("reason", d->reason);
		if (fz_verbose) {
			fprintf(stderr, "dkim %zu: %s d=%s s=%s a=%s bits=%u %s\n",
			    i, ag_dkim_res_name(d->result), d->domain,
			    d->selector, d->algorithm, d->key_bits, d->reason);
		}
		if (d->result == AG_DKIM_PASS &&
		    (d->domain[0] == '\0' || !d->evaluated)) {
			fz_fail("a pass without d= or not evaluated");
		}
	}
	if (ag_dkim_get(r->m, n) != NULL) {
		fz_fail("a result past the count");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data, *s, *rest;
	struct ag_msgfile_cb cb = { on_header, on_eoh, on_body, NULL };
	struct run r = { NULL, 0 };
	size_t pos = 0, len, rl;
	unsigned max = AG_DKIM_MAX_SIGS_DEFAULT;
	char err[128];
	FILE *fp;

	fz_dns_clear();
	while ((s = fz_line(buf, size, &pos, &len)) != NULL) {
		if (len == 2 && memcmp(s, "--", 2) == 0) {
			break;
		}
		if (fz_word(s, len, "dns", &rest, &rl)) {
			fz_dns_line(rest, rl);
		} else if (fz_word(s, len, "max", &rest, &rl) && rl > 0) {
			max = (unsigned)strtoul(rest, NULL, 10);
			max = max < 1 ? 1 : max > 50 ? 50 : max;
		}
	}
	fp = fmemopen((void *)(uintptr_t)(buf + pos), size - pos, "r");
	if (size == pos || fp == NULL) {
		if (fp != NULL) {
			fclose(fp);
		}
		return 0;
	}
	r.m = ag_dkim_msg_new(dkim, "FUZZ", max, ag_dns_now_ms() + 10000);
	if (r.m == NULL) {
		fclose(fp);
		return 0;
	}
	cb.arg = &r;
	if (ag_msgfile_read(fp, &cb, err, sizeof(err)) == AG_OK &&
	    ag_dkim_eom(r.m) == AG_OK) {
		check_results(&r, max);
	}
	ag_dkim_msg_free(r.m);
	fclose(fp);
	return 0;
}
