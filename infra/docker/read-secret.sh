#!/bin/sh
# read-secret NAME: print the Compose secret /run/secrets/NAME, or say how to make it and exit 2.
value="$(cat "/run/secrets/$1" 2>/dev/null || true)"
if [ -z "$value" ]; then
  echo "the secret $1 is missing or empty: create it (see infra/docker/make-secrets.sh)" >&2
  exit 2
fi
printf '%s' "$value"
