/*
 * verifybench.c - DKIM verifications per second through lib/dkim.c (the
 * daemon's verifier: libopendkim with our DNS hooks), next to the raw
 * OpenSSL verify.  Not part of `make check`: built by `make bench-micro`
 * (tests/bench/bench.mk) and run by tests/bench/run micro.
 *
 *   verifybench ZONEFILE SECONDS LABEL=MSGFILE ...
 *
 * ZONEFILE holds the key records as unbound local-data lines
 * ("sel._domainkey.example.com. 300 IN TXT \"v=DKIM1; ...\""); they are
 * served by the resolver's local data (lib/dns.c, ag_dns_add_local), so
 * no server is asked; anything else goes to 127.0.0.1@9, where nothing
 * answers.  Each MSGFILE is a signed message, read once (lib/msgfile.c)
 * into header fields and one body; each verification then feeds it as
 * the milter does: ag_dkim_msg_new, every header, end of headers, the
 * body, end of message, and checks that every signature passes.
 *
 * Raw lines, for the floor: EVP_DigestVerify (SHA-256 + RSA PKCS#1 v1.5)
 * of 400 bytes with an RSA-2048 key parsed once, and of a 32-byte digest
 * with an Ed25519 key parsed once; and both with the public key parsed
 * from DER (d2i_PUBKEY) before each verify, as libopendkim does for
 * every message.
 *
 * One thread pinned to CPU 0; each line runs SECONDS of CPU time in all,
 * in rounds taken in turn (the machine's speed drifts), median shown.
 * Output, one line each, for tests/bench/bench.py:
 *   RESULT name=LABEL cpu_rate=R wall_rate=W us=U
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "dkim.h"
#include "dns.h"
#include "log.h"
#include "msgfile.h"

#define ROUNDS 5	/* odd: the median is one of them */
#define MAX_MSGS 8
#define MAX_FIELDS 64

struct clocks {
	double wall, cpu;
};

static struct clocks
now(void)
{
	struct timespec w, c;

	clock_gettime(CLOCK_MONOTONIC, &w);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
	return (struct clocks){ (double)w.tv_sec + (double)w.tv_nsec / 1e9,
	    (double)c.tv_sec + (double)c.tv_nsec / 1e9 };
}

struct rate {
	double cpu, wall;
};

typedef int (*op_fn)(void *arg);

/* Run FN for SECONDS of CPU time. */
static struct rate
run(op_fn fn, void *arg, double seconds)
{
	struct clocks t0, t;
	unsigned long n = 0;

	t0 = now();
	do {
		if (fn(arg) != 0) {
			fprintf(stderr, "verifybench: operation failed\n");
			exit(1);
		}
		n++;
		t = now();
	} while (t.cpu - t0.cpu < seconds);
	return (struct rate){ (double)n / (t.cpu - t0.cpu),
	    (double)n / (t.wall - t0.wall) };
}

struct line {
	char name[64];
	op_fn fn;
	void *arg;
	struct rate r[ROUNDS];
	struct rate median;
};

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Every line for SECONDS in all, in ROUNDS turns; then the medians. */
static void
measure(struct line *l, size_t n, double seconds)
{
	for (size_t i = 0; i < n; i++) {
		(void)run(l[i].fn, l[i].arg, 0.05);
	}
	for (int k = 0; k < ROUNDS; k++) {
		for (size_t i = 0; i < n; i++) {
			l[i].r[k] = run(l[i].fn, l[i].arg, seconds / ROUNDS);
		}
	}
	for (size_t i = 0; i < n; i++) {
		double c[ROUNDS], w[ROUNDS];

		for (int k = 0; k < ROUNDS; k++) {
			c[k] = l[i].r[k].cpu;
			w[k] = l[i].r[k].wall;
		}
		qsort(c, ROUNDS, sizeof(c[0]), cmp_double);
		qsort(w, ROUNDS, sizeof(w[0]), cmp_double);
		l[i].median = (struct rate){ c[ROUNDS / 2], w[ROUNDS / 2] };
	}
}

/* ---- a message, read once --------------------------------------------- */

struct msg {
	char *name[MAX_FIELDS];
	char *value[MAX_FIELDS];
	size_t nfields;
	unsigned char *body;
	size_t body_len;
	size_t body_cap;
};

static struct ag_dkim *dkim;

static int
on_header(void *arg, const char *name, const char *value)
{
	struct msg *m = arg;

	if (m->nfields == MAX_FIELDS) {
		return 1;
	}
	m->name[m->nfields] = strdup(name);
	m->value[m->nfields] = strdup(value);
	m->nfields++;
	return 0;
}

static int
on_eoh(void *arg)
{
	(void)arg;
	return 0;
}

static int
on_body(void *arg, const unsigned char *buf, size_t len)
{
	struct msg *m = arg;

	if (m->body_len + len > m->body_cap) {
		m->body_cap = (m->body_len + len) * 2;
		m->body = realloc(m->body, m->body_cap);
		if (m->body == NULL) {
			return 1;
		}
	}
	memcpy(m->body + m->body_len, buf, len);
	m->body_len += len;
	return 0;
}

static int
msg_load(const char *path, struct msg *m)
{
	struct ag_msgfile_cb cb = { on_header, on_eoh, on_body, m };
	char err[256];
	FILE *fp = fopen(path, "rb");

	if (fp == NULL) {
		perror(path);
		return -1;
	}
	if (ag_msgfile_read(fp, &cb, err, sizeof(err)) != AG_OK) {
		fprintf(stderr, "%s: %s\n", path, err);
		fclose(fp);
		return -1;
	}
	fclose(fp);
	return 0;
}

/* One whole verification of M through lib/dkim.c; 0 when every signature
 * passes. */
static int
op_verify(void *arg)
{
	struct msg *m = arg;
	struct ag_dkim_msg *v;
	int rv = 0;
	size_t n;

	v = ag_dkim_msg_new(dkim, "bench", 0, ag_dns_now_ms() + 5000);
	if (v == NULL) {
		return -1;
	}
	for (size_t i = 0; i < m->nfields && rv == 0; i++) {
		rv = ag_dkim_header(v, m->name[i], m->value[i]) == AG_OK ? 0 : -1;
	}
	if (rv == 0 && (ag_dkim_eoh(v) != AG_OK ||
	    ag_dkim_body(v, m->body, m->body_len) != AG_OK ||
	    ag_dkim_eom(v) != AG_OK)) {
		rv = -1;
	}
	n = ag_dkim_count(v);
	if (rv == 0 && n == 0) {
		fprintf(stderr, "verifybench: no signature found\n");
		rv = -1;
	}
	for (size_t i = 0; rv == 0 && i < n; i++) {
		const struct ag_dkim_result *r = ag_dkim_get(v, i);

		if (r->result != AG_DKIM_PASS) {
			fprintf(stderr, "verifybench: signature %zu: %s (%s)\n",
			    i, ag_dkim_res_name(r->result), r->reason);
			rv = -1;
		}
	}
	ag_dkim_msg_free(v);
	return rv;
}

/* ---- raw OpenSSL ------------------------------------------------------- */

struct raw {
	EVP_PKEY *pk;
	unsigned char der[600];	/* the public key, DER (SubjectPublicKeyInfo) */
	int der_len;
	const EVP_MD *md;	/* NULL for Ed25519 */
	unsigned char data[400];
	size_t data_len;
	unsigned char sig[512];
	size_t sig_len;
};

static int
op_raw_verify(void *arg)
{
	struct raw *r = arg;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = c != NULL &&
	    EVP_DigestVerifyInit(c, NULL, r->md, NULL, r->pk) == 1 &&
	    EVP_DigestVerify(c, r->sig, r->sig_len, r->data, r->data_len) == 1;

	EVP_MD_CTX_free(c);
	return ok ? 0 : -1;
}

/* The public key parsed from DER first, as a verifier that fetches the
 * key per message does (libopendkim: d2i_PUBKEY of the p= value). */
static int
op_parse_verify(void *arg)
{
	struct raw *r = arg;
	const unsigned char *p = r->der;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, r->der_len);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = pk != NULL && c != NULL &&
	    EVP_DigestVerifyInit(c, NULL, r->md, NULL, pk) == 1 &&
	    EVP_DigestVerify(c, r->sig, r->sig_len, r->data, r->data_len) == 1;

	EVP_MD_CTX_free(c);
	EVP_PKEY_free(pk);
	return ok ? 0 : -1;
}

static int
raw_make(struct raw *r, int type, const EVP_MD *md, size_t data_len)
{
	EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(type, NULL);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok;

	r->pk = NULL;
	r->md = md;
	r->data_len = data_len;
	memset(r->data, 'h', sizeof(r->data));
	r->sig_len = sizeof(r->sig);
	ok = kc != NULL && c != NULL && EVP_PKEY_keygen_init(kc) == 1 &&
	    (type != EVP_PKEY_RSA ||
	    EVP_PKEY_CTX_set_rsa_keygen_bits(kc, 2048) == 1) &&
	    EVP_PKEY_keygen(kc, &r->pk) == 1 &&
	    EVP_DigestSignInit(c, NULL, md, NULL, r->pk) == 1 &&
	    EVP_DigestSign(c, r->sig, &r->sig_len, r->data, r->data_len) == 1;
	EVP_PKEY_CTX_free(kc);
	EVP_MD_CTX_free(c);
	if (ok) {
		unsigned char *p = r->der;

		ok = i2d_PUBKEY(r->pk, NULL) <= (int)sizeof(r->der) &&
		    (r->der_len = i2d_PUBKEY(r->pk, &p)) > 0;
	}
	return ok ? 0 : -1;
}

/* ---- set-up ------------------------------------------------------------ */

static struct ag_dns *
resolver(const char *zonefile)
{
	struct ag_dns_opts o = { "127.0.0.1@9", 500 };
	struct ag_dns *dns;
	char err[256], line[4096];
	FILE *fp;

	if (ag_dns_new(&o, &dns, err, sizeof(err)) != AG_OK) {
		fprintf(stderr, "verifybench: resolver: %s\n", err);
		return NULL;
	}
	fp = fopen(zonefile, "r");
	if (fp == NULL) {
		perror(zonefile);
		return NULL;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#') {
			continue;
		}
		if (ag_dns_add_local(dns, line) != AG_OK) {
			fprintf(stderr, "verifybench: local data refused: "
			    "%.80s\n", line);
			fclose(fp);
			return NULL;
		}
	}
	fclose(fp);
	return dns;
}

int
main(int argc, char **argv)
{
	static struct msg msgs[MAX_MSGS];
	struct line lines[MAX_MSGS + 4];
	struct raw rsa, ed;
	struct ag_dns *dns;
	cpu_set_t cpus;
	double seconds;
	char err[256];
	size_t n = 0;

	if (argc < 4 || argc - 3 > MAX_MSGS) {
		fprintf(stderr, "usage: verifybench ZONEFILE SECONDS "
		    "LABEL=MSGFILE ...\n");
		return 2;
	}
	seconds = atof(argv[2]);
	ag_log_open("verifybench", LOG_MAIL, 0);
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus) != 0) {
		perror("sched_setaffinity (running unpinned)");
	}
	dns = resolver(argv[1]);
	if (dns == NULL) {
		return 1;
	}
	if (ag_dkim_new(dns, &dkim, err, sizeof(err)) != AG_OK) {
		fprintf(stderr, "verifybench: dkim: %s\n", err);
		return 1;
	}
	for (int i = 3; i < argc; i++, n++) {
		char *eq = strchr(argv[i], '=');

		if (eq == NULL || msg_load(eq + 1, &msgs[n]) != 0) {
			fprintf(stderr, "verifybench: bad argument %s\n",
			    argv[i]);
			return 2;
		}
		snprintf(lines[n].name, sizeof(lines[n].name), "%.*s",
		    (int)(eq - argv[i]), argv[i]);
		lines[n].fn = op_verify;
		lines[n].arg = &msgs[n];
		if (op_verify(&msgs[n]) != 0) {
			fprintf(stderr, "verifybench: %s does not verify\n",
			    eq + 1);
			return 1;
		}
	}
	if (raw_make(&rsa, EVP_PKEY_RSA, EVP_sha256(), 400) != 0 ||
	    raw_make(&ed, EVP_PKEY_ED25519, NULL, 32) != 0) {
		fprintf(stderr, "verifybench: cannot make raw keys\n");
		return 1;
	}
	snprintf(lines[n].name, sizeof(lines[n].name), "raw-rsa2048");
	lines[n].fn = op_raw_verify;
	lines[n++].arg = &rsa;
	snprintf(lines[n].name, sizeof(lines[n].name), "raw-ed25519");
	lines[n].fn = op_raw_verify;
	lines[n++].arg = &ed;
	snprintf(lines[n].name, sizeof(lines[n].name), "parse-rsa2048");
	lines[n].fn = op_parse_verify;
	lines[n++].arg = &rsa;
	snprintf(lines[n].name, sizeof(lines[n].name), "parse-ed25519");
	lines[n].fn = op_parse_verify;
	lines[n++].arg = &ed;
	measure(lines, n, seconds);
	for (size_t i = 0; i < n; i++) {
		printf("RESULT name=%s cpu_rate=%.1f wall_rate=%.1f us=%.2f\n",
		    lines[i].name, lines[i].median.cpu, lines[i].median.wall,
		    1e6 / lines[i].median.cpu);
	}
	ag_dkim_free(dkim);
	ag_dns_free(dns);
	EVP_PKEY_free(rsa.pk);
	EVP_PKEY_free(ed.pk);
	return 0;
}
