#!/usr/bin/env bash
# webseed-vs-aria2.sh — streaming through a btfs mount from a webseed alone
# (nginx, BEP 19) next to the same torrent from an aria2c seeder alone.
#
# Usage (as root: it needs a private network namespace and FUSE):
#   bench/webseed-vs-aria2.sh [SIZE_MiB [PIECE_LENGTH [ROUNDS]]]
# defaults: 256 MiB, 256KiB pieces, 2 rounds.
#
# Inside `unshare -n` with only loopback up: nginx on 127.0.0.4:8080 serving
# the data, an aria2c seeder on 127.0.0.2:51413, no tracker, no DHT, no LSD.
# Each run mounts with a fresh cache (webseed run: -no-trackers; aria2c run:
# -no-webseeds -peer 127.0.0.2:51413), times the first byte of the file
# (from the moment it is visible in the mount) and then reads the whole file
# with cat, checked by SHA-256. Output: first byte in ms and MB/s (10^6 B/s,
# from the first read to the last byte).
set -euo pipefail

size_mib=${1:-256}
piece=${2:-256KiB}
rounds=${3:-2}

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

if [ "${BENCH_INSIDE:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || bench_die "webseed-vs-aria2: run as root (unshare -n)"
  bench_need aria2c nginx go unshare ip sha256sum curl fusermount3
  bench_build_and_enter "$0" "$size_mib" "$piece" "$rounds"
fi

work=$BENCH_WORK
trap bench_cleanup EXIT

mkdir -p "$work/seed" "$work/nginx"
head -c "$((size_mib << 20))" /dev/urandom > "$work/seed/data.bin"
"$work/btfs" create -piece-length "$piece" -w http://127.0.0.4:8080/ -o "$work/data.torrent" "$work/seed/data.bin" >/dev/null
want=$(sha256sum < "$work/seed/data.bin" | cut -d' ' -f1)

cat > "$work/nginx/nginx.conf" <<CONF
daemon off;
user root;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  sendfile on;
  default_type application/octet-stream;
  server { listen 127.0.0.4:8080; root $work/seed; location / { } }
}
CONF
nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" &
bench_track $!
for ((i = 0; i < 500; i++)); do
  curl -s -o /dev/null --max-time 2 -I http://127.0.0.4:8080/data.bin && break
  sleep 0.02
done

aria2_seed_start 127.0.0.2 51413 6800 "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  "$work/seeder.log" "$work/data.torrent:$work/seed"

# run NAME FLAGS...: mount with FLAGS, time the first byte and the whole read.
run() {
  local name=$1 mnt=$work/mnt cache=$work/cache t0 t1 t2 pid got
  shift
  rm -rf "$cache"; mkdir -p "$mnt" "$cache"; sync
  "$work/btfs" mount -quiet -no-dht -no-lsd -no-trackers -listen 127.0.0.1:0 -cache-dir "$cache" "$@" \
    "$work/data.torrent" "$mnt" >"$work/btfs.out" 2>&1 &
  pid=$!
  bench_track "$pid"
  bench_track_mount "$mnt"
  for ((i = 0; i < 1000; i++)); do
    [ -e "$mnt/data.bin" ] && break
    sleep 0.01
  done
  t0=$EPOCHREALTIME
  head -c 1 "$mnt/data.bin" >/dev/null
  t1=$EPOCHREALTIME
  got=$(sha256sum < "$mnt/data.bin" | cut -d' ' -f1)
  t2=$EPOCHREALTIME
  [ "$got" = "$want" ] || { echo "$name: the mount's bytes differ" >&2; exit 1; }
  echo "$name: first byte $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms, $(mbps $((size_mib << 20)) "$(elapsed "$t0" "$t2")") MB/s"
  bench_unmount "$mnt"
  bench_stop "$pid" 5
}

echo "torrent: $size_mib MiB in $piece pieces; webseed: nginx on 127.0.0.4; seeder: aria2c on 127.0.0.2; $(nproc) CPUs"
for r in $(seq "$rounds"); do
  run "webseed only"
  run "aria2c only " -no-webseeds -peer 127.0.0.2:51413
done
