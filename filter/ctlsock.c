/*
 * ctlsock.c - the control socket (see ctlsock.h).  One thread accepts
 * and answers one request per connection, one connection at a time:
 * requests are rare and short, and a client that stalls is cut off by
 * a receive timeout.
 */
#include "autoconf.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "ctlsock.h"
#include "log.h"

#define CONTROL_TIMEOUT_S 5

static struct {
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct ag_engine *eng;
	pthread_t tid;
	bool running;
	atomic_bool stop;
} ctl = { .fd = -1 };

/* Read one request line from FD into BUF; false on junk or timeout. */
static bool
read_line(int fd, char *buf, size_t bufsz)
{
	size_t len = 0;
	ssize_t n;

	while (len + 1 < bufsz) {
		n = read(fd, buf + len, bufsz - 1 - len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return false;
		}
		len += (size_t)n;
		buf[len] = '\0';
		char *nl = memchr(buf, '\n', len);
		if (nl != NULL) {
			*nl = '\0';
			if (nl > buf && nl[-1] == '\r') {
				nl[-1] = '\0';
			}
			return strlen(buf) == (size_t)(nl - buf) ||
			    strlen(buf) + 1 == (size_t)(nl - buf);
		}
	}
	return false;
}

static void
serve_one(int fd)
{
	struct timeval tv = { CONTROL_TIMEOUT_S, 0 };
	char line[AG_CONTROL_LINE_MAX];
	FILE *out;
	int wfd;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if ((wfd = dup(fd)) < 0 || (out = fdopen(wfd, "w")) == NULL) {
		if (wfd >= 0) {
			close(wfd);
		}
		return;
	}
	if (!read_line(fd, line, sizeof(line))) {
		fputs("ERR bad request\n", out);
	} else {
		ag_control_handle(ctl.eng, line, out);
	}
	fclose(out);
}

static void *
control_main(void *arg)
{
	struct pollfd pfd;
	int fd;

	(void)arg;
	while (!atomic_load(&ctl.stop)) {
		pfd.fd = ctl.fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 250) <= 0) {
			continue;
		}
		fd = accept4(ctl.fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			continue;
		}
		serve_one(fd);
		close(fd);
	}
	return NULL;
}

bool
ag_control_bind(const char *path)
{
	struct sockaddr_un sa;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		ag_log_err("ControlSocket %s: path too long; authgatectl "
		    "counters will not work", path);
		return false;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ctl.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl.fd < 0) {
		ag_log_err("control socket: %s", strerror(errno));
		return false;
	}
	/* a stale socket from an earlier run; unlink never follows links */
	(void)unlink(path);
	if (bind(ctl.fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(ctl.fd, 8) != 0) {
		ag_log_err("control socket %s: %s; authgatectl counters will "
		    "not work", path, strerror(errno));
		close(ctl.fd);
		ctl.fd = -1;
		return false;
	}
	snprintf(ctl.path, sizeof(ctl.path), "%s", path);
	return true;
}

void
ag_control_start(struct ag_engine *e)
{
	sigset_t set, old;

	if (ctl.fd < 0) {
		return;
	}
	ctl.eng = e;
	/* the signals belong to the main thread */
	sigfillset(&set);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	if (pthread_create(&ctl.tid, NULL, control_main, NULL) == 0) {
		ctl.running = true;
	} else {
		ag_log_err("control socket: cannot start its thread");
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void
ag_control_stop(void)
{
	if (ctl.running) {
		atomic_store(&ctl.stop, true);
		pthread_join(ctl.tid, NULL);
		ctl.running = false;
	}
	if (ctl.fd >= 0) {
		close(ctl.fd);
		ctl.fd = -1;
		(void)unlink(ctl.path);
	}
}
