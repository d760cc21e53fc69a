/*
 * fuzz_addr.c - addresses, networks and domain names (lib/addr.c): what
 * MAIL FROM and RCPT TO, the connect macros, HELO and the config give.
 *
 * Input: one string (cut at a NUL, as every caller sees it) given to
 * each parser.  Checks: what parses formats back to text that parses to
 * the same value (IP, CIDR, a mail address with a dot-atom local part); a normalized domain is
 * unchanged by a second normalization, matches itself and has an A-label
 * form that is a normalized domain too; a network contains its own
 * address.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "fuzzlib.h"

/* RFC 5322 3.2.3 atext */
#define ATEXT "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" \
    "!#$%&'*+-/=?^_`{|}~"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_ip(const char *s)
{
	struct ag_ip ip, ip2;
	char buf[AG_IP_STRLEN];

	if (ag_ip_parse(s, &ip) != AG_OK) {
		return;
	}
	ag_ip_format(&ip, buf, sizeof(buf));
	if (ag_ip_parse(buf, &ip2) != AG_OK || !ag_ip_equal(&ip, &ip2)) {
		fz_fail("IP %s does not parse back", buf);
	}
}

static void
check_cidr(const char *s)
{
	struct ag_cidr c, c2;
	struct ag_cidr_list l = { 0, NULL };
	char buf[AG_CIDR_STRLEN], err[64];

	if (ag_cidr_parse(s, &c) == AG_OK) {
		ag_cidr_format(&c, buf, sizeof(buf));
		if (ag_cidr_parse(buf, &c2) != AG_OK || c2.prefix != c.prefix ||
		    !ag_ip_equal(&c.net, &c2.net)) {
			fz_fail("CIDR %s does not parse back", buf);
		}
		if (!ag_cidr_match(&c, &c.net)) {
			fz_fail("CIDR %s does not contain its address", buf);
		}
	}
	if (ag_cidr_list_parse(s, &l, err, sizeof(err)) == AG_OK) {
		for (size_t i = 0; i < l.n; i++) {
			if (!ag_cidr_list_match(&l, &l.v[i].net)) {
				fz_fail("CIDR list misses its own network");
			}
		}
	} else if (l.n != 0) {
		fz_fail("CIDR list not empty after an error");
	}
	ag_cidr_list_free(&l);
}

static void
check_mailaddr(const char *s)
{
	struct ag_mailaddr a, b;
	char buf[AG_ADDR_MAX + 2], norm[AG_ADDR_DOMAIN_MAX + 1];

	if (ag_mailaddr_parse(s, &a) != AG_OK) {
		return;
	}
	ag_mailaddr_format(&a, buf, sizeof(buf));
	if (a.is_null != (buf[0] == '\0')) {
		fz_fail("null sender formats as \"%s\"", buf);
	}
	if (a.domain[0] != '\0' && a.domain[0] != '[' &&
	    (ag_domain_normalize(a.domain, norm, sizeof(norm)) != AG_OK ||
	    strcmp(norm, a.domain) != 0)) {
		fz_fail("address domain not normalized: %s", a.domain);
	}
	/* a dot-atom local part (no quoting needed) must read back */
	if (!a.is_null && a.domain[0] != '\0' && a.local[0] != '\0' &&
	    strspn(a.local, ATEXT ".") == strlen(a.local) &&
	    (ag_mailaddr_parse(buf, &b) != AG_OK ||
	    strcmp(a.local, b.local) != 0 || strcmp(a.domain, b.domain) != 0)) {
		fz_fail("address %s does not parse back", buf);
	}
}

static void
check_domain(const char *s)
{
	char out[AG_ADDR_DOMAIN_MAX + 1], again[AG_ADDR_DOMAIN_MAX + 1];
	char alabel[AG_ADDR_DOMAIN_MAX + 1], sub[AG_ADDR_DOMAIN_MAX + 3];

	if (ag_domain_normalize(s, out, sizeof(out)) != AG_OK) {
		return;
	}
	if (ag_domain_normalize(out, again, sizeof(again)) != AG_OK ||
	    strcmp(out, again) != 0) {
		fz_fail("normalizing %s again gives something else", out);
	}
	if (!ag_domain_match(out, out)) {
		fz_fail("%s does not match itself", out);
	}
	snprintf(sub, sizeof(sub), ".%s", out);
	if (ag_domain_match(sub, out)) {
		fz_fail("%s matches itself as a subdomain", out);
	}
	if (ag_domain_alabel(out, alabel, sizeof(alabel)) == AG_OK &&
	    (ag_domain_normalize(alabel, again, sizeof(again)) != AG_OK ||
	    strcmp(alabel, again) != 0)) {
		fz_fail("A-label of %s is no normalized domain: %s", out, alabel);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fz_strndup(data, size);
	uint64_t v;

	check_ip(s);
	check_cidr(s);
	check_mailaddr(s);
	check_domain(s);
	(void)ag_size_parse(s, &v);
	(void)ag_bytes_parse(s, &v);
	free(s);
	return 0;
}
