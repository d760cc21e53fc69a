/*
 * dns.c - the daemon's one resolver, over libunbound.
 *
 * One struct ub_ctx per struct ag_dns, configured once in ag_dns_new:
 * forwarders (or /etc/resolv.conf), no DNSSEC validation (there is no
 * trust anchor), and a cache that honours TTLs.  ub_resolve() cannot be
 * given a timeout, so every query goes through the asynchronous API:
 * libunbound's own worker thread resolves (ub_ctx_async(ctx, 1)), and one
 * dispatcher thread owned by this module polls ub_fd() and calls
 * ub_process(), which runs dns_answer() for each finished query.  The
 * caller of ag_dns_query waits on the request's condition variable
 * (CLOCK_MONOTONIC) until its deadline, then gives the query up.
 *
 * Ownership: a request (struct dns_req) is shared by the waiter and the
 * callback and freed by whichever finishes with it last; see dns_wait()
 * for the race.  An answer is copied out of the ub_result into one
 * allocation (struct ag_dns_result, its record array, the bytes) that the
 * caller frees with ag_dns_result_free; the ub_result is freed in the
 * callback.
 *
 * Thread safety: everything after ag_dns_new may be called from any
 * thread, except ag_dns_free, which needs every query to have returned.
 * The only lock here, d->mu, guards the state of requests; counters are
 * atomics.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <unbound.h>

#include "dns.h"
#include "dnscache.h"
#include "log.h"
#include "metrics.h"

/* RFC 1035 2.3.4: 255 octets on the wire, so 253 characters in
 * presentation form without the trailing dot; labels 63 octets. */
#define AG_DNS_NAME_MAX 253
#define AG_DNS_LABEL_MAX 63

/* RFC 1035 4.1.1 RCODEs and 3.2.4 class IN; 3.2.1 TYPE is 16 bits. */
#define AG_DNS_RCODE_NOERROR 0
#define AG_DNS_RCODE_NXDOMAIN 3
#define AG_DNS_CLASS_IN 1
#define AG_DNS_TYPE_MAX 65535

#define AG_DNS_TIMEOUT_DEFAULT 5000	/* ms, when opts->timeout_ms is 0 */
#define AG_DNS_SERVERS_LEN_MAX 1024	/* bytes of the forwarder list */
#define AG_DNS_SERVERS_SEP " \t\r\n,"

struct ag_dns {
	struct ub_ctx *ctx;
	unsigned timeout_ms;
	pthread_mutex_t mu;		/* guards the requests' state */
	pthread_condattr_t cattr;	/* CLOCK_MONOTONIC, for requests */
	bool sync_ready;		/* mu and cattr initialised */
	int stop_pipe[2];		/* wakes the dispatcher to stop */
	pthread_t dispatcher;
	bool running;			/* dispatcher started */
	atomic_bool broken;		/* the dispatcher lost libunbound */
	struct ag_dns_cache *cache;	/* answers kept for their TTL */
	atomic_uint_fast64_t queries, timeouts, failures, cached;
};

/* One query in flight, shared by the waiter and dns_answer(). */
struct dns_req {
	struct ag_dns *d;
	int type;
	pthread_cond_t cond;
	/* under d->mu: */
	bool done;		/* dns_answer() filled st and res */
	bool abandoned;		/* the waiter left: dns_answer() frees */
	ag_status st;
	struct ag_dns_result *res;
};

/* Write a formatted message into ERR (which may be NULL). */
static void dns_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
dns_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}


/* Add V to *ACC; false if the sum would overflow. */
static bool
size_add(size_t *acc, size_t v)
{
	if (v > SIZE_MAX - *acc) {
		return false;
	}
	*acc += v;
	return true;
}

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t
ag_dns_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- forwarders and the libunbound context -------------------------- */

/* True if S is a decimal port number 1..65535 and nothing else. */
static bool
port_ok(const char *s)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 5) {
			return false;
		}
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	return i > 0 && v >= 1 && v <= 65535;
}

/* Check one forwarder, "ADDR" or "ADDR@PORT"; explain a bad one in ERR. */
static ag_status
fwd_check(const char *tok, char *err, size_t errlen)
{
	char addr[INET6_ADDRSTRLEN], esc[80];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *at = strchr(tok, '@');
	size_t alen = at != NULL ? (size_t)(at - tok) : strlen(tok);

	ag_log_escape(esc, sizeof(esc), tok);
	if (alen == 0 || alen >= sizeof(addr)) {
		dns_err(err, errlen, "DNS server \"%s\": not an IP address",
		    esc);
		return AG_INVALID;
	}
	memcpy(addr, tok, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, bin) != 1 &&
	    inet_pton(AF_INET6, addr, bin) != 1) {
		dns_err(err, errlen, "DNS server \"%s\": not an IP address",
		    esc);
		return AG_INVALID;
	}
	if (at != NULL && !port_ok(at + 1)) {
		dns_err(err, errlen, "DNS server \"%s\": bad port (1-65535)",
		    esc);
		return AG_INVALID;
	}
	return AG_OK;
}

/* Give SERVERS to libunbound as forwarders; *N gets how many there were. */
static ag_status
fwd_set(struct ag_dns *d, const char *servers, unsigned *n, char *err,
    size_t errlen)
{
	char buf[AG_DNS_SERVERS_LEN_MAX + 1];
	char *tok, *save = NULL;
	ag_status st;
	size_t len = strlen(servers);
	int rc;

	*n = 0;
	if (len > AG_DNS_SERVERS_LEN_MAX) {
		dns_err(err, errlen, "DNS server list longer than %d bytes",
		    AG_DNS_SERVERS_LEN_MAX);
		return AG_INVALID;
	}
	memcpy(buf, servers, len + 1);
	for (tok = strtok_r(buf, AG_DNS_SERVERS_SEP, &save); tok != NULL;
	    tok = strtok_r(NULL, AG_DNS_SERVERS_SEP, &save)) {
		st = fwd_check(tok, err, errlen);
		if (st != AG_OK) {
			return st;
		}
		rc = ub_ctx_set_fwd(d->ctx, tok);
		if (rc != 0) {
			dns_err(err, errlen, "DNS server %s: %s", tok,
			    ub_strerror(rc));
			return rc == UB_SYNTAX ? AG_INVALID : AG_PERMFAIL;
		}
		(*n)++;
	}
	return AG_OK;
}

/*
 * libunbound settings.  Queries only ever go to the forwarders (a forward
 * zone for "." without forward-first); the library already allows a
 * forwarder on localhost (do-not-query-localhost: no).  How a forwarder
 * that stops answering is handled is left to unbound, measured: each query
 * tempfails at our timeout for about 20 s, then the server is marked down
 * and queries fail at once until a probe gets through.  Lowering
 * infra-cache-max-rtt to our timeout marked a healthy forwarder down
 * after three timeouts on one unanswered name: not done.
 */
static const struct {
	const char *opt, *val;
} dns_ub_opts[] = {
	/* no trust anchor: the validator would only cost time */
	{ "module-config:", "iterator" },
	/* the library default is 16 ports: too few for a busy milter */
	{ "outgoing-range:", "256" },
	{ "num-queries-per-thread:", "1024" },
	/* forget a dead forwarder's record after a minute, not 15 */
	{ "infra-host-ttl:", "60" },
	/* the site's forwarder, not us, decides about RFC 1918 reverse zones */
	{ "unblock-lan-zones:", "yes" },
	{ "msg-cache-size:", "4m" },
	{ "rrset-cache-size:", "8m" },
};

/* Create and configure the libunbound context from SERVERS. */
static ag_status
dns_ctx_setup(struct ag_dns *d, const char *servers, char *err,
    size_t errlen)
{
	char eb[128];
	unsigned nfwd = 0;
	ag_status st;
	size_t i;
	int rc;

	d->ctx = ub_ctx_create();
	if (d->ctx == NULL) {
		dns_err(err, errlen, "cannot create the resolver: %s",
		    ag_strerror(errno, eb, sizeof(eb)));
		return AG_PERMFAIL;
	}
	for (i = 0; i < sizeof(dns_ub_opts) / sizeof(dns_ub_opts[0]); i++) {
		rc = ub_ctx_set_option(d->ctx, dns_ub_opts[i].opt,
		    dns_ub_opts[i].val);
		if (rc != 0) {
			dns_err(err, errlen, "resolver option %s %s: %s",
			    dns_ub_opts[i].opt, dns_ub_opts[i].val,
			    ub_strerror(rc));
			return AG_PERMFAIL;
		}
	}
	if (servers != NULL) {
		st = fwd_set(d, servers, &nfwd, err, errlen);
		if (st != AG_OK) {
			return st;
		}
	}
	if (nfwd == 0) {
		rc = ub_ctx_resolvconf(d->ctx, NULL);
		if (rc != 0) {
			dns_err(err, errlen, "cannot use /etc/resolv.conf: %s",
			    ub_strerror(rc));
			return AG_PERMFAIL;
		}
	}
	rc = ub_ctx_async(d->ctx, 1);
	if (rc != 0) {
		dns_err(err, errlen, "resolver thread: %s", ub_strerror(rc));
		return AG_PERMFAIL;
	}
	return AG_OK;
}

/* ---- the dispatcher thread ----------------------------------------- */

/* Deliver libunbound's answers (dns_answer runs here) until told to stop. */
static void *
dns_dispatch(void *arg)
{
	struct ag_dns *d = arg;
	struct pollfd pfd[2];
	char c, eb[128];
	int rc;

	pfd[0].fd = ub_fd(d->ctx);
	pfd[1].fd = d->stop_pipe[0];
	for (;;) {
		pfd[0].events = pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR) {
				continue;
			}
			ag_log_err("dns: poll: %s",
			    ag_strerror(errno, eb, sizeof(eb)));
			break;
		}
		if (pfd[1].revents != 0) {
			return NULL;
		}
		if (pfd[0].revents != 0) {
			rc = ub_process(d->ctx);
			if (rc != 0) {
				ag_log_err("dns: resolver stopped: %s",
				    ub_strerror(rc));
				break;
			}
		}
	}
	/* broken: queries fail at once from now on; wait to be stopped */
	atomic_store(&d->broken, true);
	while (read(d->stop_pipe[0], &c, 1) < 0 && errno == EINTR) {
		continue;
	}
	return NULL;
}

/* Make the stop pipe and start the dispatcher with all signals blocked. */
static ag_status
dns_dispatch_start(struct ag_dns *d, char *err, size_t errlen)
{
	char eb[128];
	sigset_t all, old;
	int rc;

	if (ub_fd(d->ctx) < 0) {
		dns_err(err, errlen, "resolver has no descriptor to poll");
		return AG_PERMFAIL;
	}
	if (pipe(d->stop_pipe) != 0) {
		dns_err(err, errlen, "pipe: %s", ag_strerror(errno, eb, sizeof(eb)));
		d->stop_pipe[0] = d->stop_pipe[1] = -1;
		return AG_PERMFAIL;
	}
	(void)fcntl(d->stop_pipe[0], F_SETFD, FD_CLOEXEC);
	(void)fcntl(d->stop_pipe[1], F_SETFD, FD_CLOEXEC);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&d->dispatcher, NULL, dns_dispatch, d);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		dns_err(err, errlen, "cannot start the DNS thread: %s",
		    ag_strerror(rc, eb, sizeof(eb)));
		return AG_PERMFAIL;
	}
	d->running = true;
	return AG_OK;
}

/* Initialise the lock and the monotonic condition attribute. */
static ag_status
dns_sync_setup(struct ag_dns *d, char *err, size_t errlen)
{
	if (pthread_mutex_init(&d->mu, NULL) != 0) {
		dns_err(err, errlen, "cannot create a mutex");
		return AG_PERMFAIL;
	}
	if (pthread_condattr_init(&d->cattr) != 0) {
		pthread_mutex_destroy(&d->mu);
		dns_err(err, errlen, "cannot create a condition attribute");
		return AG_PERMFAIL;
	}
	d->sync_ready = true;
	if (pthread_condattr_setclock(&d->cattr, CLOCK_MONOTONIC) != 0) {
		dns_err(err, errlen, "no monotonic clock for conditions");
		return AG_PERMFAIL;
	}
	return AG_OK;
}

/* Make a resolver from OPTS. */
ag_status
ag_dns_new(const struct ag_dns_opts *opts, struct ag_dns **out, char *err,
    size_t errlen)
{
	struct ag_dns *d;
	ag_status st;

	dns_err(err, errlen, "%s", "");
	if (out == NULL) {
		dns_err(err, errlen, "no place for the resolver");
		return AG_INVALID;
	}
	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		dns_err(err, errlen, "out of memory");
		return AG_NOMEM;
	}
	d->stop_pipe[0] = d->stop_pipe[1] = -1;
	d->timeout_ms = opts != NULL && opts->timeout_ms != 0 ?
	    opts->timeout_ms : AG_DNS_TIMEOUT_DEFAULT;
	atomic_init(&d->broken, false);
	atomic_init(&d->queries, 0);
	atomic_init(&d->timeouts, 0);
	atomic_init(&d->failures, 0);
	atomic_init(&d->cached, 0);
	if ((d->cache = ag_dns_cache_new()) == NULL) {
		dns_err(err, errlen, "out of memory");
		free(d);
		return AG_NOMEM;
	}
	st = dns_ctx_setup(d, opts != NULL ? opts->servers : NULL, err, errlen);
	if (st == AG_OK) {
		st = dns_sync_setup(d, err, errlen);
	}
	if (st == AG_OK) {
		st = dns_dispatch_start(d, err, errlen);
	}
	if (st != AG_OK) {
		ag_dns_free(d);
		return st;
	}
	*out = d;
	return AG_OK;
}

/* Stop the dispatcher, then libunbound; no query may be waiting. */
void
ag_dns_free(struct ag_dns *d)
{
	ssize_t w;

	if (d == NULL) {
		return;
	}
	if (d->running) {
		do {
			w = write(d->stop_pipe[1], "x", 1);
		} while (w < 0 && errno == EINTR);
		pthread_join(d->dispatcher, NULL);
	}
	/* after the join no callback can run: ub_ctx_delete stops the
	 * worker and drops the queries it still holds (all cancelled) */
	ub_ctx_delete(d->ctx);
	if (d->stop_pipe[0] >= 0) {
		close(d->stop_pipe[0]);
		close(d->stop_pipe[1]);
	}
	if (d->sync_ready) {
		pthread_condattr_destroy(&d->cattr);
		pthread_mutex_destroy(&d->mu);
	}
	ag_dns_cache_free(d->cache);
	free(d);
}

/* ---- local data ----------------------------------------------------- */

/* Serve RR (unbound local-data syntax) from memory. */
ag_status
ag_dns_add_local(struct ag_dns *d, const char *rr)
{
	int rc;

	if (d == NULL || rr == NULL) {
		return AG_INVALID;
	}
	/* libunbound answers UB_NOMEM for a syntax error too */
	rc = ub_ctx_data_add(d->ctx, rr);
	ag_dns_cache_clear(d->cache);	/* answers kept may be other now */
	return rc == 0 ? AG_OK : AG_INVALID;
}

/* Make ZONE a local zone of TYPE ("static", "transparent", ...). */
ag_status
ag_dns_add_local_zone(struct ag_dns *d, const char *zone, const char *type)
{
	int rc;

	if (d == NULL || zone == NULL || type == NULL) {
		return AG_INVALID;
	}
	rc = ub_ctx_zone_add(d->ctx, zone, type);
	ag_dns_cache_clear(d->cache);
	if (rc == 0) {
		return AG_OK;
	}
	return rc == UB_SYNTAX ? AG_INVALID : rc == UB_NOMEM ? AG_NOMEM :
	    AG_PERMFAIL;
}

/* ---- answers -------------------------------------------------------- */

/* Walk the strings of a TXT RDATA; their joined length in *JOINED. */
static bool
txt_scan(const uint8_t *p, size_t len, size_t *joined)
{
	size_t i = 0, total = 0, l;

	if (p == NULL || len == 0) {
		return false;	/* RFC 1035 3.3.14: one or more strings */
	}
	while (i < len) {
		l = p[i];
		if (l > len - i - 1) {
			return false;
		}
		total += l;
		i += 1 + l;
	}
	*joined = total;
	return true;
}

/* Join the strings of one TXT RDATA into OUT. */
ag_status
ag_dns_txt_join(const struct ag_dns_rr *rr, char *out, size_t outsz,
    size_t *len)
{
	size_t joined, i, l, o = 0;

	if (len != NULL) {
		*len = 0;
	}
	if (out == NULL || outsz == 0 || rr == NULL) {
		return AG_INVALID;
	}
	out[0] = '\0';
	if (!txt_scan(rr->data, rr->len, &joined) || joined > outsz - 1) {
		return AG_PERMFAIL;
	}
	for (i = 0; i < rr->len; i += 1 + l) {
		l = rr->data[i];
		memcpy(out + o, rr->data + i + 1, l);
		o += l;
	}
	out[o] = '\0';
	if (len != NULL) {
		*len = o;
	}
	return AG_OK;
}

/* Copy the first N records and the packet of UB into one allocation. */
static ag_status
dns_copy(const struct ub_result *ub, size_t n, struct ag_dns_result **out)
{
	struct ag_dns_result *r;
	size_t size = sizeof(*r), plen = 0, i, l;
	uint8_t *p;

	if (ub->answer_packet != NULL && ub->answer_len > 0) {
		plen = (size_t)ub->answer_len;
	}
	if (!size_add(&size, n * sizeof(struct ag_dns_rr)) ||
	    !size_add(&size, plen)) {
		return AG_PERMFAIL;
	}
	for (i = 0; i < n; i++) {
		if (ub->len[i] < 0 || !size_add(&size, (size_t)ub->len[i])) {
			return AG_PERMFAIL;
		}
	}
	r = malloc(size);
	if (r == NULL) {
		return AG_NOMEM;
	}
	r->rcode = ub->rcode;
	r->nxdomain = ub->nxdomain != 0 || ub->rcode == AG_DNS_RCODE_NXDOMAIN;
	r->n = n;
	r->ttl = ub->ttl > 0 ? (unsigned)ub->ttl : 0;
	r->rr = n > 0 ? (struct ag_dns_rr *)(r + 1) : NULL;
	p = (uint8_t *)(r + 1) + n * sizeof(struct ag_dns_rr);
	for (i = 0; i < n; i++) {
		l = (size_t)ub->len[i];
		memcpy(p, ub->data[i], l);
		r->rr[i].data = p;
		r->rr[i].len = l;
		p += l;
	}
	r->packet = plen > 0 ? p : NULL;
	r->packet_len = plen;
	if (plen > 0) {
		memcpy(p, ub->answer_packet, plen);
	}
	*out = r;
	return AG_OK;
}

/* Turn libunbound's answer into a status and (OK, NOTFOUND) a result. */
static ag_status
dns_convert(int type, int err, const struct ub_result *ub,
    struct ag_dns_result **out)
{
	size_t n = 0, joined, i;
	ag_status st;

	*out = NULL;
	if (err != 0 || ub == NULL) {
		return err == UB_NOMEM ? AG_NOMEM : AG_TEMPFAIL;
	}
	if (ub->nxdomain != 0 || ub->rcode == AG_DNS_RCODE_NXDOMAIN) {
		st = dns_copy(ub, 0, out);
		return st == AG_OK ? AG_NOTFOUND : st;
	}
	if (ub->rcode != AG_DNS_RCODE_NOERROR) {
		return AG_TEMPFAIL;	/* SERVFAIL, REFUSED, ... */
	}
	if (ub->havedata != 0 && ub->data != NULL && ub->len != NULL) {
		while (n <= AG_DNS_MAX_RR && ub->data[n] != NULL) {
			n++;
		}
	}
	if (n > AG_DNS_MAX_RR) {
		return AG_PERMFAIL;
	}
	for (i = 0; type == AG_DNS_TXT && i < n; i++) {
		if (ub->len[i] < 0 || !txt_scan((const uint8_t *)ub->data[i],
		    (size_t)ub->len[i], &joined) || joined > AG_DNS_TXT_MAX) {
			return AG_PERMFAIL;
		}
	}
	st = dns_copy(ub, n, out);
	if (st != AG_OK) {
		return st;
	}
	return n > 0 ? AG_OK : AG_NOTFOUND;
}

/* Free an answer; NULL is fine. */
void
ag_dns_result_free(struct ag_dns_result *r)
{
	free(r);
}

/* ---- queries -------------------------------------------------------- */

/* AG_OK if NAME is a usable domain name in presentation form. */
static ag_status
dns_name_check(const char *name)
{
	size_t len, i, label = 0;
	unsigned char c;

	if (name == NULL) {
		return AG_INVALID;
	}
	len = strnlen(name, AG_DNS_NAME_MAX + 2);
	if (len > 0 && name[len - 1] == '.') {
		len--;
	}
	if (len == 0 || len > AG_DNS_NAME_MAX) {
		return AG_INVALID;
	}
	for (i = 0; i < len; i++) {
		c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0) {
				return AG_INVALID;	/* empty label */
			}
			label = 0;
			continue;
		}
		/*
		 * controls and DEL; no escapes: names are literal.  A space is
		 * a legal octet in a label and SPF's %_ macro makes one.
		 */
		if (c < ' ' || c == 0x7f || c == '\\') {
			return AG_INVALID;
		}
		if (++label > AG_DNS_LABEL_MAX) {
			return AG_INVALID;
		}
	}
	return label > 0 ? AG_OK : AG_INVALID;
}

/* Free a request nobody else can reach any more. */
static void
dns_req_free(struct dns_req *req)
{
	pthread_cond_destroy(&req->cond);
	ag_dns_result_free(req->res);
	free(req);
}

/*
 * libunbound's callback, in the dispatcher thread (from ub_process):
 * hand the answer to the waiter, or free everything if it has gone.
 */
static void
dns_answer(void *arg, int err, struct ub_result *ub)
{
	struct dns_req *req = arg;
	struct ag_dns *d = req->d;
	struct ag_dns_result *res = NULL;
	ag_status st;

	st = dns_convert(req->type, err, ub, &res);
	ub_resolve_free(ub);
	pthread_mutex_lock(&d->mu);
	if (req->abandoned) {
		pthread_mutex_unlock(&d->mu);
		ag_dns_result_free(res);
		dns_req_free(req);
		return;
	}
	req->st = st;
	req->res = res;
	req->done = true;
	pthread_cond_signal(&req->cond);
	pthread_mutex_unlock(&d->mu);
}

/*
 * Give REQ up (called with d->mu held and REQ not done) and unlock.
 * Whoever finishes last frees REQ.  dns_answer() reads `abandoned' under
 * the same lock, so either it ran before us (then `done' was set, and
 * dns_wait took the answer even though its wait had timed out) or it
 * will see `abandoned' and free.  What is left is whether it will run at
 * all, which libunbound decides under its own lock (ctx->cfglock in
 * libunbound.c, 1.17): in threaded mode ub_cancel() only marks a query
 * still in its table and returns UB_NOERROR, and ub_process() takes the
 * query out of the table and drops a marked one without calling back.
 * So UB_NOERROR means dns_answer() will never run for REQ: we are last
 * and free.  UB_NOID means ub_process() has already taken the query out
 * and is about to call, is calling or has called dns_answer() in the
 * dispatcher: it is last and frees, and we must not touch REQ once
 * unlocked.  Query ids only grow, so a finished id is not reused before
 * 2^31 more queries.  ag_dns_free joins the dispatcher first, so any
 * callback already taken out of the table has run by then.
 */
static void
dns_abandon_locked(struct ag_dns *d, struct dns_req *req, int id)
{
	req->abandoned = true;
	pthread_mutex_unlock(&d->mu);
	if (ub_cancel(d->ctx, id) == UB_NOERROR) {
		dns_req_free(req);
	}
}

/* Wait for REQ until UNTIL (ms); *TIMEDOUT if it had to be given up. */
static ag_status
dns_wait(struct ag_dns *d, struct dns_req *req, int id, uint64_t until,
    struct ag_dns_result **out, bool *timedout)
{
	struct timespec ts;
	ag_status st;
	int rc = 0;

	ts.tv_sec = (time_t)(until / 1000u);
	ts.tv_nsec = (long)(until % 1000u) * 1000000L;
	pthread_mutex_lock(&d->mu);
	while (!req->done && rc == 0) {
		rc = pthread_cond_timedwait(&req->cond, &d->mu, &ts);
	}
	if (!req->done) {
		*timedout = true;
		dns_abandon_locked(d, req, id);
		return AG_TEMPFAIL;
	}
	pthread_mutex_unlock(&d->mu);
	st = req->st;
	*out = req->res;
	req->res = NULL;
	dns_req_free(req);
	return st;
}

/* Count ST in the statistics and return it. */
static ag_status
dns_count(struct ag_dns *d, ag_status st, bool timedout)
{
	if (timedout) {
		atomic_fetch_add_explicit(&d->timeouts, 1,
		    memory_order_relaxed);
		ag_metrics_dns_error(AG_MET_DNS_TIMEOUT);
	} else if (st == AG_TEMPFAIL || st == AG_PERMFAIL || st == AG_NOMEM) {
		atomic_fetch_add_explicit(&d->failures, 1,
		    memory_order_relaxed);
		ag_metrics_dns_error(st == AG_TEMPFAIL ? AG_MET_DNS_SERVFAIL :
		    st == AG_PERMFAIL ? AG_MET_DNS_MALFORMED : AG_MET_DNS_NOMEM);
	}
	return st;
}

/* Start the query of REQ, then wait for it until UNTIL. */
static ag_status
dns_run(struct ag_dns *d, struct dns_req *req, const char *name,
    uint64_t until, struct ag_dns_result **out, bool *timedout)
{
	int id = 0, rc;

	rc = ub_resolve_async(d->ctx, name, req->type, AG_DNS_CLASS_IN, req,
	    dns_answer, &id);
	if (rc != 0) {
		/* an id means libunbound holds the query: cancel it first */
		if (id != 0) {
			pthread_mutex_lock(&d->mu);
			dns_abandon_locked(d, req, id);
		} else {
			dns_req_free(req);
		}
		if (rc == UB_SYNTAX) {	/* a name libunbound refuses */
			return AG_INVALID;
		}
		return rc == UB_NOMEM ? AG_NOMEM : AG_TEMPFAIL;
	}
	return dns_wait(d, req, id, until, out, timedout);
}

#ifdef AG_FUZZING
int (*ag_dns_fuzz_answer)(const char *, int, struct ub_result **);

/* The fuzzer's answer, through the same conversion as libunbound's. */
static ag_status
dns_fuzz_query(struct ag_dns *d, const char *name, int type,
    struct ag_dns_result **out)
{
	struct ub_result *ub = NULL;
	int err;
	ag_status st;

	err = ag_dns_fuzz_answer(name, type, &ub);
	st = dns_convert(type, err, ub, out);
	ub_resolve_free(ub);
	return dns_count(d, st, false);
}
#endif

/* Look NAME of TYPE up before DEADLINE_MS (and the per-query timeout). */
ag_status
ag_dns_query(struct ag_dns *d, const char *name, int type,
    uint64_t deadline_ms, struct ag_dns_result **out)
{
	struct dns_req *req;
	uint64_t now, until, t0;
	bool timedout = false;
	ag_status st;

	if (out != NULL) {
		*out = NULL;
	}
	if (d == NULL || out == NULL || type < 1 || type > AG_DNS_TYPE_MAX ||
	    dns_name_check(name) != AG_OK) {
		return AG_INVALID;
	}
	atomic_fetch_add_explicit(&d->queries, 1, memory_order_relaxed);
	ag_metrics_dns_query();
#ifdef AG_FUZZING
	if (ag_dns_fuzz_answer != NULL) {
		return dns_fuzz_query(d, name, type, out);
	}
#endif
	if (atomic_load(&d->broken)) {
		return dns_count(d, AG_TEMPFAIL, false);
	}
	now = ag_dns_now_ms();
	if (ag_dns_cache_get(d->cache, name, type, now, &st, out)) {
		atomic_fetch_add_explicit(&d->cached, 1, memory_order_relaxed);
		ag_metrics_dns_cache_hit();
		return st;
	}
	until = now + d->timeout_ms;
	if (deadline_ms != 0 && deadline_ms < until) {
		until = deadline_ms;
	}
	if (until <= now) {
		return dns_count(d, AG_TEMPFAIL, true);
	}
	req = calloc(1, sizeof(*req));
	if (req == NULL) {
		return dns_count(d, AG_NOMEM, false);
	}
	if (pthread_cond_init(&req->cond, &d->cattr) != 0) {
		free(req);
		return dns_count(d, AG_NOMEM, false);
	}
	req->d = d;
	req->type = type;
	t0 = ag_metrics_clock_us();
	st = dns_run(d, req, name, until, out, &timedout);
	ag_metrics_dns_duration(ag_metrics_clock_us() - t0);
	if (st == AG_OK || st == AG_NOTFOUND) {
		ag_dns_cache_put(d->cache, name, type, ag_dns_now_ms(), st, *out);
	}
	return dns_count(d, st, timedout);
}

/* Read the counters. */
void
ag_dns_stats(struct ag_dns *d, struct ag_dns_stats *out)
{
	if (out == NULL) {
		return;
	}
	memset(out, 0, sizeof(*out));
	if (d == NULL) {
		return;
	}
	out->queries = atomic_load(&d->queries);
	out->timeouts = atomic_load(&d->timeouts);
	out->failures = atomic_load(&d->failures);
	out->cached = atomic_load(&d->cached);
}
