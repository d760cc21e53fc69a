/*
 * signbench.c - DKIM signatures per second through lib/dkimsign.c, next
 * to the raw crypto.  Not part of `make check`: build and run by hand as
 * tests/bench/README.md says.
 *
 *   signbench [SECONDS [MSGBYTES]] [-s]
 *
 * On one thread (pinned to CPU 0), each for SECONDS (default 3) in nine
 * rounds taken in turn (the median is shown: the VM's speed drifts):
 *   - ag_sign_msg: a whole message of about MSGBYTES (default 5,120:
 *     twelve header fields and a body of text lines) signed with
 *     RSA-2048, with Ed25519, and with both at once (relaxed/relaxed,
 *     the default h= list);
 *   - raw: the signature alone with a key parsed once (RSA: PKCS#1 v1.5
 *     on a SHA-256 digest; Ed25519: EVP_DigestSign() of the 32-byte
 *     digest, RFC 8463), the floor for the lines above;
 *   - key parse: PEM_read_bio_PrivateKey() of the key, and parse + sign:
 *     both, the key used once and freed: what signing through
 *     libopendkim cost per message (dkim_sign() takes the key as PEM
 *     text and parses it again for every message), kept for comparison.
 * Rates are per CPU second of the process (CLOCK_PROCESS_CPUTIME_ID), so
 * that other load on the machine counts less; wall-clock rates are shown
 * too.  -s also runs `openssl speed rsa2048 ed25519` for comparison.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "dkimsign.h"

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

/* The result of one run: operations per CPU second and per second. */
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
		for (int i = 0; i < 5; i++, n++) {
			if (fn(arg) != 0) {
				fprintf(stderr, "operation failed\n");
				exit(1);
			}
		}
		t = now();
	} while (t.cpu - t0.cpu < seconds);
	return (struct rate){ (double)n / (t.cpu - t0.cpu),
	    (double)n / (t.wall - t0.wall) };
}

#define ROUNDS 9	/* odd: the median is one of them */

/* One line of the table: an operation and its rate in each round. */
struct line {
	const char *what;
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

/* Run every line for SECONDS in all, in ROUNDS turns taken in a round
 * robin, so that the machine's changes of speed (a shared VM) touch every
 * line alike; then the median of each. */
static void
measure(struct line *l, size_t n, double seconds)
{
	for (size_t i = 0; i < n; i++) {
		(void)run(l[i].fn, l[i].arg, 0.05);	/* warm up */
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

/* ---- the message --------------------------------------------------------- */

struct field {
	const char *name;
	char *value;
};

static struct field fields[12];
static size_t nfields;
static char *body;
static size_t body_len;

/* A message of about BYTES: twelve fields, then lines of text. */
static void
message_make(size_t bytes)
{
	static const char *const f[][2] = {
		{ "Received", " from client.example.net "
		  "(client.example.net [192.0.2.10])\n\tby mx.example.com "
		  "(Postfix) with ESMTPSA id 4XyZ1k2Lmn;\n\t"
		  "Sat, 28 Nov 2026 12:00:00 +0000 (UTC)" },
		{ "From", " Alice Example <alice@example.com>" },
		{ "To", " Bob Example <bob@example.org>, Carol "
		  "<carol@example.org>" },
		{ "Cc", " Dave <dave@example.net>" },
		{ "Subject", " Quarterly report: figures, notes and the next "
		  "steps for the project" },
		{ "Date", " Sat, 28 Nov 2026 12:00:00 +0000" },
		{ "Message-ID", " <20261128120000.4XyZ1k2Lmn@example.com>" },
		{ "MIME-Version", " 1.0" },
		{ "Content-Type", " text/plain; charset=utf-8; format=flowed" },
		{ "Content-Transfer-Encoding", " 8bit" },
		{ "User-Agent", " Mutt/2.2.9 (2022-11-12)" },
		{ "List-Unsubscribe", " <mailto:unsubscribe@example.com>" },
	};
	static const char line[] = "The quick brown fox jumps over the lazy "
	    "dog, and the figures for the quarter follow below.\r\n";
	size_t hbytes = 0;

	nfields = sizeof(f) / sizeof(f[0]);
	for (size_t i = 0; i < nfields; i++) {
		fields[i].name = f[i][0];
		fields[i].value = strdup(f[i][1]);
		hbytes += strlen(f[i][0]) + strlen(f[i][1]) + 3;
	}
	body_len = bytes > hbytes + 2 ? bytes - hbytes - 2 : sizeof(line) - 1;
	body = malloc(body_len + 1);
	if (body == NULL) {
		exit(1);
	}
	for (size_t o = 0; o < body_len; o += sizeof(line) - 1) {
		size_t n = body_len - o < sizeof(line) - 1 ? body_len - o :
		    sizeof(line) - 1;

		memcpy(body + o, line, n);
	}
	/* end in CRLF, as over SMTP */
	body[body_len - 2] = '\r';
	body[body_len - 1] = '\n';
	printf("message: %zu header bytes in %zu fields, %zu body bytes\n",
	    hbytes, nfields, body_len);
}

/* ---- the runs ------------------------------------------------------------ */

struct sign_run {
	struct ag_signer *s;
	const struct ag_sign_key *keys[2];
	struct ag_sign_params p[2];
	size_t n;
};

static int
op_sign(void *arg)
{
	struct sign_run *r = arg;
	struct ag_sign_msg *m;
	char err[256], *values[2];

	m = ag_sign_msg_new(r->s, "bench", r->keys, r->p, r->n, err,
	    sizeof(err));
	if (m == NULL) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	for (size_t i = 0; i < nfields; i++) {
		if (ag_sign_header(m, fields[i].name, fields[i].value) !=
		    AG_OK) {
			return -1;
		}
	}
	/* the body in two chunks, as an MTA might pass it */
	if (ag_sign_eoh(m) != AG_OK ||
	    ag_sign_body(m, (unsigned char *)body, body_len / 2) != AG_OK ||
	    ag_sign_body(m, (unsigned char *)body + body_len / 2,
	    body_len - body_len / 2) != AG_OK ||
	    ag_sign_eom(m, values, err, sizeof(err)) != AG_OK) {
		fprintf(stderr, "%s\n", err);
		ag_sign_msg_free(m);
		return -1;
	}
	for (size_t i = 0; i < r->n; i++) {
		free(values[i]);
	}
	ag_sign_msg_free(m);
	return 0;
}

struct raw_run {
	EVP_PKEY *pk;
	unsigned char digest[SHA256_DIGEST_LENGTH];
	char *pem;
};

static int
op_raw_rsa(void *arg)
{
	struct raw_run *r = arg;
	unsigned char sig[1024];
	size_t len = sizeof(sig);
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(r->pk, NULL);
	int ok = c != NULL && EVP_PKEY_sign_init(c) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1 &&
	    EVP_PKEY_sign(c, sig, &len, r->digest, sizeof(r->digest)) == 1;

	EVP_PKEY_CTX_free(c);
	return ok ? 0 : -1;
}

static int
op_raw_ed25519(void *arg)
{
	struct raw_run *r = arg;
	unsigned char sig[64];
	size_t len = sizeof(sig);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = c != NULL &&
	    EVP_DigestSignInit(c, NULL, NULL, NULL, r->pk) == 1 &&
	    EVP_DigestSign(c, sig, &len, r->digest, sizeof(r->digest)) == 1;

	EVP_MD_CTX_free(c);
	return ok ? 0 : -1;
}

/* Parse the key, sign once with it, free it: what libopendkim does for
 * every message (the first signature with a key also sets up its
 * Montgomery and blinding values). */
static int
op_fresh(void *arg)
{
	struct raw_run *r = arg;
	struct raw_run fresh = *r;
	BIO *b = BIO_new_mem_buf(r->pem, -1);
	int ret;

	fresh.pk = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) :
	    NULL;
	BIO_free(b);
	if (fresh.pk == NULL) {
		return -1;
	}
	ret = EVP_PKEY_get_base_id(fresh.pk) == EVP_PKEY_RSA ?
	    op_raw_rsa(&fresh) : op_raw_ed25519(&fresh);
	EVP_PKEY_free(fresh.pk);
	return ret;
}

static int
op_parse(void *arg)
{
	struct raw_run *r = arg;
	BIO *b = BIO_new_mem_buf(r->pem, -1);
	EVP_PKEY *pk = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL,
	    NULL) : NULL;

	BIO_free(b);
	EVP_PKEY_free(pk);
	return pk != NULL ? 0 : -1;
}

/* ---- keys ---------------------------------------------------------------- */

static char dir[64];

/* A new key of TYPE written to DIR/NAME (mode 0600) and loaded; its PEM
 * into *PEM and the EVP_PKEY into *PK. */
static struct ag_sign_key *
key_make(const char *type, const char *name, enum ag_sign_alg alg,
    EVP_PKEY **pk, char **pem)
{
	char path[128], err[256];
	struct ag_sign_key *k;
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	long len;
	FILE *fp;

	*pk = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
	    (size_t)2048) : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (*pk == NULL || b == NULL || PEM_write_bio_PrivateKey(b, *pk, NULL,
	    NULL, 0, NULL, NULL) != 1) {
		fprintf(stderr, "cannot make a %s key\n", type);
		exit(1);
	}
	len = BIO_get_mem_data(b, &data);
	*pem = strndup(data, (size_t)len);
	BIO_free(b);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	if (fp == NULL || chmod(path, 0600) != 0 ||
	    fwrite(*pem, 1, strlen(*pem), fp) != strlen(*pem) || fclose(fp)) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(1);
	}
	if (ag_sign_key_load(path, alg, &k, err, sizeof(err)) != AG_OK) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	unlink(path);
	return k;
}

int
main(int argc, char **argv)
{
	double seconds = 3;
	size_t bytes = 5120;
	int speed = 0, pos = 0;
	struct ag_sign_key *krsa, *ked;
	struct raw_run rr = { 0 }, re = { 0 };
	struct sign_run s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
	char err[256];
	cpu_set_t cpus;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-s") == 0) {
			speed = 1;
		} else if (pos++ == 0) {
			seconds = atof(argv[i]);
		} else {
			bytes = (size_t)strtoul(argv[i], NULL, 10);
		}
	}
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus) != 0) {
		perror("sched_setaffinity (running unpinned)");
	}
	snprintf(dir, sizeof(dir), "/tmp/signbench.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	krsa = key_make("RSA", "rsa.pem", AG_SIGN_RSA_SHA256, &rr.pk, &rr.pem);
	ked = key_make("ED25519", "ed.pem", AG_SIGN_ED25519_SHA256, &re.pk,
	    &re.pem);
	rmdir(dir);
	SHA256((const unsigned char *)"a header hash", 13, rr.digest);
	memcpy(re.digest, rr.digest, sizeof(re.digest));
	message_make(bytes);
	if (ag_signer_new(&s1.s, err, sizeof(err)) != AG_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	s3.s = s2.s = s1.s;
	s1.keys[0] = krsa;
	s1.p[0] = (struct ag_sign_params){ "example.com", "rsa",
	    AG_SIGN_RSA_SHA256, false, false, NULL, 0 };
	s1.n = 1;
	s2.keys[0] = ked;
	s2.p[0] = (struct ag_sign_params){ "example.com", "ed",
	    AG_SIGN_ED25519_SHA256, false, false, NULL, 0 };
	s2.n = 1;
	s3.keys[0] = krsa;
	s3.keys[1] = ked;
	s3.p[0] = s1.p[0];
	s3.p[1] = s2.p[0];
	s3.n = 2;

	struct line l[] = {
#define LINE(w, f, a) { .what = (w), .fn = (f), .arg = (a) }
		LINE("raw RSA-2048 sign (key parsed once)", op_raw_rsa, &rr),
		LINE("RSA-2048 key parse (PEM_read_bio_PrivateKey)", op_parse,
		    &rr),
		LINE("RSA-2048 parse + sign, the key used once", op_fresh, &rr),
		LINE("ag_sign_msg RSA-2048", op_sign, &s1),
		LINE("raw Ed25519 sign (key parsed once)", op_raw_ed25519, &re),
		LINE("Ed25519 key parse (PEM_read_bio_PrivateKey)", op_parse,
		    &re),
		LINE("Ed25519 parse + sign, the key used once", op_fresh, &re),
		LINE("ag_sign_msg Ed25519", op_sign, &s2),
		LINE("ag_sign_msg RSA-2048 + Ed25519 (2 sigs)", op_sign, &s3),
#undef LINE
	};
	const size_t nl = sizeof(l) / sizeof(l[0]);

	printf("%.0f s per line in %d rounds, one thread on CPU 0; medians, "
	    "per CPU second\n\n", seconds, ROUNDS);
	fflush(stdout);
	measure(l, nl, seconds);
	for (size_t i = 0; i < nl; i++) {
		printf("%-44s %9.0f /s  (wall %9.0f /s)\n", l[i].what,
		    l[i].median.cpu, l[i].median.wall);
		if (l[i].fn == op_sign && i + 1 < nl) {
			printf("%-44s %9.1f%% of raw, %.1f%% of parse + "
			    "sign\n\n", "", 100.0 * l[i].median.cpu /
			    l[i - 3].median.cpu, 100.0 * l[i].median.cpu /
			    l[i - 1].median.cpu);
		}
	}
	fflush(stdout);

	if (speed) {
		printf("\n$ openssl speed -seconds %.0f rsa2048 ed25519\n",
		    seconds);
		fflush(stdout);
		snprintf(err, sizeof(err), "taskset -c 0 openssl speed "
		    "-seconds %.0f rsa2048 ed25519 2>/dev/null | tail -4",
		    seconds);
		if (system(err) != 0) {
			printf("(openssl speed failed)\n");
		}
	}
	ag_sign_key_free(krsa);
	ag_sign_key_free(ked);
	ag_signer_free(s1.s);
	EVP_PKEY_free(rr.pk);
	EVP_PKEY_free(re.pk);
	free(rr.pem);
	free(re.pem);
	for (size_t i = 0; i < nfields; i++) {
		free(fields[i].value);
	}
	free(body);
	return 0;
}
