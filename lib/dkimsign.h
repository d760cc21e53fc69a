/*
 * dkimsign.h - DKIM signing (RFC 6376, RFC 8301, RFC 8463) with OpenSSL,
 * streamed with the SMTP phases like lib/dkim.h: header fields, end of
 * headers, body chunks, end of message.  One message may be signed with
 * several keys at once (RSA and Ed25519); the body is hashed as it
 * arrives, never held.  Signing needs no DNS.
 *
 * Keys are read from PEM files, checked (file mode, type, size, that the
 * private and public halves match) and kept parsed in memory, wiped when
 * freed.  No message text ever contains key material.
 *
 * Ownership: a key is the caller's (ag_sign_key_free); a message copies
 * what it needs from its keys and parameters, so both may go once
 * ag_sign_msg_new has returned.  Signature values are the caller's to
 * free.
 *
 * Thread safety: keys are read-only after loading and may be shared; one
 * struct ag_signer serves every thread; a message handle is used by one
 * thread at a time.
 */
#ifndef AG_DKIMSIGN_H
#define AG_DKIMSIGN_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#define AG_SIGN_KEY_FILE_MAX (64 * 1024)	/* bytes of a key file */
#define AG_SIGN_MIN_RSA_BITS 1024	/* RFC 8301 3.2: 2048 recommended */
#define AG_SIGN_MAX_RSA_BITS 8192	/* cost: a signature per message */
#define AG_SIGN_PUBLIC_MAX 2048		/* p= of the largest key, with NUL */
#define AG_SIGN_MAX_KEYS 8		/* signatures on one message */
#define AG_SIGN_MAX_HNAMES 64		/* names in an h= list */

enum ag_sign_alg { AG_SIGN_RSA_SHA256 = 0, AG_SIGN_ED25519_SHA256 };

/* "rsa-sha256", "ed25519-sha256" (a= of RFC 6376 3.5, RFC 8463 3). */
const char *ag_sign_alg_name(enum ag_sign_alg a);

/* Those names, or "rsa", "ed25519" (case ignored), into *OUT: 0 or -1. */
int ag_sign_alg_parse(const char *s, enum ag_sign_alg *out);

/* ---- keys ---------------------------------------------------------------- */

struct ag_sign_key;

/*
 * Load the private key of algorithm ALG from the file PATH.  The file must
 * be a regular file that neither group nor others may read, write or
 * execute (mode & 077 == 0) and at most AG_SIGN_KEY_FILE_MAX bytes; it
 * must hold an unencrypted PEM private key ("RSA PRIVATE KEY" or
 * "PRIVATE KEY") of ALG's type: RSA of AG_SIGN_MIN_RSA_BITS to
 * AG_SIGN_MAX_RSA_BITS bits, or Ed25519.  Errors name the file (and its
 * mode, type or size), never its contents:
 *   AG_PERMFAIL  no such file, not readable, not regular, bad mode, too
 *                large, no PEM private key, a public key or certificate,
 *                encrypted, wrong type, wrong size, halves do not match
 *   AG_TEMPFAIL  out of file descriptors, interrupted
 *   AG_NOMEM
 * ERR may be NULL (ERRLEN 0).  On failure *OUT is NULL.
 */
ag_status ag_sign_key_load(const char *path, enum ag_sign_alg alg,
    struct ag_sign_key **out, char *err, size_t errlen);
void ag_sign_key_free(struct ag_sign_key *k);	/* wipes; NULL is fine */

enum ag_sign_alg ag_sign_key_alg(const struct ag_sign_key *k);
unsigned ag_sign_key_bits(const struct ag_sign_key *k);	/* 256: Ed25519 */

/*
 * The public key as the p= value of its DKIM key record (RFC 6376 3.6.1):
 * base64 of the SubjectPublicKeyInfo DER for RSA, of the raw 32-byte key
 * for Ed25519 (RFC 8463 4).  AG_INVALID when BUFSZ is too small
 * (AG_SIGN_PUBLIC_MAX always suffices) or K is NULL.
 */
ag_status ag_sign_key_public(const struct ag_sign_key *k, char *buf,
    size_t bufsz);

/* ---- signing ------------------------------------------------------------- */

/*
 * How one signature is made.  DOMAIN and SELECTOR are A-labels (letters,
 * digits, '-', dots between labels of 1 to 63 characters); ALG must be
 * the key's.  HEADERS is a colon-separated h= list of field names
 * (letters, digits, '-', '_'; case ignored; at most AG_SIGN_MAX_HNAMES
 * names in 1,000 bytes), or NULL (or no names) for the default: RFC 6376
 * 5.4.1's list, the MIME fields, Message-ID, Sender and
 * List-Unsubscribe-Post (dkimsign.c).  Every instance of a listed field
 * present is signed; From is always signed, listed or not, and
 * over-signed: h= names it once more than it occurs, so a From added
 * later breaks the signature.
 */
struct ag_sign_params {
	const char *domain;		/* d= */
	const char *selector;		/* s= */
	enum ag_sign_alg alg;
	bool header_simple;		/* c= header: false relaxed (default) */
	bool body_simple;		/* c= body: false relaxed (default) */
	const char *headers;		/* h= names, or NULL: the default */
	unsigned expire_s;		/* x= is t= + this; 0: no x= */
};

struct ag_signer;
struct ag_sign_msg;

/* The signer (one per daemon).  ERR may be NULL (ERRLEN 0). */
ag_status ag_signer_new(struct ag_signer **out, char *err, size_t errlen);
void ag_signer_free(struct ag_signer *s);	/* NULL is fine */

/*
 * Start signing one message with the N keys KEYS, the i-th under
 * PARAMS[i] (1 <= N <= AG_SIGN_MAX_KEYS).  ID (the queue id) is not
 * used today.  NULL on failure, with ERR saying why and naming the domain
 * and selector: a NULL key, bad parameters, a key of another algorithm,
 * out of memory.
 */
struct ag_sign_msg *ag_sign_msg_new(struct ag_signer *s, const char *id,
    const struct ag_sign_key *const *keys,
    const struct ag_sign_params *params, size_t n, char *err,
    size_t errlen);
void ag_sign_msg_free(struct ag_sign_msg *m);	/* NULL is fine */

/*
 * Feed the message: each header field, NAME and VALUE exactly as they
 * stand in the message (VALUE is all that follows the colon, leading
 * white space included: see ag_conn_set_leadspc()), folded lines with LF
 * or CRLF (bare LF becomes CRLF); the end of headers; body chunks with
 * CRLF line ends, as the MTA gives them (a body that does not end in
 * CRLF is signed as if it did, RFC 6376 3.4.3, 3.4.4).  Bad input (a
 * field over 1 MB, headers over 8 MB or 10,000 fields in all, a field
 * after the end of headers, a malformed field name, no From) never fails
 * these calls: ag_sign_eom reports it.  AG_NOMEM only.
 */
ag_status ag_sign_header(struct ag_sign_msg *m, const char *name,
    const char *value);
ag_status ag_sign_eoh(struct ag_sign_msg *m);
ag_status ag_sign_body(struct ag_sign_msg *m, const unsigned char *buf,
    size_t len);

/*
 * End of message: VALUES[0..N-1] receive the N DKIM-Signature values in
 * the order of the keys, each the caller frees.  A value is what follows
 * "DKIM-Signature: ", folded with "\n\t" (AG_HEADER_FOLD) as libmilter's
 * smfi_insheader() wants, like every header value the session hands the
 * filter.  The signature covers exactly one space after the colon
 * (simple header canonicalization hashes it): the MTA puts it when
 * SMFIP_HDR_LEADSPC was not agreed, filter/milter.c's apply_edits()
 * when it was.  All or nothing: on failure every VALUES[i] is NULL and
 * ERR names the domain and selector:
 *   AG_PERMFAIL  a crypto failure, or input that cannot be signed (see
 *                ag_sign_header); also a second call
 *   AG_NOMEM
 */
ag_status ag_sign_eom(struct ag_sign_msg *m, char **values, char *err,
    size_t errlen);

#endif
