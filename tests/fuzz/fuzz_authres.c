/*
 * fuzz_authres.c - Authentication-Results: reading the authserv-id of an
 * incoming header (the forged-header removal, lib/authres.c), and
 * writing ours and Received-SPF from values that come from the network.
 *
 * Input: lines.  The first line is an incoming header value, read with
 * ag_authres_parse_id (escapes decoded: it may hold folds).  Every line,
 * decoded, is also a value for the writer: the first is the authserv-id,
 * then each group of five is method, result, reason and one property
 * value, up to the builder's limits; Received-SPF takes its fields from
 * the same lines.
 * Checks: a parsed id is not empty and no longer than asked; what we
 * write is a header value an MTA may take (7-bit, folds only as "\n\t"),
 * and our own header reads back as our authserv-id.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authres.h"
#include "fuzzlib.h"

#define MAXLINES 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Is S an RFC 2045 token (as the writer puts an id bare)? */
static bool
is_token(const char *s)
{
	if (*s == '\0') {
		return false;
	}
	for (; *s; s++) {
		if (*s <= ' ' || *s >= 0x7f || strchr("()<>@,;:\\\"/[]?=", *s)) {
			return false;
		}
	}
	return true;
}

static void
write_ar(char **v, size_t n)
{
	struct ag_authres *ar = ag_authres_new(n > 0 ? v[0] : "mx.example");
	char *hdr, id[256];

	if (ar == NULL) {
		return;
	}
	for (size_t i = 1; i + 4 <= n; i += 5) {
		struct ag_authres_prop p = { "header", "d",
		    i + 4 < n ? v[i + 4] : v[i + 3] };

		(void)ag_authres_add(ar, v[i], v[i + 1], v[i + 2], &p, 1);
		(void)ag_authres_add(ar, "spf", "pass", NULL, &(struct
		    ag_authres_prop){ "smtp", "mailfrom", v[i + 3] }, 1);
	}
	hdr = ag_authres_render(ar);
	if (hdr != NULL) {
		fz_check_header_value("Authentication-Results", hdr);
		/* an id we can write as a token must read back */
		if (n > 0 && is_token(v[0]) && strlen(v[0]) < sizeof(id) &&
		    (ag_authres_parse_id(hdr, id, sizeof(id)) != AG_OK ||
		    strcmp(id, v[0]) != 0)) {
			fz_fail("our own header does not read back as %s: %s",
			    v[0], hdr);
		}
	}
	free(hdr);
	ag_authres_free(ar);
}

static void
write_rspf(char **v, size_t n)
{
	static const char *results[] = { "pass", "fail", "softfail",
	    "neutral", "none", "temperror", "permerror" };
	struct ag_received_spf r = {
		.result = results[n % 7],
		.comment = n > 0 ? v[0] : NULL,
		.client_ip = n > 1 ? v[1] : "192.0.2.1",
		.envelope_from = n > 2 ? v[2] : "",
		.helo = n > 3 ? v[3] : "helo.example",
		.receiver = n > 4 ? v[4] : "mx.example",
		.identity = "mailfrom",
		.mechanism = n > 5 ? v[5] : NULL,
		.problem = n > 6 ? v[6] : NULL,
	};
	char *hdr = ag_received_spf_render(&r);

	if (hdr != NULL) {
		fz_check_header_value("Received-SPF", hdr);
	}
	free(hdr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data, *s;
	char *v[MAXLINES], id[64];
	size_t pos = 0, len, n = 0;
	ag_status st;

	while (n < MAXLINES && (s = fz_line(buf, size, &pos, &len)) != NULL) {
		v[n++] = fz_unescape(s, len, NULL);
	}
	if (n > 0) {
		memset(id, 'x', sizeof(id));
		st = ag_authres_parse_id(v[0], id, sizeof(id));
		if (memchr(id, '\0', sizeof(id)) == NULL) {
			fz_fail("parsed id not terminated");
		}
		if (st == AG_OK) {
			/* any other byte may be in it (obs-qtext allows
			 * controls): it is only ever compared, never shown */
			if (id[0] == '\0') {
				fz_fail("empty id parsed");
			}
		}
	}
	write_ar(v, n);
	write_rspf(v, n);
	for (size_t i = 0; i < n; i++) {
		free(v[i]);
	}
	return 0;
}
