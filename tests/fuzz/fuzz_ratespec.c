/*
 * fuzz_ratespec.c - the text of a rate limit, "MEASURE:LIMIT/WINDOW[:KEY]"
 * (lib/ratespec.c), as authgatectl and the store give it.
 *
 * Input: one string (cut at a NUL).  Checks: a spec that parses is within
 * the documented bounds, and its canonical text parses to the same spec
 * and is its own canonical text; an error message is printable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzlib.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fz_strndup(data, size), err[256], c1[AG_RATE_SPEC_MAX];
	char c2[AG_RATE_SPEC_MAX], w[32];
	struct ag_rate_spec a, b;

	err[0] = '\0';
	if (ag_rate_spec_parse(s, &a, err, sizeof(err)) != AG_OK) {
		fz_check_printable("rate spec error", err);
		free(s);
		return 0;
	}
	if (a.limit > AG_RATE_LIMIT_MAX ||
	    a.window_ms < AG_RATE_WINDOW_MIN_MS ||
	    a.window_ms > AG_RATE_WINDOW_MAX_MS_SPEC) {
		fz_fail("spec out of bounds: limit %llu window %llu ms",
		    (unsigned long long)a.limit,
		    (unsigned long long)a.window_ms);
	}
	if (a.key == AG_RK_CLIENT_IP && (a.prefix4 < AG_RATE_PREFIX4_MIN ||
	    a.prefix4 > 32 || a.prefix6 < AG_RATE_PREFIX6_MIN ||
	    a.prefix6 > 128)) {
		fz_fail("prefixes /%u /%u", a.prefix4, a.prefix6);
	}
	ag_rate_spec_format(&a, c1, sizeof(c1));
	if (ag_rate_spec_parse(c1, &b, err, sizeof(err)) != AG_OK) {
		fz_fail("canonical text %s does not parse: %s", c1, err);
	}
	ag_rate_spec_format(&b, c2, sizeof(c2));
	if (strcmp(c1, c2) != 0 || a.measure != b.measure ||
	    a.limit != b.limit || a.window_ms != b.window_ms ||
	    a.key != b.key || (a.key == AG_RK_CLIENT_IP &&
	    (a.prefix4 != b.prefix4 || a.prefix6 != b.prefix6))) {
		fz_fail("%s: canonical %s, again %s", s, c1, c2);
	}
	ag_window_format(a.window_ms, w, sizeof(w));
	fz_check_printable("window", w);
	free(s);
	return 0;
}
