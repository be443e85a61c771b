/*
 * log: leveled logging to stderr with a node prefix.
 *
 * Pure: no clock of its own. A runtime installs a time source with
 * log_set_clock (the production runtime: wall clock; the simulator: virtual
 * time) and names the node whose code is running with log_set_node, so a
 * simulated cluster of many nodes in one process still reads per node.
 * One line per call, written with a single fwrite so lines from several
 * threads do not interleave.
 */
#ifndef SKV_COMMON_LOG_H
#define SKV_COMMON_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_DEBUG = 0,
	LOG_INFO = 1,
	LOG_WARN = 2,
	LOG_ERROR = 3,
	LOG_OFF = 4,
};

/* Writes the time part of a line (no trailing space) into buf[0..cap). */
typedef void (*log_clock_fn)(void *arg, char *buf, size_t cap);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parses "debug", "info", "warn", "error", "off"; returns -1 on bad input. */
int log_level_parse(const char *s, enum log_level *out);

/* The node tag printed in brackets; copied (truncated to 47 bytes). */
void log_set_node(const char *node);

/* NULL removes the time part. `arg` is borrowed for as long as installed. */
void log_set_clock(log_clock_fn fn, void *arg);

void log_write(enum log_level level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Logs at ERROR and exits the process with status 1; for storage errors
 * after which a replica could diverge. */
void log_fatal(const char *module, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

#define LOG_ENABLED(level) ((level) >= log_get_level())

#define log_debug(mod, ...)                                    \
	do {                                                   \
		if (LOG_ENABLED(LOG_DEBUG))                    \
			log_write(LOG_DEBUG, mod, __VA_ARGS__); \
	} while (0)
#define log_info(mod, ...) log_write(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_write(LOG_ERROR, mod, __VA_ARGS__)

#endif
