#include "common/status.h"

static const char *const status_strs[] = {
#define STATUS_STR_(name, num, str) [num] = str,
	STATUS_LIST(STATUS_STR_)
#undef STATUS_STR_
};

static const char *const status_names[] = {
#define STATUS_NAME_(name, num, str) [num] = #name,
	STATUS_LIST(STATUS_NAME_)
#undef STATUS_NAME_
};

const char *status_str(int s)
{
	if (s < 0 || s >= STATUS_COUNT_ || !status_strs[s])
		return "unknown status";
	return status_strs[s];
}

const char *status_name(int s)
{
	if (s < 0 || s >= STATUS_COUNT_ || !status_names[s])
		return "UNKNOWN";
	return status_names[s];
}
