/*
 * Implementation notes. A tool's output goes to files in the temporary
 * directory, not pipes: many tools run at once and none can block on a
 * full pipe while another is reaped. A child closes every descriptor but
 * 0, 1 and 2, so it never holds the write end of another child's pipe.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "tests/e2e/procs.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/monotime.h"

static char *tmpdir;
static pid_t tools[PROCS_TOOLS_MAX];

void procs_setup(char *tmpl)
{
	signal(SIGPIPE, SIG_IGN); /* a dead child's pipe: EPIPE, reported */
	cr_assert_not_null(mkdtemp(tmpl), "mkdtemp: %s", strerror(errno));
	tmpdir = tmpl;
}

const char *procs_dir(void)
{
	return tmpdir;
}

static int remove_one(const char *path, const struct stat *sb, int flag,
		      struct FTW *ftw)
{
	remove(path);
	return 0;
}

void procs_teardown(void)
{
	for (size_t k = 0; k < PROCS_TOOLS_MAX; k++) {
		if (tools[k]) {
			kill(tools[k], SIGKILL);
			waitpid(tools[k], NULL, 0);
			tools[k] = 0;
		}
	}
	if (tmpdir)
		nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir = NULL;
}

void procs_pause(void)
{
	struct timespec ts = {0, PROCS_POLL_MS * 1000L * 1000L};
	nanosleep(&ts, NULL);
}

void procs_file_tail(const char *path, char *out, size_t cap)
{
	out[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	long from = size > (long)cap - 1 ? size - ((long)cap - 1) : 0;
	fseek(f, from, SEEK_SET);
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	fclose(f);
}

char *procs_file_from(const char *path, long from)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		char *empty = strdup("");
		cr_assert_not_null(empty);
		return empty;
	}
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	if (from > size)
		from = size;
	fseek(f, from, SEEK_SET);
	char *buf = malloc((size_t)(size - from) + 1);
	cr_assert_not_null(buf);
	size_t n = fread(buf, 1, (size_t)(size - from), f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

long procs_file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

pid_t procs_fork(void)
{
	fflush(NULL); /* nothing buffered is written twice */
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* Dies with the test process, even if it is killed. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
	}
	return pid;
}

pid_t procs_spawn(char *const argv[], int out_fd, int err_fd)
{
	pid_t pid = procs_fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(out_fd >= 0 ? out_fd : null, 1);
		dup2(err_fd >= 0 ? err_fd : null, 2);
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		execv(argv[0], argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

int procs_reap(pid_t pid, uint64_t end)
{
	int st = 0;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			return st;
		if (monotime_now_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return st;
		}
		procs_pause();
	}
}

/* ---- server processes ---- */

void procs_server_init(struct procs_server *s, const char *name)
{
	cr_assert_not_null(tmpdir, "procs_server_init before procs_setup");
	*s = (struct procs_server){0};
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->dir, sizeof(s->dir), "%s/%s", tmpdir, s->name);
	snprintf(s->log, sizeof(s->log), "%s/%s.log", tmpdir, s->name);
}

void procs_server_spawn(struct procs_server *s, char *const argv[])
{
	int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	cr_assert_geq(fd, 0, "%s: %s", s->log, strerror(errno));
	s->pid = procs_spawn(argv, fd, fd);
	close(fd);
}

bool procs_server_wait_started(struct procs_server *s, long from,
			       uint64_t end)
{
	for (;;) {
		char *text = procs_file_from(s->log, from);
		bool started = strstr(text, "server: started:");
		bool in_use = strstr(text, "address in use");
		free(text);
		if (started)
			return true;
		int st;
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			char tail[1024];
			procs_file_tail(s->log, tail, sizeof(tail));
			cr_assert(in_use && monotime_now_ms() < end,
				  "%s did not start (wait status %#x):\n%s",
				  s->name, st, tail);
			return false; /* the port: try again */
		}
		if (monotime_now_ms() >= end) {
			char tail[1024];
			procs_file_tail(s->log, tail, sizeof(tail));
			cr_assert_fail("%s: no 'started' in %d ms:\n%s",
				       s->name, PROCS_DEADLINE_MS, tail);
		}
		procs_pause();
	}
}

void procs_server_wait_log(const struct procs_server *s, long from,
			   const char *what)
{
	uint64_t end = monotime_now_ms() + PROCS_DEADLINE_MS;
	for (;;) {
		char *text = procs_file_from(s->log, from);
		bool found = strstr(text, what);
		free(text);
		if (found)
			return;
		char tail[1024];
		procs_file_tail(s->log, tail, sizeof(tail));
		cr_assert_lt(monotime_now_ms(), end,
			     "%s: no '%s' in %d ms:\n%s", s->name, what,
			     PROCS_DEADLINE_MS, tail);
		procs_pause();
	}
}

void procs_server_start_all(struct procs_server *const ss[],
			    char **const argvs[], int n)
{
	long from[PROCS_START_MAX];
	cr_assert_leq(n, PROCS_START_MAX);
	for (int i = 0; i < n; i++) {
		from[i] = procs_file_size(ss[i]->log);
		procs_server_spawn(ss[i], argvs[i]);
	}
	uint64_t end = monotime_now_ms() + PROCS_DEADLINE_MS;
	for (int i = 0; i < n; i++) {
		while (!procs_server_wait_started(ss[i], from[i], end)) {
			procs_pause();
			from[i] = procs_file_size(ss[i]->log);
			procs_server_spawn(ss[i], argvs[i]);
		}
	}
}

/* Waits for the state change `what` (WUNTRACED: stopped, WCONTINUED:
 * running again) of s after its signal. */
static void wait_state(struct procs_server *s, int what)
{
	uint64_t end = monotime_now_ms() + PROCS_DEADLINE_MS;
	for (;;) {
		int st = 0;
		pid_t r = waitpid(s->pid, &st, what | WNOHANG);
		if (r == s->pid) {
			cr_assert(what == WUNTRACED ? WIFSTOPPED(st)
						    : WIFCONTINUED(st),
				  "%s: wait status %#x while %s", s->name, st,
				  what == WUNTRACED ? "stopping" : "resuming");
			return;
		}
		cr_assert(r == 0 || errno == EINTR, "%s: waitpid: %s",
			  s->name, strerror(errno));
		cr_assert_lt(monotime_now_ms(), end, "%s: not %s in %d ms",
			     s->name, what == WUNTRACED ? "stopped" : "resumed",
			     PROCS_DEADLINE_MS);
		procs_pause();
	}
}

void procs_server_pause(struct procs_server *s)
{
	cr_assert(s->pid && !s->paused, "%s: pause: %s", s->name,
		  s->pid ? "already paused" : "not running");
	kill(s->pid, SIGSTOP);
	wait_state(s, WUNTRACED);
	s->paused = true;
}

void procs_server_resume(struct procs_server *s)
{
	if (!s->paused)
		return;
	s->paused = false;
	if (!s->pid)
		return;
	kill(s->pid, SIGCONT);
	wait_state(s, WCONTINUED);
}

void procs_server_kill9(struct procs_server *s)
{
	if (!s->pid)
		return;
	if (s->paused) {
		/* SIGKILL ends a stopped process too; resume it anyway, so
		 * no stopped child is left behind whatever happens next. */
		kill(s->pid, SIGCONT);
		s->paused = false;
	}
	kill(s->pid, SIGKILL);
	procs_reap(s->pid, monotime_now_ms() + PROCS_DEADLINE_MS);
	s->pid = 0;
}

void procs_server_stop(struct procs_server *s)
{
	cr_assert_neq(s->pid, 0);
	procs_server_resume(s);
	kill(s->pid, SIGTERM);
	int st = procs_reap(s->pid, monotime_now_ms() + PROCS_DEADLINE_MS);
	s->pid = 0;
	char tail[2048];
	procs_file_tail(s->log, tail, sizeof(tail));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "%s did not stop cleanly (wait status %#x):\n%s", s->name,
		  st, tail);
	char *text = procs_file_from(s->log, 0);
	bool bad = strstr(text, "Sanitizer") || strstr(text, "runtime error");
	free(text);
	cr_assert(!bad, "%s: sanitizer report in %s:\n%s", s->name, s->log,
		  tail);
}

/* ---- tools ---- */

static void read_out(const char *path, char *out)
{
	out[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	size_t n = fread(out, 1, PROCS_OUT_MAX - 1, f);
	out[n] = 0;
	fclose(f);
}

void procs_run_all(char **argvs[], struct procs_run *runs, int n)
{
	char outp[PROCS_TOOLS_MAX][160], errp[PROCS_TOOLS_MAX][160];
	cr_assert_leq(n, PROCS_TOOLS_MAX);
	for (int k = 0; k < n; k++) {
		snprintf(outp[k], sizeof(outp[k]), "%s/tool%d.out", tmpdir, k);
		snprintf(errp[k], sizeof(errp[k]), "%s/tool%d.err", tmpdir, k);
		int fo = open(outp[k], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int fe = open(errp[k], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		cr_assert(fo >= 0 && fe >= 0, "%s: %s", outp[k],
			  strerror(errno));
		tools[k] = procs_spawn(argvs[k], fo, fe);
		close(fo);
		close(fe);
	}
	uint64_t end = monotime_now_ms() + 2 * PROCS_DEADLINE_MS;
	for (int k = 0; k < n; k++) {
		int st = procs_reap(tools[k], end);
		tools[k] = 0;
		runs[k].rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		read_out(outp[k], runs[k].out);
		read_out(errp[k], runs[k].err);
	}
}
