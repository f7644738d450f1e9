#!/usr/bin/env bash
# Installs Slurm (slurmctld, slurmd, sbatch, squeue, sacct) and MUNGE, the peer the submit and lifecycle
# benchmarks measure side by side. Acts only as root on Debian/Ubuntu; elsewhere it says what is missing,
# leaves the machine alone and exits 0 (the benchmarks then print their own figures and skip the peer).
set -euo pipefail

need=()
for cmd in slurmctld slurmd sbatch squeue; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || { need+=(slurm-wlm); break; }
done
command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ] || need+=(munge)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The packages enable and may start system daemons; the benchmarks run their own on a private
  # configuration, so leave nothing of the packaged ones running.
  for svc in slurmctld slurmd munge; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
  done
else
  echo "not installing ${need[*]} (needs root on Debian); the benchmarks will skip the Slurm peer" >&2
fi
