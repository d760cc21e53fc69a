/*
 * addr.c - IP addresses, CIDR networks, mail addresses and domain names.
 *
 * Everything parsed here comes from the network (client addresses, MAIL
 * FROM / RCPT TO arguments, SIZE=) or from an administrator (networks,
 * byte counts), so every parser is strict and bounded: inputs longer than
 * the RFC allows are AG_INVALID, never truncated.
 *
 * Ownership: only the CIDR list functions allocate; the list is owned by
 * the caller and freed with ag_cidr_list_free().  Thread-safe: no state.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>

/* Longest textual IP we parse: "[IPv6:" + 45 (RFC 4291 2.2 form 3) + "]". */
#define AG_IP_TEXT_MAX 64
/* Longest CIDR prefix text: "128". */
#define AG_CIDR_PREFIX_DIGITS 3
/* Longest item in a network list. */
#define AG_CIDR_ITEM_MAX (AG_IP_TEXT_MAX + 1 + AG_CIDR_PREFIX_DIGITS)
/*
 * Longest MAIL/RCPT argument we look at.  RFC 5321 4.5.3.1.3 limits a
 * path to 256 octets, 4.5.3.1.4 a command line to 512; SMTPUTF8 and
 * source routes stretch that, so allow a text line (4.5.3.1.6).
 */
#define AG_ADDR_INPUT_MAX 1000
/* RFC 1035 2.3.4 / RFC 2181 11: 253 octets of text without the root dot. */
#define AG_DOMAIN_TEXT_MAX 253

/* Bytes of address for FAMILY: 4, 16, or 0 if none. */
static size_t
ip_len(int family)
{
	if (family == AF_INET) {
		return 4;
	}
	if (family == AF_INET6) {
		return 16;
	}
	return 0;
}

/* Bits of address for FAMILY: 32, 128, or 0 if none. */
static unsigned
ip_bits(int family)
{
	return (unsigned)ip_len(family) * 8;
}

/* Turn a v4-mapped IPv6 address into IPv4; true if it was one. */
static bool
ip_unmap(struct ag_ip *ip)
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0xff, 0xff };

	if (ip->family != AF_INET6 || memcmp(ip->addr, prefix, 12) != 0) {
		return false;
	}
	memmove(ip->addr, ip->addr + 12, 4);
	memset(ip->addr + 4, 0, 12);
	ip->family = AF_INET;
	return true;
}

/* ASCII-only case-insensitive prefix test (locale-independent). */
static bool
ascii_prefix(const char *s, const char *prefix)
{
	unsigned char a, b;

	for (; *prefix != '\0'; s++, prefix++) {
		a = (unsigned char)*s;
		b = (unsigned char)*prefix;
		if (a >= 'A' && a <= 'Z') {
			a = (unsigned char)(a - 'A' + 'a');
		}
		if (b >= 'A' && b <= 'Z') {
			b = (unsigned char)(b - 'A' + 'a');
		}
		if (a != b) {
			return false;
		}
	}
	return true;
}

/*
 * Parse S (LEN bytes, not NUL-terminated) as an IP; *MAPPED tells whether
 * it was written as v4-mapped IPv6.
 */
static ag_status
ip_parse_n(const char *s, size_t len, struct ag_ip *out, bool *mapped)
{
	char buf[AG_IP_TEXT_MAX + 1];
	const char *p = buf;
	bool v6only = false;

	memset(out, 0, sizeof(*out));
	*mapped = false;
	if (len == 0 || len > AG_IP_TEXT_MAX) {
		return AG_INVALID;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (strlen(buf) != len) {
		return AG_INVALID;
	}
	if (buf[0] == '[' || buf[len - 1] == ']') {
		if (len < 2 || buf[0] != '[' || buf[len - 1] != ']') {
			return AG_INVALID;
		}
		buf[len - 1] = '\0';
		p++;
	}
	if (ascii_prefix(p, "IPv6:")) {
		p += 5;
		v6only = true;
	}
	if (!v6only && strchr(p, ':') == NULL) {
		if (inet_pton(AF_INET, p, out->addr) != 1) {
			return AG_INVALID;
		}
		out->family = AF_INET;
		return AG_OK;
	}
	if (inet_pton(AF_INET6, p, out->addr) != 1) {
		memset(out, 0, sizeof(*out));
		return AG_INVALID;
	}
	out->family = AF_INET6;
	*mapped = ip_unmap(out);
	return AG_OK;
}

/* Parse a textual address, with optional [] and "IPv6:" prefix. */
ag_status
ag_ip_parse(const char *s, struct ag_ip *out)
{
	bool mapped;

	if (out == NULL) {
		return AG_INVALID;
	}
	if (s == NULL) {
		memset(out, 0, sizeof(*out));
		return AG_INVALID;
	}
	return ip_parse_n(s, strnlen(s, AG_IP_TEXT_MAX + 1), out, &mapped);
}

/* The address of a milter connect; non-IP families are AG_NOTFOUND. */
ag_status
ag_ip_from_sockaddr(const struct sockaddr *sa, struct ag_ip *out)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	if (out == NULL) {
		return AG_INVALID;
	}
	memset(out, 0, sizeof(*out));
	if (sa == NULL) {
		return AG_NOTFOUND;
	}
	/* memcpy: SA may point at a buffer without the right alignment. */
	if (sa->sa_family == AF_INET) {
		memcpy(&sin, sa, sizeof(sin));
		memcpy(out->addr, &sin.sin_addr, 4);
		out->family = AF_INET;
		return AG_OK;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(&sin6, sa, sizeof(sin6));
		memcpy(out->addr, &sin6.sin6_addr, 16);
		out->family = AF_INET6;
		ip_unmap(out);
		return AG_OK;
	}
	return AG_NOTFOUND;
}

/* IP in its usual text form; "" when there is none or BUF is too small. */
char *
ag_ip_format(const struct ag_ip *ip, char *buf, size_t bufsz)
{
	if (buf == NULL || bufsz == 0) {
		return buf;
	}
	buf[0] = '\0';
	if (ip == NULL || ip_len(ip->family) == 0) {
		return buf;
	}
	if (inet_ntop(ip->family, ip->addr, buf,
	    (socklen_t)(bufsz > AG_IP_STRLEN ? AG_IP_STRLEN : bufsz)) == NULL) {
		buf[0] = '\0';
	}
	return buf;
}

/* Same family and same address. */
bool
ag_ip_equal(const struct ag_ip *a, const struct ag_ip *b)
{
	if (a == NULL || b == NULL || a->family != b->family) {
		return false;
	}
	return memcmp(a->addr, b->addr, ip_len(a->family)) == 0;
}

/* Clear the bits of IP beyond PREFIX. */
static void
ip_mask(struct ag_ip *ip, unsigned prefix)
{
	size_t i, len = ip_len(ip->family);

	for (i = 0; i < len; i++) {
		if (prefix >= 8) {
			prefix -= 8;
		} else {
			ip->addr[i] &= (uint8_t)(0xff00u >> prefix);
			prefix = 0;
		}
	}
}

/* Parse a prefix length: decimal, no sign, no leading zero, <= MAX. */
static ag_status
cidr_prefix_parse(const char *s, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t i;

	if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0')) {
		return AG_INVALID;
	}
	for (i = 0; s[i] != '\0'; i++) {
		if (i >= AG_CIDR_PREFIX_DIGITS || s[i] < '0' || s[i] > '9') {
			return AG_INVALID;
		}
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max) {
		return AG_INVALID;
	}
	*out = v;
	return AG_OK;
}

/* Parse "net/prefix" or a bare address (a host network). */
ag_status
ag_cidr_parse(const char *s, struct ag_cidr *out)
{
	const char *slash;
	unsigned prefix;
	bool mapped;
	size_t len;

	if (out == NULL) {
		return AG_INVALID;
	}
	memset(out, 0, sizeof(*out));
	if (s == NULL) {
		return AG_INVALID;
	}
	len = strnlen(s, AG_CIDR_ITEM_MAX + 1);
	if (len > AG_CIDR_ITEM_MAX) {
		return AG_INVALID;
	}
	slash = memchr(s, '/', len);
	if (ip_parse_n(s, slash ? (size_t)(slash - s) : len, &out->net,
	    &mapped) != AG_OK) {
		return AG_INVALID;
	}
	prefix = ip_bits(out->net.family);
	if (slash != NULL) {
		/* A v4-mapped network is checked against the IPv6 width. */
		if (cidr_prefix_parse(slash + 1, mapped ? 128 : prefix,
		    &prefix) != AG_OK) {
			memset(out, 0, sizeof(*out));
			return AG_INVALID;
		}
		if (mapped) {
			if (prefix < 96) {
				memset(out, 0, sizeof(*out));
				return AG_INVALID;
			}
			prefix -= 96;
		}
	}
	ip_mask(&out->net, prefix);
	out->prefix = prefix;
	return AG_OK;
}

/* "net/prefix" into BUF; "" when C is empty or BUF is too small. */
char *
ag_cidr_format(const struct ag_cidr *c, char *buf, size_t bufsz)
{
	char ip[AG_IP_STRLEN];
	int n;

	if (buf == NULL || bufsz == 0) {
		return buf;
	}
	buf[0] = '\0';
	if (c == NULL || ag_ip_format(&c->net, ip, sizeof(ip))[0] == '\0') {
		return buf;
	}
	n = snprintf(buf, bufsz, "%s/%u", ip, c->prefix);
	if (n < 0 || (size_t)n >= bufsz) {
		buf[0] = '\0';
	}
	return buf;
}

/* True when IP lies in C. */
bool
ag_cidr_match(const struct ag_cidr *c, const struct ag_ip *ip)
{
	unsigned prefix, full;
	uint8_t mask;

	if (c == NULL || ip == NULL || ip_len(ip->family) == 0 ||
	    c->net.family != ip->family || c->prefix > ip_bits(ip->family)) {
		return false;
	}
	prefix = c->prefix;
	full = prefix / 8;
	if (memcmp(c->net.addr, ip->addr, full) != 0) {
		return false;
	}
	if (prefix % 8 == 0) {
		return true;
	}
	mask = (uint8_t)(0xff00u >> (prefix % 8));
	return (c->net.addr[full] & mask) == (ip->addr[full] & mask);
}

/* True for the characters that separate items of a network list. */
static bool
cidr_list_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Length of the item at S (up to a separator or the end). */
static size_t
cidr_list_item(const char *s)
{
	size_t n = 0;

	while (s[n] != '\0' && !cidr_list_sep(s[n])) {
		n++;
	}
	return n;
}

/* Copy the offending item ITEM (LEN bytes) into ERRBUF, bounded. */
static void
cidr_list_error(char *errbuf, size_t errlen, const char *item, size_t len)
{
	if (errbuf == NULL || errlen == 0) {
		return;
	}
	if (len > errlen - 1) {
		len = errlen - 1;
	}
	memcpy(errbuf, item, len);
	errbuf[len] = '\0';
}

/* Parse a comma and/or white-space separated list of networks. */
ag_status
ag_cidr_list_parse(const char *s, struct ag_cidr_list *list,
    char *errbuf, size_t errlen)
{
	char item[AG_CIDR_ITEM_MAX + 1];
	size_t count = 0, len;
	const char *p;

	if (list == NULL) {
		return AG_INVALID;
	}
	list->n = 0;
	list->v = NULL;
	if (errbuf != NULL && errlen > 0) {
		errbuf[0] = '\0';
	}
	if (s == NULL) {
		return AG_INVALID;
	}
	for (p = s; *p != '\0'; p += len) {
		len = cidr_list_item(p);
		count += len > 0;
		len += len == 0;
	}
	if (count == 0) {
		return AG_OK;
	}
	list->v = calloc(count, sizeof(*list->v));
	if (list->v == NULL) {
		return AG_NOMEM;
	}
	for (p = s; *p != '\0'; p += len) {
		len = cidr_list_item(p);
		if (len == 0) {
			len = 1;
			continue;
		}
		if (len > AG_CIDR_ITEM_MAX) {
			cidr_list_error(errbuf, errlen, p, len);
			ag_cidr_list_free(list);
			return AG_INVALID;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		if (ag_cidr_parse(item, &list->v[list->n]) != AG_OK) {
			cidr_list_error(errbuf, errlen, p, len);
			ag_cidr_list_free(list);
			return AG_INVALID;
		}
		list->n++;
	}
	return AG_OK;
}

/* True when IP lies in any network of LIST. */
bool
ag_cidr_list_match(const struct ag_cidr_list *list, const struct ag_ip *ip)
{
	size_t i;

	if (list == NULL) {
		return false;
	}
	for (i = 0; i < list->n; i++) {
		if (ag_cidr_match(&list->v[i], ip)) {
			return true;
		}
	}
	return false;
}

/* Free the networks of LIST and leave it empty; NULL is fine. */
void
ag_cidr_list_free(struct ag_cidr_list *list)
{
	if (list == NULL) {
		return;
	}
	free(list->v);
	list->v = NULL;
	list->n = 0;
}

/*
 * Length of the well-formed UTF-8 sequence at S (RFC 3629 4: no overlong
 * forms, no surrogates, nothing above U+10FFFF); 0 if it is not one.
 */
static size_t
utf8_seq_len(const unsigned char *s)
{
	size_t n, i;
	unsigned char lo = 0x80, hi = 0xbf;

	if (s[0] < 0x80) {
		return 1;
	} else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		lo = s[0] == 0xe0 ? 0xa0 : 0x80;
		hi = s[0] == 0xed ? 0x9f : 0xbf;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		lo = s[0] == 0xf0 ? 0x90 : 0x80;
		hi = s[0] == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (s[1] < lo || s[1] > hi) {
		return 0;
	}
	for (i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf) {
			return 0;
		}
	}
	return n;
}

/* True for the ASCII bytes allowed in a domain label. */
static bool
domain_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Normalize a domain name: lower case, no trailing dot, labels checked. */
ag_status
ag_domain_normalize(const char *in, char *out, size_t outsz)
{
	size_t len, i, label = 0, seq;
	const unsigned char *s = (const unsigned char *)in;

	if (out == NULL || outsz == 0) {
		return AG_INVALID;
	}
	if (in == NULL) {
		out[0] = '\0';
		return AG_INVALID;
	}
	len = strnlen(in, AG_DOMAIN_TEXT_MAX + 2);
	if (len > 0 && in[len - 1] == '.') {
		len--;
	}
	if (len == 0 || len > AG_DOMAIN_TEXT_MAX || len >= outsz) {
		out[0] = '\0';
		return AG_INVALID;
	}
	for (i = 0; i < len; i += seq) {
		seq = 1;
		if (s[i] == '.') {
			if (label == 0) {
				break;
			}
			label = 0;
			continue;
		}
		if (s[i] >= 0x80) {
			seq = utf8_seq_len(s + i);
			if (seq == 0 || i + seq > len) {
				break;
			}
		} else if (!domain_char(s[i])) {
			break;
		}
		label += seq;
		if (label > AG_DOMAIN_LABEL_MAX) {
			break;
		}
	}
	if (i < len || label == 0) {
		out[0] = '\0';
		return AG_INVALID;
	}
	/* Output and input share offsets, so IN may equal OUT. */
	for (i = 0; i < len; i++) {
		out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') :
		    (char)s[i];
	}
	out[len] = '\0';
	return AG_OK;
}

/* ASCII-only case-insensitive equality of A and B (LEN bytes). */
static bool
ascii_equal_n(const char *a, const char *b, size_t len)
{
	size_t i;
	unsigned char x, y;

	for (i = 0; i < len; i++) {
		x = (unsigned char)a[i];
		y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z') {
			x = (unsigned char)(x - 'A' + 'a');
		}
		if (y >= 'A' && y <= 'Z') {
			y = (unsigned char)(y - 'A' + 'a');
		}
		if (x != y) {
			return false;
		}
	}
	return true;
}

/* Exact match, or proper-subdomain match for a ".example.com" pattern. */
bool
ag_domain_match(const char *pattern, const char *domain)
{
	size_t plen, dlen;

	if (pattern == NULL || domain == NULL) {
		return false;
	}
	plen = strlen(pattern);
	dlen = strlen(domain);
	if (plen == 0 || dlen == 0) {
		return false;
	}
	if (pattern[0] != '.') {
		return plen == dlen && ascii_equal_n(pattern, domain, plen);
	}
	/* ".example.com" needs at least one byte of label before the dot. */
	return dlen > plen && domain[dlen - plen - 1] != '.' &&
	    ascii_equal_n(pattern, domain + dlen - plen, plen);
}

/* True for the specials that may not appear in an unquoted local part. */
static bool
local_special(unsigned char c)
{
	return c <= ' ' || c == 0x7f || strchr("()<>[]:;,\\\"@", c) != NULL;
}

/*
 * Parse the local part at S (up to END) into OUT->local; *NEXT is set to
 * the first byte after it.  Quoted strings lose their quotes and their
 * backslash escapes.
 */
static ag_status
mailaddr_local(const char *s, const char *end, struct ag_mailaddr *out,
    const char **next)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *e = (const unsigned char *)end;
	size_t n = 0, seq;

	if (p < e && *p == '"') {
		for (p++; p < e && *p != '"'; p += seq) {
			if (*p == '\\' && ++p == e) {
				return AG_INVALID;
			}
			seq = *p >= 0x80 ? utf8_seq_len(p) : 1;
			if (seq == 0 || (size_t)(e - p) < seq ||
			    n + seq > AG_ADDR_LOCAL_MAX) {
				return AG_INVALID;
			}
			memcpy(out->local + n, p, seq);
			n += seq;
		}
		if (p == e) {
			return AG_INVALID;
		}
		p++;
	} else {
		while (p < e && *p != '@') {
			seq = *p >= 0x80 ? utf8_seq_len(p) : 1;
			if (seq == 0 || (seq == 1 && local_special(*p)) ||
			    (size_t)(e - p) < seq || n + seq > AG_ADDR_LOCAL_MAX) {
				return AG_INVALID;
			}
			memcpy(out->local + n, p, seq);
			n += seq;
			p += seq;
		}
	}
	/* RFC 5321 4.5.3.1.1 counts the local part as written, quotes too. */
	if (n == 0 || (size_t)((const char *)p - s) > AG_ADDR_LOCAL_MAX) {
		return AG_INVALID;
	}
	out->local[n] = '\0';
	*next = (const char *)p;
	return AG_OK;
}

/* Skip a source route "@a,@b:" at S (up to END); *NEXT follows the ':'. */
static ag_status
mailaddr_route(const char *s, const char *end, const char **next)
{
	const char *p = s;

	while (p < end && *p == '@') {
		p++;
		if (p == end || *p == ',' || *p == ':') {
			return AG_INVALID;
		}
		while (p < end && *p != ',' && *p != ':') {
			if (*p == '[') {
				p = memchr(p, ']', (size_t)(end - p));
				if (p == NULL) {
					return AG_INVALID;
				}
			} else if (strchr("<>@\" ", *p) != NULL) {
				return AG_INVALID;
			}
			p++;
		}
		if (p == end) {
			return AG_INVALID;
		}
		if (*p++ == ':') {
			*next = p;
			return AG_OK;
		}
	}
	return AG_INVALID;
}

/* Parse the domain at S (up to END): a name or an address literal. */
static ag_status
mailaddr_domain(const char *s, const char *end, struct ag_mailaddr *out)
{
	struct ag_ip ip;
	size_t len = (size_t)(end - s);
	bool mapped;

	if (len == 0 || len > AG_ADDR_DOMAIN_MAX) {
		return AG_INVALID;
	}
	if (s[0] == '[') {
		/* RFC 5321 4.1.3: kept as written, but must be an IP literal. */
		if (ip_parse_n(s, len, &ip, &mapped) != AG_OK) {
			return AG_INVALID;
		}
		memcpy(out->domain, s, len);
		out->domain[len] = '\0';
		return AG_OK;
	}
	memcpy(out->domain, s, len);
	out->domain[len] = '\0';
	if (ag_domain_normalize(out->domain, out->domain,
	    sizeof(out->domain)) != AG_OK) {
		return AG_INVALID;
	}
	/* SMTPUTF8: the A-label form is the name DNS, SPF, the rules and the
	 * rate keys know (RFC 8616 4); one IDNA2008 refuses stays as it is */
	(void)ag_domain_alabel(out->domain, out->domain, sizeof(out->domain));
	return AG_OK;
}

/* Parse a MAIL FROM / RCPT TO argument into its parts. */
ag_status
ag_mailaddr_parse(const char *s, struct ag_mailaddr *out)
{
	const char *p, *end, *next;
	size_t len, i;
	bool bracketed = false;

	if (out == NULL) {
		return AG_INVALID;
	}
	memset(out, 0, sizeof(*out));
	if (s == NULL) {
		return AG_INVALID;
	}
	len = strnlen(s, AG_ADDR_INPUT_MAX + 1);
	if (len > AG_ADDR_INPUT_MAX) {
		return AG_INVALID;
	}
	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			return AG_INVALID;
		}
	}
	p = s;
	end = s + len;
	while (p < end && *p == ' ') {
		p++;
	}
	while (end > p && end[-1] == ' ') {
		end--;
	}
	if (p < end && (*p == '<' || end[-1] == '>')) {
		if (end - p < 2 || *p != '<' || end[-1] != '>') {
			return AG_INVALID;
		}
		p++;
		end--;
		bracketed = true;
	}
	if (p == end) {
		out->is_null = bracketed;
		return bracketed ? AG_OK : AG_INVALID;
	}
	if (*p == '@' && mailaddr_route(p, end, &p) != AG_OK) {
		return AG_INVALID;
	}
	if (mailaddr_local(p, end, out, &next) != AG_OK) {
		memset(out, 0, sizeof(*out));
		return AG_INVALID;
	}
	if (next == end) {
		return AG_OK;
	}
	if (*next != '@' || mailaddr_domain(next + 1, end, out) != AG_OK) {
		memset(out, 0, sizeof(*out));
		return AG_INVALID;
	}
	return AG_OK;
}

/* "local@domain", "local" without a domain, "" for the null sender. */
char *
ag_mailaddr_format(const struct ag_mailaddr *a, char *buf, size_t bufsz)
{
	if (buf == NULL || bufsz == 0) {
		return buf;
	}
	buf[0] = '\0';
	if (a == NULL || a->is_null) {
		return buf;
	}
	snprintf(buf, bufsz, "%s%s%s", a->local, a->domain[0] ? "@" : "",
	    a->domain);
	return buf;
}

/*
 * Accumulate decimal digits of S into *OUT; false on a non-digit, an
 * empty string, or (unless SATURATE) overflow.  *END gets the first
 * non-digit.
 */
static bool
decimal_parse(const char *s, bool saturate, uint64_t *out, const char **end)
{
	uint64_t v = 0, d;
	const char *p;

	for (p = s; *p >= '0' && *p <= '9'; p++) {
		d = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - d) / 10) {
			if (!saturate) {
				return false;
			}
			v = UINT64_MAX;
		} else {
			v = v * 10 + d;
		}
	}
	*end = p;
	*out = v;
	return p != s;
}

/* An ESMTP SIZE= value; very large values saturate. */
ag_status
ag_size_parse(const char *s, uint64_t *out)
{
	const char *end;
	uint64_t v;

	if (s == NULL || out == NULL) {
		return AG_INVALID;
	}
	if (!decimal_parse(s, true, &v, &end) || *end != '\0') {
		return AG_INVALID;
	}
	*out = v;
	return AG_OK;
}

/* A byte count with an optional k/M/G suffix (powers of 1024). */
ag_status
ag_bytes_parse(const char *s, uint64_t *out)
{
	const char *end;
	uint64_t v;
	unsigned shift = 0;

	if (s == NULL || out == NULL) {
		return AG_INVALID;
	}
	if (!decimal_parse(s, false, &v, &end)) {
		return AG_INVALID;
	}
	if (*end == 'k' || *end == 'K') {
		shift = 10;
	} else if (*end == 'm' || *end == 'M') {
		shift = 20;
	} else if (*end == 'g' || *end == 'G') {
		shift = 30;
	}
	if (shift != 0) {
		end++;
	}
	if (*end != '\0' || v > (UINT64_MAX >> shift)) {
		return AG_INVALID;
	}
	*out = v << shift;
	return AG_OK;
}

/* ASCII as is; UTF-8 labels through libidn2 (see addr.h). */
ag_status
ag_domain_alabel(const char *domain, char *out, size_t outsz)
{
	char chk[AG_ADDR_DOMAIN_MAX + 1];
	const unsigned char *p;
	char *conv = NULL;
	int rc;

	if (domain == NULL || out == NULL || outsz == 0) {
		return AG_INVALID;
	}
	for (p = (const unsigned char *)domain; *p != '\0' && *p < 0x80; p++) {
		continue;
	}
	if (*p == '\0') {
		if (strlen(domain) >= outsz) {
			return AG_INVALID;
		}
		memmove(out, domain, strlen(domain) + 1);	/* may be OUT */
		return AG_OK;
	}
	rc = idn2_to_ascii_8z(domain, &conv, IDN2_NFC_INPUT |
	    IDN2_NONTRANSITIONAL);
	/* UTS 46 maps some characters to ASCII that is no domain syntax
	 * (U+00A0 to a space, U+FF0F to '/'), and U+3002 to a dot, which
	 * may end the name: the result is checked, and its normalized form
	 * (no trailing dot) is the answer (found by tests/fuzz/fuzz_addr) */
	if (rc != IDN2_OK || conv == NULL || strlen(conv) > AG_ADDR_DOMAIN_MAX ||
	    ag_domain_normalize(conv, chk, sizeof(chk)) != AG_OK ||
	    strlen(chk) >= outsz) {
		idn2_free(conv);
		return AG_INVALID;
	}
	memcpy(out, chk, strlen(chk) + 1);
	idn2_free(conv);
	return AG_OK;
}
