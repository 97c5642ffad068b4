#!/usr/bin/env bash
# get-vs-aria2.sh — throughput of `btfs get` next to an aria2c leecher, both
# downloading the same torrent from the same aria2c seeder over loopback.
#
# Usage (as root: it needs a private network namespace):
#   bench/get-vs-aria2.sh [SIZE_MiB [PIECE_LENGTH [ROUNDS]]]
# defaults: 256 MiB, 256KiB pieces, 2 rounds (btfs and aria2c alternate).
#
# Everything runs inside `unshare -n` with only loopback up: an opentracker
# on 127.0.0.1, the aria2c seeder on 127.0.0.2, the leechers on 127.0.0.1
# (btfs) and 127.0.0.3 (aria2c). Each leecher is timed from its start to its
# exit (tracker announce included for both), and its copy is checked by
# SHA-256. Output: one line per run with MB/s (1 MB = 10^6 bytes).
set -euo pipefail

size_mib=${1:-256}
piece=${2:-256KiB}
rounds=${3:-2}

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

if [ "${BENCH_INSIDE:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || bench_die "get-vs-aria2: run as root (unshare -n)"
  bench_need aria2c opentracker go unshare ip setpriv sha256sum curl
  BENCH_WORK_MODE=755 bench_build_and_enter "$0" "$size_mib" "$piece" "$rounds"
fi

work=$BENCH_WORK
trap bench_cleanup EXIT

# The data and its torrent.
mkdir -p "$work/seed"
head -c "$((size_mib << 20))" /dev/urandom > "$work/seed/data.bin"
"$work/btfs" create -piece-length "$piece" -t http://127.0.0.1:6969/announce -o "$work/data.torrent" "$work/seed/data.bin" >/dev/null
ih=$("$work/btfs" info "$work/data.torrent" | awk '/^info-hash:/ {print $2}')
want=$(sha256sum < "$work/seed/data.bin" | cut -d' ' -f1)

tracker_start "$work/tracker" 6969 "$ih"
aria2_seed_start 127.0.0.2 51413 6800 "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  "$work/seeder.log" "$work/data.torrent:$work/seed"
tracker_wait_seeders 6969 "$ih" 1

run_btfs() {
  local dir=$work/btfs-dl t0 t1
  rm -rf "$dir"; mkdir -p "$dir"; sync
  t0=$EPOCHREALTIME
  "$work/btfs" get -quiet -no-dht -listen 127.0.0.1:0 "$work/data.torrent" "$dir" >"$work/btfs.out" 2>&1
  t1=$EPOCHREALTIME
  [ "$(sha256sum < "$dir/data.bin" | cut -d' ' -f1)" = "$want" ] || { echo "btfs: copy differs" >&2; exit 1; }
  echo "btfs get : $(mbps $((size_mib << 20)) "$(elapsed "$t0" "$t1")") MB/s  ($(tail -1 "$work/btfs.out"))"
}

run_aria2() {
  local dir=$work/aria-dl t0 t1
  rm -rf "$dir"; mkdir -p "$dir"; sync
  t0=$EPOCHREALTIME
  aria2c "${ARIA_COMMON[@]}" --interface=127.0.0.3 --listen-port=51414 --seed-time=0 \
    --file-allocation=none -d "$dir" "$work/data.torrent" >"$work/aria.out" 2>&1
  t1=$EPOCHREALTIME
  [ "$(sha256sum < "$dir/data.bin" | cut -d' ' -f1)" = "$want" ] || { echo "aria2c: copy differs" >&2; exit 1; }
  echo "aria2c   : $(mbps $((size_mib << 20)) "$(elapsed "$t0" "$t1")") MB/s"
}

echo "torrent: $size_mib MiB in $piece pieces; seeder: aria2c on 127.0.0.2; $(nproc) CPUs"
for r in $(seq "$rounds"); do
  run_btfs
  run_aria2
done
