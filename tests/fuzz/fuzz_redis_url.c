/*
 * fuzz_redis_url.c - the URL of the Redis rate backend (lib/redis_url.c)
 * and its masked form for logs.
 *
 * Input: the first byte is a buffer size for the masked copy, the rest
 * the URL (cut at a NUL).  Checks: a parsed URL is TCP (host, port
 * 1-65535) or unix (an absolute path), with a "where" text; the masked
 * copy is terminated inside the buffer and, given room for all of it,
 * holds the password's text only where the rest of the URL does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzlib.h"
#include "redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Does PW occur in URL once the text between "://" and the last '@' is
 * taken out (the scheme, '@', host, port or database may hold it)? */
static bool
outside_password(const char *url, const char *pw)
{
	const char *sep = strstr(url, "://"), *at = strrchr(url, '@');
	char *rest;
	bool found;

	if (sep == NULL || at == NULL || at < sep) {
		return strstr(url, pw) != NULL;
	}
	rest = malloc(strlen(url) + 1);
	if (rest == NULL) {
		abort();
	}
	memcpy(rest, url, (size_t)(sep + 3 - url));
	strcpy(rest + (sep + 3 - url), at);
	found = strstr(rest, pw) != NULL;
	free(rest);
	return found;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ag_redis_url u;
	const char *why = NULL;
	char *url, *buf;
	size_t bufsz;

	if (size < 1) {
		return 0;
	}
	bufsz = data[0];
	url = fz_strndup(data + 1, size - 1);
	memset(&u, 0, sizeof(u));
	if (ag_redis_url_parse(url, &u, &why) == AG_OK) {
		if (u.where == NULL || (u.host == NULL) == (u.path == NULL)) {
			fz_fail("parsed URL without host or path");
		}
		if (u.host != NULL && (u.port < 1 || u.port > 65535)) {
			fz_fail("port %d", u.port);
		}
		if (u.path != NULL && u.path[0] != '/') {
			fz_fail("relative path %s", u.path);
		}
	} else {
		if (why == NULL) {
			fz_fail("no reason for an error");
		}
		fz_check_printable("reason", why);
		if (u.host != NULL || u.path != NULL || u.password != NULL ||
		    u.where != NULL) {
			fz_fail("URL not left empty on error");
		}
	}
	/* the mask, into a buffer of exactly BUFSZ bytes */
	buf = malloc(bufsz > 0 ? bufsz : 1);
	if (buf == NULL) {
		abort();
	}
	ag_redis_url_mask(url, buf, bufsz);
	if (bufsz > 0 && memchr(buf, '\0', bufsz) == NULL) {
		fz_fail("masked URL not terminated");
	}
	free(buf);
	bufsz = strlen(url) + sizeof(":***");
	buf = malloc(bufsz);
	if (buf == NULL) {
		abort();
	}
	ag_redis_url_mask(url, buf, bufsz);
	if (u.password != NULL && u.password[0] != '\0' &&
	    strchr(u.password, '*') == NULL && strstr(buf, u.password) != NULL &&
	    !outside_password(url, u.password)) {
		fz_fail("password shows in the masked URL: %s", buf);
	}
	free(buf);
	ag_redis_url_clear(&u);
	ag_redis_url_clear(&u);
	free(url);
	return 0;
}
