/*
 * ctl_key.c - authgatectl key: make a DKIM signing key and the DNS record
 * to publish for it (generate), show the keys in a directory (list), and
 * check that the record published in DNS matches a key (test).
 *
 * Keys are made with OpenSSL and written as unencrypted PKCS#8 PEM, mode
 * 0600, atomically: a temporary file in the same directory (O_EXCL, 0600),
 * fsync, then link (no overwriting) or rename (--force); run as root with
 * UserID set, the file (and a directory made for it) belongs to that user,
 * who reads it once the daemon has dropped privileges.  They are read
 * back only through lib/dkimsign.h, the signer's own loader, so that what
 * `key list` and `key test` say about a file is what authgate will make
 * of it.  The private key is never printed or logged: only the public
 * half (the p= value) leaves this file; its PEM text lives in OpenSSL's
 * cleared memory and is never in an error message.
 *
 * `key test` asks the daemon's resolver (lib/dns.h) with the config's
 * DNSServer and DNSTimeout, so it sees what the daemon would see.
 */
#include "autoconf.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "addr.h"
#include "ctl.h"
#include "dkimsign.h"
#include "dns.h"

#define CTL_KEY_DIR "/etc/authgate/keys"	/* --dir default */
#define CTL_KEY_SUFFIX ".key"

/* RFC 8301 3.2: signers MUST use RSA keys of at least 1024 bits (and
 * SHOULD use 2048); 4096 is as far as verifiers are required to go. */
#define CTL_KEY_RSA_MIN 1024
#define CTL_KEY_RSA_MAX 4096
#define CTL_KEY_RSA_DEFAULT 2048
#define CTL_KEY_ED25519_BITS 256	/* RFC 8463: a 32-byte public key */

/* RFC 1035 2.3.4: labels of at most 63 octets, names of at most 253
 * characters in text form (255 octets on the wire). */
#define CTL_KEY_LABEL_MAX 63
#define CTL_KEY_NAME_MAX 253
/* RFC 1035 3.3.14: a TXT character-string holds at most 255 bytes. */
#define CTL_KEY_TXT_STRING_MAX 255

/* A DER SubjectPublicKeyInfo of a 4096-bit RSA key is 550 bytes; the
 * p= value is its base64, the TXT value a few bytes more. */
#define CTL_KEY_DER_MAX 1024
#define CTL_KEY_P_MAX (4 * (CTL_KEY_DER_MAX / 3 + 1) + 1)
#define CTL_KEY_TXT_MAX (CTL_KEY_P_MAX + 64)

/* The key types of DKIM (k= of the key record, RFC 6376 3.6.1, RFC 8463). */
enum keytype { KEY_RSA, KEY_ED25519, KEY_NTYPES };

static const char *const keytype_name[KEY_NTYPES] = { "rsa", "ed25519" };

/* Every option of every key verb; each verb takes only some. */
struct keyopts {
	const char *domain, *selector, *alg, *bits, *dir, *key;
	bool force;
};

/* A domain and selector, checked, and the name of their key record. */
struct keyname {
	char domain[AG_ADDR_DOMAIN_MAX + 1];	/* A-label form */
	char selector[CTL_KEY_NAME_MAX + 1];	/* lower case */
	char txt_name[CTL_KEY_NAME_MAX + 1];	/* S._domainkey.D */
};

/* ---- arguments ------------------------------------------------------------ */

/* What a key verb takes besides --json. */
struct keyverb {
	const char *name;
	const struct optdef *defs;
	size_t ndefs;
	size_t npos;		/* positional arguments (DOMAIN SELECTOR) */
	bool force;		/* --force */
};

/* The arguments of verb V into O and POS; a CTL_* status. */
static int
key_args(struct ctl *c, struct args *a, const struct keyverb *v,
    struct keyopts *o, const char **pos)
{
	size_t ipos = 0;
	int got;

	while (a->i < a->argc) {
		if ((got = opt_table(a, v->defs, v->ndefs, o)) != 0) {
			if (got < 0) {
				return CTL_USAGE;
			}
		} else if (opt_flag(a, "--json")) {
			c->json = true;
		} else if (v->force && opt_flag(a, "--force")) {
			o->force = true;
		} else if (a->argv[a->i][0] != '-' && ipos < v->npos) {
			pos[ipos++] = a->argv[a->i++];
		} else {
			return ctl_err(CTL_USAGE, "key %s: unexpected argument "
			    "'%s'", v->name, a->argv[a->i]);
		}
	}
	if (ipos < v->npos) {
		return ctl_err(CTL_USAGE, "key %s needs DOMAIN and SELECTOR",
		    v->name);
	}
	return CTL_OK;
}

/*
 * Is S a selector or signing domain?  RFC 6376 3.1 (s=) and 3.5 (d=):
 * sub-domain *("." sub-domain), sub-domain being an RFC 5321 label of
 * letters, digits and hyphens, not starting or ending with a hyphen (no
 * underscore), of at most 63 characters.
 */
static bool
labels_ok(const char *s)
{
	size_t len = 0;

	for (; *s != '\0'; s++) {
		if (*s == '.') {
			if (len == 0 || s[-1] == '-') {
				return false;
			}
			len = 0;
		} else if (isascii((unsigned char)*s) &&
		    (isalnum((unsigned char)*s) || (*s == '-' && len > 0))) {
			if (++len > CTL_KEY_LABEL_MAX) {
				return false;
			}
		} else {
			return false;
		}
	}
	return len > 0 && s[-1] != '-';
}

/* Check DOMAIN and SELECTOR into N; a CTL_* status. */
static int
key_name(const char *domain, const char *selector, struct keyname *n)
{
	char norm[AG_ADDR_DOMAIN_MAX + 1];
	size_t i;
	int len;

	if (domain == NULL || selector == NULL) {
		return ctl_err(CTL_USAGE, "key needs --domain DOMAIN and "
		    "--selector SELECTOR");
	}
	if (ag_domain_normalize(domain, norm, sizeof(norm)) != AG_OK ||
	    strchr(norm, '.') == NULL ||
	    ag_domain_alabel(norm, n->domain, sizeof(n->domain)) != AG_OK ||
	    !labels_ok(n->domain)) {
		return ctl_err(CTL_USAGE, "bad domain '%s' (a domain name "
		    "such as example.com)", domain);
	}
	if (strlen(selector) > CTL_KEY_NAME_MAX || !labels_ok(selector)) {
		return ctl_err(CTL_USAGE, "bad selector '%s' (RFC 6376 3.1: "
		    "labels of letters, digits and hyphens, separated by "
		    "dots)", selector);
	}
	for (i = 0; selector[i] != '\0'; i++) {
		n->selector[i] = (char)tolower((unsigned char)selector[i]);
	}
	n->selector[i] = '\0';
	len = snprintf(n->txt_name, sizeof(n->txt_name), "%s._domainkey.%s",
	    n->selector, n->domain);
	if (len < 0 || (size_t)len >= sizeof(n->txt_name)) {
		return ctl_err(CTL_USAGE, "%s._domainkey.%s is longer than a "
		    "domain name may be (%d)", n->selector, n->domain,
		    CTL_KEY_NAME_MAX);
	}
	return CTL_OK;
}

/* DIR/DOMAIN.SELECTOR.key into BUF; a CTL_* status. */
static int
key_path(const char *dir, const struct keyname *n, char *buf, size_t bufsz)
{
	int len = snprintf(buf, bufsz, "%s/%s.%s%s", dir, n->domain,
	    n->selector, CTL_KEY_SUFFIX);

	if (len < 0 || (size_t)len >= bufsz) {
		return ctl_err(CTL_USAGE, "--dir: path too long");
	}
	return CTL_OK;
}

/* ---- the signer's view of a key file -------------------------------------- */

/* The DKIM key type (k=) of signing algorithm ALG. */
static enum keytype
alg_keytype(enum ag_sign_alg alg)
{
	return alg == AG_SIGN_ED25519_SHA256 ? KEY_ED25519 : KEY_RSA;
}

/* Does the loader's message ERR say the file holds another type of key? */
static bool
key_err_is_type(const char *err)
{
	return strstr(err, "holds a key of type") != NULL;	/* dkimsign.c */
}

/*
 * Load PATH through the signer's loader, of whichever type it is: the
 * key into *KEY, its algorithm into *ALG.  The loader wants the type up
 * front, so RSA is tried first, then Ed25519; when neither takes the
 * file, the message kept is the one of the type the file holds (the
 * other one only says "wrong type").  AG_OK, or the loader's status with
 * its message in ERR.
 */
static ag_status
key_load(const char *path, struct ag_sign_key **key, enum ag_sign_alg *alg,
    char *err, size_t errlen)
{
	char rsa_err[512];
	ag_status st;

	*alg = AG_SIGN_RSA_SHA256;
	if ((st = ag_sign_key_load(path, *alg, key, rsa_err,
	    sizeof(rsa_err))) == AG_OK) {
		return AG_OK;
	}
	*alg = AG_SIGN_ED25519_SHA256;
	if (ag_sign_key_load(path, *alg, key, err, errlen) == AG_OK) {
		return AG_OK;
	}
	if (!key_err_is_type(err)) {
		return AG_PERMFAIL;
	}
	snprintf(err, errlen, "%s", rsa_err);
	return st;
}

/* ---- generate ------------------------------------------------------------- */

/* The p= value (base64) of public key K of type T into OUT; 0 or -1. */
static int
pkey_p_value(EVP_PKEY *k, enum keytype t, char *out, size_t outsz)
{
	unsigned char der[CTL_KEY_DER_MAX], *p = der;
	size_t n = sizeof(der);
	int len;

	if (t == KEY_ED25519) {
		/* RFC 8463 4.2: the bare 32-byte key, not an SPKI */
		if (EVP_PKEY_get_raw_public_key(k, der, &n) != 1) {
			return -1;
		}
	} else {
		/* RFC 6376 3.6.1 as practised: a DER SubjectPublicKeyInfo */
		len = i2d_PUBKEY(k, NULL);
		if (len <= 0 || (size_t)len > sizeof(der) ||
		    i2d_PUBKEY(k, &p) != len) {
			return -1;
		}
		n = (size_t)len;
	}
	if (outsz < 4 * ((n + 2) / 3) + 1) {
		return -1;
	}
	EVP_EncodeBlock((unsigned char *)out, der, (int)n);
	return 0;
}

/* Write LEN bytes of BUF to FD; 0 or -1 (errno set). */
static int
write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, buf, len)) < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Who must own a new key: with UserID set and run as root, the daemon
 * reads its keys (at every policy reload) as that user, so a key file,
 * and a key directory made here, are given to it and its group (and so
 * is a database `init` makes).  Otherwise *UID and *GID are -1: no
 * change.  A CTL_* status.
 */
int
ctl_daemon_owner(const struct ctl *c, uid_t *uid, gid_t *gid)
{
	char buf[256], *colon;
	struct passwd *pw;
	struct group *gr;

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (c->cfg->user_id == NULL || geteuid() != 0) {
		return CTL_OK;
	}
	snprintf(buf, sizeof(buf), "%s", c->cfg->user_id);
	if ((colon = strchr(buf, ':')) != NULL) {
		*colon++ = '\0';
	}
	if ((pw = getpwnam(buf)) == NULL) {
		return ctl_err(CTL_FAIL, "UserID: no such user: %s", buf);
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (colon != NULL) {
		if ((gr = getgrnam(colon)) == NULL) {
			return ctl_err(CTL_FAIL, "UserID: no such group: %s",
			    colon);
		}
		*gid = gr->gr_gid;
	}
	return CTL_OK;
}

/*
 * Make DIR (0700, owned by UID:GID unless -1) and any missing parent
 * (0755); a CTL_* status.
 */
static int
make_dir(const char *dir, uid_t uid, gid_t gid)
{
	char path[PATH_MAX];
	struct stat st;
	size_t i, len = strlen(dir);

	while (len > 1 && dir[len - 1] == '/') {
		len--;		/* "keys/" is "keys": it gets 0700 */
	}
	if (stat(dir, &st) == 0) {
		return S_ISDIR(st.st_mode) ? CTL_OK :
		    ctl_err(CTL_FAIL, "%s: not a directory", dir);
	}
	if (len >= sizeof(path)) {
		return ctl_err(CTL_USAGE, "--dir: path too long");
	}
	memcpy(path, dir, len);
	path[len] = '\0';
	for (i = 1; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0') {
			continue;
		}
		path[i] = '\0';
		if (mkdir(path, i == len ? 0700 : 0755) != 0 &&
		    (errno != EEXIST || stat(path, &st) != 0 ||
		    !S_ISDIR(st.st_mode))) {
			return ctl_err(CTL_FAIL, "cannot create %s: %s", path,
			    errno == EEXIST ? "not a directory" :
			    strerror(errno));
		}
		path[i] = i == len ? '\0' : '/';
	}
	if (uid != (uid_t)-1 && chown(path, uid, gid) != 0) {
		return ctl_err(CTL_FAIL, "cannot give %s to UserID: %s", dir,
		    strerror(errno));
	}
	return CTL_OK;
}

/* Where a new key goes, and who owns it. */
struct keydest {
	const char *dir, *path;
	bool force;		/* replace an existing file */
	uid_t uid;		/* -1: as created */
	gid_t gid;
};

/*
 * Write PEM (LEN bytes) to D->path atomically, mode 0600: a new temporary
 * file in D->dir, fsync, then link (refusing an existing file) or, with
 * D->force, rename over it; then fsync the directory.  A CTL_* status.
 */
static int
write_key_file(const struct keydest *d, const char *pem, size_t len)
{
	const char *dir = d->dir, *path = d->path;
	char tmp[PATH_MAX];
	int fd, dfd, e = 0;
	const char *what = "writing";

	if (snprintf(tmp, sizeof(tmp), "%s/.authgatectl-key.XXXXXX", dir) >=
	    (int)sizeof(tmp)) {
		return ctl_err(CTL_USAGE, "--dir: path too long");
	}
	/* mkostemp: O_CREAT|O_EXCL, mode 0600 whatever the umask */
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		return ctl_err(CTL_FAIL, "cannot create a file in %s: %s", dir,
		    strerror(errno));
	}
	if (fchmod(fd, 0600) != 0 || (d->uid != (uid_t)-1 &&
	    fchown(fd, d->uid, d->gid) != 0) || write_all(fd, pem, len) != 0) {
		e = errno;
	} else if (fsync(fd) != 0) {
		what = "syncing";
		e = errno;
	}
	if (close(fd) != 0 && e == 0) {
		e = errno;
	}
	if (e == 0) {
		what = "installing";
		if ((d->force ? rename(tmp, path) : link(tmp, path)) != 0) {
			e = errno;
		}
	}
	if (e != 0 || !d->force) {
		unlink(tmp);
	}
	if (e == EEXIST) {
		return ctl_err(CTL_FAIL, "%s exists (--force replaces it)",
		    path);
	}
	if (e != 0) {
		return ctl_err(CTL_FAIL, "%s %s: %s", what, path, strerror(e));
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dfd);	/* the new name survives a crash too */
		close(dfd);
	}
	return CTL_OK;
}

/* Make a key of type T (BITS for RSA); NULL on failure. */
static EVP_PKEY *
keygen(enum keytype t, unsigned bits)
{
	if (t == KEY_ED25519) {
		return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	}
	return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
}

/* Make the key, write it to D and put its p= value in P; a CTL_* status. */
static int
make_key(const struct keydest *d, enum keytype t, unsigned bits, char *p,
    size_t psz)
{
	EVP_PKEY *k = keygen(t, bits);
	BIO *mem = BIO_new(BIO_s_secmem());	/* cleared when freed */
	char *pem = NULL;
	long len = 0;
	int rc = CTL_OK;

	if (k == NULL || mem == NULL) {
		rc = ctl_err(CTL_FAIL, "OpenSSL could not make a %s key",
		    keytype_name[t]);
	} else if (PEM_write_bio_PKCS8PrivateKey(mem, k, NULL, NULL, 0, NULL,
	    NULL) != 1 || (len = BIO_get_mem_data(mem, &pem)) <= 0 ||
	    pkey_p_value(k, t, p, psz) != 0) {
		rc = ctl_err(CTL_FAIL, "OpenSSL could not encode the %s key",
		    keytype_name[t]);
	} else {
		rc = write_key_file(d, pem, (size_t)len);
	}
	BIO_free(mem);
	EVP_PKEY_free(k);
	return rc;
}

/* Print NAME. IN TXT ( "..." "..." ), strings of at most 255 bytes. */
static void
put_txt_record(FILE *fp, const char *name, const char *val)
{
	size_t len = strlen(val), off, n;

	fprintf(fp, "%s. IN TXT (", name);
	for (off = 0; off < len || off == 0; off += CTL_KEY_TXT_STRING_MAX) {
		n = len - off < CTL_KEY_TXT_STRING_MAX ? len - off :
		    CTL_KEY_TXT_STRING_MAX;
		/* the value is base64 and fixed text: nothing to escape */
		fprintf(fp, "%s\"%.*s\"", off > 0 ? "\n\t" : " ", (int)n,
		    val + off);
	}
	fputs(" )\n", fp);
}

/* What generate made: the file, the record, and how to sign with it. */
static void
generate_print(struct ctl *c, const struct keyname *n, const char *path,
    enum keytype t, unsigned bits, const char *txt)
{
	const char *alg = ag_sign_alg_name(t == KEY_ED25519 ?
	    AG_SIGN_ED25519_SHA256 : AG_SIGN_RSA_SHA256);

	if (c->json) {
		fputs("{\"domain\":", stdout);
		put_json(stdout, n->domain);
		fputs(",\"selector\":", stdout);
		put_json(stdout, n->selector);
		printf(",\"algorithm\":\"%s\",\"bits\":%u,\"key_file\":",
		    keytype_name[t], bits);
		put_json(stdout, path);
		fputs(",\"txt_name\":", stdout);
		put_json(stdout, n->txt_name);
		fputs(",\"txt_value\":", stdout);
		put_json(stdout, txt);
		puts("}");
		return;
	}
	printf("key file: ");
	put_text(stdout, path);
	printf(" (%s, %u bits)\npublish this DNS record:\n", keytype_name[t],
	    bits);
	put_txt_record(stdout, n->txt_name, txt);
	printf("then sign with it:\nauthgatectl sign add --domain %s "
	    "--selector %s --key ", n->domain, n->selector);
	put_text(stdout, path);
	printf(" --algorithm %s\n", alg);
}

/* The key type and size options of generate; a CTL_* status. */
static int
generate_type(const struct keyopts *o, enum keytype *t, unsigned *bits)
{
	char *end;
	long v;

	*t = KEY_RSA;
	if (o->alg != NULL && strcmp(o->alg, "ed25519") == 0) {
		*t = KEY_ED25519;
	} else if (o->alg != NULL && strcmp(o->alg, "rsa") != 0) {
		return ctl_err(CTL_USAGE, "--algorithm '%s': expected rsa or "
		    "ed25519", o->alg);
	}
	*bits = *t == KEY_ED25519 ? CTL_KEY_ED25519_BITS : CTL_KEY_RSA_DEFAULT;
	if (o->bits == NULL) {
		return CTL_OK;
	}
	if (*t == KEY_ED25519) {
		return ctl_err(CTL_USAGE, "--bits: Ed25519 keys have one size");
	}
	errno = 0;
	v = strtol(o->bits, &end, 10);
	if (!isdigit((unsigned char)o->bits[0]) || *end != '\0' ||
	    errno != 0) {
		return ctl_err(CTL_USAGE, "--bits '%s': expected a number",
		    o->bits);
	}
	if (v < CTL_KEY_RSA_MIN || v > CTL_KEY_RSA_MAX) {
		return ctl_err(CTL_USAGE, "--bits %ld: RSA keys must have %d "
		    "to %d bits (RFC 8301 3.2: at least %d)", v,
		    CTL_KEY_RSA_MIN, CTL_KEY_RSA_MAX, CTL_KEY_RSA_MIN);
	}
	*bits = (unsigned)v;
	return CTL_OK;
}

/* key generate: a new key file and the record to publish. */
static int
cmd_key_generate(struct ctl *c, struct args *a)
{
	static const struct optdef defs[] = {
		{ "--domain", offsetof(struct keyopts, domain) },
		{ "--selector", offsetof(struct keyopts, selector) },
		{ "--algorithm", offsetof(struct keyopts, alg) },
		{ "--bits", offsetof(struct keyopts, bits) },
		{ "--dir", offsetof(struct keyopts, dir) },
	};
	static const struct keyverb v = { "generate", defs, NELEM(defs), 0,
		true };
	struct keyopts o = { .dir = CTL_KEY_DIR };
	struct keyname n;
	struct keydest d;
	char dir[PATH_MAX], path[PATH_MAX], p[CTL_KEY_P_MAX],
	    txt[CTL_KEY_TXT_MAX];
	enum keytype t = KEY_RSA;
	unsigned bits = 0;
	int rc;

	if ((rc = key_args(c, a, &v, &o, NULL)) != CTL_OK ||
	    (rc = key_name(o.domain, o.selector, &n)) != CTL_OK ||
	    (rc = generate_type(&o, &t, &bits)) != CTL_OK ||
	    (rc = ctl_daemon_owner(c, &d.uid, &d.gid)) != CTL_OK ||
	    (rc = make_dir(o.dir, d.uid, d.gid)) != CTL_OK) {
		return rc;
	}
	/* the sign add command and the daemon need an absolute path */
	if (realpath(o.dir, dir) == NULL) {
		return ctl_err(CTL_FAIL, "%s: %s", o.dir, strerror(errno));
	}
	if ((rc = key_path(dir, &n, path, sizeof(path))) != CTL_OK) {
		return rc;
	}
	if (!o.force && access(path, F_OK) == 0) {	/* before the work */
		return ctl_err(CTL_FAIL, "%s exists (--force replaces it)",
		    path);
	}
	d.dir = dir;
	d.path = path;
	d.force = o.force;
	if ((rc = make_key(&d, t, bits, p, sizeof(p))) != CTL_OK) {
		return rc;
	}
	snprintf(txt, sizeof(txt), "v=DKIM1; k=%s; p=%s", keytype_name[t], p);
	generate_print(c, &n, path, t, bits, txt);
	return CTL_OK;
}

/* ---- list ----------------------------------------------------------------- */

/* One key file as list shows it. */
struct keyfile {
	char *name;
	unsigned mode;		/* permission bits */
	bool loaded;
	enum keytype type;
	unsigned bits;
	char err[256];		/* the loader's message when not loaded */
};

static int
name_cmp(const void *x, const void *y)
{
	return strcmp(((const struct keyfile *)x)->name,
	    ((const struct keyfile *)y)->name);
}

/* Is the file named NAME one of ours: "*.key", not hidden? */
static bool
is_key_name(const char *name)
{
	size_t len = strlen(name), sl = strlen(CTL_KEY_SUFFIX);

	return name[0] != '.' && len > sl &&
	    strcmp(name + len - sl, CTL_KEY_SUFFIX) == 0;
}

/* Stat and load DIR/KF->name into KF. */
static void
key_inspect(const char *dir, struct keyfile *kf)
{
	struct ag_sign_key *key = NULL;
	enum ag_sign_alg alg;
	char path[PATH_MAX];
	struct stat st;

	if (snprintf(path, sizeof(path), "%s/%s", dir, kf->name) >=
	    (int)sizeof(path)) {
		snprintf(kf->err, sizeof(kf->err), "path too long");
		return;
	}
	if (stat(path, &st) != 0) {
		snprintf(kf->err, sizeof(kf->err), "%s", strerror(errno));
		return;
	}
	kf->mode = (unsigned)st.st_mode & 07777;
	if (key_load(path, &key, &alg, kf->err, sizeof(kf->err)) == AG_OK) {
		kf->loaded = true;
		kf->type = alg_keytype(alg);
		kf->bits = ag_sign_key_bits(key);
		ag_sign_key_free(key);
	}
}

/* The *.key files of DIR, sorted, inspected; a CTL_* status. */
static int
key_scan(const char *dir, struct keyfile **out, size_t *nout)
{
	struct keyfile *kf = NULL, *grown;
	struct dirent *de;
	size_t n = 0, cap = 0;
	DIR *d;

	if ((d = opendir(dir)) == NULL) {
		return ctl_err(CTL_FAIL, "%s: %s", dir, strerror(errno));
	}
	while ((de = readdir(d)) != NULL) {
		if (!is_key_name(de->d_name)) {
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			if ((grown = realloc(kf, cap * sizeof(*kf))) == NULL) {
				break;
			}
			kf = grown;
		}
		memset(&kf[n], 0, sizeof(kf[n]));
		if ((kf[n].name = strdup(de->d_name)) == NULL) {
			break;
		}
		n++;
	}
	closedir(d);
	*out = kf;
	*nout = n;
	if (de != NULL) {
		return ctl_err(CTL_FAIL, "out of memory");
	}
	if (n > 1) {
		qsort(kf, n, sizeof(*kf), name_cmp);	/* kf NULL when empty */
	}
	for (size_t i = 0; i < n; i++) {
		key_inspect(dir, &kf[i]);
	}
	return CTL_OK;
}

/* Others than the owner may read or write it. */
static bool
mode_open(unsigned mode)
{
	return (mode & 077) != 0;
}

/* The key files as a JSON array. */
static void
list_json(const struct keyfile *kf, size_t n)
{
	putchar('[');
	for (size_t i = 0; i < n; i++) {
		fputs(i ? ",\n {\"file\":" : "{\"file\":", stdout);
		put_json(stdout, kf[i].name);
		fputs(",\"algorithm\":", stdout);
		put_json(stdout, kf[i].loaded ? keytype_name[kf[i].type] : NULL);
		fputs(",\"bits\":", stdout);
		put_json_limit(stdout, kf[i].loaded ? (int64_t)kf[i].bits : -1);
		printf(",\"mode\":\"%04o\",\"status\":\"%s\",\"error\":",
		    kf[i].mode, kf[i].loaded ? "ok" : "error");
		put_json(stdout, kf[i].loaded ? NULL : kf[i].err);
		printf(",\"warning\":%s}", mode_open(kf[i].mode) ?
		    "\"readable by group or others\"" : "null");
	}
	puts("]");
}

/* The key files as a table. */
static void
list_text(const struct keyfile *kf, size_t n)
{
	size_t w = 4, i, wi;

	for (i = 0; i < n; i++) {
		wi = put_text(NULL, kf[i].name);
		w = wi > w ? wi : w;
	}
	printf("%-*s %-9s %-5s %-4s %s\n", (int)w, "FILE", "ALGORITHM",
	    "BITS", "MODE", "STATUS");
	for (i = 0; i < n; i++) {
		wi = put_text(stdout, kf[i].name);
		if (kf[i].loaded) {
			printf("%*s %-9s %-5u %04o ok", (int)(w - wi), "",
			    keytype_name[kf[i].type], kf[i].bits, kf[i].mode);
		} else {
			printf("%*s %-9s %-5s %04o ", (int)(w - wi), "", "-",
			    "-", kf[i].mode);
			put_text(stdout, kf[i].err);
		}
		fputs(mode_open(kf[i].mode) ? "  WARNING: readable by group "
		    "or others (chmod 600)\n" : "\n", stdout);
	}
}

/* key list: the key files of a directory and what the signer makes of them. */
static int
cmd_key_list(struct ctl *c, struct args *a)
{
	static const struct optdef defs[] = {
		{ "--dir", offsetof(struct keyopts, dir) },
	};
	static const struct keyverb v = { "list", defs, NELEM(defs), 0, false };
	struct keyopts o = { .dir = CTL_KEY_DIR };
	struct keyfile *kf = NULL;
	size_t n = 0, i;
	int rc;

	if ((rc = key_args(c, a, &v, &o, NULL)) != CTL_OK) {
		return rc;
	}
	if ((rc = key_scan(o.dir, &kf, &n)) == CTL_OK) {
		if (c->json) {
			list_json(kf, n);
		} else {
			list_text(kf, n);
		}
	}
	for (i = 0; i < n; i++) {
		free(kf[i].name);
	}
	free(kf);
	return rc;
}

/* ---- test ----------------------------------------------------------------- */

/* The tags of a key record that test reads (RFC 6376 3.6.1). */
struct keyrec {
	char *v, *k, *p;
};

/* Is C folding white space (FWS), as tag-lists allow around values? */
static bool
is_fws(int ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* S with FWS cut off both ends (in place). */
static char *
trim(char *s)
{
	char *e = s + strlen(s);

	while (is_fws(*s)) {
		s++;
	}
	while (e > s && is_fws(e[-1])) {
		*--e = '\0';
	}
	return s;
}

/* One tag-spec "NAME=VALUE" of a key record into R; NULL or what is wrong. */
static const char *
tag_take(char *spec, bool first, struct keyrec *r)
{
	char *eq = strchr(spec, '='), *name, *val, **slot = NULL;
	size_t i;

	if (eq == NULL) {
		return "a tag without '='";
	}
	*eq = '\0';
	name = trim(spec);
	val = trim(eq + 1);
	for (i = 0; name[i] != '\0'; i++) {	/* ALPHA *ALNUMPUNC */
		if (!isascii((unsigned char)name[i]) ||
		    !(isalpha((unsigned char)name[i]) || (i > 0 &&
		    (isdigit((unsigned char)name[i]) || name[i] == '_')))) {
			return "bad tag name";
		}
	}
	for (i = 0; val[i] != '\0'; i++) {	/* VALCHAR and FWS */
		if (!is_fws(val[i]) && (val[i] < 0x21 || val[i] > 0x7e)) {
			return "bad character in a tag value";
		}
	}
	if (i == 0 && name[0] == '\0') {
		return "an empty tag";
	}
	slot = strcmp(name, "v") == 0 ? &r->v : strcmp(name, "k") == 0 ?
	    &r->k : strcmp(name, "p") == 0 ? &r->p : NULL;
	if (slot == &r->v && !first) {
		return "v= is not the first tag";
	}
	if (slot != NULL && *slot != NULL) {
		return "a tag given twice";
	}
	if (slot != NULL) {
		*slot = val;
	}
	return NULL;
}

/* Parse the tag-list TXT (RFC 6376 3.2) in place; NULL or what is wrong. */
static const char *
keyrec_parse(char *txt, struct keyrec *r)
{
	char *p = txt, *semi;
	const char *why;
	bool first = true;

	memset(r, 0, sizeof(*r));
	for (;;) {
		if ((semi = strchr(p, ';')) != NULL) {
			*semi = '\0';
		}
		if (*trim(p) == '\0') {
			if (semi != NULL) {	/* only a final ';' may be bare */
				return "an empty tag";
			}
		} else if ((why = tag_take(p, first, r)) != NULL) {
			return why;
		}
		first = false;
		if (semi == NULL) {
			return NULL;
		}
		p = semi + 1;
	}
}

/* P without its FWS (base64 may be folded), in place. */
static void
strip_fws(char *p)
{
	char *o = p;

	for (; *p != '\0'; p++) {
		if (!is_fws(*p)) {
			*o++ = *p;
		}
	}
	*o = '\0';
}

/* What test found: a result code, and the sentence that says it. */
struct keytest {
	const char *result;	/* "match", "no-record", "revoked", ... */
	char msg[768];
};

/* Record a failure of kind RESULT. */
static void __attribute__((format(printf, 3, 4)))
test_fail(struct keytest *kt, const char *result, const char *fmt, ...)
{
	va_list ap;

	kt->result = result;
	va_start(ap, fmt);
	vsnprintf(kt->msg, sizeof(kt->msg), fmt, ap);
	va_end(ap);
}

/* Compare the one record of RES with our key (type T, p= value P). */
static void
test_record(const struct keyname *n, const struct ag_dns_result *res,
    enum keytype t, const char *p, struct keytest *kt)
{
	char txt[AG_DNS_TXT_MAX];
	struct keyrec r;
	const char *why;
	size_t len;

	if (res->n > 1) {
		test_fail(kt, "several-records", "%zu TXT records at %s: a "
		    "verifier uses one of them (RFC 6376 3.6.2.2); publish "
		    "only one", res->n, n->txt_name);
	} else if (ag_dns_txt_join(&res->rr[0], txt, sizeof(txt), &len) !=
	    AG_OK || memchr(txt, '\0', len) != NULL) {
		test_fail(kt, "bad-record", "the TXT record at %s is "
		    "malformed", n->txt_name);
	} else if ((why = keyrec_parse(txt, &r)) != NULL) {
		test_fail(kt, "bad-record", "the record at %s is not a DKIM "
		    "key record: %s", n->txt_name, why);
	} else if (r.v != NULL && strcmp(r.v, "DKIM1") != 0) {
		test_fail(kt, "bad-record", "the record at %s has v=%.32s, not "
		    "v=DKIM1: verifiers ignore it", n->txt_name, r.v);
	} else if (r.p == NULL) {
		test_fail(kt, "no-p", "the record at %s has no p= (public "
		    "key)", n->txt_name);
	} else if (strip_fws(r.p), r.p[0] == '\0') {
		test_fail(kt, "revoked", "the key at %s is revoked (empty p=)",
		    n->txt_name);
	} else if (strcasecmp(r.k != NULL ? r.k : "rsa", keytype_name[t]) !=
	    0) {
		test_fail(kt, "k-mismatch", "the record at %s says k=%.32s but "
		    "the key file holds an %s key", n->txt_name,
		    r.k != NULL ? r.k : "rsa (by default)", keytype_name[t]);
	} else if (strcmp(r.p, p) != 0) {
		test_fail(kt, "different-key", "the record at %s does not "
		    "match the key file: it publishes another key",
		    n->txt_name);
	} else {
		kt->result = "match";
	}
}

/* Look up the record of N and compare it with our key; fills KT. */
static void
test_lookup(struct ctl *c, const struct keyname *n, enum keytype t,
    const char *p, struct keytest *kt)
{
	struct ag_dns_opts opts = { c->cfg->dns_servers, c->cfg->dns_timeout };
	struct ag_dns_result *res = NULL;
	struct ag_dns *d = NULL;
	char err[256];
	ag_status st;

	if (ag_dns_new(&opts, &d, err, sizeof(err)) != AG_OK) {
		test_fail(kt, "dns-error", "cannot set up the resolver: %s",
		    err);
		return;
	}
	st = ag_dns_query(d, n->txt_name, AG_DNS_TXT, 0, &res);
	if (st == AG_OK) {
		test_record(n, res, t, p, kt);
	} else if (st == AG_NOTFOUND) {
		test_fail(kt, "no-record", "no TXT record at %s (%s)",
		    n->txt_name, res != NULL && res->nxdomain ?
		    "the name does not exist" : "the name has no TXT record");
	} else if (st == AG_PERMFAIL) {
		test_fail(kt, "bad-record", "the TXT answer for %s is too "
		    "large or malformed", n->txt_name);
	} else {
		test_fail(kt, "dns-error", "DNS lookup of %s failed: %s (DNS "
		    "server %s, timeout %u ms)", n->txt_name,
		    st == AG_NOMEM ? "out of memory" :
		    "timed out or the server failed", c->cfg->dns_servers ?
		    c->cfg->dns_servers : "from /etc/resolv.conf",
		    c->cfg->dns_timeout);
	}
	ag_dns_result_free(res);
	ag_dns_free(d);
}

/* What test found: on stdout, and as the error when it is not a match. */
static int
test_print(struct ctl *c, const struct keyname *n, const char *path,
    enum keytype t, const struct keytest *kt)
{
	bool match = strcmp(kt->result, "match") == 0;

	if (c->json) {
		fputs("{\"domain\":", stdout);
		put_json(stdout, n->domain);
		fputs(",\"selector\":", stdout);
		put_json(stdout, n->selector);
		fputs(",\"txt_name\":", stdout);
		put_json(stdout, n->txt_name);
		fputs(",\"key_file\":", stdout);
		put_json(stdout, path);
		printf(",\"algorithm\":\"%s\",\"match\":%s,\"result\":\"%s\","
		    "\"message\":", keytype_name[t], match ? "true" : "false",
		    kt->result);
		put_json(stdout, match ? "the published record matches the "
		    "key file" : kt->msg);
		puts("}");
	} else if (match) {
		printf("key %s %s: the published record matches ", n->domain,
		    n->selector);
		put_text(stdout, path);
		putchar('\n');
	}
	if (!match) {
		return ctl_err(CTL_FAIL, "key %s %s: %s", n->domain,
		    n->selector, kt->msg);
	}
	return CTL_OK;
}

/* key test DOMAIN SELECTOR: does the published record match the key? */
static int
cmd_key_test(struct ctl *c, struct args *a)
{
	static const struct optdef defs[] = {
		{ "--key", offsetof(struct keyopts, key) },
		{ "--dir", offsetof(struct keyopts, dir) },
	};
	static const struct keyverb v = { "test", defs, NELEM(defs), 2, false };
	struct keyopts o = { .dir = CTL_KEY_DIR };
	struct keytest kt = { NULL, "" };
	struct ag_sign_key *key = NULL;
	char path[PATH_MAX], p[AG_SIGN_PUBLIC_MAX], err[512];
	const char *pos[2];
	enum ag_sign_alg alg;
	enum keytype t;
	struct keyname n;
	ag_status st;
	int rc;

	if ((rc = key_args(c, a, &v, &o, pos)) != CTL_OK ||
	    (rc = key_name(pos[0], pos[1], &n)) != CTL_OK) {
		return rc;
	}
	if (o.key != NULL) {
		snprintf(path, sizeof(path), "%s", o.key);
	} else if ((rc = key_path(o.dir, &n, path, sizeof(path))) != CTL_OK) {
		return rc;
	}
	if (key_load(path, &key, &alg, err, sizeof(err)) != AG_OK) {
		return ctl_err(CTL_FAIL, "%s", err);
	}
	t = alg_keytype(alg);
	st = ag_sign_key_public(key, p, sizeof(p));
	ag_sign_key_free(key);
	if (st != AG_OK) {
		return ctl_err(CTL_FAIL, "%s: cannot encode its public key",
		    path);
	}
	test_lookup(c, &n, t, p, &kt);
	return test_print(c, &n, path, t, &kt);
}

/* ---- dispatch ------------------------------------------------------------- */

int
cmd_key(struct ctl *c, struct args *a)
{
	const char *sub;

	if (a->i >= a->argc) {
		return ctl_err(CTL_USAGE, "key needs a verb: generate, list, "
		    "test");
	}
	sub = a->argv[a->i++];
	if (strcmp(sub, "generate") == 0) {
		return cmd_key_generate(c, a);
	}
	if (strcmp(sub, "list") == 0) {
		return cmd_key_list(c, a);
	}
	if (strcmp(sub, "test") == 0) {
		return cmd_key_test(c, a);
	}
	return ctl_err(CTL_USAGE, "unknown key verb '%s' (generate, list, "
	    "test)", sub);
}
