#!/bin/sh
# Entrypoint of the listener image. The CDK app hands the runtime config to the task as
# JSON in CBACTIONS_CONFIG_JSON (references only, no secrets); this writes it to
# $CBACTIONS_CONFIG, where the mux and every worker the listeners start read it, then runs
# `cbactions "$@"` (the task runs `mux --config /etc/cbactions/config.json`).
set -eu

config="${CBACTIONS_CONFIG:-/etc/cbactions/config.json}"
if [ -n "${CBACTIONS_CONFIG_JSON:-}" ]; then
  umask 077
  mkdir -p "$(dirname "$config")"
  printf '%s\n' "$CBACTIONS_CONFIG_JSON" >"$config.tmp.$$"
  mv -f "$config.tmp.$$" "$config"
  # The listeners and workers inherit the environment; they need the file, not a copy.
  unset CBACTIONS_CONFIG_JSON
fi
export CBACTIONS_CONFIG="$config"
exec cbactions "$@"
