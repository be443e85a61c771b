/*
 * cli_proc: see cli_proc.h.
 */
#include "tests/unit/cli_proc.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

void cli_proc_run(const char *path, const char *env_masters,
		  const char *const *args, const void *in, size_t in_len,
		  struct cli_proc_out *po)
{
	char *argv[16] = {(char *)path};
	int argc = 1;
	for (size_t i = 0; args[i]; i++) {
		cr_assert_lt(argc, 15, "too many arguments");
		argv[argc++] = (char *)args[i];
	}
	argv[argc] = NULL;
	char env_var[256];
	char *envp[4] = {NULL};
	int ne = 0;
	if (env_masters) {
		snprintf(env_var, sizeof(env_var), "SHARDKV_MASTERS=%s",
			 env_masters);
		envp[ne++] = env_var;
	}
	char asan[512];
	const char *ao = getenv("ASAN_OPTIONS");
	if (ao) {
		snprintf(asan, sizeof(asan), "ASAN_OPTIONS=%s", ao);
		envp[ne++] = asan;
	}
	envp[ne] = NULL;

	/* The child may stop reading early (a value too large). */
	signal(SIGPIPE, SIG_IGN);
	int in_pipe[2], out_pipe[2], err_pipe[2];
	cr_assert_eq(pipe(in_pipe), 0);
	cr_assert_eq(pipe(out_pipe), 0);
	cr_assert_eq(pipe(err_pipe), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
	posix_spawn_file_actions_addclose(&fa, in_pipe[1]);
	posix_spawn_file_actions_addclose(&fa, out_pipe[0]);
	posix_spawn_file_actions_addclose(&fa, err_pipe[0]);
	pid_t pid;
	int rc = posix_spawn(&pid, path, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(rc, 0, "spawn %s", path);
	close(in_pipe[0]);
	close(out_pipe[1]);
	close(err_pipe[1]);
	/* All pipes at once, so a full one cannot stall the child. */
	size_t used[2] = {0, 0}, fed = 0;
	char *bufs[2] = {po->out, po->err};
	size_t caps[2] = {sizeof(po->out) - 1, sizeof(po->err) - 1};
	struct pollfd pf[3] = {{out_pipe[0], POLLIN, 0},
			       {err_pipe[0], POLLIN, 0},
			       {in_pipe[1], POLLOUT, 0}};
	if (in_len == 0) {
		close(in_pipe[1]);
		pf[2].fd = -1;
	}
	while (pf[0].fd >= 0 || pf[1].fd >= 0) {
		cr_assert_geq(poll(pf, 3, 60000), 1, "%s hangs", path);
		for (int i = 0; i < 2; i++) {
			if (pf[i].fd < 0 || !pf[i].revents)
				continue;
			char tmp[4096];
			ssize_t n = read(pf[i].fd, tmp, sizeof(tmp));
			if (n <= 0) {
				close(pf[i].fd);
				pf[i].fd = -1;
				continue;
			}
			size_t room = caps[i] - used[i];
			size_t take = (size_t)n < room ? (size_t)n : room;
			memcpy(bufs[i] + used[i], tmp, take);
			used[i] += take;
		}
		if (pf[2].fd >= 0 && pf[2].revents) {
			size_t chunk = in_len - fed < 65536 ? in_len - fed
							    : 65536;
			ssize_t n = write(pf[2].fd, (const char *)in + fed,
					  chunk);
			if (n > 0)
				fed += (size_t)n;
			if (n < 0 || fed == in_len) {
				close(pf[2].fd);
				pf[2].fd = -1;
			}
		}
	}
	if (pf[2].fd >= 0)
		close(pf[2].fd);
	po->out[used[0]] = '\0';
	po->out_len = used[0];
	po->err[used[1]] = '\0';
	int ws;
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_assert(WIFEXITED(ws), "%s died: %s", path, po->err);
	po->code = WEXITSTATUS(ws);
}

int cli_proc_vline(char **argv, int cap, const char *prog, va_list ap)
{
	int argc = 0;
	argv[argc++] = (char *)prog;
	for (char *s; (s = va_arg(ap, char *)) != NULL;) {
		cr_assert_lt(argc, cap - 1, "too many arguments");
		argv[argc++] = s;
	}
	argv[argc] = NULL;
	return argc;
}

int cli_proc_refusing_port(int *fd_out)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*fd_out = fd;
	return ntohs(a.sin_port);
}
