#!/usr/bin/env bash
# bench/reread.sh — re-reading complete data through a mount, against the
# same bytes read from the page cache directly. A btfs seed on loopback
# fills a fresh cache through one mount (a whole read); the file is then
# opened anew (complete at open: FUSE passthrough, unless -passthrough=false)
# and read with dd, bs=1M:
#   cold: the page cache of the mounted file dropped (posix_fadvise
#         DONTNEED on the mounted file only), the cache's data cached;
#   warm: three reads in a row, the median;
# each followed by the same read of the source file from the page cache.
#
#   bench/reread.sh [SIZE_MIB [BTFS_BINARY...]]   (default 512 MiB, this tree's btfs)
#
# Each binary is run with -passthrough=true and false when it has the flag.
# Root only; re-runs itself inside `unshare -n -m` with only loopback up.
set -euo pipefail

if [[ "${BTFS_BENCH_NS:-}" != 1 ]]; then
	[[ $(id -u) == 0 ]] || { echo "bench/reread.sh: run as root" >&2; exit 1; }
	exec unshare -n -m --propagation private env BTFS_BENCH_NS=1 "$0" "$@"
fi
ip link set lo up

SIZE_MIB=${1:-512}
shift || true
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/btfs-reread.XXXXXX)
PIDS=()
MOUNTS=()
cleanup() {
	for mp in "${MOUNTS[@]}"; do fusermount3 -u "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '%s\n' "$*" >&2; }

BINS=("$@")
if [[ ${#BINS[@]} == 0 ]]; then
	(cd "$REPO" && go build -o "$WORK/btfs" ./cmd/btfs)
	BINS=("$WORK/btfs")
fi
mkdir -p "$WORK/seed"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$WORK/seed/bench.bin"
"${BINS[0]}" create -piece-length 1MiB -o "$WORK/bench.torrent" "$WORK/seed/bench.bin" >/dev/null
"${BINS[0]}" seed -quiet -no-dht -listen 127.0.0.1:7001 "$WORK/bench.torrent" "$WORK/seed" >"$WORK/seed.log" 2>&1 &
PIDS+=($!)

drop() { python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"; }
# gbps FILE: GB/s of one dd of FILE.
gbps() { dd if="$1" of=/dev/null bs=1M 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) t = $(i-1); print '"$((SIZE_MIB << 20))"' / t / 1e9 }'; }
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

printf '%-40s %-11s %8s %8s %6s %8s %8s %6s\n' binary passthrough cold src ratio warm src ratio
for bin in "${BINS[@]}"; do
	modes=(default)
	"$bin" mount -h 2>&1 | grep -q -- -passthrough && modes=(true false)
	for pt in "${modes[@]}"; do
		cache=$(mktemp -d "$WORK/cache.XXXX")
		mp=$(mktemp -d "$WORK/mnt.XXXX")
		MOUNTS+=("$mp")
		flag=()
		[[ $pt != default ]] && flag=(-passthrough="$pt")
		"$bin" mount -quiet -no-dht -listen 127.0.0.1:0 -peer 127.0.0.1:7001 "${flag[@]}" -cache-dir "$cache" "$WORK/bench.torrent" "$mp" >"$mp.log" 2>&1 &
		pid=$!
		PIDS+=($pid)
		for _ in $(seq 500); do [[ -e "$mp/bench.bin" ]] && break; sleep 0.01; done
		cat "$mp/bench.bin" >/dev/null # the whole torrent into the cache
		cmp -s "$mp/bench.bin" "$WORK/seed/bench.bin" || { say "MISMATCH"; exit 1; }
		# the cache's data (or piece files) in the page cache
		find "$cache" -type f -size +1M -exec cat {} + >/dev/null
		drop "$mp/bench.bin"
		cold=$(gbps "$mp/bench.bin")
		cat "$WORK/seed/bench.bin" >/dev/null
		src=$(gbps "$WORK/seed/bench.bin")
		w=() s=()
		for _ in 1 2 3; do
			w+=("$(gbps "$mp/bench.bin")")
			s+=("$(gbps "$WORK/seed/bench.bin")")
		done
		warm=$(median3 "${w[@]}")
		wsrc=$(median3 "${s[@]}")
		printf '%-40s %-11s %8.2f %8.2f %6.2f %8.2f %8.2f %6.2f\n' "$(basename "$(dirname "$bin")")/$(basename "$bin")" "$pt" \
			"$cold" "$src" "$(awk -v a="$cold" -v b="$src" 'BEGIN { print a / b }')" \
			"$warm" "$wsrc" "$(awk -v a="$warm" -v b="$wsrc" 'BEGIN { print a / b }')"
		fusermount3 -u "$mp"
		wait "$pid" || true
		rm -rf "$cache"
	done
done
