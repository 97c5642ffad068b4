#!/usr/bin/env bash
# utp.sh — `btfs get` from a uTP-only libtorrent seeder next to the same
# download from a TCP-only one: MB/s and btfs's CPU seconds (user+sys),
# what uTP costs us. The read through a fresh mount of ours and of
# johang/btfs from a uTP-only seeder is bench/run's row T
# (`bench/run --rows T`).
#
# Usage (as root: it needs a private network namespace):
#   bench/utp.sh [SIZE_MiB [PIECE_LENGTH [ROUNDS]]]
# defaults: 256 MiB, 1MiB pieces, 2 rounds (uTP and TCP alternate).
#
# Everything runs inside `unshare -n` with only loopback up: python3-
# libtorrent seeds (measure.py lt-seed, seed mode) from 127.0.0.2 with TCP
# disabled both ways (LT_SEED_UTP_ONLY=1) and from 127.0.0.3 with uTP
# disabled; btfs is told the seeder with -peer (no tracker, no DHT). Each
# download is timed from btfs's start to its exit and checked by SHA-256.
# 1 MB = 10^6 bytes.
set -euo pipefail

size_mib=${1:-256}
piece=${2:-1MiB}
rounds=${3:-2}

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
py=/usr/bin/python3 # Debian's: it has libtorrent

if [ "${BENCH_INSIDE:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || bench_die "utp: run as root (unshare -n)"
  bench_need go unshare ip sha256sum
  "$py" -c 'import libtorrent' 2>/dev/null || bench_die "python3-libtorrent missing (apt-get install python3-libtorrent)"
  bench_build_and_enter "$0" "$size_mib" "$piece" "$rounds"
fi

work=$BENCH_WORK
trap bench_cleanup EXIT

mkdir -p "$work/seed"
head -c "$((size_mib << 20))" /dev/urandom > "$work/seed/data.bin"
"$work/btfs" create -piece-length "$piece" -o "$work/data.torrent" "$work/seed/data.bin" >/dev/null
want=$(sha256sum < "$work/seed/data.bin" | cut -d' ' -f1)

LT_SEED_UTP_ONLY=1 lt_seed_start "$py" "$here/measure.py" 127.0.0.2 51413 "$work/utp.stats" "$work/utp-seeder.log" \
  "$work/data.torrent:$work/seed"
lt_seed_start "$py" "$here/measure.py" 127.0.0.3 51413 "$work/tcp.stats" "$work/tcp-seeder.log" "$work/data.torrent:$work/seed"

# run NAME SEEDER: one download; prints MB/s and btfs's CPU seconds.
run() {
  local name=$1 seeder=$2 dir=$work/dl t0 t1 cpu
  rm -rf "$dir"; mkdir -p "$dir"; sync
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S' -o "$work/time.out" \
    "$work/btfs" get -quiet -no-dht -no-trackers -listen 127.0.0.1:0 -peer "$seeder" "$work/data.torrent" "$dir" >"$work/btfs.out" 2>&1
  t1=$EPOCHREALTIME
  [ "$(sha256sum < "$dir/data.bin" | cut -d' ' -f1)" = "$want" ] || { echo "$name: copy differs" >&2; exit 1; }
  cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$work/time.out")
  echo "$name: $(mbps $((size_mib << 20)) "$(elapsed "$t0" "$t1")") MB/s, btfs CPU ${cpu} s (user+sys)"
}

echo "torrent: $size_mib MiB in $piece pieces; seeders: libtorrent $("$py" -c 'import libtorrent; print(libtorrent.__version__)') uTP-only on 127.0.0.2, TCP-only on 127.0.0.3; $(nproc) CPUs"
for r in $(seq "$rounds"); do
  run "uTP" 127.0.0.2:51413
  run "TCP" 127.0.0.3:51413
done
