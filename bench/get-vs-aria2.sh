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

if [ "${BTFS_BENCH_INSIDE:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "get-vs-aria2: run as root (unshare -n)" >&2; exit 1; }
  for cmd in aria2c opentracker go unshare ip sha256sum curl; do
    command -v "$cmd" >/dev/null || { echo "get-vs-aria2: $cmd missing (scripts/deps)" >&2; exit 1; }
  done
  cd "$(dirname "$0")/.."
  work=$(mktemp -d /tmp/btfs-bench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  go build -o "$work/btfs" ./cmd/btfs   # outside the namespace: the module cache may need the network
  BTFS_BENCH_INSIDE=1 BTFS_BENCH_WORK=$work unshare -n -- bash "$0" "$size_mib" "$piece" "$rounds"
  exit
fi

work=$BTFS_BENCH_WORK
ip link set lo up
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The data and its torrent.
mkdir -p "$work/seed" "$work/tracker"
head -c "$((size_mib << 20))" /dev/urandom > "$work/seed/data.bin"
"$work/btfs" create -piece-length "$piece" -t http://127.0.0.1:6969/announce -o "$work/data.torrent" "$work/seed/data.bin" >/dev/null
ih=$("$work/btfs" info "$work/data.torrent" | awk '/^info-hash:/ {print $2}')
want=$(sha256sum < "$work/seed/data.bin" | cut -d' ' -f1)

# Tracker: opentracker refuses root; run it as nobody with a whitelist.
echo "$ih" > "$work/tracker/wl.txt"
chmod 755 "$work" "$work/tracker"; chmod 644 "$work/tracker/wl.txt"
opentracker -i 127.0.0.1 -p 6969 -P 6969 -d "$work/tracker" -u nobody -w /wl.txt >"$work/tracker.log" 2>&1 &
pids+=($!)
# It loads the whitelist asynchronously, and aria2c waits minutes after a
# refused announce: poll until the hash is accepted.
ih_url=$(sed 's/../%&/g' <<<"$ih")
for _ in $(seq 100); do
  curl -s "http://127.0.0.1:6969/announce?info_hash=$ih_url&peer_id=-BENCH-000000000000&port=1&left=0&event=stopped" 2>/dev/null |
    grep -q interval && break
  sleep 0.1
done

aria_common=(--no-conf=true --enable-dht=false --enable-dht6=false --bt-enable-lpd=false
  --enable-peer-exchange=false --disable-ipv6=true --console-log-level=warn
  --summary-interval=0 --show-console-readout=false)

# Seeder on 127.0.0.2.
aria2c "${aria_common[@]}" --interface=127.0.0.2 --listen-port=51413 --seed-ratio=0.0 \
  --bt-seed-unverified=true --check-integrity=false -d "$work/seed" "$work/data.torrent" >"$work/seeder.log" 2>&1 &
pids+=($!)
sleep 2 # its first announce

mbps() { awk -v n="$1" -v t0="$2" -v t1="$3" 'BEGIN { printf "%.1f", n / (t1 - t0) / 1e6 }'; }

run_btfs() {
  local dir=$work/btfs-dl t0 t1
  rm -rf "$dir"; mkdir -p "$dir"; sync
  t0=$(date +%s.%N)
  "$work/btfs" get -quiet -listen 127.0.0.1:0 "$work/data.torrent" "$dir" >"$work/btfs.out" 2>&1
  t1=$(date +%s.%N)
  [ "$(sha256sum < "$dir/data.bin" | cut -d' ' -f1)" = "$want" ] || { echo "btfs: copy differs" >&2; exit 1; }
  echo "btfs get : $(mbps $((size_mib << 20)) "$t0" "$t1") MB/s  ($(tail -1 "$work/btfs.out"))"
}

run_aria2() {
  local dir=$work/aria-dl t0 t1
  rm -rf "$dir"; mkdir -p "$dir"; sync
  t0=$(date +%s.%N)
  aria2c "${aria_common[@]}" --interface=127.0.0.3 --listen-port=51414 --seed-time=0 \
    --file-allocation=none -d "$dir" "$work/data.torrent" >"$work/aria.out" 2>&1
  t1=$(date +%s.%N)
  [ "$(sha256sum < "$dir/data.bin" | cut -d' ' -f1)" = "$want" ] || { echo "aria2c: copy differs" >&2; exit 1; }
  echo "aria2c   : $(mbps $((size_mib << 20)) "$t0" "$t1") MB/s"
}

echo "torrent: $size_mib MiB in $piece pieces; seeder: aria2c on 127.0.0.2; $(nproc) CPUs"
for r in $(seq "$rounds"); do
  run_btfs
  run_aria2
done
