/*
 * redis_url.h - the URL of the Redis rate backend (RateBackend), parsed
 * strictly into what a connection needs: where to connect, the password
 * for AUTH and the database for SELECT.
 *
 * The accepted forms (the scheme in any case):
 *   redis://[:PASSWORD@]HOST[:PORT][/DB]
 *       HOST a name or an IPv4 address, or an IPv6 address in brackets
 *       ("[::1]", a zone id allowed); PORT 1 to 65535, default 6379;
 *       DB below 10^9, default 0.  PASSWORD may hold %XX escapes (not
 *       %00), and ends at the last '@'.  No user name, no query.
 *   unix:/PATH[?db=N]  or  unix:///PATH[?db=N]
 *       PATH absolute, shorter than sun_path.
 * Refused with a reason: rediss:// (no TLS), unix://HOST/, anything else.
 *
 * Ownership: a parsed URL owns its strings; ag_redis_url_clear() frees
 * them (and wipes the password).  Thread-safe: no state.
 */
#ifndef AG_REDIS_URL_H
#define AG_REDIS_URL_H

#include <stddef.h>

#include "status.h"

#define AG_REDIS_URL_PORT_DEFAULT 6379
#define AG_REDIS_URL_HOST_MAX 253	/* RFC 1035 2.3.4, dots included */
#define AG_REDIS_URL_PASS_MAX 512	/* bytes, once decoded */

struct ag_redis_url {
	char *host;		/* TCP: no brackets; NULL for unix */
	int port;		/* TCP */
	char *path;		/* unix socket; NULL for TCP */
	char *password;		/* decoded; NULL: no AUTH */
	unsigned db;		/* 0: no SELECT needed */
	char *where;		/* "host:port" ("[v6]:port") or the path */
};

/*
 * Parse URL into OUT (its old contents are not freed): AG_OK; AG_NOMEM;
 * AG_INVALID with a static one-line reason in *WHY.  On failure OUT is
 * left empty.
 */
ag_status ag_redis_url_parse(const char *url, struct ag_redis_url *out,
    const char **why);

/* Free U's strings and empty it; U may be NULL or already empty. */
void ag_redis_url_clear(struct ag_redis_url *u);

/*
 * URL with its password (between "://" and the last '@') as "***", into
 * BUF of SIZE bytes, cut short if need be.  Any string will do, valid or
 * not; strlen(URL) + sizeof(":***") bytes always hold all of it.
 */
void ag_redis_url_mask(const char *url, char *buf, size_t size);

#endif
