#!/bin/sh
# Entry point of the release container `skyport`.
#
# First start (the spool has no config.json): run the bootstrap prompt (swm-setup), say what to configure
# next, and stop. Later starts: exec swm-core, which starts and supervises its managed gates.
# SKYPORT_RECREATE=yes recreates an existing spool, then stops.
#
# The prompt reads SKYPORT_USER, SKYPORT_USER_ID, SKYPORT_REMOTE_LOCATION and SKYPORT_CORE_URL (the core's
# address as the host reaches it: the published port) first and, on a terminal
# (`run -it`), asks for what they leave out. SWM_SETUP_CMD and SWM_CORE_CMD replace the two commands
# (their words are split, so "node /path/main.js" works).
set -eu

SWM_SPOOL="${SWM_SPOOL:-/root/.swm/spool}"
SWM_HOME="${SWM_HOME:-/root/.swm}"
export SWM_SPOOL SWM_HOME
SWM_SETUP_CMD="${SWM_SETUP_CMD:-swm-setup}"
SWM_CORE_CMD="${SWM_CORE_CMD:-swm-core}"
recreate="${SKYPORT_RECREATE:-no}"

# `run skyport swm status` and the like: run the given command instead.
if [ "$#" -gt 0 ]; then
  exec "$@"
fi

wants_recreate() {
  case "$recreate" in
    y | Y | yes | YES | Yes | true | 1) return 0 ;;
    *) return 1 ;;
  esac
}

next_steps() {
  cat <<STEPS

The spool and your bundle are on the host, in the directories the container mounts (~/.swm by default).
Next:
  1. Azure (optional; jobs run on the local remote meanwhile): put its credentials in place and mark
     the azure gate managed in ~/.swm/spool/config.json, as gates/azure/README.md explains.
  2. Start Sky Port in the background: docker start skyport (or: podman start skyport).
  3. From the host: swm status
STEPS
}

bootstrap() {
  # The unquoted command is split into words on purpose (see above).
  # shellcheck disable=SC2086
  $SWM_SETUP_CMD --no-next-steps "$@"
  next_steps
}

if [ ! -f "$SWM_SPOOL/config.json" ]; then
  echo "No spool in $SWM_SPOOL yet: creating it."
  if wants_recreate; then bootstrap --force; else bootstrap; fi
  exit 0
fi

if wants_recreate; then
  echo "SKYPORT_RECREATE=$recreate: recreating the spool in $SWM_SPOOL."
  bootstrap --force
  exit 0
fi

# shellcheck disable=SC2086
exec $SWM_CORE_CMD
