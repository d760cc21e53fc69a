/*
 * t_dkim.c - lib/dkim.c over the resolver's local data.
 *
 * The messages and keys in tests/unit/dkim/ were made once by make.sh
 * there, with dkimpy as the signer (an implementation independent of
 * libopendkim); expect.txt lists what each must give.  Messages go through
 * lib/msgfile.c, as the offline mode feeds them, with the body re-cut into
 * chunks of varied sizes.  The rest builds messages in memory: tampered
 * copies, malformed signatures, many signatures, odd header fields.
 *
 * Key records are local data of the resolver (zones example.com. and
 * example.org., static; libunbound answers test. and invalid. itself);
 * anything else goes to 127.0.0.1@9, where nothing answers, with a 200 ms
 * timeout.  Timings of the costly cases are printed as TAP comments.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "dkim.h"
#include "dns.h"
#include "log.h"
#include "msgfile.h"

static struct ag_dns *dns;
static struct ag_dkim *dkim;
static char datadir[1024];

#define DEADLINE() (ag_dns_now_ms() + 5000)

/* Read a file of the data folder; NUL-terminated, *LEN without it. */
static char *
slurp(const char *file, size_t *len)
{
	char path[1200];
	FILE *fp;
	char *buf;
	long n = 0;

	snprintf(path, sizeof(path), "%s/%s", datadir, file);
	fp = fopen(path, "rb");
	if (fp == NULL) {
		fail_msg("cannot open %s", path);
	}
	if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 ||
	    fseek(fp, 0, SEEK_SET) != 0) {
		fail_msg("cannot size %s", path);
	}
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		fail_msg("cannot read %s", path);
	}
	buf[n] = '\0';
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static int
setup(void **state)
{
	struct ag_dns_opts o = { "127.0.0.1@9", 200 };
	const char *src = getenv("AG_SRCDIR");
	char err[256], *zone, *line, *save = NULL;
	size_t len;

	(void)state;
	ag_log_open("t_dkim", LOG_MAIL, 0);
	snprintf(datadir, sizeof(datadir), "%s/tests/unit/dkim",
	    src != NULL ? src : ".");
	if (ag_dns_new(&o, &dns, err, sizeof(err)) != AG_OK) {
		fail_msg("resolver: %s", err);
	}
	assert_int_equal(ag_dns_add_local_zone(dns, "example.com.", "static"),
	    AG_OK);
	assert_int_equal(ag_dns_add_local_zone(dns, "example.org.", "static"),
	    AG_OK);
	/* a server failure: REFUSED is a temporary failure for lib/dns.c */
	assert_int_equal(ag_dns_add_local_zone(dns, "example.edu.", "refuse"),
	    AG_OK);
	zone = slurp("zone.txt", &len);
	for (line = strtok_r(zone, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (line[0] != '#' && ag_dns_add_local(dns, line) != AG_OK) {
			fail_msg("local data refused: %.80s", line);
		}
	}
	free(zone);
	if (ag_dkim_new(dns, &dkim, err, sizeof(err)) != AG_OK) {
		fail_msg("dkim: %s", err);
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	ag_dkim_free(dkim);
	ag_dns_free(dns);
	return 0;
}

/* ---- feeding a message as a milter would ------------------------------ */

struct feed {
	struct ag_dkim_msg *m;
	size_t cut;		/* index into cuts[] */
	ag_status st;
};

/* Body chunk sizes, in turn: MTAs hand the body over in pieces that need
 * not end at line ends. */
static const size_t cuts[] = { 1, 7, 2, 64, 3, 1000, 5, 4096, 13, 65536 };

static int
on_header(void *arg, const char *name, const char *value)
{
	struct feed *f = arg;

	f->st = ag_dkim_header(f->m, name, value);
	return f->st != AG_OK;
}

static int
on_eoh(void *arg)
{
	struct feed *f = arg;

	f->st = ag_dkim_eoh(f->m);
	return f->st != AG_OK;
}

static int
on_body(void *arg, const unsigned char *buf, size_t len)
{
	struct feed *f = arg;

	while (len > 0 && f->st == AG_OK) {
		size_t n = cuts[f->cut++ % (sizeof(cuts) / sizeof(cuts[0]))];

		n = n < len ? n : len;
		f->st = ag_dkim_body(f->m, buf, n);
		buf += n;
		len -= n;
	}
	return f->st != AG_OK;
}

/* Verify the message MSG (LEN bytes); the caller frees the handle. */
static struct ag_dkim_msg *
verify_buf(const char *label, const char *msg, size_t len, unsigned max_sigs,
    uint64_t deadline)
{
	struct ag_msgfile_cb cb = { on_header, on_eoh, on_body, NULL };
	struct feed f = { 0 };
	char err[256];
	FILE *fp;

	f.m = ag_dkim_msg_new(dkim, label, max_sigs, deadline);
	if (f.m == NULL) {
		fail_msg("%s: ag_dkim_msg_new", label);
	}
	cb.arg = &f;
	fp = fmemopen((void *)(uintptr_t)msg, len, "r");
	if (fp == NULL) {
		fail_msg("%s: fmemopen", label);
	}
	if (ag_msgfile_read(fp, &cb, err, sizeof(err)) != AG_OK) {
		fail_msg("%s: msgfile: %s", label, err);
	}
	fclose(fp);
	if (f.st != AG_OK) {
		fail_msg("%s: feeding gave %s", label, ag_status_str(f.st));
	}
	if (ag_dkim_eom(f.m) != AG_OK) {
		fail_msg("%s: ag_dkim_eom failed", label);
	}
	return f.m;
}

/* Check the results of M against WANT ("pass,fail", "-" for none), that
 * every reason contains REASON (unless NULL or empty), and that a pass
 * comes with d=, s=, i=, 8 characters of b= and a key size. */
static void
check(const char *label, const struct ag_dkim_msg *m, const char *want,
    const char *reason)
{
	char list[512] = "";
	size_t n = ag_dkim_count(m);

	for (size_t i = 0; i < n; i++) {
		const struct ag_dkim_result *r = ag_dkim_get(m, i);

		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
		    i > 0 ? "," : "", ag_dkim_res_name(r->result));
		if (reason != NULL && reason[0] != '\0' &&
		    strstr(r->reason, reason) == NULL) {
			fail_msg("%s: signature %zu: reason \"%s\" lacks \"%s\"",
			    label, i, r->reason, reason);
		}
		if (r->result == AG_DKIM_PASS && (r->domain[0] == '\0' ||
		    r->selector[0] == '\0' || strlen(r->b) != 8 ||
		    r->identity[0] == '\0' || r->key_bits < 256)) {
			fail_msg("%s: signature %zu: pass with d=%s s=%s b=%s i=%s "
			    "bits=%u", label, i, r->domain, r->selector, r->b,
			    r->identity, r->key_bits);
		}
	}
	if (strcmp(list[0] != '\0' ? list : "-", want) != 0) {
		fail_msg("%s: got %s, want %s (first reason: %s)", label,
		    list[0] != '\0' ? list : "-", want,
		    n > 0 ? ag_dkim_get(m, 0)->reason : "");
	}
}

/* ---- the messages of the data folder ------------------------------------ */

static void
test_files(void **state)
{
	char *table, *line, *save = NULL;
	size_t len, cases = 0;

	(void)state;
	table = slurp("expect.txt", &len);
	for (line = strtok_r(table, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char *label, *file, *want, *reason, *p = line, *msg;
		struct ag_dkim_msg *m;
		size_t mlen;

		if (line[0] == '#') {
			continue;
		}
		label = strsep(&p, "|");
		file = strsep(&p, "|");
		want = strsep(&p, "|");
		reason = p != NULL ? p : (char *)"";
		if (file == NULL || want == NULL) {
			fail_msg("expect.txt: bad line: %s", line);
		}
		msg = slurp(file, &mlen);
		m = verify_buf(label, msg, mlen, 0, DEADLINE());
		check(label, m, want, reason);
		ag_dkim_msg_free(m);
		free(msg);
		cases++;
	}
	free(table);
	assert_true(cases >= 20);
}

/* Replace the first FROM in MSG by TO (same length or not); a copy. */
static char *
replace(const char *msg, const char *from, const char *to, size_t *len)
{
	const char *at = strstr(msg, from);
	size_t fl = strlen(from), tl = strlen(to), ml = strlen(msg);
	char *out;

	if (at == NULL) {
		fail_msg("replace: \"%s\" not found", from);
	}
	out = malloc(ml - fl + tl + 1);
	assert_non_null(out);
	memcpy(out, msg, (size_t)(at - msg));
	memcpy(out + (at - msg), to, tl);
	memcpy(out + (at - msg) + tl, at + fl, ml - (size_t)(at - msg) - fl + 1);
	*len = ml - fl + tl;
	return out;
}

static void
test_tampered(void **state)
{
	static const struct {
		const char *label, *file, *from, *to, *want, *reason;
	} cases[] = {
		{ "header changed (simple)", "ss.eml", "Subject: DKIM test",
		  "Subject: DKIM best", "fail", "did not verify" },
		{ "header changed (relaxed)", "rr.eml", "Subject: DKIM test",
		  "Subject: DKIM best", "fail", "did not verify" },
		{ "body changed (simple)", "ss.eml", "Hello Bob", "Hello Rob",
		  "fail", "body hash" },
		{ "body changed (relaxed)", "rr.eml", "Hello Bob", "Hello Rob",
		  "fail", "body hash" },
		{ "relaxed body keeps its white space changes", "rr.eml",
		  "doubled   spaces", "doubled spaces", "pass", NULL },
		{ "simple body does not", "ss.eml", "doubled   spaces",
		  "doubled spaces", "fail", "body hash" },
		{ "RSA signature of two changed", "two.eml", "Hello Bob",
		  "Hello Rob", "fail,fail", "body hash" },
		{ "signed text after l= changed", "l.eml", "Hello Bob",
		  "Hello Rob", "fail", "body hash" },
		{ "text after l= changed", "l.eml", "Appended after",
		  "Changed after", "policy", "partly signed" },
		{ "Ed25519 header changed", "ed.eml", "Subject: DKIM test",
		  "Subject: DKIM best", "fail", "did not verify" },
		{ "testing key (t=y): a failure is neutral", "key-testing.eml",
		  "Hello Bob", "Hello Rob", "neutral", "testing" },
		{ "key server refuses (as SERVFAIL)", "key-timeout.eml",
		  "d=example.net;\n i=@example.net;",
		  "d=example.edu;\n i=@example.edu;", "temperror", "failed" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len, mlen;
		char *orig = slurp(cases[i].file, &len);
		char *msg = replace(orig, cases[i].from, cases[i].to, &mlen);
		struct ag_dkim_msg *m;

		m = verify_buf(cases[i].label, msg, mlen, 0, DEADLINE());
		check(cases[i].label, m, cases[i].want, cases[i].reason);
		ag_dkim_msg_free(m);
		free(msg);
		free(orig);
	}
}

/* ---- malformed signatures --------------------------------------------- */

/* base.eml with the field SIG on top. */
static char *
with_field(const char *sig, size_t *len)
{
	size_t blen, slen = strlen(sig);
	char *base = slurp("base.eml", &blen);
	char *msg = malloc(slen + 1 + blen + 1);

	assert_non_null(msg);
	memcpy(msg, sig, slen);
	msg[slen] = '\n';
	memcpy(msg + slen + 1, base, blen + 1);
	free(base);
	*len = slen + 1 + blen;
	return msg;
}

/* A string of N copies of UNIT. */
static char *
repeat(const char *unit, size_t n)
{
	size_t ul = strlen(unit);
	char *s = malloc(ul * n + 1);

	assert_non_null(s);
	for (size_t i = 0; i < n; i++) {
		memcpy(s + i * ul, unit, ul);
	}
	s[ul * n] = '\0';
	return s;
}

#define SIG_OK_TAGS "a=rsa-sha256; d=example.com; s=r2048; h=from:to; " \
	"bh=AAAA; b=AAAAAAAAAAAA"

static void
test_bad_signatures(void **state)
{
	char *big_z = repeat("zzzzzzzzzz", 4096), *big_h = repeat("from:", 8192);
	char zsig[41100], hsig[41100];
	const struct {
		const char *label, *field, *want, *reason;
	} cases[] = {
		{ "missing d=", "DKIM-Signature: v=1; a=rsa-sha256; s=r2048; "
		  "h=from; bh=AAAA; b=AAAA", "permerror", "missing d=" },
		{ "missing b=", "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; "
		  "s=r2048; h=from; bh=AAAA", "permerror", "missing b=" },
		{ "missing h=", "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; "
		  "s=r2048; bh=AAAA; b=AAAA", "permerror", "missing h=" },
		{ "duplicate d=", "DKIM-Signature: v=1; " SIG_OK_TAGS
		  "; d=example.org", "permerror", "duplicate tag" },
		{ "v=2", "DKIM-Signature: v=2; " SIG_OK_TAGS, "permerror",
		  "version" },
		{ "unknown a=", "DKIM-Signature: v=1; a=rsa-md5; d=example.com; "
		  "s=r2048; h=from; bh=AAAA; b=AAAA", "permerror", "algorithm" },
		{ "b= not base64", "DKIM-Signature: v=1; a=rsa-sha256; "
		  "d=example.com; s=r2048; h=from; bh=AAAA; b=A*A!", "permerror",
		  "base64" },
		{ "b= with '=' inside", "DKIM-Signature: v=1; a=rsa-sha256; "
		  "d=example.com; s=r2048; h=from; bh=AAAA; b=AA=AA", "permerror",
		  "base64" },
		{ "tag without value sign", "DKIM-Signature: v=1; " SIG_OK_TAGS
		  "; x", "permerror", "without '='" },
		{ "8-bit byte in a value", "DKIM-Signature: v=1; " SIG_OK_TAGS
		  "; z=caf\xc3\xa9", "permerror", "bad character" },
		{ "q= without dns/txt", "DKIM-Signature: v=1; " SIG_OK_TAGS
		  "; q=file", "permerror", "q=" },
		{ "empty value", "DKIM-Signature:", "permerror", "missing" },
		{ "key name too long", "DKIM-Signature: v=1; a=rsa-sha256; "
		  "d=example.com; h=from; bh=AAAA; b=AAAA; s="
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "permerror", "too long" },
		{ "well-formed, but the signature is wrong", "DKIM-Signature: v=1; "
		  SIG_OK_TAGS, "fail", "did not verify" },
		{ "i= outside d=", "DKIM-Signature: v=1; " SIG_OK_TAGS
		  "; i=a@example.org", "permerror", "" },
		{ "40 KB z=", zsig, "fail", "" },
		{ "40 KB h=", hsig, "fail", "" },
	};

	(void)state;
	snprintf(zsig, sizeof(zsig), "DKIM-Signature: v=1; %s; z=%s",
	    SIG_OK_TAGS, big_z);
	snprintf(hsig, sizeof(hsig), "DKIM-Signature: v=1; a=rsa-sha256; "
	    "d=example.com; s=r2048; bh=AAAA; b=AAAA; h=%sfrom", big_h);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		char *msg = with_field(cases[i].field, &len);
		struct ag_dkim_msg *m = verify_buf(cases[i].label, msg, len, 0,
		    DEADLINE());

		check(cases[i].label, m, cases[i].want, cases[i].reason);
		ag_dkim_msg_free(m);
		free(msg);
	}
	free(big_z);
	free(big_h);
}

/* ---- many signatures, the cap and the budget --------------------------- */

/* The DKIM-Signature field at the top of MSG (up to the next field). */
static size_t
first_field_len(const char *msg)
{
	const char *p = msg;

	while ((p = strchr(p, '\n')) != NULL && (p[1] == ' ' || p[1] == '\t')) {
		p++;
	}
	assert_non_null(p);
	return (size_t)(p - msg) + 1;
}

/* COPIES of the first field of FILE on top of FILE. */
static char *
many_copies(const char *file, size_t copies, size_t *len)
{
	size_t flen;
	char *orig = slurp(file, &flen);
	size_t sl = first_field_len(orig);
	char *msg = malloc(sl * copies + flen + 1);

	assert_non_null(msg);
	for (size_t i = 0; i < copies; i++) {
		memcpy(msg + i * sl, orig, sl);
	}
	memcpy(msg + copies * sl, orig + sl, flen - sl + 1);
	*len = copies * sl + flen - sl;
	free(orig);
	return msg;
}

static void
test_many_signatures(void **state)
{
	struct ag_dns_stats before, after;
	struct ag_dkim_msg *m;
	uint64_t t0, ms;
	size_t len;
	char *msg = many_copies("rr.eml", 200, &len);

	(void)state;
	ag_dns_stats(dns, &before);
	t0 = ag_dns_now_ms();
	m = verify_buf("200 signatures", msg, len, 0, DEADLINE());
	ms = ag_dns_now_ms() - t0;
	ag_dns_stats(dns, &after);
	assert_int_equal(ag_dkim_count(m), 200);
	for (size_t i = 0; i < 200; i++) {
		const struct ag_dkim_result *r = ag_dkim_get(m, i);
		bool in = i < AG_DKIM_MAX_SIGS_DEFAULT;

		if (r->evaluated != in ||
		    r->result != (in ? AG_DKIM_PASS : AG_DKIM_NEUTRAL) ||
		    (!in && strstr(r->reason, "more than 5") == NULL)) {
			fail_msg("signature %zu: %s evaluated=%d (%s)", i,
			    ag_dkim_res_name(r->result), r->evaluated, r->reason);
		}
	}
	if (after.queries - before.queries > AG_DKIM_MAX_SIGS_DEFAULT) {
		fail_msg("%llu key queries for 5 evaluated signatures",
		    (unsigned long long)(after.queries - before.queries));
	}
	printf("# 200 signatures (5 evaluated): %llu ms\n",
	    (unsigned long long)ms);
	if (ms > 1000) {
		fail_msg("200 signatures took %llu ms", (unsigned long long)ms);
	}
	ag_dkim_msg_free(m);

	m = verify_buf("cap of 2", msg, len, 2, DEADLINE());
	if (ag_dkim_get(m, 1)->result != AG_DKIM_PASS ||
	    ag_dkim_get(m, 2)->evaluated ||
	    strstr(ag_dkim_get(m, 2)->reason, "more than 2") == NULL) {
		fail_msg("cap of 2: %s, %s (%s)",
		    ag_dkim_res_name(ag_dkim_get(m, 1)->result),
		    ag_dkim_res_name(ag_dkim_get(m, 2)->result),
		    ag_dkim_get(m, 2)->reason);
	}
	free(msg);
	ag_dkim_msg_free(m);
}

/* FILE with N filler header fields after its first (signature) field. */
static char *
with_fillers(const char *file, size_t n, const char *unit, size_t *len)
{
	size_t flen, ul = strlen(unit);
	char *orig = slurp(file, &flen);
	size_t sl = first_field_len(orig);
	char *msg = malloc(flen + n * ul + 1);

	assert_non_null(msg);
	memcpy(msg, orig, sl);
	for (size_t i = 0; i < n; i++) {
		memcpy(msg + sl + i * ul, unit, ul);
	}
	memcpy(msg + sl + n * ul, orig + sl, flen - sl + 1);
	*len = flen + n * ul;
	free(orig);
	return msg;
}

static void
test_budget(void **state)
{
	char *h = repeat("x-filler:", 450), *sig, *unit, *msg;
	struct ag_dkim_msg *m;
	size_t len;
	uint64_t t0, ms;

	(void)state;
	/* 200 signatures of 450 h= names each over 2,000 header fields:
	 * libopendkim would select headers 200 x 450 x 2,000 times */
	sig = malloc(strlen(h) + 200);
	assert_non_null(sig);
	snprintf(sig, strlen(h) + 200, "DKIM-Signature: v=1; a=rsa-sha256; "
	    "d=example.com; s=r2048; bh=AAAA; b=AAAA; h=%sfrom\n", h);
	unit = repeat(sig, 200);
	{
		char *fill = repeat("X-Filler: 1\n", 1800);
		size_t ul = strlen(unit), fl = strlen(fill), blen;
		char *base = slurp("base.eml", &blen);

		msg = malloc(ul + fl + blen + 1);
		assert_non_null(msg);
		memcpy(msg, unit, ul);
		memcpy(msg + ul, fill, fl);
		memcpy(msg + ul + fl, base, blen + 1);
		len = ul + fl + blen;
		free(fill);
		free(base);
	}
	t0 = ag_dns_now_ms();
	m = verify_buf("over the budget", msg, len, 0, DEADLINE());
	ms = ag_dns_now_ms() - t0;
	printf("# 200 signatures x 450 h= names x 2,000 fields: %llu ms\n",
	    (unsigned long long)ms);
	assert_int_equal(ag_dkim_count(m), 200);
	for (size_t i = 0; i < 200; i++) {
		const struct ag_dkim_result *r = ag_dkim_get(m, i);

		if (r->evaluated || r->result != AG_DKIM_NEUTRAL ||
		    strstr(r->reason, "too costly") == NULL) {
			fail_msg("budget: signature %zu: %s (%s)", i,
			    ag_dkim_res_name(r->result), r->reason);
		}
	}
	if (ms > 1000) {
		fail_msg("over the budget took %llu ms", (unsigned long long)ms);
	}
	ag_dkim_msg_free(m);
	free(msg);
	free(unit);
	free(sig);
	free(h);
}

static void
test_odd_headers(void **state)
{
	char *long_line = repeat("y", 5000), field[5100];
	const struct {
		const char *label, *file;
		size_t n;
		const char *unit, *want, *reason;
	} cases[] = {
		{ "10,000 header fields", "rr.eml", 10000, "X-Filler: some text\n",
		  "pass", NULL },
		{ "a header line of 5,000 bytes", "rr.eml", 1, field, "pass",
		  NULL },
		{ "folded field of many lines", "ss.eml", 1,
		  "X-Folded: a\n b\n\tc\n  d\n", "pass", NULL },
		{ "NUL inside a folded value", "rr.eml", 1,
		  "X-Nul: a\n b\0c\n", "pass", NULL },
		/* the bounds on what libopendkim holds (rr.eml has 7 fields,
		 * 846 bytes of them as dkim_header() gets them) */
		{ "20,000 header fields", "rr.eml", 20000 - 7, "X-F: x\n", "pass",
		  NULL },
		{ "20,001 header fields", "rr.eml", 20001 - 7, "X-F: x\n",
		  "neutral", "too costly" },
		{ "header of 1,047,518 bytes", "rr.eml", 209, field, "pass",
		  NULL },
		{ "header of 1,052,526 bytes", "rr.eml", 210, field, "neutral",
		  "too costly" },
	};

	(void)state;
	snprintf(field, sizeof(field), "X-Long: %s\n", long_line);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		char *msg;
		struct ag_dkim_msg *m;
		uint64_t t0 = ag_dns_now_ms();

		if (strncmp(cases[i].label, "NUL", 3) == 0) {
			/* the unit holds a NUL: splice it in by hand */
			static const char nul[] = "X-Nul: a\n b\0c\n";
			size_t flen, sl;
			char *orig = slurp(cases[i].file, &flen);

			sl = first_field_len(orig);
			msg = malloc(flen + sizeof(nul));
			assert_non_null(msg);
			memcpy(msg, orig, sl);
			memcpy(msg + sl, nul, sizeof(nul) - 1);
			memcpy(msg + sl + sizeof(nul) - 1, orig + sl, flen - sl + 1);
			len = flen + sizeof(nul) - 1;
			free(orig);
		} else {
			msg = with_fillers(cases[i].file, cases[i].n, cases[i].unit,
			    &len);
		}
		m = verify_buf(cases[i].label, msg, len, 0, DEADLINE());
		check(cases[i].label, m, cases[i].want, cases[i].reason);
		printf("# %s: %llu ms\n", cases[i].label,
		    (unsigned long long)(ag_dns_now_ms() - t0));
		ag_dkim_msg_free(m);
		free(msg);
	}
	free(long_line);
}

/* Fields and chunks straight through the API: bytes msgfile never makes. */
static void
test_raw_input(void **state)
{
	static const struct {
		const char *label, *name, *value;
		const char *body;
		size_t blen;
	} cases[] = {
		{ "bare CR in a value", "X-A", "a\rb", "text\r\n", 6 },
		{ "bare LF in a value", "X-A", "a\nb", "text\r\n", 6 },
		{ "CR LF without a fold", "X-A", "a\r\nb", "text\r\n", 6 },
		{ "signature with bare CR", "DKIM-Signature",
		  "v=1; a=rsa-sha256; d=example.com;\r s=r2048; h=from; bh=AAAA; "
		  "b=AAAA", "text", 4 },
		{ "body without final CRLF", "X-A", "a", "no line end", 11 },
		{ "body of bare LFs and CRs", "X-A", "a", "a\nb\rc\r\r\n\n", 9 },
		{ "name with a semicolon", "X;Y", "a", "text\r\n", 6 },
		{ "name with a control char", "X\001Y", "a", "text\r\n", 6 },
		{ "empty name", "", "a", "text\r\n", 6 },
	};
	size_t blen;
	char *rr = slurp("rr.eml", &blen);
	size_t sl = first_field_len(rr);

	(void)state;
	rr[sl - 1] = '\0';	/* the signature field alone, without "\n" */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ag_dkim_msg *m = ag_dkim_msg_new(dkim, "raw", 0, DEADLINE());
		const struct ag_dkim_result *r;

		assert_non_null(m);
		assert_int_equal(ag_dkim_header(m, "DKIM-Signature",
		    rr + strlen("DKIM-Signature: ")), AG_OK);
		assert_int_equal(ag_dkim_header(m, "From",
		    "Alice Example <alice@example.com>"), AG_OK);
		assert_int_equal(ag_dkim_header(m, cases[i].name, cases[i].value),
		    AG_OK);
		assert_int_equal(ag_dkim_eoh(m), AG_OK);
		assert_int_equal(ag_dkim_body(m, (const unsigned char *)
		    cases[i].body, cases[i].blen), AG_OK);
		assert_int_equal(ag_dkim_eom(m), AG_OK);
		if (ag_dkim_count(m) < 1 || (r = ag_dkim_get(m, 0)) == NULL ||
		    r->result == AG_DKIM_PASS || r->result == AG_DKIM_NONE) {
			fail_msg("%s: no defined result", cases[i].label);
		}
		ag_dkim_msg_free(m);
	}
	free(rr);
}

static void
test_deadline(void **state)
{
	size_t len;
	char *msg = slurp("rr.eml", &len);
	struct ag_dkim_msg *m;

	(void)state;
	m = verify_buf("deadline passed", msg, len, 0, ag_dns_now_ms() - 1);
	check("deadline passed", m, "temperror", "no time left");
	ag_dkim_msg_free(m);
	free(msg);
}

static void
test_api(void **state)
{
	struct ag_dkim_msg *m;

	(void)state;
	ag_dkim_free(NULL);
	ag_dkim_msg_free(NULL);
	assert_int_equal(ag_dkim_header(NULL, "a", "b"), AG_OK);
	assert_int_equal(ag_dkim_eom(NULL), AG_OK);
	assert_int_equal(ag_dkim_count(NULL), 0);
	assert_null(ag_dkim_get(NULL, 0));
	assert_string_equal(ag_dkim_res_name(AG_DKIM_PERMERROR), "permerror");
	assert_string_equal(ag_dkim_res_name(AG_DKIM_NRESULTS), "unknown");

	/* no eoh call, body first, eom twice: still a defined answer */
	m = ag_dkim_msg_new(dkim, NULL, 0, DEADLINE());
	assert_non_null(m);
	assert_int_equal(ag_dkim_header(m, "From", "a@example.com"), AG_OK);
	assert_int_equal(ag_dkim_body(m, (const unsigned char *)"x\r\n", 3),
	    AG_OK);
	assert_int_equal(ag_dkim_eom(m), AG_OK);
	assert_int_equal(ag_dkim_eom(m), AG_OK);
	assert_int_equal(ag_dkim_count(m), 0);
	assert_int_equal(ag_dkim_header(m, "X", "late"), AG_OK);
	assert_null(ag_dkim_get(m, 0));
	ag_dkim_msg_free(m);

	/* results only after eom */
	m = ag_dkim_msg_new(dkim, "x", 0, DEADLINE());
	assert_non_null(m);
	assert_int_equal(ag_dkim_header(m, "DKIM-Signature", "v=1"), AG_OK);
	assert_int_equal(ag_dkim_count(m), 0);
	assert_int_equal(ag_dkim_eom(m), AG_OK);
	assert_int_equal(ag_dkim_count(m), 1);
	ag_dkim_msg_free(m);
}

/* One verifier, several threads: the DNS hooks find each thread's own
 * message.  Failures are counted here and checked in the main thread
 * (cmocka's checks are not for other threads). */
struct worker {
	const char *msg;
	size_t len;
	int failures;
};

static void *
worker_run(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 20; i++) {
		struct ag_msgfile_cb cb = { on_header, on_eoh, on_body, NULL };
		struct feed f = { 0 };
		FILE *fp = fmemopen((void *)(uintptr_t)w->msg, w->len, "r");
		char err[64];

		f.m = ag_dkim_msg_new(dkim, "thread", 0, DEADLINE());
		cb.arg = &f;
		if (fp == NULL || f.m == NULL ||
		    ag_msgfile_read(fp, &cb, err, sizeof(err)) != AG_OK ||
		    ag_dkim_eom(f.m) != AG_OK || ag_dkim_count(f.m) != 2 ||
		    ag_dkim_get(f.m, 0)->result != AG_DKIM_PASS ||
		    ag_dkim_get(f.m, 1)->result != AG_DKIM_PASS) {
			w->failures++;
		}
		if (fp != NULL) {
			fclose(fp);
		}
		ag_dkim_msg_free(f.m);
	}
	return NULL;
}

static void
test_threads(void **state)
{
	pthread_t t[4];
	struct worker w[4];
	size_t len;
	char *msg = slurp("two.eml", &len);

	(void)state;
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ msg, len, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		if (w[i].failures != 0) {
			fail_msg("thread %d: %d of 20 messages did not pass", i,
			    w[i].failures);
		}
	}
	free(msg);
}

/*
 * lib/dkimpkey.c: libopendkim's d2i_PUBKEY_bio() is ours.  The same DER
 * gives the same decoded key (one more reference), other DER another
 * key, garbage nothing; a BIO that is not memory is read too.
 */
static void
test_pkey_cache(void **state)
{
	EVP_PKEY *gen[2] = { NULL, NULL }, *k1, *k2, *k3, *k4;
	unsigned char *der[2] = { NULL, NULL };
	int len[2];
	unsigned long h0, m0, h1, m1;
	BIO *b;
	int fds[2];

	(void)state;
	for (int i = 0; i < 2; i++) {
		gen[i] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		assert_non_null(gen[i]);
		len[i] = i2d_PUBKEY(gen[i], &der[i]);
		assert_true(len[i] > 0);
	}
	ag_dkim_pkey_stats(&h0, &m0);
	b = BIO_new_mem_buf(der[0], len[0]);
	k1 = d2i_PUBKEY_bio(b, NULL);
	assert_non_null(k1);
	assert_int_equal(BIO_pending(b), 0);	/* consumed */
	BIO_free(b);
	b = BIO_new_mem_buf(der[0], len[0]);
	k2 = d2i_PUBKEY_bio(b, NULL);
	BIO_free(b);
	assert_ptr_equal(k1, k2);
	assert_int_equal(EVP_PKEY_eq(k1, gen[0]), 1);
	ag_dkim_pkey_stats(&h1, &m1);
	assert_int_equal(h1 - h0, 1);
	assert_int_equal(m1 - m0, 1);
	b = BIO_new_mem_buf(der[1], len[1]);
	k3 = d2i_PUBKEY_bio(b, NULL);
	BIO_free(b);
	assert_non_null(k3);
	assert_ptr_not_equal(k3, k1);
	assert_int_equal(EVP_PKEY_eq(k3, gen[1]), 1);
	b = BIO_new_mem_buf("\x30\x03garbage", 10);
	assert_null(d2i_PUBKEY_bio(b, NULL));
	BIO_free(b);
	/* a pipe: not a memory BIO */
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], der[1], (size_t)len[1]), len[1]);
	close(fds[1]);
	b = BIO_new_fd(fds[0], BIO_CLOSE);
	k4 = d2i_PUBKEY_bio(b, NULL);
	BIO_free(b);
	assert_non_null(k4);
	assert_int_equal(EVP_PKEY_eq(k4, gen[1]), 1);
	/* raw Ed25519 keys (libopendkim's other way in) are kept too */
	{
		unsigned char raw[32];
		size_t rawlen = sizeof(raw);
		EVP_PKEY *r1, *r2, *x;

		assert_int_equal(EVP_PKEY_get_raw_public_key(gen[0], raw,
		    &rawlen), 1);
		r1 = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw,
		    rawlen);
		r2 = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw,
		    rawlen);
		assert_non_null(r1);
		assert_ptr_equal(r1, r2);
		assert_ptr_not_equal(r1, k1);	/* not the DER entry */
		assert_int_equal(EVP_PKEY_eq(r1, gen[0]), 1);
		assert_null(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
		    raw, 31));
		x = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, raw,
		    rawlen);
		assert_non_null(x);		/* other types: made, not kept */
		assert_int_equal(EVP_PKEY_get_id(x), EVP_PKEY_X25519);
		EVP_PKEY_free(x);
		EVP_PKEY_free(r1);
		EVP_PKEY_free(r2);
	}
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);	/* the cache holds its own reference */
	EVP_PKEY_free(k3);
	EVP_PKEY_free(k4);
	for (int i = 0; i < 2; i++) {
		EVP_PKEY_free(gen[i]);
		OPENSSL_free(der[i]);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_bad_signatures),
		cmocka_unit_test(test_many_signatures),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_odd_headers),
		cmocka_unit_test(test_raw_input),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_api),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_pkey_cache),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
