#!/bin/sh
# Installs actions/runner VERSION into DIR, after checking the tarball's SHA-256 against the
# checksum file (docker/runner-checksums.txt). A version or architecture without a checksum
# line is refused: run scripts/bump-runner-version.mjs VERSION first.
#
#   install-runner.sh VERSION DIR [CHECKSUM_FILE]
#
# RUNNER_ARCH (x64|arm64) overrides the architecture, which otherwise comes from Docker's
# TARGETARCH or `uname -m`. RUNNER_DOWNLOAD_BASE replaces the GitHub releases URL (tests,
# mirrors): the file is fetched from $RUNNER_DOWNLOAD_BASE/v$VERSION/<tarball>.
set -eu

version="${1:?usage: install-runner.sh VERSION DIR [CHECKSUM_FILE]}"
dir="${2:?usage: install-runner.sh VERSION DIR [CHECKSUM_FILE]}"
checksums="${3:-$(dirname "$0")/runner-checksums.txt}"

if ! printf '%s' "$version" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$'; then
  echo "install-runner: \"$version\" is not a runner version such as 2.337.0" >&2
  exit 2
fi

arch="${RUNNER_ARCH:-}"
if [ -z "$arch" ]; then
  machine="${TARGETARCH:-}"
  [ -n "$machine" ] || machine="$(uname -m)"
  case "$machine" in
    amd64 | x86_64) arch=x64 ;;
    arm64 | aarch64) arch=arm64 ;;
    *)
      echo "install-runner: no actions/runner build for architecture \"$machine\"" >&2
      exit 2
      ;;
  esac
fi

file="actions-runner-linux-${arch}-${version}.tar.gz"
if [ ! -r "$checksums" ]; then
  echo "install-runner: cannot read the checksum file $checksums" >&2
  exit 1
fi
# "<sha256>  <file>" or "<sha256> *<file>" (sha256sum's binary mode); comments skipped.
sum="$(awk -v f="$file" '!/^[[:space:]]*#/ && NF >= 2 { name = $2; sub(/^\*/, "", name); if (name == f) { print $1; exit } }' "$checksums")"
if ! printf '%s' "$sum" | grep -Eq '^[0-9a-fA-F]{64}$'; then
  echo "install-runner: no SHA-256 for $file in $checksums; run scripts/bump-runner-version.mjs $version" >&2
  exit 1
fi

base="${RUNNER_DOWNLOAD_BASE:-https://github.com/actions/runner/releases/download}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "install-runner: downloading $file"
curl -fsSL --retry 5 --retry-delay 2 -o "$tmp/$file" "$base/v$version/$file"
if ! printf '%s  %s\n' "$sum" "$tmp/$file" | sha256sum -c - >/dev/null 2>&1; then
  echo "install-runner: $file does not match its SHA-256 in $checksums (expected $sum, got $(sha256sum "$tmp/$file" | cut -d' ' -f1))" >&2
  exit 1
fi
mkdir -p "$dir"
tar -xzf "$tmp/$file" -C "$dir"
echo "install-runner: actions/runner $version ($arch) installed in $dir"
