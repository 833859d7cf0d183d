#!/bin/sh
# Make the Compose secrets for docker-compose.yml in DIR (default ./secrets): MinIO's root credentials and the
# webhook token, random; the admin passphrase empty (choose it in the browser at first start) unless
# ADMIN_PASSPHRASE_FILE names a file to copy it from. Existing files are kept. DIR is 0700, the files 0600.
set -eu
dir="${1:-secrets}"
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
random() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
[ -s "$dir/minio_root_user" ] || printf 'cryospy-root\n' >"$dir/minio_root_user"
[ -s "$dir/minio_root_password" ] || { random; echo; } >"$dir/minio_root_password"
[ -s "$dir/webhook_token" ] || { random; echo; } >"$dir/webhook_token"
if [ ! -e "$dir/admin_passphrase" ]; then
  if [ -n "${ADMIN_PASSPHRASE_FILE:-}" ]; then cp "$ADMIN_PASSPHRASE_FILE" "$dir/admin_passphrase"
  else : >"$dir/admin_passphrase"; fi
fi
[ -e "$dir/agent.json" ] || : >"$dir/agent.json"   # filled by `cryospy devices create` when you add a camera
echo "Secrets are in $dir (0600). Keep them out of git and backups you do not trust."
