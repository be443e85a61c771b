/*
 * monotime: the production clock. Monotonic time for timers and deadlines;
 * wall-clock time only for log lines. Pure cores never call this: time
 * enters them with each event.
 */
#ifndef SKV_COMMON_MONOTIME_H
#define SKV_COMMON_MONOTIME_H

#include <stddef.h>
#include <stdint.h>

uint64_t monotime_now_ns(void);
uint64_t monotime_now_us(void);
uint64_t monotime_now_ms(void);

/* A log_clock_fn (common/log.h) printing local wall time HH:MM:SS.uuuuuu. */
void monotime_log_clock(void *arg, char *buf, size_t cap);

#endif
