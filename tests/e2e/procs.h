/*
 * procs: what the real-process suites (tests/e2e) share: the suite's
 * temporary directory, children that die with the test process, waits
 * with a deadline, server processes with a log on disk, and tools
 * (shardctl, kvcli) run to completion.
 *
 * What it owns: the temporary directory (made by procs_setup, removed
 * with everything in it by procs_teardown) and the tools still running
 * (procs_run_all records them, so procs_teardown can kill them after a
 * failed assertion). Server processes are the suite's: it kills them in
 * its fini (procs_server_kill9) before procs_teardown.
 *
 * Invariant: every wait here ends at a deadline; a child still running
 * at its deadline is killed with SIGKILL. Failures are criterion
 * assertions that quote the tail of the process's log. A server paused
 * with procs_server_pause is resumed before it is killed or stopped.
 */
#ifndef SKV_TESTS_E2E_PROCS_H
#define SKV_TESTS_E2E_PROCS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* How long a server may take to start, stop or log a line. */
#define PROCS_DEADLINE_MS 30000
/* The pause between two looks at a condition. */
#define PROCS_POLL_MS 20
/* A tool's captured stdout or stderr, with its NUL. */
#define PROCS_OUT_MAX 65536
/* Tools running at once. */
#define PROCS_TOOLS_MAX 32
/* Servers started at once by procs_server_start_all. */
#define PROCS_START_MAX 64

/* Suite init: ignores SIGPIPE and makes the temporary directory from
 * `tmpl` ("/tmp/skv_x.XXXXXX", borrowed; a static buffer mkdtemp fills
 * in). */
void procs_setup(char *tmpl);

/* The temporary directory (borrowed; valid until procs_teardown). */
const char *procs_dir(void);

/* Suite fini, also after a failed assertion: kills the tools still
 * running, then removes the temporary directory. */
void procs_teardown(void);

/* Sleeps PROCS_POLL_MS. */
void procs_pause(void);

/* The last `cap - 1` bytes of a file into out ("" if unreadable). */
void procs_file_tail(const char *path, char *out, size_t cap);

/* The whole file from byte `from` on, NUL-terminated; the caller frees
 * it with free(). "" if unreadable. */
char *procs_file_from(const char *path, long from);

/* The file's size, 0 if it does not exist. */
long procs_file_size(const char *path);

/* fork(), with the child bound to die with the test process (SIGKILL
 * when it exits, even by kill -9). Buffered stdio is flushed first. The
 * child's 0, the parent's the pid. */
pid_t procs_fork(void);

/* procs_fork + execv of argv with stdin from /dev/null, stdout to out_fd
 * and stderr to err_fd (-1: /dev/null) and nothing else open. The pid;
 * the caller reaps it. */
pid_t procs_spawn(char *const argv[], int out_fd, int err_fd);

/* Waits for pid to exit; SIGKILL at `end` (monotime_now_ms). The wait
 * status. */
int procs_reap(pid_t pid, uint64_t end);

/* ---- server processes ---- */

/* A server program and its files in the temporary directory. */
struct procs_server {
	char name[24]; /* in messages: "sm1", "kv100-2" */
	char dir[128]; /* <tmp>/<name>, its data directory */
	char log[128]; /* <tmp>/<name>.log: its stdout and stderr */
	pid_t pid;     /* 0: not running */
	bool paused;   /* stopped by procs_server_pause */
};

/* Names s and its files (after procs_setup); not running. */
void procs_server_init(struct procs_server *s, const char *name);

/* Starts argv (argv[0] the program; borrowed for the call) without
 * waiting, its output appended to s->log. */
void procs_server_spawn(struct procs_server *s, char *const argv[]);

/* Waits, until `end`, for the "server: started:" line s->log gets past
 * byte `from`. True once there. False when the process exited only
 * because its address was still in use (a port a killed process held):
 * s->pid is 0 and the caller starts it again. Any other exit, or the
 * deadline, fails the test. */
bool procs_server_wait_started(struct procs_server *s, long from,
			       uint64_t end);

/* Waits until s->log, from byte `from` on, contains `what`. */
void procs_server_wait_log(const struct procs_server *s, long from,
			   const char *what);

/* Starts ss[k] with argvs[k] for k in [0, n) at once (n at most
 * PROCS_START_MAX; argvs borrowed for the call) and waits until each
 * has logged "started" past where its log ended. A start that failed
 * only because its port was still in use (a killed process held it) is
 * retried until the deadline. */
void procs_server_start_all(struct procs_server *const ss[],
			    char **const argvs[], int n);

/* kill -9 and reap (resumed first if paused); nothing if not running. */
void procs_server_kill9(struct procs_server *s);

/* SIGTERM (resumed first if paused), then expects exit 0 within the
 * deadline and a log without a sanitizer report. */
void procs_server_stop(struct procs_server *s);

/* SIGSTOP, and waits until the process is stopped: it keeps its sockets
 * and state but runs nothing until procs_server_resume. Must be
 * running and not paused. */
void procs_server_pause(struct procs_server *s);

/* SIGCONT, and waits until the process runs again; nothing if not
 * paused. */
void procs_server_resume(struct procs_server *s);

/* ---- tools ---- */

/* A tool's run: its exit code (-1 if it did not exit normally) and its
 * stdout and stderr, each truncated to PROCS_OUT_MAX - 1 bytes. */
struct procs_run {
	int rc;
	char out[PROCS_OUT_MAX];
	char err[PROCS_OUT_MAX];
};

/* Runs argvs[0..n) at once to completion, each killed at a shared
 * deadline of 2 x PROCS_DEADLINE_MS; runs[k] is argvs[k]'s. n at most
 * PROCS_TOOLS_MAX. */
void procs_run_all(char **argvs[], struct procs_run *runs, int n);

#endif
