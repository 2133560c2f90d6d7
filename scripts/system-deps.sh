#!/usr/bin/env bash
# System packages: Debian's chromium and chromium-driver (browser tests of the web chat), and
# wordnet-base + wordnet-sense-index (WordNet 3.0 for METEOR; `bimedix2 eval setup-nltk` copies it
# into an NLTK data dir, which the eval metrics also do on first use).
# Idempotent: does nothing when both are installed. Needs root (or sudo) and apt-get.
set -euo pipefail

packages=(chromium chromium-driver wordnet-base wordnet-sense-index)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system-deps: already installed: ${packages[*]}" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "system-deps: apt-get not found; install ${missing[*]} by hand (browser tests skip without /usr/bin/chromium)" >&2
  exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}"
echo "system-deps: installed ${missing[*]}" >&2
