/*
 * fuzz_admin.c - values an administrator gives authgatectl and that the
 * store keeps (rule conditions, signing patterns and canonicalizations,
 * report boundaries), and the escapers network values pass through: into
 * DMARC aggregate reports (XML), SMTP reply texts (smfi_setreply) and log
 * lines.
 *
 * Input: one string (cut at a NUL), given to each parser.  Checks: what
 * a normalizer accepts it leaves unchanged the second time; messages are
 * printable; the XML text has no markup characters, no control bytes
 * and is valid UTF-8; a reply text is printable, bounded and has every
 * '%' doubled; a log value is printable without spaces or quotes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzlib.h"
#include "history.h"
#include "log.h"
#include "policy.h"
#include "signtable.h"
#include "verdict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Is S (LEN bytes) UTF-8 without NUL (sequences well-formed in shape)? */
static bool
utf8_ok(const unsigned char *s, size_t len)
{
	size_t i = 0, n;

	while (i < len) {
		unsigned char c = s[i];

		if (c == 0 || (c & 0xc0) == 0x80 || c >= 0xf8) {
			return false;
		}
		n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 :
		    (c & 0xf0) == 0xe0 ? 2 : 3;
		if (n >= len - i) {
			return false;
		}
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80) {
				return false;
			}
		}
		i += n + 1;
	}
	return true;
}

static void
check_xml(const char *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	if (fp == NULL) {
		abort();
	}
	ag_history_xml_put(fp, s);
	fclose(fp);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' ||
		    c == '\'') {
			fz_fail("XML text holds byte 0x%02x", c);
		}
	}
	if (!utf8_ok((const unsigned char *)buf, len)) {
		fz_fail("XML text is not UTF-8");
	}
	free(buf);
}

static void
check_escapers(const char *s, const char *raw, size_t rawlen)
{
	char reply[AG_REPLY_TEXT_MAX + 1], small[7], esc[256];
	char q[AG_LOG_QUOTE_SIZE];
	size_t n;

	n = ag_reply_sanitize(reply, sizeof(reply), s);
	if (n != strlen(reply) || n > AG_REPLY_TEXT_MAX) {
		fz_fail("reply text length %zu", n);
	}
	fz_check_printable("reply text", reply);
	for (const char *p = reply; (p = strchr(p, '%')) != NULL; p += 2) {
		if (p[1] != '%') {
			fz_fail("a single %% in the reply text");
		}
	}
	(void)ag_reply_sanitize(small, sizeof(small), s);
	fz_check_printable("short reply text", small);
	ag_log_escape(esc, sizeof(esc), s);
	fz_check_printable("log value", esc);
	if (strpbrk(esc, " \"") != NULL) {
		fz_fail("log value with a space or quote: %s", esc);
	}
	ag_log_escape(small, sizeof(small), s);
	fz_check_printable("short log value", small);
	/* the quote takes bytes with NULs in them */
	fz_check_printable("quoted value", ag_log_quote(q, sizeof(q), raw,
	    rawlen));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fz_strndup(data, size), out[512], again[512], err[256];
	bool hs, bs;
	int64_t t;

	for (int f = 0; f < AG_F_COUNT; f++) {
		err[0] = '\0';
		if (ag_match_normalize((enum ag_field)f, s, out, sizeof(out),
		    err, sizeof(err)) != AG_OK) {
			fz_check_printable("condition error", err);
			continue;
		}
		if (ag_match_normalize((enum ag_field)f, out, again,
		    sizeof(again), err, sizeof(err)) != AG_OK ||
		    strcmp(out, again) != 0) {
			fz_fail("%s=%s normalizes to %s, then to %s",
			    ag_field_name((enum ag_field)f), s, out, again);
		}
	}
	if (ag_sign_pattern_normalize(s, out, sizeof(out)) == AG_OK &&
	    (ag_sign_pattern_normalize(out, again, sizeof(again)) != AG_OK ||
	    strcmp(out, again) != 0)) {
		fz_fail("signing pattern %s normalizes to %s, then to %s", s,
		    out, again);
	}
	(void)ag_sign_canon_parse(s, &hs, &bs);
	(void)ag_history_parse_time(s, &t);
	check_xml(s);
	check_escapers(s, (const char *)data, size);
	free(s);
	return 0;
}
