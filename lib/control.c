/*
 * control.c - answering authgatectl's requests (see control.h).  The
 * request comes from a local socket that only the administrator can
 * reach, but it is still parsed strictly: fixed fields, bounded values.
 */
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "log.h"
#include "rate.h"

#define FIELDS_MAX 8

/* Split LINE (modified) at tabs; returns the number of fields. */
static size_t
split(char *line, char **f, size_t max)
{
	size_t n = 0;

	while (n < max) {
		f[n++] = line;
		if ((line = strchr(line, '\t')) == NULL) {
			break;
		}
		*line++ = '\0';
	}
	return line == NULL ? n : max + 1;
}

/* A rule id field: digits only. */
static bool
parse_id(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (*s < '0' || *s > '9') {
		return false;
	}
	v = strtoll(s, &end, 10);
	if (*end != '\0' || v < 0) {
		return false;
	}
	*out = v;
	return true;
}

/* Run one request; the body goes to BODY, a failure to ERR. */
static bool
run(struct ag_engine *e, char **f, size_t n, FILE *body, char *err,
    size_t errlen)
{
	const struct ag_snapshot *snap;
	int64_t rule = 0;
	size_t count = 0;
	ag_status st;
	bool json;

	if (n == 1 && strcmp(f[0], "ping") == 0) {
		fputs("pong\n", body);
		return true;
	}
	if (n < 2 || strcmp(f[0], "counters") != 0) {
		snprintf(err, errlen, "unknown request");
		return false;
	}
	if (strcmp(f[1], "list") == 0 && n == 5 && parse_id(f[2], &rule) &&
	    (strcmp(f[4], "json") == 0 || strcmp(f[4], "text") == 0)) {
		json = strcmp(f[4], "json") == 0;
		snap = ag_engine_acquire(e);
		st = ag_rater_list(snap->rater, snap->policy, rule,
		    f[3][0] != '\0' ? f[3] : NULL, json, body, err, errlen);
		ag_snapshot_release(snap);
		/* Redis trouble: the local part is still worth showing */
		if (st == AG_TEMPFAIL) {
			ag_log_warning("counters list: %s", err);
			return false;
		}
		return st == AG_OK;
	}
	if (strcmp(f[1], "reset") == 0 && n == 4 && f[2][0] != '\0' &&
	    (strcmp(f[3], "json") == 0 || strcmp(f[3], "text") == 0)) {
		snap = ag_engine_acquire(e);
		st = ag_rater_reset(snap->rater, f[2], &count, err, errlen);
		ag_snapshot_release(snap);
		if (st != AG_OK) {
			return false;
		}
		if (strcmp(f[3], "json") == 0) {
			fprintf(body, "{\"reset\": %zu}\n", count);
		} else {
			fprintf(body, "%zu counters reset\n", count);
		}
		return true;
	}
	snprintf(err, errlen, "bad counters request");
	return false;
}

void
ag_control_handle(struct ag_engine *e, const char *line, FILE *out)
{
	char buf[AG_CONTROL_LINE_MAX], err[256] = "", *f[FIELDS_MAX + 1];
	char *text = NULL;
	size_t len = 0, n;
	FILE *body;
	bool ok;

	if (strlen(line) >= sizeof(buf)) {
		fputs("ERR request too long\n", out);
		return;
	}
	memcpy(buf, line, strlen(line) + 1);
	n = split(buf, f, FIELDS_MAX);
	if ((body = open_memstream(&text, &len)) == NULL) {
		fputs("ERR out of memory\n", out);
		return;
	}
	ok = n <= FIELDS_MAX && run(e, f, n, body, err, sizeof(err));
	if (n > FIELDS_MAX) {
		snprintf(err, sizeof(err), "too many fields");
	}
	if (fclose(body) != 0) {
		ok = false;
		snprintf(err, sizeof(err), "out of memory");
	}
	if (ok) {
		fputs("OK\n", out);
	} else {
		/* the error text is ours, but keep it to one line */
		for (char *p = err; *p != '\0'; p++) {
			if (*p == '\n' || *p == '\r') {
				*p = ' ';
			}
		}
		fprintf(out, "ERR %s\n", err[0] != '\0' ? err : "failed");
	}
	if (text != NULL) {
		fwrite(text, 1, len, out);
	}
	free(text);
}
