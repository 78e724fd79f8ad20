#!/usr/bin/env bash
# Headless Chromium + chromedriver for the JupyterLab browser test (tests/test_lab_browser.py).
# Idempotent: does nothing (exit 0) when /usr/bin/chromium and /usr/bin/chromedriver exist.
# Debian/Ubuntu (apt-get) only; needs root (or passwordless sudo).
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: no apt-get here; install chromium and chromium-driver" \
         "(so that $CHROMIUM and $CHROMEDRIVER exist) by hand" >&2
    exit 1
fi

SUDO=
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_browser.sh: need root to apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
APT=(-y -qq -o=Dpkg::Use-Pty=0 --no-install-recommends)
install() { $SUDO apt-get install "${APT[@]}" chromium chromium-driver >/dev/null; }

# try from the current package lists first; refresh them only if that fails (or none exist)
if ! { compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null && install 2>/dev/null; }; then
    $SUDO apt-get update -qq >/dev/null
    install
fi

for f in "$CHROMIUM" "$CHROMEDRIVER"; do
    [[ -x "$f" ]] || { echo "install_browser.sh: $f still missing after apt-get" >&2; exit 1; }
done
echo "install_browser.sh: installed $("$CHROMIUM" --version 2>/dev/null | head -1)"
