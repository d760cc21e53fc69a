/*
 * t_orgdomain.c - unit tests for lib/orgdomain.c: loading the Public
 * Suffix List, organizational domains (RFC 7489 3.2) and alignment
 * (RFC 7489 3.1).  Table-driven: every case has a label that a failure
 * names.
 *
 * The cases run against Debian's publicsuffix package (the .dafsa and
 * the .dat, which must agree) and against a small list written here, so
 * that a rule we rely on is visibly the list's and not ours.  Rules used
 * from the real list, all of them years old: co.uk; *.ck with !www.ck;
 * *.kawasaki.jp with !city.kawasaki.jp; 公司.cn (xn--55qx5d.cn); the
 * private-section entries github.io and blogspot.com.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orgdomain.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Fail naming LABEL unless status GOT equals WANT. */
static void
check_status(const char *label, ag_status got, ag_status want,
    const char *err)
{
	if (got != want) {
		fail_msg("%s: status %s, want %s (ERR: %s)", label,
		    ag_status_str(got), ag_status_str(want), err);
	}
}

/* Fail naming LABEL unless ERR holds WHY ("" = ERR must be empty). */
static void
check_err(const char *label, const char *err, const char *why)
{
	if (why[0] == '\0' ? err[0] != '\0' : strstr(err, why) == NULL) {
		fail_msg("%s: ERR \"%s\", want \"%s\"", label, err, why);
	}
}

/* Write TEXT to a new temporary file; its name into PATH. */
static void
temp_file(char *path, size_t pathsz, const char *text)
{
	int fd;
	size_t n = strlen(text);

	snprintf(path, pathsz, "/tmp/t_orgdomain.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0) {
		fail_msg("mkstemp failed");
	}
	if (write(fd, text, n) != (ssize_t)n) {
		fail_msg("write to %s failed", path);
	}
	close(fd);
}

/* The default list: Debian's .dafsa, no warning. */
static void
test_open_default(void **state)
{
	struct ag_psl *p = NULL;
	char err[512];

	(void)state;
	memset(err, 'x', sizeof(err));
	check_status("default", ag_psl_open(NULL, &p, err, sizeof(err)),
	    AG_OK, err);
	check_err("default", err, "");
	assert_non_null(p);
	if (strcmp(ag_psl_source(p), AG_PSL_DEFAULT_DAFSA) != 0) {
		fail_msg("default: source %s", ag_psl_source(p));
	}
	ag_psl_free(p);
	ag_psl_free(NULL);
	if (strcmp(ag_psl_source(NULL), "") != 0) {
		fail_msg("source of NULL not \"\"");
	}
}

/* Named files: both Debian formats load; what is not a list does not. */
static void
test_open_files(void **state)
{
	static const struct {
		const char *label, *file;
		ag_status want;
		const char *why;
	} cases[] = {
		{ "Debian .dafsa", AG_PSL_DEFAULT_DAFSA, AG_OK, "" },
		{ "Debian .dat", AG_PSL_DEFAULT_DAT, AG_OK, "" },
		{ "missing file", "/nonexistent/public_suffix_list.dat",
		    AG_PERMFAIL, "/nonexistent/public_suffix_list.dat: No "
		    "such file or directory" },
		{ "a directory", "/", AG_PERMFAIL,
		    "/: not a public suffix list" },
		{ "/dev/null", "/dev/null", AG_PERMFAIL,
		    "not a public suffix list" },
	};
	struct ag_psl *p;
	char err[512];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		p = (struct ag_psl *)&p;
		memset(err, 'x', sizeof(err));
		check_status(cases[i].label, ag_psl_open(cases[i].file, &p, err,
		    sizeof(err)), cases[i].want, err);
		check_err(cases[i].label, err, cases[i].why);
		if ((cases[i].want == AG_OK) != (p != NULL)) {
			fail_msg("%s: handle %p", cases[i].label, (void *)p);
		}
		if (p != NULL && strcmp(ag_psl_source(p), cases[i].file) != 0) {
			fail_msg("%s: source %s", cases[i].label,
			    ag_psl_source(p));
		}
		ag_psl_free(p);
	}
	check_status("NULL handle", ag_psl_open(NULL, NULL, err, sizeof(err)),
	    AG_INVALID, err);
	check_status("NULL ERR", ag_psl_open("/nonexistent", &p, NULL, 0),
	    AG_PERMFAIL, "");
}

/* Files written here: junk, an empty file, and a small list of our own. */
static void
test_open_custom(void **state)
{
	struct ag_psl *p;
	char path[64], err[512], out[256];
	ag_status st;
	size_t i;
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "a.b.example.test", "b.example.test" },
		{ "example.test", "example.test" },
		{ "x.y.wild.test", "x.y.wild.test" },
		{ "a.www.wild.test", "www.wild.test" },
		{ "a.example.co.uk", "example.co.uk" },
		/* github.io is not in this list: only the "*" rule. */
		{ "foo.github.io", "github.io" },
	};

	(void)state;
	temp_file(path, sizeof(path), "hello world\nthis is not a list\n");
	st = ag_psl_open(path, &p, err, sizeof(err));
	unlink(path);
	check_status("junk file", st, AG_PERMFAIL, err);
	check_err("junk file", err, "not a public suffix list");

	temp_file(path, sizeof(path), "");
	st = ag_psl_open(path, &p, err, sizeof(err));
	unlink(path);
	check_status("empty file", st, AG_PERMFAIL, err);
	check_err("empty file", err, "not a public suffix list");

	temp_file(path, sizeof(path), "// a list of our own\nco.uk\n"
	    "example.test\n*.wild.test\n!www.wild.test\n");
	st = ag_psl_open(path, &p, err, sizeof(err));
	unlink(path);
	check_status("own list", st, AG_OK, err);
	for (i = 0; i < NELEM(cases); i++) {
		if (!ag_org_domain(p, cases[i].in, out, sizeof(out)) ||
		    strcmp(out, cases[i].want) != 0) {
			fail_msg("own list: %s gives \"%s\", want \"%s\"",
			    cases[i].in, out, cases[i].want);
		}
	}
	ag_psl_free(p);
}

struct org_case {
	const char *label, *in;
	bool ok;
	const char *want;
};

/* RFC 7489 3.2 on the real list. */
static const struct org_case org_cases[] = {
	{ "plain", "example.com", true, "example.com" },
	{ "subdomain", "a.b.example.com", true, "example.com" },
	{ "two-label suffix", "example.co.uk", true, "example.co.uk" },
	{ "under a two-label suffix", "a.example.co.uk", true,
	    "example.co.uk" },
	{ "deep under a two-label suffix", "x.y.z.example.co.uk", true,
	    "example.co.uk" },
	{ "co.uk itself", "co.uk", true, "co.uk" },
	{ "com itself", "com", true, "com" },
	{ "uk itself", "uk", true, "uk" },
	{ "wildcard *.ck: suffix itself", "b.ck", true, "b.ck" },
	{ "wildcard *.ck: one more label", "a.b.ck", true, "a.b.ck" },
	{ "wildcard *.ck: deeper", "m.a.b.ck", true, "a.b.ck" },
	{ "exception !www.ck", "www.ck", true, "www.ck" },
	{ "under exception www.ck", "a.www.ck", true, "www.ck" },
	{ "kawasaki.jp itself", "kawasaki.jp", true, "kawasaki.jp" },
	{ "wildcard *.kawasaki.jp", "x.kawasaki.jp", true, "x.kawasaki.jp" },
	{ "under *.kawasaki.jp", "a.x.kawasaki.jp", true,
	    "a.x.kawasaki.jp" },
	{ "exception city.kawasaki.jp", "city.kawasaki.jp", true,
	    "city.kawasaki.jp" },
	{ "under city.kawasaki.jp", "www.city.kawasaki.jp", true,
	    "city.kawasaki.jp" },
	{ "private: github.io user", "foo.github.io", true, "foo.github.io" },
	{ "private: under a github.io user", "a.foo.github.io", true,
	    "foo.github.io" },
	{ "private: github.io itself", "github.io", true, "github.io" },
	{ "private: blogspot", "x.foo.blogspot.com", true,
	    "foo.blogspot.com" },
	{ "A-label suffix", "a.b.xn--55qx5d.cn", true, "b.xn--55qx5d.cn" },
	{ "A-label suffix itself", "xn--55qx5d.cn", true, "xn--55qx5d.cn" },
	{ "A-label TLD", "mail.example.xn--mgbaam7a8h", true,
	    "example.xn--mgbaam7a8h" },
	{ "A-label registered name", "www.xn--bcher-kva.example", true,
	    "xn--bcher-kva.example" },
	{ "U-label suffix", "a.b.\345\205\254\345\217\270.cn", true,
	    "b.\345\205\254\345\217\270.cn" },
	{ "trailing dot", "mail.example.com.", true, "example.com" },
	{ "upper case", "MAIL.Example.COM", true, "example.com" },
	{ "upper case, trailing dot", "A.EXAMPLE.CO.UK.", true,
	    "example.co.uk" },
	{ "unknown TLD", "a.b.example.invalid", true, "example.invalid" },
	{ "single label", "localhost", true, "localhost" },
	{ "underscore label", "_dmarc.example.com", true, "example.com" },
	{ "empty", "", false, "" },
	{ "root only", ".", false, "" },
	{ "leading dot", ".example.com", false, "" },
	{ "empty label", "a..example.com", false, "" },
	{ "two trailing dots", "example.com..", false, "" },
	{ "space", "exa mple.com", false, "" },
	{ "IPv4 address", "192.0.2.1", false, "" },
	{ "address literal", "[192.0.2.1]", false, "" },
	{ "all-digit TLD", "example.123", false, "" },
	{ "digits before a TLD", "123.com", true, "123.com" },
	{ "at sign", "user@example.com", false, "" },
};

/* Run the org_cases against P, naming the list LIST. */
static void
run_org_cases(const struct ag_psl *p, const char *list)
{
	char out[256];
	bool ok;
	size_t i;

	for (i = 0; i < NELEM(org_cases); i++) {
		memset(out, 'x', sizeof(out));
		ok = ag_org_domain(p, org_cases[i].in, out, sizeof(out));
		if (ok != org_cases[i].ok ||
		    strcmp(out, org_cases[i].want) != 0) {
			fail_msg("%s (%s): %s \"%s\", want %s \"%s\"",
			    org_cases[i].label, list, ok ? "true" : "false",
			    out, org_cases[i].ok ? "true" : "false",
			    org_cases[i].want);
		}
	}
}

/* Organizational domains with the .dafsa and the .dat. */
static void
test_org_domain(void **state)
{
	struct ag_psl *p;
	char err[512];

	(void)state;
	check_status("dafsa", ag_psl_open(AG_PSL_DEFAULT_DAFSA, &p, err,
	    sizeof(err)), AG_OK, err);
	run_org_cases(p, "dafsa");
	ag_psl_free(p);
	check_status("dat", ag_psl_open(AG_PSL_DEFAULT_DAT, &p, err,
	    sizeof(err)), AG_OK, err);
	run_org_cases(p, "dat");
	ag_psl_free(p);
}

/* Long names, small buffers, NULL arguments. */
static void
test_org_bounds(void **state)
{
	struct ag_psl *p;
	char err[512], in[400], out[256];
	size_t i;

	(void)state;
	check_status("open", ag_psl_open(NULL, &p, err, sizeof(err)), AG_OK,
	    err);
	/* 300 characters: too long (RFC 1035: 253 without the root dot). */
	memset(in, 'a', 300);
	for (i = 50; i < 300; i += 50) {
		in[i] = '.';
	}
	memcpy(in + 300 - 12, ".example.com", 13);
	if (strlen(in) != 300 || ag_org_domain(p, in, out, sizeof(out)) ||
	    out[0] != '\0') {
		fail_msg("300 chars: accepted");
	}
	/* 253 characters: the longest name; 254: one too many. */
	memset(in, 'a', 253);
	for (i = 63; i < 253; i += 64) {
		in[i] = '.';
	}
	memcpy(in + 253 - 12, ".example.com", 13);
	if (strlen(in) != 253 || !ag_org_domain(p, in, out, sizeof(out)) ||
	    strcmp(out, "example.com") != 0) {
		fail_msg("253 chars: \"%s\"", out);
	}
	memmove(in + 1, in, 254);
	in[0] = 'a';
	if (strlen(in) != 254 || ag_org_domain(p, in, out, sizeof(out))) {
		fail_msg("254 chars: accepted");
	}
	/* A 64-octet label. */
	memset(in, 'a', 64);
	memcpy(in + 64, ".example.com", 13);
	if (ag_org_domain(p, in, out, sizeof(out))) {
		fail_msg("64-octet label: accepted");
	}
	/* OUT must hold the result and its NUL. */
	if (ag_org_domain(p, "www.example.com", out, 11) || out[0] != '\0') {
		fail_msg("11 bytes for example.com: accepted");
	}
	if (!ag_org_domain(p, "www.example.com", out, 12) ||
	    strcmp(out, "example.com") != 0) {
		fail_msg("12 bytes for example.com: \"%s\"", out);
	}
	if (ag_org_domain(p, "example.com", out, 0) ||
	    ag_org_domain(p, "example.com", NULL, 10) ||
	    ag_org_domain(p, NULL, out, sizeof(out)) ||
	    ag_org_domain(NULL, "example.com", out, sizeof(out))) {
		fail_msg("NULL or empty argument accepted");
	}
	ag_psl_free(p);
}

/* RFC 7489 3.1: the strict/relaxed matrix. */
static void
test_aligned(void **state)
{
	static const struct {
		const char *label, *a, *b;
		bool relaxed, strict;
	} cases[] = {
		{ "same name", "example.com", "example.com", true, true },
		{ "case and dot", "EXAMPLE.com.", "example.COM", true, true },
		{ "subdomain of From", "mail.example.com", "example.com", true,
		    false },
		{ "From is the subdomain", "example.com", "bounce.example.com",
		    true, false },
		{ "sibling subdomains", "a.example.com", "b.example.com", true,
		    false },
		{ "other TLD", "example.com", "example.co.uk", false, false },
		{ "other name", "example.com", "example.net", false, false },
		{ "suffix match is not enough", "example.com",
		    "badexample.com", false, false },
		{ "siblings under co.uk", "a.example.co.uk",
		    "b.example.co.uk", true, false },
		{ "public suffix vs its sub", "co.uk", "example.co.uk", false,
		    false },
		{ "sub vs its public suffix", "example.co.uk", "co.uk", false,
		    false },
		{ "TLD vs a name under it", "com", "example.com", false,
		    false },
		{ "two github.io users", "foo.github.io", "bar.github.io",
		    false, false },
		{ "github.io user and its sub", "foo.github.io",
		    "a.foo.github.io", true, false },
		{ "github.io and a user", "github.io", "foo.github.io", false,
		    false },
		{ "wildcard siblings", "a.b.ck", "c.b.ck", false, false },
		{ "under one wildcard name", "x.a.b.ck", "a.b.ck", true,
		    false },
		{ "exception and its sub", "www.ck", "mail.www.ck", true,
		    false },
		{ "single label", "localhost", "localhost", true, true },
		{ "empty", "", "", false, false },
		{ "empty vs name", "example.com", "", false, false },
		{ "IP addresses", "192.0.2.1", "192.0.2.1", false, false },
		{ "NULL", "example.com", NULL, false, false },
	};
	struct ag_psl *p;
	char err[512];
	size_t i;
	bool got;

	(void)state;
	check_status("open", ag_psl_open(NULL, &p, err, sizeof(err)), AG_OK,
	    err);
	for (i = 0; i < NELEM(cases); i++) {
		got = ag_dmarc_aligned(p, cases[i].a, cases[i].b, false);
		if (got != cases[i].relaxed) {
			fail_msg("%s: relaxed %d, want %d", cases[i].label, got,
			    cases[i].relaxed);
		}
		got = ag_dmarc_aligned(p, cases[i].a, cases[i].b, true);
		if (got != cases[i].strict) {
			fail_msg("%s: strict %d, want %d", cases[i].label, got,
			    cases[i].strict);
		}
	}
	if (ag_dmarc_aligned(NULL, "a.example.com", "example.com", false)) {
		fail_msg("relaxed without a list: aligned");
	}
	if (!ag_dmarc_aligned(NULL, "example.com", "EXAMPLE.COM", true)) {
		fail_msg("strict without a list: not aligned");
	}
	ag_psl_free(p);
}

#define THREADS 4
#define THREAD_ROUNDS 2000

/* One thread: every org case, many times, on the shared handle. */
static void *
lookup_thread(void *arg)
{
	const struct ag_psl *p = arg;
	char out[256];
	size_t r, i;

	for (r = 0; r < THREAD_ROUNDS; r++) {
		for (i = 0; i < NELEM(org_cases); i++) {
			if (ag_org_domain(p, org_cases[i].in, out,
			    sizeof(out)) != org_cases[i].ok ||
			    strcmp(out, org_cases[i].want) != 0) {
				return (void *)org_cases[i].label;
			}
		}
	}
	return NULL;
}

/* Lookups in one handle from several threads at once agree. */
static void
test_threads(void **state)
{
	pthread_t t[THREADS];
	struct ag_psl *p;
	char err[512];
	void *res;
	size_t i;

	(void)state;
	check_status("open", ag_psl_open(NULL, &p, err, sizeof(err)), AG_OK,
	    err);
	for (i = 0; i < THREADS; i++) {
		if (pthread_create(&t[i], NULL, lookup_thread, p) != 0) {
			fail_msg("pthread_create failed");
		}
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(t[i], &res);
		if (res != NULL) {
			fail_msg("thread %zu: wrong answer for %s", i,
			    (const char *)res);
		}
	}
	ag_psl_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_default),
		cmocka_unit_test(test_open_files),
		cmocka_unit_test(test_open_custom),
		cmocka_unit_test(test_org_domain),
		cmocka_unit_test(test_org_bounds),
		cmocka_unit_test(test_aligned),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
