/*
 * ctl_counters.c - authgatectl counters: ask the running daemon over its
 * control socket (lib/control.h) and print what it answers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "ctl.h"

#define CTL_WAIT_S 10

/* Send REQ to the daemon; print its body; a CTL_* status. */
static int
ask(struct ctl *c, const char *req)
{
	struct sockaddr_un sa;
	struct timeval tv = { CTL_WAIT_S, 0 };
	char path[sizeof(sa.sun_path)], buf[4096], first[512];
	size_t flen = 0;
	bool head = true, ok = false;
	ssize_t n;
	int fd;

	if (!ag_config_control_path(c->cfg, path, sizeof(path))) {
		return ctl_err(CTL_FAIL, "control socket path too long");
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		return ctl_err(CTL_FAIL, "socket: %s", strerror(errno));
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;

		close(fd);
		return ctl_err(CTL_FAIL, "cannot reach authgate at %s: %s "
		    "(counters live in the running daemon)", path, strerror(e));
	}
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return ctl_err(CTL_FAIL, "writing to %s: %s", path,
		    strerror(errno));
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		const char *p = buf;
		size_t len = (size_t)n;

		if (head) {
			const char *nl = memchr(buf, '\n', len);
			size_t take = nl != NULL ? (size_t)(nl - buf) : len;

			if (flen + take >= sizeof(first)) {
				take = sizeof(first) - 1 - flen;
			}
			memcpy(first + flen, buf, take);
			flen += take;
			if (nl == NULL) {
				continue;
			}
			first[flen] = '\0';
			head = false;
			ok = strcmp(first, "OK") == 0;
			p = nl + 1;
			len -= (size_t)(p - buf);
		}
		fwrite(p, 1, len, stdout);
	}
	close(fd);
	if (head) {
		return ctl_err(CTL_FAIL, "no answer from authgate at %s%s%s",
		    path, n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
	}
	if (!ok) {
		return ctl_err(CTL_FAIL, "%s", strncmp(first, "ERR ", 4) == 0 ?
		    first + 4 : first);
	}
	return CTL_OK;
}

/* A value sent in a request field: no tabs or line breaks. */
static bool
field_ok(const char *s)
{
	return strpbrk(s, "\t\r\n") == NULL && strlen(s) < 1024;
}

int
cmd_counters(struct ctl *c, struct args *a)
{
	const char *sub, *rule = NULL, *key = NULL, *v;
	char req[AG_CONTROL_LINE_MAX];
	long long id = 0;
	char *end;
	int got;

	if (a->i >= a->argc) {
		return ctl_err(CTL_USAGE, "counters needs a verb: list, reset");
	}
	sub = a->argv[a->i++];
	if (strcmp(sub, "list") == 0) {
		while (a->i < a->argc) {
			if ((got = opt_value(a, "--rule", &v)) != 0) {
				if (got < 0) {
					return CTL_USAGE;
				}
				rule = v;
			} else if ((got = opt_value(a, "--key", &v)) != 0) {
				if (got < 0) {
					return CTL_USAGE;
				}
				key = v;
			} else if (opt_flag(a, "--json")) {
				c->json = true;
			} else {
				return ctl_err(CTL_USAGE, "counters list: unexpected "
				    "argument '%s'", a->argv[a->i]);
			}
		}
		if (rule != NULL) {
			id = strtoll(rule, &end, 10);
			if (*rule < '1' || *rule > '9' || *end != '\0' || id < 1) {
				return ctl_err(CTL_USAGE, "--rule: bad rule id '%s'",
				    rule);
			}
		}
		if (key != NULL && !field_ok(key)) {
			return ctl_err(CTL_USAGE, "--key: no tabs or line breaks");
		}
		snprintf(req, sizeof(req), "counters\tlist\t%lld\t%s\t%s\n", id,
		    key != NULL ? key : "", c->json ? "json" : "text");
		return ask(c, req);
	}
	if (strcmp(sub, "reset") == 0) {
		while (a->i < a->argc) {
			if (opt_flag(a, "--json")) {
				c->json = true;
			} else if (key == NULL) {
				key = a->argv[a->i++];
			} else {
				return ctl_err(CTL_USAGE, "counters reset: "
				    "unexpected argument '%s'", a->argv[a->i]);
			}
		}
		if (key == NULL || key[0] == '\0' || !field_ok(key)) {
			return ctl_err(CTL_USAGE, "counters reset needs a KEY (as "
			    "counters list shows it, or its FIELD=VALUE part)");
		}
		snprintf(req, sizeof(req), "counters\treset\t%s\t%s\n", key,
		    c->json ? "json" : "text");
		return ask(c, req);
	}
	return ctl_err(CTL_USAGE, "unknown counters verb '%s'", sub);
}
