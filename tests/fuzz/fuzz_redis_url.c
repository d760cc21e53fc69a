/*
 * fuzz_redis_url.c - the URL of the Redis rate backend (lib/redis_url.c)
 * and its masked form for logs.
 *
 * Input: the first byte is a buffer size for the masked copy, the rest
 * the URL (cut at a NUL).  Checks: a parsed URL is TCP (host, port
 * 1-65535) or unix (an absolute path), with a "where" text; the masked
 * copy is terminated inside the buffer and, given room for all of it,
 * is the URL with all between "://" (or "://:") and the last '@' as
 * "***".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzlib.h"
#include "redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Is BUF the mask of URL, whose password was parsed: the URL up to "://"
 * (and the ':' before the password), "***", then the URL from its last
 * '@' on, so that no byte between them shows?
 */
static bool
masked(const char *url, const char *buf)
{
	const char *star = strstr(buf, "***"), *at = strrchr(url, '@');
	const char *sep = strstr(url, "://");
	size_t pre;

	if (star == NULL || at == NULL || sep == NULL ||
	    strcmp(star + 3, at) != 0) {
		return false;
	}
	pre = (size_t)(star - buf);
	return pre <= (size_t)(sep + 3 - url) + 1 &&
	    strncmp(buf, url, pre) == 0;
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
	if (u.password != NULL && !masked(url, buf)) {
		fz_fail("password not masked: %s", buf);
	}
	free(buf);
	ag_redis_url_clear(&u);
	ag_redis_url_clear(&u);
	free(url);
	return 0;
}
