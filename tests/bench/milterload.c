/*
 * milterload: a milter-protocol load generator (the MTA side).
 *
 * Speaks milter protocol 6 to any filter the way Postfix 3.x does
 * (src/milter/milter8.c): OPTNEG offering every action and step, the
 * filter's SMFIP_NO* and SMFIP_NR_* flags honoured, the default macro
 * sets (or the filter's setsymlist lists), connect, helo, MAIL with SIZE=,
 * RCPT, DATA, one packet per header field (folded lines joined by LF, the
 * one space after the colon removed unless SMFIP_HDR_LEADSPC), end of
 * headers, body chunks of at most 65535 bytes, end of message, every
 * modification reply counted until the final reply, ABORT after each
 * message, QUIT at the end of a connection.
 *
 * Design: -c worker threads, each driving one connection at a time with
 * blocking I/O (TCP_NODELAY, SO_RCVTIMEO/SO_SNDTIMEO for -t).  Packets
 * that need no reply (SMFIP_NR_*, skipped steps, macros) are gathered in
 * one output buffer and leave in one write with the next packet that
 * waits for a reply.  Replies are read through a buffer; a reply longer
 * than 1 MB, or malformed, is an error for that connection.  Message
 * files are read once and split into header fields and a CRLF body.
 * Latencies are kept per thread and sorted at the end.
 *
 * Usage and output: tests/bench/README.md ("milterload").
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Protocol constants (libmilter/mfdef.h, protocol version 6). */
#define ML_VERSION 6
#define ML_ALL_ACTIONS 0x1FFu
#define ML_ALL_STEPS 0x1FFFFFu
#define ML_CHUNK 65535		   /* MILTER_CHUNK_SIZE */
#define ML_MAX_REPLY (1024 * 1024) /* larger reply packet: error */
#define ML_FLUSH_AT (256 * 1024)   /* flush gathered packets past this */

#define P_NOCONNECT 0x1u
#define P_NOHELO 0x2u
#define P_NOMAIL 0x4u
#define P_NORCPT 0x8u
#define P_NOBODY 0x10u
#define P_NOHDRS 0x20u
#define P_NOEOH 0x40u
#define P_NR_HDR 0x80u
#define P_NODATA 0x200u
#define P_NR_CONN 0x1000u
#define P_NR_HELO 0x2000u
#define P_NR_MAIL 0x4000u
#define P_NR_RCPT 0x8000u
#define P_NR_DATA 0x10000u
#define P_NR_EOH 0x40000u
#define P_NR_BODY 0x80000u
#define P_HDR_LEADSPC 0x100000u

/* Macro stages as numbered in an OPTNEG symbol list (SMFIM_*). */
enum { ST_CONNECT, ST_HELO, ST_MAIL, ST_RCPT, ST_DATA, ST_EOM, ST_EOH, ST_N };

static const char *const default_macros[ST_N] = {
	"j {daemon_name} {daemon_addr} v _ {client_addr} {client_name}",
	"{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
	"i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} "
	"{mail_mailer}",
	"i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
	"i",
	"i",
	"i",
};

/* Final reply classes, in RESULT order. */
enum { F_ACCEPT, F_CONTINUE, F_TEMPFAIL, F_REJECT, F_DISCARD, F_REPLYCODE,
	F_OTHER, F_N };
static const char *const final_name[F_N] = { "accept", "continue",
	"tempfail", "reject", "discard", "replycode", "other" };

/* Modification replies counted. */
enum { M_ADDHEADER, M_INSHEADER, M_CHGHEADER, M_QUARANTINE, M_ADDRCPT,
	M_DELRCPT, M_REPLBODY, M_CHGFROM, M_PROGRESS, M_N };
static const char *const mod_name[M_N] = { "addheader", "insheader",
	"chgheader", "quarantine", "addrcpt", "delrcpt", "replbody", "chgfrom",
	"progress" };

struct hdr {
	char *name;
	char *value; /* after the colon, leading space kept, folds as LF */
};

struct msg {
	struct hdr *hdrs;
	size_t nhdrs;
	char *body; /* CRLF lines */
	size_t bodylen;
	size_t size; /* the whole message with CRLF line ends */
};

struct options {
	const char *sockspec;
	struct sockaddr_storage sa;
	socklen_t salen;
	int family;
	struct msg *msgs;
	size_t nmsgs;
	uint64_t count;
	double duration;
	int conc;
	int perconn;
	const char *sender;
	const char *rcpts[64];
	int nrcpts;
	uint64_t keys;
	int addr6;		/* -a is one IPv6 address */
	char addr6str[INET6_ADDRSTRLEN];
	uint32_t addrbase;	/* -a IPv4 network, host order */
	uint64_t addrsize;
	const char *helo;
	int quiet;
	int json;
	int timeout;
};

static struct options opt;

struct stats {
	uint64_t final[F_N];
	uint64_t mods[M_N];
	uint64_t r4xx, r5xx;
	uint64_t msgs, errors;
	double *lat; /* milliseconds */
	size_t nlat, caplat;
};

struct conn {
	int fd;
	uint32_t actions, proto;
	char *symlist[ST_N]; /* the filter's list, or NULL: the default */
	char *out;
	size_t outlen, outcap;
	char *in;
	size_t inoff, inlen, incap;
	int skip_hdr, skip_body;
	char err[256];
};

/* One reply packet; data points into the connection's input buffer. */
struct reply {
	char cmd;
	const char *data;
	size_t len;
};

/* Per-message values used by macros and commands. */
struct mctx {
	uint64_t no;
	char client[INET6_ADDRSTRLEN];
	char qid[24];
	char sender[512];	/* <bracketed>, for MAIL */
	char rcpt[512];		/* <bracketed>, for RCPT */
	char mail_addr[512];	/* without the brackets, for macros */
	char rcpt_addr[512];
	char underscore[600];
};

static uint64_t g_next;		/* next message number to hand out */
static uint64_t g_ok;		/* messages with a final reply */
static uint64_t g_errs;
static volatile int g_stop;
static double g_deadline;
static pthread_mutex_t g_errlock = PTHREAD_MUTEX_INITIALIZER;
static int g_errprinted;
static pthread_mutex_t g_donelock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_donecond = PTHREAD_COND_INITIALIZER;
static int g_running;

static void usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void conn_err(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
usage(const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		fputs("milterload: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fputs("usage: milterload -S SOCKET -m MSGFILE [-m MSGFILE ...] [-n COUNT | -d SECONDS]\n"
	      "       [-c CONC] [-p PERCONN] [-f SENDER] [-r RCPT ...] [-k KEYS] [-a ADDR[/LEN]]\n"
	      "       [-H HELO] [-t SECONDS] [-q] [-j]\n",
	    stderr);
	exit(2);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL) {
		fputs("milterload: out of memory\n", stderr);
		exit(1);
	}
	return p;
}

static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (p == NULL) {
		fputs("milterload: out of memory\n", stderr);
		exit(1);
	}
	return p;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- message files ------------------------------------------------- */

static void
buf_add(char **b, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n > *cap) {
		*cap = (*len + n) * 2 + 256;
		*b = xrealloc(*b, *cap);
	}
	memcpy(*b + *len, p, n);
	*len += n;
}

static int
is_field_name(const char *line, size_t len, size_t *colon)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)line[i];

		if (ch == ':') {
			break;
		}
		if (ch <= ' ' || ch >= 127) {
			return 0;
		}
	}
	if (i == 0 || i == len) {
		return 0;
	}
	*colon = i;
	return 1;
}

/* Read FILE and split it into header fields and a CRLF body. */
static void
msg_load(const char *path, struct msg *m)
{
	FILE *f = fopen(path, "rb");
	char *data = NULL, *p, *end;
	size_t len = 0, cap = 0, n, bcap = 0, hcap = 0;
	char chunk[65536];
	int inhead = 1;

	if (f == NULL) {
		fprintf(stderr, "milterload: cannot read %s: %s\n", path,
		    strerror(errno));
		exit(2);
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		buf_add(&data, &len, &cap, chunk, n);
	}
	fclose(f);
	memset(m, 0, sizeof(*m));
	p = data;
	end = data + len;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = (nl ? (size_t)(nl - p) : (size_t)(end - p));
		size_t colon;

		if (ll > 0 && p[ll - 1] == '\r') {
			ll--;
		}
		if (inhead && ll == 0) {
			inhead = 0;
		} else if (inhead && (p[0] == ' ' || p[0] == '\t') &&
		    m->nhdrs > 0) {
			/* a folded line: joined by LF, as Postfix sends it */
			struct hdr *h = &m->hdrs[m->nhdrs - 1];
			size_t vl = strlen(h->value);

			h->value = xrealloc(h->value, vl + ll + 2);
			h->value[vl] = '\n';
			memcpy(h->value + vl + 1, p, ll);
			h->value[vl + 1 + ll] = '\0';
			m->size += ll + 2;
		} else if (inhead && is_field_name(p, ll, &colon)) {
			struct hdr *h;
			size_t nl2 = colon;

			if (m->nhdrs == hcap) {
				hcap = hcap * 2 + 16;
				m->hdrs = xrealloc(m->hdrs, hcap * sizeof(*h));
			}
			h = &m->hdrs[m->nhdrs++];
			h->name = strndup(p, nl2);
			h->value = strndup(p + colon + 1, ll - colon - 1);
			if (h->name == NULL || h->value == NULL) {
				fputs("milterload: out of memory\n", stderr);
				exit(1);
			}
			m->size += ll + 2;
		} else {
			/* the body (a line that is no header field ends them) */
			if (inhead) {
				inhead = 0;
			}
			buf_add(&m->body, &m->bodylen, &bcap, p, ll);
			buf_add(&m->body, &m->bodylen, &bcap, "\r\n", 2);
		}
		p = nl ? nl + 1 : end;
	}
	m->size += 2 + m->bodylen;
	free(data);
	if (m->nhdrs == 0 && m->bodylen == 0) {
		fprintf(stderr, "milterload: %s: empty message\n", path);
		exit(2);
	}
}

/* ---- options ------------------------------------------------------- */

static void
parse_socket(const char *spec)
{
	const char *rest;
	char host[256];
	const char *at;
	long port;
	char *e;

	opt.sockspec = spec;
	memset(&opt.sa, 0, sizeof(opt.sa));
	if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0 ||
	    spec[0] == '/') {
		struct sockaddr_un *su = (struct sockaddr_un *)&opt.sa;

		rest = spec[0] == '/' ? spec : strchr(spec, ':') + 1;
		if (strlen(rest) >= sizeof(su->sun_path) || rest[0] == '\0') {
			usage("bad socket path in %s", spec);
		}
		su->sun_family = AF_UNIX;
		strcpy(su->sun_path, rest);
		opt.salen = sizeof(*su);
		opt.family = AF_UNIX;
		return;
	}
	if (strncmp(spec, "inet:", 5) == 0) {
		rest = spec + 5;
		opt.family = AF_INET;
	} else if (strncmp(spec, "inet6:", 6) == 0) {
		rest = spec + 6;
		opt.family = AF_INET6;
	} else {
		usage("bad socket %s (unix:PATH, inet:PORT@ADDR, inet6:PORT@ADDR)",
		    spec);
	}
	errno = 0;
	port = strtol(rest, &e, 10);
	if (errno || e == rest || port < 1 || port > 65535 ||
	    (*e != '@' && *e != '\0')) {
		usage("bad port in %s", spec);
	}
	at = *e == '@' ? e + 1 : (opt.family == AF_INET ? "127.0.0.1" : "::1");
	if (strlen(at) >= sizeof(host)) {
		usage("bad address in %s", spec);
	}
	strcpy(host, at);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (strchr(host, ':') != NULL) {
		opt.family = AF_INET6;
	}
	if (opt.family == AF_INET) {
		struct sockaddr_in *si = (struct sockaddr_in *)&opt.sa;

		si->sin_family = AF_INET;
		si->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &si->sin_addr) != 1) {
			usage("bad IPv4 address in %s (numeric only)", spec);
		}
		opt.salen = sizeof(*si);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&opt.sa;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
			usage("bad IPv6 address in %s (numeric only)", spec);
		}
		opt.salen = sizeof(*s6);
	}
}

static void
parse_addr(const char *s)
{
	char buf[64];
	char *slash;
	struct in_addr a;
	long len = 32;

	if (strlen(s) >= sizeof(buf)) {
		usage("bad -a %s", s);
	}
	strcpy(buf, s);
	if (strchr(buf, ':') != NULL && strchr(buf, '/') == NULL) {
		struct in6_addr a6;

		if (inet_pton(AF_INET6, buf, &a6) != 1) {
			usage("bad -a %s", s);
		}
		opt.addr6 = 1;
		inet_ntop(AF_INET6, &a6, opt.addr6str, sizeof(opt.addr6str));
		return;
	}
	if ((slash = strchr(buf, '/')) != NULL) {
		char *e;

		*slash = '\0';
		errno = 0;
		len = strtol(slash + 1, &e, 10);
		if (errno || *e || e == slash + 1 || len < 0 || len > 32) {
			usage("bad prefix length in -a %s", s);
		}
	}
	if (inet_pton(AF_INET, buf, &a) != 1) {
		usage("bad -a %s (an IPv4 address or CIDR, or an IPv6 address)",
		    s);
	}
	opt.addrsize = (uint64_t)1 << (32 - len);
	opt.addrbase = ntohl(a.s_addr) & (uint32_t)~(opt.addrsize - 1);
	opt.addr6 = 0;
}

static long
num_arg(const char *s, long lo, long hi, const char *what)
{
	char *e;
	long v;

	errno = 0;
	v = strtol(s, &e, 10);
	if (errno || e == s || *e || v < lo || v > hi) {
		usage("bad %s: %s", what, s);
	}
	return v;
}

static void
parse_args(int argc, char **argv)
{
	int ch;
	int have_n = 0;
	size_t cap = 0;

	opt.count = 1000;
	opt.conc = 10;
	opt.perconn = 1;
	opt.sender = "<alice@example.org>";
	opt.keys = 1;
	opt.addrbase = 0xC000020A; /* 192.0.2.10 */
	opt.addrsize = 1;
	opt.helo = "client.example.com";
	opt.timeout = 30;
	while ((ch = getopt(argc, argv, "S:m:n:d:c:p:f:r:k:a:H:qjt:h")) != -1) {
		switch (ch) {
		case 'S':
			parse_socket(optarg);
			break;
		case 'm':
			if (opt.nmsgs == cap) {
				cap = cap * 2 + 4;
				opt.msgs = xrealloc(opt.msgs,
				    cap * sizeof(*opt.msgs));
			}
			msg_load(optarg, &opt.msgs[opt.nmsgs++]);
			break;
		case 'n':
			opt.count = (uint64_t)num_arg(optarg, 1, LONG_MAX,
			    "-n COUNT");
			have_n = 1;
			break;
		case 'd': {
			char *e;

			errno = 0;
			opt.duration = strtod(optarg, &e);
			if (errno || e == optarg || *e || !(opt.duration > 0) ||
			    opt.duration > 1e7) {
				usage("bad -d SECONDS: %s", optarg);
			}
			break;
		}
		case 'c':
			opt.conc = (int)num_arg(optarg, 1, 10000, "-c CONC");
			break;
		case 'p':
			opt.perconn = (int)num_arg(optarg, 1, INT_MAX,
			    "-p PERCONN");
			break;
		case 'f':
			opt.sender = optarg;
			break;
		case 'r':
			if (opt.nrcpts == (int)(sizeof(opt.rcpts) /
			    sizeof(opt.rcpts[0]))) {
				usage("too many -r");
			}
			opt.rcpts[opt.nrcpts++] = optarg;
			break;
		case 'k':
			opt.keys = (uint64_t)num_arg(optarg, 1, LONG_MAX,
			    "-k KEYS");
			break;
		case 'a':
			parse_addr(optarg);
			break;
		case 'H':
			opt.helo = optarg;
			break;
		case 'q':
			opt.quiet = 1;
			break;
		case 'j':
			opt.json = 1;
			break;
		case 't':
			opt.timeout = (int)num_arg(optarg, 1, 86400,
			    "-t SECONDS");
			break;
		default:
			usage(NULL);
		}
	}
	if (optind != argc) {
		usage("unexpected argument %s", argv[optind]);
	}
	if (opt.sockspec == NULL) {
		usage("-S SOCKET is required");
	}
	if (opt.nmsgs == 0) {
		usage("-m MSGFILE is required");
	}
	if (have_n && opt.duration > 0) {
		usage("-n and -d exclude each other");
	}
	if (opt.nrcpts == 0) {
		opt.rcpts[opt.nrcpts++] = "<bob@example.net>";
	}
	if (strlen(opt.helo) > 255) {
		usage("-H too long");
	}
}

/* ---- errors -------------------------------------------------------- */

static void
conn_err(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

static void
report_error(uint64_t msgno, const char *text)
{
	pthread_mutex_lock(&g_errlock);
	if (g_errprinted < 10) {
		fprintf(stderr, "milterload: message %llu: %s\n",
		    (unsigned long long)msgno, text);
	} else if (g_errprinted == 10) {
		fputs("milterload: (further errors not shown)\n", stderr);
	}
	g_errprinted++;
	pthread_mutex_unlock(&g_errlock);
}

/* ---- I/O ----------------------------------------------------------- */

static void
out_reserve(struct conn *c, size_t n)
{
	if (c->outlen + n > c->outcap) {
		c->outcap = (c->outlen + n) * 2;
		c->out = xrealloc(c->out, c->outcap);
	}
}

static void
out_raw(struct conn *c, const void *p, size_t n)
{
	out_reserve(c, n);
	memcpy(c->out + c->outlen, p, n);
	c->outlen += n;
}

/* Start a packet of command CMD; its length is fixed by pkt_end. */
static size_t
pkt_begin(struct conn *c, char cmd)
{
	size_t at = c->outlen;

	out_reserve(c, 5);
	c->outlen += 4;
	c->out[c->outlen++] = cmd;
	return at;
}

static void
pkt_end(struct conn *c, size_t at)
{
	uint32_t n = htonl((uint32_t)(c->outlen - at - 4));

	memcpy(c->out + at, &n, 4);
}

static void
pkt_str(struct conn *c, const char *s)
{
	out_raw(c, s, strlen(s) + 1);
}

static int
flush_out(struct conn *c)
{
	size_t off = 0;

	while (off < c->outlen) {
		ssize_t n = send(c->fd, c->out + off, c->outlen - off,
		    MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			conn_err(c, "write: %s",
			    errno == EAGAIN ? "timed out" : strerror(errno));
			return -1;
		}
		off += (size_t)n;
	}
	c->outlen = 0;
	return 0;
}

/* Have at least NEED bytes of input buffered. */
static int
fill(struct conn *c, size_t need)
{
	while (c->inlen - c->inoff < need) {
		ssize_t n;

		if (c->inoff > 0) {
			memmove(c->in, c->in + c->inoff, c->inlen - c->inoff);
			c->inlen -= c->inoff;
			c->inoff = 0;
		}
		if (need > c->incap) {
			c->incap = need + 4096;
			c->in = xrealloc(c->in, c->incap);
		}
		n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
		if (n == 0) {
			conn_err(c, "filter closed the connection");
			return -1;
		}
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				conn_err(c, "no reply within %d s",
				    opt.timeout);
			} else {
				conn_err(c, "read: %s", strerror(errno));
			}
			return -1;
		}
		c->inlen += (size_t)n;
	}
	return 0;
}

/* Send what is gathered, then read one reply packet. */
static int
read_packet(struct conn *c, struct reply *r)
{
	uint32_t n;

	if (c->outlen > 0 && flush_out(c) < 0) {
		return -1;
	}
	if (fill(c, 4) < 0) {
		return -1;
	}
	memcpy(&n, c->in + c->inoff, 4);
	n = ntohl(n);
	if (n < 1 || n > ML_MAX_REPLY) {
		conn_err(c, "bad reply length %lu", (unsigned long)n);
		return -1;
	}
	if (fill(c, 4 + (size_t)n) < 0) {
		return -1;
	}
	r->cmd = c->in[c->inoff + 4];
	r->data = c->in + c->inoff + 5;
	r->len = n - 1;
	c->inoff += 4 + (size_t)n;
	return 0;
}

/* ---- macros -------------------------------------------------------- */

static const char *
macro_value(const struct mctx *m, const char *name, int stage)
{
	if (strcmp(name, "j") == 0 || strcmp(name, "{daemon_name}") == 0) {
		return "mx.test.invalid";
	}
	if (strcmp(name, "{daemon_addr}") == 0) {
		return "127.0.0.1";
	}
	if (strcmp(name, "{daemon_port}") == 0) {
		return "25";
	}
	if (strcmp(name, "v") == 0) {
		return "Postfix 3.7.11";
	}
	if (strcmp(name, "_") == 0) {
		return m->underscore;
	}
	if (strcmp(name, "{client_addr}") == 0) {
		return m->client;
	}
	if (strcmp(name, "{client_name}") == 0 ||
	    strcmp(name, "{client_ptr}") == 0) {
		return opt.helo;
	}
	if (strcmp(name, "i") == 0) {
		/* Postfix assigns the queue id with the first RCPT */
		return stage == ST_MAIL ? NULL : m->qid;
	}
	if (strcmp(name, "{mail_addr}") == 0) {
		return m->mail_addr;
	}
	if (strcmp(name, "{mail_mailer}") == 0 ||
	    strcmp(name, "{rcpt_mailer}") == 0) {
		return "smtp";
	}
	if (strcmp(name, "{mail_host}") == 0 ||
	    strcmp(name, "{rcpt_host}") == 0) {
		return "[127.0.0.1]:25";
	}
	if (strcmp(name, "{rcpt_addr}") == 0) {
		return m->rcpt_addr;
	}
	return NULL; /* undefined: left out, as Postfix does */
}

/* Gather the SMFIC_MACRO packet for STAGE before command CMD. */
static void
put_macros(struct conn *c, const struct mctx *m, int stage, char cmd)
{
	const char *list = c->symlist[stage] ? c->symlist[stage] :
	    default_macros[stage];
	size_t at = pkt_begin(c, 'D');
	const char *p = list;

	out_raw(c, &cmd, 1);
	while (*p) {
		char name[128];
		size_t n = strcspn(p, " ");
		const char *v;

		if (n > 0 && n < sizeof(name)) {
			memcpy(name, p, n);
			name[n] = '\0';
			v = macro_value(m, name, stage);
			if (v != NULL) {
				pkt_str(c, name);
				pkt_str(c, v);
			}
		}
		p += n;
		while (*p == ' ') {
			p++;
		}
	}
	pkt_end(c, at);
}

/* ---- the protocol -------------------------------------------------- */

enum { R_GO, R_FINAL, R_ERR };

struct result {
	int final;	/* F_* */
	int cls;	/* 4 or 5 for a 4xx/5xx reply, else 0 */
	int endconn;	/* the connection cannot carry another message */
};

/*
 * Classify reply R to a command that is not end of message: R_GO to go
 * on (continue, skip), R_FINAL with RES filled in, R_ERR.
 */
static int
classify(struct conn *c, const struct reply *r, struct result *res,
    int *skip)
{
	res->cls = 0;
	switch (r->cmd) {
	case 'c':
		return R_GO;
	case 's':
		if (skip != NULL) {
			*skip = 1;
		}
		return R_GO;
	case 'a':
		res->final = F_ACCEPT;
		return R_FINAL;
	case 'd':
		res->final = F_DISCARD;
		return R_FINAL;
	case 't':
		res->final = F_TEMPFAIL;
		res->cls = 4;
		return R_FINAL;
	case 'r':
		res->final = F_REJECT;
		res->cls = 5;
		return R_FINAL;
	case 'y':
		res->final = F_REPLYCODE;
		if (r->len < 3 || (r->data[0] != '4' && r->data[0] != '5')) {
			conn_err(c, "malformed reply code");
			return R_ERR;
		}
		res->cls = r->data[0] - '0';
		return R_FINAL;
	case '4':
	case 'f':
		res->final = F_OTHER;
		res->endconn = 1;
		return R_FINAL;
	default:
		conn_err(c, "unexpected reply '%c' (0x%02x)",
		    r->cmd >= ' ' && r->cmd < 127 ? r->cmd : '?',
		    (unsigned char)r->cmd);
		return R_ERR;
	}
}

/* A reply for a command sent unless NO flag; none if NR flag. */
static int
step(struct conn *c, uint32_t nr, struct result *res, int *skip)
{
	struct reply r;

	if (c->proto & nr) {
		return R_GO;
	}
	if (read_packet(c, &r) < 0) {
		return R_ERR;
	}
	while (r.cmd == 'p') {
		if (read_packet(c, &r) < 0) {
			return R_ERR;
		}
	}
	return classify(c, &r, res, skip);
}

static int
conn_open(struct conn *c)
{
	int one = 1;
	struct timeval tv;

	c->fd = socket(opt.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_err(c, "socket: %s", strerror(errno));
		return -1;
	}
	tv.tv_sec = opt.timeout;
	tv.tv_usec = 0;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (opt.family != AF_UNIX) {
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (connect(c->fd, (struct sockaddr *)&opt.sa, opt.salen) < 0) {
		conn_err(c, "cannot connect to %s: %s", opt.sockspec,
		    strerror(errno));
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	c->inoff = c->inlen = c->outlen = 0;
	c->skip_hdr = c->skip_body = 0;
	return 0;
}

static void
conn_close(struct conn *c)
{
	int i;

	if (c->fd >= 0) {
		close(c->fd);
	}
	c->fd = -1;
	for (i = 0; i < ST_N; i++) {
		free(c->symlist[i]);
		c->symlist[i] = NULL;
	}
}

/* OPTNEG: offer everything; keep the filter's flags and symbol lists. */
static int
negotiate(struct conn *c)
{
	uint32_t v[3] = { htonl(ML_VERSION), htonl(ML_ALL_ACTIONS),
		htonl(ML_ALL_STEPS) };
	size_t at = pkt_begin(c, 'O');
	struct reply r;
	size_t off;

	out_raw(c, v, sizeof(v));
	pkt_end(c, at);
	if (read_packet(c, &r) < 0) {
		return -1;
	}
	if (r.cmd != 'O' || r.len < 12) {
		conn_err(c, "bad OPTNEG reply");
		return -1;
	}
	memcpy(v, r.data, 12);
	if (ntohl(v[0]) < 2 || ntohl(v[0]) > ML_VERSION) {
		conn_err(c, "filter protocol version %lu",
		    (unsigned long)ntohl(v[0]));
		return -1;
	}
	c->actions = ntohl(v[1]);
	c->proto = ntohl(v[2]);
	for (off = 12; off + 4 < r.len;) {
		uint32_t where;
		const char *names = r.data + off + 4;
		const char *z = memchr(names, '\0', r.len - off - 4);

		memcpy(&where, r.data + off, 4);
		where = ntohl(where);
		if (z == NULL) {
			conn_err(c, "bad symbol list in OPTNEG reply");
			return -1;
		}
		if (where < ST_N) {
			free(c->symlist[where]);
			c->symlist[where] = strndup(names, (size_t)(z - names));
		}
		off = (size_t)(z - r.data) + 1;
	}
	return 0;
}

/* Substitute "%d" in TEMPLATE by NO mod -k, <bracketed>. */
static void
expand(char *dst, size_t size, const char *tmpl, uint64_t no)
{
	char num[24];
	size_t n = 0;
	const char *p;
	int br = tmpl[0] != '<';

	snprintf(num, sizeof(num), "%llu", (unsigned long long)(no % opt.keys));
	if (br) {
		dst[n++] = '<';
	}
	for (p = tmpl; *p && n + 24 < size; p++) {
		if (p[0] == '%' && p[1] == 'd') {
			memcpy(dst + n, num, strlen(num));
			n += strlen(num);
			p++;
		} else {
			dst[n++] = *p;
		}
	}
	if (br) {
		dst[n++] = '>';
	}
	dst[n] = '\0';
}

/* The address in <ADDR> without its brackets ({mail_addr}, {rcpt_addr}). */
static void
unbracket(char *dst, size_t size, const char *addr)
{
	size_t n = strlen(addr);

	if (n >= 2 && addr[0] == '<' && addr[n - 1] == '>') {
		addr++;
		n -= 2;
	}
	if (n >= size) {
		n = size - 1;
	}
	memcpy(dst, addr, n);
	dst[n] = '\0';
}

static void
mctx_init(struct mctx *m, uint64_t no, uint64_t connno)
{
	m->no = no;
	if (opt.addr6) {
		snprintf(m->client, sizeof(m->client), "%s", opt.addr6str);
	} else {
		struct in_addr a;

		a.s_addr = htonl(opt.addrbase + (uint32_t)(connno %
		    opt.addrsize));
		inet_ntop(AF_INET, &a, m->client, sizeof(m->client));
	}
	snprintf(m->underscore, sizeof(m->underscore), "%s [%s]", opt.helo,
	    m->client);
	snprintf(m->qid, sizeof(m->qid), "%llX",
	    (unsigned long long)(0x4000000000ULL + no));
}

/* Negotiate, connect and helo for a new connection; R_GO or R_FINAL. */
static int
session_start(struct conn *c, struct mctx *m, struct result *res)
{
	size_t at;
	uint16_t port = htons((uint16_t)(40000 + m->no % 20000));
	int rc;

	if (negotiate(c) < 0) {
		return R_ERR;
	}
	put_macros(c, m, ST_CONNECT, 'C');
	if (!(c->proto & P_NOCONNECT)) {
		at = pkt_begin(c, 'C');
		pkt_str(c, opt.helo);
		out_raw(c, opt.addr6 ? "6" : "4", 1);
		out_raw(c, &port, 2);
		pkt_str(c, m->client);
		pkt_end(c, at);
		rc = step(c, P_NR_CONN, res, NULL);
		if (rc != R_GO) {
			res->endconn = 1;
			return rc;
		}
	}
	put_macros(c, m, ST_HELO, 'H');
	if (!(c->proto & P_NOHELO)) {
		at = pkt_begin(c, 'H');
		pkt_str(c, opt.helo);
		pkt_end(c, at);
		rc = step(c, P_NR_HELO, res, NULL);
		if (rc != R_GO) {
			res->endconn = 1;
			return rc;
		}
	}
	return R_GO;
}

/* MAIL, RCPT, DATA. */
static int
envelope(struct conn *c, struct mctx *m, const struct msg *msg,
    struct result *res)
{
	char size[40];
	size_t at;
	int i, rc, ok = 0;
	struct result rr;

	expand(m->sender, sizeof(m->sender), opt.sender, m->no);
	unbracket(m->mail_addr, sizeof(m->mail_addr), m->sender);
	snprintf(size, sizeof(size), "SIZE=%zu", msg->size);
	put_macros(c, m, ST_MAIL, 'M');
	if (!(c->proto & P_NOMAIL)) {
		at = pkt_begin(c, 'M');
		pkt_str(c, m->sender);
		pkt_str(c, size);
		pkt_end(c, at);
		if ((rc = step(c, P_NR_MAIL, res, NULL)) != R_GO) {
			return rc;
		}
	}
	for (i = 0; i < opt.nrcpts; i++) {
		expand(m->rcpt, sizeof(m->rcpt), opt.rcpts[i], m->no);
		unbracket(m->rcpt_addr, sizeof(m->rcpt_addr), m->rcpt);
		put_macros(c, m, ST_RCPT, 'R');
		if (c->proto & P_NORCPT) {
			ok = 1;
			continue;
		}
		at = pkt_begin(c, 'R');
		pkt_str(c, m->rcpt);
		pkt_end(c, at);
		memset(&rr, 0, sizeof(rr));
		rc = step(c, P_NR_RCPT, &rr, NULL);
		if (rc == R_ERR) {
			return R_ERR;
		}
		if (rc == R_GO) {
			ok = 1;
		} else if (rr.final == F_ACCEPT || rr.final == F_DISCARD ||
		    rr.final == F_OTHER) {
			*res = rr; /* ends the message at once */
			return R_FINAL;
		} else {
			*res = rr; /* this recipient refused */
		}
	}
	if (!ok) {
		return R_FINAL;
	}
	put_macros(c, m, ST_DATA, 'T');
	if (!(c->proto & P_NODATA)) {
		at = pkt_begin(c, 'T');
		pkt_end(c, at);
		if ((rc = step(c, P_NR_DATA, res, NULL)) != R_GO) {
			return rc;
		}
	}
	return R_GO;
}

/* Header fields, end of headers, body chunks. */
static int
content(struct conn *c, struct mctx *m, const struct msg *msg,
    struct result *res)
{
	size_t i, at, off;
	int rc;

	c->skip_hdr = c->skip_body = 0;
	for (i = 0; i < msg->nhdrs && !(c->proto & P_NOHDRS) && !c->skip_hdr;
	     i++) {
		const char *v = msg->hdrs[i].value;

		if (!(c->proto & P_HDR_LEADSPC) && v[0] == ' ') {
			v++;
		}
		put_macros(c, m, ST_EOH, 'L');
		at = pkt_begin(c, 'L');
		pkt_str(c, msg->hdrs[i].name);
		pkt_str(c, v);
		pkt_end(c, at);
		if ((rc = step(c, P_NR_HDR, res, &c->skip_hdr)) != R_GO) {
			return rc;
		}
		if (c->outlen > ML_FLUSH_AT && flush_out(c) < 0) {
			return R_ERR;
		}
	}
	if (!(c->proto & P_NOEOH)) {
		put_macros(c, m, ST_EOH, 'N');
		at = pkt_begin(c, 'N');
		pkt_end(c, at);
		if ((rc = step(c, P_NR_EOH, res, NULL)) != R_GO) {
			return rc;
		}
	}
	if (c->proto & P_NOBODY) {
		return R_GO;
	}
	for (off = 0; off < msg->bodylen && !c->skip_body; off += ML_CHUNK) {
		size_t n = msg->bodylen - off > ML_CHUNK ? ML_CHUNK :
		    msg->bodylen - off;

		put_macros(c, m, ST_EOM, 'B');
		at = pkt_begin(c, 'B');
		out_raw(c, msg->body + off, n);
		pkt_end(c, at);
		if ((rc = step(c, P_NR_BODY, res, &c->skip_body)) != R_GO) {
			return rc;
		}
		if (c->outlen > ML_FLUSH_AT && flush_out(c) < 0) {
			return R_ERR;
		}
	}
	return R_GO;
}

/* End of message: count modifications until the final reply. */
static int
eom(struct conn *c, struct mctx *m, struct stats *st, struct result *res)
{
	size_t at;
	struct reply r;

	put_macros(c, m, ST_EOM, 'E');
	at = pkt_begin(c, 'E');
	pkt_end(c, at);
	for (;;) {
		int mod = -1;

		if (read_packet(c, &r) < 0) {
			return R_ERR;
		}
		switch (r.cmd) {
		case 'h': mod = M_ADDHEADER; break;
		case 'i': mod = M_INSHEADER; break;
		case 'm': mod = M_CHGHEADER; break;
		case 'q': mod = M_QUARANTINE; break;
		case '+': case '2': mod = M_ADDRCPT; break;
		case '-': mod = M_DELRCPT; break;
		case 'b': mod = M_REPLBODY; break;
		case 'e': mod = M_CHGFROM; break;
		case 'p': mod = M_PROGRESS; break;
		case 'c':
			res->final = F_CONTINUE;
			res->cls = 0;
			return R_FINAL;
		case 's':
			conn_err(c, "SMFIR_SKIP at end of message");
			return R_ERR;
		default:
			return classify(c, &r, res, NULL) == R_ERR ? R_ERR :
			    R_FINAL;
		}
		st->mods[mod]++;
	}
}

static void
record(struct stats *st, const struct result *res, double ms)
{
	st->final[res->final]++;
	if (res->cls == 4) {
		st->r4xx++;
	} else if (res->cls == 5) {
		st->r5xx++;
	}
	st->msgs++;
	if (st->nlat == st->caplat) {
		st->caplat = st->caplat * 2 + 1024;
		st->lat = xrealloc(st->lat, st->caplat * sizeof(double));
	}
	st->lat[st->nlat++] = ms;
	__atomic_add_fetch(&g_ok, 1, __ATOMIC_RELAXED);
}

/* The next message number to send, or UINT64_MAX when done. */
static uint64_t
take(void)
{
	uint64_t no;

	if (g_stop) {
		return UINT64_MAX;
	}
	if (opt.duration > 0) {
		if (now() >= g_deadline) {
			return UINT64_MAX;
		}
		return __atomic_fetch_add(&g_next, 1, __ATOMIC_RELAXED);
	}
	no = __atomic_fetch_add(&g_next, 1, __ATOMIC_RELAXED);
	return no < opt.count ? no : UINT64_MAX;
}

/* One message on connection C (opened here when C has none). */
static int
one_message(struct conn *c, struct stats *st, uint64_t no, uint64_t *connno)
{
	const struct msg *msg = &opt.msgs[no % opt.nmsgs];
	struct mctx m;
	struct result res;
	double t0 = now();
	int rc = R_GO;

	memset(&res, 0, sizeof(res));
	if (c->fd < 0) {
		*connno = no;
	}
	mctx_init(&m, no, *connno);
	if (c->fd < 0) {
		if (conn_open(c) < 0) {
			return -1;
		}
		rc = session_start(c, &m, &res);
	}
	if (rc == R_GO) {
		rc = envelope(c, &m, msg, &res);
	}
	if (rc == R_GO) {
		rc = content(c, &m, msg, &res);
	}
	if (rc == R_GO) {
		rc = eom(c, &m, st, &res);
	}
	if (rc == R_ERR) {
		return -1;
	}
	record(st, &res, (now() - t0) * 1000.0);
	return res.endconn ? 1 : 0;
}

static void *
worker(void *arg)
{
	struct stats *st = arg;
	struct conn c;
	uint64_t no, connno = 0;
	int onconn = 0;

	memset(&c, 0, sizeof(c));
	c.fd = -1;
	while ((no = take()) != UINT64_MAX) {
		int rc;

		if (c.fd >= 0) {
			/* Postfix ends each transaction with SMFIC_ABORT */
			size_t at = pkt_begin(&c, 'A');

			pkt_end(&c, at);
		}
		rc = one_message(&c, st, no, &connno);
		if (rc < 0) {
			st->errors++;
			__atomic_add_fetch(&g_errs, 1, __ATOMIC_RELAXED);
			report_error(no, c.err);
			if (c.fd < 0 && __atomic_load_n(&g_ok,
			    __ATOMIC_RELAXED) == 0) {
				g_stop = 1; /* nothing answers: stop */
			}
			conn_close(&c);
			onconn = 0;
			continue;
		}
		if (rc == 1 || ++onconn >= opt.perconn) {
			size_t at;

			if (rc == 0) {
				at = pkt_begin(&c, 'A');
				pkt_end(&c, at);
			}
			at = pkt_begin(&c, 'Q');
			pkt_end(&c, at);
			(void)flush_out(&c);
			conn_close(&c);
			onconn = 0;
		}
	}
	if (c.fd >= 0) {
		size_t at = pkt_begin(&c, 'A');

		pkt_end(&c, at);
		at = pkt_begin(&c, 'Q');
		pkt_end(&c, at);
		(void)flush_out(&c);
		conn_close(&c);
	}
	free(c.out);
	free(c.in);
	pthread_mutex_lock(&g_donelock);
	g_running--;
	pthread_cond_signal(&g_donecond);
	pthread_mutex_unlock(&g_donelock);
	return NULL;
}

/* ---- results ------------------------------------------------------- */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
pct(const double *v, size_t n, double q)
{
	size_t i;

	if (n == 0) {
		return 0;
	}
	i = (size_t)(q * (double)n + 0.999999);
	if (i < 1) {
		i = 1;
	}
	if (i > n) {
		i = n;
	}
	return v[i - 1];
}

static void
print_result(struct stats *all, double secs)
{
	double rate = secs > 0 ? all->msgs / secs : 0;
	double p50 = pct(all->lat, all->nlat, 0.50);
	double p90 = pct(all->lat, all->nlat, 0.90);
	double p99 = pct(all->lat, all->nlat, 0.99);
	double mx = all->nlat ? all->lat[all->nlat - 1] : 0;
	int i;

	if (opt.json) {
		printf("{\"msgs\":%llu,\"secs\":%.3f,\"rate\":%.1f,"
		       "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
		       "\"max_ms\":%.3f,\"replies\":{",
		    (unsigned long long)all->msgs, secs, rate, p50, p90, p99, mx);
		for (i = 0; i < F_N; i++) {
			printf("%s\"%s\":%llu", i ? "," : "", final_name[i],
			    (unsigned long long)all->final[i]);
		}
		printf("},\"r4xx\":%llu,\"r5xx\":%llu,\"mods\":{",
		    (unsigned long long)all->r4xx,
		    (unsigned long long)all->r5xx);
		for (i = 0; i < M_N; i++) {
			printf("%s\"%s\":%llu", i ? "," : "", mod_name[i],
			    (unsigned long long)all->mods[i]);
		}
		printf("},\"errors\":%llu}\n", (unsigned long long)all->errors);
		return;
	}
	printf("RESULT msgs=%llu secs=%.3f rate=%.1f p50=%.3f p90=%.3f "
	       "p99=%.3f max=%.3f",
	    (unsigned long long)all->msgs, secs, rate, p50, p90, p99, mx);
	for (i = 0; i < F_N; i++) {
		printf(" %s=%llu", final_name[i],
		    (unsigned long long)all->final[i]);
	}
	printf(" errors=%llu", (unsigned long long)all->errors);
	for (i = M_ADDHEADER; i <= M_QUARANTINE; i++) {
		printf(" %s=%llu", mod_name[i], (unsigned long long)all->mods[i]);
	}
	printf(" r4xx=%llu r5xx=%llu\n", (unsigned long long)all->r4xx,
	    (unsigned long long)all->r5xx);
}

static void
progress(double t0, uint64_t *last, double *tlast)
{
	uint64_t ok = __atomic_load_n(&g_ok, __ATOMIC_RELAXED);
	uint64_t errs = __atomic_load_n(&g_errs, __ATOMIC_RELAXED);
	double t = now();

	fprintf(stderr, "progress secs=%.1f msgs=%llu rate=%.1f errors=%llu\n",
	    t - t0, (unsigned long long)ok,
	    t > *tlast ? (ok - *last) / (t - *tlast) : 0.0,
	    (unsigned long long)errs);
	*last = ok;
	*tlast = t;
}

int
main(int argc, char **argv)
{
	pthread_t *tids;
	struct stats *st, all;
	pthread_attr_t attr;
	double t0, secs, tlast;
	uint64_t last = 0;
	int i, j;

	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	tids = xmalloc(sizeof(*tids) * (size_t)opt.conc);
	st = calloc((size_t)opt.conc, sizeof(*st));
	if (st == NULL) {
		usage("out of memory");
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	t0 = tlast = now();
	g_deadline = t0 + opt.duration;
	g_running = opt.conc;
	for (i = 0; i < opt.conc; i++) {
		if (pthread_create(&tids[i], &attr, worker, &st[i]) != 0) {
			fprintf(stderr, "milterload: cannot start thread %d\n",
			    i);
			exit(1);
		}
	}
	pthread_mutex_lock(&g_donelock);
	while (g_running > 0) {
		struct timespec ts;
		double next = tlast + 1.0;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&g_donecond, &g_donelock, &ts);
		if (!opt.quiet && g_running > 0 && now() >= next) {
			pthread_mutex_unlock(&g_donelock);
			progress(t0, &last, &tlast);
			pthread_mutex_lock(&g_donelock);
		}
	}
	pthread_mutex_unlock(&g_donelock);
	secs = now() - t0;
	memset(&all, 0, sizeof(all));
	for (i = 0; i < opt.conc; i++) {
		pthread_join(tids[i], NULL);
		for (j = 0; j < F_N; j++) {
			all.final[j] += st[i].final[j];
		}
		for (j = 0; j < M_N; j++) {
			all.mods[j] += st[i].mods[j];
		}
		all.r4xx += st[i].r4xx;
		all.r5xx += st[i].r5xx;
		all.msgs += st[i].msgs;
		all.errors += st[i].errors;
		if (st[i].nlat > 0) {
			all.lat = xrealloc(all.lat,
			    (all.nlat + st[i].nlat) * sizeof(double));
			memcpy(all.lat + all.nlat, st[i].lat,
			    st[i].nlat * sizeof(double));
			all.nlat += st[i].nlat;
		}
		free(st[i].lat);
	}
	if (all.nlat > 0) {
		qsort(all.lat, all.nlat, sizeof(double), cmp_double);
	}
	print_result(&all, secs);
	fflush(stdout);
	free(all.lat);
	free(st);
	free(tids);
	pthread_attr_destroy(&attr);
	return all.errors > 0 ? 1 : 0;
}
