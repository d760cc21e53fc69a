/*
 * redis_url.c - the RateBackend URL of the Redis rate backend (see
 * redis_url.h).
 *
 * Every byte is checked against what the form allows, and every part is
 * bounded before it is copied: the host (RFC 1035 length), the port, the
 * database, the password (before and after %-decoding) and the socket
 * path (sun_path).  A reason is a static string, for the caller to put
 * after the (masked) URL.
 *
 * Ownership: the parsed URL owns its strings; a failed parse frees what
 * it made.  Thread-safe: no state.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "redis_url.h"

#define URL_DB_DIGITS 9			/* a database number below 1e9 */

/* The decimal number of LEN digits at S (at most MAXDIG) into *OUT. */
static bool
parse_num(const char *s, size_t len, size_t maxdig, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > maxdig) {
		return false;
	}
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return false;
		}
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* ---- the parts ----------------------------------------------------------- */

/* The value of hex digit C, or -1. */
static int
hex_val(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
		return (c | 0x20) - 'a' + 10;
	}
	return -1;
}

/*
 * S (LEN bytes) with %XX decoded, as a new string; NULL with *WHY set,
 * or with *WHY NULL when out of memory.  %00 is refused: AUTH would send
 * it, but a password cannot hold it here.
 */
static char *
url_decode(const char *s, size_t len, const char **why)
{
	char *out = malloc(len + 1), *o = out;
	size_t i;
	int hi, lo;

	*why = NULL;
	if (out == NULL) {
		return NULL;
	}
	for (i = 0; i < len; i++) {
		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		hi = i + 2 < len ? hex_val(s[i + 1]) : -1;
		lo = i + 2 < len ? hex_val(s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			free(out);
			*why = "bad %-escape in the password";
			return NULL;
		}
		*o++ = (char)(hi << 4 | lo);
		i += 2;
	}
	*o = '\0';
	return out;
}

/* True for a byte of a host name or an IPv4 address. */
static inline bool
host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/* True for a byte of a bracketed IPv6 address (a zone id included). */
static inline bool
ip6_char(char c)
{
	return host_char(c) || c == ':' || c == '%';
}

/* A copy of LEN bytes at S as a string into *OUT; false if out of memory. */
static bool
dup_n(const char *s, size_t len, char **out)
{
	*out = malloc(len + 1);
	if (*out == NULL) {
		return false;
	}
	memcpy(*out, s, len);
	(*out)[len] = '\0';
	return true;
}

/*
 * The rest of a redis:// URL (after the scheme) into U: AG_OK, AG_NOMEM,
 * or AG_INVALID with *WHY.
 */
static ag_status
url_tcp(struct ag_redis_url *u, const char *p, const char **why)
{
	const char *at = strrchr(p, '@'), *h, *end;
	size_t hlen, n;
	uint64_t v;
	bool v6;

	if (at != NULL) {
		if (*p != ':') {
			*why = "a user name is not supported (only :PASSWORD@)";
			return AG_INVALID;
		}
		if (at == p + 1) {
			*why = "empty password";
			return AG_INVALID;
		}
		if ((size_t)(at - p - 1) > AG_REDIS_URL_PASS_MAX * 3) {
			*why = "password too long";
			return AG_INVALID;
		}
		u->password = url_decode(p + 1, (size_t)(at - p - 1), why);
		if (u->password == NULL) {
			return *why != NULL ? AG_INVALID : AG_NOMEM;
		}
		if (strlen(u->password) > AG_REDIS_URL_PASS_MAX) {
			*why = "password too long";
			return AG_INVALID;
		}
		p = at + 1;
	}
	if ((v6 = *p == '[')) {
		h = p + 1;
		for (end = h; ip6_char(*end); end++) {
		}
		if (*end != ']' || memchr(h, ':', (size_t)(end - h)) == NULL) {
			*why = "bad IPv6 address in brackets";
			return AG_INVALID;
		}
		hlen = (size_t)(end - h);
		p = end + 1;
	} else {
		h = p;
		for (end = h; host_char(*end); end++) {
		}
		hlen = (size_t)(end - h);
		p = end;
	}
	if (hlen == 0) {
		*why = "no host";
		return AG_INVALID;
	}
	if (hlen > AG_REDIS_URL_HOST_MAX) {
		*why = "host name too long";
		return AG_INVALID;
	}
	u->port = AG_REDIS_URL_PORT_DEFAULT;
	if (*p == ':') {
		n = strspn(p + 1, "0123456789");
		if (!parse_num(p + 1, n, 5, &v) || v == 0 || v > 65535) {
			*why = "the port must be a number from 1 to 65535";
			return AG_INVALID;
		}
		u->port = (int)v;
		p += 1 + n;
	}
	if (*p == '/') {
		n = strspn(p + 1, "0123456789");
		if (!parse_num(p + 1, n, URL_DB_DIGITS, &v)) {
			*why = "the database must be a number below 10^9";
			return AG_INVALID;
		}
		u->db = (unsigned)v;
		p += 1 + n;
	}
	if (*p != '\0') {
		*why = *p == '?' ? "no query is allowed in a redis:// URL" :
		    "unexpected text after the host, port or database";
		return AG_INVALID;
	}
	if (!dup_n(h, hlen, &u->host)) {
		return AG_NOMEM;
	}
	n = hlen + 16;
	if ((u->where = malloc(n)) == NULL) {
		return AG_NOMEM;
	}
	snprintf(u->where, n, v6 ? "[%s]:%d" : "%s:%d", u->host, u->port);
	return AG_OK;
}

/*
 * The rest of a unix: URL (after "unix:") into U: AG_OK, AG_NOMEM, or
 * AG_INVALID with *WHY.
 */
static ag_status
url_unix(struct ag_redis_url *u, const char *p, const char **why)
{
	struct sockaddr_un sun;
	const char *q;
	size_t len, n;
	uint64_t v;

	if (strncmp(p, "//", 2) == 0) {
		p += 2;
		if (*p != '/') {
			*why = "unix://HOST/ is not supported: use unix:/PATH "
			    "or unix:///PATH";
			return AG_INVALID;
		}
	}
	if (*p != '/') {
		*why = "the socket path must be absolute";
		return AG_INVALID;
	}
	q = strchr(p, '?');
	len = q != NULL ? (size_t)(q - p) : strlen(p);
	if (len < 2) {
		*why = "no socket path";
		return AG_INVALID;
	}
	if (len >= sizeof(sun.sun_path)) {
		*why = "socket path too long";
		return AG_INVALID;
	}
	if (q != NULL) {
		if (strncmp(q, "?db=", 4) != 0) {
			*why = "the only query allowed is ?db=N";
			return AG_INVALID;
		}
		n = strspn(q + 4, "0123456789");
		if (!parse_num(q + 4, n, URL_DB_DIGITS, &v) ||
		    q[4 + n] != '\0') {
			*why = "the database must be a number below 10^9";
			return AG_INVALID;
		}
		u->db = (unsigned)v;
	}
	if (!dup_n(p, len, &u->path) || !dup_n(p, len, &u->where)) {
		return AG_NOMEM;
	}
	return AG_OK;
}

/* ---- the interface ------------------------------------------------------- */

/* URL into OUT, emptied first and again on failure. */
ag_status
ag_redis_url_parse(const char *url, struct ag_redis_url *out,
    const char **why)
{
	ag_status rc;

	memset(out, 0, sizeof(*out));
	*why = NULL;
	if (strncasecmp(url, "redis://", 8) == 0) {
		rc = url_tcp(out, url + 8, why);
	} else if (strncasecmp(url, "unix:", 5) == 0) {
		rc = url_unix(out, url + 5, why);
	} else {
		*why = strncasecmp(url, "rediss://", 9) == 0 ?
		    "TLS (rediss://) is not supported" :
		    "expected redis://[:PASSWORD@]HOST[:PORT][/DB] or "
		    "unix:/PATH[?db=N]";
		rc = AG_INVALID;
	}
	if (rc != AG_OK) {
		ag_redis_url_clear(out);
	}
	return rc;
}

/* Free U's strings, the password wiped first. */
void
ag_redis_url_clear(struct ag_redis_url *u)
{
	if (u == NULL) {
		return;
	}
	free(u->host);
	free(u->path);
	free(u->where);
	if (u->password != NULL) {
		explicit_bzero(u->password, strlen(u->password));
		free(u->password);
	}
	memset(u, 0, sizeof(*u));
}

/* URL with the password (after "://", up to the last '@') as "***". */
void
ag_redis_url_mask(const char *url, char *buf, size_t size)
{
	const char *auth = strstr(url, "://"), *at;

	at = auth != NULL ? strrchr(auth + 3, '@') : NULL;
	if (at == NULL) {
		snprintf(buf, size, "%s", url);
		return;
	}
	auth += 3;
	snprintf(buf, size, "%.*s%s%s", (int)(auth - url), url,
	    *auth == ':' ? ":***" : "***", at);
}
