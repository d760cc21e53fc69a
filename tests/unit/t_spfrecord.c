/*
 * t_spfrecord.c - unit tests for lib/spfrecord.c: the RFC 7208 record and
 * explanation checks and the libspf2 safety rule.  Table-driven: every
 * case has a label that a failure names.
 *
 * suite_records and suite_explanations hold every distinct TXT/SPF string
 * of the zone data of the RFC 7208 test suite (python3-spf 2.0.14,
 * rfc7208-tests.yml.gz, 203 tests), extracted once with a throwaway
 * python3-yaml script: strings of one record joined without a separator
 * (3.3), "\x.." kept as bytes, labelled with the first test that queries
 * the domain ("zone DOMAIN" if reached only by include/redirect/exp).
 * Classified by reading each test's description, section and result:
 *  - NOT_SPF: not "v=spf1" then a space or the end (v=spf10, v=spf3,
 *    "v=spf1" "mx" joined, v=spfl, empty, other TXT);
 *  - BAD: permerror because of the record's own syntax;
 *  - OK: all others, including records whose tests end in permerror for
 *    other reasons: include-permerror (e5 is fine, the e6 it includes is
 *    not), include-none, redirect-none, multitxt1/2, multispf1,
 *    redirect-loop, include-loop, mx-limit, mech-over-limit,
 *    include-over-limit, void-over-limit (limits count while evaluating,
 *    4.6.4), and invalid-domain-empty-label/-long/-long-via-macro, whose
 *    result may be fail (4.3, 4.8): the ABNF allows those labels.
 * Explanations: the exp= targets; "The %{x}-files." (6.2) and the one
 * with non-ASCII bytes are invalid.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "spfrecord.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal and its length, NUL bytes inside included. */
#define REC(s) s, sizeof(s) - 1

enum kind { OK, BAD, NOT_SPF };

struct suite_case {
	const char *label;
	const char *rec;
	size_t len;
	enum kind kind;
};

struct suite_exp {
	const char *label;
	const char *txt;
	size_t len;
	bool valid;
};

/* Generated once from rfc7208-tests.yml (see header comment). */
static const struct suite_case suite_records[] = {
	{ "nolocalpart", REC("v=spf1 -all exp=exp.example.net"), OK },
	{ "longlabel", REC("v=spf1 -all"), OK },
	{ "non-ascii-policy",
	    REC("v=spf1 a:\357\273\277garbage.example.net -all"), BAD },
	{ "non-ascii-mech", REC("v=spf1 \200a:example.net -all"), BAD },
	{ "non-ascii-result", REC("v=spf1 a:example.net \226all"), BAD },
	{ "non-ascii-non-spf", REC("v=spf1 a:example.net -all"), OK },
	{ "non-ascii-non-spf", REC("\226"), NOT_SPF },
	{ "control-char-policy",
	    REC("v=spf1 a:ctrl.example.com\015ptr -all"), BAD },
	{ "two-spaces", REC("v=spf1 a  -all"), OK },
	{ "trailing-space", REC("v=spf1 a -all "), OK },
	{ "null-text", REC("v=spf1 ip4:192.0.2.5 -all"), OK },
	{ "null-text", REC(""), NOT_SPF },
	{ "badip4",
	    REC("v=spf1 ip4:192.0.2.5\012 include:spf.protection.outlook.co"
	    "m ~all"), BAD },
	{ "nospftxttimeout", REC("v=spf3 !a:yahoo.com -all"), NOT_SPF },
	{ "nospace2", REC("v=spf10"), NOT_SPF },
	{ "nospace2", REC("v=spf1 mx"), OK },
	{ "empty", REC("v=spf1"), OK },
	{ "nospace1", REC("v=spf1mx"), NOT_SPF },
	{ "spfoverride", REC("v=spf1 +all"), OK },
	{ "multitxt2", REC("V=sPf1 +all"), OK },
	{ "multispf2", REC("V=spf1 -all"), OK },
	{ "case-insensitive", REC("v=SpF1 ~all"), OK },
	{ "detect-errors-anywhere", REC("v=spf1 ip4:1.2.3.4 -all moo"), BAD },
	{ "modifier-charset-good",
	    REC("v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all"), OK },
	{ "modifier-charset-bad1",
	    REC("v=spf1 moo.cow/far_out=man:dog/cat ip4:1.2.3.4 -all"), BAD },
	{ "modifier-charset-bad2",
	    REC("v=spf1 moo.cow:far_out=man:dog/cat ip4:1.2.3.4 -all"), BAD },
	{ "redirect-after-mechanisms1",
	    REC("v=spf1 redirect=t5.example.com ~all"), OK },
	{ "redirect-after-mechanisms2",
	    REC("v=spf1 ip4:1.2.3.4 redirect=t2.example.com"), OK },
	{ "default-result", REC("v=spf1 ip4:1.2.3.4"), OK },
	{ "redirect-is-modifier",
	    REC("v=spf1 ip4:1.2.3.4 redirect:t2.example.com"), BAD },
	{ "invalid-domain", REC("v=spf1 a:foo-bar -all"), BAD },
	{ "invalid-domain-empty-label",
	    REC("v=spf1 a:mail.example...com -all"), OK },
	{ "invalid-domain-long",
	    REC("v=spf1 a:a123456789012345678901234567890123456789012345678"
	    "901234567890123.example.com -all"), OK },
	{ "invalid-domain-long-via-macro", REC("v=spf1 a:%{H}.bar -all"), OK },
	{ "all-dot", REC("v=spf1 -all."), BAD },
	{ "all-arg", REC("v=spf1 -all:foobar"), BAD },
	{ "all-cidr", REC("v=spf1 -all/8"), BAD },
	{ "all-neutral", REC("v=spf1 ?all"), OK },
	{ "all-double", REC("v=spf1 all -all"), OK },
	{ "ptr-cidr", REC("v=spf1 ptr/0 -all"), BAD },
	{ "ptr-match-target", REC("v=spf1 ptr:example.com -all"), OK },
	{ "ptr-match-implicit", REC("v=spf1 ptr -all"), OK },
	{ "ptr-empty-domain", REC("v=spf1 ptr:"), BAD },
	{ "ptr-case-change", REC("v=spf1 ptr:example.Com -all"), OK },
	{ "ptr-cname-loop", REC("v=spf1 ptr"), OK },
	{ "a-nxdomain", REC("v=spf1 a/0 -all"), OK },
	{ "a-cidr6-0-ip4", REC("v=spf1 a//0 -all"), OK },
	{ "a-ip6-dualstack", REC("v=spf1 a -all"), OK },
	{ "a-null", REC("v=spf1 a:foo.example.com\000"), BAD },
	{ "a-numeric", REC("v=spf1 a:111.222.33.44"), BAD },
	{ "a-numeric-toplabel", REC("v=spf1 a:abc.123"), BAD },
	{ "a-only-toplabel", REC("v=spf1 a:museum"), BAD },
	{ "a-only-toplabel-trailing-dot", REC("v=spf1 a:museum."), BAD },
	{ "a-cidr6", REC("v=spf1 a//33 -all"), OK },
	{ "a-bad-cidr4", REC("v=spf1 a/33 -all"), BAD },
	{ "a-bad-cidr6", REC("v=spf1 a//129 -all"), BAD },
	{ "a-dual-cidr-ip4-match", REC("v=spf1 a/24//64 -all"), OK },
	{ "a-dual-cidr-ip4-err", REC("v=spf1 a/24/64 -all"), BAD },
	{ "a-dual-cidr-ip6-default", REC("v=spf1 a/24 -all"), OK },
	{ "a-dual-cidr-ip4-default", REC("v=spf1 a//64 -all"), OK },
	{ "a-bad-domain", REC("v=spf1 a:example.com:8080"), BAD },
	{ "a-multi-ip1", REC("v=spf1 a:foo.example.com/24"), OK },
	{ "a-colon-domain", REC("v=spf1 a:foo:bar/baz.example.com"), OK },
	{ "a-bad-toplabel", REC("v=spf1 a:example.-com"), BAD },
	{ "a-empty-domain", REC("v=spf1 a:"), BAD },
	{ "a-dash-in-toplabel",
	    REC("v=spf1 a:foo.example.xn--zckzah -all"), OK },
	{ "zone ip5.example.com", REC("v=spf1 ip4:1.2.3.5 -all"), OK },
	{ "zone ip6.example.com", REC("v=spf1 ip4:1.2.3.6 ~all"), OK },
	{ "zone ip7.example.com", REC("v=spf1 ip4:1.2.3.7 ?all"), OK },
	{ "zone erehwon.example.com",
	    REC("v=spfl am not an SPF record"), NOT_SPF },
	{ "include-fail", REC("v=spf1 include:ip5.example.com ~all"), OK },
	{ "include-softfail", REC("v=spf1 include:ip6.example.com all"), OK },
	{ "include-neutral", REC("v=spf1 include:ip7.example.com -all"), OK },
	{ "include-temperror", REC("v=spf1 include:ip8.example.com -all"), OK },
	{ "include-permerror", REC("v=spf1 include:e6.example.com -all"), OK },
	{ "include-syntax-error", REC("v=spf1 include +all"), BAD },
	{ "include-none", REC("v=spf1 include:erehwon.example.com -all"), OK },
	{ "include-empty-domain", REC("v=spf1 include: -all"), BAD },
	{ "include-cidr", REC("v=spf1 include:ip5.example.com/24 -all"), BAD },
	{ "mx-nxdomain", REC("v=spf1 mx/0 -all"), OK },
	{ "mx-cidr6-0-ip4", REC("v=spf1 mx//0 -all"), OK },
	{ "mx-null", REC("v=spf1 mx:foo.example.com\000"), BAD },
	{ "mx-numeric-top-label", REC("v=spf1 mx:abc.123"), BAD },
	{ "mx-cidr6", REC("v=spf1 mx//33 -all"), OK },
	{ "mx-bad-cidr4", REC("v=spf1 mx/33 -all"), BAD },
	{ "mx-bad-cidr6", REC("v=spf1 mx//129 -all"), BAD },
	{ "mx-bad-domain", REC("v=spf1 mx:example.com:8080"), BAD },
	{ "mx-multi-ip1", REC("v=spf1 mx:foo.example.com/24"), OK },
	{ "mx-colon-domain", REC("v=spf1 mx:foo:bar/baz.example.com"), OK },
	{ "mx-bad-toplab", REC("v=spf1 mx:example.-com"), BAD },
	{ "mx-empty-domain", REC("v=spf1 mx: -all"), BAD },
	{ "exists-empty-domain", REC("v=spf1 exists:"), BAD },
	{ "exists-implicit", REC("v=spf1 exists"), BAD },
	{ "exists-cidr", REC("v=spf1 exists:mail.example.com/24"), BAD },
	{ "exists-ip4", REC("v=spf1 exists:mail.example.com"), OK },
	{ "exists-ip6only", REC("v=spf1 exists:mail6.example.com -all"), OK },
	{ "exists-dnserr", REC("v=spf1 exists:err.example.com -all"), OK },
	{ "cidr4-0", REC("v=spf1 ip4:1.1.1.1/0 -all"), OK },
	{ "cidr4-32", REC("v=spf1 ip4:1.2.3.4/32 -all"), OK },
	{ "cidr4-33", REC("v=spf1 ip4:1.2.3.4/33 -all"), BAD },
	{ "cidr4-032", REC("v=spf1 ip4:1.2.3.4/032 -all"), BAD },
	{ "bare-ip4", REC("v=spf1 ip4"), BAD },
	{ "ip4-dual-cidr", REC("v=spf1 ip4:1.2.3.4//32"), BAD },
	{ "ip4-mapped-ip6", REC("v=spf1 -ip4:1.2.3.4 ip6:::FFFF:1.2.3.4"), OK },
	{ "bad-ip4-port", REC("v=spf1 ip4:1.2.3.4:8080"), BAD },
	{ "bad-ip4-short", REC("v=spf1 ip4:1.2.3"), BAD },
	{ "bare-ip6", REC("v=spf1 -all ip6"), BAD },
	{ "cidr6-0-ip4", REC("v=spf1 ip6:::1.1.1.1/0"), OK },
	{ "cidr6-129", REC("v=spf1 ip6:::1.1.1.1/129"), BAD },
	{ "cidr6-bad", REC("v=spf1 ip6:::1.1.1.1//33"), BAD },
	{ "cidr6-33", REC("v=spf1 ip6:Cafe:Babe:8000::/33"), OK },
	{ "ip6-bad1", REC("v=spf1 ip6::CAFE::BABE"), BAD },
	{ "redirect-cancels-exp",
	    REC("v=spf1 exp=exp1.example.com redirect=e2.example.com"), OK },
	{ "redirect-cancels-prior-exp",
	    REC("v=spf1 exp=exp1.example.com redirect=e4.example.com"), OK },
	{ "zone e4.example.com", REC("v=spf1 -all exp=exp2.example.com"), OK },
	{ "invalid-modifier", REC("v=spf1 1up=foo"), BAD },
	{ "empty-modifier-name", REC("v=spf1 =all"), BAD },
	{ "include-ignores-exp",
	    REC("v=spf1 include:e3.example.com -all exp=exp3.example.com"),
	    OK },
	{ "dorky-sentinel", REC("v=spf1 -all exp=exp4.example.com"), OK },
	{ "unknown-modifier-syntax", REC("v=spf1 -all foo=%abc"), BAD },
	{ "redirect-none", REC("v=spf1 redirect=erehwon.example.com"), OK },
	{ "exp-multiple-txt", REC("v=spf1 -all exp=e11msg.example.com"), OK },
	{ "exp-empty-domain", REC("v=spf1 exp= -all"), BAD },
	{ "explanation-syntax-error",
	    REC("v=spf1 exp=e13msg.example.com -all"), OK },
	{ "exp-twice",
	    REC("v=spf1 exp=e13msg.example.com -all exp=e11msg.example.com"),
	    BAD },
	{ "redirect-twice",
	    REC("v=spf1 redirect=e12.example.com -all redirect=e12.example."
	    "com"), BAD },
	{ "exp-syntax-error", REC("v=spf1 exp=-all"), BAD },
	{ "redirect-syntax-error", REC("v=spf1 redirect=-all ?all"), BAD },
	{ "redirect-empty-domain", REC("v=spf1 ?all redirect="), BAD },
	{ "default-modifier-obsolete", REC("v=spf1 default=pass"), OK },
	{ "default-modifier-obsolete2", REC("v=spf1 default=+"), OK },
	{ "exp-dns-error", REC("v=spf1 exp=e21msg.example.com -all"), OK },
	{ "exp-no-txt", REC("v=spf1 exp=mail.example.com -all"), OK },
	{ "non-ascii-exp", REC("v=spf1 exp=badexp.example.com -all"), OK },
	{ "two-exp-records", REC("v=spf1 exp=twoexp.example.com -all"), OK },
	{ "exp-void",
	    REC("v=spf1 a:erehwon.example.com a:foobar.com exp=nxdomain.com"
	    " -all"), OK },
	{ "redirect-implicit",
	    REC("v=spf1 redirect=testimplicit.example.com"), OK },
	{ "zone example.com.d.spf.example.com",
	    REC("v=spf1 redirect=a.spf.example.com"), OK },
	{ "zone a.spf.example.com",
	    REC("v=spf1 include:o.spf.example.com. ~all"), OK },
	{ "zone o.spf.example.com", REC("v=spf1 ip4:192.168.218.40"), OK },
	{ "trailing-dot-domain",
	    REC("v=spf1 redirect=%{d}.d.spf.example.com."), OK },
	{ "trailing-dot-exp", REC("v=spf1 exp=msg.example.com. -all"), OK },
	{ "invalid-macro-char",
	    REC("v=spf1 -exists:%(ir).sbl.example.com ?all"), BAD },
	{ "invalid-embedded-macro-char",
	    REC("v=spf1 exists:foo%(ir).sbl.example.com ?all"), BAD },
	{ "invalid-trailing-macro-char",
	    REC("v=spf1 exists:foo%.sbl.example.com ?all"), BAD },
	{ "macro-mania-in-domain",
	    REC("v=spf1 a:macro%%percent%_%_space%-url-space.example.com -a"
	    "ll"), OK },
	{ "exp-only-macro-char", REC("v=spf1 -all exp=%{r}.example.com"), BAD },
	{ "exp-txt-macro-char", REC("v=spf1 -all exp=%{ir}.example.com"), OK },
	{ "domain-name-truncation",
	    REC("v=spf1 -all exp=foobar.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}."
	    "%{o}.example.com"), OK },
	{ "v-macro-ip4", REC("v=spf1 -all exp=e4msg.example.com"), OK },
	{ "undef-macro", REC("v=spf1 a:%{a}.example.com -all"), BAD },
	{ "p-macro-ip4-novalid", REC("v=spf1 -all exp=e6msg.example.com"), OK },
	{ "p-macro-multiple",
	    REC("v=spf1 exists:%{p}.should.example.com ~exists:%{p}.ok.exam"
	    "ple.com"), OK },
	{ "upper-macro", REC("v=spf1 -all exp=msg8.%{D2}"), OK },
	{ "hello-macro", REC("v=spf1 a:%{H} -all"), OK },
	{ "require-valid-helo",
	    REC("v=spf1 -include:_spfh.%{d2} ip4:1.2.3.0/24 -all"), OK },
	{ "zone _spfh.example.com", REC("v=spf1 -a:%{h} +all"), OK },
	{ "macro-reverse-split-on-dash",
	    REC("v=spf1 exists:%{i}.%{l2r-}.user.%{d2}"), OK },
	{ "macro-multiple-delimiters",
	    REC("v=spf1 exists:%{l2r+-}.user.%{d2}"), OK },
	{ "redirect-loop",
	    REC("v=spf1 ip4:1.1.1.1 redirect=e1.example.com"), OK },
	{ "include-loop", REC("v=spf1 include:e3.example.com"), OK },
	{ "zone e3.example.com", REC("v=spf1 include:e2.example.com"), OK },
	{ "mech-at-limit",
	    REC("v=spf1 a mx a mx a mx a mx a ptr ip4:1.2.3.4 -all"), OK },
	{ "mech-over-limit",
	    REC("v=spf1 a mx a mx a mx a mx a ptr a ip4:1.2.3.4 -all"), OK },
	{ "include-at-limit",
	    REC("v=spf1 a include:inc.example.com ip4:1.2.3.4 mx -all"), OK },
	{ "zone inc.example.com", REC("v=spf1 a a a a a a a a"), OK },
	{ "include-over-limit",
	    REC("v=spf1 a include:inc.example.com a ip4:1.2.3.4 -all"), OK },
	{ "void-over-limit",
	    REC("v=spf1 a:err.example.com a:err1.example.com a:err2.example"
	    ".com ?all"), OK },
	{ "void-at-limit",
	    REC("v=spf1 a:err.example.com a:err1.example.com ?all"), OK },
	{ "bytes-bug", REC("v=spf1 mx redirect=_spf.example.com"), OK },
	{ "zone _spf.example.com",
	    REC("v=spf1 ptr:fe.example.org ptr:sgp.example.com exp=_expspf."
	    "example.org -all"), OK },
	{ "zone a.example.org", REC("Another TXT record."), NOT_SPF },
	{ "zone a.example.org",
	    REC("v=spf1 ip4:192.0.2.225 ?include:webmail.pair.com ?include:"
	    "relay.pair.com -all"), OK },
	{ "zone a.example.org", REC("More TXT records."), NOT_SPF },
	{ "zone a.example.org", REC("A third TXT record."), NOT_SPF },
	{ "cname-aliasing",
	    REC("v=spf1 include:a.example.org include:b.example.org -all"),
	    OK },
	{ "zone webmail.pair.com",
	    REC("v=spf1 ip4:66.39.3.0/24 ip4:209.68.6.94/32"), OK },
	{ "zone relay.pair.com",
	    REC("v=spf1 ip4:209.68.5.9/32 ip4:209.68.5.15/32 a -all"), OK },
};

static const struct suite_exp suite_explanations[] = {
	{ "zone exp.example.net", REC("%{l}"), true },
	{ "zone exp1.example.com", REC("No-see-um"), true },
	{ "zone exp2.example.com", REC("See me."), true },
	{ "zone exp3.example.com", REC("Correct!"), true },
	{ "zone exp4.example.com", REC("%{l} in implementation"), true },
	{ "zone e11msg.example.com",
	    REC("Answer a fool according to his folly."), true },
	{ "zone e11msg.example.com",
	    REC("Do not answer a fool according to his folly."), true },
	{ "zone e13msg.example.com", REC("The %{x}-files."), false },
	{ "zone badexp.example.com", REC("\357\273\277Explanation"), false },
	{ "zone twoexp.example.com", REC("one"), true },
	{ "zone twoexp.example.com", REC("two"), true },
	{ "zone msg.example.com", REC("This is a test."), true },
	{ "zone 40.218.168.192.example.com",
	    REC("Connections from %{c} not authorized."), true },
	{ "zone somewhat.long.exp.example.com...",
	    REC("Congratulations!  That was tricky."), true },
	{ "zone e4msg.example.com",
	    REC("%{c} is queried as %{ir}.%{v}.arpa"), true },
	{ "zone e6msg.example.com", REC("connect from %{p}"), true },
	{ "zone msg8.example.com",
	    REC("http://example.com/why.html?l=%{L}"), true },
	{ "zone _expspf.example.org",
	    REC("Sender domain not allowed from this host. Please see http:"
	    "//www.openspf.org/Why?s=mfrom&id=%{S}&ip=%{C}&r=%{R}"), true },
};

/* Fail naming LABEL unless WHY is a NUL-terminated printable reason. */
static void
check_why(const char *label, const char *why, size_t whylen, bool empty)
{
	const char *nul = memchr(why, '\0', whylen);
	size_t i;

	if (nul == NULL) {
		fail_msg("%s: reason not NUL-terminated", label);
		return;
	}
	for (i = 0; why + i < nul; i++) {
		unsigned char c = (unsigned char)why[i];

		if (c < 0x20 || c > 0x7e) {
			fail_msg("%s: reason has byte 0x%02x at %zu", label, c,
			    i);
		}
	}
	if (empty && why[0] != '\0') {
		fail_msg("%s: reason \"%s\" with AG_OK", label, why);
	}
	if (!empty && why[0] == '\0') {
		fail_msg("%s: no reason with AG_INVALID", label);
	}
}

/* Fail naming LABEL unless STATUS is WANT and the reason holds WANT_WHY. */
static void
check_result(const char *label, ag_status st, ag_status want,
    const char *why, size_t whylen, const char *want_why)
{
	check_why(label, why, whylen, st == AG_OK);
	if (st != want) {
		fail_msg("%s: status %s, want %s (reason: %s)", label,
		    ag_status_str(st), ag_status_str(want), why);
	}
	if (want_why != NULL && strstr(why, want_why) == NULL) {
		fail_msg("%s: reason \"%s\" lacks \"%s\"", label, why,
		    want_why);
	}
}

/* Check record REC (LEN bytes) as LABEL: status WANT, reason WANT_WHY. */
static void
expect_rec(const char *label, const char *rec, size_t len, ag_status want,
    const char *want_why)
{
	char why[200];
	struct ag_spf_record_info info;
	ag_status st;

	memset(why, 'x', sizeof(why));
	st = ag_spf_record_check(rec, len, &info, why, sizeof(why));
	check_result(label, st, want, why, sizeof(why), want_why);
}

/* Check explanation TXT (LEN bytes) as LABEL: status WANT, WANT_WHY. */
static void
expect_exp(const char *label, const char *txt, size_t len, ag_status want,
    const char *want_why)
{
	char why[200];
	ag_status st;

	memset(why, 'x', sizeof(why));
	st = ag_spf_explanation_check(txt, len, why, sizeof(why));
	check_result(label, st, want, why, sizeof(why), want_why);
}

/* LABEL: "WHO: record", the record's bytes escaped. */
static const char *
suite_label(char *buf, size_t bufsz, const char *who, const char *s,
    size_t len)
{
	size_t i, o;

	o = (size_t)snprintf(buf, bufsz, "%s: ", who);
	for (i = 0; i < len && o + 5 < bufsz; i++) {
		if ((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f) {
			buf[o++] = s[i];
		} else {
			o += (size_t)snprintf(buf + o, bufsz - o, "\\x%02x",
			    (unsigned char)s[i]);
		}
	}
	buf[o < bufsz ? o : bufsz - 1] = '\0';
	return buf;
}

/* Every string of the suite's zone data, as classified above. */
static void
test_suite_records(void **state)
{
	const struct suite_case *c;
	char label[512];
	size_t i, n[3] = { 0, 0, 0 };

	(void)state;
	for (i = 0; i < NELEM(suite_records); i++) {
		c = &suite_records[i];
		n[c->kind]++;
		suite_label(label, sizeof(label), c->label, c->rec, c->len);
		if (ag_spf_record_is_spf(c->rec, c->len) !=
		    (c->kind != NOT_SPF)) {
			fail_msg("%s: ag_spf_record_is_spf() wrong", label);
		}
		expect_rec(label, c->rec, c->len,
		    c->kind == OK ? AG_OK : AG_INVALID,
		    c->kind == NOT_SPF ? "not an SPF record" : NULL);
	}
	if (n[OK] != 106 || n[BAD] != 63 || n[NOT_SPF] != 9) {
		fail_msg("suite table: %zu ok, %zu bad, %zu not SPF; want "
		    "106, 63, 9", n[OK], n[BAD], n[NOT_SPF]);
	}
}

/* The exp= targets of the suite through ag_spf_explanation_check(). */
static void
test_suite_explanations(void **state)
{
	const struct suite_exp *c;
	char label[512];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(suite_explanations); i++) {
		c = &suite_explanations[i];
		suite_label(label, sizeof(label), c->label, c->txt, c->len);
		expect_exp(label, c->txt, c->len,
		    c->valid ? AG_OK : AG_INVALID, NULL);
	}
}

/* 4.5: "v=spf1", case-insensitive, then a space or the end. */
static void
test_is_spf(void **state)
{
	static const struct {
		const char *label, *txt;
		size_t len;
		bool want;
	} cases[] = {
		{ "bare version", REC("v=spf1"), true },
		{ "upper case", REC("V=SPF1 -all"), true },
		{ "mixed case", REC("v=SpF1 ~all"), true },
		{ "trailing space", REC("v=spf1 "), true },
		{ "two spaces", REC("v=spf1  -all"), true },
		{ "version 10", REC("v=spf10"), false },
		{ "no space", REC("v=spf1mx"), false },
		{ "tab after version", REC("v=spf1\t-all"), false },
		{ "LF after version", REC("v=spf1\n-all"), false },
		{ "NUL after version", REC("v=spf1\0 -all"), false },
		{ "leading space", REC(" v=spf1 -all"), false },
		{ "short", REC("v=spf"), false },
		{ "empty", REC(""), false },
		{ "v=spf3", REC("v=spf3 -all"), false },
		{ "spf2.0", REC("spf2.0/pra -all"), false },
		{ "v=spfl", REC("v=spfl am not an SPF record"), false },
		{ "len cuts after version", "v=spf1 -all", 6, true },
		{ "len cuts inside version", "v=spf1", 5, false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		if (ag_spf_record_is_spf(cases[i].txt, cases[i].len) !=
		    cases[i].want) {
			fail_msg("%s: is_spf %d, want %d", cases[i].label,
			    !cases[i].want, cases[i].want);
		}
		if (!cases[i].want) {
			expect_rec(cases[i].label, cases[i].txt, cases[i].len,
			    AG_INVALID, "not an SPF record");
		}
	}
	if (ag_spf_record_is_spf(NULL, 6)) {
		fail_msg("NULL: is_spf true");
	}
}

struct rec_case {
	const char *label, *rec;
	size_t len;
	ag_status want;
	const char *why;	/* part of the reason, or NULL */
};

/* Run a table of record cases. */
static void
run_rec_cases(const struct rec_case *c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		expect_rec(c[i].label, c[i].rec, c[i].len, c[i].want, c[i].why);
	}
}

#define V AG_OK
#define X AG_INVALID

/* CIDR lengths (5.6): /0 valid, no leading zeros, ranges, placement. */
static void
test_cidr(void **state)
{
	static const struct rec_case cases[] = {
		{ "ip4 /0", REC("v=spf1 ip4:0.0.0.0/0 -all"), V, NULL },
		{ "ip6 /0", REC("v=spf1 ip6:::/0"), V, NULL },
		{ "a /0 //0", REC("v=spf1 a/0//0 -all"), V, NULL },
		{ "mx:domain/0", REC("v=spf1 mx:example.com/0"), V, NULL },
		{ "ip4 /32", REC("v=spf1 ip4:192.0.2.1/32"), V, NULL },
		{ "ip4 /33", REC("v=spf1 ip4:192.0.2.1/33"), X,
		    "term 1: ip4: prefix length 33 out of range (0..32)" },
		{ "ip4 /100", REC("v=spf1 ip4:192.0.2.1/100"), X, "range" },
		{ "ip4 huge", REC("v=spf1 ip4:192.0.2.1/99999999999999999999"),
		    X, "range" },
		{ "ip6 /128", REC("v=spf1 ip6:2001:db8::1/128"), V, NULL },
		{ "ip6 /129", REC("v=spf1 ip6:2001:db8::1/129"), X, "range" },
		{ "ip6 /33", REC("v=spf1 ip6:2001:db8::/33"), V, NULL },
		{ "ip4 /032", REC("v=spf1 ip4:1.2.3.4/032"),
		    X, "leading zero" },
		{ "ip4 /00", REC("v=spf1 ip4:1.2.3.4/00"), X, "leading zero" },
		{ "ip6 /064", REC("v=spf1 ip6:2001:db8::/064"), X,
		    "leading zero" },
		{ "a //00", REC("v=spf1 a//00"), X, "leading zero" },
		{ "ip4 empty length", REC("v=spf1 ip4:1.2.3.4/"), X,
		    "missing prefix length" },
		{ "ip4 length 2a", REC("v=spf1 ip4:1.2.3.4/2a"), X,
		    "bad prefix length" },
		{ "ip4 dual", REC("v=spf1 ip4:192.0.2.1/24//64"), X, "dual" },
		{ "ip6 dual", REC("v=spf1 ip6:::1//64"), X, "dual" },
		{ "a /24//64", REC("v=spf1 a/24//64"), V, NULL },
		{ "a //64", REC("v=spf1 a//64"), V, NULL },
		{ "a /24/64", REC("v=spf1 a/24/64"), X, "dual prefix" },
		{ "a /24///64", REC("v=spf1 a/24///64"), X, NULL },
		{ "a //33", REC("v=spf1 a//33"), V, NULL },
		{ "a /33", REC("v=spf1 a/33"), X, "range" },
		{ "a //129", REC("v=spf1 a//129"), X, "range" },
		{ "a /", REC("v=spf1 a/"), X, "missing prefix length" },
		{ "a:domain/24//64", REC("v=spf1 a:example.com/24//64"), V,
		    NULL },
		{ "a:domain//64", REC("v=spf1 a:example.com//64"), V, NULL },
		{ "mx:macro/24", REC("v=spf1 mx:%{d}/24"), V, NULL },
		{ "a:domain/33", REC("v=spf1 a:example.com/33"), X, "range" },
		{ "a:domain/032", REC("v=spf1 a:example.com/032"), X,
		    "leading zero" },
		{ "a:domain/24/64", REC("v=spf1 a:example.com/24/64"),
		    X, NULL },
		{ "a:domain/", REC("v=spf1 a:example.com/"), X, "top label" },
		{ "a: only CIDR", REC("v=spf1 a://64"), X, "empty domain" },
		{ "ptr/0", REC("v=spf1 ptr/0"), X, "no prefix length" },
		{ "ptr:domain/24", REC("v=spf1 ptr:example.com/24"), X,
		    "no prefix length" },
		{ "exists:domain/24", REC("v=spf1 exists:example.com/24"), X,
		    "no prefix length" },
		{ "include:domain//64", REC("v=spf1 include:example.com//64"),
		    X,
		    "no prefix length" },
		{ "all/8", REC("v=spf1 -all/8"), X, "no argument" },
	};

	(void)state;
	run_rec_cases(cases, NELEM(cases));
}

/* Mechanisms: bare forms, all, IP literals, qualifiers, case. */
static void
test_mechanisms(void **state)
{
	static const struct rec_case cases[] = {
		{ "bare ip4", REC("v=spf1 ip4"), X, "ip4: needs" },
		{ "bare ip6", REC("v=spf1 -all ip6"), X, "term 2: ip6: needs" },
		{ "bare exists", REC("v=spf1 exists"), X, "exists: needs" },
		{ "bare include", REC("v=spf1 include +all"), X, "needs" },
		{ "ip4 no address", REC("v=spf1 ip4:"), X, "bad address" },
		{ "ip4/24", REC("v=spf1 ip4/24"), X, "needs" },
		{ "all with dot", REC("v=spf1 -all."), X, "\".\" after" },
		{ "all with argument", REC("v=spf1 -all:foobar"), X,
		    "no argument" },
		{ "all twice", REC("v=spf1 all -all"), V, NULL },
		{ "qualifiers", REC("v=spf1 +a -a ~a ?a +all"), V, NULL },
		{ "double qualifier", REC("v=spf1 ++all"), X,
		    "unknown mechanism \"+all\"" },
		{ "bang qualifier", REC("v=spf1 !all"),
		    X, "unknown mechanism" },
		{ "lone qualifier", REC("v=spf1 -"), X, "unknown mechanism" },
		{ "upper case", REC("V=SPF1 A:EXAMPLE.COM MX PTR "
		    "INCLUDE:EXAMPLE.COM IP4:192.0.2.1 IP6:::1 "
		    "EXISTS:EXAMPLE.COM REDIRECT=EXAMPLE.COM EXP=X.EXAMPLE.COM "
		    "-ALL"), V, NULL },
		{ "unknown mechanism", REC("v=spf1 a mx foo -all"), X,
		    "term 3: unknown mechanism \"foo\"" },
		{ "unknown at end", REC("v=spf1 ip4:1.2.3.4 -all moo"), X,
		    "term 3: unknown mechanism \"moo\"" },
		{ "ip4 ok", REC("v=spf1 ip4:192.0.2.1"), V, NULL },
		{ "ip4 three parts", REC("v=spf1 ip4:192.0.2"), X, "address" },
		{ "ip4 five parts", REC("v=spf1 ip4:192.0.2.1.5"),
		    X, "address" },
		{ "ip4 octet 256", REC("v=spf1 ip4:192.0.2.256"),
		    X, "address" },
		{ "ip4 leading zero", REC("v=spf1 ip4:192.0.02.1"),
		    X, "address" },
		{ "ip4 port", REC("v=spf1 ip4:1.2.3.4:8080"), X, "address" },
		{ "ip4 given ip6", REC("v=spf1 ip4:::1"), X, "address" },
		{ "ip6 ok", REC("v=spf1 ip6:2001:DB8::CAFE/48"), V, NULL },
		{ "ip6 v4-mapped", REC("v=spf1 ip6:::FFFF:1.2.3.4"), V, NULL },
		{ "ip6 full", REC("v=spf1 ip6:2001:db8:0:0:0:0:0:1"), V, NULL },
		{ "ip6 two ::", REC("v=spf1 ip6:2001:db8::1::2"),
		    X, "address" },
		{ "ip6 leading colon", REC("v=spf1 ip6::CAFE::BABE"), X,
		    "address" },
		{ "ip6 nine groups", REC("v=spf1 ip6:1:2:3:4:5:6:7:8:9"), X,
		    "address" },
		{ "ip6 five hex digits", REC("v=spf1 ip6:12345::"), X,
		    "address" },
		{ "ip6 given ip4", REC("v=spf1 ip6:1.2.3.4"), X, "address" },
		{ "ip6 zone", REC("v=spf1 ip6:fe80::1%eth0"), X, "address" },
		{ "ip6 too long",
		    REC("v=spf1 ip6:0000:0000:0000:0000:0000:0000:"
		    "0000:0000:0"), X, "address" },
	};

	(void)state;
	run_rec_cases(cases, NELEM(cases));
}

/* Domain-specs (7.1): top label rules, empty domains, odd characters. */
static void
test_domains(void **state)
{
	static const struct rec_case cases[] = {
		{ "no dot", REC("v=spf1 a:foo-bar -all"), X, "no dot" },
		{ "port", REC("v=spf1 a:example.com:8080"), X,
		    "bad top label \"com:8080\"" },
		{ "IP as domain", REC("v=spf1 a:111.222.33.44"), X,
		    "all digits" },
		{ "numeric top label", REC("v=spf1 mx:abc.123"), X,
		    "all digits" },
		{ "digits and dash", REC("v=spf1 a:example.123-456"), V, NULL },
		{ "top label -com", REC("v=spf1 a:example.-com"), X,
		    "starts or ends" },
		{ "top label com-", REC("v=spf1 a:example.com-"), X,
		    "starts or ends" },
		{ "IDN top label", REC("v=spf1 a:foo.example.xn--zckzah"), V,
		    NULL },
		{ "trailing dot", REC("v=spf1 a:example.com."), V, NULL },
		{ "two trailing dots", REC("v=spf1 a:example.com.."), X,
		    "empty top label" },
		{ "top label only", REC("v=spf1 a:museum"), X, "no dot" },
		{ "top label and dot", REC("v=spf1 a:museum."), X, "no dot" },
		{ "empty a", REC("v=spf1 a:"), X, "a: empty domain" },
		{ "empty mx", REC("v=spf1 mx: -all"), X, "empty domain" },
		{ "empty ptr", REC("v=spf1 ptr:"), X, "empty domain" },
		{ "empty exists", REC("v=spf1 exists:"), X, "empty domain" },
		{ "empty include", REC("v=spf1 include: -all"), X,
		    "empty domain" },
		{ "empty exp", REC("v=spf1 exp= -all"),
		    X, "exp=: empty domain" },
		{ "empty redirect", REC("v=spf1 ?all redirect="), X,
		    "redirect=: empty domain" },
		{ "ABNF: empty macro-string", REC("v=spf1 a:.com"), V, NULL },
		{ "colon and slash", REC("v=spf1 a:foo:bar/baz.example.com"), V,
		    NULL },
		{ "empty label", REC("v=spf1 a:mail.example...com"), V, NULL },
		{ "ends in macro", REC("v=spf1 a:%{d}"), V, NULL },
		{ "ends in %%", REC("v=spf1 a:foo%%"), V, NULL },
		{ "macro then dot", REC("v=spf1 a:%{d}."), X, "no dot" },
		{ "macro then label", REC("v=spf1 exists:%{i}._spf.%{d}.com"),
		    V,
		    NULL },
		{ "macro then number", REC("v=spf1 a:%{d}.123"), X,
		    "all digits" },
		{ "include trailing dot",
		    REC("v=spf1 include:o.spf.example.com. ~all"), V, NULL },
	};

	(void)state;
	run_rec_cases(cases, NELEM(cases));
}

/* Modifiers (6, 4.6.1): names, redirect/exp rules, unknown modifiers. */
static void
test_modifiers(void **state)
{
	static const struct rec_case cases[] = {
		{ "name with . - _", REC("v=spf1 moo.cow-far_out=man:dog/cat"),
		    V, NULL },
		{ "name X123", REC("v=spf1 X123=y"), V, NULL },
		{ "name 1up", REC("v=spf1 1up=foo"), X,
		    "bad modifier name \"1up\"" },
		{ "empty name", REC("v=spf1 =all"), X, "empty modifier name" },
		{ "name _foo", REC("v=spf1 _foo=bar"), X, "bad modifier name" },
		{ "qualified modifier", REC("v=spf1 -foo=bar"), X,
		    "bad modifier name" },
		{ "slash in name", REC("v=spf1 moo.cow/far_out=man:dog/cat"), X,
		    "unknown mechanism \"moo.cow\"" },
		{ "colon in name", REC("v=spf1 moo.cow:far_out=man:dog/cat"), X,
		    "unknown mechanism \"moo.cow\"" },
		{ "redirect:",
		    REC("v=spf1 ip4:1.2.3.4 redirect:t2.example.com"),
		    X, "redirect is a modifier" },
		{ "exp:", REC("v=spf1 exp:x.example.com"), X, "is a modifier" },
		{ "redirect", REC("v=spf1 redirect=example.com"), V, NULL },
		{ "redirect twice",
		    REC("v=spf1 redirect=a.example.com -all "
		    "redirect=a.example.com"),
		    X, "term 3: redirect= given twice" },
		{ "redirect twice, case",
		    REC("v=spf1 Redirect=a.example.com "
		    "REDIRECT=b.example.com"), X,
		    "redirect= given twice" },
		{ "exp twice",
		    REC("v=spf1 exp=a.example.com -all exp=b.example.com"),
		    X, "exp= given twice" },
		{ "exp and redirect", REC("v=spf1 exp=a.example.com "
		    "redirect=b.example.com"), V, NULL },
		{ "exp=-all", REC("v=spf1 exp=-all"), X, "exp=: " },
		{ "redirect=-all", REC("v=spf1 redirect=-all ?all"), X,
		    "redirect=: " },
		{ "redirect=%{d}.",
		    REC("v=spf1 redirect=%{d}.d.spf.example.com."),
		    V, NULL },
		{ "unknown stray %", REC("v=spf1 -all foo=%abc"), X,
		    "foo=: \"%\" followed by \"a\"" },
		{ "unknown empty value", REC("v=spf1 foo="), V, NULL },
		{ "unknown with =", REC("v=spf1 foo=bar=baz"), V, NULL },
		{ "default=pass", REC("v=spf1 default=pass"), V, NULL },
		{ "default=+", REC("v=spf1 default=+"), V, NULL },
		{ "unknown with macro", REC("v=spf1 foo=%{l}.%{d2}"), V, NULL },
		{ "unknown with c", REC("v=spf1 exp-text=%{c}"), X,
		    "only allowed in explanation" },
		{ "a= is a modifier", REC("v=spf1 a=foo"), V, NULL },
		{ "-a= is nothing", REC("v=spf1 -a=foo"), X, "\"=\" after" },
	};

	(void)state;
	run_rec_cases(cases, NELEM(cases));
}

/* Macros (7): letters, where c/r/t go, transformers, delimiters, "%". */
static void
test_macros(void **state)
{
	static const struct rec_case cases[] = {
		{ "all record letters",
		    REC("v=spf1 exists:%{s}.%{l}.%{o}.%{d}.%{i}.%{p}.%{h}."
		    "%{v}.x.com"),
		    V, NULL },
		{ "upper-case letters",
		    REC("v=spf1 exists:%{S}.%{L}.%{O}.%{D}.%{I}.%{P}.%{H}."
		    "%{V}.x.com"),
		    V, NULL },
		{ "r in exp=", REC("v=spf1 -all exp=%{r}.example.com"), X,
		    "macro letter \"r\" is only allowed in explanation text" },
		{ "c in a:", REC("v=spf1 a:%{c}.example.com"),
		    X, "only allowed" },
		{ "t in exists:", REC("v=spf1 exists:%{t}.example.com"), X,
		    "only allowed" },
		{ "R in a:", REC("v=spf1 a:%{R}.example.com"),
		    X, "only allowed" },
		{ "ir in exp=", REC("v=spf1 -all exp=%{ir}.example.com"), V,
		    NULL },
		{ "letter a", REC("v=spf1 a:%{a}.example.com -all"), X,
		    "unknown macro letter \"a\"" },
		{ "no letter", REC("v=spf1 a:%{}.example.com"), X,
		    "unknown macro letter" },
		{ "%( )", REC("v=spf1 -exists:%(ir).sbl.example.com ?all"), X,
		    "\"%\" followed by \"(\"" },
		{ "embedded %( )",
		    REC("v=spf1 exists:foo%(ir).sbl.example.com"),
		    X, "followed by" },
		{ "% before dot", REC("v=spf1 exists:foo%.sbl.example.com"), X,
		    "followed by \".\"" },
		{ "% at end", REC("v=spf1 foo=bar%"), X, "at the end" },
		{ "unterminated", REC("v=spf1 a:%{d"), X, "unterminated" },
		{ "unterminated, delimiters", REC("v=spf1 a:%{d2r.-"), X,
		    "unterminated" },
		{ "escapes", REC("v=spf1 a:macro%%percent%_%_space%-url-space"
		    ".example.com -all"), V, NULL },
		{ "all delimiters", REC("v=spf1 exists:%{l.-+,/_=}.x.com"), V,
		    NULL },
		{ "delimiter |", REC("v=spf1 exists:%{l|}.x.com"), X,
		    "bad character \"|\" in macro" },
		{ "reverse split on dash",
		    REC("v=spf1 exists:%{i}.%{l2r-}.user.%{d2}"), V, NULL },
		{ "several delimiters",
		    REC("v=spf1 exists:%{l2r+-}.user.%{d2}"),
		    V, NULL },
		{ "digits after r", REC("v=spf1 a:%{dr2}.x.com"), X,
		    "bad character \"2\"" },
		{ "two r", REC("v=spf1 a:%{irr}.x.com"),
		    X, "bad character \"r\"" },
		{ "reverse R, lower letter", REC("v=spf1 a:%{dR}.x.com"),
		    V, NULL },
		{ "transformer 0", REC("v=spf1 a:%{d0}.x.com"), X,
		    "transformer 0 out of range" },
		{ "transformer 1", REC("v=spf1 a:%{d1}.x.com"), V, NULL },
	};

	(void)state;
	run_rec_cases(cases, NELEM(cases));
}

/* Bytes (3.1, 4.6.1): control, non-ASCII, NUL, LF; spaces between terms. */
static void
test_bytes(void **state)
{
	static const struct rec_case cases[] = {
		{ "CR between terms",
		    REC("v=spf1 a:ctrl.example.com\rptr -all"),
		    X, "control character 0x0d at offset 25" },
		{ "LF inside", REC("v=spf1 ip4:192.0.2.5\n include:x.com ~all"),
		    X, "control character 0x0a" },
		{ "tab", REC("v=spf1 -all\t"), X, "control character 0x09" },
		{ "DEL", REC("v=spf1 a:x\177.com"),
		    X, "control character 0x7f" },
		{ "NUL inside", REC("v=spf1 -all\0 +all"), X,
		    "NUL byte at offset 11" },
		{ "NUL at end", REC("v=spf1 a:foo.example.com\0"),
		    X, "NUL byte" },
		{ "UTF-8", REC("v=spf1 a:caf\303\251.example.com"), X,
		    "non-ASCII byte 0xc3 at offset 12" },
		{ "BOM", REC("v=spf1 a:\357\273\277garbage.example.net -all"),
		    X,
		    "non-ASCII byte 0xef" },
		{ "two spaces", REC("v=spf1 a  -all"), V, NULL },
		{ "many spaces", REC("v=spf1    a     mx   -all   "), V, NULL },
		{ "version alone", REC("v=spf1"), V, NULL },
		{ "version and space", REC("v=spf1 "), V, NULL },
	};

	(void)state;
	run_rec_cases(cases, NELEM(cases));
}

/* Write PRE, N copies of UNIT and POST into BUF; return the length. */
static size_t
build(char *buf, size_t bufsz, const char *pre, const char *unit, size_t n,
    const char *post)
{
	size_t len = 0, i;

	len += (size_t)snprintf(buf, bufsz, "%s", pre);
	for (i = 0; i < n && len < bufsz; i++) {
		len += (size_t)snprintf(buf + len, bufsz - len, "%s", unit);
	}
	if (len < bufsz) {
		len += (size_t)snprintf(buf + len, bufsz - len, "%s", post);
	}
	if (len >= bufsz) {
		fail_msg("build: %zu bytes do not fit in %zu", len, bufsz);
	}
	return len;
}

/* A generated case: PRE, N x UNIT, POST, as a record or an explanation. */
struct gen_case {
	const char *label, *pre, *unit;
	size_t n;
	const char *post;
	bool explanation;
	ag_status want;
	const char *why;
};

/* Run generated cases. */
static void
run_gen_cases(const struct gen_case *c, size_t n)
{
	static char buf[8192];
	size_t i, len;

	for (i = 0; i < n; i++) {
		len = build(buf, sizeof(buf), c[i].pre, c[i].unit, c[i].n,
		    c[i].post);
		if (c[i].explanation) {
			expect_exp(c[i].label, buf, len, c[i].want, c[i].why);
		} else {
			expect_rec(c[i].label, buf, len, c[i].want, c[i].why);
		}
	}
}

/*
 * Rule 1 (CVE-2021-20314, CVE-2023-42118): compiled size of one
 * macro-string at most 504 bytes; the two attack forms measured against
 * Debian 12's libspf2 ("stack smashing detected"), and the boundaries.
 */
static void
test_safety_compiled_size(void **state)
{
	static const struct gen_case cases[] = {
		{ "42118 record attack", "v=spf1 exists:", "x%{d}", 42,
		    "%{d}" /* 508 bytes */, false, X, "CVE-2023-42118" },
		{ "42118 record attack, text", "v=spf1 exists:x%{d}%{d}", "y",
		    3700, ".com", false, X, "CVE-2023-42118" },
		{ "42118 modifier attack", "v=spf1 foo=", "x%{d}", 42,
		    "%{d}yyy", false, X, "CVE-2023-42118" },
		{ "126 macros (504 bytes)", "v=spf1 exists:", "%{d}", 126, "",
		    false, V, NULL },
		{ "127 macros (508 bytes)", "v=spf1 exists:", "%{d}", 127, "",
		    false, X, "compiles to 508 bytes, at most 504" },
		{ "42 x%{d} (504 bytes)", "v=spf1 exists:", "x%{d}", 42, "",
		    false, V, NULL },
		{ "42 x%{d} and .com", "v=spf1 exists:", "x%{d}", 42, ".com",
		    false, X, "compiles to 512" },
		{ "125 macros + CIDR (504)", "v=spf1 a:", "%{d}", 125, "/24",
		    false, V, NULL },
		{ "126 macros + CIDR (508)", "v=spf1 a:", "%{d}", 126, "/24",
		    false, X, "compiles to 508" },
		{ "126 macros, no CIDR", "v=spf1 a:", "%{d}", 126, "", false, V,
		    NULL },
		{ "500-byte domain (504)", "v=spf1 exists:", "a", 496, ".com",
		    false, V, NULL },
		{ "501-byte domain (508)", "v=spf1 exists:", "a", 497, ".com",
		    false, X, "CVE-2023-42118" },
		{ "500-byte value", "v=spf1 foo=", "x", 500, "", false, V,
		    NULL },
		{ "501-byte value", "v=spf1 foo=", "x", 501, "", false, X,
		    "compiles to 508" },
		{ "%- counts 3", "v=spf1 foo=", "%-", 166, "xx", false, V,
		    NULL },
		{ "%- counts 3, over", "v=spf1 foo=", "%-", 167, "", false, X,
		    "compiles to 508" },
		{ "42118 explanation attack", "", "%{d}", 127, "", true, X,
		    "CVE-2023-42118" },
		{ "42118 explanation, text", "%{d}", "%{d}", 126,
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
		    true, X, "CVE-2023-42118" },
		{ "explanation 126 macros", "", "%{d}", 126, "", true, V,
		    NULL },
		{ "20314: 500 bytes of text", "", "x", 500, "", true, V, NULL },
		{ "20314: 501 bytes of text", "", "x", 501, "", true, X,
		    "compiles to 508" },
		{ "libspf2 reads \" {d}\" as a macro", "", "x {d}", 42, "",
		    true, V, NULL },
		{ "\" {d}\" macros, over", "", "x {d}", 42, "x", true, X,
		    "compiles to 512" },
		{ "spaces count 1", "", "x ", 250, "", true, V, NULL },
	};

	(void)state;
	run_gen_cases(cases, NELEM(cases));
}

/* Rules 2 and 3: URL-encoded reversed macros, transformer digits. */
static void
test_safety_macros(void **state)
{
	static const struct rec_case recs[] = {
		{ "33913 %{Lr}", REC("v=spf1 exists:%{Lr}.example.com"), X,
		    "CVE-2021-33913" },
		{ "33913 %{D2r}", REC("v=spf1 -all exp=msg.%{D2r}"), X,
		    "CVE-2021-33913" },
		{ "33913 %{IR-}", REC("v=spf1 a:%{IR-}.example.com"), X,
		    "CVE-2021-33913" },
		{ "33913 in a modifier", REC("v=spf1 exp-text=%{Sr}"), X,
		    "CVE-2021-33913" },
		{ "reversed, not encoded", REC("v=spf1 a:%{ir}.example.com"), V,
		    NULL },
		{ "encoded, not reversed", REC("v=spf1 -all exp=msg8.%{D2}"), V,
		    NULL },
		{ "encoded HELO", REC("v=spf1 a:%{H}.bar -all"), V, NULL },
		{ "transformer 128", REC("v=spf1 a:%{d128}.x.com"), V, NULL },
		{ "transformer 127r", REC("v=spf1 a:%{d127r}.x.com"), V, NULL },
		{ "transformer 129", REC("v=spf1 a:%{d129}.x.com"), X,
		    "transformer 129 out of range (1..128)" },
		{ "transformer 999", REC("v=spf1 a:%{d999}.x.com"),
		    X, "range" },
		{ "transformer 000", REC("v=spf1 a:%{d000}.x.com"),
		    X, "range" },
		{ "transformer 01", REC("v=spf1 a:%{d01}.x.com"), V, NULL },
		{ "transformer 001", REC("v=spf1 a:%{d001}.x.com"), V, NULL },
		{ "transformer 4 digits", REC("v=spf1 a:%{d0001}.x.com"), X,
		    "4 digits" },
		{ "transformer wraps int", REC("v=spf1 a:%{d4294967297}.x.com"),
		    X, "10 digits" },
	};
	static const struct rec_case exps[] = {
		{ "33913 in explanation", REC("see %{Lr}"),
		    X, "CVE-2021-33913" },
		{ "33913 as libspf2 reads it", REC("see {Lr}"), X,
		    "CVE-2021-33913" },
		{ "not a macro to anyone", REC("see{Lr}"), V, NULL },
		{ "libspf2 digits", REC("see {d99999999999}"), X, "digits" },
		{ "libspf2 unknown letter", REC("see {x}"), V, NULL },
		{ "encoded letters", REC("%{S} %{C} %{R} %{L}"), V, NULL },
	};
	size_t i;

	(void)state;
	run_rec_cases(recs, NELEM(recs));
	for (i = 0; i < NELEM(exps); i++) {
		expect_exp(exps[i].label, exps[i].rec, exps[i].len,
		    exps[i].want, exps[i].why);
	}
}

/* AG_SPF_RECORD_MAX: 4096 bytes pass, 4097 do not. */
static void
test_length(void **state)
{
	static const struct gen_case cases[] = {
		{ "4096 bytes", "v=spf1 -all", " ", 4085, "", false, V, NULL },
		{ "4097 bytes", "v=spf1 -all", " ", 4086, "", false, X,
		    "record of 4097 bytes (at most 4096)" },
		{ "4096 bytes of terms", "v=spf1", " ip4:192.0.2.1", 291,
		    " mx:abc.com -all", false, V, NULL },
		{ "4097 bytes of terms", "v=spf1", " ip4:192.0.2.1", 291,
		    " mx:abcd.com -all", false, X, "4097 bytes" },
	};

	(void)state;
	run_gen_cases(cases, NELEM(cases));
}

/* Explanation text (6.2): any printable ASCII and spaces, macro rules. */
static void
test_explanation(void **state)
{
	static const struct rec_case cases[] = {
		{ "empty", REC(""), V, NULL },
		{ "spaces", REC("   "), V, NULL },
		{ "exp-only letters",
		    REC("%{c} %{r} %{t} %{C} %{ir}.%{v}.arpa"),
		    V, NULL },
		{ "all letters", REC("%{s}%{l}%{o}%{d}%{i}%{p}%{h}%{c}%{r}%{t}"
		    "%{v}"), V, NULL },
		{ "unknown letter", REC("The %{x}-files."), X,
		    "explanation: unknown macro letter \"x\"" },
		{ "stray %", REC("100% sure"), X, "followed by \" \"" },
		{ "% at end", REC("100%"), X, "at the end" },
		{ "escaped %", REC("100%% sure%_%-"), V, NULL },
		{ "punctuation", REC("!\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"), V,
		    NULL },
		{ "tab", REC("a\tb"), X, "control character 0x09" },
		{ "LF", REC("line\n"), X, "control character 0x0a" },
		{ "NUL", REC("a\0b"), X, "NUL byte at offset 1" },
		{ "non-ASCII", REC("\357\273\277Explanation"), X,
		    "non-ASCII byte 0xef at offset 0" },
		{ "unterminated", REC("see %{d"), X, "unterminated" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		expect_exp(cases[i].label, cases[i].rec, cases[i].len,
		    cases[i].want, cases[i].why);
	}
	expect_exp("NULL", NULL, 0, AG_INVALID, "no explanation");
}

/* What ag_spf_record_check() reports in INFO. */
static void
test_info(void **state)
{
	static const struct {
		const char *label, *rec;
		struct ag_spf_record_info want;
	} cases[] = {
		{ "everything", "v=spf1 a mx ptr include:a.example.com "
		    "exists:%{i}.b.example.com ip4:1.2.3.4 ip6:::1 "
		    "redirect=c.example.com exp=d.example.com -all",
		    { 6, true, true, true, true, true } },
		{ "version only", "v=spf1", { 0, false, false, false, false,
		    false } },
		{ "escapes are no macros", "v=spf1 a:%%.example.com -all",
		    { 1, false, false, true, false, false } },
		{ "macro in a modifier", "v=spf1 foo=%{l}",
		    { 0, false, false, false, false, true } },
		{ "11 DNS terms", "v=spf1 a mx a mx a mx a mx a ptr a "
		    "ip4:1.2.3.4 -all",
		    { 11, false, false, true, true, false } },
	};
	const struct ag_spf_record_info *w;
	struct ag_spf_record_info info;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		memset(&info, 0xff, sizeof(info));
		if (ag_spf_record_check(cases[i].rec, strlen(cases[i].rec),
		    &info, NULL, 0) != AG_OK) {
			fail_msg("%s: not AG_OK", cases[i].label);
		}
		w = &cases[i].want;
		if (info.dns_terms != w->dns_terms ||
		    info.has_redirect != w->has_redirect ||
		    info.has_exp != w->has_exp || info.has_all != w->has_all ||
		    info.has_ptr != w->has_ptr ||
		    info.has_macros != w->has_macros) {
			fail_msg("%s: info %u/%d/%d/%d/%d/%d, want "
			    "%u/%d/%d/%d/%d/%d", cases[i].label, info.dns_terms,
			    info.has_redirect, info.has_exp, info.has_all,
			    info.has_ptr, info.has_macros, w->dns_terms,
			    w->has_redirect, w->has_exp, w->has_all,
			    w->has_ptr, w->has_macros);
		}
	}
	memset(&info, 0xff, sizeof(info));
	if (ag_spf_record_check(REC("v=spf1 a ptr foo"), &info, NULL, 0) !=
	    AG_INVALID || info.dns_terms != 0 || info.has_ptr) {
		fail_msg("invalid record: INFO not cleared");
	}
	if (ag_spf_record_check(REC("v=spf1 a"), NULL, NULL, 0) != AG_OK) {
		fail_msg("NULL info: not AG_OK");
	}
}

/* WHY: bounded, terminated, printable, escaped; NULL and tiny buffers. */
static void
test_why(void **state)
{
	char why[64];
	ag_status st;

	(void)state;
	if (ag_spf_record_check(REC("v=spf1 foo"), NULL, NULL, 0) !=
	    AG_INVALID) {
		fail_msg("NULL why: not AG_INVALID");
	}
	memset(why, 'x', sizeof(why));
	st = ag_spf_record_check(REC("v=spf1 foo"), NULL, why, 1);
	if (st != AG_INVALID || why[0] != '\0' || why[1] != 'x') {
		fail_msg("whylen 1: want \"\" and the rest untouched");
	}
	memset(why, 'x', sizeof(why));
	st = ag_spf_record_check(REC("v=spf1 foo"), NULL, why, 8);
	if (st != AG_INVALID || strcmp(why, "term 1:") != 0 || why[8] != 'x') {
		fail_msg("whylen 8: got \"%.8s\"", why);
	}
	memset(why, 'x', sizeof(why));
	st = ag_spf_record_check(REC("v=spf1 a b\"c\\d"), NULL, why,
	    sizeof(why));
	check_result("quote and backslash escaped", st, AG_INVALID, why,
	    sizeof(why), "\"b\\x22c\\x5cd\"");
	memset(why, 'x', sizeof(why));
	st = ag_spf_record_check(REC("v=spf1 "
	    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"), NULL, why,
	    sizeof(why));
	check_result("long name shortened", st, AG_INVALID, why, sizeof(why),
	    "\"abcdefghijklmnopqrstuvwxyzabcdef...\"");
	expect_rec("NULL record", NULL, 0, AG_INVALID, "no record");
	memset(why, 'x', sizeof(why));
	st = ag_spf_record_check(REC("v=spf1 a"), NULL, why, sizeof(why));
	check_result("AG_OK clears WHY", st, AG_OK, why, sizeof(why), NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suite_records),
		cmocka_unit_test(test_suite_explanations),
		cmocka_unit_test(test_is_spf),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_mechanisms),
		cmocka_unit_test(test_domains),
		cmocka_unit_test(test_modifiers),
		cmocka_unit_test(test_macros),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_safety_compiled_size),
		cmocka_unit_test(test_safety_macros),
		cmocka_unit_test(test_length),
		cmocka_unit_test(test_explanation),
		cmocka_unit_test(test_info),
		cmocka_unit_test(test_why),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
