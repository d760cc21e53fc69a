/*
 * nullmilter: a libmilter filter that does nothing, the "protocol limit"
 * baseline for milterload.  Every callback is registered and answers
 * SMFIS_CONTINUE; end of message answers SMFIS_ACCEPT.  It asks for no
 * actions, negotiates nothing away (no negotiate callback: libmilter
 * takes what the MTA offers) and keeps no state.
 *
 *	nullmilter -p SOCKET [-t TIMEOUT]
 *
 * SOCKET is a libmilter connection string (inet:PORT@127.0.0.1,
 * unix:/path).  Runs in the foreground until SIGTERM or SIGINT
 * (libmilter's own signal thread calls smfi_stop).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

static sfsistat
null_connect(SMFICTX *ctx, char *host, struct sockaddr *sa)
{
	(void)ctx;
	(void)host;
	(void)sa;
	return SMFIS_CONTINUE;
}

static sfsistat
null_args(SMFICTX *ctx, char **argv)
{
	(void)ctx;
	(void)argv;
	return SMFIS_CONTINUE;
}

static sfsistat
null_str(SMFICTX *ctx, char *s)
{
	(void)ctx;
	(void)s;
	return SMFIS_CONTINUE;
}

static sfsistat
null_const_str(SMFICTX *ctx, const char *s)
{
	(void)ctx;
	(void)s;
	return SMFIS_CONTINUE;
}

static sfsistat
null_header(SMFICTX *ctx, char *name, char *value)
{
	(void)ctx;
	(void)name;
	(void)value;
	return SMFIS_CONTINUE;
}

static sfsistat
null_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	(void)ctx;
	(void)chunk;
	(void)len;
	return SMFIS_CONTINUE;
}

static sfsistat
null_ctx(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_CONTINUE;
}

static sfsistat
null_eom(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_ACCEPT;
}

static struct smfiDesc desc = {
	"nullmilter",	/* name */
	SMFI_VERSION,	/* version */
	0,		/* actions: none */
	null_connect,	/* connect */
	null_str,	/* helo */
	null_args,	/* envfrom */
	null_args,	/* envrcpt */
	null_header,	/* header */
	null_ctx,	/* eoh */
	null_body,	/* body */
	null_eom,	/* eom */
	null_ctx,	/* abort */
	null_ctx,	/* close */
	null_const_str,	/* unknown */
	null_ctx,	/* data */
	NULL,		/* negotiate */
};

static void
usage(void)
{
	fputs("usage: nullmilter -p SOCKET [-t TIMEOUT]\n", stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *sock = NULL;
	int ch, timeout = -1;
	char *e;

	while ((ch = getopt(argc, argv, "p:t:")) != -1) {
		switch (ch) {
		case 'p':
			sock = optarg;
			break;
		case 't':
			errno = 0;
			timeout = (int)strtol(optarg, &e, 10);
			if (errno || e == optarg || *e || timeout < 1) {
				usage();
			}
			break;
		default:
			usage();
		}
	}
	if (sock == NULL || optind != argc) {
		usage();
	}
	if (strncmp(sock, "unix:", 5) == 0 || strncmp(sock, "local:", 6) == 0) {
		(void)unlink(strchr(sock, ':') + 1);
	} else if (sock[0] == '/') {
		(void)unlink(sock);
	}
	if (smfi_setconn((char *)sock) == MI_FAILURE) {
		fprintf(stderr, "nullmilter: bad socket %s\n", sock);
		return 1;
	}
	if (timeout > 0 && smfi_settimeout(timeout) == MI_FAILURE) {
		fprintf(stderr, "nullmilter: bad timeout\n");
		return 1;
	}
	if (smfi_register(desc) == MI_FAILURE) {
		fprintf(stderr, "nullmilter: smfi_register failed\n");
		return 1;
	}
	if (smfi_opensocket(1) == MI_FAILURE) {
		fprintf(stderr, "nullmilter: cannot open %s\n", sock);
		return 1;
	}
	fprintf(stderr, "nullmilter: listening on %s\n", sock);
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
