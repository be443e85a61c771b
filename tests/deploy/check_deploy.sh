#!/usr/bin/env bash
# check_deploy.sh SRC_DIR BUILD_DIR: checks the deployment files (deploy/
# systemd, docker, compose, k8s) against each other and against the built
# binaries of BUILD_DIR; the checks are in check_deploy.py beside this
# file. Needs Debian's python3 with python3-yaml (deploy/deps.sh installs
# it). Exit status: 0 all good, 1 a check failed, 2 usage or setup.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 SRC_DIR BUILD_DIR [--no-self-test]" >&2
  exit 2
fi
py=/usr/bin/python3
if [ ! -x "$py" ]; then
  echo "check_deploy: $py is missing: run deploy/deps.sh (python3," \
       "python3-yaml)" >&2
  exit 2
fi
if ! "$py" -c 'import yaml' 2>/dev/null; then
  echo "check_deploy: $py cannot import yaml: run deploy/deps.sh" \
       "(python3-yaml)" >&2
  exit 2
fi
exec "$py" "$(dirname "$0")/check_deploy.py" "$@"
