/*
 * metrics_http.c - the MetricsListen endpoint (see metrics_http.h).
 *
 * One thread polls the listening socket, a wake-up pipe and up to
 * AG_MHTTP_CLIENTS connections, all non-blocking.  Each connection goes
 * READ (the request head, at most AG_MHTTP_REQUEST_MAX bytes) -> WRITE
 * (the whole answer, made at once) -> DRAIN (our side shut, what the
 * client still sends is read and dropped so that closing does not reset
 * the answer away) -> closed, all before AG_MHTTP_DEADLINE_MS from its
 * connect.  So a client that sends nothing, or reads nothing, holds one
 * slot for the deadline at most and never delays the others; and the
 * milter threads never wait for this one: rendering reads atomic
 * counters only.
 *
 * What is answered: GET or HEAD /metrics (a query string is ignored)
 * 200 with the text format 0.0.4; another path 404; another method 405;
 * anything that is not an HTTP/1.x request line 400.  Header fields are
 * not read: the answer does not depend on them (no compression, no
 * keep-alive: "Connection: close" and the close end every exchange).
 * There is no authentication: the man page says to bind it to loopback.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "session.h"

#define LISTEN_BACKLOG 16
#define METHOD_MAX 16

enum cstate { C_FREE = 0, C_READ, C_WRITE, C_DRAIN };

struct client {
	enum cstate state;
	int fd;
	uint64_t deadline;		/* ms, CLOCK_MONOTONIC */
	size_t inlen;
	char in[AG_MHTTP_REQUEST_MAX + 1];
	char *out;			/* the answer, malloc'd */
	size_t outlen, outoff;
};

struct ag_mhttp {
	int lfd;
	int wake[2];
	pthread_t tid;
	bool running;
	struct client c[AG_MHTTP_CLIENTS];
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct ag_mhttp *
ag_mhttp_open(const char *spec, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct ag_mhttp *h;
	char why[128];
	int on = 1;

	if (ag_metrics_listen_parse(spec, &ss, &sslen, why, sizeof(why)) !=
	    AG_OK) {
		snprintf(err, errlen, "MetricsListen %s %s", spec, why);
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->wake[0] = h->wake[1] = -1;
	h->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (h->lfd < 0 ||
	    setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
	    bind(h->lfd, (struct sockaddr *)&ss, sslen) != 0 ||
	    listen(h->lfd, LISTEN_BACKLOG) != 0 ||
	    pipe2(h->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		snprintf(err, errlen, "cannot listen on MetricsListen %s: %s",
		    spec, strerror(errno));
		ag_mhttp_free(h);
		return NULL;
	}
	return h;
}

/* Close C's connection and free what it holds; the slot is free. */
static void
client_close(struct client *c)
{
	if (c->fd >= 0) {
		close(c->fd);
	}
	free(c->out);
	c->out = NULL;
	c->fd = -1;
	c->state = C_FREE;
}

/* Set C's answer: STATUS, the extra header lines EXTRA, BODY (LEN
 * bytes; sent unless HEAD).  On no memory the connection is closed. */
static void
answer(struct client *c, const char *status, const char *ctype,
    const char *extra, const char *body, size_t len, bool head)
{
	char hdr[512];
	int n;

	n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nCache-Control: no-store\r\n%s"
	    "Connection: close\r\n\r\n", status, ctype, len, extra);
	if (n < 0 || (size_t)n >= sizeof(hdr)) {
		client_close(c);
		return;
	}
	c->outlen = (size_t)n + (head ? 0 : len);
	c->out = malloc(c->outlen);
	if (c->out == NULL) {
		client_close(c);
		return;
	}
	memcpy(c->out, hdr, (size_t)n);
	if (!head) {
		memcpy(c->out + n, body, len);
	}
	c->outoff = 0;
	c->state = C_WRITE;
}

/* A short text/plain answer. */
static void
answer_text(struct client *c, const char *status, const char *extra,
    const char *text, bool head)
{
	answer(c, status, "text/plain; charset=utf-8", extra, text,
	    strlen(text), head);
}

/* The metrics, or 500 when there is no memory for them. */
static void
answer_metrics(struct client *c, bool head)
{
	size_t len = 0;
	char *text;

	ag_metrics_set_in_flight(ag_session_in_flight());
	text = ag_metrics_text(&len);
	if (text == NULL) {
		answer_text(c, "500 Internal Server Error", "",
		    "out of memory\n", head);
		return;
	}
	answer(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", "",
	    text, len, head);
	free(text);
}

/* Is S (LEN bytes) a method token we could name: 1..METHOD_MAX of A-Z? */
static bool
method_ok(const char *s, size_t len)
{
	if (len == 0 || len > METHOD_MAX) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] < 'A' || s[i] > 'Z') {
			return false;
		}
	}
	return true;
}

/* Printable ASCII without spaces: a request target. */
static bool
target_ok(const char *s, size_t len)
{
	if (len == 0 || s[0] != '/') {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] <= ' ' || s[i] >= 0x7f) {
			return false;
		}
	}
	return true;
}

/* Answer the request line LINE (LEN bytes, no CR LF; may hold NULs). */
static void
respond(struct client *c, const char *line, size_t len)
{
	const char *sp1 = memchr(line, ' ', len), *sp2 = NULL, *ver, *q;
	size_t mlen, tlen, vlen;
	bool head;

	if (sp1 != NULL) {
		sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line));
	}
	if (sp2 == NULL) {
		answer_text(c, "400 Bad Request", "", "bad request\n", false);
		return;
	}
	mlen = (size_t)(sp1 - line);
	tlen = (size_t)(sp2 - sp1 - 1);
	ver = sp2 + 1;
	vlen = len - (size_t)(ver - line);
	if (!method_ok(line, mlen) || !target_ok(sp1 + 1, tlen) ||
	    vlen != 8 || memcmp(ver, "HTTP/1.", 7) != 0 ||
	    ver[7] < '0' || ver[7] > '9') {
		answer_text(c, "400 Bad Request", "", "bad request\n", false);
		return;
	}
	head = mlen == 4 && memcmp(line, "HEAD", 4) == 0;
	if (!head && !(mlen == 3 && memcmp(line, "GET", 3) == 0)) {
		answer_text(c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n",
		    "only GET and HEAD are served\n", false);
		return;
	}
	q = memchr(sp1 + 1, '?', tlen);
	if (q != NULL) {
		tlen = (size_t)(q - sp1 - 1);
	}
	if (tlen != 8 || memcmp(sp1 + 1, "/metrics", 8) != 0) {
		answer_text(c, "404 Not Found", "", "not found: try /metrics\n",
		    head);
		return;
	}
	answer_metrics(c, head);
}

/* The end of the request head in C's input (a blank line), or NULL. */
static const char *
head_end(const struct client *c)
{
	for (size_t i = 1; i < c->inlen; i++) {
		if (c->in[i] == '\n' && (c->in[i - 1] == '\n' ||
		    (i >= 2 && c->in[i - 1] == '\r' && c->in[i - 2] == '\n'))) {
			return c->in + i;
		}
	}
	return NULL;
}

/* Answer the head read so far (whole, or cut by EOF or the size cap). */
static void
answer_head(struct client *c, bool whole)
{
	const char *nl = memchr(c->in, '\n', c->inlen);
	size_t len;

	if (!whole || nl == NULL) {
		answer_text(c, "400 Bad Request", "",
		    "bad request: no whole request head\n", false);
		return;
	}
	len = (size_t)(nl - c->in);
	if (len > 0 && c->in[len - 1] == '\r') {
		len--;
	}
	respond(c, c->in, len);
}

/* Write what the socket takes; when all is written, shut our side. */
static void
client_write(struct client *c)
{
	ssize_t n;

	while (c->outoff < c->outlen) {
		n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return;		/* wait for POLLOUT */
		}
		if (n <= 0) {
			client_close(c);
			return;
		}
		c->outoff += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	shutdown(c->fd, SHUT_WR);
	c->state = C_DRAIN;
}

/* Read what C sent: the request head, or (DRAIN) anything, dropped. */
static void
client_read(struct client *c)
{
	char sink[512];
	ssize_t n;

	if (c->state == C_DRAIN) {
		n = read(c->fd, sink, sizeof(sink));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			client_close(c);
		}
		return;
	}
	n = read(c->fd, c->in + c->inlen, AG_MHTTP_REQUEST_MAX - c->inlen);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		return;
	}
	if (n < 0 || (n == 0 && c->inlen == 0)) {
		client_close(c);
		return;
	}
	c->inlen += (size_t)n;
	if (n > 0 && head_end(c) != NULL) {
		answer_head(c, true);
	} else if (n == 0 || c->inlen == AG_MHTTP_REQUEST_MAX) {
		answer_head(c, false);
	} else {
		return;
	}
	if (c->state == C_WRITE) {
		client_write(c);
	}
}

/* Take the connections waiting, while there are free slots. */
static void
accept_some(struct ag_mhttp *h, uint64_t now)
{
	for (size_t i = 0; i < AG_MHTTP_CLIENTS; i++) {
		struct client *c = &h->c[i];
		int fd;

		if (c->state != C_FREE) {
			continue;
		}
		fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED) {
				ag_log_warning("metrics: accept: %s",
				    strerror(errno));
				poll(NULL, 0, 100);	/* e.g. out of descriptors */
			}
			return;
		}
		memset(c, 0, offsetof(struct client, in));
		c->fd = fd;
		c->state = C_READ;
		c->deadline = now + AG_MHTTP_DEADLINE_MS;
		c->inlen = 0;
	}
}

/* Fill PFD (room for 2 + AG_MHTTP_CLIENTS); *TIMEOUT: the nearest
 * deadline from NOW.  Returns the count; IDX[k] is the slot of pfd[k]. */
static nfds_t
poll_set(struct ag_mhttp *h, struct pollfd *pfd, size_t *idx, uint64_t now,
    int *timeout)
{
	nfds_t n = 2;
	bool room = false;

	*timeout = -1;
	pfd[0] = (struct pollfd){ .fd = h->wake[0], .events = POLLIN };
	for (size_t i = 0; i < AG_MHTTP_CLIENTS; i++) {
		struct client *c = &h->c[i];
		int left;

		if (c->state == C_FREE) {
			room = true;
			continue;
		}
		left = c->deadline > now ? (int)(c->deadline - now) : 0;
		if (*timeout < 0 || left < *timeout) {
			*timeout = left;
		}
		pfd[n] = (struct pollfd){ .fd = c->fd,
		    .events = c->state == C_WRITE ? POLLOUT : POLLIN };
		idx[n++] = i;
	}
	/* a full table leaves new connections in the listen queue */
	pfd[1] = (struct pollfd){ .fd = room ? h->lfd : -1, .events = POLLIN };
	return n;
}

static void *
serve(void *arg)
{
	struct ag_mhttp *h = arg;
	struct pollfd pfd[2 + AG_MHTTP_CLIENTS];
	size_t idx[2 + AG_MHTTP_CLIENTS];
	int timeout;
	nfds_t n;
	uint64_t now;

	for (;;) {
		now = now_ms();
		n = poll_set(h, pfd, idx, now, &timeout);
		if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
			ag_log_err("metrics: poll: %s", strerror(errno));
			poll(NULL, 0, 100);
			continue;
		}
		if (pfd[0].revents != 0) {
			return NULL;		/* ag_mhttp_free */
		}
		for (nfds_t k = 2; k < n; k++) {
			struct client *c = &h->c[idx[k]];

			if (pfd[k].revents == 0) {
				continue;
			}
			if (c->state == C_WRITE) {
				client_write(c);
			} else {
				client_read(c);
			}
		}
		now = now_ms();
		for (size_t i = 0; i < AG_MHTTP_CLIENTS; i++) {
			if (h->c[i].state != C_FREE && now >= h->c[i].deadline) {
				client_close(&h->c[i]);
			}
		}
		if (pfd[1].revents != 0) {
			accept_some(h, now);
		}
	}
}

int
ag_mhttp_start(struct ag_mhttp *h)
{
	for (size_t i = 0; i < AG_MHTTP_CLIENTS; i++) {
		h->c[i].fd = -1;
	}
	if (pthread_create(&h->tid, NULL, serve, h) != 0) {
		return -1;
	}
	h->running = true;
	return 0;
}

void
ag_mhttp_free(struct ag_mhttp *h)
{
	if (h == NULL) {
		return;
	}
	if (h->running) {
		char b = 0;

		while (write(h->wake[1], &b, 1) < 0 && errno == EINTR) {
			continue;
		}
		pthread_join(h->tid, NULL);
		for (size_t i = 0; i < AG_MHTTP_CLIENTS; i++) {
			if (h->c[i].state != C_FREE) {
				client_close(&h->c[i]);
			}
		}
	}
	if (h->lfd >= 0) {
		close(h->lfd);
	}
	if (h->wake[0] >= 0) {
		close(h->wake[0]);
		close(h->wake[1]);
	}
	free(h);
}
