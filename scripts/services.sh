#!/usr/bin/env bash
# Start PostgreSQL and Redis on 127.0.0.1 when they are not already running.
# Installs them from Debian's packages on a machine that lacks them, and Chromium for the
# browser tests of /docs and /redoc (Playwright drives /usr/bin/chromium; no browser download).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

pg_up() { have pg_isready && pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { have redis-cli && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

missing=()
if ! pg_up || ! redis_up; then
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  have redis-server || missing+=(redis-server)
fi
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-noto-cjk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! pg_up; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$version/main
  # Tests connect as postgres over TCP without a password: trust loopback only.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 50); do pg_up && break; sleep 0.2; done
fi

if ! redis_up; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
fi

pg_up && redis_up && echo "PostgreSQL and Redis are up on 127.0.0.1"
