#!/usr/bin/env bash
# Make sure the servers the test suite talks to are up; start any that is down.
# Under CI=true a service that cannot be started fails the run (the tests would fail anyway).
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # name port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    up "$2" && return 0
    sleep 0.1
  done
  echo "services: $1 did not come up on port $2" >&2
  return 1
}

ensure() {  # name port seconds command...
  local name=$1 port=$2 secs=$3
  shift 3
  if up "$port"; then
    echo "services: $name up on $port"
    return 0
  fi
  echo "services: starting $name"
  "$@" >/dev/null 2>&1 || true
  wait_for "$name" "$port" "$secs"
}

status=0
# The programs the suite runs (servers, openssl, prometheus, Nagios plugins): scripts/tools.sh.
bash "$(dirname "$0")/tools.sh" || status=1
ensure postgres 5432 30 bash -c 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start' || status=1
ensure mysql 3306 30 start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || status=1
ensure redis 6379 10 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || status=1
ensure amqp 5672 60 rabbitmq-server -detached || status=1
ensure mqtt 1883 10 mosquitto -d -c /etc/mosquitto/mosquitto.conf || status=1
ensure nats 4222 10 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -m 8222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || status=1

# The suite's databases: `test` on PostgreSQL (user postgres, trusted on 127.0.0.1) and on
# MariaDB (root, empty password). Created when missing; the auth is checked, not changed.
if up 5432 && ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>/dev/null | grep -q 1; then
  echo "services: creating PostgreSQL database test"
  runuser -u postgres -- createdb test || status=1
fi
if up 5432 && ! PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -U postgres -d test -w -tAc "SELECT 1" </dev/null >/dev/null 2>&1; then
  echo "services: postgres@127.0.0.1/test needs a password; the suite wants trust for 127.0.0.1 in pg_hba.conf" >&2
  status=1
fi
if up 3306 && ! mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE IF NOT EXISTS test" >/dev/null 2>&1; then
  echo "services: MariaDB root@127.0.0.1 with an empty password cannot create database test" >&2
  status=1
fi

if [ "$status" -ne 0 ] && [ "${CI:-}" = "true" ]; then
  echo "services: a service is missing and CI=true" >&2
  exit 1
fi
exit 0
