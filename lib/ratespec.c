/*
 * ratespec.c - the text of a rate limit, "MEASURE:LIMIT/WINDOW[:KEY]",
 * as administrators write it and as the store keeps it (canonical form).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "policy.h"

static const char *const measure_names[] = {
	[AG_RM_MESSAGES] = "messages",
	[AG_RM_RECIPIENTS] = "recipients",
	[AG_RM_BYTES] = "bytes",
};

static const char *const key_names[] = {
	[AG_RK_POOL] = "pool",
	[AG_RK_CLIENT_IP] = "client-ip",
	[AG_RK_SENDER] = "sender",
	[AG_RK_SENDER_DOMAIN] = "sender-domain",
	[AG_RK_SASL_USER] = "sasl-user",
	[AG_RK_RCPT_DOMAIN] = "rcpt-domain",
	[AG_RK_HELO] = "helo",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *
ag_rate_measure_name(enum ag_rate_measure m)
{
	return (size_t)m < NELEM(measure_names) ? measure_names[m] : "?";
}

const char *
ag_rate_key_name(enum ag_rate_key k)
{
	return (size_t)k < NELEM(key_names) ? key_names[k] : "?";
}

/* Decimal digits only, no overflow past MAX; END gets the first non-digit. */
static bool
digits(const char *s, uint64_t max, uint64_t *out, const char **end)
{
	uint64_t v = 0;

	if (*s < '0' || *s > '9') {
		return false;
	}
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (max - (uint64_t)(*s - '0')) / 10) {
			return false;
		}
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	*end = s;
	return true;
}

/* "100", or for bytes "50M" (k, M, G: powers of 1024). */
static bool
parse_limit(const char *s, size_t len, enum ag_rate_measure m, uint64_t *out)
{
	char buf[32];
	const char *end;
	uint64_t v, mul = 1;

	if (len == 0 || len >= sizeof(buf)) {
		return false;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (!digits(buf, AG_RATE_LIMIT_MAX, &v, &end)) {
		return false;
	}
	if (m == AG_RM_BYTES && end[0] != '\0' && end[1] == '\0') {
		switch (end[0]) {
		case 'k': case 'K': mul = 1ULL << 10; end++; break;
		case 'm': case 'M': mul = 1ULL << 20; end++; break;
		case 'g': case 'G': mul = 1ULL << 30; end++; break;
		default: break;
		}
	}
	if (*end != '\0' || v > AG_RATE_LIMIT_MAX / mul) {
		return false;
	}
	*out = v * mul;
	return true;
}

/* "3600", "60s", "1m", "1h", "1d", "1w". */
static bool
parse_window(const char *s, size_t len, uint64_t *out)
{
	char buf[32];
	const char *end;
	uint64_t v, unit = 1000;

	if (len == 0 || len >= sizeof(buf)) {
		return false;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (!digits(buf, AG_RATE_WINDOW_MAX_MS_SPEC, &v, &end)) {
		return false;
	}
	if (end[0] != '\0') {
		if (end[1] != '\0') {
			return false;
		}
		switch (end[0]) {
		case 's': unit = 1000; break;
		case 'm': unit = 60000; break;
		case 'h': unit = 3600000; break;
		case 'd': unit = 86400000; break;
		case 'w': unit = 7 * 86400000ULL; break;
		default: return false;
		}
	}
	if (v > AG_RATE_WINDOW_MAX_MS_SPEC / unit) {
		return false;
	}
	v *= unit;
	if (v < AG_RATE_WINDOW_MIN_MS || v > AG_RATE_WINDOW_MAX_MS_SPEC) {
		return false;
	}
	*out = v;
	return true;
}

/* "client-ip", "client-ip/24", "client-ip/24/48". */
static bool
parse_prefixes(const char *p, struct ag_rate_spec *out)
{
	const char *end;
	uint64_t v;

	out->prefix4 = 32;
	out->prefix6 = AG_RATE_PREFIX6_DEFAULT;
	if (*p == '\0') {
		return true;
	}
	if (*p++ != '/' || !digits(p, 128, &v, &end) ||
	    v < AG_RATE_PREFIX4_MIN || v > 32) {
		return false;
	}
	out->prefix4 = (unsigned)v;
	if (*end == '\0') {
		return true;
	}
	p = end;
	if (*p++ != '/' || !digits(p, 128, &v, &end) || *end != '\0' ||
	    v < AG_RATE_PREFIX6_MIN) {
		return false;
	}
	out->prefix6 = (unsigned)v;
	return true;
}

static ag_status
spec_err(char *err, size_t errlen, const char *text, const char *why)
{
	char q[AG_LOG_QUOTE_SIZE];

	/* TEXT may come from the store: no raw control bytes in ERR */
	snprintf(err, errlen, "rate '%s': %s",
	    ag_log_quote(q, sizeof(q), text, strlen(text)), why);
	return AG_INVALID;
}

ag_status
ag_rate_spec_parse(const char *text, struct ag_rate_spec *out, char *err,
    size_t errlen)
{
	const char *colon, *slash, *key;
	size_t i, mlen;

	memset(out, 0, sizeof(*out));
	if (text == NULL || strlen(text) >= AG_RATE_SPEC_MAX) {
		return spec_err(err, errlen, text ? "(too long)" : "",
		    "expected MEASURE:LIMIT/WINDOW[:KEY]");
	}
	colon = strchr(text, ':');
	if (colon == NULL) {
		return spec_err(err, errlen, text,
		    "expected MEASURE:LIMIT/WINDOW[:KEY]");
	}
	mlen = (size_t)(colon - text);
	for (i = 0; i < NELEM(measure_names); i++) {
		if (strlen(measure_names[i]) == mlen &&
		    strncmp(text, measure_names[i], mlen) == 0) {
			break;
		}
	}
	if (i == NELEM(measure_names)) {
		return spec_err(err, errlen, text,
		    "the measure is messages, recipients or bytes");
	}
	out->measure = (enum ag_rate_measure)i;
	slash = strchr(colon + 1, '/');
	if (slash == NULL) {
		return spec_err(err, errlen, text,
		    "expected LIMIT/WINDOW after the measure");
	}
	if (!parse_limit(colon + 1, (size_t)(slash - colon - 1),
	    out->measure, &out->limit)) {
		return spec_err(err, errlen, text, out->measure == AG_RM_BYTES ?
		    "the limit is a number (k, M or G allowed) up to 10^15" :
		    "the limit is a number up to 10^15");
	}
	key = strchr(slash + 1, ':');
	if (!parse_window(slash + 1, key ? (size_t)(key - slash - 1) :
	    strlen(slash + 1), &out->window_ms)) {
		return spec_err(err, errlen, text, "the window is a number with "
		    "s, m, h, d or w, from 1s to 366d");
	}
	out->key = AG_RK_POOL;
	if (key == NULL) {
		return AG_OK;
	}
	key++;
	if (strncmp(key, "client-ip", 9) == 0) {
		out->key = AG_RK_CLIENT_IP;
		if (!parse_prefixes(key + 9, out)) {
			return spec_err(err, errlen, text, "client-ip takes "
			    "/V4 (16-32) and /V6 (32-128) prefix lengths, as in "
			    "client-ip/24/48");
		}
		return AG_OK;
	}
	for (i = AG_RK_SENDER; i < NELEM(key_names); i++) {
		if (strcmp(key, key_names[i]) == 0) {
			out->key = (enum ag_rate_key)i;
			return AG_OK;
		}
	}
	return spec_err(err, errlen, text, "the key is client-ip[/V4[/V6]], "
	    "sender, sender-domain, sasl-user, rcpt-domain or helo (none: one "
	    "pool for the rule)");
}

char *
ag_window_format(uint64_t ms, char *buf, size_t bufsz)
{
	static const struct { uint64_t ms; char c; } units[] = {
		{ 7 * 86400000ULL, 'w' }, { 86400000, 'd' }, { 3600000, 'h' },
		{ 60000, 'm' }, { 1000, 's' },
	};
	size_t i;

	for (i = 0; i < NELEM(units); i++) {
		if (ms != 0 && ms % units[i].ms == 0) {
			snprintf(buf, bufsz, "%llu%c",
			    (unsigned long long)(ms / units[i].ms), units[i].c);
			return buf;
		}
	}
	snprintf(buf, bufsz, "%llums", (unsigned long long)ms);
	return buf;
}

char *
ag_rate_spec_format(const struct ag_rate_spec *s, char *buf, size_t bufsz)
{
	char win[32], key[32] = "", lim[32];
	static const struct { unsigned shift; char c; } sfx[] = {
		{ 30, 'G' }, { 20, 'M' }, { 10, 'k' },
	};
	size_t i;

	ag_window_format(s->window_ms, win, sizeof(win));
	snprintf(lim, sizeof(lim), "%llu", (unsigned long long)s->limit);
	for (i = 0; s->measure == AG_RM_BYTES && s->limit != 0 &&
	    i < NELEM(sfx); i++) {
		if (s->limit % (1ULL << sfx[i].shift) == 0) {
			snprintf(lim, sizeof(lim), "%llu%c", (unsigned long long)
			    (s->limit >> sfx[i].shift), sfx[i].c);
			break;
		}
	}
	if (s->key == AG_RK_CLIENT_IP) {
		snprintf(key, sizeof(key), ":client-ip/%u/%u", s->prefix4,
		    s->prefix6);
	} else if (s->key != AG_RK_POOL) {
		snprintf(key, sizeof(key), ":%s", ag_rate_key_name(s->key));
	}
	snprintf(buf, bufsz, "%s:%s/%s%s", ag_rate_measure_name(s->measure),
	    lim, win, key);
	return buf;
}
