/*
 * t_verdict.c - unit tests for lib/verdict.c: reply text sanitising,
 * building verdicts, action names and configured failure actions.
 * Table-driven: every case has a label that a failure names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "verdict.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Fail naming LABEL unless GOT equals WANT. */
static void
check_str(const char *label, const char *what, const char *got,
    const char *want)
{
	if (strcmp(got, want) != 0) {
		fail_msg("%s: %s is \"%s\", want \"%s\"", label, what, got, want);
	}
}

/* Fail naming LABEL unless the numbers agree. */
static void
check_size(const char *label, const char *what, size_t got, size_t want)
{
	if (got != want) {
		fail_msg("%s: %s is %zu, want %zu", label, what, got, want);
	}
}

/* Fail naming LABEL if S holds a byte smfi_setreply() must not see. */
static void
check_reply_safe(const char *label, const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f) {
			fail_msg("%s: byte 0x%02x at %zu", label,
			    (unsigned char)s[i], i);
		}
		if (s[i] == '%' && s[++i] != '%') {
			fail_msg("%s: lone '%%' at %zu", label, i - 1);
		}
	}
}

/* Control, 8-bit and '%' bytes, cuts at the buffer size. */
static void
test_reply_sanitize(void **state)
{
	static const struct {
		const char *label, *src;
		size_t dstsz;
		const char *want;
	} cases[] = {
		{ "plain", "Message too big", 64, "Message too big" },
		{ "CRLF becomes spaces", "line1\r\nline2", 64, "line1  line2" },
		{ "tab and bell", "a\tb\x07" "c", 64, "a b c" },
		{ "DEL", "a\x7f" "b", 64, "a b" },
		{ "escape sequence", "\x1b[31mred", 64, "[31mred" },
		{ "percent doubled", "100% sure", 64, "100%% sure" },
		{ "percent alone", "%", 64, "%%" },
		{ "format directives", "%s%d%n", 64, "%%s%%d%%n" },
		{ "8-bit becomes ?", "gr\xc3\xbc\xc3\x9f", 64, "gr????" },
		{ "runs of spaces kept", "a   b", 64, "a   b" },
		{ "outer spaces stripped", "  hi  ", 64, "hi" },
		{ "leading CRLF stripped", "\r\nhi", 64, "hi" },
		{ "only controls", "\r\n\t", 64, "" },
		{ "empty", "", 64, "" },
		{ "NULL", NULL, 64, "" },
		{ "cut to buffer", "abcdefgh", 6, "abcde" },
		{ "%% fits exactly", "abc%d", 6, "abc%%" },
		{ "%% not split", "abc%d", 5, "abc" },
		{ "%% not split at 1", "%", 2, "" },
		{ "cut then trim", "ab   cd", 5, "ab" },
		{ "size 1", "abc", 1, "" },
	};
	char dst[AG_REPLY_TEXT_MAX + 64];
	size_t i, n;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		memset(dst, 'Z', sizeof(dst));
		n = ag_reply_sanitize(dst, cases[i].dstsz, cases[i].src);
		check_str(cases[i].label, "text", dst, cases[i].want);
		check_size(cases[i].label, "length", n, strlen(cases[i].want));
		if (dst[cases[i].dstsz] != 'Z') {
			fail_msg("%s: wrote past the buffer", cases[i].label);
		}
		check_reply_safe(cases[i].label, dst);
	}
	check_size("size 0", "length", ag_reply_sanitize(dst, 0, "abc"), 0);
	check_size("NULL dst", "length", ag_reply_sanitize(NULL, 10, "abc"), 0);
}

/* The AG_REPLY_TEXT_MAX cap, with and without a '%' at the edge. */
static void
test_reply_sanitize_cap(void **state)
{
	static const struct {
		const char *label;
		size_t xs;	/* leading 'x' bytes */
		const char *tail;
		size_t want_len;
		const char *want_end;
	} cases[] = {
		{ "long text capped", 1000, "", AG_REPLY_TEXT_MAX, "xx" },
		{ "exactly the cap", AG_REPLY_TEXT_MAX, "", AG_REPLY_TEXT_MAX,
		    "xx" },
		{ "%% at the edge dropped", AG_REPLY_TEXT_MAX - 1, "%",
		    AG_REPLY_TEXT_MAX - 1, "xx" },
		{ "%% just fits", AG_REPLY_TEXT_MAX - 2, "%", AG_REPLY_TEXT_MAX,
		    "x%%" },
		{ "all percent", 0,
		    "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%"
		    "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%"
		    "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%"
		    "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%"
		    "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%",
		    AG_REPLY_TEXT_MAX, "%%" },
	};
	char src[2048], dst[2048];
	size_t i, n;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		memset(src, 'x', cases[i].xs);
		snprintf(src + cases[i].xs, sizeof(src) - cases[i].xs, "%s",
		    cases[i].tail);
		n = ag_reply_sanitize(dst, sizeof(dst), src);
		check_size(cases[i].label, "length", n, cases[i].want_len);
		check_size(cases[i].label, "strlen", strlen(dst), n);
		if (n < strlen(cases[i].want_end) ||
		    strcmp(dst + n - strlen(cases[i].want_end),
		    cases[i].want_end) != 0) {
			fail_msg("%s: does not end in \"%s\"", cases[i].label,
			    cases[i].want_end);
		}
		check_reply_safe(cases[i].label, dst);
	}
}

/* ag_verdict_set: codes copied bounded, text formatted and sanitised. */
static void
test_verdict_set(void **state)
{
	struct ag_verdict v;
	char big[1200];

	(void)state;
	memset(&v, 0xa5, sizeof(v));
	ag_verdict_set(&v, AG_ACT_REJECT, "552", "5.3.4", "size",
	    "Message size %llu exceeds the limit of %llu bytes",
	    20000000ULL, 10485760ULL);
	if (v.action != AG_ACT_REJECT) {
		fail_msg("size: action %d", v.action);
	}
	check_str("size", "rcode", v.rcode, "552");
	check_str("size", "xcode", v.xcode, "5.3.4");
	check_str("size", "reason", v.reason, "size");
	check_str("size", "text", v.text,
	    "Message size 20000000 exceeds the limit of 10485760 bytes");
	if (v.rule_id != 0 || v.dry_run) {
		fail_msg("size: rule_id/dry_run not reset");
	}

	ag_verdict_set(&v, AG_ACT_TEMPFAIL, "451", "4.7.1", "rate",
	    "Sender %s: %s", "50% off\r\nX-Injected: 1", "try later");
	check_str("network text", "text", v.text,
	    "Sender 50%% off  X-Injected: 1: try later");

	ag_verdict_set(&v, AG_ACT_REJECT, "5520", "5.7.1.12345678", NULL,
	    "%s", "x");
	check_str("long codes", "rcode", v.rcode, "552");
	check_str("long codes", "xcode", v.xcode, "5.7.1.12345");
	if (v.reason != NULL) {
		fail_msg("long codes: reason not NULL");
	}

	ag_verdict_set(&v, AG_ACT_ACCEPT, NULL, NULL, "trusted", NULL);
	check_str("NULL codes", "rcode", v.rcode, "");
	check_str("NULL codes", "xcode", v.xcode, "");
	check_str("NULL fmt", "text", v.text, "");

	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ag_verdict_set(&v, AG_ACT_REJECT, "550", "5.7.1", "spf", "%s", big);
	check_size("long text", "length", strlen(v.text), AG_REPLY_TEXT_MAX);

	ag_verdict_set(NULL, AG_ACT_REJECT, "550", "5.7.1", "x", "y");
}

/* A continue verdict is all zero but for its action. */
static void
test_verdict_continue(void **state)
{
	struct ag_verdict v;

	(void)state;
	memset(&v, 0xa5, sizeof(v));
	ag_verdict_continue(&v);
	if (v.action != AG_ACT_CONTINUE || v.rcode[0] != '\0' ||
	    v.xcode[0] != '\0' || v.text[0] != '\0' || v.rule_id != 0 ||
	    v.reason != NULL || v.dry_run) {
		fail_msg("continue: fields not cleared");
	}
	if (ag_verdict_is_final(&v)) {
		fail_msg("continue: is final");
	}
	ag_verdict_continue(NULL);
}

/* Names, finality and parsing of actions. */
static void
test_actions(void **state)
{
	static const struct {
		const char *label;
		enum ag_action a;
		const char *name;
		bool final;
	} names[] = {
		{ "continue", AG_ACT_CONTINUE, "continue", false },
		{ "accept", AG_ACT_ACCEPT, "accept", true },
		{ "tempfail", AG_ACT_TEMPFAIL, "tempfail", true },
		{ "reject", AG_ACT_REJECT, "reject", true },
		{ "discard", AG_ACT_DISCARD, "discard", true },
		{ "quarantine", AG_ACT_QUARANTINE, "quarantine", true },
		{ "out of range", (enum ag_action)99, "unknown", true },
	};
	static const struct {
		const char *label, *in;
		int want;
		enum ag_action a;
	} parses[] = {
		{ "tempfail", "tempfail", 0, AG_ACT_TEMPFAIL },
		{ "TEMPFAIL", "TEMPFAIL", 0, AG_ACT_TEMPFAIL },
		{ "Accept", "Accept", 0, AG_ACT_ACCEPT },
		{ "reject", "reject", 0, AG_ACT_REJECT },
		{ "discard refused", "discard", -1, AG_ACT_DISCARD },
		{ "continue refused", "continue", -1, AG_ACT_DISCARD },
		{ "trailing space", "tempfail ", -1, AG_ACT_DISCARD },
		{ "prefix", "temp", -1, AG_ACT_DISCARD },
		{ "empty", "", -1, AG_ACT_DISCARD },
		{ "NULL", NULL, -1, AG_ACT_DISCARD },
	};
	struct ag_verdict v;
	enum ag_action a;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(names); i++) {
		check_str(names[i].label, "name", ag_action_name(names[i].a),
		    names[i].name);
		ag_verdict_continue(&v);
		v.action = names[i].a;
		if (ag_verdict_is_final(&v) != names[i].final) {
			fail_msg("%s: final is %d, want %d", names[i].label,
			    !names[i].final, names[i].final);
		}
	}
	if (ag_verdict_is_final(NULL)) {
		fail_msg("NULL verdict: final");
	}
	for (i = 0; i < NELEM(parses); i++) {
		a = AG_ACT_DISCARD;
		if (ag_action_parse(parses[i].in, &a) != parses[i].want) {
			fail_msg("%s: parse did not return %d", parses[i].label,
			    parses[i].want);
		}
		if (a != parses[i].a) {
			fail_msg("%s: action %s, want %s", parses[i].label,
			    ag_action_name(a), ag_action_name(parses[i].a));
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_sanitize),
		cmocka_unit_test(test_reply_sanitize_cap),
		cmocka_unit_test(test_verdict_set),
		cmocka_unit_test(test_verdict_continue),
		cmocka_unit_test(test_actions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
