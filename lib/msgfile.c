/*
 * msgfile.c - read a stored message into milter-style events.
 */
#include <stdlib.h>
#include <string.h>

#include "msgfile.h"

struct reader {
	FILE *fp;
	const struct ag_msgfile_cb *cb;
	char *field;		/* the header field being collected */
	size_t flen;
	size_t fcap;
	unsigned long lineno;
	int stopped;
	char *err;
	size_t errlen;
};

/* Append LEN bytes to the pending field; bounded. */
static ag_status
field_append(struct reader *r, const char *s, size_t len)
{
	if (r->flen + len + 1 > AG_MSGFILE_FIELD_MAX) {
		snprintf(r->err, r->errlen, "line %lu: header field longer "
		    "than %d bytes", r->lineno, AG_MSGFILE_FIELD_MAX);
		return AG_INVALID;
	}
	if (r->flen + len + 1 > r->fcap) {
		size_t cap = r->fcap == 0 ? 1024 : r->fcap;
		char *p;

		while (cap < r->flen + len + 1) {
			cap *= 2;
		}
		p = realloc(r->field, cap);
		if (p == NULL) {
			return AG_NOMEM;
		}
		r->field = p;
		r->fcap = cap;
	}
	memcpy(r->field + r->flen, s, len);
	r->flen += len;
	r->field[r->flen] = '\0';
	return AG_OK;
}

/* Hand out the pending field, split at its colon. */
static void
field_flush(struct reader *r)
{
	char *colon, *value;

	if (r->flen == 0 || r->stopped) {
		r->flen = 0;
		return;
	}
	colon = strchr(r->field, ':');
	*colon = '\0';
	value = colon + 1;	/* raw: the leading space stays */
	if (r->cb->header != NULL) {
		r->stopped = r->cb->header(r->cb->arg, r->field, value);
	}
	r->flen = 0;
}

/* Append LEN bytes to the body chunk, passing it on whenever it fills. */
static void
body_emit(struct reader *r, unsigned char *chunk, size_t *used,
    const char *p, size_t len)
{
	while (!r->stopped && len > 0) {
		size_t room = AG_MSGFILE_CHUNK - *used;
		size_t n = len < room ? len : room;

		memcpy(chunk + *used, p, n);
		*used += n;
		p += n;
		len -= n;
		if (*used == AG_MSGFILE_CHUNK) {
			if (r->cb->body != NULL) {
				r->stopped = r->cb->body(r->cb->arg, chunk, *used);
			}
			*used = 0;
		}
	}
}

/* Strip a trailing LF or CRLF; returns whether there was one. */
static int
chomp(char *line, size_t *len)
{
	if (*len > 0 && line[*len - 1] == '\n') {
		(*len)--;
		if (*len > 0 && line[*len - 1] == '\r') {
			(*len)--;
		}
		return 1;
	}
	return 0;
}

/* The header section; returns when the body starts.  *PENDING is the
 * length of a line already read that belongs to the body, or -1. */
static ag_status
read_headers(struct reader *r, char **line, size_t *cap, ssize_t *pending)
{
	ssize_t n;
	ag_status st;

	*pending = -1;
	while ((n = getline(line, cap, r->fp)) >= 0) {
		size_t len = (size_t)n;

		r->lineno++;
		chomp(*line, &len);
		if (len == 0) {
			break;				/* end of headers */
		}
		if (((*line)[0] == ' ' || (*line)[0] == '\t') && r->flen > 0) {
			st = field_append(r, "\r\n", 2);
			if (st == AG_OK) {
				st = field_append(r, *line, len);
			}
			if (st != AG_OK) {
				return st;
			}
			continue;
		}
		field_flush(r);
		if (memchr(*line, ':', len) == NULL || memchr(*line, '\0', len)) {
			*pending = n;	/* not a header: the body starts here */
			break;
		}
		st = field_append(r, *line, len);
		if (st != AG_OK) {
			return st;
		}
	}
	field_flush(r);
	return AG_OK;
}

ag_status
ag_msgfile_read(FILE *fp, const struct ag_msgfile_cb *cb, char *err,
    size_t errlen)
{
	struct reader r = { .fp = fp, .cb = cb, .err = err, .errlen = errlen };
	unsigned char *chunk;
	char *line = NULL;
	size_t cap = 0, used = 0;
	ssize_t n;
	ag_status st;

	chunk = malloc(AG_MSGFILE_CHUNK);
	if (chunk == NULL) {
		return AG_NOMEM;
	}
	st = read_headers(&r, &line, &cap, &n);
	if (st == AG_OK && !r.stopped && cb->eoh != NULL) {
		r.stopped = cb->eoh(cb->arg);
	}
	if (st == AG_OK && n < 0) {
		n = getline(&line, &cap, fp);
	}
	while (st == AG_OK && n >= 0 && !r.stopped) {
		size_t len = (size_t)n;
		int crlf = chomp(line, &len);

		body_emit(&r, chunk, &used, line, len);
		if (crlf) {
			body_emit(&r, chunk, &used, "\r\n", 2);
		}
		n = getline(&line, &cap, fp);
	}
	if (st == AG_OK && !r.stopped && used > 0 && cb->body != NULL) {
		r.stopped = cb->body(cb->arg, chunk, used);
	}
	free(line);
	free(chunk);
	free(r.field);
	return st;
}
