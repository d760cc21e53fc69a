/*
 * t_signtable.c - the DKIM signing table (lib/signtable.c) over a real
 * SQLite store: patterns, which entries sign a From domain (exact before
 * the longest .suffix before *, every key of the winner), adding,
 * deleting, reading back, and keys that cannot be loaded (kept as errors,
 * never dropped).  Keys are made with openssl(1) at run time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "signtable.h"
#include "store.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static char dir[64], db[128], rsa[128], ed[128], loose[128];

static int
setup(void **state)
{
	char cmd[1024];

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/t_signtable.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/ag.db", dir);
	snprintf(rsa, sizeof(rsa), "%s/rsa.key", dir);
	snprintf(ed, sizeof(ed), "%s/ed.key", dir);
	snprintf(loose, sizeof(loose), "%s/loose.key", dir);
	snprintf(cmd, sizeof(cmd), "umask 077 && openssl genpkey -algorithm "
	    "RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null && "
	    "openssl genpkey -algorithm ed25519 -out %s 2>/dev/null && "
	    "cp %s %s && chmod 0644 %s", rsa, ed, ed, loose, loose);
	if (system(cmd) != 0) {
		fail_msg("openssl genpkey failed");
	}
	return 0;
}

static int
teardown(void **state)
{
	char cmd[256];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_patterns(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "example.com", "example.com" },
		{ "Example.COM.", "example.com" },
		{ ".example.com", ".example.com" },
		{ "*", "*" },
		{ "*.example.com", NULL },
		{ "..example.com", NULL },
		{ "", NULL },
		{ "exa mple.com", NULL },
	};
	char out[300];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		ag_status st = ag_sign_pattern_normalize(cases[i].in, out,
		    sizeof(out));

		if (cases[i].out == NULL) {
			if (st == AG_OK) {
				fail_msg("'%s' accepted as '%s'", cases[i].in, out);
			}
		} else {
			if (st != AG_OK) {
				fail_msg("'%s' refused", cases[i].in);
			}
			assert_string_equal(out, cases[i].out);
		}
	}
}

/* Add an entry; returns its id. */
static int64_t
add(struct ag_store *s, const char *pattern, const char *domain,
    const char *sel, enum ag_sign_alg alg, const char *key)
{
	struct ag_sign_entry e;
	int64_t id = 0;

	memset(&e, 0, sizeof(e));
	snprintf(e.pattern, sizeof(e.pattern), "%s", pattern);
	snprintf(e.domain, sizeof(e.domain), "%s", domain);
	snprintf(e.selector, sizeof(e.selector), "%s", sel);
	e.alg = alg;
	e.key_file = (char *)(uintptr_t)key;
	e.enabled = true;
	if (ag_signtable_add(s, &e, &id) != AG_OK) {
		fail_msg("add %s: %s", pattern, ag_store_errstr(s));
	}
	return id;
}

/* The selectors chosen for DOMAIN, "s1,s2". */
static void
chosen(const struct ag_signtable *t, const char *domain, const char *want)
{
	const struct ag_sign_entry *e[AG_SIGN_PER_MESSAGE_MAX];
	char got[128] = "";
	size_t n, i;

	n = ag_signtable_select(t, domain, e, NELEM(e));
	for (i = 0; i < n; i++) {
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s",
		    i ? "," : "", e[i]->selector);
	}
	if (strcmp(got, want) != 0) {
		fail_msg("%s: chose '%s', want '%s'", domain, got, want);
	}
}

static void
test_table(void **state)
{
	struct ag_store *s = NULL;
	struct ag_signtable *t = NULL;
	const struct ag_sign_entry *e;
	struct ag_sign_entry bad;
	int64_t id_loose, id_any;
	size_t i;

	(void)state;
	assert_int_equal(ag_store_open(db, AG_STORE_CREATE, 1000, &s), AG_OK);
	add(s, "example.com", "example.com", "rsa", AG_SIGN_RSA_SHA256, rsa);
	add(s, "example.com", "example.com", "ed", AG_SIGN_ED25519_SHA256, ed);
	add(s, ".example.com", "example.com", "sub", AG_SIGN_RSA_SHA256, rsa);
	add(s, ".deep.example.com", "example.com", "deep",
	    AG_SIGN_RSA_SHA256, rsa);
	id_any = add(s, "*", "provider.example.net", "any", AG_SIGN_RSA_SHA256,
	    rsa);
	id_loose = add(s, "loose.example.org", "loose.example.org", "loose",
	    AG_SIGN_RSA_SHA256, loose);
	add(s, "wrongtype.example.org", "wrongtype.example.org", "wt",
	    AG_SIGN_RSA_SHA256, ed);
	add(s, "gone.example.org", "gone.example.org", "gone",
	    AG_SIGN_RSA_SHA256, "/nonexistent/key.pem");

	/* refused before anything is written */
	memset(&bad, 0, sizeof(bad));
	snprintf(bad.pattern, sizeof(bad.pattern), "*.example.com");
	snprintf(bad.domain, sizeof(bad.domain), "example.com");
	snprintf(bad.selector, sizeof(bad.selector), "s");
	bad.key_file = rsa;
	assert_int_equal(ag_signtable_add(s, &bad, NULL), AG_INVALID);
	snprintf(bad.pattern, sizeof(bad.pattern), "example.com");
	snprintf(bad.selector, sizeof(bad.selector), "bad selector");
	assert_int_equal(ag_signtable_add(s, &bad, NULL), AG_INVALID);
	snprintf(bad.selector, sizeof(bad.selector), "s");
	bad.key_file = (char *)(uintptr_t)"relative.key";
	assert_int_equal(ag_signtable_add(s, &bad, NULL), AG_INVALID);

	assert_int_equal(ag_signtable_load(s, true, &t), AG_OK);
	assert_int_equal(ag_signtable_count(t), 8);
	chosen(t, "example.com", "rsa,ed");		/* exact: both keys */
	chosen(t, "mail.example.com", "sub");		/* .suffix */
	chosen(t, "a.deep.example.com", "deep");	/* the longest suffix */
	chosen(t, "deep.example.com", "deep");		/* .x covers x itself */
	chosen(t, "example.org", "any");		/* * */
	chosen(t, "", "");
	/* keys that cannot be used stay, with their error */
	for (i = 0; i < ag_signtable_count(t); i++) {
		e = ag_signtable_get(t, i);
		if (strcmp(e->selector, "loose") == 0 ||
		    strcmp(e->selector, "wt") == 0 ||
		    strcmp(e->selector, "gone") == 0) {
			if (e->key != NULL || e->error[0] == '\0') {
				fail_msg("%s: loaded", e->selector);
			}
			if (strstr(e->error, "BEGIN") != NULL) {
				fail_msg("%s: the error shows key material",
				    e->selector);
			}
		} else if (e->key == NULL) {
			fail_msg("%s: not loaded: %s", e->selector, e->error);
		}
	}
	e = NULL;
	ag_signtable_free(t);

	/* listing without keys, then a deletion */
	assert_int_equal(ag_signtable_load(s, false, &t), AG_OK);
	assert_null(ag_signtable_get(t, 0)->key);
	ag_signtable_free(t);
	assert_int_equal(ag_signtable_del(s, id_any), AG_OK);
	assert_int_equal(ag_signtable_del(s, id_any), AG_NOTFOUND);
	assert_int_equal(ag_signtable_del(s, id_loose), AG_OK);
	assert_int_equal(ag_signtable_load(s, false, &t), AG_OK);
	assert_int_equal(ag_signtable_count(t), 6);
	chosen(t, "example.org", "");
	ag_signtable_free(t);
	ag_store_close(s);
}

static void
test_canon(void **state)
{
	bool h, b;

	(void)state;
	assert_int_equal(ag_sign_canon_parse("simple/relaxed", &h, &b), 0);
	assert_true(h);
	assert_false(b);
	assert_int_equal(ag_sign_canon_parse("relaxed/simple", &h, &b), 0);
	assert_false(h);
	assert_true(b);
	assert_int_equal(ag_sign_canon_parse("relaxed", &h, &b), -1);
	assert_int_equal(ag_sign_canon_parse(NULL, &h, &b), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_patterns),
		cmocka_unit_test(test_canon),
		cmocka_unit_test(test_table),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
