/*
 * cli_proc: runs a command-line client (shardctl, kvcli) as a child
 * process for the clerk suites: its arguments and environment set, bytes
 * fed to its stdin, its stdout, stderr and exit code collected; and a
 * local port that refuses connections, for "unreachable" cases.
 *
 * Ownership: everything is the caller's; a run leaves no process or
 * descriptor behind. Criterion asserts end the test on any failure to
 * run (no spawn, a hang of a minute, a death by signal).
 */
#ifndef SKV_TESTS_UNIT_CLI_PROC_H
#define SKV_TESTS_UNIT_CLI_PROC_H

#include <stdarg.h>
#include <stddef.h>

struct cli_proc_out {
	int code;	 /* exit status */
	char out[16384]; /* stdout, cut to fit, NUL-terminated */
	size_t out_len;
	char err[8192]; /* stderr, likewise */
};

/*
 * Runs `path` with args (NULL-terminated, at most 14), SHARDKV_MASTERS =
 * `env_masters` (unset when NULL) and ASAN_OPTIONS passed on (so a leak
 * report in the child fails the test), feeding in[0..in_len) to its
 * stdin (closed at once when in_len is 0).
 */
void cli_proc_run(const char *path, const char *env_masters,
		  const char *const *args, const void *in, size_t in_len,
		  struct cli_proc_out *po);

/* An argv for a parse function: argv[0] = prog, then the strings of `ap`
 * up to a NULL (at most cap - 2 of them), then NULL. Returns argc. The
 * strings stay the caller's. */
int cli_proc_vline(char **argv, int cap, const char *prog, va_list ap);

/* A port on 127.0.0.1 that refuses connections: bound, not listening;
 * *fd_out keeps it until the caller closes it, so no one else takes it. */
int cli_proc_refusing_port(int *fd_out);

#endif
