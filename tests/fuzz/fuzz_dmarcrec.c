/*
 * fuzz_dmarcrec.c - the DMARC record parser (lib/dmarcrec.c) and the
 * organizational domain of a name (lib/orgdomain.c, the Public Suffix
 * List through libpsl).
 *
 * Input: the bytes of one TXT record, joined, in a buffer of exactly that
 * size; also read as several records (split at LF) for the discovery
 * rule, and its first line as a domain name.
 * Checks: the message is printable; an OK record has a policy, pct 0-100
 * and URIs that fit; the organizational domain of a name is the name or
 * one of its parents.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "dmarcrec.h"
#include "fuzzlib.h"
#include "orgdomain.h"

#define MAXRECS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct ag_psl *psl;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	fz_log_setup();
	if (ag_psl_open(NULL, &psl, err, sizeof(err)) != AG_OK) {
		fz_fail("no Public Suffix List: %s", err);
	}
	return 0;
}

static void
check_record(const struct ag_dmarc_record *r)
{
	if (r->pct > 100) {
		fz_fail("pct %u", (unsigned)r->pct);
	}
	if (r->nrua > AG_DMARC_RUA_MAX || r->nruf > AG_DMARC_RUF_MAX) {
		fz_fail("too many URIs");
	}
	for (size_t i = 0; i < r->nrua; i++) {
		if (memchr(r->rua[i], '\0', AG_DMARC_URI_SIZE) == NULL) {
			fz_fail("rua not terminated");
		}
	}
	for (size_t i = 0; i < r->nruf; i++) {
		if (memchr(r->ruf[i], '\0', AG_DMARC_URI_SIZE) == NULL) {
			fz_fail("ruf not terminated");
		}
	}
}

static void
check_org(const char *s)
{
	char dom[AG_ADDR_DOMAIN_MAX + 1], org[AG_ADDR_DOMAIN_MAX + 1];
	size_t dl, ol;

	if (ag_domain_normalize(s, dom, sizeof(dom)) != AG_OK ||
	    !ag_org_domain(psl, dom, org, sizeof(org))) {
		return;
	}
	dl = strlen(dom);
	ol = strlen(org);
	if (ol > dl || strcmp(dom + dl - ol, org) != 0 ||
	    (ol < dl && dom[dl - ol - 1] != '.')) {
		fz_fail("organizational domain of %s is %s", dom, org);
	}
	(void)ag_dmarc_aligned(psl, dom, org, false);
	(void)ag_dmarc_aligned(psl, dom, org, true);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *txt = malloc(size > 0 ? size : 1), err[256], *first;
	const char *recs[MAXRECS];
	size_t lens[MAXRECS], n = 0, pos = 0, len;
	struct ag_dmarc_record r;
	const char *s;

	if (txt == NULL) {
		return 0;
	}
	memcpy(txt, data, size);
	err[0] = '\0';
	if (ag_dmarc_record_parse(txt, size, &r, err, sizeof(err)) ==
	    AG_DMARC_REC_OK) {
		check_record(&r);
	}
	fz_check_printable("record message", err);
	(void)ag_dmarc_record_is_dmarc(txt, size);
	while (n < MAXRECS && (s = fz_line(txt, size, &pos, &len)) != NULL) {
		recs[n] = s;
		lens[n++] = len;
	}
	err[0] = '\0';
	if (ag_dmarc_record_pick(recs, lens, n, &r, err, sizeof(err)) ==
	    AG_DMARC_REC_OK) {
		check_record(&r);
	}
	fz_check_printable("pick message", err);
	if (n > 0) {
		first = fz_strndup((const uint8_t *)recs[0], lens[0]);
		check_org(first);
		free(first);
	}
	free(txt);
	return 0;
}
