/*
 * t_authres.c - unit tests for lib/authres.c: Authentication-Results and
 * Received-SPF values against golden files, hostile values from the
 * network (quotes, backslashes, controls, 8-bit, 1 KB, "@", ""), argument
 * checks and limits, folding, and allocation failure; and reading the
 * authserv-id of incoming headers (ag_authres_parse_id): a table of CFWS,
 * quoting and hostile cases, our own headers read back, and values up to
 * 1 MB timed (their times go to stderr as "# parse_id" lines).
 *
 * Every rendered Authentication-Results value is also written to a
 * temporary directory and, as the last test, parsed by the real
 * python3-authres (a test dependency, run with /usr/bin/python3), which
 * must give back the authserv-id, methods, results, reasons and property
 * values.  python3-authres 1.2.0 silently drops a quoted property value
 * that is not the last of its result (its pvalue look-ahead wants ";" or
 * the end), so for such a header it may return the others only, and each
 * such property is also checked in a header of its own.  It also parses
 * the authserv-id as a dot-atom only, so quoted authserv-ids are checked
 * here in C.  Received-SPF values go through chk_spf_parse(), a checker of
 * RFC 7208 9.1's grammar (with erratum 5436) that decodes what it reads.
 *
 * Allocation failure: this program replaces malloc, calloc and realloc
 * with wrappers that pass to the next definition (libc or the sanitizer)
 * and can be told to fail the Nth call.
 *
 * Needs AG_SRCDIR (set by `make check`) for the golden files under
 * tests/unit/authres/; temporary files go to TMPDIR or /tmp.  A golden
 * mismatch writes what was rendered to $TMPDIR/t_authres.NAME.got.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "authres.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

#define AR_FIELD "Authentication-Results"
#define SPF_FIELD "Received-SPF"
#define AR_WIDTH (sizeof(AR_FIELD ": ") - 1)
#define SPF_WIDTH (sizeof(SPF_FIELD ": ") - 1)

#define PYTHON "/usr/bin/python3"

/* ---- allocation failure ---------------------------------------------- */

/*
 * The wrappers run before the sanitizers are up (ld.so allocates while
 * AddressSanitizer starts), so they must not be instrumented.
 */
#define NO_SANITIZE __attribute__((no_sanitize("address", "undefined")))

static long alloc_countdown = -1;	/* calls until one fails; -1 never */
static bool alloc_resolving;
static void *(*next_malloc)(size_t);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);

/* Find the allocator this program's wrappers stand in front of. */
NO_SANITIZE static bool
alloc_resolve(void)
{
	if (next_malloc != NULL && next_calloc != NULL &&
	    next_realloc != NULL) {
		return true;
	}
	if (alloc_resolving) {
		return false;	/* dlsym allocating: let it fail */
	}
	alloc_resolving = true;
	next_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
	next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
	next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	alloc_resolving = false;
	return next_malloc != NULL && next_calloc != NULL &&
	    next_realloc != NULL;
}

/* True when this call is the one that should fail. */
NO_SANITIZE static bool
alloc_fails(void)
{
	if (alloc_countdown < 0) {
		return false;
	}
	if (alloc_countdown == 0) {
		alloc_countdown = -1;
		return true;
	}
	alloc_countdown--;
	return false;
}

/* malloc that fails when alloc_countdown runs out. */
NO_SANITIZE void *
malloc(size_t n)
{
	if (!alloc_resolve() || alloc_fails()) {
		return NULL;
	}
	return next_malloc(n);
}

/* calloc that fails when alloc_countdown runs out. */
NO_SANITIZE void *
calloc(size_t n, size_t size)
{
	if (!alloc_resolve() || alloc_fails()) {
		return NULL;
	}
	return next_calloc(n, size);
}

/* realloc that fails when alloc_countdown runs out. */
NO_SANITIZE void *
realloc(void *p, size_t n)
{
	if (!alloc_resolve() || alloc_fails()) {
		return NULL;
	}
	return next_realloc(p, n);
}

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[1024];	/* the python step's input */
static unsigned nunits;		/* headers written there */

/* S with controls and 8-bit bytes as \n, \t, \xHH, for failure messages. */
static const char *
vis(const char *s)
{
	static char bufs[4][4096];
	static unsigned next;
	char *buf = bufs[next++ % NELEM(bufs)];
	size_t n = 0;

	for (; *s != '\0' && n < sizeof(bufs[0]) - 8; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\n') {
			n += (size_t)sprintf(buf + n, "\\n");
		} else if (c == '\t') {
			n += (size_t)sprintf(buf + n, "\\t");
		} else if (c < 0x20 || c >= 0x7f) {
			n += (size_t)sprintf(buf + n, "\\x%02x", c);
		} else {
			buf[n++] = (char)c;
		}
	}
	buf[n] = '\0';
	return buf;
}

/* Fail naming LABEL unless GOT equals WANT. */
static void
check_str(const char *label, const char *what, const char *got,
    const char *want)
{
	if (got == NULL || strcmp(got, want) != 0) {
		fail_msg("%s: %s is \"%s\", want \"%s\"", label, what,
		    got != NULL ? vis(got) : "(null)", vis(want));
	}
}

/* Fail naming LABEL unless status GOT equals WANT. */
static void
check_status(const char *label, ag_status got, ag_status want)
{
	if (got != want) {
		fail_msg("%s: status %s, want %s", label, ag_status_str(got),
		    ag_status_str(want));
	}
}

/* A new string of N copies of UNIT, then TAIL. */
static char *
repeat(const char *unit, size_t n, const char *tail)
{
	size_t ulen = strlen(unit), i;
	char *s = malloc(ulen * n + strlen(tail) + 1);

	assert_non_null(s);
	for (i = 0; i < n; i++) {
		memcpy(s + i * ulen, unit, ulen);
	}
	strcpy(s + ulen * n, tail);
	return s;
}

/* Read all of PATH into a new string; NULL if it cannot be read. */
static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	long n;

	if (fp == NULL) {
		return NULL;
	}
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		fail_msg("cannot read %s", path);
	}
	fclose(fp);
	return buf;
}

/* Compare FIELD: VALUE with tests/unit/authres/NAME.out. */
static void
check_golden(const char *label, const char *name, const char *field,
    const char *value)
{
	const char *src = getenv("AG_SRCDIR"), *tmp = getenv("TMPDIR");
	char path[PATH_MAX], gotpath[PATH_MAX];
	char *want, *got;
	size_t len = strlen(field) + strlen(value) + 4;
	FILE *fp;

	if (src == NULL || *src == '\0') {
		fail_msg("AG_SRCDIR is not set (run through make check)");
	}
	snprintf(path, sizeof(path), "%s/tests/unit/authres/%s.out", src, name);
	got = malloc(len);
	assert_non_null(got);
	snprintf(got, len, "%s: %s\n", field, value);
	want = slurp(path);
	if (want == NULL || strcmp(want, got) != 0) {
		snprintf(gotpath, sizeof(gotpath), "%s/t_authres.%s.got",
		    tmp != NULL && *tmp != '\0' ? tmp : "/tmp", name);
		fp = fopen(gotpath, "w");
		if (fp != NULL) {
			fputs(got, fp);
			fclose(fp);
		}
		fail_msg("%s: rendering differs from %s (%s); got \"%s\", "
		    "written to %s", label, path,
		    want == NULL ? strerror(errno) : "differs", vis(got),
		    gotpath);
	}
	free(want);
	free(got);
}

/* ---- folding ------------------------------------------------------------ */

struct t_word {
	size_t start, len, end_col;
	bool folded;		/* a fold, not a space, comes before it */
};

/* Only printable ASCII, and a tab only as a fold's indent. */
static void
check_bytes(const char *label, const char *v)
{
	size_t i;

	for (i = 0; v[i] != '\0'; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '\n' && v[i + 1] != '\t') {
			fail_msg("%s: line break not followed by a tab at %zu "
			    "in \"%s\"", label, i, vis(v));
		}
		if (c == '\t' && (i == 0 || v[i - 1] != '\n')) {
			fail_msg("%s: tab outside a fold at %zu in \"%s\"",
			    label, i, vis(v));
		}
		if ((c < 0x20 || c >= 0x7f) && c != '\n' && c != '\t') {
			fail_msg("%s: byte 0x%02x at %zu in \"%s\"", label, c,
			    i, vis(v));
		}
	}
}

/* Scan one word from V + *I (outside quoted-strings and comments). */
static void
scan_word(const char *label, const char *v, size_t *i, bool *quote,
    int *depth)
{
	bool esc = false;

	for (; v[*i] != '\0'; (*i)++) {
		char c = v[*i];

		if (esc) {
			esc = false;
		} else if (c == '\\' && (*quote || *depth > 0)) {
			esc = true;
		} else if (c == '"' && *depth == 0) {
			*quote = !*quote;
		} else if (!*quote && c == '(') {
			(*depth)++;
		} else if (!*quote && c == ')') {
			if (--*depth < 0) {
				fail_msg("%s: unbalanced ')' in \"%s\"", label,
				    vis(v));
			}
		} else if (!*quote && (c == ' ' || c == '\n')) {
			break;
		}
	}
	if (esc) {
		fail_msg("%s: value ends in a backslash: \"%s\"", label,
		    vis(v));
	}
}

/* Split V into words with the column each ends at; returns the count. */
static size_t
split_words(const char *label, const char *v, size_t width, struct t_word *w)
{
	size_t i = 0, n = 0, col = width;
	bool quote = false, folded = false;
	int depth = 0;

	check_bytes(label, v);
	while (v[i] != '\0' || n == 0) {
		w[n].start = i;
		w[n].folded = folded;
		scan_word(label, v, &i, &quote, &depth);
		w[n].len = i - w[n].start;
		if (w[n].len == 0) {
			fail_msg("%s: empty word at %zu in \"%s\"", label, i,
			    vis(v));
		}
		col += w[n].len;
		w[n++].end_col = col;
		folded = v[i] == '\n';
		if (v[i] == ' ') {
			col++;
		} else if (folded) {
			col = 1;
		}
		if (v[i] != '\0') {
			i += folded ? 2 : 1;
			if (v[i] == '\0') {
				fail_msg("%s: trailing space in \"%s\"", label,
				    vis(v));
			}
		}
	}
	if (quote || depth != 0) {
		fail_msg("%s: unterminated quote or comment: \"%s\"", label,
		    vis(v));
	}
	return n;
}

/*
 * Fail unless V, after a field name WIDTH wide, keeps its lines within
 * AG_HEADER_FOLD_AT wherever a fold could have done it, folds nowhere
 * needlessly and (AR) never leaves a method apart from its first property.
 */
static void
check_folding(const char *label, const char *v, size_t width, bool ar)
{
	struct t_word *w = calloc(strlen(v) / 2 + 2, sizeof(*w));
	size_t n, k;

	assert_non_null(w);
	n = split_words(label, v, width, w);
	for (k = 1; k < n; k++) {
		const char *prev_end = v + w[k - 1].start + w[k - 1].len - 1;
		bool method = ar && *prev_end == ';';
		bool keep = method && k + 1 < n &&
		    v[w[k].start + w[k].len - 1] != ';';
		size_t need = w[k - 1].end_col + 1 + w[k].len;
		size_t need_keep = need + (keep ? 1 + w[k + 1].len : 0);

		if (!w[k].folded && w[k].end_col > AG_HEADER_FOLD_AT) {
			fail_msg("%s: line passes %d columns at word %zu where "
			    "it could fold: \"%s\"", label, AG_HEADER_FOLD_AT,
			    k, vis(v));
		}
		if (w[k].folded && need_keep <= AG_HEADER_FOLD_AT) {
			fail_msg("%s: needless fold before word %zu: \"%s\"",
			    label, k, vis(v));
		}
		if (!w[k].folded && keep && w[k + 1].folded) {
			fail_msg("%s: method apart from its first property "
			    "at word %zu: \"%s\"", label, k, vis(v));
		}
	}
	free(w);
}

/* ---- Authentication-Results cases ------------------------------------- */

struct t_prop {
	const char *ptype, *property, *value;
	const char *want;	/* value after unquoting; NULL: VALUE */
};

struct t_res {
	const char *method, *result, *reason;
	const char *want_reason;	/* after unquoting; NULL: REASON */
	size_t nprops;
	struct t_prop props[AG_AUTHRES_MAX_PROPS];
};

/* Build and render a header of NRES results; every add must succeed. */
static char *
render_res(const char *label, const char *id, const struct t_res *res,
    size_t nres)
{
	struct ag_authres_prop props[AG_AUTHRES_MAX_PROPS];
	struct ag_authres *ar = ag_authres_new(id);
	size_t i, j;
	char *v;

	assert_non_null(ar);
	for (i = 0; i < nres; i++) {
		for (j = 0; j < res[i].nprops; j++) {
			props[j].ptype = res[i].props[j].ptype;
			props[j].property = res[i].props[j].property;
			props[j].value = res[i].props[j].value;
		}
		check_status(label, ag_authres_add(ar, res[i].method,
		    res[i].result, res[i].reason, props, res[i].nprops), AG_OK);
	}
	v = ag_authres_render(ar);
	if (v == NULL) {
		fail_msg("%s: render gave NULL", label);
	}
	ag_authres_free(ar);
	return v;
}

/* Whether P's value is rendered as a quoted-string. */
static bool
prop_is_quoted(const struct t_prop *p)
{
	struct t_res one = { "m", "r", NULL, NULL, 1, { *p } };
	char *v = render_res("quoted?", "x", &one, 1), needle[256];
	const char *at;
	bool quoted;

	snprintf(needle, sizeof(needle), "%s.%s=", p->ptype, p->property);
	at = strstr(v, needle);
	assert_non_null(at);
	quoted = at[strlen(needle)] == '"';
	free(v);
	return quoted;
}

/* Write " x" and S in hex: the unit files' field format. */
static void
put_hex(FILE *fp, const char *s)
{
	fputc(' ', fp);
	fputc('x', fp);
	for (; *s != '\0'; s++) {
		fprintf(fp, "%02x", (unsigned char)*s);
	}
}

static void write_unit(const char *label, const char *value, const char *id,
    const struct t_res *res, size_t nres);

/* Give each quoted property that is not last a header of its own. */
static void
write_alone_units(const char *label, const char *id, const struct t_res *r)
{
	char alone[512];
	size_t j;

	for (j = 0; j + 1 < r->nprops; j++) {
		struct t_res one = { r->method, r->result, NULL, NULL, 1,
			{ r->props[j] } };
		char *v;

		if (!prop_is_quoted(&r->props[j])) {
			continue;
		}
		snprintf(alone, sizeof(alone), "%s (%s.%s alone)", label,
		    r->props[j].ptype, r->props[j].property);
		v = render_res(alone, id, &one, 1);
		write_unit(alone, v, id, &one, 1);
		free(v);
	}
}

/* Write the header VALUE and what it must parse into, for the python step. */
static void
write_unit(const char *label, const char *value, const char *id,
    const struct t_res *res, size_t nres)
{
	char path[PATH_MAX];
	size_t i, j;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/u%05u", tmpdir, nunits);
	fp = fopen(path, "w");
	if (fp == NULL) {
		fail_msg("%s: cannot write %s: %s", label, path,
		    strerror(errno));
	}
	nunits++;
	fputs("label", fp);
	put_hex(fp, label);
	fputs("\nheader", fp);
	put_hex(fp, value);
	fputs("\nid", fp);
	put_hex(fp, id);
	for (i = 0; i < nres; i++) {
		const struct t_res *r = &res[i];
		const char *reason = r->want_reason != NULL ? r->want_reason :
		    r->reason;

		fputs("\nresult", fp);
		put_hex(fp, r->method);
		put_hex(fp, r->result);
		if (reason != NULL && *reason != '\0') {
			put_hex(fp, reason);
		} else {
			fputs(" -", fp);
		}
		for (j = 0; j < r->nprops; j++) {
			const struct t_prop *p = &r->props[j];

			fputs("\nprop", fp);
			put_hex(fp, p->ptype);
			put_hex(fp, p->property);
			put_hex(fp, p->want != NULL ? p->want : p->value);
			fputs(prop_is_quoted(p) ? " q" : " b", fp);
		}
	}
	fputc('\n', fp);
	if (fclose(fp) != 0) {
		fail_msg("%s: cannot write %s", label, path);
	}
	for (i = 0; i < nres; i++) {
		write_alone_units(label, id, &res[i]);
	}
}

/* Render, check folding and size, and queue for the python step. */
static char *
render_case(const char *label, const char *id, const struct t_res *res,
    size_t nres)
{
	char *v = render_res(label, id, res, nres);

	check_folding(label, v, AR_WIDTH, true);
	if (strlen(v) > AG_AUTHRES_HEADER_MAX) {
		fail_msg("%s: %zu bytes, more than %d", label, strlen(v),
		    AG_AUTHRES_HEADER_MAX);
	}
	write_unit(label, v, id, res, nres);
	return v;
}

/* ---- Authentication-Results: golden files ------------------------------ */

static const struct t_res g_spf_pass[] = {
	{ "spf", "pass", NULL, NULL, 2, {
		{ "smtp", "mailfrom", "user@example.com", NULL },
		{ "smtp", "helo", "mail.example.com", NULL } } },
};

static const struct t_res g_spf_fail_reason[] = {
	{ "spf", "fail", "192.0.2.99 is not allowed by example.com's SPF "
	    "record", NULL, 2, {
		{ "smtp", "mailfrom", "user@example.com", NULL },
		{ "smtp", "helo", "mail.example.com", NULL } } },
};

static const struct t_res g_several[] = {
	{ "spf", "pass", NULL, NULL, 2, {
		{ "smtp", "mailfrom", "newsletter@example.com", NULL },
		{ "smtp", "helo", "out1.mail.example.com", NULL } } },
	{ "dkim", "pass", NULL, NULL, 5, {
		{ "header", "d", "example.com", NULL },
		{ "header", "i", "@example.com", NULL },
		{ "header", "s", "sel2024", NULL },
		{ "header", "a", "rsa-sha256", NULL },
		{ "header", "b", "AbC/dE+f", NULL } } },
	{ "dkim", "fail", "signature did not verify", NULL, 2, {
		{ "header", "d", "example.net", NULL },
		{ "header", "s", "s1", NULL } } },
	{ "dmarc", "pass", NULL, NULL, 2, {
		{ "header", "from", "example.com", NULL },
		{ "policy", "dmarc", "reject", NULL } } },
	{ "auth", "pass", NULL, NULL, 1, {
		{ "smtp", "auth", "alice", NULL } } },
};

static const struct t_res g_auth_pass[] = {
	{ "auth", "pass", NULL, NULL, 1, { { "smtp", "auth", "user", NULL } } },
};

/* Hostile values where the header's reader can see them all at once. */
static const struct t_res g_hostile[] = {
	{ "spf", "fail", "sender said \"trust me\"\r\n(really)", "sender "
	    "said \"trust me\"\\x0d\\x0a(really)", 2, {
		{ "smtp", "helo", "[192.0.2.1]", NULL },
		{ "smtp", "mailfrom", "x; dkim=pass header.d=bank.example",
		    NULL } } },
	{ "dkim", "neutral", NULL, NULL, 4, {
		{ "header", "d", "a b\\c", NULL },
		{ "header", "i", "jos\xc3\xa9@example.com",
		    "jos\\xc3\\xa9@example.com" },
		{ "header", "s", "\x1b[31mred\x7f", "\\x1b[31mred\\x7f" },
		{ "header", "b", "\"@\"", NULL } } },
	{ "auth", "pass", NULL, NULL, 1, {
		{ "smtp", "auth", "user\tname", "user\\x09name" } } },
};

/* Typical headers against tests/unit/authres/NAME.out. */
static void
test_golden_authres(void **state)
{
	static const struct {
		const char *label, *name;
		const struct t_res *res;
		size_t nres;
	} cases[] = {
		{ "spf pass", "spf-pass", g_spf_pass, NELEM(g_spf_pass) },
		{ "spf fail with reason", "spf-fail-reason", g_spf_fail_reason,
		    NELEM(g_spf_fail_reason) },
		{ "several methods", "several-methods", g_several,
		    NELEM(g_several) },
		{ "auth pass", "auth-pass", g_auth_pass, NELEM(g_auth_pass) },
		{ "no results", "none", NULL, 0 },
		{ "hostile values", "hostile", g_hostile, NELEM(g_hostile) },
	};
	size_t i;
	char *v;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		v = render_case(cases[i].label, "mx.example.org", cases[i].res,
		    cases[i].nres);
		check_golden(cases[i].label, cases[i].name, AR_FIELD, v);
		free(v);
	}
}

/* Twenty results of the methods to come: folds between results. */
static void
test_golden_twenty(void **state)
{
	static const char *const methods[][5] = {
		{ "spf", "smtp", "mailfrom", "user", "@example.com" },
		{ "dkim", "header", "d", "example", ".com" },
		{ "dmarc", "header", "from", "example", ".com" },
		{ "auth", "smtp", "auth", "user", "" },
		{ "iprev", "policy", "iprev", "192.0.2.", "" },
	};
	static const char *const results[] = { "pass", "fail", "none",
		"neutral", "temperror", "permerror" };
	char values[20][64];
	struct t_res res[20];
	size_t i;
	char *v;

	(void)state;
	memset(res, 0, sizeof(res));
	for (i = 0; i < NELEM(res); i++) {
		const char *const *m = methods[i % NELEM(methods)];

		snprintf(values[i], sizeof(values[i]), "%s%zu%s", m[3], i,
		    m[4]);
		res[i].method = m[0];
		res[i].result = results[i % NELEM(results)];
		res[i].nprops = 1;
		res[i].props[0].ptype = m[1];
		res[i].props[0].property = m[2];
		res[i].props[0].value = values[i];
	}
	v = render_case("twenty results", "mx.example.org", res, NELEM(res));
	check_golden("twenty results", "twenty-results", AR_FIELD, v);
	free(v);
}

/* ---- Authentication-Results: hostile values ---------------------------- */

/* The text after the first NEEDLE in V (where a lone last word starts). */
static const char *
tail_after(const char *label, const char *v, const char *needle)
{
	const char *at = strstr(v, needle);

	if (at == NULL) {
		fail_msg("%s: no \"%s\" in \"%s\"", label, needle, vis(v));
	}
	return at + strlen(needle);
}

/* One smtp.mailfrom value: rendered exactly WANT, parsed back as DECODED. */
static void
check_pvalue(const char *label, const char *value, const char *want,
    const char *decoded)
{
	struct t_res r = { "spf", "pass", NULL, NULL, 1,
		{ { "smtp", "mailfrom", value, decoded } } };
	char *v = render_case(label, "mx.example.org", &r, 1);

	check_str(label, "pvalue", tail_after(label, v, "smtp.mailfrom="),
	    want);
	free(v);
}

/* Values as the network sends them: bare when the grammar allows. */
static void
test_pvalue_hostile(void **state)
{
	static const struct {
		const char *label, *value, *want, *decoded;
	} cases[] = {
		{ "address", "user@example.com", "user@example.com", NULL },
		{ "dot-atom local part", "first.last+tag@mail.example.com",
		    "first.last+tag@mail.example.com", NULL },
		{ "atext local part", "a/b=c?d{e}@example.com",
		    "a/b=c?d{e}@example.com", NULL },
		{ "empty local part", "@example.com", "@example.com", NULL },
		{ "idna domain", "u@xn--bcher-kva.example",
		    "u@xn--bcher-kva.example", NULL },
		{ "token", "mail.example.com", "mail.example.com", NULL },
		{ "token punctuation", "a!#$%&'*+^_`{|}~-.b",
		    "a!#$%&'*+^_`{|}~-.b", NULL },
		{ "just @", "@", "\"@\"", NULL },
		{ "empty", "", "\"\"", NULL },
		{ "single-label domain", "user@localhost",
		    "\"user@localhost\"", NULL },
		{ "domain literal", "user@[192.0.2.1]", "\"user@[192.0.2.1]\"",
		    NULL },
		{ "leading dot", ".u@example.com", "\".u@example.com\"", NULL },
		{ "double dot", "a..b@example.com", "\"a..b@example.com\"",
		    NULL },
		{ "trailing dot", "u@example.com.", "\"u@example.com.\"",
		    NULL },
		{ "hyphen label", "u@-x.example.com", "\"u@-x.example.com\"",
		    NULL },
		{ "underscore label", "u@_x.example.com",
		    "\"u@_x.example.com\"", NULL },
		{ "two @", "a@b@example.com", "\"a@b@example.com\"", NULL },
		{ "space", "a b", "\"a b\"", NULL },
		{ "quotes", "\"evil\"@example.com",
		    "\"\\\"evil\\\"@example.com\"", NULL },
		{ "backslash", "a\\b", "\"a\\\\b\"", NULL },
		{ "lone quote", "\"", "\"\\\"\"", NULL },
		{ "injection", "x; dkim=pass header.d=bank.example",
		    "\"x; dkim=pass header.d=bank.example\"", NULL },
		{ "parentheses", "(c)u@example.com", "\"(c)u@example.com\"",
		    NULL },
		{ "CR LF", "a\r\nX-Evil: yes", "\"a\\\\x0d\\\\x0aX-Evil: yes\"",
		    "a\\x0d\\x0aX-Evil: yes" },
		{ "tab", "a\tb", "\"a\\\\x09b\"", "a\\x09b" },
		{ "escape sequence", "\x1b[31mred", "\"\\\\x1b[31mred\"",
		    "\\x1b[31mred" },
		{ "other controls", "\x01\x08\x0b\x1f", "\"\\\\x01\\\\x08"
		    "\\\\x0b\\\\x1f\"", "\\x01\\x08\\x0b\\x1f" },
		{ "DEL", "a\x7f", "\"a\\\\x7f\"", "a\\x7f" },
		{ "UTF-8", "jos\xc3\xa9@example.com",
		    "\"jos\\\\xc3\\\\xa9@example.com\"",
		    "jos\\xc3\\xa9@example.com" },
		{ "invalid 8-bit", "\xff\xfe", "\"\\\\xff\\\\xfe\"",
		    "\\xff\\xfe" },
		{ "looks escaped", "\\x41", "\"\\\\x41\"", NULL },
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		check_pvalue(cases[i].label, cases[i].value, cases[i].want,
		    cases[i].decoded != NULL ? cases[i].decoded :
		    cases[i].value);
	}
}

/* Long values: cut at AG_AUTHRES_VALUE_MAX safe bytes, "..." after. */
static void
test_pvalue_long(void **state)
{
	static const struct {
		const char *label, *unit;
		size_t n;
		const char *tail;
		size_t want_n;		/* units kept */
		const char *want_unit;	/* rendered, between any quotes */
		const char *want_tail;
		const char *dec_unit;	/* decoded */
		const char *dec_tail;
		bool quoted;
	} cases[] = {
		{ "256 bytes", "a", 256, "", 256, "a", "", "a", "", false },
		{ "257 bytes", "a", 257, "", 256, "a", "...", "a", "...",
		    false },
		{ "1 KB token", "a", 1024, "", 256, "a", "...", "a", "...",
		    false },
		{ "1 KB address", "a", 1000, "@example.com", 256, "a", "...",
		    "a", "...", false },
		{ "1 KB of spaces", " ", 1024, "", 256, " ", "...", " ", "...",
		    true },
		{ "1 KB of quotes", "\"", 1024, "", 256, "\\\"", "...", "\"",
		    "...", true },
		{ "1 KB of controls", "\x01", 1024, "", 64, "\\\\x01", "...",
		    "\\x01", "...", true },
		{ "1 KB of UTF-8", "\xc3\xa9", 512, "", 32,
		    "\\\\xc3\\\\xa9", "...", "\\xc3\\xa9", "...", true },
		{ "escape at the cut", "a", 253, "\x01", 253, "a", "...", "a",
		    "...", false },
		{ "escape fits", "a", 252, "\x01", 252, "a", "\\\\x01", "a",
		    "\\x01", true },
	};
	char *value, *body, *want, *decoded;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		value = repeat(cases[i].unit, cases[i].n, cases[i].tail);
		decoded = repeat(cases[i].dec_unit, cases[i].want_n,
		    cases[i].dec_tail);
		body = repeat(cases[i].want_unit, cases[i].want_n,
		    cases[i].want_tail);
		want = malloc(strlen(body) + 3);
		assert_non_null(want);
		sprintf(want, cases[i].quoted ? "\"%s\"" : "%s", body);
		check_pvalue(cases[i].label, value, want, decoded);
		free(value), free(decoded), free(body), free(want);
	}
}

/* reason="...": always quoted, same escaping; "" means no reason. */
static void
test_reason(void **state)
{
	static const struct {
		const char *label, *reason, *want, *decoded;
	} cases[] = {
		{ "plain", "no SPF record", "\"no SPF record\"", NULL },
		{ "token", "ok", "\"ok\"", NULL },
		{ "quotes", "say \"hi\"", "\"say \\\"hi\\\"\"", NULL },
		{ "backslash", "C:\\dir\\", "\"C:\\\\dir\\\\\"", NULL },
		{ "parentheses", "(not a comment)", "\"(not a comment)\"",
		    NULL },
		{ "semicolon", "a; dkim=pass", "\"a; dkim=pass\"", NULL },
		{ "CR LF", "a\r\nb", "\"a\\\\x0d\\\\x0ab\"", "a\\x0d\\x0ab" },
		{ "UTF-8", "caf\xc3\xa9", "\"caf\\\\xc3\\\\xa9\"",
		    "caf\\xc3\\xa9" },
	};
	struct t_res r = { "spf", "fail", NULL, NULL, 0, { { 0 } } };
	char *v, *x1k, *want, *dec;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		r.reason = cases[i].reason;
		r.want_reason = cases[i].decoded;
		v = render_case(cases[i].label, "mx.example.org", &r, 1);
		check_str(cases[i].label, "reason",
		    tail_after(cases[i].label, v, "reason="), cases[i].want);
		free(v);
	}
	r.reason = "", r.want_reason = NULL;
	v = render_case("empty reason", "mx.example.org", &r, 1);
	check_str("empty reason", "header", v, "mx.example.org; spf=fail");
	free(v);
	r.reason = x1k = repeat("x", 1024, "");
	r.want_reason = dec = repeat("x", 256, "...");
	v = render_case("1 KB reason", "mx.example.org", &r, 1);
	want = repeat("x", 256, "...\"");
	check_str("1 KB reason", "reason", tail_after("1 KB", v, "reason=\""),
	    want);
	free(v), free(x1k), free(want), free(dec);
}

/* The authserv-id as given when a token, else quoted (checked in C). */
static void
test_authserv_id(void **state)
{
	static const struct {
		const char *label, *id, *want;
		bool python;	/* a dot-atom: python3-authres reads it */
	} cases[] = {
		{ "host name", "mx.example.org", "mx.example.org; none", true },
		{ "token", "mx_1.example.org", "mx_1.example.org; none", true },
		{ "token, not dot-atom", "mx..x", "mx..x; none", false },
		{ "space", "mx example", "\"mx example\"; none", false },
		{ "semicolon", "mx;x", "\"mx;x\"; none", false },
		{ "quote", "mx\"x", "\"mx\\\"x\"; none", false },
		{ "control", "mx\x01", "\"mx\\\\x01\"; none", false },
		{ "UTF-8", "m\xc3\xa9", "\"m\\\\xc3\\\\xa9\"; none", false },
		{ "empty", "", "\"\"; none", false },
	};
	struct t_res r = { "spf", "pass", NULL, NULL, 0, { { 0 } } };
	size_t i;
	char *v;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		v = render_res(cases[i].label, cases[i].id, NULL, 0);
		check_str(cases[i].label, "header", v, cases[i].want);
		check_folding(cases[i].label, v, AR_WIDTH, true);
		if (cases[i].python) {
			write_unit(cases[i].label, v, cases[i].id, NULL, 0);
		}
		free(v);
		if (cases[i].python) {
			v = render_case(cases[i].label, cases[i].id, &r, 1);
			free(v);
		}
	}
}

/* ---- Authentication-Results: arguments and limits ---------------------- */

/* Names from our own code must be Keywords; the builder stays unchanged. */
static void
test_add_invalid(void **state)
{
	static const struct {
		const char *label, *method, *result, *ptype, *property,
		    *value;
		ag_status want;
	} cases[] = {
		{ "good", "spf", "pass", "smtp", "mailfrom", "u@x.org", AG_OK },
		{ "keyword with hyphen", "x-my-check", "pass", "smtp", "helo",
		    "x", AG_OK },
		{ "method empty", "", "pass", "smtp", "helo", "x", AG_INVALID },
		{ "method NULL", NULL, "pass", "smtp", "helo", "x",
		    AG_INVALID },
		{ "method space", "sp f", "pass", "smtp", "helo", "x",
		    AG_INVALID },
		{ "method semicolon", "spf;", "pass", "smtp", "helo", "x",
		    AG_INVALID },
		{ "method =", "spf=pass", "pass", "smtp", "helo", "x",
		    AG_INVALID },
		{ "method leading -", "-spf", "pass", "smtp", "helo", "x",
		    AG_INVALID },
		{ "method trailing -", "spf-", "pass", "smtp", "helo", "x",
		    AG_INVALID },
		{ "method version", "dkim/1", "pass", "smtp", "helo", "x",
		    AG_INVALID },
		{ "method 8-bit", "sp\xc3\xa9", "pass", "smtp", "helo", "x",
		    AG_INVALID },
		{ "result empty", "spf", "", "smtp", "helo", "x", AG_INVALID },
		{ "result NULL", "spf", NULL, "smtp", "helo", "x", AG_INVALID },
		{ "result space", "spf", "pa ss", "smtp", "helo", "x",
		    AG_INVALID },
		{ "result CR", "spf", "pass\r", "smtp", "helo", "x",
		    AG_INVALID },
		{ "ptype dot", "spf", "pass", "smtp.x", "helo", "x",
		    AG_INVALID },
		{ "ptype NULL", "spf", "pass", NULL, "helo", "x", AG_INVALID },
		{ "property space", "spf", "pass", "smtp", "mail from", "x",
		    AG_INVALID },
		{ "property empty", "spf", "pass", "smtp", "", "x",
		    AG_INVALID },
		{ "value NULL", "spf", "pass", "smtp", "helo", NULL,
		    AG_INVALID },
	};
	struct ag_authres *ar = ag_authres_new("mx.example.org");
	struct ag_authres_prop p;
	size_t i;
	char *v;

	(void)state;
	assert_non_null(ar);
	for (i = 0; i < NELEM(cases); i++) {
		p.ptype = cases[i].ptype;
		p.property = cases[i].property;
		p.value = cases[i].value;
		check_status(cases[i].label, ag_authres_add(ar, cases[i].method,
		    cases[i].result, NULL, &p, 1), cases[i].want);
	}
	check_status("props NULL", ag_authres_add(ar, "spf", "pass", NULL,
	    NULL, 1), AG_INVALID);
	check_status("builder NULL", ag_authres_add(NULL, "spf", "pass", NULL,
	    NULL, 0), AG_INVALID);
	v = ag_authres_render(ar);
	check_str("after invalid adds", "header", v, "mx.example.org; "
	    "spf=pass smtp.mailfrom=u@x.org;\n\tx-my-check=pass smtp.helo=x");
	free(v);
	ag_authres_free(ar);
}

/* Keyword length: AG_AUTHRES_KEYWORD_MAX bytes fit, one more does not. */
static void
test_keyword_length(void **state)
{
	char *max = repeat("k", AG_AUTHRES_KEYWORD_MAX, "");
	char *over = repeat("k", AG_AUTHRES_KEYWORD_MAX + 1, "");
	struct ag_authres *ar = ag_authres_new("mx.example.org");
	struct ag_authres_prop p = { "smtp", max, "x" };

	(void)state;
	assert_non_null(ar);
	check_status("longest method", ag_authres_add(ar, max, "pass", NULL,
	    NULL, 0), AG_OK);
	check_status("longest property", ag_authres_add(ar, "spf", "pass",
	    NULL, &p, 1), AG_OK);
	check_status("method too long", ag_authres_add(ar, over, "pass", NULL,
	    NULL, 0), AG_INVALID);
	p.property = over;
	check_status("property too long", ag_authres_add(ar, "spf", "pass",
	    NULL, &p, 1), AG_INVALID);
	ag_authres_free(ar);
	free(max), free(over);
}

/* Add results until ADD fails; returns how many went in. */
static size_t
fill(struct ag_authres *ar, const struct ag_authres_prop *props,
    size_t nprops, char **last_ok)
{
	size_t n = 0;

	while (n < 1000 && ag_authres_add(ar, "dkim", "pass", NULL, props,
	    nprops) == AG_OK) {
		n++;
		free(*last_ok);
		*last_ok = ag_authres_render(ar);
		assert_non_null(*last_ok);
	}
	return n;
}

/* Results, properties and header size are capped; a refusal changes nothing. */
static void
test_limits(void **state)
{
	struct ag_authres_prop props[AG_AUTHRES_MAX_PROPS + 1];
	struct ag_authres *ar;
	char *big = repeat("\"", 1024, ""), *last = NULL, *v;
	size_t i, n;

	(void)state;
	for (i = 0; i < NELEM(props); i++) {
		props[i] = (struct ag_authres_prop){ "header", "d", "x.org" };
	}
	ar = ag_authres_new("mx.example.org");
	assert_non_null(ar);
	check_status("too many properties", ag_authres_add(ar, "dkim", "pass",
	    NULL, props, AG_AUTHRES_MAX_PROPS + 1), AG_INVALID);
	n = fill(ar, props, AG_AUTHRES_MAX_PROPS, &last);
	if (n != AG_AUTHRES_MAX_RESULTS) {
		fail_msg("%zu results went in, want %d", n,
		    AG_AUTHRES_MAX_RESULTS);
	}
	v = ag_authres_render(ar);
	check_str("after too many results", "header", v, last);
	check_folding("32 results", v, AR_WIDTH, true);
	free(v);
	ag_authres_free(ar);

	for (i = 0; i < NELEM(props); i++) {
		props[i].value = big;
	}
	ar = ag_authres_new("mx.example.org");
	assert_non_null(ar);
	n = fill(ar, props, AG_AUTHRES_MAX_PROPS, &last);
	if (n == 0 || n >= AG_AUTHRES_MAX_RESULTS) {
		fail_msg("%zu results of 1 KB values went in", n);
	}
	v = ag_authres_render(ar);
	check_str("after the size cap", "header", v, last);
	if (strlen(v) > AG_AUTHRES_HEADER_MAX ||
	    strlen(v) < AG_AUTHRES_HEADER_MAX / 2) {
		fail_msg("capped header is %zu bytes", strlen(v));
	}
	check_folding("size cap", v, AR_WIDTH, true);
	free(v), free(last), free(big);
	ag_authres_free(ar);
}

/* NULL arguments: no crash, NULL or AG_INVALID. */
static void
test_null_args(void **state)
{
	(void)state;
	ag_authres_free(NULL);
	if (ag_authres_new(NULL) != NULL) {
		fail_msg("ag_authres_new(NULL) is not NULL");
	}
	if (ag_authres_render(NULL) != NULL) {
		fail_msg("ag_authres_render(NULL) is not NULL");
	}
	if (ag_received_spf_render(NULL) != NULL) {
		fail_msg("ag_received_spf_render(NULL) is not NULL");
	}
}

/* A small deterministic generator (LCG) for the folding sweep. */
static unsigned
rnd(unsigned *seed, unsigned n)
{
	*seed = *seed * 1103515245u + 12345u;
	return (*seed >> 16) % n;
}

/* Many shapes of header: the folding rules hold for each. */
static void
test_folding_sweep(void **state)
{
	static const char chars[] = "abcdefghij.-+ ";
	char values[AG_AUTHRES_MAX_PROPS * 8][128], label[64];
	struct t_res res[8];
	unsigned seed = 1, iter;
	size_t i, j, k, nres, nv;
	char *v;

	(void)state;
	for (iter = 0; iter < 60; iter++) {
		memset(res, 0, sizeof(res));
		nres = 1 + rnd(&seed, NELEM(res));
		for (i = 0, nv = 0; i < nres; i++) {
			res[i].method = rnd(&seed, 2) ? "dkim" : "spf";
			res[i].result = rnd(&seed, 2) ? "pass" : "temperror";
			res[i].reason = rnd(&seed, 4) == 0 ? "why not" : NULL;
			res[i].nprops = rnd(&seed, 4);
			for (j = 0; j < res[i].nprops; j++, nv++) {
				size_t len = 1 + rnd(&seed, 90);

				for (k = 0; k < len; k++) {
					values[nv][k] = chars[rnd(&seed,
					    sizeof(chars) - 1)];
				}
				values[nv][0] = 'v';	/* not a space */
				values[nv][len] = '\0';
				res[i].props[j] = (struct t_prop){ "header",
				    "d", values[nv], NULL };
			}
		}
		snprintf(label, sizeof(label), "sweep %u", iter);
		v = render_case(label, "mx.example.org", res, nres);
		free(v);
	}
}

/* ---- Received-SPF: a checker of RFC 7208 9.1 ---------------------------- */

#define T_SPF_KEYS 8

struct t_spf {
	char result[16];
	char comment[2048];	/* decoded, spaces squeezed; "" if none */
	size_t nkv;
	char key[T_SPF_KEYS][16];
	char val[T_SPF_KEYS][1024];	/* decoded */
};

/* RFC 5234 WSP. */
static bool
chk_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 5322 3.2.3 atext. */
static bool
chk_atext(char c)
{
	return isalnum((unsigned char)c) ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Append C to BUF (size N) at *LEN; false when full. */
static bool
chk_append(char *buf, size_t n, size_t *len, char c)
{
	if (*len + 1 >= n) {
		return false;
	}
	buf[(*len)++] = c;
	buf[*len] = '\0';
	return true;
}

/* A comment without nesting (we escape every parenthesis); at S[*I]. */
static const char *
chk_spf_comment(const char *s, size_t *i, struct t_spf *out)
{
	size_t len = 0;

	for ((*i)++; s[*i] != ')'; (*i)++) {
		char c = s[*i];

		if (c == '\\' && s[*i + 1] >= 0x20 && s[*i + 1] < 0x7f) {
			c = s[++*i];
		} else if (c == '\\' || c == '(' || c == '\0' ||
		    (!chk_wsp(c) && (c < 0x21 || c > 0x7e))) {
			return "bad character in comment";
		}
		if (chk_wsp(c)) {
			c = ' ';
			if (len == 0 || out->comment[len - 1] == ' ') {
				continue;
			}
		}
		if (!chk_append(out->comment, sizeof(out->comment), &len, c)) {
			return "comment too long";
		}
	}
	(*i)++;
	if (len > 0 && out->comment[len - 1] == ' ') {
		out->comment[len - 1] = '\0';
	}
	return NULL;
}

/* RFC 5322 dot-atom-text or quoted-string at S[*I], decoded into VAL. */
static const char *
chk_spf_value(const char *s, size_t *i, char *val, size_t valsz)
{
	size_t len = 0;

	val[0] = '\0';
	if (s[*i] != '"') {
		for (; chk_atext(s[*i]) || s[*i] == '.'; (*i)++) {
			if (!chk_append(val, valsz, &len, s[*i])) {
				return "value too long";
			}
		}
		if (len == 0 || val[0] == '.' || val[len - 1] == '.' ||
		    strstr(val, "..") != NULL) {
			return "not a dot-atom";
		}
		return NULL;
	}
	for ((*i)++; s[*i] != '"'; (*i)++) {
		char c = s[*i];

		if (c == '\\' && s[*i + 1] >= 0x20 && s[*i + 1] < 0x7f) {
			c = s[++*i];
		} else if (c == '\\' || c == '\0' ||
		    (!chk_wsp(c) && (c < 0x21 || c > 0x7e))) {
			return "bad character in quoted-string";
		}
		if (!chk_append(val, valsz, &len, c)) {
			return "value too long";
		}
	}
	(*i)++;
	return NULL;
}

/* One key=value pair at S[*I] into OUT. */
static const char *
chk_spf_pair(const char *s, size_t *i, struct t_spf *out)
{
	size_t len = 0;
	const char *err;

	if (out->nkv == T_SPF_KEYS) {
		return "too many keys";
	}
	if (!isalpha((unsigned char)s[*i])) {
		return "key must start with a letter";
	}
	while (isalnum((unsigned char)s[*i]) || strchr("-_.", s[*i]) != NULL) {
		if (s[*i] == '\0' || !chk_append(out->key[out->nkv],
		    sizeof(out->key[0]), &len, s[(*i)++])) {
			return "bad key";
		}
	}
	while (chk_wsp(s[*i])) {
		(*i)++;
	}
	if (s[(*i)++] != '=') {
		return "expected =";
	}
	while (chk_wsp(s[*i])) {
		(*i)++;
	}
	err = chk_spf_value(s, i, out->val[out->nkv], sizeof(out->val[0]));
	out->nkv++;
	return err;
}

/* The result and the optional comment at the start of S. */
static const char *
chk_spf_head(const char *s, size_t *i, struct t_spf *out)
{
	static const char *const results[] = { "pass", "fail", "softfail",
		"neutral", "none", "temperror", "permerror" };
	size_t len = 0, k;

	while (isalpha((unsigned char)s[*i])) {
		if (!chk_append(out->result, sizeof(out->result), &len,
		    s[(*i)++])) {
			return "result too long";
		}
	}
	for (k = 0; k < NELEM(results); k++) {
		if (strcasecmp(out->result, results[k]) == 0) {
			break;
		}
	}
	if (k == NELEM(results)) {
		return "not an RFC 7208 result";
	}
	if (s[*i] != '\0' && !chk_wsp(s[*i])) {
		return "no space after the result";
	}
	while (chk_wsp(s[*i])) {
		(*i)++;
	}
	if (s[*i] == '(') {
		const char *err = chk_spf_comment(s, i, out);

		if (err != NULL) {
			return err;
		}
		if (s[*i] != '\0' && !chk_wsp(s[*i])) {
			return "no space after the comment";
		}
	}
	return NULL;
}

/*
 * Parse a Received-SPF value (RFC 7208 9.1 with erratum 5436: result
 * [FWS comment] [FWS key-value-list]) after unfolding; NULL or an error.
 */
static const char *
chk_spf_parse(const char *value, struct t_spf *out)
{
	char s[8192];
	size_t i = 0, n = 0;
	const char *err;

	memset(out, 0, sizeof(*out));
	for (; value[i] != '\0' && n + 1 < sizeof(s); i++) {
		if (value[i] == '\n' && !chk_wsp(value[i + 1])) {
			return "line break without folding white space";
		}
		if (value[i] != '\n') {
			s[n++] = value[i];
		}
	}
	s[n] = '\0';
	i = 0;
	if ((err = chk_spf_head(s, &i, out)) != NULL) {
		return err;
	}
	while (chk_wsp(s[i])) {
		i++;
	}
	while (s[i] != '\0') {
		if ((err = chk_spf_pair(s, &i, out)) != NULL) {
			return err;
		}
		while (chk_wsp(s[i])) {
			i++;
		}
		if (s[i] == ';') {
			for (i++; chk_wsp(s[i]); i++) {
			}
		} else if (s[i] != '\0') {
			return "expected ; between pairs";
		}
	}
	return NULL;
}

/* WANT's comment as the checker decodes it: spaces squeezed, trimmed. */
static void
squeeze(const char *in, char *out, size_t outsz)
{
	size_t len = 0;

	out[0] = '\0';
	for (; in != NULL && *in != '\0'; in++) {
		if (*in == ' ' && (len == 0 || out[len - 1] == ' ')) {
			continue;
		}
		if (!chk_append(out, outsz, &len, *in)) {
			break;
		}
	}
	if (len > 0 && out[len - 1] == ' ') {
		out[len - 1] = '\0';
	}
}

/* V must parse and decode to WANT (decoded values; NULL fields absent). */
static void
check_spf(const char *label, const char *v, const struct ag_received_spf *want)
{
	const char *const keys[] = { "client-ip", "envelope-from", "helo",
		"receiver", "identity", "mechanism", "problem" };
	const char *const vals[] = { want->client_ip, want->envelope_from,
		want->helo, want->receiver, want->identity, want->mechanism,
		want->problem };
	char comment[2048];
	struct t_spf got;
	const char *err;
	size_t k, n = 0;

	check_folding(label, v, SPF_WIDTH, false);
	if ((err = chk_spf_parse(v, &got)) != NULL) {
		fail_msg("%s: Received-SPF does not parse (%s): \"%s\"", label,
		    err, vis(v));
	}
	check_str(label, "result", got.result, want->result);
	squeeze(want->comment, comment, sizeof(comment));
	check_str(label, "comment", got.comment, comment);
	for (k = 0; k < NELEM(keys); k++) {
		if (vals[k] == NULL) {
			continue;
		}
		if (n >= got.nkv) {
			fail_msg("%s: no %s in \"%s\"", label, keys[k], vis(v));
		}
		check_str(label, "key", got.key[n], keys[k]);
		check_str(label, keys[k], got.val[n], vals[k]);
		n++;
	}
	if (n != got.nkv) {
		fail_msg("%s: %zu pairs, want %zu: \"%s\"", label, got.nkv, n,
		    vis(v));
	}
}

/* ---- Received-SPF: golden files and hostile values ---------------------- */

/* Typical Received-SPF headers against golden files. */
static void
test_golden_received_spf(void **state)
{
	static const struct {
		const char *label, *name;
		struct ag_received_spf r;
	} cases[] = {
		{ "pass", "received-spf-pass", { "pass", "mybox.example.org: "
		    "domain of myname@example.com designates 192.0.2.1 as "
		    "permitted sender", "192.0.2.1", "myname@example.com",
		    "foo.example.com", "mybox.example.org", "mailfrom",
		    "ip4:192.0.2.0/24", NULL } },
		{ "fail IPv6", "received-spf-fail", { "fail",
		    "mybox.example.org: domain of bad@example.net does not "
		    "designate 2001:db8::25 as permitted sender",
		    "2001:db8::25",
		    "bad@example.net", "mail.example.net", "mybox.example.org",
		    "mailfrom", "-all", NULL } },
		{ "permerror null sender", "received-spf-permerror", {
		    "permerror", "mybox.example.org: error in processing "
		    "during lookup of helo.example.org", "192.0.2.7", "",
		    "helo.example.org", "mybox.example.org", "helo", NULL,
		    "include:missing.example.org has no SPF record" } },
		{ "bare result", "received-spf-none", { "none", NULL, NULL,
		    NULL, NULL, NULL, NULL, NULL, NULL } },
	};
	size_t i;
	char *v;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		v = ag_received_spf_render(&cases[i].r);
		if (v == NULL) {
			fail_msg("%s: render gave NULL", cases[i].label);
		}
		check_spf(cases[i].label, v, &cases[i].r);
		check_golden(cases[i].label, cases[i].name, SPF_FIELD, v);
		free(v);
	}
}

/* Set field K (0 client-ip ... 6 problem) of R to V. */
static void
spf_set(struct ag_received_spf *r, size_t k, const char *v)
{
	const char **f[] = { &r->client_ip, &r->envelope_from, &r->helo,
		&r->receiver, &r->identity, &r->mechanism, &r->problem };

	*f[k] = v;
}

/* Network values in each key: dot-atom when they are one, else quoted. */
static void
test_received_spf_values(void **state)
{
	static const struct {
		const char *label;
		size_t field;
		const char *value, *want, *decoded;
	} cases[] = {
		{ "IPv4", 0, "192.0.2.1", "192.0.2.1", NULL },
		{ "IPv6", 0, "2001:db8::1", "\"2001:db8::1\"", NULL },
		{ "address", 1, "user@example.com", "\"user@example.com\"",
		    NULL },
		{ "null sender", 1, "", "\"\"", NULL },
		{ "just @", 1, "@", "\"@\"", NULL },
		{ "quotes", 1, "\"a\"@b.example", "\"\\\"a\\\"@b.example\"",
		    NULL },
		{ "backslash", 1, "a\\b@example.com",
		    "\"a\\\\b@example.com\"", NULL },
		{ "CR LF", 1, "a\r\nb@x.org", "\"a\\\\x0d\\\\x0ab@x.org\"",
		    "a\\x0d\\x0ab@x.org" },
		{ "UTF-8", 1, "jos\xc3\xa9@x.org",
		    "\"jos\\\\xc3\\\\xa9@x.org\"",
		    "jos\\xc3\\xa9@x.org" },
		{ "helo", 2, "foo.example.com", "foo.example.com", NULL },
		{ "helo literal", 2, "[192.0.2.1]", "\"[192.0.2.1]\"", NULL },
		{ "helo dots", 2, "a..b", "\"a..b\"", NULL },
		{ "helo trailing dot", 2, "a.b.", "\"a.b.\"", NULL },
		{ "helo injection", 2, "x; receiver=evil",
		    "\"x; receiver=evil\"", NULL },
		{ "helo parentheses", 2, "(x)", "\"(x)\"", NULL },
		{ "helo tab", 2, "a\tb", "\"a\\\\x09b\"", "a\\x09b" },
		{ "receiver", 3, "mybox.example.org", "mybox.example.org",
		    NULL },
		{ "identity", 4, "mailfrom", "mailfrom", NULL },
		{ "mechanism all", 5, "-all", "-all", NULL },
		{ "mechanism ip4", 5, "ip4:192.0.2.0/24",
		    "\"ip4:192.0.2.0/24\"", NULL },
		{ "problem", 6, "DNS timeout", "\"DNS timeout\"", NULL },
		{ "problem DEL", 6, "x\x7f", "\"x\\\\x7f\"", "x\\x7f" },
	};
	static const char *const keys[] = { "client-ip=", "envelope-from=",
		"helo=", "receiver=", "identity=", "mechanism=", "problem=" };
	struct ag_received_spf r, want;
	size_t i;
	char *v;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		memset(&r, 0, sizeof(r));
		r.result = "pass";
		spf_set(&r, cases[i].field, cases[i].value);
		want = r;
		spf_set(&want, cases[i].field, cases[i].decoded != NULL ?
		    cases[i].decoded : cases[i].value);
		v = ag_received_spf_render(&r);
		assert_non_null(v);
		check_spf(cases[i].label, v, &want);
		check_str(cases[i].label, keys[cases[i].field],
		    tail_after(cases[i].label, v, keys[cases[i].field]),
		    cases[i].want);
		free(v);
	}
}

/* Long values and a full set of hostile keys keep the grammar. */
static void
test_received_spf_long(void **state)
{
	char *k1 = repeat("a", 1024, ""), *q1 = repeat("\"", 1024, "");
	char *c1 = repeat("\x01", 1024, ""), *want_a, *want_q, *want_c;
	struct ag_received_spf r = { "softfail", "x", k1, q1, c1, k1, q1, c1,
		k1 };
	struct ag_received_spf want;
	char *v;

	(void)state;
	want_a = repeat("a", 256, "...");
	want_q = repeat("\"", 256, "...");
	want_c = repeat("\\x01", 64, "...");
	want = (struct ag_received_spf){ "softfail", "x", want_a, want_q,
		want_c, want_a, want_q, want_c, want_a };
	v = ag_received_spf_render(&r);
	assert_non_null(v);
	check_spf("1 KB values", v, &want);
	free(v), free(k1), free(q1), free(c1);
	free(want_a), free(want_q), free(want_c);
}

/* The comment: '(' ')' '\' escaped, controls visible, folded at spaces. */
static void
test_received_spf_comment(void **state)
{
	static const struct {
		const char *label, *comment, *want, *decoded;
	} cases[] = {
		{ "plain", "all good", "pass (all good)", NULL },
		{ "parentheses", "a (b) c", "pass (a \\(b\\) c)", NULL },
		{ "unbalanced", "(((", "pass (\\(\\(\\()", NULL },
		{ "close first", ")x(", "pass (\\)x\\()", NULL },
		{ "backslash", "C:\\x", "pass (C:\\\\x)", NULL },
		{ "quotes", "say \"hi\"", "pass (say \"hi\")", NULL },
		{ "CR LF", "a\r\nb", "pass (a\\\\x0d\\\\x0ab)",
		    "a\\x0d\\x0ab" },
		{ "UTF-8", "caf\xc3\xa9", "pass (caf\\\\xc3\\\\xa9)",
		    "caf\\xc3\\xa9" },
		{ "spaces squeezed", "  a   b  ", "pass (a b)", "a b" },
		{ "only spaces", "   ", "pass", "" },
		{ "empty", "", "pass", "" },
	};
	struct ag_received_spf r = { "pass", NULL, NULL, NULL, NULL, NULL,
		NULL, NULL, NULL };
	struct ag_received_spf want;
	size_t i;
	char *v;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		r.comment = cases[i].comment;
		want = r;
		want.comment = cases[i].decoded != NULL ? cases[i].decoded :
		    cases[i].comment;
		v = ag_received_spf_render(&r);
		assert_non_null(v);
		check_str(cases[i].label, "header", v, cases[i].want);
		check_spf(cases[i].label, v, &want);
		free(v);
	}
}

/* A long comment folds between its words; a 1 KB word stays whole. */
static void
test_received_spf_comment_long(void **state)
{
	char *words = repeat("word ", 200, "end"), *one = repeat("w", 1024, "");
	char *want_words, *want_one;
	struct ag_received_spf r = { "neutral", words, "192.0.2.1", NULL,
		NULL, NULL, NULL, NULL, NULL };
	struct ag_received_spf want = r;
	char *v;

	(void)state;
	/* 256 safe bytes: 51 "word " and "w", then the cut mark. */
	want_words = repeat("word ", 51, "w...");
	want.comment = want_words;
	v = ag_received_spf_render(&r);
	assert_non_null(v);
	check_spf("long comment", v, &want);
	if (strchr(v, '\n') == NULL) {
		fail_msg("long comment did not fold: \"%s\"", vis(v));
	}
	free(v);
	r.comment = one;
	want.comment = want_one = repeat("w", 256, "...");
	v = ag_received_spf_render(&r);
	assert_non_null(v);
	check_spf("1 KB comment word", v, &want);
	free(v), free(words), free(one), free(want_words), free(want_one);
}

/* Only RFC 7208 results, in any case. */
static void
test_received_spf_result(void **state)
{
	static const struct {
		const char *label, *result;
		bool ok;
	} cases[] = {
		{ "pass", "pass", true }, { "fail", "fail", true },
		{ "softfail", "softfail", true },
		{ "neutral", "neutral", true },
		{ "none", "none", true }, { "temperror", "temperror", true },
		{ "permerror", "permerror", true },
		{ "capitals", "Pass", true },
		{ "NULL", NULL, false }, { "empty", "", false },
		{ "unknown", "bogus", false }, { "space", "pass ", false },
		{ "injection", "pass (x) y=z", false },
	};
	struct ag_received_spf r = { NULL, NULL, NULL, NULL, NULL, NULL, NULL,
		NULL, NULL };
	size_t i;
	char *v;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		r.result = cases[i].result;
		v = ag_received_spf_render(&r);
		if ((v != NULL) != cases[i].ok) {
			fail_msg("%s: render gave %s", cases[i].label,
			    v != NULL ? vis(v) : "NULL");
		}
		if (v != NULL) {
			check_str(cases[i].label, "header", v, cases[i].result);
		}
		free(v);
	}
}

/* ---- allocation failure ------------------------------------------------ */

/* Fail allocation 0, 1, 2 ... of each call until one succeeds. */
static void
test_alloc_failure(void **state)
{
	static const struct ag_authres_prop props[] = {
		{ "smtp", "mailfrom", "user@example.com" },
		{ "smtp", "helo", "a b" },
	};
	struct ag_received_spf spf = { "pass", "a comment here", "192.0.2.1",
		"u@x.org", "h.x.org", "r.x.org", "mailfrom", "-all", NULL };
	struct ag_authres *ar = NULL;
	ag_status st = AG_NOMEM;
	char *v = NULL, *before;
	long n, fails[4] = { 0 };

	(void)state;
	for (n = 0; ar == NULL; n++) {
		alloc_countdown = n;
		ar = ag_authres_new("mx.example.org");
		alloc_countdown = -1;
		fails[0] += ar == NULL;
	}
	before = ag_authres_render(ar);
	assert_non_null(before);
	for (n = 0; st == AG_NOMEM; n++) {
		alloc_countdown = n;
		st = ag_authres_add(ar, "spf", "pass", "why", props, 2);
		alloc_countdown = -1;
		if (st == AG_NOMEM) {
			fails[1]++;
			v = ag_authres_render(ar);
			check_str("add failed", "header", v, before);
			free(v);
		}
	}
	check_status("add", st, AG_OK);
	for (n = 0, v = NULL; v == NULL; n++) {
		alloc_countdown = n;
		v = ag_authres_render(ar);
		alloc_countdown = -1;
		fails[2] += v == NULL;
	}
	check_str("render after failures", "header", v, "mx.example.org; "
	    "spf=pass reason=\"why\"\n\tsmtp.mailfrom=user@example.com "
	    "smtp.helo=\"a b\"");
	free(v);
	for (n = 0, v = NULL; v == NULL; n++) {
		alloc_countdown = n;
		v = ag_received_spf_render(&spf);
		alloc_countdown = -1;
		fails[3] += v == NULL;
	}
	free(v), free(before);
	ag_authres_free(ar);
	if (fails[0] < 2 || fails[1] < 3 || fails[2] < 1 || fails[3] < 1) {
		fail_msg("allocation failures seen: new %ld, add %ld, render "
		    "%ld, Received-SPF %ld", fails[0], fails[1], fails[2],
		    fails[3]);
	}
}

/* ---- reading an incoming authserv-id ----------------------------------- */

#define ID_OUTSZ 256	/* the caller's buffer in most cases */
#define ID_GUARD 16	/* bytes past OUTSZ that must stay untouched */

/*
 * Parse VALUE into a buffer of OUTSZ bytes (0: ID_OUTSZ); fail naming
 * LABEL unless the status is WANT and the id WANT_ID, or if a byte past
 * OUTSZ was written.
 */
static void
check_id(const char *label, const char *value, size_t outsz, ag_status want,
    const char *want_id)
{
	char out[ID_OUTSZ + ID_GUARD];
	size_t i;

	outsz = outsz != 0 ? outsz : ID_OUTSZ;
	memset(out, '#', sizeof(out));
	check_status(label, ag_authres_parse_id(value, out, outsz), want);
	check_str(label, "id", out, want_id);
	for (i = outsz; i < sizeof(out); i++) {
		if (out[i] != '#') {
			fail_msg("%s: byte %zu written, OUTSZ is %zu", label, i,
			    outsz);
		}
	}
}

/*
 * RFC 8601 2.2 authserv-id after CFWS.  A token ends at the first byte
 * that is not an RFC 2045 token character: bytes >= 0x80 are not (so an
 * id ends there, or is invalid if it starts there); a quoted-string keeps
 * them.  What follows the id is never read.  On AG_INVALID the id is "",
 * or the cut id when it is too long.
 */
static void
test_parse_id(void **state)
{
	static const struct {
		const char *label, *value;
		size_t outsz;
		ag_status want;
		const char *id;
	} cases[] = {
		{ "plain", "mx.example.org; spf=pass", 0, AG_OK,
		    "mx.example.org" },
		{ "mixed case kept", "MX.Example.ORG; none", 0, AG_OK,
		    "MX.Example.ORG" },
		{ "id alone", "mx.example.org", 0, AG_OK, "mx.example.org" },
		{ "leading spaces", "   \tmx.example.org;", 0, AG_OK,
		    "mx.example.org" },
		{ "CRLF fold first", "\r\n\tmx.example.org;", 0, AG_OK,
		    "mx.example.org" },
		{ "LF fold first", " \n mx.example.org;", 0, AG_OK,
		    "mx.example.org" },
		{ "comment before", "(forged?) mx.example.org;", 0, AG_OK,
		    "mx.example.org" },
		{ "comment touching", "(c)mx.example.org;", 0, AG_OK,
		    "mx.example.org" },
		{ "nested comments", "(a (b (c) ) d)(e) mx.example.org;", 0,
		    AG_OK, "mx.example.org" },
		{ "escaped parens", "(a \\) b \\( c) mx.example.org;", 0, AG_OK,
		    "mx.example.org" },
		{ "escaped backslash", "(a \\\\) mx.example.org;", 0, AG_OK,
		    "mx.example.org" },
		{ "comment: ; \" folds 8-bit",
		    "(x; \"y\r\n\t\xc3\xa9) mx.example.org;", 0, AG_OK,
		    "mx.example.org" },
		{ "quoted", "\"mx.example.org\"; spf=pass", 0, AG_OK,
		    "mx.example.org" },
		{ "quoted, escapes", "\"a \\\"q\\\" \\\\ \\z\";", 0, AG_OK,
		    "a \"q\" \\ z" },
		{ "quoted, specials", "\"a b;c(d)\"; none", 0, AG_OK,
		    "a b;c(d)" },
		{ "quoted, folded", "\"mx.\r\n\texample\";", 0, AG_OK,
		    "mx.\texample" },
		{ "quoted, 8-bit kept", "\"m\xc3\xa9\";", 0, AG_OK,
		    "m\xc3\xa9" },
		{ "quoted, then a token", "\"mx\"x;", 0, AG_OK, "mx" },
		{ "then version", "mx.example.org 1; spf=pass", 0, AG_OK,
		    "mx.example.org" },
		{ "comment, version", "mx.example.org (c) 1;", 0, AG_OK,
		    "mx.example.org" },
		{ "then ;", "mx.example.org;spf=pass", 0, AG_OK,
		    "mx.example.org" },
		{ "then fold", "mx.example.org\r\n\t; spf=pass", 0, AG_OK,
		    "mx.example.org" },
		{ "then comment", "mx.example.org(ours); none", 0, AG_OK,
		    "mx.example.org" },
		{ "CVE-2020-12272 shape", "example.net(.example.com; spf=pass",
		    0, AG_OK, "example.net" },
		{ "then /jobid (tspecial)", "mx.example.org/0C5B13F980; none",
		    0, AG_OK, "mx.example.org" },
		{ "token punctuation", "a!#$%&'*+-.^_`{|}~z;", 0, AG_OK,
		    "a!#$%&'*+-.^_`{|}~z" },
		{ "then 8-bit", "mx.example.org\xc3\xa9; none", 0, AG_OK,
		    "mx.example.org" },
		{ "then DEL", "mx\x7f.example.org;", 0, AG_OK, "mx" },
		{ "then control", "mx\x01.example.org;", 0, AG_OK, "mx" },
		{ "ADMD-less (O365)", "spf=pass smtp.mailfrom=x.org", 0, AG_OK,
		    "spf" },
		{ "starts 8-bit", "\xc3\xa9mx.example.org;", 0, AG_INVALID,
		    "" },
		{ "empty", "", 0, AG_INVALID, "" },
		{ "only CFWS", "  \r\n\t ", 0, AG_INVALID, "" },
		{ "only a comment", "(just a comment)", 0, AG_INVALID, "" },
		{ "comment then ;", "(c); spf=pass", 0, AG_INVALID, "" },
		{ "starts with ;", "; spf=pass", 0, AG_INVALID, "" },
		{ "unbalanced (", "(a (b) mx.example.org;", 0, AG_INVALID, "" },
		{ "stray )", ") mx.example.org;", 0, AG_INVALID, "" },
		{ "stray ) then (", ")( mx.example.org;", 0, AG_INVALID, "" },
		{ "comment ends in \\", "(a\\", 0, AG_INVALID, "" },
		{ "backslash outside", "\\mx;", 0, AG_INVALID, "" },
		{ "unterminated quote", "\"mx.example.org; spf=pass", 0,
		    AG_INVALID, "" },
		{ "quote ends in \\", "\"mx\\", 0, AG_INVALID, "" },
		{ "empty quoted", "\"\"; none", 0, AG_INVALID, "" },
		{ "OUTSZ-1 token", "abcde;", 6, AG_OK, "abcde" },
		{ "OUTSZ token", "abcdef;", 6, AG_INVALID, "abcde" },
		{ "OUTSZ-1 quoted", "\"ab\\\"de\";", 6, AG_OK, "ab\"de" },
		{ "OUTSZ quoted", "\"abcdef\";", 6, AG_INVALID, "abcde" },
		{ "folds not counted", "\"ab\r\n\tc\";", 5, AG_OK, "ab\tc" },
		{ "OUTSZ 1", "a;", 1, AG_INVALID, "" },
	};
	char out[4] = "###";
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		check_id(cases[i].label, cases[i].value, cases[i].outsz,
		    cases[i].want, cases[i].id);
	}
	check_status("value NULL", ag_authres_parse_id(NULL, out, 4),
	    AG_INVALID);
	check_str("value NULL", "id", out, "");
	check_status("out NULL", ag_authres_parse_id("x", NULL, 4), AG_INVALID);
	check_status("OUTSZ 0", ag_authres_parse_id("x", out, 0), AG_INVALID);
}

/* Our own headers read back as the id they were made with. */
static void
test_parse_id_ours(void **state)
{
	static const char *const ids[] = { "mx.example.org", "MX.Example.Org",
		"mail.example.org/0C5B13F980", "a b", "x\"y\\z", "(c); x" };
	static const struct ag_authres_prop props[] = {
		{ "header", "d", "example.com" },
		{ "header", "b", "\"(;" },
	};
	struct ag_authres *ar;
	size_t i, j;
	char *v;

	(void)state;
	for (i = 0; i < NELEM(ids); i++) {
		ar = ag_authres_new(ids[i]);
		assert_non_null(ar);
		for (j = 0; j < 20; j++) {	/* 20 results */
			check_status(ids[i], ag_authres_add(ar, "dkim", "pass",
			    "r(\"", props, NELEM(props)), AG_OK);
		}
		v = ag_authres_render(ar);
		assert_non_null(v);
		check_id(ids[i], v, 0, AG_OK, ids[i]);
		free(v);
		ag_authres_free(ar);
	}
}

/* Milliseconds since some fixed point. */
static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A new string: A NA times, B NB times, then TAIL. */
static char *
build(const char *a, size_t na, const char *b, size_t nb, const char *tail)
{
	char *s = repeat(a, na, ""), *t = repeat(b, nb, tail);
	char *r = malloc(strlen(s) + strlen(t) + 1);

	assert_non_null(r);
	strcpy(r, s);
	strcat(r, t);
	free(s), free(t);
	return r;
}

/* Long and hostile values: bounded output, one pass, no recursion. */
static void
test_parse_id_long(void **state)
{
	enum { KB4 = 4096 / 32, KB100 = 100 * 1024, MB = 1024 * 1024 };
	static char a255[ID_OUTSZ];	/* the longest id that fits */
	const struct {
		const char *label;
		char *value;
		ag_status want;
		const char *id;
	} cases[] = {
		{ "4 KB header", build("mx.example.org; ", 1,
		    "dkim=pass d=x.org; ", KB4 * 2, "spf=pass"), AG_OK,
		    "mx.example.org" },
		{ "4 KB comment first", build("(c (d) \\) e; \"f\" )", KB4 * 2,
		    "", 0, " mx.example.org; none"), AG_OK, "mx.example.org" },
		{ "100 KB broken rest (OpenDKIM #434)",
		    build("mx.example.org; ", 1, "\"(\\", KB100 / 3, ""),
		    AG_OK, "mx.example.org" },
		{ "100 KB of (", build("(", KB100, "", 0, ""), AG_INVALID, "" },
		{ "100 KB deep, closed", build("(", KB100, ")", KB100,
		    "mx.example.org"), AG_OK, "mx.example.org" },
		{ "255-byte id", build("a", ID_OUTSZ - 1, "", 0, "; none"),
		    AG_OK, a255 },
		{ "256-byte id", build("a", ID_OUTSZ, "", 0, "; none"),
		    AG_INVALID, a255 },
		{ "1 MB of (", build("(", MB, "", 0, ""), AG_INVALID, "" },
		{ "1 MB of (\\(", build("(\\(", MB / 3, "", 0, ""), AG_INVALID,
		    "" },
		{ "1 MB of folds", build("\r\n ", MB / 3, "", 0,
		    "mx.example.org"), AG_OK, "mx.example.org" },
		{ "1 MB of ()", build("()", MB / 2, "", 0, "mx.example.org"),
		    AG_OK, "mx.example.org" },
		{ "1 MB quoted, open", build("\"", 1, "\r\n", MB / 2, ""),
		    AG_INVALID, "" },
		{ "1 MB quoted, pairs", build("\"", 1, "\\a", MB / 2, ""),
		    AG_INVALID, a255 },
		{ "1 MB token", build("a", MB, "", 0, ""), AG_INVALID, a255 },
	};
	double t, worst = 0;
	size_t i;

	(void)state;
	memset(a255, 'a', ID_OUTSZ - 1);
	for (i = 0; i < NELEM(cases); i++) {
		t = now_ms();
		check_id(cases[i].label, cases[i].value, 0, cases[i].want,
		    cases[i].id);
		t = now_ms() - t;
		worst = t > worst ? t : worst;
		fprintf(stderr, "# parse_id %s (%zu bytes): %.3f ms\n",
		    cases[i].label, strlen(cases[i].value), t);
		free(cases[i].value);
	}
	if (worst > 250) {	/* linear: a few ms, even under ASan */
		fail_msg("slowest value took %.1f ms", worst);
	}
}

/* ---- the python3-authres step ------------------------------------------ */

static const char python_check[] =
    "import os, re, sys\n"
    "try:\n"
    "    import authres\n"
    "except ImportError as e:\n"
    "    sys.stderr.write('# python3-authres is missing (%s); it is a test '\n"
    "        'dependency: apt-get install python3-authres\\n' % e)\n"
    "    sys.exit(3)\n"
    "d, want = sys.argv[1], int(sys.argv[2])\n"
    "def unhex(f):\n"
    "    return bytes.fromhex(f[1:]).decode('ascii')\n"
    "def unquote(s):\n"
    "    return None if s is None else re.sub(r'\\\\(.)', r'\\1', s, "
    "flags=re.S)\n"
    "def expect(path):\n"
    "    label, hdr, aid, res = '?', '', '', []\n"
    "    for line in open(path):\n"
    "        f = line.split()\n"
    "        if f[0] == 'label': label = unhex(f[1])\n"
    "        elif f[0] == 'header': hdr = unhex(f[1])\n"
    "        elif f[0] == 'id': aid = unhex(f[1])\n"
    "        elif f[0] == 'result': res.append((unhex(f[1]).lower(),\n"
    "            unhex(f[2]).lower(), None if f[3] == '-' else unhex(f[3]),"
    " []))\n"
    "        elif f[0] == 'prop': res[-1][3].append((unhex(f[1]).lower(),\n"
    "            unhex(f[2]).lower(), unhex(f[3]), f[4] == 'q'))\n"
    "    return label, hdr, aid, res\n"
    "def check(hdr, aid, res):\n"
    "    flat = re.sub(r'\\r?\\n(?=[ \\t])', '', hdr)\n"
    "    if '\\n' in flat or '\\r' in flat: return ['bare line break']\n"
    "    try:\n"
    "        h = authres.AuthenticationResultsHeader.parse("
    "'Authentication-Results: ' + flat)\n"
    "    except Exception as e:\n"
    "        return ['does not parse: %s' % e]\n"
    "    bad = []\n"
    "    if h.authserv_id != aid.lower():\n"
    "        bad.append('authserv-id %r, want %r' % (h.authserv_id, aid))\n"
    "    if len(h.results) != len(res):\n"
    "        bad.append('%d results, want %d' % (len(h.results), len(res)))\n"
    "    for r, (m, v, reason, props) in zip(h.results, res):\n"
    "        got = (r.method, r.result, unquote(r.reason))\n"
    "        if got != (m, v, reason):\n"
    "            bad.append('result %r, want %r' % (got, (m, v, reason)))\n"
    "        gotp = [(p.type, p.name, unquote(p.value))\n"
    "                for p in r.properties]\n"
    "        full = [(t, n, x) for t, n, x, q in props]\n"
    "        # authres 1.2.0 drops quoted values that do not end a result\n"
    "        lossy = [(t, n, x) for i, (t, n, x, q) in enumerate(props)\n"
    "            if not q or i == len(props) - 1]\n"
    "        if gotp != full and gotp != lossy:\n"
    "            bad.append('properties %r, want %r' % (gotp, full))\n"
    "    return bad\n"
    "seen = failed = 0\n"
    "for name in sorted(os.listdir(d)):\n"
    "    if not name.startswith('u'): continue\n"
    "    seen += 1\n"
    "    label, hdr, aid, res = expect(os.path.join(d, name))\n"
    "    bad = check(hdr, aid, res)\n"
    "    for b in bad:\n"
    "        sys.stderr.write('# %s: %s\\n#   header: %r\\n'\n"
    "            % (label, b, hdr))\n"
    "    failed += bool(bad)\n"
    "if seen != want:\n"
    "    sys.stderr.write('# %d headers found, want %d\\n' % (seen, want))\n"
    "    failed += 1\n"
    "sys.exit(1 if failed else 0)\n";

/* Run PYTHON on the headers written so far; its exit status. */
static int
run_python(void)
{
	char count[32];
	pid_t pid;
	int status;

	snprintf(count, sizeof(count), "%u", nunits);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		fail_msg("fork: %s", strerror(errno));
	}
	if (pid == 0) {
		dup2(STDERR_FILENO, STDOUT_FILENO);	/* keep TAP clean */
		execl(PYTHON, "python3", "-c", python_check, tmpdir, count,
		    (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0) {
		fail_msg("waitpid: %s", strerror(errno));
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Every Authentication-Results value above parses with python3-authres. */
static void
test_python_authres(void **state)
{
	int rc;

	(void)state;
	if (access(PYTHON, X_OK) != 0) {
		fail_msg("%s is missing: python3 and python3-authres are test "
		    "dependencies (apt-get install python3-authres)", PYTHON);
	}
	if (nunits < 100) {
		fail_msg("only %u headers were written for python3-authres",
		    nunits);
	}
	rc = run_python();
	if (rc == 3) {
		fail_msg("python3-authres is not installed for %s: it is a "
		    "test dependency (apt-get install python3-authres)",
		    PYTHON);
	}
	if (rc != 0) {
		fail_msg("python3-authres disagrees on some of the %u headers "
		    "(exit %d; details on stderr)", nunits, rc);
	}
}

/* ---- main --------------------------------------------------------------- */

/* Make the directory the python step reads. */
static int
setup(void **state)
{
	const char *dir = getenv("TMPDIR");

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/t_authres.XXXXXX",
	    dir != NULL && *dir != '\0' ? dir : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		fprintf(stderr, "# mkdtemp %s: %s\n", tmpdir, strerror(errno));
		return -1;
	}
	return 0;
}

/* Remove that directory and what is in it. */
static int
teardown(void **state)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(tmpdir);

	(void)state;
	while (d != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", tmpdir,
			    de->d_name);
			unlink(path);
		}
	}
	if (d != NULL) {
		closedir(d);
	}
	rmdir(tmpdir);
	return 0;
}

/* Run the tests in order; the python step must stay last. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_authres),
		cmocka_unit_test(test_golden_twenty),
		cmocka_unit_test(test_pvalue_hostile),
		cmocka_unit_test(test_pvalue_long),
		cmocka_unit_test(test_reason),
		cmocka_unit_test(test_authserv_id),
		cmocka_unit_test(test_add_invalid),
		cmocka_unit_test(test_keyword_length),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_null_args),
		cmocka_unit_test(test_folding_sweep),
		cmocka_unit_test(test_golden_received_spf),
		cmocka_unit_test(test_received_spf_values),
		cmocka_unit_test(test_received_spf_long),
		cmocka_unit_test(test_received_spf_comment),
		cmocka_unit_test(test_received_spf_comment_long),
		cmocka_unit_test(test_received_spf_result),
		cmocka_unit_test(test_alloc_failure),
		cmocka_unit_test(test_parse_id),
		cmocka_unit_test(test_parse_id_ours),
		cmocka_unit_test(test_parse_id_long),
		/* Last: it reads what the tests above wrote. */
		cmocka_unit_test(test_python_authres),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
