/*
 * t_dkimlen.c - unit tests for lib/dkimlen.c: canonical body lengths
 * (RFC 6376 3.4.3, 3.4.4) against the lengths dkimpy's canonicalization
 * gives for the same bodies, each body fed whole and split at every byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "dkimlen.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
	const char *label, *body;
	unsigned long long simple, relaxed;
} cases[] = {
	{ "empty", "", 2, 0 },
	{ "one empty line", "\r\n", 2, 0 },
	{ "two empty lines", "\r\n\r\n", 2, 0 },
	{ "no final CRLF", "a", 3, 3 },
	{ "one line", "a\r\n", 3, 3 },
	{ "trailing empty lines", "a\r\n\r\n\r\n", 3, 3 },
	{ "white space runs and at the end", "a  b \t\r\n", 8, 5 },
	{ "leading white space", "  a\r\n", 5, 4 },
	{ "a line of white space only", " \t \r\n", 5, 0 },
	{ "white-space lines at the end", "a\r\n \r\n\t\r\n", 9, 3 },
	{ "last line without CRLF", "a\r\nb", 6, 6 },
	{ "empty lines inside", "x\r\n\r\ny\r\n\r\n", 8, 8 },
	{ "tabs and a space-framed word", "a\t\tb\r\n c \r\n", 11, 9 },
	/* not from dkimpy: bare CR and LF are bytes of their line */
	{ "bare LF", "a\nb\r\n", 5, 5 },
	{ "bare CR at the end", "a\r", 4, 4 },
	{ "CR CR LF", "a\r\r\n", 4, 4 },
	/* RFC order (white space at line ends, then empty lines at the end);
	 * dkimpy says 6: it drops empty lines before white space */
	{ "last line of white space without CRLF", "a\r\n   ", 8, 3 },
};

static void
check_len(const char *label, const char *how, const struct ag_dkimlen *l,
    unsigned long long simple, unsigned long long relaxed)
{
	unsigned long long s = ag_dkimlen_get(l, false);
	unsigned long long r = ag_dkimlen_get(l, true);

	if (s != simple || r != relaxed) {
		fail_msg("%s (%s): simple %llu relaxed %llu, want %llu and %llu",
		    label, how, s, r, simple, relaxed);
	}
}

static void
test_lengths(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++) {
		const unsigned char *b = (const unsigned char *)cases[i].body;
		size_t n = strlen(cases[i].body);
		struct ag_dkimlen l;

		memset(&l, 0, sizeof(l));
		ag_dkimlen_add(&l, b, n);
		check_len(cases[i].label, "whole", &l, cases[i].simple,
		    cases[i].relaxed);
		for (size_t cut = 0; cut <= n; cut++) {
			char how[32];

			memset(&l, 0, sizeof(l));
			ag_dkimlen_add(&l, b, cut);
			ag_dkimlen_add(&l, b + cut, n - cut);
			snprintf(how, sizeof(how), "split at %zu", cut);
			check_len(cases[i].label, how, &l, cases[i].simple,
			    cases[i].relaxed);
		}
	}
}

/* The length so far does not change what comes later. */
static void
test_get_is_pure(void **state)
{
	struct ag_dkimlen l;

	(void)state;
	memset(&l, 0, sizeof(l));
	ag_dkimlen_add(&l, (const unsigned char *)"a  b\r", 5);
	check_len("half a line", "before", &l, 7, 6);
	ag_dkimlen_add(&l, (const unsigned char *)"\nc\r\n\r\n", 6);
	check_len("half a line", "after", &l, 9, 8);
	if (l.raw != 11) {
		fail_msg("raw %llu, want 11", l.raw);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_get_is_pure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
