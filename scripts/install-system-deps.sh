#!/usr/bin/env bash
# Installs what the test suite runs against besides npm packages: podman (with runc and the two settings
# these sandboxes need), busybox-static for a local test image, OpenSSH as a benchmark peer, and what the
# local gate isolates nodes with (uidmap for rootless podman, iproute2, util-linux, procps), and Chromium for
# the dashboard's browser test (driven headless by puppeteer-core, which never downloads a browser itself).
# Only acts as root on Debian/Ubuntu; elsewhere it says what is missing and leaves the machine alone.
set -euo pipefail

need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
# The local gate runs nodes as accounts of their own, in network namespaces of their own, with rootless podman.
command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v pkill >/dev/null 2>&1 || need+=(procps)
# `swm completion zsh` is checked by running its output in zsh.
command -v zsh >/dev/null 2>&1 || need+=(zsh)
# The dashboard test opens `swm dashboard` in a real headless browser.
[ -x /usr/bin/chromium ] || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "not installing ${need[*]} (needs root on Debian); the tests that need them will say so" >&2
    exit 0
  fi
fi

# Podman in unprivileged sandboxes: no rlimit changes, runc instead of crun (see ENVIRONMENT notes in README).
conf=/etc/containers/containers.conf
if [ "$(id -u)" = 0 ] && command -v podman >/dev/null 2>&1 && ! grep -q '^runtime = "runc"' "$conf" 2>/dev/null; then
  mkdir -p /etc/containers
  cat >> "$conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
CONF
fi
