/*
 * dkimkey.c - DKIM signing keys (see dkimsign.h): reading a key file with
 * the daemon's checks (owner-only mode, a bounded read, an unencrypted
 * PEM private key of the algorithm: RSA 1024-8192 bits or Ed25519, its
 * halves matching), the parsed key kept for lib/dkimsign.c, and the p=
 * value of the public key.  Key material is wiped when freed (OpenSSL
 * clears a private key it frees) and never put in an error text.  Split from lib/dkimsign.c (the signatures).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkimsign.h"
#include "dkimsign_int.h"
#include "log.h"

#define seterr ag_sign_seterr
#define printable ag_sign_printable
#define mem_find ag_sign_mem_find

static const char *const alg_names[] = { "rsa-sha256", "ed25519-sha256" };

struct ag_sign_key {
	enum ag_sign_alg alg;
	unsigned bits;
	EVP_PKEY *pk;		/* parsed once; shared by the messages */
	char pub[AG_SIGN_PUBLIC_MAX];	/* p= */
};

const char *
ag_sign_alg_name(enum ag_sign_alg a)
{
	return (unsigned)a < 2 ? alg_names[a] : "unknown";
}

int
ag_sign_alg_parse(const char *s, enum ag_sign_alg *out)
{
	if (s == NULL) {
		return -1;
	}
	if (strcasecmp(s, "rsa-sha256") == 0 || strcasecmp(s, "rsa") == 0) {
		*out = AG_SIGN_RSA_SHA256;
		return 0;
	}
	if (strcasecmp(s, "ed25519-sha256") == 0 ||
	    strcasecmp(s, "ed25519") == 0) {
		*out = AG_SIGN_ED25519_SHA256;
		return 0;
	}
	return -1;
}

/* Write an error text into ERR, which may be NULL. */
void
ag_sign_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* S made printable ('?' for other bytes) into OUT, cut to OUTSZ - 1. */
const char *
ag_sign_printable(char *out, size_t outsz, const char *s)
{
	size_t j = 0;

	for (size_t i = 0; s != NULL && s[i] != '\0' && j + 1 < outsz; i++) {
		unsigned char c = (unsigned char)s[i];

		out[j++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[j] = '\0';
	return out;
}

/* Does LIT occur in the LEN bytes at S (which may hold NULs)? */
const char *
ag_sign_mem_find(const char *s, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	for (size_t i = 0; n <= len && i <= len - n; i++) {
		if (s[i] == lit[0] && memcmp(s + i, lit, n) == 0) {
			return s + i;
		}
	}
	return NULL;
}

/* ---- keys ---------------------------------------------------------------- */

/* The status for an open() or read() failure E. */
static ag_status
errno_status(int e)
{
	if (e == ENOMEM) {
		return AG_NOMEM;
	}
	return e == EMFILE || e == ENFILE || e == EINTR || e == EAGAIN ?
	    AG_TEMPFAIL : AG_PERMFAIL;
}

/* Read the key file PATH (shown as SHOW) into *BUF (AG_SIGN_KEY_FILE_MAX
 * + 1 bytes, the caller wipes and frees), *LEN bytes, after checking it. */
static ag_status
key_read(const char *path, const char *show, char **buf, size_t *len,
    char *err, size_t errlen)
{
	struct stat st;
	char ebuf[128];
	size_t got = 0;
	ag_status s = AG_OK;
	int fd;

	*buf = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;

		seterr(err, errlen, "key file %s: %s", show,
		    ag_strerror(e, ebuf, sizeof(ebuf)));
		return errno_status(e);
	}
	if (fstat(fd, &st) != 0) {
		seterr(err, errlen, "key file %s: %s", show,
		    ag_strerror(errno, ebuf, sizeof(ebuf)));
		s = AG_PERMFAIL;
	} else if (!S_ISREG(st.st_mode)) {
		seterr(err, errlen, "key file %s is not a regular file", show);
		s = AG_PERMFAIL;
	} else if ((st.st_mode & 077) != 0) {
		seterr(err, errlen, "key file %s has mode %04o: group and "
		    "others must have no access to a private key (chmod 600)",
		    show, (unsigned)(st.st_mode & 07777));
		s = AG_PERMFAIL;
	} else if (st.st_size > AG_SIGN_KEY_FILE_MAX) {
		seterr(err, errlen, "key file %s is larger than %d bytes", show,
		    AG_SIGN_KEY_FILE_MAX);
		s = AG_PERMFAIL;
	} else if ((*buf = malloc(AG_SIGN_KEY_FILE_MAX + 1)) == NULL) {
		seterr(err, errlen, "key file %s: out of memory", show);
		s = AG_NOMEM;
	}
	/* to the end, or one byte past the bound (it may have grown) */
	while (s == AG_OK && got <= AG_SIGN_KEY_FILE_MAX) {
		size_t room = AG_SIGN_KEY_FILE_MAX + 1 - got;
		ssize_t r = read(fd, *buf + got, room);

		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r < 0) {
			int e = errno;

			seterr(err, errlen, "key file %s: %s", show,
			    ag_strerror(e, ebuf, sizeof(ebuf)));
			s = errno_status(e);
		} else if (r == 0) {
			break;
		}
		got += r > 0 ? (size_t)r : 0;
	}
	if (s == AG_OK && got > AG_SIGN_KEY_FILE_MAX) {
		seterr(err, errlen, "key file %s is larger than %d bytes", show,
		    AG_SIGN_KEY_FILE_MAX);
		s = AG_PERMFAIL;
	}
	close(fd);
	*len = got;
	return s;
}

/* OpenSSL's passphrase callback: note the key is encrypted, give none. */
static int
no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	*(bool *)arg = true;
	return -1;
}

/* Why BUF (LEN bytes) gave OpenSSL no private key, for SHOW. */
static void
parse_failure(const char *buf, size_t len, bool asked, const char *show,
    char *err, size_t errlen)
{
	if (asked || mem_find(buf, len, "ENCRYPTED") != NULL) {
		seterr(err, errlen, "key file %s holds an encrypted key: "
		    "authgate needs it unencrypted (and mode 600)", show);
	} else if (mem_find(buf, len, "PRIVATE KEY-----") == NULL &&
	    (mem_find(buf, len, "PUBLIC KEY-----") != NULL ||
	    mem_find(buf, len, "CERTIFICATE-----") != NULL)) {
		seterr(err, errlen, "key file %s holds a public key or "
		    "certificate, not a private key", show);
	} else {
		seterr(err, errlen, "key file %s holds no usable PEM private "
		    "key", show);
	}
}

/* Is PK of ALG's type and size?  The reason into ERR if not. */
static bool
key_type_ok(EVP_PKEY *pk, enum ag_sign_alg alg, const char *show, char *err,
    size_t errlen)
{
	int want = alg == AG_SIGN_RSA_SHA256 ? EVP_PKEY_RSA : EVP_PKEY_ED25519;
	int bits = EVP_PKEY_get_bits(pk);
	const char *type = EVP_PKEY_get0_type_name(pk);

	if (EVP_PKEY_get_base_id(pk) != want) {
		seterr(err, errlen, "key file %s holds a key of type %s, "
		    "not %s", show, type != NULL ? type : "unknown", alg ==
		    AG_SIGN_RSA_SHA256 ? "RSA" : "Ed25519");
		return false;
	}
	if (alg == AG_SIGN_RSA_SHA256 && bits < AG_SIGN_MIN_RSA_BITS) {
		seterr(err, errlen, "key file %s: an RSA key of %d bits is "
		    "too small (RFC 8301: at least %d, 2048 recommended)", show,
		    bits, AG_SIGN_MIN_RSA_BITS);
		return false;
	}
	if (alg == AG_SIGN_RSA_SHA256 && bits > AG_SIGN_MAX_RSA_BITS) {
		seterr(err, errlen, "key file %s: an RSA key of %d bits is "
		    "larger than %d", show, bits, AG_SIGN_MAX_RSA_BITS);
		return false;
	}
	return true;
}

/*
 * Do the private and public halves of PK belong together?  One signature
 * made and verified: about a millisecond for RSA-2048, where OpenSSL 3's
 * EVP_PKEY_pairwise_check() tests the primes (70 ms a key, and every key
 * is loaded again at each reload of the table).
 */
static bool
key_pair_ok(EVP_PKEY *pk)
{
	static const unsigned char msg[] = "authgate key check";
	const EVP_MD *md = EVP_PKEY_get_id(pk) == EVP_PKEY_ED25519 ? NULL :
	    EVP_sha256();
	unsigned char sig[1024];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	bool ok;

	ok = c != NULL && EVP_PKEY_get_size(pk) > 0 &&
	    (size_t)EVP_PKEY_get_size(pk) <= sizeof(sig) &&
	    EVP_DigestSignInit(c, NULL, md, NULL, pk) == 1 &&
	    EVP_DigestSign(c, sig, &siglen, msg, sizeof(msg)) == 1;
	EVP_MD_CTX_free(c);
	if (!ok || (c = EVP_MD_CTX_new()) == NULL) {
		return false;
	}
	ok = EVP_DigestVerifyInit(c, NULL, md, NULL, pk) == 1 &&
	    EVP_DigestVerify(c, sig, siglen, msg, sizeof(msg)) == 1;
	EVP_MD_CTX_free(c);
	return ok;
}

/* The p= value of PK into K->pub; false on no memory. */
static bool
key_public(EVP_PKEY *pk, struct ag_sign_key *k)
{
	unsigned char raw[AG_SIGN_ED25519_LEN], *der = NULL;
	size_t rawlen = sizeof(raw);
	int len;

	if (k->alg == AG_SIGN_ED25519_SHA256) {
		if (EVP_PKEY_get_raw_public_key(pk, raw, &rawlen) != 1 ||
		    rawlen != AG_SIGN_ED25519_LEN) {
			return false;
		}
		EVP_EncodeBlock((unsigned char *)k->pub, raw, (int)rawlen);
		return true;
	}
	len = i2d_PUBKEY(pk, &der);
	/* base64 of LEN bytes: 4 * ceil(LEN / 3) + NUL */
	if (len <= 0 || (size_t)(len + 2) / 3 * 4 + 1 > sizeof(k->pub)) {
		OPENSSL_free(der);
		return false;
	}
	EVP_EncodeBlock((unsigned char *)k->pub, der, len);
	OPENSSL_free(der);
	return true;
}

/* Parse BUF (LEN bytes, from the file shown as SHOW) into K. */
static ag_status
key_parse(const char *buf, size_t len, struct ag_sign_key *k,
    const char *show, char *err, size_t errlen)
{
	BIO *b = BIO_new_mem_buf(buf, (int)len);
	EVP_PKEY *pk = NULL;
	bool asked = false;
	ag_status s = AG_OK;

	if (b == NULL) {
		seterr(err, errlen, "key file %s: out of memory", show);
		return AG_NOMEM;
	}
	pk = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, &asked);
	BIO_free(b);
	if (pk == NULL) {
		parse_failure(buf, len, asked, show, err, errlen);
		s = AG_PERMFAIL;
	} else if (!key_type_ok(pk, k->alg, show, err, errlen)) {
		s = AG_PERMFAIL;
	} else if (!key_pair_ok(pk)) {
		seterr(err, errlen, "key file %s: the key is corrupt (its "
		    "private and public halves do not match)", show);
		s = AG_PERMFAIL;
	} else if (!key_public(pk, k)) {
		seterr(err, errlen, "key file %s: out of memory", show);
		s = AG_NOMEM;
	} else {
		k->bits = (unsigned)EVP_PKEY_get_bits(pk);
		k->pk = pk;
		pk = NULL;
	}
	EVP_PKEY_free(pk);
	ERR_clear_error();	/* leave the thread's queue empty */
	return s;
}

ag_status
ag_sign_key_load(const char *path, enum ag_sign_alg alg,
    struct ag_sign_key **out, char *err, size_t errlen)
{
	struct ag_sign_key *k;
	char show[256], *buf = NULL;
	size_t len = 0;
	ag_status s;

	*out = NULL;
	if (path == NULL || (unsigned)alg > AG_SIGN_ED25519_SHA256) {
		seterr(err, errlen, "no key file or no algorithm");
		return AG_INVALID;
	}
	printable(show, sizeof(show), path);
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		seterr(err, errlen, "key file %s: out of memory", show);
		return AG_NOMEM;
	}
	k->alg = alg;
	s = key_read(path, show, &buf, &len, err, errlen);
	if (s == AG_OK) {
		s = key_parse(buf, len, k, show, err, errlen);
	}
	if (buf != NULL) {
		explicit_bzero(buf, AG_SIGN_KEY_FILE_MAX + 1);
		free(buf);
	}
	if (s != AG_OK) {
		ag_sign_key_free(k);
		return s;
	}
	*out = k;
	return AG_OK;
}

void
ag_sign_key_free(struct ag_sign_key *k)
{
	if (k != NULL) {
		EVP_PKEY_free(k->pk);
		free(k);
	}
}

enum ag_sign_alg
ag_sign_key_alg(const struct ag_sign_key *k)
{
	return k != NULL ? k->alg : AG_SIGN_RSA_SHA256;
}

unsigned
ag_sign_key_bits(const struct ag_sign_key *k)
{
	return k != NULL ? k->bits : 0;
}

ag_status
ag_sign_key_public(const struct ag_sign_key *k, char *buf, size_t bufsz)
{
	size_t len;

	if (k == NULL || buf == NULL || (len = strlen(k->pub)) >= bufsz) {
		return AG_INVALID;
	}
	memcpy(buf, k->pub, len + 1);
	return AG_OK;
}

EVP_PKEY *
ag_sign_key_pkey(const struct ag_sign_key *k)
{
	return k->pk;
}
