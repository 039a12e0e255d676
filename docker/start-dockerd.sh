#!/bin/sh
# Starts a Docker daemon inside a CodeBuild build, for `container:` jobs and service
# containers. Call it before `cbactions entrypoint` (buildspec.yml). Safe everywhere:
# - a daemon already answers (CodeBuild's standard images start one in privileged mode): done;
# - the build is not privileged (no CAP_SYS_ADMIN) or the image has no dockerd: prints why
#   and exits 0, so unprivileged pools run jobs without Docker;
# - otherwise starts dockerd and waits until it answers; exits 1 if it does not, so a
#   privileged pool never runs a job with Docker silently missing.
# CBACTIONS_DOCKERD_TIMEOUT (seconds, default 60) bounds the wait; the daemon logs to
# CBACTIONS_DOCKERD_LOG (default /var/log/cbactions-dockerd.log).
set -eu

timeout="${CBACTIONS_DOCKERD_TIMEOUT:-60}"
log="${CBACTIONS_DOCKERD_LOG:-/var/log/cbactions-dockerd.log}"

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "cbactions-start-dockerd: a Docker daemon is already running"
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "cbactions-start-dockerd: this image has no dockerd; jobs run without Docker"
  exit 0
fi
# CAP_SYS_ADMIN is bit 21 of the effective capability set; only privileged builds have it.
capeff="$(awk '/^CapEff:/ { print $2 }' /proc/self/status 2>/dev/null || true)"
if [ -z "$capeff" ] || [ $(( (0x$capeff >> 21) & 1 )) -ne 1 ]; then
  echo "cbactions-start-dockerd: the build is not privileged; jobs run without Docker (set privileged: true on the pool)"
  exit 0
fi

echo "cbactions-start-dockerd: starting dockerd"
nohup dockerd --host=unix:///var/run/docker.sock --storage-driver=overlay2 >"$log" 2>&1 &
waited=0
until docker info >/dev/null 2>&1; do
  if [ "$waited" -ge "$timeout" ]; then
    echo "cbactions-start-dockerd: dockerd did not answer within ${timeout} s; its log ends with:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done
echo "cbactions-start-dockerd: dockerd is up after ${waited} s"
