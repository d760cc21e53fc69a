/*
 * metrics_http.h - the MetricsListen endpoint: a small HTTP/1.0-1.1
 * responder in a thread of its own that answers GET and HEAD /metrics
 * with lib/metrics.c's text, and closes every connection after one
 * answer.
 *
 * Ownership: the handle owns the listening socket, the thread and every
 * client connection; ag_mhttp_free() stops the thread and closes them.
 * Thread safety: open, start and free from one thread (the main one).
 */
#ifndef AG_FILTER_METRICS_HTTP_H
#define AG_FILTER_METRICS_HTTP_H

#include <stddef.h>

/* A request must be whole within this many ms of its connect, and its
 * answer written within the same time; a client past it is dropped. */
#define AG_MHTTP_DEADLINE_MS 5000
/* Bytes of a request head (request line and header fields) we read. */
#define AG_MHTTP_REQUEST_MAX 8192
/* Connections served at once; more wait in the listen queue. */
#define AG_MHTTP_CLIENTS 8

struct ag_mhttp;

/*
 * Bind and listen on SPEC (a checked MetricsListen value).  At start-up,
 * before privileges are dropped: a port below 1024 then works.  NULL with
 * the reason in ERR.
 */
struct ag_mhttp *ag_mhttp_open(const char *spec, char *err, size_t errlen);

/* Start serving (the thread inherits the caller's signal mask); -1 when
 * the thread cannot be made. */
int ag_mhttp_start(struct ag_mhttp *h);

/* Stop the thread, close everything and free H (NULL is fine). */
void ag_mhttp_free(struct ag_mhttp *h);

#endif
