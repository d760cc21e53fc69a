/*
 * t_dmarcrec.c - unit tests for lib/dmarcrec.c: the DMARC record parser
 * (RFC 7489 6.3, 6.4, 6.6.3; np of RFC 9091) and the choice of the one
 * record at _dmarc.DOMAIN.  Table-driven: every case has a label that a
 * failure names.
 *
 * Each parse is checked against a one-line summary of the whole result
 * (policy, pct, alignment, non-default ri/fo, the kept URIs with their
 * sizes, the counters), so a case says everything it expects, and a
 * non-OK case checks that OUT holds the defaults.  The last test is a
 * deterministic fuzz loop over mutated records.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dmarcrec.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal and its length, NUL bytes inside included. */
#define REC(s) s, sizeof(s) - 1

#define OK AG_DMARC_REC_OK
#define NONE AG_DMARC_REC_NONE
#define BAD AG_DMARC_REC_INVALID

/* The summary of a record with every default. */
#define DEFAULTS "p=none sp=none np=none pct=100 adkim=r aspf=r"

struct pcase {
	const char *label;
	const char *txt;
	size_t len;
	enum ag_dmarc_rec_status want;
	const char *summary;	/* summarize() of OUT */
	const char *why;	/* in ERR; "" = ERR must be empty */
};

/* Append to BUF (size SZ, *OFF used) unless full. */
__attribute__((format(printf, 4, 5))) static void
app(char *buf, size_t sz, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off >= sz) {
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(buf + *off, sz - *off, fmt, ap);
	va_end(ap);
	*off += n < 0 ? 0 : (size_t)n;
}

/* ",uri!size" for each kept URI of a list. */
static void
app_uris(char *buf, size_t sz, size_t *off, const char *tag, size_t n,
    const char (*uri)[AG_DMARC_URI_SIZE], const uint64_t *size,
    unsigned skipped, unsigned bad)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (i == 0) {
			app(buf, sz, off, " %s=", tag);
		} else {
			app(buf, sz, off, ",");
		}
		app(buf, sz, off, "%s", uri[i]);
		if (size[i] != 0) {
			app(buf, sz, off, "!%llu", (unsigned long long)size[i]);
		}
	}
	if (skipped != 0) {
		app(buf, sz, off, " %s_skipped=%u", tag, skipped);
	}
	if (bad != 0) {
		app(buf, sz, off, " %s_bad=%u", tag, bad);
	}
}

/* One line for everything in R. */
static const char *
summarize(const struct ag_dmarc_record *r, char *buf, size_t sz)
{
	size_t off = 0;

	app(buf, sz, &off, "p=%s sp=%s np=%s pct=%u adkim=%c aspf=%c",
	    ag_dmarc_policy_name(r->p), ag_dmarc_policy_name(r->sp),
	    ag_dmarc_policy_name(r->np), r->pct, r->adkim_strict ? 's' : 'r',
	    r->aspf_strict ? 's' : 'r');
	if (r->has_sp) {
		app(buf, sz, &off, " has_sp");
	}
	if (r->has_np) {
		app(buf, sz, &off, " has_np");
	}
	if (r->ri != AG_DMARC_RI_DEFAULT) {
		app(buf, sz, &off, " ri=%lu", (unsigned long)r->ri);
	}
	if (r->fo != AG_DMARC_FO_0) {
		app(buf, sz, &off, " fo=0x%x", r->fo);
	}
	if (r->p_from_rua) {
		app(buf, sz, &off, " from_rua");
	}
	if (r->ignored != 0) {
		app(buf, sz, &off, " ignored=%u", r->ignored);
	}
	app_uris(buf, sz, &off, "rua", r->nrua, r->rua, r->rua_size,
	    r->rua_skipped, r->rua_bad);
	app_uris(buf, sz, &off, "ruf", r->nruf, r->ruf, r->ruf_size,
	    r->ruf_skipped, r->ruf_bad);
	return buf;
}

/* ERR must be NUL-terminated printable ASCII, and hold WHY. */
static void
check_err(const char *label, const char *err, size_t errlen,
    const char *why)
{
	size_t i;

	if (memchr(err, '\0', errlen) == NULL) {
		fail_msg("%s: ERR not NUL-terminated", label);
	}
	for (i = 0; err[i] != '\0'; i++) {
		if ((unsigned char)err[i] < 0x20 ||
		    (unsigned char)err[i] >= 0x7f) {
			fail_msg("%s: ERR has byte 0x%02x at %zu", label,
			    (unsigned char)err[i], i);
		}
	}
	if (why == NULL) {
		return;
	}
	if (why[0] == '\0' ? err[0] != '\0' : strstr(err, why) == NULL) {
		fail_msg("%s: ERR \"%s\", want \"%s\"", label, err, why);
	}
}

/* Parse C's record and check status, summary and ERR. */
static void
run_case(const struct pcase *c)
{
	struct ag_dmarc_record r;
	char err[256], sum[2048];
	enum ag_dmarc_rec_status st;

	memset(&r, 0xa5, sizeof(r));
	memset(err, 'x', sizeof(err));
	st = ag_dmarc_record_parse(c->txt, c->len, &r, err, sizeof(err));
	if (st != c->want) {
		fail_msg("%s: status %s, want %s (ERR: %s)", c->label,
		    ag_dmarc_rec_status_name(st),
		    ag_dmarc_rec_status_name(c->want), err);
	}
	summarize(&r, sum, sizeof(sum));
	if (strcmp(sum, c->summary) != 0) {
		fail_msg("%s:\n  got  %s\n  want %s", c->label, sum,
		    c->summary);
	}
	check_err(c->label, err, sizeof(err), c->why);
}

static void
run_cases(const struct pcase *c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		run_case(&c[i]);
	}
}

/* Well-formed records: the minimum, every tag, order, empty tags. */
static void
test_basic(void **state)
{
	static const struct pcase cases[] = {
		{ "minimal", REC("v=DMARC1; p=none"), OK,
		    DEFAULTS, "" },
		{ "minimal reject", REC("v=DMARC1; p=reject"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "no spaces", REC("v=DMARC1;p=quarantine"), OK,
		    "p=quarantine sp=quarantine np=quarantine pct=100 adkim=r "
		    "aspf=r", "" },
		{ "trailing semicolon", REC("v=DMARC1; p=reject;"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "empty tags", REC("v=DMARC1;; p=reject;;;"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "blank tags", REC("v=DMARC1; ; p=reject ;  ;"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "all tags",
		    REC("v=DMARC1; p=reject; sp=quarantine; np=none; pct=50; "
		    "adkim=s; aspf=s; rua=mailto:agg@example.com!10m; "
		    "ruf=mailto:fail@example.com; ri=3600; fo=1:d:s; rf=afrf"),
		    OK, "p=reject sp=quarantine np=none pct=50 adkim=s aspf=s "
		    "has_sp has_np ri=3600 fo=0xe "
		    "rua=mailto:agg@example.com!10485760 "
		    "ruf=mailto:fail@example.com", "" },
		{ "p after other tags",
		    REC("v=DMARC1; rua=mailto:a@x.example; pct=20; "
		    "p=quarantine"), OK,
		    "p=quarantine sp=quarantine np=quarantine pct=20 adkim=r "
		    "aspf=r rua=mailto:a@x.example", "" },
		{ "sp only differs", REC("v=DMARC1; p=none; sp=reject"), OK,
		    "p=none sp=reject np=reject pct=100 adkim=r aspf=r has_sp",
		    "" },
		{ "np alone", REC("v=DMARC1; p=none; np=reject"), OK,
		    "p=none sp=none np=reject pct=100 adkim=r aspf=r has_np",
		    "" },
		{ "np with sp",
		    REC("v=DMARC1; p=none; sp=quarantine; np=reject"), OK,
		    "p=none sp=quarantine np=reject pct=100 adkim=r aspf=r "
		    "has_sp has_np", "" },
		{ "relaxed spelled out", REC("v=DMARC1; p=none; adkim=r; "
		    "aspf=r"), OK, DEFAULTS, "" },
		{ "ri max", REC("v=DMARC1; p=none; ri=4294967295"), OK,
		    DEFAULTS " ri=4294967295", "" },
		{ "ri zero", REC("v=DMARC1; p=none; ri=0"), OK,
		    DEFAULTS " ri=0", "" },
		{ "fo with spaces", REC("v=DMARC1; p=none; fo = 0 : 1"), OK,
		    DEFAULTS " fo=0x3", "" },
		{ "fo upper case", REC("v=DMARC1; p=none; fo=D:S"), OK,
		    DEFAULTS " fo=0xc", "" },
		{ "rf two formats", REC("v=DMARC1; p=none; rf=afrf:iodef"), OK,
		    DEFAULTS, "" },
	};

	(void)state;
	run_cases(cases, NELEM(cases));
}

/* Case and white space: what RFC 7489 6.4 makes case-insensitive. */
static void
test_case_space(void **state)
{
	static const struct pcase cases[] = {
		{ "upper-case tag names",
		    REC("V=DMARC1; P=REJECT; SP=None; ADKIM=S; ASPF=R; PCT=10"),
		    OK, "p=reject sp=none np=none pct=10 adkim=s aspf=r has_sp",
		    "" },
		{ "mixed-case policy", REC("v=DMARC1; p=ReJeCt"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "lower-case DMARC1", REC("v=dmarc1; p=reject"), NONE,
		    DEFAULTS, "not a DMARC record" },
		{ "mixed-case DMARC1", REC("v=Dmarc1; p=reject"), NONE,
		    DEFAULTS, "not a DMARC record" },
		{ "spaces around = and ;",
		    REC("v = DMARC1 ; p = reject ; sp = none ;"), OK,
		    "p=reject sp=none np=none pct=100 adkim=r aspf=r has_sp",
		    "" },
		{ "tabs", REC("v\t=\tDMARC1\t;\tp\t=\treject\t"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "CR LF", REC("v=DMARC1;\r\n p=reject;\r\n"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "leading white space", REC("  v=DMARC1; p=reject"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "trailing white space", REC("v=DMARC1; p=reject   "), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "space inside a keyword", REC("v=DMARC1; p=re ject"), BAD,
		    DEFAULTS, "p: bad policy \"re ject\"" },
		{ "upper-case size unit and scheme",
		    REC("v=DMARC1; p=none; rua=MAILTO:a@x.example!2G"), OK,
		    DEFAULTS " rua=MAILTO:a@x.example!2147483648", "" },
	};

	(void)state;
	run_cases(cases, NELEM(cases));
}

/* v= first and exactly DMARC1, or the record is not DMARC at all. */
static void
test_version(void **state)
{
	static const struct pcase cases[] = {
		{ "v not first", REC("p=reject; v=DMARC1"), NONE, DEFAULTS,
		    "not a DMARC record" },
		{ "v=DMARC2", REC("v=DMARC2; p=reject"), NONE, DEFAULTS,
		    "not a DMARC record" },
		{ "v=DMARC10", REC("v=DMARC10; p=reject"), NONE, DEFAULTS,
		    "not a DMARC record" },
		{ "v=DMARC1 without ;", REC("v=DMARC1 p=reject"), NONE,
		    DEFAULTS, "not a DMARC record" },
		{ "v= empty", REC("v=; p=reject"), NONE, DEFAULTS,
		    "not a DMARC record" },
		{ "SPF record", REC("v=spf1 -all"), NONE, DEFAULTS,
		    "not a DMARC record" },
		{ "empty record", REC(""), NONE, DEFAULTS,
		    "not a DMARC record" },
		{ "site verification", REC("google-site-verification=abc"),
		    NONE, DEFAULTS, "not a DMARC record" },
		{ "v only", REC("v=DMARC1"), BAD, DEFAULTS, "no p= tag" },
		{ "v only with ;", REC("v=DMARC1;"), BAD, DEFAULTS,
		    "no p= tag" },
	};

	(void)state;
	run_cases(cases, NELEM(cases));
}

/* Duplicate, unknown and malformed tags. */
static void
test_tags(void **state)
{
	static const struct pcase cases[] = {
		{ "duplicate p", REC("v=DMARC1; p=reject; p=none"), BAD,
		    DEFAULTS, "duplicate tag \"p\"" },
		{ "duplicate p, same value", REC("v=DMARC1; p=reject; "
		    "p=reject"), BAD, DEFAULTS, "duplicate tag \"p\"" },
		{ "duplicate unknown tag", REC("v=DMARC1; p=reject; foo=1; "
		    "foo=2"), BAD, DEFAULTS, "duplicate tag \"foo\"" },
		{ "duplicate in other case", REC("v=DMARC1; p=reject; "
		    "rua=mailto:a@b.example; RUA=mailto:c@d.example"), BAD,
		    DEFAULTS, "duplicate tag \"RUA\"" },
		{ "duplicate v", REC("v=DMARC1; p=reject; v=DMARC1"), BAD,
		    DEFAULTS, "duplicate tag \"v\"" },
		{ "duplicate pct, bad values", REC("v=DMARC1; p=reject; "
		    "pct=x; pct=y"), BAD, DEFAULTS, "duplicate tag \"pct\"" },
		{ "unknown tag", REC("v=DMARC1; p=reject; foo=bar"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "DMARCbis tags", REC("v=DMARC1; p=reject; psd=n; t=y"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "unknown tag, empty value", REC("v=DMARC1; p=reject; x="),
		    OK, "p=reject sp=reject np=reject pct=100 adkim=r aspf=r",
		    "" },
		{ "unknown tag with spaces", REC("v=DMARC1; p=reject; "
		    "note=hello world"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "tag name with _ and digit", REC("v=DMARC1; p=reject; "
		    "x_1=1"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "tag without =", REC("v=DMARC1; p=reject; foo"), BAD,
		    DEFAULTS, "tag \"foo\" has no \"=\"" },
		{ "tag name starts with a digit", REC("v=DMARC1; p=reject; "
		    "1x=2"), BAD, DEFAULTS, "bad tag name \"1x\"" },
		{ "empty tag name", REC("v=DMARC1; p=reject; =x"), BAD,
		    DEFAULTS, "bad tag name \"\"" },
		{ "tag name with -", REC("v=DMARC1; p=reject; x-y=1"), BAD,
		    DEFAULTS, "bad tag name \"x-y\"" },
		{ "space inside a tag name", REC("v=DMARC1; p=reject; a b=1"),
		    BAD, DEFAULTS, "bad tag name \"a b\"" },
		{ "quote escaped in ERR", REC("v=DMARC1; p=reject; a\"\\"),
		    BAD, DEFAULTS, "tag \"a\\x22\\x5c\" has no" },
	};

	(void)state;
	run_cases(cases, NELEM(cases));
}

/* pct=: 1*3DIGIT, 0..100; anything else is ignored (pct=100). */
static void
test_pct(void **state)
{
	static const struct pcase cases[] = {
		{ "pct=0", REC("v=DMARC1; p=reject; pct=0"), OK,
		    "p=reject sp=reject np=reject pct=0 adkim=r aspf=r", "" },
		{ "pct=100", REC("v=DMARC1; p=reject; pct=100"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "pct=007", REC("v=DMARC1; p=reject; pct=007"), OK,
		    "p=reject sp=reject np=reject pct=7 adkim=r aspf=r", "" },
		{ "pct with spaces", REC("v=DMARC1; p=reject; pct = 50 "), OK,
		    "p=reject sp=reject np=reject pct=50 adkim=r aspf=r", "" },
		{ "pct=101", REC("v=DMARC1; p=reject; pct=101"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=1", "pct: \"101\" is not an integer 0..100" },
		{ "pct=-1", REC("v=DMARC1; p=reject; pct=-1"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=1", "pct: \"-1\"" },
		{ "pct=5x", REC("v=DMARC1; p=reject; pct=5x"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=1", "pct: \"5x\"" },
		{ "pct empty", REC("v=DMARC1; p=reject; pct="), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=1", "pct: \"\"" },
		{ "pct four digits", REC("v=DMARC1; p=reject; pct=0100"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=1", "pct: \"0100\"" },
		{ "pct huge", REC("v=DMARC1; p=quarantine; "
		    "pct=99999999999999999999"), OK,
		    "p=quarantine sp=quarantine np=quarantine pct=100 adkim=r "
		    "aspf=r ignored=1", "pct:" },
		{ "pct=1.5", REC("v=DMARC1; p=reject; pct=1.5"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=1", "pct: \"1.5\"" },
	};

	(void)state;
	run_cases(cases, NELEM(cases));
}

/* Bad values of the optional tags are ignored; their default applies. */
static void
test_ignored(void **state)
{
	static const struct pcase cases[] = {
		{ "adkim=x", REC("v=DMARC1; p=reject; adkim=x"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=1", "adkim: \"x\" is not r or s" },
		{ "aspf=strict", REC("v=DMARC1; p=reject; aspf=strict"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=1", "aspf: \"strict\"" },
		{ "ri junk", REC("v=DMARC1; p=none; ri=daily"), OK,
		    DEFAULTS " ignored=1", "ri: \"daily\"" },
		{ "ri past 32 bits", REC("v=DMARC1; p=none; ri=4294967296"),
		    OK, DEFAULTS " ignored=1", "ri:" },
		{ "fo=2", REC("v=DMARC1; p=none; fo=2"), OK,
		    DEFAULTS " ignored=1", "fo: bad options \"2\"" },
		{ "fo empty option", REC("v=DMARC1; p=none; fo=1::d"), OK,
		    DEFAULTS " ignored=1", "fo:" },
		{ "rf with space", REC("v=DMARC1; p=none; rf=a f"), OK,
		    DEFAULTS " ignored=1", "rf: bad formats" },
		{ "np invalid", REC("v=DMARC1; p=reject; np=maybe"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=1", "np: bad policy \"maybe\"" },
		{ "np invalid follows sp", REC("v=DMARC1; p=reject; "
		    "sp=none; np=0"), OK, "p=reject sp=none np=none pct=100 "
		    "adkim=r aspf=r has_sp ignored=1", "np:" },
		{ "first note kept, all counted", REC("v=DMARC1; p=reject; "
		    "adkim=1; aspf=2; pct=300"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=3", "adkim: \"1\"" },
	};

	(void)state;
	run_cases(cases, NELEM(cases));
}

/* p= missing or bad and sp= bad: RFC 7489 6.6.3 step 6. */
static void
test_step6(void **state)
{
	static const struct pcase cases[] = {
		{ "p missing, no rua", REC("v=DMARC1; sp=reject"), BAD,
		    DEFAULTS, "no p= tag and no valid rua= URI" },
		{ "p missing, valid rua",
		    REC("v=DMARC1; rua=mailto:d@example.com"), OK,
		    DEFAULTS " from_rua rua=mailto:d@example.com",
		    "no p= tag; read as p=none" },
		{ "p bad, valid rua, other tags",
		    REC("v=DMARC1; p=bogus; sp=reject; np=reject; pct=50; "
		    "adkim=s; rua=mailto:d@example.com"), OK,
		    "p=none sp=none np=none pct=100 adkim=s aspf=r from_rua "
		    "rua=mailto:d@example.com",
		    "p: bad policy \"bogus\"; read as p=none" },
		{ "p bad, no rua", REC("v=DMARC1; p=bogus"), BAD, DEFAULTS,
		    "p: bad policy \"bogus\" and no valid rua= URI" },
		{ "p empty", REC("v=DMARC1; p="), BAD, DEFAULTS,
		    "p: bad policy \"\"" },
		{ "p bad, only junk rua", REC("v=DMARC1; p=bogus; rua=junk"),
		    BAD, DEFAULTS, "p: bad policy" },
		{ "p missing, https rua",
		    REC("v=DMARC1; rua=https://r.example/dmarc"), OK,
		    DEFAULTS " from_rua rua_skipped=1", "read as p=none" },
		{ "p missing, rua with one good URI",
		    REC("v=DMARC1; rua=junk, mailto:d@example.com"), OK,
		    DEFAULTS " from_rua rua=mailto:d@example.com rua_bad=1",
		    "read as p=none" },
		{ "p missing, only ruf", REC("v=DMARC1; "
		    "ruf=mailto:d@example.com"), BAD, DEFAULTS,
		    "no p= tag and no valid rua= URI" },
		{ "sp invalid, no rua", REC("v=DMARC1; p=reject; sp=bogus"),
		    BAD, DEFAULTS, "sp: bad policy \"bogus\" and no valid" },
		{ "sp invalid, valid rua",
		    REC("v=DMARC1; p=reject; sp=bogus; "
		    "rua=mailto:d@example.com"), OK,
		    DEFAULTS " from_rua rua=mailto:d@example.com",
		    "sp: bad policy \"bogus\"; read as p=none" },
		{ "sp empty, valid rua",
		    REC("v=DMARC1; p=quarantine; sp=; "
		    "rua=mailto:d@example.com"), OK,
		    DEFAULTS " from_rua rua=mailto:d@example.com", "sp:" },
	};

	(void)state;
	run_cases(cases, NELEM(cases));
}

/* rua= and ruf= lists: several URIs, sizes, other schemes, junk. */
static void
test_uris(void **state)
{
	static const struct pcase cases[] = {
		{ "several URIs",
		    REC("v=DMARC1; p=none; rua=mailto:a@x.example,"
		    "mailto:b@y.example , mailto:c@z.example"), OK,
		    DEFAULTS " rua=mailto:a@x.example,mailto:b@y.example,"
		    "mailto:c@z.example", "" },
		{ "sizes",
		    REC("v=DMARC1; p=none; rua=mailto:a@x.example!10m,"
		    "mailto:b@x.example!500,mailto:c@x.example!1k,"
		    "mailto:d@x.example!2t"), OK,
		    DEFAULTS " rua=mailto:a@x.example!10485760,"
		    "mailto:b@x.example!500,mailto:c@x.example!1024,"
		    "mailto:d@x.example!2199023255552", "" },
		{ "size saturates", REC("v=DMARC1; p=none; "
		    "rua=mailto:a@x.example!99999999999999999999999t"), OK,
		    DEFAULTS " rua=mailto:a@x.example!18446744073709551615",
		    "" },
		{ "non-mailto URIs",
		    REC("v=DMARC1; p=none; rua=https://r.example/d, "
		    "mailto:a@x.example, ftp://f.example/x"), OK,
		    DEFAULTS " rua=mailto:a@x.example rua_skipped=2", "" },
		{ "junk element",
		    REC("v=DMARC1; p=none; rua=junk, mailto:a@x.example"), OK,
		    DEFAULTS " rua=mailto:a@x.example rua_bad=1",
		    "rua: bad URI \"junk\" skipped" },
		{ "bad size unit",
		    REC("v=DMARC1; p=none; rua=mailto:a@x.example!10x"), OK,
		    DEFAULTS " ignored=1 rua_bad=1", "rua: bad URI" },
		{ "empty size", REC("v=DMARC1; p=none; "
		    "rua=mailto:a@x.example!"), OK,
		    DEFAULTS " ignored=1 rua_bad=1", "rua: bad URI" },
		{ "unit without digits", REC("v=DMARC1; p=none; "
		    "rua=mailto:a@x.example!m"), OK,
		    DEFAULTS " ignored=1 rua_bad=1", "rua: bad URI" },
		{ "unencoded ! in URI", REC("v=DMARC1; p=none; "
		    "rua=mailto:a!b@x.example!10m"), OK,
		    DEFAULTS " ignored=1 rua_bad=1", "rua: bad URI" },
		{ "percent-encoded !", REC("v=DMARC1; p=none; "
		    "rua=mailto:a%21b@x.example"), OK,
		    DEFAULTS " rua=mailto:a%21b@x.example", "" },
		{ "bad percent escape", REC("v=DMARC1; p=none; "
		    "rua=mailto:a%2@x.example"), OK,
		    DEFAULTS " ignored=1 rua_bad=1", "rua: bad URI" },
		{ "mailto without @", REC("v=DMARC1; p=none; "
		    "rua=mailto:postmaster"), OK,
		    DEFAULTS " ignored=1 rua_bad=1", "without an address" },
		{ "mailto with query", REC("v=DMARC1; p=none; "
		    "rua=mailto:a@x.example?subject=dmarc"), OK,
		    DEFAULTS " rua=mailto:a@x.example?subject=dmarc", "" },
		{ "scheme only", REC("v=DMARC1; p=none; rua=mailto:"), OK,
		    DEFAULTS " ignored=1 rua_bad=1", "rua: bad URI" },
		{ "bad scheme", REC("v=DMARC1; p=none; rua=1mailto:a@b.c"), OK,
		    DEFAULTS " ignored=1 rua_bad=1", "rua: bad URI" },
		{ "trailing comma", REC("v=DMARC1; p=none; "
		    "rua=mailto:a@x.example,"), OK,
		    DEFAULTS " rua=mailto:a@x.example rua_bad=1",
		    "rua: bad URI \"\"" },
		{ "empty rua", REC("v=DMARC1; p=reject; rua="), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "ignored=1 rua_bad=1", "rua: bad URI" },
		{ "ruf list", REC("v=DMARC1; p=none; "
		    "ruf=mailto:f@x.example!1g, https://f.example/, junk"), OK,
		    DEFAULTS " ruf=mailto:f@x.example!1073741824 "
		    "ruf_skipped=1 ruf_bad=1", "ruf: bad URI \"junk\"" },
		/* The caller joins a record's strings (RFC 7489 6.6.3 step
		 * 3, as RFC 7208 3.3 does for SPF) without a separator. */
		{ "joined TXT strings",
		    REC("v=DMARC1; p=reject; rua=mailto:a@x.example,"
		    "mailto:b@x.example"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "rua=mailto:a@x.example,mailto:b@x.example", "" },
		{ "first TXT string alone",
		    REC("v=DMARC1; p=reject; rua=mailto:a@x.example,"), OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r "
		    "rua=mailto:a@x.example rua_bad=1", "rua: bad URI" },
	};

	(void)state;
	run_cases(cases, NELEM(cases));
}

/* Bytes: NUL, control characters, non-ASCII. */
static void
test_bytes(void **state)
{
	static const struct pcase cases[] = {
		{ "NUL inside", REC("v=DMARC1; p=reject\0; sp=none"), BAD,
		    DEFAULTS, "NUL byte 0x00 at offset 18" },
		{ "NUL at the end", REC("v=DMARC1; p=reject\0"), BAD,
		    DEFAULTS, "NUL byte" },
		{ "NUL before v", REC("\0v=DMARC1; p=reject"), NONE, DEFAULTS,
		    "not a DMARC record" },
		{ "NUL inside DMARC1", REC("v=DMA\0RC1; p=reject"), NONE,
		    DEFAULTS, "not a DMARC record" },
		{ "control character", REC("v=DMARC1; p=reject;\001"), BAD,
		    DEFAULTS, "control character 0x01 at offset 19" },
		{ "form feed", REC("v=DMARC1;\f p=reject"), BAD, DEFAULTS,
		    "control character 0x0c" },
		{ "DEL", REC("v=DMARC1; p=reject; x=\177"), BAD, DEFAULTS,
		    "control character 0x7f" },
		{ "non-ASCII", REC("v=DMARC1; p=reject; "
		    "rua=mailto:\303\251@x.example"), BAD, DEFAULTS,
		    "non-ASCII byte 0xc3" },
	};

	(void)state;
	run_cases(cases, NELEM(cases));
}

/* Fill BUF with HEAD, then FILL repeated, to exactly N bytes. */
static size_t
build(char *buf, size_t n, const char *head, char fill)
{
	size_t h = strlen(head);

	memcpy(buf, head, h);
	memset(buf + h, fill, n - h);
	return n;
}

/* Length bound, many tags, list bounds, 64 KB inputs, odd arguments. */
static void
test_bounds(void **state)
{
	static char big[65536];
	struct ag_dmarc_record r;
	char err[256], sum[4096], name[3];
	size_t n, i;
	unsigned seed = 1;
	struct pcase c;

	(void)state;
	n = build(big, AG_DMARC_RECORD_MAX, "v=DMARC1; p=reject; x=", 'a');
	c = (struct pcase){ "2048 bytes", big, n, OK,
	    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" };
	run_case(&c);
	n = build(big, AG_DMARC_RECORD_MAX + 1, "v=DMARC1; p=reject; x=",
	    'a');
	c = (struct pcase){ "2049 bytes", big, n, BAD, DEFAULTS,
	    "record of 2049 bytes (at most 2048)" };
	run_case(&c);
	n = build(big, sizeof(big), "v=DMARC1; p=reject; x=", 'a');
	c = (struct pcase){ "64 KB DMARC record", big, n, BAD, DEFAULTS,
	    "record of 65536 bytes" };
	run_case(&c);
	n = build(big, sizeof(big), "", 'x');
	c = (struct pcase){ "64 KB of junk", big, n, NONE, DEFAULTS,
	    "not a DMARC record" };
	run_case(&c);
	n = build(big, sizeof(big), "v=DMARC1", ' ');
	c = (struct pcase){ "64 KB of spaces after v=DMARC1", big, n, BAD,
	    DEFAULTS, "record of 65536 bytes" };
	run_case(&c);
	for (i = 0; i < sizeof(big); i++) {
		seed = seed * 1103515245u + 12345u;
		big[i] = (char)(seed >> 16);
	}
	c = (struct pcase){ "64 KB of noise", big, sizeof(big), NONE,
	    DEFAULTS, "not a DMARC record" };
	run_case(&c);

	/* 676 distinct tags, each "xy=;": under the bound, all ignored. */
	n = (size_t)snprintf(big, sizeof(big), "v=DMARC1;p=none");
	for (i = 0; i < 26 * 26 && n + 4 <= AG_DMARC_RECORD_MAX - 8; i++) {
		name[0] = (char)('a' + i / 26);
		name[1] = (char)('a' + i % 26);
		name[2] = '\0';
		if (strcmp(name, "np") == 0 || strcmp(name, "fo") == 0 ||
		    strcmp(name, "sp") == 0 || strcmp(name, "ri") == 0 ||
		    strcmp(name, "rf") == 0) {
			continue;
		}
		n += (size_t)snprintf(big + n, sizeof(big) - n, ";%s=", name);
	}
	c = (struct pcase){ "hundreds of unknown tags", big, n, OK, DEFAULTS,
	    "" };
	run_case(&c);
	n = build(big, AG_DMARC_RECORD_MAX, "v=DMARC1;p=none", ';');
	c = (struct pcase){ "2000 empty tags", big, n, OK, DEFAULTS, "" };
	run_case(&c);

	/* Nine mailto: URIs: eight kept, one counted. */
	n = (size_t)snprintf(big, sizeof(big), "v=DMARC1; p=none; rua=");
	for (i = 0; i < 9; i++) {
		n += (size_t)snprintf(big + n, sizeof(big) - n,
		    "%smailto:r%zu@x.example", i ? "," : "", i);
	}
	c = (struct pcase){ "nine rua URIs", big, n, OK, DEFAULTS
	    " rua=mailto:r0@x.example,mailto:r1@x.example,"
	    "mailto:r2@x.example,mailto:r3@x.example,mailto:r4@x.example,"
	    "mailto:r5@x.example,mailto:r6@x.example,mailto:r7@x.example "
	    "rua_skipped=1", "" };
	run_case(&c);
	/* A 300-byte mailto: URI is valid but does not fit: counted. */
	n = (size_t)snprintf(big, sizeof(big), "v=DMARC1; rua=mailto:");
	memset(big + n, 'a', 280);
	n += 280;
	n += (size_t)snprintf(big + n, sizeof(big) - n, "@x.example");
	c = (struct pcase){ "URI too long to keep", big, n, OK, DEFAULTS
	    " from_rua rua_skipped=1", "read as p=none" };
	run_case(&c);
	/* 255 bytes is the longest kept. */
	n = (size_t)snprintf(big, sizeof(big), "v=DMARC1; p=none; "
	    "rua=mailto:");
	memset(big + n, 'b', 255 - 7 - 10);
	n += 255 - 7 - 10;
	n += (size_t)snprintf(big + n, sizeof(big) - n, "@x.example");
	ag_dmarc_record_parse(big, n, &r, err, sizeof(err));
	if (r.nrua != 1 || strlen(r.rua[0]) != 255) {
		fail_msg("255-byte URI: nrua %zu, %s", r.nrua,
		    summarize(&r, sum, sizeof(sum)));
	}

	/* Odd arguments. */
	if (ag_dmarc_record_parse(NULL, 5, &r, err, sizeof(err)) != NONE) {
		fail_msg("NULL record: not NONE");
	}
	check_err("NULL record", err, sizeof(err), "not a DMARC record");
	if (ag_dmarc_record_parse(REC("v=DMARC1; p=reject"), NULL, NULL,
	    0) != OK) {
		fail_msg("NULL OUT and ERR: not OK");
	}
	if (ag_dmarc_record_parse(REC("v=DMARC1; p=x"), NULL, NULL, 0) !=
	    BAD) {
		fail_msg("NULL OUT, bad record: not INVALID");
	}
	memset(err, 'x', sizeof(err));
	ag_dmarc_record_parse(REC("v=DMARC1; p=reject; p=none"), &r, err, 1);
	if (err[0] != '\0' || err[1] != 'x') {
		fail_msg("ERRLEN 1: ERR not just \"\"");
	}
	memset(err, 'x', sizeof(err));
	ag_dmarc_record_parse(REC("v=DMARC1; p=reject; p=none"), &r, err, 8);
	if (strcmp(err, "duplica") != 0) {
		fail_msg("ERRLEN 8: ERR \"%s\"", err);
	}
	/* A bad value quoted in ERR is shortened and escaped. */
	n = (size_t)snprintf(big, sizeof(big), "v=DMARC1; p=reject; pct=");
	memset(big + n, '9', 100);
	n += 100;
	ag_dmarc_record_parse(big, n, &r, err, sizeof(err));
	check_err("long value quoted", err, sizeof(err),
	    "pct: \"99999999999999999999999999999999...\"");
}

/* The policy names, and the status names. */
static void
test_names(void **state)
{
	(void)state;
	if (strcmp(ag_dmarc_policy_name(AG_DMARC_P_NONE), "none") != 0 ||
	    strcmp(ag_dmarc_policy_name(AG_DMARC_P_QUARANTINE),
	    "quarantine") != 0 ||
	    strcmp(ag_dmarc_policy_name(AG_DMARC_P_REJECT), "reject") != 0 ||
	    strcmp(ag_dmarc_policy_name((enum ag_dmarc_policy)7),
	    "unknown") != 0) {
		fail_msg("policy names wrong");
	}
	if (strcmp(ag_dmarc_rec_status_name(OK), "ok") != 0 ||
	    strcmp(ag_dmarc_rec_status_name(NONE), "none") != 0 ||
	    strcmp(ag_dmarc_rec_status_name(BAD), "invalid") != 0) {
		fail_msg("status names wrong");
	}
	if (!ag_dmarc_record_is_dmarc(REC("v=DMARC1")) ||
	    !ag_dmarc_record_is_dmarc(REC(" V = DMARC1 ;x")) ||
	    ag_dmarc_record_is_dmarc(REC("v=DMARC1x")) ||
	    ag_dmarc_record_is_dmarc(REC("v=DMARC")) ||
	    ag_dmarc_record_is_dmarc(NULL, 0)) {
		fail_msg("is_dmarc wrong");
	}
}

struct pick_case {
	const char *label;
	const char *txt[4];
	size_t n;
	enum ag_dmarc_rec_status want;
	const char *summary;
	const char *why;
};

/* pick(): 0, 1 and 2 DMARC records among other TXT records. */
static void
test_pick(void **state)
{
	static const struct pick_case cases[] = {
		{ "no records", { NULL }, 0, NONE, DEFAULTS,
		    "no v=DMARC1 record among 0 TXT records" },
		{ "only other TXT", { "v=spf1 -all",
		    "google-site-verification=x" }, 2, NONE, DEFAULTS,
		    "no v=DMARC1 record among 2 TXT records" },
		{ "one DMARC among others", { "v=spf1 -all",
		    "v=DMARC1; p=reject", "MS=ms12345" }, 3, OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "one DMARC alone", { "v=DMARC1; p=quarantine" }, 1, OK,
		    "p=quarantine sp=quarantine np=quarantine pct=100 adkim=r "
		    "aspf=r", "" },
		{ "two DMARC records", { "v=DMARC1; p=reject", "v=spf1 -all",
		    "v=DMARC1; p=none" }, 3, NONE, DEFAULTS,
		    "2 v=DMARC1 records: no policy" },
		{ "two identical DMARC records", { "v=DMARC1; p=reject",
		    "v=DMARC1; p=reject" }, 2, NONE, DEFAULTS, "2 v=DMARC1" },
		{ "one good, one broken DMARC record", { "v=DMARC1; p=reject",
		    "v=DMARC1; p=bogus" }, 2, NONE, DEFAULTS, "2 v=DMARC1" },
		{ "one broken DMARC record", { "v=spf1 -all",
		    "v=DMARC1; p=bogus" }, 2, BAD, DEFAULTS, "p: bad policy" },
		{ "DMARC2 does not count", { "v=DMARC2; p=none",
		    "v=DMARC1; p=reject" }, 2, OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "lower-case dmarc1 does not count", { "v=dmarc1; p=none",
		    "v=DMARC1; p=reject" }, 2, OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
		{ "NULL entries skipped", { NULL, "v=DMARC1; p=reject", NULL },
		    3, OK,
		    "p=reject sp=reject np=reject pct=100 adkim=r aspf=r", "" },
	};
	struct ag_dmarc_record r;
	char err[256], sum[2048];
	enum ag_dmarc_rec_status st;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		memset(&r, 0xa5, sizeof(r));
		memset(err, 'x', sizeof(err));
		st = ag_dmarc_record_pick(cases[i].txt, NULL, cases[i].n, &r,
		    err, sizeof(err));
		if (st != cases[i].want) {
			fail_msg("%s: status %s, want %s (ERR: %s)",
			    cases[i].label, ag_dmarc_rec_status_name(st),
			    ag_dmarc_rec_status_name(cases[i].want), err);
		}
		summarize(&r, sum, sizeof(sum));
		if (strcmp(sum, cases[i].summary) != 0) {
			fail_msg("%s:\n  got  %s\n  want %s", cases[i].label,
			    sum, cases[i].summary);
		}
		check_err(cases[i].label, err, sizeof(err), cases[i].why);
	}
}

/* pick() with lengths: a NUL inside one record, and NULL arrays. */
static void
test_pick_lens(void **state)
{
	static const char rec1[] = "v=spf1 -all";
	static const char rec2[] = "v=DMARC1; p=reject\0junk";
	const char *txts[] = { rec1, rec2 };
	size_t lens[] = { sizeof(rec1) - 1, sizeof(rec2) - 1 };
	struct ag_dmarc_record r;
	char err[256];

	(void)state;
	if (ag_dmarc_record_pick(txts, lens, 2, &r, err, sizeof(err)) != BAD) {
		fail_msg("NUL inside with lengths: not INVALID");
	}
	check_err("NUL inside with lengths", err, sizeof(err), "NUL byte");
	lens[1] = 18;
	if (ag_dmarc_record_pick(txts, lens, 2, &r, err, sizeof(err)) != OK ||
	    r.p != AG_DMARC_P_REJECT) {
		fail_msg("length before the NUL: not OK/reject (%s)", err);
	}
	if (ag_dmarc_record_pick(NULL, NULL, 3, &r, err, sizeof(err)) !=
	    NONE) {
		fail_msg("NULL array: not NONE");
	}
	if (ag_dmarc_record_pick(txts, lens, 2, NULL, NULL, 0) != OK) {
		fail_msg("NULL OUT and ERR: not OK");
	}
}

/* A deterministic generator (xorshift64*), the same on every libc. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/* Bytes a mutation likes to insert: the grammar's and some others. */
static const char interesting[] = ";=,!:% \t\r\n\"\\@?vVpP0159dskmgtDMARC1";

/* Change BUF (*N bytes, room for CAP) in one random way. */
static void
mutate(uint64_t *s, char *buf, size_t *n, size_t cap, const char *other)
{
	size_t pos = *n > 0 ? rnd(s) % *n : 0, k, olen = strlen(other);
	char c = (rnd(s) & 3) == 0 ? (char)rnd(s) :
	    interesting[rnd(s) % (sizeof(interesting) - 1)];

	switch (rnd(s) % 6) {
	case 0:		/* replace a byte */
		if (*n > 0) {
			buf[pos] = c;
		}
		break;
	case 1:		/* insert a byte */
		if (*n < cap) {
			memmove(buf + pos + 1, buf + pos, *n - pos);
			buf[pos] = c;
			(*n)++;
		}
		break;
	case 2:		/* delete a run */
		k = rnd(s) % 8 + 1;
		k = k > *n - pos ? *n - pos : k;
		memmove(buf + pos, buf + pos + k, *n - pos - k);
		*n -= k;
		break;
	case 3:		/* duplicate a run */
		k = rnd(s) % 64 + 1;
		k = k > *n - pos ? *n - pos : k;
		if (*n + k <= cap) {
			memmove(buf + pos + k, buf + pos, *n - pos);
			*n += k;
		}
		break;
	case 4:		/* truncate */
		*n = pos;
		break;
	default:	/* append a piece of another seed */
		k = rnd(s) % (olen + 1);
		if (*n + k <= cap) {
			memcpy(buf + *n, other + olen - k, k);
			*n += k;
		}
		break;
	}
}

/* What every result must satisfy, whatever the input. */
static void
check_invariants(unsigned long iter, const char *buf, size_t n,
    enum ag_dmarc_rec_status st, const struct ag_dmarc_record *r,
    const struct ag_dmarc_record *defaults, const char *err, size_t errlen)
{
	char label[64];
	size_t i;

	snprintf(label, sizeof(label), "fuzz iteration %lu", iter);
	if (st != OK && st != NONE && st != BAD) {
		fail_msg("%s: status %d", label, (int)st);
	}
	if ((st == NONE) != !ag_dmarc_record_is_dmarc(buf, n)) {
		fail_msg("%s: status %s disagrees with is_dmarc", label,
		    ag_dmarc_rec_status_name(st));
	}
	check_err(label, err, errlen, NULL);
	if (st != OK) {
		if (memcmp(r, defaults, sizeof(*r)) != 0) {
			fail_msg("%s: OUT not the defaults after %s", label,
			    ag_dmarc_rec_status_name(st));
		}
		return;
	}
	if (r->p > AG_DMARC_P_REJECT || r->sp > AG_DMARC_P_REJECT ||
	    r->np > AG_DMARC_P_REJECT || r->pct > 100 ||
	    r->nrua > AG_DMARC_RUA_MAX || r->nruf > AG_DMARC_RUF_MAX ||
	    (r->fo & ~0xfu) != 0 || r->fo == 0 || n > AG_DMARC_RECORD_MAX) {
		fail_msg("%s: field out of range", label);
	}
	for (i = 0; i < r->nrua; i++) {
		if (memchr(r->rua[i], '\0', AG_DMARC_URI_SIZE) == NULL ||
		    strncasecmp(r->rua[i], "mailto:", 7) != 0 ||
		    strchr(r->rua[i], '@') == NULL) {
			fail_msg("%s: bad rua[%zu]", label, i);
		}
	}
	for (i = 0; i < r->nruf; i++) {
		if (memchr(r->ruf[i], '\0', AG_DMARC_URI_SIZE) == NULL ||
		    strncasecmp(r->ruf[i], "mailto:", 7) != 0) {
			fail_msg("%s: bad ruf[%zu]", label, i);
		}
	}
}

#define FUZZ_ITERATIONS 100000
#define FUZZ_CAP 3000

/*
 * 100,000 mutations of seed records, each parsed from a heap copy of
 * exactly its length (so a sanitizer sees any read past it): the status
 * is one of the three, agrees with is_dmarc() and with pick() of the
 * record alone, OUT is in range or the defaults, ERR is clean text.
 */
static void
test_fuzz(void **state)
{
	static const char *const seeds[] = {
		"v=DMARC1; p=reject",
		("v=DMARC1; p=quarantine; sp=none; np=reject; pct=50; adkim=s; "
		    "aspf=r; rua=mailto:a@x.example!10m,mailto:b@y.example; "
		    "ruf=mailto:f@x.example; ri=3600; fo=1:d:s; rf=afrf"),
		"v=DMARC1; rua=mailto:d@example.com",
		"v=DMARC1; p=bogus; rua=https://r.example/x, junk",
		"V = DMARC1 ; P = None ; pct = 007 ;;",
		"v=DMARC1; p=none; foo=bar; x_1=2",
		"v=spf1 -all",
		("v=DMARC1;p=reject;rua=mailto:a%21b@x.example!1g,"
		    "MAILTO:c@d.example?subject=x"),
	};
	struct ag_dmarc_record r, defaults;
	char buf[FUZZ_CAP], err[96], *copy;
	unsigned long iter, count[3] = { 0, 0, 0 };
	uint64_t s = 0x9e3779b97f4a7c15ULL;
	size_t n, k, muts;
	const char *seed, *other;
	enum ag_dmarc_rec_status st;

	(void)state;
	ag_dmarc_record_parse("", 0, &defaults, NULL, 0);
	for (iter = 0; iter < FUZZ_ITERATIONS; iter++) {
		seed = seeds[rnd(&s) % NELEM(seeds)];
		other = seeds[rnd(&s) % NELEM(seeds)];
		n = strlen(seed);
		memcpy(buf, seed, n);
		muts = rnd(&s) % 8 + 1;
		for (k = 0; k < muts; k++) {
			mutate(&s, buf, &n, sizeof(buf), other);
		}
		copy = malloc(n > 0 ? n : 1);
		assert_non_null(copy);
		memcpy(copy, buf, n);
		memset(&r, 0x5a, sizeof(r));
		st = ag_dmarc_record_parse(copy, n, &r, err, sizeof(err));
		check_invariants(iter, copy, n, st, &r, &defaults, err,
		    sizeof(err));
		if (iter % 16 == 0) {
			const char *one[1] = { copy };
			if (ag_dmarc_record_pick(one, &n, 1, NULL, NULL, 0) !=
			    st) {
				fail_msg("fuzz iteration %lu: pick() differs",
				    iter);
			}
		}
		free(copy);
		count[st]++;
	}
	/* The mutations must reach all three outcomes, often. */
	for (k = 0; k < 3; k++) {
		if (count[k] < FUZZ_ITERATIONS / 50) {
			fail_msg("fuzz: only %lu results %s", count[k],
			    ag_dmarc_rec_status_name(
			    (enum ag_dmarc_rec_status)k));
		}
	}
	print_message("fuzz: %lu ok, %lu none, %lu invalid\n", count[OK],
	    count[NONE], count[BAD]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_case_space),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_pct),
		cmocka_unit_test(test_ignored),
		cmocka_unit_test(test_step6),
		cmocka_unit_test(test_uris),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_pick),
		cmocka_unit_test(test_pick_lens),
		cmocka_unit_test(test_fuzz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
