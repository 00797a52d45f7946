#!/usr/bin/env bash
# Install what the JS client tests (tests/examples) need; safe to run again, it only does what is missing.
#   1. examples/node's npm packages, exactly as package-lock.json pins them (npm ci, without install scripts:
#      nothing downloads a browser or CUDA binaries);
#   2. Chromium from the distribution (Debian: apt-get install chromium) when /usr/bin/chromium is missing;
#   3. Python playwright in the virtual environment (only the driver: it never downloads a browser here).
# Usage: examples/setup.sh            (VENV=path/to/venv to use another environment than ./.venv)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="${VENV:-$repo/.venv}"
say() { printf 'examples/setup.sh: %s\n' "$*"; }

# 1. npm packages ---------------------------------------------------------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "node (>= 20) and npm are needed: install them (Debian: apt-get install nodejs npm) and run me again" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  say "node >= 20 is needed, found $(node --version)" >&2
  exit 1
fi
# The tests' npm fixture writes the same stamp: node_modules matches the lock file it was installed from.
stamp="$here/node/node_modules/.cifar-edge-lock-sha256"
lock_sha="$(sha256sum "$here/node/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$lock_sha" ]; then
  say "npm packages: up to date"
else
  say "npm packages: npm ci in examples/node"
  (cd "$here/node" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$lock_sha" >"$stamp"
fi

# 2. Chromium --------------------------------------------------------------------------------------------------------
if [ -x /usr/bin/chromium ]; then
  say "chromium: $(/usr/bin/chromium --version 2>/dev/null | tail -n 1)"
elif command -v apt-get >/dev/null; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  say "chromium: installing Debian's chromium package"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends chromium
else
  say "chromium: /usr/bin/chromium is missing and there is no apt-get: install Chromium there (or set" \
    "CIFAR_EDGE_CHROMIUM to its path); the browser test skips without it" >&2
fi

# 3. Python playwright ------------------------------------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  say "no virtual environment at $venv (create it first, or set VENV)" >&2
  exit 1
fi
if "$venv/bin/python" -c 'import playwright' 2>/dev/null; then
  say "playwright: installed"
else
  say "playwright: pip install into $venv"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$venv/bin/python" -m pip install -q 'playwright>=1.45,<2'
fi
