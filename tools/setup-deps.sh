#!/usr/bin/env bash
# Installs the Debian packages rankkv builds against, if any is missing.
# Needs root (or sudo) only when something has to be installed.
set -euo pipefail
pkgs=(cmake gcc make pkg-config libcjson-dev libutf8proc-dev libpcre2-dev libopenblas-dev
      liblapacke-dev valgrind gnuplot-nox)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
