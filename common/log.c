#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static atomic_int cur_level = LOG_INFO;
static char node_tag[48];
static log_clock_fn clock_fn;
static void *clock_arg;

void log_set_level(enum log_level level)
{
	atomic_store(&cur_level, (int)level);
}

enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load_explicit(&cur_level,
						    memory_order_relaxed);
}

int log_level_parse(const char *s, enum log_level *out)
{
	static const char *const names[] = {"debug", "info", "warn", "error",
					    "off"};
	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
		if (strcasecmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void log_set_node(const char *node)
{
	snprintf(node_tag, sizeof(node_tag), "%s", node ? node : "");
}

void log_set_clock(log_clock_fn fn, void *arg)
{
	clock_fn = fn;
	clock_arg = arg;
}

static void log_vwrite(enum log_level level, const char *module,
		       const char *fmt, va_list ap)
{
	static const char letters[] = "DIWE";
	char line[1024];
	size_t n = 0;

	line[n++] = letters[level < LOG_OFF ? level : LOG_ERROR];
	line[n++] = ' ';
	if (clock_fn) {
		char t[40];
		t[0] = '\0';
		clock_fn(clock_arg, t, sizeof(t));
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s ", t);
	}
	if (node_tag[0])
		n += (size_t)snprintf(line + n, sizeof(line) - n, "[%s] ",
				      node_tag);
	if (module && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s: ",
				      module);
	if (n < sizeof(line)) {
		int w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (w > 0)
			n += (size_t)w;
	}
	if (n >= sizeof(line) - 1) {
		n = sizeof(line) - 5;
		memcpy(line + n, "...", 3);
		n += 3;
	}
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}

void log_write(enum log_level level, const char *module, const char *fmt, ...)
{
	if (!LOG_ENABLED(level))
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(level, module, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *module, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(LOG_ERROR, module, fmt, ap);
	va_end(ap);
	fflush(stderr);
	/* _Exit, not exit: other threads (RocksDB compaction, gRPC) are still
	 * running, and static destructors under them can crash or hang. */
	_Exit(1);
}
