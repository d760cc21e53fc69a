/*
 * addr.h - IP addresses, CIDR networks, mail addresses and domain names.
 *
 * Every input here comes from the network or an administrator and is
 * parsed strictly and bounded.  No function allocates except the CIDR
 * list functions; all are thread-safe (no shared state).
 */
#ifndef AG_ADDR_H
#define AG_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "status.h"

/* RFC 5321 4.5.3.1: limits on the parts of a mail address. */
#define AG_ADDR_LOCAL_MAX 64
#define AG_ADDR_DOMAIN_MAX 255
#define AG_ADDR_MAX 320		/* local + "@" + domain, rounded */
#define AG_DOMAIN_LABEL_MAX 63	/* RFC 1035 2.3.4 */

struct ag_ip {
	int family;		/* AF_INET or AF_INET6; 0 = none */
	uint8_t addr[16];	/* IPv4 in the first 4 bytes */
};

struct ag_cidr {
	struct ag_ip net;	/* host bits cleared */
	unsigned prefix;	/* 0..32 or 0..128 */
};

/*
 * Parse a textual address: "192.0.2.1", "2001:db8::1", "[2001:db8::1]",
 * "IPv6:2001:db8::1" (as Postfix and Sendmail write client addresses).
 * IPv4-mapped IPv6 (::ffff:192.0.2.1) is stored as IPv4.
 * Returns AG_OK or AG_INVALID.
 */
ag_status ag_ip_parse(const char *s, struct ag_ip *out);

/* From a socket address (milter connect); AF_UNIX etc. give AG_NOTFOUND. */
ag_status ag_ip_from_sockaddr(const struct sockaddr *sa, struct ag_ip *out);

/* Format as "192.0.2.1" or "2001:db8::1" into BUF; returns BUF ("" if none). */
char *ag_ip_format(const struct ag_ip *ip, char *buf, size_t bufsz);
#define AG_IP_STRLEN 46

bool ag_ip_equal(const struct ag_ip *a, const struct ag_ip *b);

/*
 * Parse "192.0.2.0/24", "2001:db8::/32", or a bare address (a host
 * network, /32 or /128).  Host bits beyond the prefix are cleared (not an
 * error).  A prefix with a leading zero, a sign, or out of range is
 * AG_INVALID.
 */
ag_status ag_cidr_parse(const char *s, struct ag_cidr *out);
char *ag_cidr_format(const struct ag_cidr *c, char *buf, size_t bufsz);
#define AG_CIDR_STRLEN 50

/* True when IP lies in C (families must agree; v4-mapped is already v4). */
bool ag_cidr_match(const struct ag_cidr *c, const struct ag_ip *ip);

/* A list of networks (TrustedNetworks).  Owned by the caller. */
struct ag_cidr_list {
	size_t n;
	struct ag_cidr *v;
};

/*
 * Parse a list separated by commas and/or white space into LIST (which
 * must be zeroed or freed first).  On AG_INVALID the offending item is
 * copied to ERRBUF (if not NULL) and LIST is left empty.
 */
ag_status ag_cidr_list_parse(const char *s, struct ag_cidr_list *list,
    char *errbuf, size_t errlen);
bool ag_cidr_list_match(const struct ag_cidr_list *list, const struct ag_ip *ip);
void ag_cidr_list_free(struct ag_cidr_list *list);

/*
 * A mail address split into its parts.  The domain is lower-cased and
 * has no trailing dot; the local part is kept as given (quotes removed
 * only when the address is parsed from SMTP syntax).  The null sender
 * has is_null set and both parts empty.
 */
struct ag_mailaddr {
	bool is_null;
	char local[AG_ADDR_LOCAL_MAX + 1];
	char domain[AG_ADDR_DOMAIN_MAX + 1];
};

/*
 * Parse the address argument of MAIL FROM or RCPT TO as a milter gets it:
 * "<user@example.com>", "<>", "user@example.com" (no brackets), with an
 * optional source route "<@a,@b:user@example.com>" (dropped), quoted local
 * parts ("\"a b\"@example.com") and address literals ("user@[192.0.2.1]",
 * kept as the domain text).  A domain in U-labels (SMTPUTF8) is given in
 * its A-label form when IDNA2008 allows one.  A local part without a
 * domain ("<postmaster>") gives an empty domain.  Over-long parts, control characters or unbalanced
 * brackets give AG_INVALID.
 */
ag_status ag_mailaddr_parse(const char *s, struct ag_mailaddr *out);

/* "local@domain" (or "" for the null sender) into BUF; returns BUF. */
char *ag_mailaddr_format(const struct ag_mailaddr *a, char *buf, size_t bufsz);

/*
 * Normalize a domain name into OUT: lower-case ASCII, trailing dot
 * removed, each label 1..63 of letters, digits, '-' and '_' (the last
 * for DKIM/SPF names), total <= 253.  UTF-8 labels are accepted as is
 * (SMTPUTF8) but control characters, spaces and other punctuation are
 * AG_INVALID.
 */
ag_status ag_domain_normalize(const char *in, char *out, size_t outsz);

/*
 * Does DOMAIN (normalized) match PATTERN (normalized)?  "example.com"
 * matches only itself; ".example.com" matches every proper subdomain of
 * example.com but not example.com itself.  Case-insensitive.
 */
bool ag_domain_match(const char *pattern, const char *domain);

/*
 * The A-label form (RFC 5890) of a normalized DOMAIN into OUT: ASCII
 * domains are copied; a domain with UTF-8 labels (SMTPUTF8, RFC 6532
 * headers) is converted with IDNA2008 (libidn2, NFC, non-transitional),
 * since DNS holds only A-labels.  AG_INVALID when it cannot be converted
 * or does not fit.  OUT may be DOMAIN.
 */
ag_status ag_domain_alabel(const char *domain, char *out, size_t outsz);

/*
 * Parse an ESMTP SIZE= value (RFC 1870): decimal digits, nothing else
 * (RFC 1870 allows 1 to 20; longer runs are accepted too).  Values above
 * UINT64_MAX saturate at UINT64_MAX (and return AG_OK: they are merely
 * very large).  Empty, signs, non-digits: AG_INVALID.
 */
ag_status ag_size_parse(const char *s, uint64_t *out);

/*
 * Parse a byte count with an optional suffix k, M, G (powers of 1024,
 * case-insensitive) as administrators write them: "10M", "512k", "1000".
 * Overflow or junk is AG_INVALID.
 */
ag_status ag_bytes_parse(const char *s, uint64_t *out);

#endif
