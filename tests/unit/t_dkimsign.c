/*
 * t_dkimsign.c - lib/dkimsign.c: key files, signing, and the signatures
 * checked by two verifiers.
 *
 * Keys are made at test time with OpenSSL (RSA 2048, 1024 and 512 bits,
 * Ed25519, an EC key) and written as PEM files into a mkdtemp() folder,
 * in every form the loader must take or refuse.  Their public halves are
 * published from ag_sign_key_public() as key records in the resolver's
 * local data (zone example.com., static).
 *
 * Each signed message is checked by authgate's own verifier (lib/dkim.c,
 * fed through lib/msgfile.c as the offline mode feeds it) and by dkimpy,
 * an implementation independent of libopendkim: the messages are written
 * to files and one run of /usr/bin/python3 verifies them all, with a
 * dnsfunc that answers from the same key records.  Each case also
 * checks the signature's own tags (c=, h= with From over-signed, x=).
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "dkim.h"
#include "dkimsign.h"
#include "dns.h"
#include "log.h"
#include "msgfile.h"

#define PYTHON "/usr/bin/python3"
#define DEADLINE() (ag_dns_now_ms() + 5000)

static char dir[64];			/* the mkdtemp() folder */
static struct ag_dns *dns;
static struct ag_dkim *verifier;
static struct ag_signer *signer;
static struct ag_sign_key *k2048, *k1024, *ked;
static bool have_dkimpy;

/* The dkimpy batch: one line per message, "label\tfile\twant". */
static FILE *batch;
static unsigned nbatch;

/* ---- files and keys ------------------------------------------------------ */

/* DIR/NAME into BUF. */
static const char *
path_of(char *buf, size_t bufsz, const char *name)
{
	snprintf(buf, bufsz, "%s/%s", dir, name);
	return buf;
}

/* Write LEN bytes of DATA to DIR/NAME with MODE. */
static void
write_file(const char *name, const void *data, size_t len, mode_t mode)
{
	char p[256];
	FILE *fp = fopen(path_of(p, sizeof(p), name), "wb");

	if (fp == NULL || fwrite(data, 1, len, fp) != len || fclose(fp) != 0 ||
	    chmod(p, mode) != 0) {
		fail_msg("cannot write %s", p);
	}
}

/* A new key of TYPE ("RSA", "ED25519", "EC") with BITS (RSA). */
static EVP_PKEY *
keygen(const char *type, unsigned bits)
{
	EVP_PKEY *pk = NULL;

	if (strcmp(type, "RSA") == 0) {
		pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	} else if (strcmp(type, "EC") == 0) {
		pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	} else {
		pk = EVP_PKEY_Q_keygen(NULL, NULL, type);
	}
	if (pk == NULL) {
		fail_msg("cannot make a %s key", type);
	}
	return pk;
}

enum form { PKCS8, PKCS1, ENCRYPTED, PUBLIC };

/* Write PK to DIR/NAME in FORM with MODE. */
static void
write_key(const char *name, EVP_PKEY *pk, enum form form, mode_t mode)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	long len;
	int ok = 0;

	assert_non_null(b);
	switch (form) {
	case PKCS8:
		ok = PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
		break;
	case PKCS1:
		ok = PEM_write_bio_PrivateKey_traditional(b, pk, NULL, NULL, 0,
		    NULL, NULL);
		break;
	case ENCRYPTED:
		ok = PEM_write_bio_PKCS8PrivateKey(b, pk, EVP_aes_256_cbc(),
		    "secret", 6, NULL, NULL);
		break;
	case PUBLIC:
		ok = PEM_write_bio_PUBKEY(b, pk);
		break;
	}
	len = BIO_get_mem_data(b, &data);
	if (ok != 1 || len <= 0) {
		fail_msg("cannot encode key %s", name);
	}
	write_file(name, data, (size_t)len, mode);
	BIO_free(b);
}

/* Load DIR/NAME as ALG, which must work. */
static struct ag_sign_key *
load_ok(const char *name, enum ag_sign_alg alg)
{
	struct ag_sign_key *k;
	char p[256], err[256] = "";

	if (ag_sign_key_load(path_of(p, sizeof(p), name), alg, &k, err,
	    sizeof(err)) != AG_OK) {
		fail_msg("%s: %s", name, err);
	}
	return k;
}

/* Publish K as SEL._domainkey.example.com: in the resolver's local data
 * (strings of at most 250 characters) and in the dkimpy key list. */
static void
publish(const char *sel, const struct ag_sign_key *k)
{
	char pub[AG_SIGN_PUBLIC_MAX], rec[3000], rr[3500], p[256];
	size_t o, len;
	FILE *fp;

	assert_int_equal(ag_sign_key_public(k, pub, sizeof(pub)), AG_OK);
	snprintf(rec, sizeof(rec), "v=DKIM1; k=%s; p=%s",
	    ag_sign_key_alg(k) == AG_SIGN_RSA_SHA256 ? "rsa" : "ed25519", pub);
	o = (size_t)snprintf(rr, sizeof(rr), "%s._domainkey.example.com. 300 "
	    "IN TXT", sel);
	len = strlen(rec);
	for (size_t i = 0; i < len; i += 250) {
		o += (size_t)snprintf(rr + o, sizeof(rr) - o, " \"%.*s\"",
		    (int)(len - i < 250 ? len - i : 250), rec + i);
	}
	if (ag_dns_add_local(dns, rr) != AG_OK) {
		fail_msg("local data refused: %.80s", rr);
	}
	fp = fopen(path_of(p, sizeof(p), "keys.txt"), "a");
	assert_non_null(fp);
	fprintf(fp, "%s._domainkey.example.com\t%s\n", sel, rec);
	fclose(fp);
}

/* dkimpy verifies every signature of every message listed in argv[1]
 * ("label<TAB>file<TAB>want") and prints "label<TAB>results". */
static const char verify_py[] =
    "import sys, dkim\n"
    "recs = {}\n"
    "for line in open(sys.argv[2], 'rb'):\n"
    "    name, rec = line.rstrip(b'\\n').split(b'\\t', 1)\n"
    "    recs[name.lower()] = rec\n"
    "def dnsfunc(name, timeout=5):\n"
    "    if isinstance(name, str):\n"
    "        name = name.encode()\n"
    "    return recs.get(name.rstrip(b'.').lower())\n"
    "for line in open(sys.argv[1]):\n"
    "    label, path, want = line.rstrip('\\n').split('\\t')\n"
    "    msg = open(path, 'rb').read()\n"
    "    d = dkim.DKIM(msg)\n"
    "    n = sum(1 for k, v in d.headers if k.lower() == b'dkim-signature')\n"
    "    res = []\n"
    "    for i in range(n):\n"
    "        try:\n"
    "            ok = dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)\n"
    "            res.append('pass' if ok else 'fail')\n"
    "        except dkim.ValidationError:\n"
    "            res.append('fail')\n"
    "        except Exception as e:\n"
    "            res.append('error:' + type(e).__name__)\n"
    "    print(label + '\\t' + (','.join(res) or '-'), flush=True)\n";

static int
setup(void **state)
{
	struct ag_dns_opts o = { "127.0.0.1@9", 200 };
	EVP_PKEY *r2048, *r1024, *r512, *ed, *ec;
	char err[256], p[256];

	(void)state;
	ag_log_open("t_dkimsign", LOG_MAIL, 0);
	snprintf(dir, sizeof(dir), "/tmp/t_dkimsign.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		fail_msg("mkdtemp failed");
	}
	r2048 = keygen("RSA", 2048);
	r1024 = keygen("RSA", 1024);
	r512 = keygen("RSA", 512);
	ed = keygen("ED25519", 0);
	ec = keygen("EC", 0);
	write_key("r2048.pem", r2048, PKCS8, 0600);
	write_key("r2048-pkcs1.pem", r2048, PKCS1, 0600);
	write_key("r2048-0640.pem", r2048, PKCS8, 0640);
	write_key("r2048-0604.pem", r2048, PKCS8, 0604);
	write_key("r2048-0400.pem", r2048, PKCS8, 0400);
	write_key("r2048-enc.pem", r2048, ENCRYPTED, 0600);
	write_key("r2048-pub.pem", r2048, PUBLIC, 0600);
	write_key("r1024.pem", r1024, PKCS1, 0600);
	write_key("r512.pem", r512, PKCS8, 0600);
	write_key("ed.pem", ed, PKCS8, 0600);
	write_key("ec.pem", ec, PKCS8, 0600);
	{
		/* traditional encryption: "Proc-Type: 4,ENCRYPTED" */
		BIO *b = BIO_new(BIO_s_mem());
		char *data;
		long len;

		assert_non_null(b);
		assert_int_equal(PEM_write_bio_PrivateKey_traditional(b, r2048,
		    EVP_aes_128_cbc(), (unsigned char *)"secret", 6, NULL,
		    NULL), 1);
		len = BIO_get_mem_data(b, &data);
		write_file("r2048-enc1.pem", data, (size_t)len, 0600);
		BIO_free(b);
	}
	EVP_PKEY_free(r2048);
	EVP_PKEY_free(r1024);
	EVP_PKEY_free(r512);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(ec);
	write_file("verify.py", verify_py, sizeof(verify_py) - 1, 0600);
	write_file("keys.txt", "", 0, 0600);

	if (ag_dns_new(&o, &dns, err, sizeof(err)) != AG_OK) {
		fail_msg("resolver: %s", err);
	}
	assert_int_equal(ag_dns_add_local_zone(dns, "example.com.", "static"),
	    AG_OK);
	if (ag_dkim_new(dns, &verifier, err, sizeof(err)) != AG_OK) {
		fail_msg("verifier: %s", err);
	}
	if (ag_signer_new(&signer, err, sizeof(err)) != AG_OK) {
		fail_msg("signer: %s", err);
	}
	k2048 = load_ok("r2048.pem", AG_SIGN_RSA_SHA256);
	k1024 = load_ok("r1024.pem", AG_SIGN_RSA_SHA256);
	ked = load_ok("ed.pem", AG_SIGN_ED25519_SHA256);
	publish("r2048", k2048);
	publish("r1024", k1024);
	publish("ed", ked);
	have_dkimpy = system(PYTHON " -c 'import dkim, nacl' 2>/dev/null") == 0;
	if (!have_dkimpy) {
		printf("# dkimpy (python3-dkim, python3-nacl) missing: "
		    "checked by lib/dkim.c only\n");
	}
	batch = fopen(path_of(p, sizeof(p), "batch.txt"), "w");
	assert_non_null(batch);
	return 0;
}

static int
teardown(void **state)
{
	DIR *d;
	struct dirent *e;
	char p[512];

	(void)state;
	if (batch != NULL) {
		fclose(batch);
	}
	ag_sign_key_free(k2048);
	ag_sign_key_free(k1024);
	ag_sign_key_free(ked);
	ag_signer_free(signer);
	ag_dkim_free(verifier);
	ag_dns_free(dns);
	if (getenv("T_DKIMSIGN_KEEP") != NULL) {	/* to look at them */
		printf("# files kept in %s\n", dir);
		return 0;
	}
	if ((d = opendir(dir)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] != '.') {
				snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
				(void)remove(p);
			}
		}
		closedir(d);
	}
	(void)rmdir(dir);
	return 0;
}

/* ---- key files ----------------------------------------------------------- */

static void
test_key_load(void **state)
{
	static const struct {
		const char *label, *file;
		enum ag_sign_alg alg;
		ag_status want;
		const char *reason;	/* in the error, with the file name */
		unsigned bits;
	} cases[] = {
		{ "RSA 2048, PKCS#8", "r2048.pem", AG_SIGN_RSA_SHA256, AG_OK,
		  NULL, 2048 },
		{ "RSA 2048, PKCS#1", "r2048-pkcs1.pem", AG_SIGN_RSA_SHA256,
		  AG_OK, NULL, 2048 },
		{ "RSA 2048, mode 0400", "r2048-0400.pem", AG_SIGN_RSA_SHA256,
		  AG_OK, NULL, 2048 },
		{ "RSA 1024, PKCS#1 (RFC 8301 minimum)", "r1024.pem",
		  AG_SIGN_RSA_SHA256, AG_OK, NULL, 1024 },
		{ "Ed25519, PKCS#8", "ed.pem", AG_SIGN_ED25519_SHA256, AG_OK,
		  NULL, 256 },
		{ "mode 0640", "r2048-0640.pem", AG_SIGN_RSA_SHA256,
		  AG_PERMFAIL, "mode 0640", 0 },
		{ "mode 0604", "r2048-0604.pem", AG_SIGN_RSA_SHA256,
		  AG_PERMFAIL, "mode 0604", 0 },
		{ "missing file", "none.pem", AG_SIGN_RSA_SHA256, AG_PERMFAIL,
		  "No such file", 0 },
		{ "a directory", "dir.pem", AG_SIGN_RSA_SHA256, AG_PERMFAIL,
		  "not a regular file", 0 },
		{ "garbage", "garbage.pem", AG_SIGN_RSA_SHA256, AG_PERMFAIL,
		  "no usable PEM private key", 0 },
		{ "empty", "empty.pem", AG_SIGN_RSA_SHA256, AG_PERMFAIL,
		  "no usable PEM private key", 0 },
		{ "PEM armour, garbage inside", "armour.pem",
		  AG_SIGN_RSA_SHA256, AG_PERMFAIL, "no usable PEM private key",
		  0 },
		{ "a public key", "r2048-pub.pem", AG_SIGN_RSA_SHA256,
		  AG_PERMFAIL, "public key", 0 },
		{ "RSA 512 (RFC 8301)", "r512.pem", AG_SIGN_RSA_SHA256,
		  AG_PERMFAIL, "512 bits is too small", 0 },
		{ "Ed25519 file as RSA", "ed.pem", AG_SIGN_RSA_SHA256,
		  AG_PERMFAIL, "type ED25519, not RSA", 0 },
		{ "RSA file as Ed25519", "r2048.pem", AG_SIGN_ED25519_SHA256,
		  AG_PERMFAIL, "type RSA, not Ed25519", 0 },
		{ "EC P-256 as RSA", "ec.pem", AG_SIGN_RSA_SHA256, AG_PERMFAIL,
		  "type EC, not RSA", 0 },
		{ "encrypted PKCS#8", "r2048-enc.pem", AG_SIGN_RSA_SHA256,
		  AG_PERMFAIL, "encrypted", 0 },
		{ "encrypted PKCS#1 (Proc-Type)", "r2048-enc1.pem",
		  AG_SIGN_RSA_SHA256, AG_PERMFAIL, "encrypted", 0 },
		{ "100 KB", "big.pem", AG_SIGN_RSA_SHA256, AG_PERMFAIL,
		  "larger than 65536 bytes", 0 },
	};
	static const char garbage[] = "\x01\x02 not a key\n";
	static const char armour[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n"
	    "-----END PRIVATE KEY-----\n";
	char *big = malloc(100 * 1024), p[256];

	(void)state;
	assert_non_null(big);
	memset(big, 'A', 100 * 1024);
	write_file("big.pem", big, 100 * 1024, 0600);
	free(big);
	write_file("garbage.pem", garbage, sizeof(garbage) - 1, 0600);
	write_file("empty.pem", "", 0, 0600);
	write_file("armour.pem", armour, sizeof(armour) - 1, 0600);
	assert_int_equal(mkdir(path_of(p, sizeof(p), "dir.pem"), 0700), 0);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ag_sign_key *k = (struct ag_sign_key *)&k; /* not NULL */
		char err[512] = "";
		ag_status st;

		st = ag_sign_key_load(path_of(p, sizeof(p), cases[i].file),
		    cases[i].alg, &k, err, sizeof(err));
		if (st != cases[i].want) {
			fail_msg("%s: got %s (%s), want %s", cases[i].label,
			    ag_status_str(st), err, ag_status_str(cases[i].want));
		}
		if (st != AG_OK) {
			if (k != NULL) {
				fail_msg("%s: a key on failure", cases[i].label);
			}
			if (strstr(err, cases[i].reason) == NULL ||
			    strstr(err, p) == NULL) {
				fail_msg("%s: \"%s\" lacks \"%s\" or the file name",
				    cases[i].label, err, cases[i].reason);
			}
			if (strstr(err, "BEGIN") != NULL ||
			    strstr(err, "MII") != NULL) {
				fail_msg("%s: key material in \"%s\"",
				    cases[i].label, err);
			}
			continue;
		}
		if (ag_sign_key_bits(k) != cases[i].bits ||
		    ag_sign_key_alg(k) != cases[i].alg) {
			fail_msg("%s: %u bits, alg %d", cases[i].label,
			    ag_sign_key_bits(k), ag_sign_key_alg(k));
		}
		ag_sign_key_free(k);
	}
	/* ERR may be NULL */
	{
		struct ag_sign_key *k;

		assert_int_equal(ag_sign_key_load(path_of(p, sizeof(p),
		    "none.pem"), AG_SIGN_RSA_SHA256, &k, NULL, 0), AG_PERMFAIL);
		assert_null(k);
		assert_int_equal(ag_sign_key_load(NULL, AG_SIGN_RSA_SHA256, &k,
		    NULL, 0), AG_INVALID);
	}
	ag_sign_key_free(NULL);
}

static bool
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void
test_key_public(void **state)
{
	char buf[AG_SIGN_PUBLIC_MAX], small[44];
	unsigned char raw[64];

	(void)state;
	/* RSA: SubjectPublicKeyInfo of rsaEncryption, 2048 bits */
	assert_int_equal(ag_sign_key_public(k2048, buf, sizeof(buf)), AG_OK);
	assert_true(starts_with(buf,
	    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
	assert_int_equal(strlen(buf), 392);
	assert_int_equal(ag_sign_key_public(k1024, buf, sizeof(buf)), AG_OK);
	assert_true(starts_with(buf,
	    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQ"));
	/* Ed25519 (RFC 8463 4): the raw 32 bytes, 44 characters of base64 */
	assert_int_equal(ag_sign_key_public(ked, buf, sizeof(buf)), AG_OK);
	assert_int_equal(strlen(buf), 44);
	assert_int_equal(EVP_DecodeBlock(raw, (unsigned char *)buf, 44), 33);
	/* a buffer one short */
	assert_int_equal(ag_sign_key_public(ked, small, sizeof(small)),
	    AG_INVALID);
	assert_int_equal(ag_sign_key_public(NULL, buf, sizeof(buf)),
	    AG_INVALID);
}

static void
test_alg_names(void **state)
{
	static const struct {
		const char *s;
		int ret;
		enum ag_sign_alg alg;
	} cases[] = {
		{ "rsa-sha256", 0, AG_SIGN_RSA_SHA256 },
		{ "rsa", 0, AG_SIGN_RSA_SHA256 },
		{ "RSA", 0, AG_SIGN_RSA_SHA256 },
		{ "ed25519-sha256", 0, AG_SIGN_ED25519_SHA256 },
		{ "ed25519", 0, AG_SIGN_ED25519_SHA256 },
		{ "rsa-sha1", -1, AG_SIGN_RSA_SHA256 },
		{ "", -1, AG_SIGN_RSA_SHA256 },
		{ NULL, -1, AG_SIGN_RSA_SHA256 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum ag_sign_alg a = AG_SIGN_RSA_SHA256;

		assert_int_equal(ag_sign_alg_parse(cases[i].s, &a), cases[i].ret);
		if (cases[i].ret == 0) {
			assert_int_equal(a, cases[i].alg);
		}
	}
	assert_string_equal(ag_sign_alg_name(AG_SIGN_RSA_SHA256), "rsa-sha256");
	assert_string_equal(ag_sign_alg_name(AG_SIGN_ED25519_SHA256),
	    "ed25519-sha256");
}

/* ---- signing ------------------------------------------------------------ */

struct feed {
	struct ag_sign_msg *sm;		/* signing, or */
	struct ag_dkim_msg *vm;		/* verifying */
	size_t cut;
	ag_status st;
};

/* Body chunk sizes in turn, as in t_dkim.c. */
static const size_t cuts[] = { 1, 7, 2, 64, 3, 1000, 5, 4096, 13, 65536 };

static int
on_header(void *arg, const char *name, const char *value)
{
	struct feed *f = arg;

	f->st = f->sm != NULL ? ag_sign_header(f->sm, name, value) :
	    ag_dkim_header(f->vm, name, value);
	return f->st != AG_OK;
}

static int
on_eoh(void *arg)
{
	struct feed *f = arg;

	f->st = f->sm != NULL ? ag_sign_eoh(f->sm) : ag_dkim_eoh(f->vm);
	return f->st != AG_OK;
}

static int
on_body(void *arg, const unsigned char *buf, size_t len)
{
	struct feed *f = arg;

	while (len > 0 && f->st == AG_OK) {
		size_t n = cuts[f->cut++ % (sizeof(cuts) / sizeof(cuts[0]))];

		n = n < len ? n : len;
		f->st = f->sm != NULL ? ag_sign_body(f->sm, buf, n) :
		    ag_dkim_body(f->vm, buf, n);
		buf += n;
		len -= n;
	}
	return f->st != AG_OK;
}

/* Feed MSG (NUL-terminated) to F through lib/msgfile.c. */
static void
feed(const char *label, struct feed *f, const char *msg)
{
	struct ag_msgfile_cb cb = { on_header, on_eoh, on_body, f };
	char err[256];
	FILE *fp = fmemopen((void *)(uintptr_t)msg, strlen(msg), "r");

	if (fp == NULL) {
		fail_msg("%s: fmemopen", label);
	}
	if (ag_msgfile_read(fp, &cb, err, sizeof(err)) != AG_OK) {
		fail_msg("%s: msgfile: %s", label, err);
	}
	fclose(fp);
	if (f->st != AG_OK) {
		fail_msg("%s: feeding gave %s", label, ag_status_str(f->st));
	}
}

/* MSG with each bare LF made CRLF; the caller frees. */
static char *
crlf(const char *msg)
{
	size_t len = strlen(msg), o = 0;
	char *out = malloc(2 * len + 1);

	assert_non_null(out);
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r')) {
			out[o++] = '\r';
		}
		out[o++] = msg[i];
	}
	out[o] = '\0';
	return out;
}

/* Sign MSG with the N keys and parameters; VALUES gets the N values. */
static void
sign(const char *label, const char *msg, const struct ag_sign_key *const *keys,
    const struct ag_sign_params *p, size_t n, char **values)
{
	struct feed f = { 0 };
	char err[256] = "";
	ag_status st;

	f.sm = ag_sign_msg_new(signer, label, keys, p, n, err, sizeof(err));
	if (f.sm == NULL) {
		fail_msg("%s: ag_sign_msg_new: %s", label, err);
	}
	feed(label, &f, msg);
	if ((st = ag_sign_eom(f.sm, values, err, sizeof(err))) != AG_OK) {
		fail_msg("%s: ag_sign_eom: %s: %s", label, ag_status_str(st), err);
	}
	ag_sign_msg_free(f.sm);
}

/* The signed message: "DKIM-Signature: " + each value (LF made CRLF) on
 * top of MSG (made CRLF), as the MTA writes it; the caller frees. */
static char *
signed_text(char **values, size_t n, const char *msg)
{
	size_t len = strlen(msg) * 2 + 1;
	char *all, *body;

	for (size_t i = 0; i < n; i++) {
		len += 2 * strlen(values[i]) + 32;
	}
	all = malloc(len);
	assert_non_null(all);
	all[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char *v = crlf(values[i]);

		strcat(all, "DKIM-Signature: ");
		strcat(all, v);
		strcat(all, "\r\n");
		free(v);
	}
	body = crlf(msg);
	strcat(all, body);
	free(body);
	return all;
}

/* lib/dkim.c's results on TEXT, as "pass,fail"; algorithms checked. */
static void
verify_own(const char *label, const char *text, const char *want,
    const char *const *algs)
{
	struct feed f = { 0 };
	char got[256] = "";
	size_t n;

	f.vm = ag_dkim_msg_new(verifier, label, 0, DEADLINE());
	assert_non_null(f.vm);
	feed(label, &f, text);
	assert_int_equal(ag_dkim_eom(f.vm), AG_OK);
	n = ag_dkim_count(f.vm);
	for (size_t i = 0; i < n; i++) {
		const struct ag_dkim_result *r = ag_dkim_get(f.vm, i);

		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s",
		    i > 0 ? "," : "", ag_dkim_res_name(r->result));
		if (algs != NULL && strcmp(r->algorithm, algs[i]) != 0) {
			fail_msg("%s: signature %zu is %s, want %s", label, i,
			    r->algorithm, algs[i]);
		}
		if (r->result != AG_DKIM_PASS && strcmp(want, "pass") == 0) {
			printf("# %s: lib/dkim.c: %s\n", label, r->reason);
		}
	}
	if (strcmp(got[0] != '\0' ? got : "-", want) != 0) {
		fail_msg("%s: lib/dkim.c gives %s, want %s (%s)", label, got, want,
		    n > 0 ? ag_dkim_get(f.vm, 0)->reason : "");
	}
	ag_dkim_msg_free(f.vm);
}

/* Queue TEXT for dkimpy, which must give WANT. */
static void
verify_dkimpy(const char *label, const char *text, const char *want)
{
	char name[64], p[256];

	snprintf(name, sizeof(name), "msg%03u.eml", nbatch++);
	write_file(name, text, strlen(text), 0600);
	fprintf(batch, "%s\t%s\t%s\n", label, path_of(p, sizeof(p), name),
	    want);
}

/* The value of tag NAME in signature value V (FWS removed) into OUT. */
static const char *
tag(const char *v, const char *name, char *out, size_t outsz)
{
	size_t nl = strlen(name), o = 0;
	const char *p = v;

	out[0] = '\0';
	while (p != NULL && *p != '\0') {
		p += strspn(p, " \t\r\n");
		if (strncmp(p, name, nl) == 0 && p[nl + strspn(p + nl,
		    " \t\r\n")] == '=') {
			p = strchr(p, '=') + 1;
			for (; *p != '\0' && *p != ';' && o + 1 < outsz; p++) {
				if (strchr(" \t\r\n", *p) == NULL) {
					out[o++] = *p;
				}
			}
			out[o] = '\0';
			return out;
		}
		p = strchr(p, ';');
		p = p != NULL ? p + 1 : NULL;
	}
	return NULL;
}

/* How many times NAME stands in the colon-separated LIST (case ignored). */
static unsigned
count_names(const char *list, const char *name)
{
	char buf[1024], *save = NULL;
	unsigned n = 0;

	snprintf(buf, sizeof(buf), "%s", list);
	for (char *t = strtok_r(buf, ":", &save); t != NULL;
	    t = strtok_r(NULL, ":", &save)) {
		n += strcasecmp(t, name) == 0;
	}
	return n;
}

/* Check the form of value V: "v=1; ...", "\n\t" folding, no CR, the
 * c=, a=, d=, s= wanted, From over-signed (FROMS + 1 times in h=),
 * x= = t= + EXPIRE (none when 0). */
static void
check_value(const char *label, const char *v, const struct ag_sign_params *p,
    unsigned froms)
{
	char t[1024], x[64], c[64];
	const char *nl;
	char want[64];

	if (strncmp(v, "v=1; ", 5) != 0 || strchr(v, '\r') != NULL) {
		fail_msg("%s: value \"%.20s...\" not \"v=1; ...\" with LF",
		    label, v);
	}
	for (nl = strchr(v, '\n'); nl != NULL; nl = strchr(nl + 1, '\n')) {
		if (nl[1] != '\t') {
			fail_msg("%s: a line break without a tab", label);
		}
	}
	snprintf(want, sizeof(want), "%s/%s", p->header_simple ? "simple" :
	    "relaxed", p->body_simple ? "simple" : "relaxed");
	if (tag(v, "c", c, sizeof(c)) == NULL || strcmp(c, want) != 0) {
		fail_msg("%s: c=%s, want %s", label, c, want);
	}
	if (tag(v, "a", c, sizeof(c)) == NULL ||
	    strcmp(c, ag_sign_alg_name(p->alg)) != 0 ||
	    tag(v, "d", c, sizeof(c)) == NULL || strcmp(c, p->domain) != 0 ||
	    tag(v, "s", c, sizeof(c)) == NULL || strcmp(c, p->selector) != 0) {
		fail_msg("%s: a=, d= or s= wrong in %s", label, v);
	}
	if (tag(v, "h", t, sizeof(t)) == NULL ||
	    count_names(t, "from") != froms + 1) {
		fail_msg("%s: h=%s does not over-sign From", label, t);
	}
	if (p->expire_s == 0 && tag(v, "x", x, sizeof(x)) != NULL) {
		fail_msg("%s: x= without expire_s", label);
	}
	if (p->expire_s > 0 && (tag(v, "x", x, sizeof(x)) == NULL ||
	    tag(v, "t", c, sizeof(c)) == NULL ||
	    strtoull(x, NULL, 10) != strtoull(c, NULL, 10) + p->expire_s)) {
		fail_msg("%s: x=%s t=%s, want x = t + %u", label, x, c,
		    p->expire_s);
	}
}

/* Each name of the colon-separated NAMES must stand N times in V's h=. */
static void
check_h(const char *label, const char *v, const char *names, unsigned n)
{
	char h[1024], buf[256], *save = NULL;

	if (names == NULL) {
		return;
	}
	tag(v, "h", h, sizeof(h));
	snprintf(buf, sizeof(buf), "%s", names);
	for (char *t = strtok_r(buf, ":", &save); t != NULL;
	    t = strtok_r(NULL, ":", &save)) {
		if (count_names(h, t) != n) {
			fail_msg("%s: %s is not %u times in h=%s", label, t, n, h);
		}
	}
}

/* Messages. */
#define HDRS "From: Alice <alice@example.com>\n" \
	"To: Bob <bob@example.org>\n" \
	"Subject: signing test\n" \
	"Date: Sat, 28 Nov 2026 12:00:00 +0000\n" \
	"Message-ID: <sign-1@example.com>\n" \
	"MIME-Version: 1.0\n" \
	"Content-Type: text/plain; charset=utf-8\n"
#define BODY "Hello Bob,\n\nthis  has   doubled   spaces \t\nand lines.\n" \
	"\n\n"
#define MSG HDRS "\n" BODY

enum which { R2048, R1024, ED, BOTH };

static void
test_sign_verify(void **state)
{
	/* C: header and body canonicalization, 's'imple or 'r'elaxed */
	static const struct {
		const char *label, *msg;
		enum which keys;
		const char *c, *headers;
		unsigned expire;
		const char *h_has, *h_not;	/* once each in h=, never */
		const char *own;	/* lib/dkim.c's result if not pass */
	} cases[] = {
		{ "RSA-2048 relaxed/relaxed", MSG, R2048, "rr", NULL, 0,
		  "To:Subject:Date:Message-ID:MIME-Version:Content-Type", NULL,
		  NULL },
		{ "RSA-2048 simple/simple", MSG, R2048, "ss", NULL, 0, NULL,
		  NULL, NULL },
		{ "RSA-2048 relaxed/simple", MSG, R2048, "rs", NULL, 0, NULL,
		  NULL, NULL },
		{ "RSA-2048 simple/relaxed", MSG, R2048, "sr", NULL, 0, NULL,
		  NULL, NULL },
		{ "RSA-1024", MSG, R1024, "rr", NULL, 0, NULL, NULL, NULL },
		{ "Ed25519 relaxed/relaxed", MSG, ED, "rr", NULL, 0, NULL, NULL,
		  NULL },
		{ "Ed25519 simple/simple", MSG, ED, "ss", NULL, 0, NULL, NULL,
		  NULL },
		{ "RSA and Ed25519 on one message", MSG, BOTH, "rr", NULL, 0,
		  NULL, NULL, NULL },
		{ "both, simple/simple", MSG, BOTH, "ss", NULL, 0, NULL, NULL,
		  NULL },
		{ "body without a final CRLF", HDRS "\nno line end", R2048, "ss",
		  NULL, 0, NULL, NULL, NULL },
		/* RFC 6376 3.4.4 adds the CRLF; libopendkim's relaxed body
		 * canonicalization refuses the body instead, when verifying
		 * too (over SMTP a body always ends in CRLF) */
		{ "body without a final CRLF, relaxed", HDRS "\nno line end",
		  ED, "rr", NULL, 0, NULL, NULL, "fail" },
		{ "empty body", HDRS "\n", BOTH, "ss", NULL, 0, NULL, NULL,
		  NULL },
		{ "no body, no blank line", HDRS, R2048, "rr", NULL, 0, NULL,
		  NULL, NULL },
		{ "only blank lines in the body", HDRS "\n\n\n\n", BOTH, "ss",
		  NULL, 0, NULL, NULL, NULL },
		{ "white space lines at the end (relaxed)", HDRS "\nbody \t\n"
		  "  \n\t\n\n", BOTH, "rr", NULL, 0, NULL, NULL, NULL },
		{ "white space lines at the end (simple)", HDRS "\nbody \t\n"
		  "  \n\t\n\n", BOTH, "ss", NULL, 0, NULL, NULL, NULL },
		/* a lone CR is a byte of its line, not white space (RFC
		 * 6376 3.4.4, and dkimpy); libopendkim's relaxed body
		 * canonicalization, verifying, reads it otherwise (RFC 5321
		 * 2.3.8 forbids it over SMTP) */
		{ "lone CRs in the body (relaxed)", HDRS "\none\rtwo\n\rthree"
		  " \r \n", BOTH, "rr", NULL, 0, NULL, NULL, "fail,fail" },
		{ "lone CRs in the body (simple)", HDRS "\none\rtwo\n\rthree"
		  " \r \n", BOTH, "ss", NULL, 0, NULL, NULL, NULL },
		/* a CR that ends the body is a byte of the last line, to
		 * which a CRLF is added (RFC 6376 3.4.3, and dkimpy);
		 * libopendkim, verifying, drops it (over SMTP a body always
		 * ends in CRLF) */
		{ "a lone CR ends the body (simple)", HDRS "\none\n\r", BOTH,
		  "ss", NULL, 0, NULL, NULL, "fail,fail" },
		{ "a lone CR ends the body (relaxed)", HDRS "\none\n\r", BOTH,
		  "rr", NULL, 0, NULL, NULL, "fail,fail" },
		{ "two Subject fields, three To fields", "To: 1@example.org\n"
		  "From: a@example.com\nSubject: one\nTo: 2@example.org\n"
		  "Subject: two\nTo: 3@example.org\n\nbody\n", BOTH, "ss",
		  NULL, 0, NULL, NULL, NULL },
		{ "folded header fields (simple)", "From: Alice\n"
		  " <alice@example.com>\nTo: a@example.org,\n\tb@example.org\n"
		  "Subject: a subject\n  folded twice\n\t and thrice\n\nbody\n",
		  R2048, "ss", NULL, 0, NULL, NULL, NULL },
		{ "folded header fields (relaxed)", "From: Alice\n"
		  " <alice@example.com>\nTo: a@example.org,\n\tb@example.org\n"
		  "Subject: a subject\n  folded twice\n\t and thrice\n\nbody\n",
		  ED, "rr", NULL, 0, NULL, NULL, NULL },
		{ "8-bit UTF-8 header values", "From: J\xc3\xbcrgen "
		  "<j@example.com>\nSubject: Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln"
		  "\nTo: \xe6\x97\xa5\xe6\x9c\xac <x@example.org>\n\nK\xc3\xb6ln\n",
		  BOTH, "ss", NULL, 0, NULL, NULL, NULL },
		{ "Subject:x with no space (simple)", "From: a@example.com\n"
		  "Subject:x\nTo:\tb@example.org\nCc:   c@example.org\n\nbody\n",
		  R2048, "ss", NULL, 0, "Subject:To:Cc", NULL, NULL },
		{ "Subject:x with no space (relaxed)", "From:a@example.com\n"
		  "Subject:x\n\nbody\n", ED, "rr", NULL, 0, NULL, NULL, NULL },
		{ "trailing white space in values (simple)", "From: "
		  "a@example.com  \nSubject: x \t\n\nbody  \n", R2048, "ss",
		  NULL, 0, NULL, NULL, NULL },
		{ "h= of our own", MSG, R2048, "rr",
		  "from : subject:Date::X-Missing", 0, "Subject:Date",
		  "To:Message-ID:X-Missing", NULL },
		{ "h= without From gets From", MSG, ED, "ss", "Subject:To", 0,
		  "Subject:To", "Date", NULL },
		{ "x= (expire_s 3600)", MSG, R2048, "rr", NULL, 3600, NULL,
		  NULL, NULL },
		{ "x= on Ed25519 (expire_s 86400)", MSG, ED, "ss", NULL, 86400,
		  NULL, NULL, NULL },
		{ "fields not signed by default", "Received: from x by y\n"
		  "X-Mailer: test\nFrom: a@example.com\nBcc: z@example.org\n"
		  "Subject: s\n\nbody\n", BOTH, "rr", NULL, 0, "Subject",
		  "Received:X-Mailer:Bcc", NULL },
		{ "a long folded field, long lines, a large body", NULL, BOTH,
		  "sr", NULL, 0, "References", NULL, NULL },
	};
	const char *const rsa_ed[] = { "rsa-sha256", "ed25519-sha256" };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ag_sign_key *keys[2];
		struct ag_sign_params p[2];
		const char *algs[2];
		char *values[2] = { NULL, NULL }, *text, *big = NULL;
		const char *msg = cases[i].msg;
		size_t n = cases[i].keys == BOTH ? 2 : 1;

		if (msg == NULL) {
			/* a 20 KB References field folded 400 times, then
			 * 300 KB of body: lines of 1,000 bytes */
			size_t o, cap = strlen(HDRS) + 400 * 40 + 300 * 1001 + 64;

			big = malloc(cap);
			assert_non_null(big);
			o = (size_t)snprintf(big, cap, "%sReferences:", HDRS);
			for (size_t r = 0; r < 400; r++) {
				o += (size_t)snprintf(big + o, cap - o,
				    "\n <ref-%zu@example.com>", r);
			}
			o += (size_t)snprintf(big + o, cap - o, "\n\n");
			for (size_t l = 0; l < 300; l++) {
				memset(big + o, 'a' + (int)(l % 26), 1000);
				big[o + 999] = ' ';
				big[o + 1000] = '\n';
				o += 1001;
			}
			big[o] = '\0';
			msg = big;
		}
		memset(p, 0, sizeof(p));
		for (size_t j = 0; j < n; j++) {
			enum which w = cases[i].keys == BOTH ? (j == 0 ? R2048 : ED) :
			    cases[i].keys;

			keys[j] = w == R2048 ? k2048 : w == R1024 ? k1024 : ked;
			p[j].domain = "example.com";
			p[j].selector = w == R2048 ? "r2048" : w == R1024 ? "r1024" :
			    "ed";
			p[j].alg = w == ED ? AG_SIGN_ED25519_SHA256 :
			    AG_SIGN_RSA_SHA256;
			p[j].header_simple = cases[i].c[0] == 's';
			p[j].body_simple = cases[i].c[1] == 's';
			p[j].headers = cases[i].headers;
			p[j].expire_s = cases[i].expire;
			algs[j] = rsa_ed[w == ED];
		}
		sign(cases[i].label, msg, keys, p, n, values);
		for (size_t j = 0; j < n; j++) {
			check_value(cases[i].label, values[j], &p[j], 1);
			check_h(cases[i].label, values[j], cases[i].h_has, 1);
			check_h(cases[i].label, values[j], cases[i].h_not, 0);
		}
		text = signed_text(values, n, msg);
		verify_own(cases[i].label, text, cases[i].own != NULL ?
		    cases[i].own : n == 2 ? "pass,pass" : "pass", algs);
		verify_dkimpy(cases[i].label, text, n == 2 ? "pass,pass" :
		    "pass");
		free(text);
		for (size_t j = 0; j < n; j++) {
			free(values[j]);
		}
		free(big);
	}
}

/*
 * Where the signature's lines break depends on the length of h=: lists of
 * growing length move b= (and the breaks before it) across columns, each
 * of which must verify under simple header canonicalization, where the
 * folding is hashed.  Both keys, simple/simple; no line over 78 columns.
 */
static unsigned
max_columns(const char *v)
{
	unsigned col = 16, max = 0;	/* after "DKIM-Signature: " */

	for (; *v != '\0'; v++) {
		if (*v == '\n') {
			max = col > max ? col : max;
			col = 0;
		} else {
			col = *v == '\t' ? (col / 8 + 1) * 8 : col + 1;
		}
	}
	return col > max ? col : max;
}

static void
test_b_fold(void **state)
{
	const struct ag_sign_key *keys[2] = { k2048, ked };
	char msg[4096], hl[1024], label[64];
	bool cols[80] = { false };
	unsigned ncols = 0, runs = 0;
	size_t o;

	(void)state;
	o = (size_t)snprintf(msg, sizeof(msg), "From: a@example.com\n");
	for (unsigned i = 0; i < 40; i++) {
		o += (size_t)snprintf(msg + o, sizeof(msg) - o, "X-P%u: %u\n", i,
		    i);
	}
	snprintf(msg + o, sizeof(msg) - o, "\nbody\n");
	for (unsigned k = 0; k <= 40; k++, runs++) {
		struct ag_sign_params p[2];
		char *values[2], *text;
		size_t hlo = (size_t)snprintf(hl, sizeof(hl), "From");

		for (unsigned i = 0; i < k; i++) {
			hlo += (size_t)snprintf(hl + hlo, sizeof(hl) - hlo, ":X-P%u",
			    i);
		}
		memset(p, 0, sizeof(p));
		for (size_t j = 0; j < 2; j++) {
			p[j].domain = "example.com";
			p[j].selector = j == 0 ? "r2048" : "ed";
			p[j].alg = j == 0 ? AG_SIGN_RSA_SHA256 :
			    AG_SIGN_ED25519_SHA256;
			p[j].header_simple = p[j].body_simple = true;
			p[j].headers = hl;
		}
		snprintf(label, sizeof(label), "b= folding, %u names", k + 1);
		sign(label, msg, keys, p, 2, values);
		for (size_t j = 0; j < 2; j++) {
			const char *b = strstr(values[j], " b=");
			const char *line = b;

			if (b == NULL || max_columns(values[j]) > 78) {
				fail_msg("%s: no \" b=\" or a line over 78 "
				    "columns: %s", label, values[j]);
			}
			while (line > values[j] && line[-1] != '\n') {
				line--;
			}
			/* b='s column: the tab is 8, the first line 16 */
			o = (size_t)(b - line) + (line == values[j] ? 16 : 7);
			if (o < sizeof(cols) && !cols[o]) {
				cols[o] = true;
				ncols++;
			}
		}
		text = signed_text(values, 2, msg);
		verify_own(label, text, "pass,pass", NULL);
		verify_dkimpy(label, text, "pass,pass");
		free(text);
		free(values[0]);
		free(values[1]);
	}
	if (ncols < 5) {
		fail_msg("b= began at %u columns in %u signatures: more wanted",
		    ncols, 2 * runs);
	}
	printf("# b= began at %u different columns in %u signatures\n",
	    ncols, 2 * runs);
}

/*
 * Fed by hand, as the session feeds it: folding with bare LF (made CRLF),
 * a value with no leading space, the body in odd pieces; and a message
 * with two From fields (h= names From three times).
 */
static void
test_direct_feed(void **state)
{
	static const char *const hdr[][2] = {
		{ "From", " Alice <alice@example.com>" },
		{ "From", " Second <second@example.com>" },
		{ "Subject", " a subject\n\tfolded with LF\r\n and CRLF" },
		{ "To", "\tb@example.org" },
		{ "X-Nospace", "x" },
	};
	static const char text[] = "From: Alice <alice@example.com>\r\n"
	    "From: Second <second@example.com>\r\n"
	    "Subject: a subject\r\n\tfolded with LF\r\n and CRLF\r\n"
	    "To:\tb@example.org\r\nX-Nospace:x\r\n\r\nline 1\r\nline 2\r\n";
	const struct ag_sign_key *keys[2] = { k2048, ked };
	struct ag_sign_params p[2];
	const char *body = strstr(text, "\r\n\r\n") + 4;
	char err[256], *values[2], *signed_msg, h[512];
	struct ag_sign_msg *m;

	(void)state;
	memset(p, 0, sizeof(p));
	for (size_t j = 0; j < 2; j++) {
		p[j].domain = "example.com";
		p[j].selector = j == 0 ? "r2048" : "ed";
		p[j].alg = j == 0 ? AG_SIGN_RSA_SHA256 : AG_SIGN_ED25519_SHA256;
		p[j].header_simple = p[j].body_simple = true;
		p[j].headers = "From:Subject:To:X-Nospace";
	}
	m = ag_sign_msg_new(signer, "direct", keys, p, 2, err, sizeof(err));
	assert_non_null(m);
	for (size_t i = 0; i < sizeof(hdr) / sizeof(hdr[0]); i++) {
		assert_int_equal(ag_sign_header(m, hdr[i][0], hdr[i][1]), AG_OK);
	}
	assert_int_equal(ag_sign_eoh(m), AG_OK);
	for (size_t i = 0, bl = strlen(body); i < bl; i += 3) {	/* 3 at once */
		size_t n = bl - i < 3 ? bl - i : 3;

		assert_int_equal(ag_sign_body(m, (const unsigned char *)body + i,
		    n), AG_OK);
	}
	if (ag_sign_eom(m, values, err, sizeof(err)) != AG_OK) {
		fail_msg("direct: %s", err);
	}
	ag_sign_msg_free(m);
	for (size_t j = 0; j < 2; j++) {
		tag(values[j], "h", h, sizeof(h));
		if (count_names(h, "from") != 3) {
			fail_msg("direct: h=%s does not name From 3 times", h);
		}
	}
	signed_msg = signed_text(values, 2, text);
	verify_own("fed by hand", signed_msg, "pass,pass", NULL);
	verify_dkimpy("fed by hand", signed_msg, "pass,pass");
	free(signed_msg);
	free(values[0]);
	free(values[1]);
}

/* Copy of S with the first FROM replaced by TO. */
static char *
replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	size_t fl = strlen(from), tl = strlen(to), sl = strlen(s);
	char *out;

	if (at == NULL) {
		fail_msg("replace: \"%s\" not found", from);
	}
	out = malloc(sl - fl + tl + 1);
	assert_non_null(out);
	memcpy(out, s, (size_t)(at - s));
	memcpy(out + (at - s), to, tl);
	memcpy(out + (at - s) + tl, at + fl, sl - (size_t)(at - s) - fl + 1);
	return out;
}

static void
test_tampered(void **state)
{
	static const struct {
		const char *label, *from, *to;
		bool simple;
	} cases[] = {
		{ "Subject changed (relaxed)", "signing test", "signing best",
		  false },
		{ "Subject changed (simple)", "signing test", "signing best",
		  true },
		{ "body changed (relaxed)", "Hello Bob", "Hello Rob", false },
		{ "body changed (simple)", "Hello Bob", "Hello Rob", true },
		{ "From added on top (over-signed)", "\r\nFrom: Alice",
		  "\r\nFrom: Mallory <m@example.net>\r\nFrom: Alice", false },
		{ "a space after the colon (simple)", "Subject: signing",
		  "Subject:  signing", true },
		{ "body line appended", "and lines.\r\n",
		  "and lines.\r\nP.S. buy now\r\n", false },
	};
	const struct ag_sign_key *keys[2] = { k2048, ked };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ag_sign_params p[2];
		char *values[2], *text, *bad;

		memset(p, 0, sizeof(p));
		for (size_t j = 0; j < 2; j++) {
			p[j].domain = "example.com";
			p[j].selector = j == 0 ? "r2048" : "ed";
			p[j].alg = j == 0 ? AG_SIGN_RSA_SHA256 :
			    AG_SIGN_ED25519_SHA256;
			p[j].header_simple = p[j].body_simple = cases[i].simple;
		}
		sign(cases[i].label, MSG, keys, p, 2, values);
		text = signed_text(values, 2, MSG);
		verify_own(cases[i].label, text, "pass,pass", NULL);
		bad = replace(text, cases[i].from, cases[i].to);
		verify_own(cases[i].label, bad, "fail,fail", NULL);
		verify_dkimpy(cases[i].label, bad, "fail,fail");
		free(bad);
		free(text);
		free(values[0]);
		free(values[1]);
	}
}

/* Run dkimpy over the batch: every message must give its want. */
static void
test_dkimpy(void **state)
{
	char cmd[1024], p1[256], p2[256], p3[256], line[1024];
	char label[256] = "", want[64];
	unsigned seen = 0;
	FILE *in, *out;

	(void)state;
	fclose(batch);
	batch = NULL;
	if (!have_dkimpy) {
		skip();
	}
	snprintf(cmd, sizeof(cmd), PYTHON " %s %s %s 2>&1",
	    path_of(p1, sizeof(p1), "verify.py"),
	    path_of(p2, sizeof(p2), "batch.txt"),
	    path_of(p3, sizeof(p3), "keys.txt"));
	out = popen(cmd, "r");
	in = fopen(p2, "r");
	assert_non_null(out);
	assert_non_null(in);
	while (fgets(line, sizeof(line), out) != NULL) {
		char bl[1024], *tab = strchr(line, '\t'), *got;

		line[strcspn(line, "\n")] = '\0';
		if (tab == NULL || fgets(bl, sizeof(bl), in) == NULL) {
			fail_msg("dkimpy: \"%s\"", line);
		}
		*tab = '\0';
		got = tab + 1;
		bl[strcspn(bl, "\n")] = '\0';
		snprintf(label, sizeof(label), "%.*s", (int)strcspn(bl, "\t"), bl);
		snprintf(want, sizeof(want), "%s", strrchr(bl, '\t') + 1);
		if (strcmp(line, label) != 0 || strcmp(got, want) != 0) {
			fail_msg("%s: dkimpy gives %s, want %s", label, got, want);
		}
		seen++;
	}
	fclose(in);
	if (pclose(out) != 0 || seen != nbatch || seen < 30) {
		fail_msg("dkimpy: %u of %u messages checked", seen, nbatch);
	}
	printf("# dkimpy verified %u messages as expected\n", seen);
}

/* ---- failures ------------------------------------------------------------ */

/* ag_sign_msg_new must fail with ERR containing WANT. */
static void
new_fails(const char *label, struct ag_signer *s,
    const struct ag_sign_key *const *keys, const struct ag_sign_params *p,
    size_t n, const char *want)
{
	char err[256] = "";
	struct ag_sign_msg *m;

	m = ag_sign_msg_new(s, label, keys, p, n, err, sizeof(err));
	if (m != NULL || strstr(err, want) == NULL) {
		fail_msg("%s: %s, \"%s\" lacks \"%s\"", label, m != NULL ?
		    "made" : "refused", err, want);
	}
}

static void
test_new_failures(void **state)
{
	struct ag_sign_params p = { "example.com", "r2048",
	    AG_SIGN_RSA_SHA256, false, false, NULL, 0 };
	const struct ag_sign_key *none[1] = { NULL }, *rsa[1] = { k2048 };
	const struct ag_sign_key *nine[9] = { k2048, k2048, k2048, k2048,
	    k2048, k2048, k2048, k2048, k2048 };
	struct ag_sign_params nine_p[9], q;
	char longlist[2048] = "From";

	(void)state;
	new_fails("NULL key", signer, none, &p, 1,
	    "d=example.com s=r2048: no key loaded");
	new_fails("no signer", NULL, rsa, &p, 1, "no signer");
	new_fails("no keys", signer, rsa, &p, 0, "0 keys");
	for (size_t i = 0; i < 9; i++) {
		nine_p[i] = p;
	}
	new_fails("nine keys", signer, nine, nine_p, 9, "9 keys");
	q = p;
	q.alg = AG_SIGN_ED25519_SHA256;
	new_fails("RSA key, Ed25519 wanted", signer, rsa, &q, 1,
	    "d=example.com s=r2048: the key is rsa-sha256, not ed25519-sha256");
	q = p;
	q.domain = "exa mple.com";
	new_fails("space in d=", signer, rsa, &q, 1, "d=exa mple.com s=r2048: "
	    "not a usable domain or selector");
	q = p;
	q.selector = "s;x=1\n";
	new_fails("';' in s=", signer, rsa, &q, 1, "s=s;x=1?");
	q = p;
	q.domain = NULL;
	new_fails("no d=", signer, rsa, &q, 1, "d=(none)");
	q = p;
	q.domain = "a..example.com";
	new_fails("empty label", signer, rsa, &q, 1, "not a usable");
	q = p;
	q.headers = "From:Sub ject";
	new_fails("space in an h= name", signer, rsa, &q, 1,
	    "d=example.com s=r2048: h= list: bad field name");
	q.headers = "From:X(.*)";
	new_fails("regex in an h= name", signer, rsa, &q, 1, "bad field name");
	for (size_t i = 0; i < 70; i++) {
		strcat(longlist, ":X-H");
	}
	q.headers = longlist;
	new_fails("70 h= names", signer, rsa, &q, 1, "more than 64 names");
	longlist[4] = '\0';
	for (size_t i = 0; i < 48; i++) {
		strcat(longlist, ":X-A-Rather-Long-Name");
	}
	q.headers = longlist;
	new_fails("h= list over 1,000 bytes", signer, rsa, &q, 1,
	    "h= list longer than 1000 bytes");
}

/* Sign MSG under P (R2048); the end must give WANT with ERR holding
 * REASON.  FN, if set, runs on the message after the feeding. */
static void
eom_fails(const char *label, const char *msg, const struct ag_sign_params *p,
    ag_status want, const char *reason,
    void (*fn)(struct ag_sign_msg *))
{
	const struct ag_sign_key *keys[1] = { k2048 };
	struct feed f = { 0 };
	char err[256] = "", *values[1] = { (char *)1 };
	ag_status st;

	f.sm = ag_sign_msg_new(signer, label, keys, p, 1, err, sizeof(err));
	assert_non_null(f.sm);
	feed(label, &f, msg);
	if (fn != NULL) {
		fn(f.sm);
	}
	st = ag_sign_eom(f.sm, values, err, sizeof(err));
	if (st != want || values[0] != NULL || strstr(err, reason) == NULL ||
	    strstr(err, "d=example.com s=r2048") == NULL) {
		fail_msg("%s: %s \"%s\", want %s \"%s\"", label, ag_status_str(st),
		    err, ag_status_str(want), reason);
	}
	/* a second end fails too */
	st = ag_sign_eom(f.sm, values, err, sizeof(err));
	if (st != AG_PERMFAIL || values[0] != NULL) {
		fail_msg("%s: second eom gave %s", label, ag_status_str(st));
	}
	ag_sign_msg_free(f.sm);
}

static void
late_header(struct ag_sign_msg *m)
{
	assert_int_equal(ag_sign_header(m, "X-Late", " yes"), AG_OK);
}

static void
test_eom_failures(void **state)
{
	struct ag_sign_params p = { "example.com", "r2048",
	    AG_SIGN_RSA_SHA256, false, false, NULL, 0 };
	const struct ag_sign_key *keys[1] = { k2048 };
	char err[256], *values[1];
	struct ag_sign_msg *m;
	char *big;

	(void)state;
	eom_fails("no From", "Subject: x\nTo: y@example.org\n\nbody\n", &p,
	    AG_PERMFAIL, "no From header field", NULL);
	eom_fails("a header after the end of headers", MSG, &p, AG_PERMFAIL,
	    "after the end of the headers", late_header);

	/* a field over 1 MB */
	big = malloc(1100 * 1024 + 2);
	assert_non_null(big);
	big[0] = ' ';
	memset(big + 1, 'x', 1100 * 1024);
	big[1100 * 1024 + 1] = '\0';
	m = ag_sign_msg_new(signer, "big", keys, &p, 1, err, sizeof(err));
	assert_non_null(m);
	assert_int_equal(ag_sign_header(m, "From", " a@example.com"), AG_OK);
	assert_int_equal(ag_sign_header(m, "X-Big", big), AG_OK);
	assert_int_equal(ag_sign_eoh(m), AG_OK);
	assert_int_equal(ag_sign_body(m, (const unsigned char *)"x\r\n", 3),
	    AG_OK);
	assert_int_equal(ag_sign_eom(m, values, err, sizeof(err)),
	    AG_PERMFAIL);
	assert_non_null(strstr(err, "too large"));
	assert_null(values[0]);
	ag_sign_msg_free(m);
	free(big);

	/* a malformed field name */
	m = ag_sign_msg_new(signer, "name", keys, &p, 1, err, sizeof(err));
	assert_non_null(m);
	assert_int_equal(ag_sign_header(m, "Bad:Name", " x"), AG_OK);
	assert_int_equal(ag_sign_eom(m, values, err, sizeof(err)),
	    AG_PERMFAIL);
	assert_non_null(strstr(err, "malformed header field name"));
	ag_sign_msg_free(m);

	/* eom without eoh or body: no From */
	m = ag_sign_msg_new(signer, "empty", keys, &p, 1, err, sizeof(err));
	assert_non_null(m);
	assert_int_equal(ag_sign_eom(m, values, err, sizeof(err)),
	    AG_PERMFAIL);
	ag_sign_msg_free(m);

	/* NULL handles */
	assert_int_equal(ag_sign_header(NULL, "From", " x"), AG_OK);
	assert_int_equal(ag_sign_eoh(NULL), AG_OK);
	assert_int_equal(ag_sign_body(NULL, (const unsigned char *)"x", 1),
	    AG_OK);
	assert_int_equal(ag_sign_eom(NULL, values, err, sizeof(err)),
	    AG_PERMFAIL);
	ag_sign_msg_free(NULL);
	ag_signer_free(NULL);
}

/* Sign a small message through S under P (key K); the value. */
static char *
sign_small(struct ag_signer *s, const struct ag_sign_key *k,
    const struct ag_sign_params *p)
{
	const struct ag_sign_key *keys[1] = { k };
	struct ag_sign_msg *m;
	char err[256], *v[1];

	m = ag_sign_msg_new(s, "small", keys, p, 1, err, sizeof(err));
	if (m == NULL) {
		fail_msg("x=%u h=%s: %s", p->expire_s, p->headers, err);
	}
	if (ag_sign_header(m, "From", " a@example.com") != AG_OK ||
	    ag_sign_header(m, "Subject", " s") != AG_OK ||
	    ag_sign_header(m, "To", " b@example.org") != AG_OK ||
	    ag_sign_eom(m, v, err, sizeof(err)) != AG_OK) {
		fail_msg("x=%u h=%s: %s", p->expire_s, p->headers, err);
	}
	ag_sign_msg_free(m);
	return v[0];
}

/* Many lifetimes and h= lists on one signer: nothing is cached per
 * setting, so each message gets exactly its own x= and h=. */
static void
test_many_settings(void **state)
{
	struct ag_sign_params p = { "example.com", "ed",
	    AG_SIGN_ED25519_SHA256, false, false, NULL, 0 };
	struct ag_signer *s;
	char h[256], x[32], t[32], list[64], *v;

	(void)state;
	assert_int_equal(ag_signer_new(&s, NULL, 0), AG_OK);
	for (unsigned i = 1; i <= 40; i++) {
		p.expire_s = i * 60;
		snprintf(list, sizeof(list), "From:Subject:X-L%u", i);
		p.headers = i % 2 ? list : NULL;
		v = sign_small(s, ked, &p);
		if (tag(v, "x", x, sizeof(x)) == NULL ||
		    tag(v, "t", t, sizeof(t)) == NULL ||
		    strtoull(x, NULL, 10) != strtoull(t, NULL, 10) + i * 60) {
			fail_msg("lifetime %u: x=%s t=%s", i, x, t);
		}
		tag(v, "h", h, sizeof(h));
		if (count_names(h, "subject") != 1 || count_names(h, "to") !=
		    (i % 2 ? 0U : 1U) || count_names(h, "from") != 2) {
			fail_msg("setting %u: h=%s", i, h);
		}
		free(v);
	}
	ag_signer_free(s);
}

/* Threads signing at once with the same keys (one EVP_PKEY each, shared),
 * every signature then verified. */
#define THREAD_MSGS 20

struct worker {
	unsigned id;
	char *v[THREAD_MSGS];
};

static void *
work(void *arg)
{
	struct worker *w = arg;

	for (unsigned i = 0; i < THREAD_MSGS; i++) {
		const struct ag_sign_key *keys[1] = { i % 2 ? ked : k2048 };
		struct ag_sign_params p = { "example.com", i % 2 ? "ed" :
		    "r2048", i % 2 ? AG_SIGN_ED25519_SHA256 : AG_SIGN_RSA_SHA256,
		    false, false, NULL, 1000 + w->id * 100 + i % 5 };
		struct ag_sign_msg *m;
		char err[256], *v[1];

		m = ag_sign_msg_new(signer, "thread", keys, &p, 1, err,
		    sizeof(err));
		if (m == NULL) {
			continue;
		}
		if (ag_sign_header(m, "From", " a@example.com") == AG_OK &&
		    ag_sign_header(m, "Subject", " threads") == AG_OK &&
		    ag_sign_body(m, (const unsigned char *)"body\r\n", 6) ==
		    AG_OK && ag_sign_eom(m, v, err, sizeof(err)) == AG_OK) {
			w->v[i] = v[0];
		}
		ag_sign_msg_free(m);
	}
	return NULL;
}

static void
test_threads(void **state)
{
	static const char msg[] = "From: a@example.com\nSubject: threads\n"
	    "\nbody\n";
	pthread_t t[2];
	struct worker w[2] = { { .id = 0 }, { .id = 1 } };
	char label[64], x[32], *text;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
	}
	for (size_t i = 0; i < 2; i++) {
		for (unsigned j = 0; j < THREAD_MSGS; j++) {
			snprintf(label, sizeof(label), "thread %zu, message %u",
			    i, j);
			if (w[i].v[j] == NULL ||
			    tag(w[i].v[j], "x", x, sizeof(x)) == NULL) {
				fail_msg("%s: not signed, or no x=", label);
			}
			text = signed_text(&w[i].v[j], 1, msg);
			verify_own(label, text, "pass", NULL);
			free(text);
			free(w[i].v[j]);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_load),
		cmocka_unit_test(test_key_public),
		cmocka_unit_test(test_alg_names),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_b_fold),
		cmocka_unit_test(test_direct_feed),
		cmocka_unit_test(test_dkimpy),
		cmocka_unit_test(test_new_failures),
		cmocka_unit_test(test_eom_failures),
		cmocka_unit_test(test_many_settings),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
