#!/usr/bin/env bash
# Tools the tests use besides the services, from Debian's packages: headless Chromium and its
# WebDriver (the HTML report's browser test) and Prometheus, which brings promtool (the alert
# rules' tests). Installs only what is missing; a second run only checks.
#   bash ops/tools.sh
set -euo pipefail
# It takes no argument: one was ignored (`bash ops/tools.sh --help` ran it whole).
if (($#)); then
  printf '[tools] refused: %s takes no argument; got %q\nusage: bash ops/tools.sh\n' "bash ops/tools.sh" "${1:0:40}" >&2
  exit 2
fi

log() { printf '[tools] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# package -> a file it installs; a package counts as installed when dpkg says so and the file is
# there (a half-configured package from an interrupted install is installed again).
declare -A WANTED=(
  [chromium]=/usr/bin/chromium
  [chromium-driver]=/usr/bin/chromedriver
  [prometheus]=/usr/bin/promtool
)

missing=()
for package in chromium chromium-driver prometheus; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null || true)
  if [ "${status:0:2}" != "ii" ] || [ ! -x "${WANTED[$package]}" ]; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  log "chromium, chromium-driver and prometheus already installed"
  exit 0
fi

log "installing from Debian's packages: ${missing[*]}"
# Another apt run may hold the lock (a parallel CI job): wait for it rather than fail.
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's prometheus package starts its server where systemd runs; the tests need only promtool.
for package in "${missing[@]}"; do
  if [ ! -x "${WANTED[$package]}" ]; then
    log "error: installing $package did not provide ${WANTED[$package]}"
    exit 1
  fi
done
log "installed: ${missing[*]}"
