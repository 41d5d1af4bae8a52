#!/bin/sh
# The image's entrypoint: before the first `serve`, makes an admin key, then
# runs browserd with the arguments given (CMD: `serve`).
#
# In the container browserd listens on 0.0.0.0, and beyond loopback it
# refuses to start while no API key exists. `browserd keys create` opens the
# database itself (the one BROWSERD_DATABASE_URL names, else SQLite under
# BROWSERD_DATA_DIR: serve gets the same environment, so the same database)
# and prints the key once; it is kept in the data volume, readable by
# browserd's user only:
#   docker compose exec browserd cat /var/lib/browserd/admin-key
# The file's presence means the key was made: delete it (and revoke the old
# key) to get a new one at the next start.
set -eu
key_file="${BROWSERD_DATA_DIR:?the image sets BROWSERD_DATA_DIR}/admin-key"
if [ "${1-}" = serve ] && [ ! -e "$key_file" ]; then
  umask 077
  # Written aside and renamed: a failed run leaves no empty key file behind
  # that would stop the next start from trying again.
  browserd keys create --project default --admin \
    --description "admin key made at first start by the image's entrypoint" >"$key_file.new"
  mv "$key_file.new" "$key_file"
fi
exec browserd "$@"
