#!/bin/sh
# shardkv-join GID=ADDR[,ADDR...] [GID=...]: joins replica groups to the
# shard master ($SHARDKV_MASTERS) once it has a leader, for one-shot init
# jobs (compose's `init` service, the Kubernetes Job). Idempotent: a group
# already in the latest configuration is left alone, so a rerun (or a
# restarted job) changes nothing. A join that timed out may or may not have
# applied, so each round queries again before joining what is missing.
#
#   SHARDKV_JOIN_WAIT   give up after this many seconds (default 300)
#
# Exit status: 0 every group joined; 1 refused by the shard master, or a
# group joined with other servers than given here (nothing is changed: fix
# the arguments, or leave and rejoin the group by hand); 2 usage; 3 no
# shard-master leader in time.
set -eu

prog=shardkv-join
if [ $# -eq 0 ]; then
	echo "usage: $prog GID=ADDR[,ADDR...] [GID=...]" >&2
	exit 2
fi
for g in "$@"; do
	case $g in
	[0-9]*=?*) ;;
	*) echo "$prog: '$g' is not GID=ADDR[,ADDR...]" >&2; exit 2 ;;
	esac
done

wait_s=${SHARDKV_JOIN_WAIT:-300}
start=$(date +%s)

while :; do
	if cfg=$(shardctl --json --timeout 3000 query 2>/dev/null); then
		missing=
		for g in "$@"; do
			gid=${g%%=*}
			# as shardctl --json prints it: "GID":["ADDR","ADDR"]
			want="\"$gid\":[\"$(printf '%s' "${g#*=}" |
				sed 's/,/","/g')\"]"
			case $cfg in
			*"$want"*) echo "$prog: group $gid already joined" ;;
			*"\"$gid\":["*)
				echo "$prog: group $gid is joined with other" \
					"servers than ${g#*=}: $cfg" >&2
				exit 1 ;;
			*) missing="$missing $g" ;;
			esac
		done
		if [ -z "$missing" ]; then
			shardctl query
			exit 0
		fi
		echo "$prog: joining$missing"
		rc=0
		# shellcheck disable=SC2086 # one argument per group
		shardctl --timeout 5000 join $missing || rc=$?
		case $rc in
		0) continue ;;  # query again: the loop ends once all are there
		3) ;;           # no leader or no answer: maybe applied; retry
		*) exit "$rc" ;;
		esac
	fi
	if [ $(($(date +%s) - start)) -ge "$wait_s" ]; then
		echo "$prog: no shard-master leader at ${SHARDKV_MASTERS:-?}" \
			"after ${wait_s}s" >&2
		exit 3
	fi
	sleep 1
done
