#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests (Debian's packages; nothing is installed here).
#
#   .ci/postgres.sh start DIR   # makes DIR (must not exist or be empty), starts a cluster in it and
#                               # prints its URL: postgresql://vgg:PASSWORD@127.0.0.1:PORT/postgres
#   .ci/postgres.sh stop DIR    # stops it and removes DIR
#
# Exit status 3: no PostgreSQL server binaries on this machine (apt-get install postgresql).
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user. fsync is off:
# the tests kill processes, never the machine.
set -euo pipefail
cmd=${1:?usage: postgres.sh start|stop DIR}
dir=${2:?usage: postgres.sh start|stop DIR}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bindir=${PG_BINDIR:-}
if [ -z "$bindir" ]; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi
if [ -z "$bindir" ] && command -v initdb >/dev/null 2>&1; then
  bindir=$(dirname "$(command -v initdb)")
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ] || [ ! -x "$bindir/pg_ctl" ]; then
  echo "postgres.sh: no PostgreSQL server binaries found (apt-get install postgresql)" >&2
  exit 3
fi

case "$cmd" in
start)
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "postgres.sh: running as root but there is no 'postgres' user to own the cluster" >&2
    exit 3
  fi
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [ -n "$(ls -A "$dir")" ]; then echo "postgres.sh: $dir is not empty" >&2; exit 2; fi
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf '%s\n' "$password" > "$dir/pwfile"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir/pwfile"
  # TCP needs the password (scram); the unix socket in DIR (for pg_ctl) trusts its owner
  as_pg "$bindir/initdb" -D "$dir/data" -U vgg --pwfile="$dir/pwfile" --auth-host=scram-sha-256 \
    --auth-local=trust --no-locale --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/pwfile"
  as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off -c max_connections=200" \
    >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgresql://vgg:$password@127.0.0.1:$port/postgres"
  ;;
stop)
  if [ -d "$dir/data" ]; then
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: postgres.sh start|stop DIR" >&2
  exit 2
  ;;
esac
