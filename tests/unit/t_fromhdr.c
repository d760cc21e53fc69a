/*
 * t_fromhdr.c - unit tests for lib/fromhdr.c: the RFC5322.From parser for
 * DMARC.  Table-driven: every case has a label that a failure names.  Each
 * input is copied into a heap buffer of exactly its length, so that a read
 * past LEN shows under AddressSanitizer.  Ends with a deterministic fuzz
 * loop over mutated seed headers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "fromhdr.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Size of the big inputs: 100 KB. */
#define BIG (100 * 1024)

/* Fail naming LABEL unless GOT equals WANT. */
static void
check_str(const char *label, const char *what, const char *got,
    const char *want)
{
	if (strcmp(got, want) != 0) {
		fail_msg("%s: %s is \"%s\", want \"%s\"", label, what, got,
		    want);
	}
}

/* Fail naming LABEL unless status GOT equals WANT. */
static void
check_status(const char *label, enum ag_from_status got,
    enum ag_from_status want)
{
	if (got != want) {
		fail_msg("%s: status %s, want %s", label,
		    ag_from_status_name(got), ag_from_status_name(want));
	}
}

/*
 * Parse LEN bytes of IN from a heap copy of exactly LEN bytes, with OUT
 * filled with junk first.
 */
static enum ag_from_status
parse_exact(const char *in, size_t len, struct ag_from *out)
{
	enum ag_from_status st;
	char *buf;

	buf = malloc(len > 0 ? len : 1);
	if (buf == NULL) {
		fail_msg("out of memory");
		return AG_FROM_SYNTAX;
	}
	memcpy(buf, in, len);
	memset(out, 0xa5, sizeof(*out));
	st = ag_from_parse(buf, len, out);
	free(buf);
	return st;
}

/* Parse IN and check status and both parts (empty unless AG_FROM_OK). */
static void
check_parse(const char *label, const char *in, size_t len,
    enum ag_from_status want, const char *local, const char *domain)
{
	struct ag_from f;

	check_status(label, parse_exact(in, len, &f), want);
	check_str(label, "local", f.local, local);
	check_str(label, "domain", f.domain, domain);
}

struct from_case {
	const char *label;
	const char *in;
	size_t len;		/* 0: strlen(in) */
	enum ag_from_status want;
	const char *local, *domain;
};

#define OK(l, d) AG_FROM_OK, l, d
#define NOT(st) AG_FROM_##st, "", ""

static const struct from_case from_cases[] = {
	/* addr-spec */
	{ "plain addr-spec", "a@example.com", 0, OK("a", "example.com") },
	{ "upper-case domain", "User@EXAMPLE.Com", 0,
	    OK("User", "example.com") },
	{ "trailing dot stripped", "a@example.com.", 0,
	    OK("a", "example.com") },
	{ "white space around", "  a@example.com \t", 0,
	    OK("a", "example.com") },
	{ "dotted local", "first.last@example.com", 0,
	    OK("first.last", "example.com") },
	{ "obs CFWS around dots", "first . last @ example . com", 0,
	    OK("first.last", "example.com") },
	{ "quoted local with @", "\"a@b\"@example.com", 0,
	    OK("a@b", "example.com") },
	{ "quoted local with space", "\"a b\"@example.com", 0,
	    OK("a b", "example.com") },
	{ "quoted local escapes", "\"a\\\"b\\\\c\"@example.com", 0,
	    OK("a\"b\\c", "example.com") },
	{ "empty quoted local", "\"\"@example.com", 0,
	    OK("", "example.com") },
	{ "quoted and atom words", "\"a\".b@example.com", 0,
	    OK("a.b", "example.com") },
	{ "all atext in local", "a!#$%&'*+-/=?^_`{|}~@example.com", 0,
	    OK("a!#$%&'*+-/=?^_`{|}~", "example.com") },
	{ "docomo dots in local", "a..b.@docomo.example", 0,
	    OK("a..b.", "docomo.example") },
	{ "underscore in domain", "a@exam_ple.com", 0,
	    OK("a", "exam_ple.com") },
	{ "single-label domain", "a@localhost", 0, OK("a", "localhost") },
	{ "all-numeric domain", "a@192.0.2.1", 0, OK("a", "192.0.2.1") },
	{ "hyphen in domain", "a@mail-1.example.com", 0,
	    OK("a", "mail-1.example.com") },
	{ "punycode domain", "j@xn--bcher-kva.example", 0,
	    OK("j", "xn--bcher-kva.example") },
	{ "EAI domain", "j@B\xc3\xbc" "cher.EXAMPLE", 0,
	    OK("j", "b\xc3\xbc" "cher.example") },
	{ "EAI local", "j\xc3\xb6rg@example.com", 0,
	    OK("j\xc3\xb6rg", "example.com") },

	/* name-addr and display names */
	{ "name-addr", "John <j@example.com>", 0, OK("j", "example.com") },
	{ "name-addr without space", "John<j@example.com>", 0,
	    OK("j", "example.com") },
	{ "angle-addr alone", "<a@example.com>", 0, OK("a", "example.com") },
	{ "spaces inside angle", "< a @ example.com >", 0,
	    OK("a", "example.com") },
	{ "obs-phrase with dot", "John Q. Public <jqp@example.com>", 0,
	    OK("jqp", "example.com") },
	{ "quoted name", "\"John Smith\" <j@example.com>", 0,
	    OK("j", "example.com") },
	{ "quoted name with comma", "\"a, b\" <x@example.com>", 0,
	    OK("x", "example.com") },
	{ "quoted name escaped quotes", "\"a \\\"b\\\", c\" <x@example.com>",
	    0, OK("x", "example.com") },
	{ "quoted name with backslash", "\"a\\\\\" <x@example.com>", 0,
	    OK("x", "example.com") },
	{ "quoted name hiding an address",
	    "\"b@evil.example, <c@evil.example>\" <a@good.example>", 0,
	    OK("a", "good.example") },
	{ "empty quoted name (CVE-2021-34555)", "\"\" <a@b.example>", 0,
	    OK("a", "b.example") },
	{ "empty quoted name, no space", "\"\"<a@b.example>", 0,
	    OK("a", "b.example") },
	{ "two empty quoted names", "\"\" \"\" <a@b.example>", 0,
	    OK("a", "b.example") },
	{ "quoted and atom words in name", "\"Dr.\" John \"Q\" <x@example.com>",
	    0, OK("x", "example.com") },
	{ "encoded word q", "=?utf-8?q?J=C3=B6rg?= <j@example.com>", 0,
	    OK("j", "example.com") },
	{ "encoded word b", "=?utf-8?b?SsO2cmc=?= <j@example.com>", 0,
	    OK("j", "example.com") },
	{ "two encoded words", "=?utf-8?q?J?= =?utf-8?q?=C3=B6rg?= "
	    "<j@example.com>", 0, OK("j", "example.com") },
	{ "UTF-8 name", "J\xc3\xb6rg <j@example.com>", 0,
	    OK("j", "example.com") },
	{ "Latin-1 name", "J\xf6rg <j@example.com>", 0,
	    OK("j", "example.com") },
	{ "control byte in quoted name", "\"J\x01o\" <j@example.com>", 0,
	    OK("j", "example.com") },
	{ "phrase starts with a dot", ".John <a@example.com>", 0,
	    NOT(SYNTAX) },
	{ "unquoted @ in name", "x@evil.example <a@good.example>", 0,
	    NOT(SYNTAX) },
	{ "colon in name", "Re: Bob <a@example.com>", 0, NOT(SYNTAX) },
	{ "brackets in name", "[ext] Bob <a@example.com>", 0, NOT(SYNTAX) },
	{ "DEL in name", "J\x7fo <a@example.com>", 0, NOT(SYNTAX) },
	{ "control byte in name", "J\x01o <a@example.com>", 0, NOT(SYNTAX) },
	{ "phrase then addr-spec", "John a@example.com", 0, NOT(SYNTAX) },
	{ "text after angle-addr", "<a@example.com> John", 0, NOT(SYNTAX) },
	{ "name only", "John Smith", 0, NOT(SYNTAX) },

	/* comments */
	{ "comment before", "(c) a@example.com", 0, OK("a", "example.com") },
	{ "comment after", "a@example.com (Alice)", 0,
	    OK("a", "example.com") },
	{ "comments around @", "a(c)@(c)example.com", 0,
	    OK("a", "example.com") },
	{ "comments inside angle", "Al <(c)a@example.com(c)>", 0,
	    OK("a", "example.com") },
	{ "comments around domain dot", "a@example(c).(c)com", 0,
	    OK("a", "example.com") },
	{ "nested comment", "a@example.com (a (b (c)) d)", 0,
	    OK("a", "example.com") },
	{ "quoted-pair in comment", "a@example.com (a \\) \\( b)", 0,
	    OK("a", "example.com") },
	{ "comment hiding addresses",
	    "(b@evil.example, <c@evil.example>) a@good.example", 0,
	    OK("a", "good.example") },
	{ "comment between domain atoms", "a@exa(c)mple.com", 0,
	    NOT(BAD_DOMAIN) },
	{ "only a comment", "(just a comment)", 0, NOT(NONE) },
	{ "unclosed comment", "a@example.com (x", 0, NOT(SYNTAX) },
	{ "unclosed nested comment", "a@example.com (x (y)", 0,
	    NOT(SYNTAX) },
	{ "comment ends in backslash", "a@example.com (x\\", 0,
	    NOT(SYNTAX) },
	{ "stray close paren after angle", "<a@example.com> )", 0,
	    NOT(SYNTAX) },
	{ "stray close paren in domain", "a@example.com)", 0,
	    NOT(BAD_DOMAIN) },

	/* quotes, brackets */
	{ "unclosed quote", "\"abc <a@example.com>", 0, NOT(SYNTAX) },
	{ "quote ends in backslash", "\"abc\\", 0, NOT(SYNTAX) },
	{ "escaped closing quote", "\"abc\\\" <a@example.com>", 0,
	    NOT(SYNTAX) },
	{ "unclosed angle", "John <a@example.com", 0, NOT(SYNTAX) },
	{ "extra close angle", "<a@example.com>>", 0, NOT(SYNTAX) },
	{ "nested angles", "<<a@example.com>>", 0, NOT(SYNTAX) },
	{ "close angle after addr-spec", "a@example.com>", 0, NOT(SYNTAX) },
	{ "open angle in domain", "<a@exa<mple.com>", 0, NOT(SYNTAX) },
	{ "unclosed domain literal", "a@[192.0.2.1", 0, NOT(SYNTAX) },
	{ "empty angle-addr", "<>", 0, NOT(SYNTAX) },
	{ "name and empty angle-addr", "\"x\" <>", 0, NOT(SYNTAX) },

	/* folding, CR, LF, NUL */
	{ "folded CRLF", "\"Name\"\r\n <a@example.com>", 0,
	    OK("a", "example.com") },
	{ "folded LF (milter)", "\"Name\"\n\t<a@example.com>", 0,
	    OK("a", "example.com") },
	{ "fold in quoted name", "\"Na\r\n me\" <a@example.com>", 0,
	    OK("a", "example.com") },
	{ "fold in quoted local", "\"a\r\n b\"@example.com", 0,
	    OK("a b", "example.com") },
	{ "fold in comment", "a@example.com (x\r\n y)", 0,
	    OK("a", "example.com") },
	{ "fold in angle-addr", "<a@\r\n\texample.com>", 0,
	    OK("a", "example.com") },
	{ "two folds", "Al\r\n \r\n <a@example.com>", 0,
	    OK("a", "example.com") },
	{ "bare CR", "a@example.com\rb", 0, NOT(SYNTAX) },
	{ "CR before space", "a@example.com\r b", 0, NOT(SYNTAX) },
	{ "bare LF", "a@good.example\nb@evil.example", 0, NOT(SYNTAX) },
	{ "CRLF without WSP", "\"x\"\r\n<a@example.com>", 0, NOT(SYNTAX) },
	{ "trailing CRLF", "a@example.com\r\n", 0, NOT(SYNTAX) },
	{ "LFCR", "a@example.com\n\r b", 0, NOT(SYNTAX) },
	{ "NUL in domain", "a@exa\0mple.com", 14, NOT(SYNTAX) },
	{ "NUL in quoted name", "\"a\0\" <a@example.com>", 20,
	    NOT(SYNTAX) },
	{ "NUL in comment", "a@example.com (\0)", 17, NOT(SYNTAX) },
	{ "NUL at end", "a@example.com\0", 14, NOT(SYNTAX) },

	/* several mailboxes (CVE-2019-16378) */
	{ "two addr-specs", "a@example.com, b@example.org", 0,
	    NOT(MULTIPLE) },
	{ "two angle-addrs (CVE-2019-16378)",
	    "<a@good.example>, <b@evil.example>", 0, NOT(MULTIPLE) },
	{ "second after a fold (CVE-2019-16378)",
	    "a@good.example\r\n\t, b@evil.example", 0, NOT(MULTIPLE) },
	{ "name-addr and angle-addr", "\"x\" <a@example.com>, <b@example.org>",
	    0, NOT(MULTIPLE) },
	{ "quoted comma then second", "\"a, b\" <a@example.com>, b@example.org",
	    0, NOT(MULTIPLE) },
	{ "same address twice", "a@example.com, a@example.com", 0,
	    NOT(MULTIPLE) },
	{ "three", "a@x.example, b@y.example, c@z.example", 0,
	    NOT(MULTIPLE) },
	{ "second with bad domain", "a@example.com, b@[192.0.2.1]", 0,
	    NOT(MULTIPLE) },
	{ "first with bad domain", "a@exa!mple.com, b@example.org", 0,
	    NOT(MULTIPLE) },
	{ "empty members between", ",a@example.com,,b@example.org,", 0,
	    NOT(MULTIPLE) },
	{ "comment between", "a@example.com (,) , (x) b@example.org", 0,
	    NOT(MULTIPLE) },
	{ "no comma between angle-addrs", "<a@good.example> <b@evil.example>",
	    0, NOT(SYNTAX) },
	{ "no comma after addr-spec", "a@good.example <b@evil.example>", 0,
	    NOT(SYNTAX) },
	{ "comma inside angle-addr", "<a@good.example, b@evil.example>", 0,
	    NOT(SYNTAX) },
	{ "semicolon as separator", "a@good.example; b@evil.example", 0,
	    NOT(BAD_DOMAIN) },
	{ "multiple then syntax", "a@x.example, b@y.example, <", 0,
	    NOT(SYNTAX) },
	{ "trailing comma", "a@example.com,", 0, OK("a", "example.com") },
	{ "leading comma", ", a@example.com", 0, OK("a", "example.com") },
	{ "many commas around", " ,, a@example.com ,, ", 0,
	    OK("a", "example.com") },
	{ "only commas", " , ,", 0, NOT(NONE) },

	/* groups */
	{ "group with one member", "friends: a@example.com;", 0,
	    OK("a", "example.com") },
	{ "group with a name-addr", "g: Al <a@example.com>;", 0,
	    OK("a", "example.com") },
	{ "group with a comment after", "g: a@example.com; (c)", 0,
	    OK("a", "example.com") },
	{ "group with empty members", "g: , a@example.com, ;", 0,
	    OK("a", "example.com") },
	{ "group with dotted name", "A.B: a@example.com;", 0,
	    OK("a", "example.com") },
	{ "empty group", "undisclosed-recipients:;", 0, NOT(NONE) },
	{ "empty group with space", "undisclosed-recipients: ;", 0,
	    NOT(NONE) },
	{ "two empty groups", "a:;, b: (c) ;", 0, NOT(NONE) },
	{ "empty group and mailbox", "g:;, b@example.org", 0,
	    OK("b", "example.org") },
	{ "group with two members", "g: a@x.example, b@y.example;", 0,
	    NOT(MULTIPLE) },
	{ "two groups of one", "g: a@x.example;, h: b@y.example;", 0,
	    NOT(MULTIPLE) },
	{ "group and mailbox", "g: a@x.example;, b@y.example", 0,
	    NOT(MULTIPLE) },
	{ "mailbox and group", "<b@y.example>, g: a@x.example;", 0,
	    NOT(MULTIPLE) },
	{ "group bad domain", "g: a@exa%mple.com;", 0, NOT(BAD_DOMAIN) },
	{ "text after group", "g: a@example.com;x", 0, NOT(SYNTAX) },
	{ "group without semicolon", "g: a@example.com", 0, NOT(SYNTAX) },
	{ "empty group without semicolon", "g:", 0, NOT(SYNTAX) },
	{ "nested group", "g: h: a@example.com;;", 0, NOT(SYNTAX) },
	{ "group without name", ": a@example.com;", 0, NOT(SYNTAX) },
	{ "two groups, no comma", "g:; h:;", 0, NOT(SYNTAX) },
	{ "semicolon outside group", "<a@example.com>;", 0, NOT(SYNTAX) },

	/* obs-route */
	{ "obs-route", "<@relay.example:user@example.com>", 0,
	    OK("user", "example.com") },
	{ "obs-route two hops", "<@a.example,@b.example:u@example.com>", 0,
	    OK("u", "example.com") },
	{ "obs-route empty hops", "<,@a.example,,@[192.0.2.1],:u@example.com>",
	    0, OK("u", "example.com") },
	{ "obs-route with name", "Joe <@relay.example:joe@example.com>", 0,
	    OK("joe", "example.com") },
	{ "obs-route with CFWS", "< @ relay.example (c) : u@example.com>", 0,
	    OK("u", "example.com") },
	{ "route without colon", "<@relay.example u@example.com>", 0,
	    NOT(SYNTAX) },
	{ "route to nothing", "<@relay.example:>", 0, NOT(SYNTAX) },
	{ "route without domain", "<@:u@example.com>", 0, NOT(SYNTAX) },
	{ "route only", "<@example.com>", 0, NOT(SYNTAX) },
	{ "comma without route", "<,u@example.com>", 0, NOT(SYNTAX) },
	{ "route outside angle", "@relay.example:u@example.com", 0,
	    NOT(SYNTAX) },

	/* domains */
	{ "domain literal", "a@[192.0.2.1]", 0, NOT(BAD_DOMAIN) },
	{ "IPv6 literal in angle", "<a@[IPv6:2001:db8::1]>", 0,
	    NOT(BAD_DOMAIN) },
	{ "semicolon in domain", "a@example.com;x", 0, NOT(BAD_DOMAIN) },
	{ "bang in domain", "a@exa!mple.com", 0, NOT(BAD_DOMAIN) },
	{ "percent in domain", "a@example.com%evil.example", 0,
	    NOT(BAD_DOMAIN) },
	{ "slash in domain", "a@exa/mple.com", 0, NOT(BAD_DOMAIN) },
	{ "space in domain", "a@exa mple.com", 0, NOT(BAD_DOMAIN) },
	{ "space in angle domain", "<a@exa mple.com>", 0, NOT(BAD_DOMAIN) },
	{ "second @", "a@b@example.com", 0, NOT(BAD_DOMAIN) },
	{ "colon and port", "<a@example.com:25>", 0, NOT(BAD_DOMAIN) },
	{ "quoted domain", "a@\"example.com\"", 0, NOT(BAD_DOMAIN) },
	{ "backslash in domain", "a@exa\\mple.com", 0, NOT(BAD_DOMAIN) },
	{ "close bracket in domain", "a@example.com]", 0, NOT(BAD_DOMAIN) },
	{ "control byte in domain", "a@exa\x01mple.com", 0, NOT(BAD_DOMAIN) },
	{ "DEL in domain", "a@exa\x7fmple.com", 0, NOT(BAD_DOMAIN) },
	{ "Latin-1 in domain", "j@b\xfc" "cher.example", 0, NOT(BAD_DOMAIN) },
	{ "overlong UTF-8 in domain", "j@\xc0\xaf.example", 0,
	    NOT(BAD_DOMAIN) },
	{ "empty domain", "a@", 0, NOT(BAD_DOMAIN) },
	{ "empty domain in angle", "<a@>", 0, NOT(BAD_DOMAIN) },
	{ "empty domain before comma", "a@, b@example.org", 0,
	    NOT(MULTIPLE) },
	{ "double dot", "a@example..com", 0, NOT(BAD_DOMAIN) },
	{ "leading dot", "a@.example.com", 0, NOT(BAD_DOMAIN) },
	{ "two trailing dots", "a@example.com..", 0, NOT(BAD_DOMAIN) },
	{ "only a dot", "a@.", 0, NOT(BAD_DOMAIN) },
	{ "comment-split label (CVE-2020-12272)", "a@example.net(.example.com",
	    0, NOT(SYNTAX) },
	{ "paren-split label", "a@example.net).example.com", 0,
	    NOT(BAD_DOMAIN) },

	/* the examples of RFC 5322 appendix A */
	{ "RFC 5322 A.1.1", "John Doe <jdoe@machine.example>", 0,
	    OK("jdoe", "machine.example") },
	{ "RFC 5322 A.1.2", "\"Joe Q. Public\" <john.q.public@example.com>",
	    0, OK("john.q.public", "example.com") },
	{ "RFC 5322 A.1.2 list", "Mary Smith <mary@x.test>, jdoe@example.org, "
	    "Who? <one@y.test>", 0, NOT(MULTIPLE) },
	{ "RFC 5322 A.1.3 group", "A Group:Ed Jones <c@a.test>,joe@where.test,"
	    "John <jdoe@one.test>;", 0, NOT(MULTIPLE) },
	{ "RFC 5322 A.5 comments", "Pete(A nice \\) chap) "
	    "<pete(his account)@silly.test(his host)>", 0,
	    OK("pete", "silly.test") },
	{ "RFC 5322 A.6.1 obs-phrase", "Joe Q. Public "
	    "<john.q.public@example.com>", 0,
	    OK("john.q.public", "example.com") },
	{ "RFC 5322 A.6.2 obs-route list", "Mary Smith "
	    "<@node.test:mary@example.net>, , jdoe@test  . example", 0,
	    NOT(MULTIPLE) },
	{ "RFC 5322 A.6.3 obs white space", "John Doe "
	    "<jdoe@machine(comment).  example>", 0,
	    OK("jdoe", "machine.example") },
	{ "RFC 5322 A.6.3 blank fold", "Mary Smith\r\n    \r\n "
	    "<mary@example.net>", 0, OK("mary", "example.net") },

	/* no address */
	{ "empty", "", 0, NOT(NONE) },
	{ "only white space", "   \t ", 0, NOT(NONE) },
	{ "only a fold", " \r\n ", 0, NOT(NONE) },
	{ "no @", "alice", 0, NOT(SYNTAX) },
	{ "no @ in angle", "<alice>", 0, NOT(SYNTAX) },
	{ "no local part", "@example.com", 0, NOT(SYNTAX) },
	{ "no local part in angle", "<@example.com>", 0, NOT(SYNTAX) },
	{ "two words as local part", "john smith@example.com", 0,
	    NOT(SYNTAX) },
	{ "two words in angle", "<john smith@example.com>", 0, NOT(SYNTAX) },
	{ "lone @", "@", 0, NOT(SYNTAX) },
	{ "lone comma and angle", ",<", 0, NOT(SYNTAX) },
	{ "backslash outside quotes", "a\\b@example.com", 0, NOT(SYNTAX) },
};

/* Every case of from_cases, from an exactly sized buffer. */
static void
test_from_cases(void **state)
{
	const struct from_case *c;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(from_cases); i++) {
		c = &from_cases[i];
		check_parse(c->label, c->in,
		    c->len > 0 ? c->len : strlen(c->in), c->want, c->local,
		    c->domain);
	}
}

/* LEN is honoured, NULL arguments, OUT cleared. */
static void
test_from_args(void **state)
{
	static const char two[] = "a@example.com, b@evil.example";
	struct ag_from f;

	(void)state;
	check_parse("LEN stops before the second", two, 13, AG_FROM_OK, "a",
	    "example.com");
	check_parse("LEN cuts the domain", two, 6, AG_FROM_OK, "a", "exam");
	check_parse("LEN cuts inside the comma", two, 14, AG_FROM_OK, "a",
	    "example.com");
	check_parse("LEN 0", two, 0, AG_FROM_NONE, "", "");
	memset(&f, 0xa5, sizeof(f));
	check_status("NULL value", ag_from_parse(NULL, 5, &f), AG_FROM_SYNTAX);
	check_str("NULL value", "local", f.local, "");
	check_str("NULL value", "domain", f.domain, "");
	check_status("NULL value, LEN 0", ag_from_parse(NULL, 0, &f),
	    AG_FROM_SYNTAX);
	check_status("NULL out", ag_from_parse(two, 13, NULL), AG_FROM_OK);
	check_status("NULL out, multiple", ag_from_parse(two, sizeof(two) - 1,
	    NULL), AG_FROM_MULTIPLE);
}

/* Labels of 63/64, domains of 253/254/255, long local parts cut. */
static void
test_from_limits(void **state)
{
	char l63[64], in[1024], dom[512], want[AG_ADDR_LOCAL_MAX + 1];

	(void)state;
	memset(l63, 'b', 63);
	l63[63] = '\0';

	snprintf(in, sizeof(in), "a@%s.example", l63);
	snprintf(dom, sizeof(dom), "%s.example", l63);
	check_parse("63-char label", in, strlen(in), AG_FROM_OK, "a", dom);
	snprintf(in, sizeof(in), "a@%sb.example", l63);
	check_parse("64-char label", in, strlen(in), AG_FROM_BAD_DOMAIN, "",
	    "");

	/* 3 x 63 + 3 dots + 61 = 253. */
	snprintf(dom, sizeof(dom), "%s.%s.%s.%.61s", l63, l63, l63, l63);
	snprintf(in, sizeof(in), "<a@%s>", dom);
	check_parse("253-char domain", in, strlen(in), AG_FROM_OK, "a", dom);
	snprintf(in, sizeof(in), "<a@%s.>", dom);
	check_parse("253 + trailing dot = 254", in, strlen(in), AG_FROM_OK,
	    "a", dom);
	snprintf(in, sizeof(in), "a@%s.%s.%s.%.62s", l63, l63, l63, l63);
	check_parse("254-char domain", in, strlen(in), AG_FROM_BAD_DOMAIN, "",
	    "");
	snprintf(in, sizeof(in), "a@%s.%s.%s.%s", l63, l63, l63, l63);
	check_parse("255-char domain", in, strlen(in), AG_FROM_BAD_DOMAIN, "",
	    "");
	snprintf(in, sizeof(in), "a@%s.%s.%s.%s.%s", l63, l63, l63, l63, l63);
	check_parse("319-char domain", in, strlen(in), AG_FROM_BAD_DOMAIN, "",
	    "");

	memset(want, 'x', AG_ADDR_LOCAL_MAX);
	want[AG_ADDR_LOCAL_MAX] = '\0';
	snprintf(in, sizeof(in), "%s@example.com", want);
	check_parse("64-char local", in, strlen(in), AG_FROM_OK, want,
	    "example.com");
	snprintf(in, sizeof(in), "%sxyz@example.com", want);
	check_parse("67-char local cut", in, strlen(in), AG_FROM_OK, want,
	    "example.com");
	snprintf(in, sizeof(in), "\"%s\\\"yz\"@example.com", want);
	check_parse("long quoted local cut", in, strlen(in), AG_FROM_OK, want,
	    "example.com");
	snprintf(in, sizeof(in), "%.40s.%.40s@example.com", want, want);
	want[40] = '.';
	want[41 + 23] = '\0';
	check_parse("dotted local cut", in, strlen(in), AG_FROM_OK, want,
	    "example.com");
}

/* Comments nested AG_FROM_COMMENT_DEPTH_MAX deep pass; one more fails. */
static void
test_from_comment_depth(void **state)
{
	char in[256];
	size_t n, i, depth;

	(void)state;
	for (depth = AG_FROM_COMMENT_DEPTH_MAX; depth <=
	    AG_FROM_COMMENT_DEPTH_MAX + 1; depth++) {
		n = (size_t)snprintf(in, sizeof(in), "a@example.com ");
		for (i = 0; i < depth; i++) {
			in[n++] = '(';
		}
		for (i = 0; i < depth; i++) {
			in[n++] = ')';
		}
		in[n] = '\0';
		if (depth == AG_FROM_COMMENT_DEPTH_MAX) {
			check_parse("comments at the depth limit", in, n,
			    AG_FROM_OK, "a", "example.com");
		} else {
			check_parse("comments past the depth limit", in, n,
			    AG_FROM_SYNTAX, "", "");
		}
	}
}

/* Fill BUF with N copies of UNIT and a NUL; returns the length. */
static size_t
fill(char *buf, const char *unit, size_t n)
{
	size_t len = strlen(unit), i;

	for (i = 0; i < n; i++) {
		memcpy(buf + i * len, unit, len);
	}
	buf[n * len] = '\0';
	return n * len;
}

/* 100 KB inputs: linear time, no deep recursion, the right answer. */
static void
test_from_big(void **state)
{
	char *buf;
	size_t n;

	(void)state;
	buf = malloc(2 * BIG + 64);
	if (buf == NULL) {
		fail_msg("out of memory");
		return;
	}
	n = fill(buf, "(", BIG);
	check_parse("100 KB of (", buf, n, AG_FROM_SYNTAX, "", "");
	n = fill(buf, "(", BIG / 2);
	n += fill(buf + n, ")", BIG / 2);
	check_parse("50 KB of ( then of )", buf, n, AG_FROM_SYNTAX, "", "");
	n = fill(buf, "()", BIG / 2);
	n += fill(buf + n, "a@example.com", 1);
	check_parse("100 KB of () then a mailbox", buf, n, AG_FROM_OK, "a",
	    "example.com");
	n = fill(buf, "x ", BIG / 2);
	n += fill(buf + n, "<a@example.com>", 1);
	check_parse("100 KB atom display name", buf, n, AG_FROM_OK, "a",
	    "example.com");
	buf[0] = '"';
	n = 1 + fill(buf + 1, "\\\"", BIG / 2);
	n += fill(buf + n, "\" <a@example.com>", 1);
	check_parse("100 KB quoted display name", buf, n, AG_FROM_OK, "a",
	    "example.com");
	n = fill(buf, "=?utf-8?q?J=C3=B6rg?= ", BIG / 22);
	n += fill(buf + n, "<a@example.com>", 1);
	check_parse("100 KB of encoded words", buf, n, AG_FROM_OK, "a",
	    "example.com");
	n = fill(buf, ",", BIG);
	n += fill(buf + n, "a@example.com", 1);
	check_parse("100 KB of commas then a mailbox", buf, n, AG_FROM_OK, "a",
	    "example.com");
	n = fill(buf, "a@example.com, ", BIG / 15);
	check_parse("100 KB of mailboxes", buf, n, AG_FROM_MULTIPLE, "", "");
	n = fill(buf, "g:;,", BIG / 4);
	check_parse("100 KB of empty groups", buf, n, AG_FROM_NONE, "", "");
	n = fill(buf, "a.", BIG / 2);
	n += fill(buf + n, "a@example.com", 1);
	check_parse("100 KB local part", buf, n, AG_FROM_OK,
	    "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.",
	    "example.com");
	n = fill(buf, "a@", 1);
	n += fill(buf + n, "b.", BIG / 2);
	n += fill(buf + n, "example", 1);
	check_parse("100 KB domain", buf, n, AG_FROM_BAD_DOMAIN, "", "");
	n = fill(buf, "a@example.com,\r\n ", BIG / 17);
	check_parse("100 KB of folds", buf, n, AG_FROM_MULTIPLE, "", "");
	free(buf);
}

/* Every status has its own name; out of range is "unknown". */
static void
test_from_status_name(void **state)
{
	static const struct {
		enum ag_from_status st;
		const char *name;
	} cases[] = {
		{ AG_FROM_OK, "ok" },
		{ AG_FROM_NONE, "none" },
		{ AG_FROM_MULTIPLE, "multiple" },
		{ AG_FROM_BAD_DOMAIN, "bad-domain" },
		{ AG_FROM_SYNTAX, "syntax" },
	};
	size_t i;

	(void)state;
	if (NELEM(cases) != AG_FROM_SYNTAX + 1) {
		fail_msg("status table misses a status");
	}
	for (i = 0; i < NELEM(cases); i++) {
		if (cases[i].st != (enum ag_from_status)i) {
			fail_msg("status %zu out of order", i);
		}
		check_str(cases[i].name, "name",
		    ag_from_status_name(cases[i].st), cases[i].name);
	}
	check_str("out of range", "name",
	    ag_from_status_name((enum ag_from_status)(AG_FROM_SYNTAX + 1)),
	    "unknown");
}

/* xorshift32: a fixed sequence, the same on every run. */
static uint32_t
rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

#define FUZZ_ITER 200000
#define FUZZ_MAX 256

/*
 * Parse LEN bytes of IN copied to the end of AREA (a heap block of AREASZ
 * >= LEN bytes), so that a read past LEN hits the redzone under ASan
 * without an allocation per call.
 */
static enum ag_from_status
parse_at_end(char *area, size_t areasz, const char *in, size_t len,
    struct ag_from *out)
{
	memmove(area + areasz - len, in, len);
	memset(out, 0xa5, sizeof(*out));
	return ag_from_parse(area + areasz - len, len, out);
}

/* Check the contract on one result: a known status; OUT as documented. */
static void
fuzz_check(const char *in, size_t len, enum ag_from_status st,
    const struct ag_from *f)
{
	char norm[AG_ADDR_DOMAIN_MAX + 1];

	if (st > AG_FROM_SYNTAX ||
	    strcmp(ag_from_status_name(st), "unknown") == 0) {
		fail_msg("fuzz \"%.*s\": status %d", (int)len, in, (int)st);
	}
	if (memchr(f->local, '\0', sizeof(f->local)) == NULL ||
	    memchr(f->domain, '\0', sizeof(f->domain)) == NULL) {
		fail_msg("fuzz \"%.*s\": OUT not terminated", (int)len, in);
	}
	if (st != AG_FROM_OK) {
		if (f->local[0] != '\0' || f->domain[0] != '\0') {
			fail_msg("fuzz \"%.*s\": %s with OUT set", (int)len, in,
			    ag_from_status_name(st));
		}
		return;
	}
	if (ag_domain_normalize(f->domain, norm, sizeof(norm)) != AG_OK ||
	    strcmp(norm, f->domain) != 0) {
		fail_msg("fuzz \"%.*s\": domain \"%s\" not normalized",
		    (int)len, in, f->domain);
	}
}

/*
 * Mutate seed headers with a fixed seed: flip bytes, insert specials,
 * delete bytes.  The parser must not crash or read past LEN, must answer
 * a known status, and an OK answer must carry a normalized domain; and an
 * OK value written twice with a comma between must be MULTIPLE.
 */
static void
test_from_fuzz(void **state)
{
	static const char *const seeds[] = {
		"a@example.com",
		"\"a, b\" <x@example.com>",
		"John Q. Public <@relay.example:jqp@example.com>",
		"friends: a@example.com, (c) b@example.org;",
		"=?utf-8?q?J=C3=B6rg?= <j(c)@(c)example.com> (x (y))",
		"\"\" <a@b.example>, <c@d.example>",
		"a@good.example\r\n\t, b@evil.example",
		"\"a\\\"b\"@[192.0.2.1]",
		"undisclosed-recipients:;",
	};
	static const char specials[] = "\",<>()@:;\\.[] \t\r\n";
	char buf[FUZZ_MAX], twice[2 * FUZZ_MAX + 1], *area;
	unsigned seen[AG_FROM_SYNTAX + 1] = { 0 };
	uint32_t seed = 0x2545f491u;
	struct ag_from f;
	enum ag_from_status st;
	size_t i, len, pos, m, nmut;
	const char *s;

	(void)state;
	area = malloc(sizeof(twice));
	if (area == NULL) {
		fail_msg("out of memory");
		return;
	}
	for (i = 0; i < FUZZ_ITER; i++) {
		s = seeds[rnd(&seed) % NELEM(seeds)];
		len = strlen(s);
		memcpy(buf, s, len);
		nmut = 1 + rnd(&seed) % 4;
		for (m = 0; m < nmut; m++) {
			pos = len > 0 ? rnd(&seed) % len : 0;
			switch (rnd(&seed) % 4) {
			case 0:
				if (len > 0) {
					buf[pos] = (char)(rnd(&seed) & 0xff);
				}
				break;
			case 1:
			case 2:
				if (len < sizeof(buf)) {
					memmove(buf + pos + 1, buf + pos,
					    len - pos);
					buf[pos] = specials[rnd(&seed) %
					    (sizeof(specials) - 1)];
					len++;
				}
				break;
			default:
				if (len > 0) {
					memmove(buf + pos, buf + pos + 1,
					    len - pos - 1);
					len--;
				}
				break;
			}
		}
		st = parse_at_end(area, sizeof(twice), buf, len, &f);
		fuzz_check(buf, len, st, &f);
		seen[st < AG_FROM_SYNTAX ? st : AG_FROM_SYNTAX]++;
		if (st != AG_FROM_OK) {
			continue;
		}
		memcpy(twice, buf, len);
		twice[len] = ',';
		memcpy(twice + len + 1, buf, len);
		st = parse_at_end(area, sizeof(twice), twice, 2 * len + 1,
		    &f);
		if (st != AG_FROM_MULTIPLE) {
			fail_msg("fuzz \"%.*s\" twice: %s, want multiple",
			    (int)len, buf, ag_from_status_name(st));
		}
	}
	free(area);
	for (i = 0; i < NELEM(seen); i++) {
		if (seen[i] == 0) {
			fail_msg("fuzz never produced status %s",
			    ag_from_status_name((enum ag_from_status)i));
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_from_cases),
		cmocka_unit_test(test_from_args),
		cmocka_unit_test(test_from_limits),
		cmocka_unit_test(test_from_comment_depth),
		cmocka_unit_test(test_from_big),
		cmocka_unit_test(test_from_status_name),
		cmocka_unit_test(test_from_fuzz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
