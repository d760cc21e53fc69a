/*
 * fuzz_fromhdr.c - the RFC5322.From parser for DMARC (lib/fromhdr.c).
 *
 * Input: the bytes of one From header value (folds, NULs and all), in a
 * buffer of exactly that size so that any read past LEN is caught.
 * Checks: OK means a domain that ag_domain_normalize() leaves as it is;
 * any other status leaves both parts empty; the status does not depend
 * on whether the caller wants the parts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "fromhdr.h"
#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size > 0 ? size : 1), norm[AG_ADDR_DOMAIN_MAX + 1];
	struct ag_from f;
	enum ag_from_status st, st2;

	if (buf == NULL) {
		return 0;
	}
	memcpy(buf, data, size);
	st = ag_from_parse(buf, size, &f);
	st2 = ag_from_parse(buf, size, NULL);
	if (st != st2) {
		fz_fail("status %s with OUT, %s without", ag_from_status_name(st),
		    ag_from_status_name(st2));
	}
	if (st == AG_FROM_OK) {
		if (f.domain[0] == '\0' ||
		    ag_domain_normalize(f.domain, norm, sizeof(norm)) != AG_OK ||
		    strcmp(norm, f.domain) != 0) {
			fz_fail("OK with a domain that is not normalized: %s",
			    f.domain);
		}
	} else if (f.domain[0] != '\0' || f.local[0] != '\0') {
		fz_fail("status %s but parts set", ag_from_status_name(st));
	}
	if (strlen(ag_from_status_name(st)) == 0) {
		fz_fail("no status name");
	}
	free(buf);
	return 0;
}
