#include "common/monotime.h"

#include <stdio.h>
#include <time.h>

uint64_t monotime_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t monotime_now_us(void)
{
	return monotime_now_ns() / 1000u;
}

uint64_t monotime_now_ms(void)
{
	return monotime_now_ns() / 1000000u;
}

void monotime_log_clock(void *arg, char *buf, size_t cap)
{
	(void)arg;
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	snprintf(buf, cap, "%02d:%02d:%02d.%06ld", tm.tm_hour, tm.tm_min,
		 tm.tm_sec, ts.tv_nsec / 1000);
}
