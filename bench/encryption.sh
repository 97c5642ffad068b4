#!/usr/bin/env bash
# encryption.sh — the cost of MSE/PE: `btfs get` and a sequential read
# through `btfs mount`, each from a plain libtorrent seeder (-encryption
# off), from one that speaks RC4-encrypted MSE only (-encryption require),
# and from one that requires MSE but, as libtorrent does by default when
# offered both, selects the plaintext method (only the handshake
# obfuscated; -encryption prefer), on the same data over loopback. Prints
# MB/s (1 MB = 10^6 bytes) and the CPU seconds btfs used, per run, and the
# encrypted/plain ratios.
#
# Usage (as root: it needs a private network namespace):
#   bench/encryption.sh [SIZE_MiB [ROUNDS]]      defaults: 256 MiB, 2 rounds
#
# Everything runs inside `unshare -n` with only loopback up: the plain
# seeder on 127.0.0.2, the RC4 one on 127.0.0.3, the obfuscating one on
# 127.0.0.4 (python3-libtorrent through measure.py lt-seed, TCP only, seed
# mode), btfs dialling them with -peer and no tracker. bench/run's row E
# compares ours with johang/btfs on an RC4-only seeder; this compares our
# plain and encrypted reads with each other, and `btfs get` too.
set -euo pipefail

size_mib=${1:-256}
rounds=${2:-2}

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
py=/usr/bin/python3 # Debian's: it has libtorrent

if [ "${BENCH_INSIDE:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || bench_die "encryption: run as root (unshare -n)"
  bench_need go unshare ip sha256sum fusermount3 "$py"
  bench_build_and_enter "$0" "$size_mib" "$rounds"
fi

work=$BENCH_WORK
trap bench_cleanup EXIT

mkdir -p "$work/seed"
head -c "$((size_mib << 20))" /dev/urandom > "$work/seed/data.bin"
"$work/btfs" create -piece-length 256KiB -o "$work/data.torrent" "$work/seed/data.bin" >/dev/null
want=$(sha256sum < "$work/seed/data.bin" | cut -d' ' -f1)

# seed IP ENC: a libtorrent seeder (measure.py lt-seed, TCP only, seed
# mode) on IP:6881; ENC=forced speaks RC4 MSE only, ENC=obfuscated MSE
# only with libtorrent's default levels (both; plaintext preferred),
# ENC=off plain only (LT_SEED_ENC).
declare -A SEED_PID
seed() {
  LT_SEED_ENC=$2 lt_seed_start "$py" "$here/measure.py" "$1" 6881 "$work/seed-$1.stats" "$work/seed-$1.log" \
    "$work/data.torrent:$work/seed"
  SEED_PID[$1]=$LT_SEED_PID
}
# ticks PID: utime+stime of PID, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
seed 127.0.0.2 off
seed 127.0.0.3 forced
seed 127.0.0.4 obfuscated

# cpu PID: user+system seconds of a finished child, from bash's times.
TIMEFORMAT='%R %U %S'

# seeder_cpu PEER T0: CPU seconds the seeder at PEER used since T0 ticks.
seeder_cpu() { awk -v a="$2" -v b="$(ticks "${SEED_PID[${1%:*}]}")" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b - a) / hz}'; }

run_get() { # POLICY PEER
  local dir=$work/get t s0
  rm -rf "$dir"; mkdir -p "$dir"
  s0=$(ticks "${SEED_PID[${2%:*}]}")
  t=$( { time "$work/btfs" get -quiet -no-dht -listen "" -no-trackers -encryption "$1" -peer "$2" \
    "$work/data.torrent" "$dir" >"$work/get.out" 2>&1; } 2>&1 )
  [ "$(sha256sum < "$dir/data.bin" | cut -d' ' -f1)" = "$want" ] || bench_die "get -encryption $1: copy differs: $(tail -3 "$work/get.out")"
  read -r real user sys <<<"$t"
  echo "get   -encryption $1: $(mbps $((size_mib << 20)) "$real") MB/s in $real s, CPU s: btfs $(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}'), seeder $(seeder_cpu "$2" "$s0")"
  RESULT=$(mbps $((size_mib << 20)) "$real")
}

run_mount() { # POLICY PEER
  local mnt=$work/mnt cache=$work/cache t pid i s0
  rm -rf "$cache"; mkdir -p "$mnt" "$cache"
  s0=$(ticks "${SEED_PID[${2%:*}]}")
  "$work/btfs" mount -quiet -no-dht -listen "" -no-trackers -encryption "$1" -peer "$2" -cache-dir "$cache" \
    "$work/data.torrent" "$mnt" >"$work/mount.out" 2>&1 &
  pid=$!
  bench_track "$pid"
  bench_track_mount "$mnt"
  for ((i = 0; i < 1000; i++)); do
    [ -e "$mnt/data.bin" ] && break
    sleep 0.01
  done
  t=$( { time dd if="$mnt/data.bin" bs=1M status=none | sha256sum > "$work/mount.sum"; } 2>&1 ) # 1 MiB reads, like bench/run
  [ "$(cut -d' ' -f1 "$work/mount.sum")" = "$want" ] || bench_die "mount -encryption $1: read differs"
  read -r real _ _ <<<"$t"
  local cpu
  cpu=$(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$pid/stat")
  bench_stop "$pid" 10
  bench_unmount "$mnt"
  echo "mount -encryption $1: $(mbps $((size_mib << 20)) "$real") MB/s sequential read in $real s, CPU s: btfs $cpu, seeder $(seeder_cpu "$2" "$s0")"
  RESULT=$(mbps $((size_mib << 20)) "$real")
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "torrent: $size_mib MiB in 256 KiB pieces; libtorrent seeders: plain 127.0.0.2, RC4-only 127.0.0.3, MSE-only plaintext method 127.0.0.4; $(nproc) CPUs"
for r in $(seq "$rounds"); do
  run_get off 127.0.0.2:6881; gp=$RESULT
  run_get require 127.0.0.3:6881; ge=$RESULT
  run_get prefer 127.0.0.4:6881; go=$RESULT
  run_mount off 127.0.0.2:6881; mp=$RESULT
  run_mount require 127.0.0.3:6881; me=$RESULT
  run_mount prefer 127.0.0.4:6881; mo=$RESULT
  echo "round $r: rc4/plain get $(ratio "$ge" "$gp"), mount read $(ratio "$me" "$mp"); obfuscated/plain get $(ratio "$go" "$gp"), mount read $(ratio "$mo" "$mp")"
done
