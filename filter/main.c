/*
 * main.c - authgate: arguments, config, socket, privileges, signals and
 * the life of the process around smfi_main().
 *
 * Signals: libmilter starts a thread that sigwait()s for SIGHUP, SIGTERM
 * and SIGINT and stops the filter on any of them (SIGHUP included); it
 * blocks those signals in the thread that calls smfi_main() and every
 * thread made after.  We run smfi_main() in a thread of its own and keep
 * the signals unblocked, with handlers, in the main thread only: SIGHUP
 * reloads, SIGTERM/SIGINT stop the listener with smfi_stop() and give
 * connections in flight time to end.  So that the kernel can never hand
 * one of these signals to libmilter's thread instead (it may, when the
 * main thread is busy), this file defines sigwait(): libmilter's thread,
 * the only caller in the process, then waits for nothing, for ever.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <libmilter/mfapi.h>

#include "config.h"
#include "engine.h"
#include "log.h"
#include "ctlsock.h"
#include "metrics.h"
#include "metrics_http.h"
#include "milter.h"
#include "offline.h"
#include "session.h"
#include "store.h"

/* How long a stop waits for connections in flight (seconds). */
#define AG_STOP_GRACE 15

static int sigpipe[2] = { -1, -1 };

int sigwait(const sigset_t *set, int *sig);

/*
 * libmilter's signal thread is the only caller of sigwait() in this
 * program (see the top of the file): it must never take our signals, so
 * it sleeps here instead.  Its signals stay blocked, so pause() returns
 * only for a signal that is not ours; the thread ends with the process.
 */
int
sigwait(const sigset_t *set, int *sig)
{
	(void)set;
	(void)sig;
	for (;;) {
		pause();
	}
}

struct opts {
	const char *conffile;
	bool conf_given;
	bool foreground;
	bool check_only;
	const char *socket;
	struct ag_offline offline;
	bool offline_mode;
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: authgate [-c FILE] [-f] [-n] [-p SOCKET] [-V]\n"
	    "       authgate [-c FILE] --test-message FILE --client-ip IP "
	    "--helo NAME\n"
	    "                --mail-from ADDR --rcpt ADDR [--rcpt ADDR]... "
	    "[--auth USER]\n");
}

/* Parse the command line into O; exits on bad usage. */
static void
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "test-message", required_argument, NULL, 'T' },
		{ "client-ip", required_argument, NULL, 'I' },
		{ "helo", required_argument, NULL, 'H' },
		{ "mail-from", required_argument, NULL, 'M' },
		{ "rcpt", required_argument, NULL, 'R' },
		{ "auth", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int ch;

	memset(o, 0, sizeof(*o));
	o->conffile = AG_CONFIG_DEFAULT_FILE;
	while ((ch = getopt_long(argc, argv, "c:fnp:Vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->conffile = optarg;
			o->conf_given = true;
			break;
		case 'f':
			o->foreground = true;
			break;
		case 'n':
			o->check_only = true;
			break;
		case 'p':
			o->socket = optarg;
			break;
		case 'V':
			printf("authgate %s\n", PACKAGE_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		case 'T':
			o->offline_mode = true;
			o->offline.message = optarg;
			break;
		case 'I':
			o->offline.client_ip = optarg;
			break;
		case 'H':
			o->offline.helo = optarg;
			break;
		case 'M':
			o->offline.mail_from = optarg;
			break;
		case 'R':
			if (o->offline.nrcpt >= AG_OFFLINE_MAX_RCPT) {
				fprintf(stderr, "authgate: too many --rcpt\n");
				exit(2);
			}
			o->offline.rcpt[o->offline.nrcpt++] = optarg;
			break;
		case 'A':
			o->offline.auth = optarg;
			break;
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc) {
		fprintf(stderr, "authgate: unexpected argument: %s\n", argv[optind]);
		usage(stderr);
		exit(2);
	}
}

/* Load the config: the named file, or the default file if it exists,
 * or the embedded defaults; then -p.  Errors go to ERR. */
static struct ag_config *
load_config(const struct opts *o, char *err, size_t errlen)
{
	struct ag_config *cfg = NULL;
	const char *file = o->conffile;

	if (!o->conf_given && access(file, F_OK) != 0) {
		file = NULL;	/* no file at all: embedded defaults */
	}
	if (ag_config_load(file, &cfg, err, errlen) != AG_OK) {
		return NULL;
	}
	if (o->socket != NULL &&
	    ag_config_set(cfg, "Socket", o->socket, err, errlen) != AG_OK) {
		ag_config_unref(cfg);
		return NULL;
	}
	return cfg;
}

/* Resolve UserID ("user" or "user:group"). */
static int
lookup_user(const char *spec, uid_t *uid, gid_t *gid, char *name, size_t namesz)
{
	char buf[256];
	char *colon;
	struct passwd *pw;

	snprintf(buf, sizeof(buf), "%s", spec);
	colon = strchr(buf, ':');
	if (colon != NULL) {
		*colon++ = '\0';
	}
	pw = getpwnam(buf);
	if (pw == NULL) {
		ag_log_err("UserID: no such user: %s", buf);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	snprintf(name, namesz, "%s", pw->pw_name);
	if (colon != NULL) {
		struct group *gr = getgrnam(colon);

		if (gr == NULL) {
			ag_log_err("UserID: no such group: %s", colon);
			return -1;
		}
		*gid = gr->gr_gid;
	}
	return 0;
}

/* Make DIR (one level) if missing, owned by UID/GID when running as root. */
static void
ensure_dir(const char *path, bool chown_it, uid_t uid, gid_t gid)
{
	char dir[4096];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir) {
		return;
	}
	*slash = '\0';
	if (mkdir(dir, 0750) == 0) {
		if (chown_it && chown(dir, uid, gid) != 0) {
			ag_log_warning("cannot chown %s: %s", dir, strerror(errno));
		}
	} else if (errno != EEXIST) {
		ag_log_warning("cannot create %s: %s", dir, strerror(errno));
	}
}

/* The path of a unix socket spec, or NULL for inet sockets. */
static const char *
socket_path(const char *spec)
{
	if (strncmp(spec, "unix:", 5) == 0) {
		return spec + 5;
	}
	if (strncmp(spec, "local:", 6) == 0) {
		return spec + 6;
	}
	return spec[0] == '/' ? spec : NULL;
}

static void
on_signal(int sig)
{
	unsigned char b = (unsigned char)sig;
	int saved = errno;

	if (write(sigpipe[1], &b, 1) < 0) {
		/* nothing to do: the pipe is full, a wakeup is pending */
	}
	errno = saved;
}

/* Ask libmilter to stop (it blocks until its listener lets go). */
static void *
stop_thread(void *arg)
{
	(void)arg;
	smfi_stop();
	return NULL;
}

/* SIGUSR1 only interrupts a system call: see main_loop. */
static void
on_wakeup(int sig)
{
	(void)sig;
}

/* Install the handlers of the main thread. */
static int
setup_signals(void)
{
	struct sigaction sa;

	if (pipe(sigpipe) != 0) {
		return -1;
	}
	fcntl(sigpipe[0], F_SETFD, FD_CLOEXEC);
	fcntl(sigpipe[1], F_SETFD, FD_CLOEXEC);
	fcntl(sigpipe[1], F_SETFL, O_NONBLOCK);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_wakeup;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static void *
milter_thread(void *arg)
{
	int *rc = arg;

	*rc = smfi_main();
	on_signal(0);		/* wake the main thread: smfi_main returned */
	return NULL;
}

/* Equal optional strings (both unset, or the same text)? */
static bool
same_opt(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Reload the config file on SIGHUP; keep the old one on any error. */
static void
reload(const struct opts *o, struct ag_engine *e, struct ag_config **cur)
{
	char err[512];
	struct ag_config *cfg = load_config(o, err, sizeof(err));

	if (cfg == NULL) {
		ag_log_err("reload failed, keeping the running config: %s", err);
		ag_metrics_reload_failed(AG_MET_RELOAD_CONFIG);
		return;
	}
	if (strcmp(cfg->socket, (*cur)->socket) != 0 ||
	    !same_opt(cfg->user_id, (*cur)->user_id) ||
	    !same_opt(cfg->pid_file, (*cur)->pid_file) ||
	    cfg->umask != (*cur)->umask ||
	    cfg->milter_timeout != (*cur)->milter_timeout ||
	    !same_opt(cfg->metrics_listen, (*cur)->metrics_listen)) {
		ag_log_notice("reload: Socket, UserID, UMask, PidFile, "
		    "MilterTimeout and MetricsListen changes take effect at the "
		    "next restart");
	}
	ag_log_set_level(cfg->log_level);
	ag_log_set_facility(cfg->log_facility);
	ag_engine_reload(e, cfg);
	ag_config_unref(*cur);
	*cur = cfg;
	ag_log_info("configuration reloaded (generation %llu)",
	    (unsigned long long)ag_engine_generation(e));
}

/*
 * Raise the soft limit on open files to the hard one.  Each MTA
 * connection holds a descriptor (one per smtpd process of Postfix), and
 * the usual soft limit, 1024, is about what a large MTA opens; out of
 * descriptors, libmilter's listener retries accept() in a busy loop and
 * the connections left waiting time out at the MTA.  Nothing here needs
 * descriptors below FD_SETSIZE: libmilter polls, libunbound uses libevent.
 */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			ag_log_warning("cannot raise the open files limit: %s",
			    strerror(errno));
		}
	}
}

/* Become a daemon: fork, new session, stdio to /dev/null. */
static int
daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0) {
		return -1;
	}
	if (pid > 0) {
		_exit(0);
	}
	if (setsid() < 0) {
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		return -1;
	}
	if (pid > 0) {
		_exit(0);
	}
	if (chdir("/") != 0) {
		return -1;
	}
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2) {
			close(fd);
		}
	}
	return 0;
}

/* Write the pid file; 0 or -1. */
static int
write_pidfile(const char *path)
{
	FILE *fp;

	fp = fopen(path, "w");
	if (fp == NULL) {
		ag_log_err("cannot write pid file %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(fp, "%ld\n", (long)getpid());
	return fclose(fp) == 0 ? 0 : -1;
}

/* Bind the socket and drop privileges; exits on failure (start-up only). */
/*
 * Turn Nagle's algorithm off on libmilter's TCP listener (connections
 * accepted from it inherit the setting).  libmilter writes each reply of
 * end of message (the header edits, then the verdict) with a write of its
 * own; with Nagle on, the verdict waited for the MTA's delayed ACK of the
 * edits: 40 ms per message over TCP.  libmilter keeps the listener to
 * itself, so look for it: the only listening TCP socket we have open.
 */
static void
tcp_nodelay_listener(void)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, on, maxfd = 1024;

	for (fd = 0; fd < maxfd; fd++) {
		on = 0;
		len = sizeof(on);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0 ||
		    on == 0) {
			continue;
		}
		len = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
		    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
			continue;
		}
		on = 1;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on,
		    sizeof(on)) != 0) {
			ag_log_warning("cannot set TCP_NODELAY on the milter "
			    "socket: %s", strerror(errno));
		}
	}
}

static void
open_socket_and_drop(const struct ag_config *cfg, const char *sock,
    struct ag_mhttp **mh)
{
	uid_t uid = 0;
	gid_t gid = 0;
	char user[256] = "", ctlpath[256], why[512];
	bool drop = cfg->user_id != NULL && geteuid() == 0;
	const char *path = socket_path(sock);

	if (drop && lookup_user(cfg->user_id, &uid, &gid, user, sizeof(user)) != 0) {
		exit(1);
	}
	if (path != NULL) {
		ensure_dir(path, drop, uid, gid);
	}
	ensure_dir(cfg->database, drop, uid, gid);
	if (smfi_setconn((char *)(uintptr_t)sock) != MI_SUCCESS) {
		ag_log_err("invalid socket %s", sock);
		exit(1);
	}
	if (ag_milter_register() != 0) {
		ag_log_err("cannot register with libmilter");
		exit(1);
	}
	/* libmilter's timeout on reads from the MTA, in whole seconds: a
	 * command sent in part holds a thread and a descriptor until then
	 * (libmilter looks at idle connections only every 10 minutes) */
	if (smfi_settimeout((int)((cfg->milter_timeout + 999) / 1000)) !=
	    MI_SUCCESS) {
		ag_log_err("cannot set the milter timeout");
		exit(1);
	}
	umask(cfg->umask);
	/* rmsocket: a stale unix socket is unlinked (unlink never follows a
	 * symlink; a non-socket file at the path is refused by libmilter) */
	if (smfi_opensocket(true) != MI_SUCCESS) {
		ag_log_err("cannot open socket %s: %s", sock, strerror(errno));
		exit(1);
	}
	tcp_nodelay_listener();
	if (path != NULL && drop && chown(path, uid, gid) != 0) {
		ag_log_err("cannot chown %s: %s", path, strerror(errno));
		exit(1);
	}
	if (!ag_config_control_path(cfg, ctlpath, sizeof(ctlpath))) {
		ag_log_err("ControlSocket: path too long");
	} else {
		ensure_dir(ctlpath, drop, uid, gid);
		if (ag_control_bind(ctlpath) && drop &&
		    chown(ctlpath, uid, gid) != 0) {
			ag_log_err("cannot chown %s: %s", ctlpath,
			    strerror(errno));
			exit(1);
		}
	}
	if (cfg->metrics_listen != NULL &&
	    (*mh = ag_mhttp_open(cfg->metrics_listen, why, sizeof(why))) ==
	    NULL) {
		ag_log_err("%s", why);
		exit(1);
	}
	if (cfg->pid_file != NULL && write_pidfile(cfg->pid_file) != 0) {
		exit(1);
	}
	if (drop) {
		if (initgroups(user, gid) != 0 || setgid(gid) != 0 ||
		    setuid(uid) != 0) {
			ag_log_err("cannot drop privileges to %s: %s", cfg->user_id,
			    strerror(errno));
			exit(1);
		}
		if (setuid(0) == 0) {
			ag_log_err("privileges could be regained after dropping");
			exit(1);
		}
	} else if (geteuid() == 0) {
		ag_log_warning("running as root: set UserID in the config");
	}
}

/* Wait for signals until the filter stops; returns smfi_main's result. */
static int
main_loop(const struct opts *o, struct ag_engine *e, struct ag_config **cfg,
    pthread_t tid, int *mrc)
{
	bool stopping = false;
	unsigned char sig;
	pthread_t stopper;

	for (;;) {
		struct pollfd pfd = { .fd = sigpipe[0], .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, stopping ? 100 : -1) == 0) {
			/*
			 * Stopping: libmilter's listener sees the stop only when
			 * its poll() ends (seconds), and smfi_stop() waits for
			 * it; interrupt that poll until smfi_main returns
			 * (SIGUSR1 has no SA_RESTART).
			 */
			pthread_kill(tid, SIGUSR1);
			continue;
		}
		n = read(sigpipe[0], &sig, 1);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0 || sig == 0) {
			break;		/* smfi_main returned */
		}
		if (sig == SIGHUP && !stopping) {
			reload(o, e, cfg);
		} else if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
			ag_log_info("stopping on signal %d", sig);
			stopping = true;
			/* smfi_stop() blocks until the listener lets go: in a
			 * thread of its own, while this one interrupts it */
			if (pthread_create(&stopper, NULL, stop_thread, NULL) != 0) {
				smfi_stop();
			} else {
				pthread_detach(stopper);
			}
		}
	}
	pthread_join(tid, NULL);
	/* messages in progress may finish; idle connections are not waited for */
	for (int i = 0; i < AG_STOP_GRACE * 10 && ag_session_in_flight() > 0;
	    i++) {
		poll(NULL, 0, 100);
	}
	if (ag_session_in_flight() > 0) {
		ag_log_warning("stopping with %u messages in progress (the MTA "
		    "will retry them)", ag_session_in_flight());
	}
	return *mrc;
}

/* Start the milter thread with the signals blocked in it. */
static int
start_milter(pthread_t *tid, int *mrc)
{
	sigset_t set, old;
	int r;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	r = pthread_create(tid, NULL, milter_thread, mrc);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

/* Run as the daemon; returns the exit status. */
static int
run_daemon(const struct opts *o, struct ag_config *cfg)
{
	struct ag_engine *e = NULL;
	struct ag_mhttp *mh = NULL;
	const char *sock = cfg->socket;
	const char *path = socket_path(sock);
	pthread_t tid;
	int mrc = MI_FAILURE, rc;
	sigset_t set, old;
	char why[512];

	if (!o->foreground && daemonize() != 0) {
		ag_log_err("cannot become a daemon: %s", strerror(errno));
		goto fail;
	}
	ag_log_info("authgate %s starting: socket=%s database=%s authserv-id=%s",
	    PACKAGE_VERSION, sock, cfg->database, cfg->authserv_id);
	if (setup_signals() != 0) {
		ag_log_err("cannot set up signals: %s", strerror(errno));
		goto fail;
	}
	if (ag_store_check_perms(cfg->database, why, sizeof(why)) != AG_OK) {
		ag_log_err("database %s %s: not starting", cfg->database, why);
		goto fail;
	}
	raise_nofile();
	ag_metrics_init(PACKAGE_VERSION);
	open_socket_and_drop(cfg, sock, &mh);
	/* the engine's watcher thread must not take our signals either */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	rc = ag_engine_new(cfg, true, &e) == AG_OK ? ag_engine_start(e) : AG_NOMEM;
	if (rc == AG_OK && mh != NULL && ag_mhttp_start(mh) != 0) {
		rc = AG_NOMEM;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != AG_OK) {
		ag_log_err("cannot start the filter: out of memory");
		goto fail;
	}
	if (mh != NULL) {
		ag_log_info("metrics on http://%s/metrics", cfg->metrics_listen);
	}
	ag_milter_set_engine(e);
	ag_control_start(e);
	/* ready: the socket is bound and the policy (or its failure) known */
	ag_log_info("listening on %s", sock);
	if (start_milter(&tid, &mrc) != 0) {
		ag_log_err("cannot start the milter thread");
		goto fail;
	}
	mrc = main_loop(o, e, &cfg, tid, &mrc);
	ag_control_stop();
	ag_mhttp_free(mh);
	if (ag_session_in_flight() == 0) {
		ag_engine_free(e);	/* saves the rate counters too */
	} else {
		/* threads still use it: save, and let the exit free it */
		ag_engine_save(e);
	}
	if (path != NULL) {
		unlink(path);
	}
	if (cfg->pid_file != NULL) {
		unlink(cfg->pid_file);
	}
	ag_config_unref(cfg);
	ag_log_info("stopped");
	return mrc == MI_SUCCESS ? 0 : 1;
fail:
	ag_mhttp_free(mh);	/* NULL is fine */
	ag_engine_free(e);	/* NULL is fine */
	ag_config_unref(cfg);
	return 1;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct ag_config *cfg;
	char err[512];

	parse_args(argc, argv, &o);
	ag_log_open("authgate", LOG_MAIL, o.foreground || o.check_only ||
	    o.offline_mode);
	cfg = load_config(&o, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err);
		if (!o.foreground && !o.check_only && !o.offline_mode) {
			ag_log_err("%s", err);
		}
		return 1;
	}
	ag_log_set_level(cfg->log_level);
	ag_log_set_facility(cfg->log_facility);
	if (o.check_only) {
		ag_config_dump(cfg, stdout);
		ag_config_unref(cfg);
		return 0;
	}
	if (o.offline_mode) {
		int rc = ag_offline_run(&o.offline, cfg);

		ag_config_unref(cfg);
		return rc;
	}
	return run_daemon(&o, cfg);
}
