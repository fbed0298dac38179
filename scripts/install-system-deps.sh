#!/usr/bin/env bash
# Install the system tools audio-r1 uses (ffmpeg, espeak-ng, sox, flite; Debian's chromium for the web UI test)
# when they are missing.
# Idempotent: when everything is present it prints nothing and exits at once.
set -u
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox libsox-fmt-all)
command -v flite >/dev/null 2>&1 || missing+=(flite)  # the generalisation set's speech (training uses espeak-ng)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: apt-get not found; install ${missing[*]} yourself. Tests that need them are skipped." >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "note: not root; install ${missing[*]} with apt-get yourself. Tests that need them are skipped." >&2
        exit 0
    fi
fi
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "note: apt-get could not install ${missing[*]}. Tests that need them are skipped." >&2
fi
exit 0
