#!/usr/bin/env bash
# Tools the tests need beyond Python: headless Chromium and its driver (tests/test_review_browser.py).
# Idempotent: installs only what is missing (Debian packages; as root, or a user with sudo).
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "[tools] installing chromium and chromium-driver" >&2
  as_root apt-get install -y -qq chromium chromium-driver \
    || { as_root apt-get update -qq && as_root apt-get install -y -qq chromium chromium-driver; }
fi
