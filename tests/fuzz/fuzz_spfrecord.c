/*
 * fuzz_spfrecord.c - the strict SPF record and explanation checks that
 * stand in front of libspf2 (lib/spfrecord.c).
 *
 * Input: the bytes of one TXT record, joined, in a buffer of exactly that
 * size (NUL bytes are data).  Checks: the reason given is printable and
 * bounded; a record that passes is an SPF record (v=spf1) and counts no
 * more DNS terms than it has terms.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzlib.h"
#include "spfrecord.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *rec = malloc(size > 0 ? size : 1), why[128];
	struct ag_spf_record_info info;
	size_t spaces = 0;

	if (rec == NULL) {
		return 0;
	}
	memcpy(rec, data, size);
	why[0] = '\0';
	if (ag_spf_record_check(rec, size, &info, why, sizeof(why)) == AG_OK) {
		if (!ag_spf_record_is_spf(rec, size)) {
			fz_fail("a record that passes is not v=spf1");
		}
		for (size_t i = 0; i < size; i++) {
			spaces += rec[i] == ' ';
		}
		if (info.dns_terms > spaces) {
			fz_fail("%u DNS terms in %zu terms", info.dns_terms,
			    spaces);
		}
	} else {
		fz_check_printable("record check reason", why);
	}
	why[0] = '\0';
	if (ag_spf_explanation_check(rec, size, why, sizeof(why)) != AG_OK) {
		fz_check_printable("explanation check reason", why);
	}
	free(rec);
	return 0;
}
