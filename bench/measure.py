#!/usr/bin/python3
"""measure.py: the timed parts of bench/run, one subcommand each.

Every subcommand prints one JSON object on stdout. Times are taken inside
this process with time.time() (the wall clock bash's $EPOCHREALTIME also
reads), right around the system calls measured, so neither Python's start
nor the shell's polling is in them. Polls (for a mount's listing, for a
process's exit) sleep 1 ms or wait on a pidfd.

Every read is checked against the source file (or its SHA-256): a fast
wrong answer is a failure, not a result.
"""

import hashlib
import json
import mmap
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import time

MiB = 1 << 20


def out(**kw):
    print(json.dumps(kw), flush=True)


def wait_listing(mnt, name, t0, timeout):
    """Polls (1 ms) until name is in the listing of mnt; returns seconds
    since t0 (an $EPOCHREALTIME taken just before the client started)."""
    deadline = time.time() + timeout
    while True:
        try:
            if name in os.listdir(mnt):
                return time.time() - t0
        except OSError:
            pass
        if time.time() > deadline:
            raise TimeoutError(f"{name} not listed in {mnt} after {timeout}s")
        time.sleep(0.001)


def pread_exact(fd, n, off):
    buf = bytearray()
    while len(buf) < n:
        b = os.pread(fd, n - len(buf), off + len(buf))
        if not b:
            break
        buf += b
    return bytes(buf)


def src_bytes(src, off, n):
    with open(src, "rb") as f:
        f.seek(off)
        return f.read(n)


def cmd_ttfb(a):
    """ttfb MNT NAME T0 SRC OFF LEN...: wait for the listing, then one read
    of LEN bytes at each OFF in turn, on one open file."""
    mnt, name, t0, src = a[0], a[1], float(a[2]), a[3]
    spans = [(int(a[i]), int(a[i + 1])) for i in range(4, len(a), 2)]
    listing = wait_listing(mnt, name, t0, 60)
    path = os.path.join(mnt, name)
    reads = []
    t = time.time()
    fd = os.open(path, os.O_RDONLY)
    try:
        for off, n in spans:
            got = pread_exact(fd, n, off)
            reads.append(time.time() - t)
            if got != src_bytes(src, off, n):
                raise ValueError(f"{path}: wrong bytes at {off}")
            t = time.time()
    finally:
        os.close(fd)
    out(listing=listing, reads=reads)


def cmd_random(a):
    """random MNT NAME T0 SRC COUNT LEN SEED: wait for the listing, then
    COUNT reads of LEN bytes at random offsets (seeded), on one open file:
    the latency of each."""
    mnt, name, t0, src = a[0], a[1], float(a[2]), a[3]
    count, n, seed = int(a[4]), int(a[5]), int(a[6])
    listing = wait_listing(mnt, name, t0, 60)
    path = os.path.join(mnt, name)
    size = os.path.getsize(src)
    rng = random.Random(seed)
    offs = [rng.randrange(0, size - n) for _ in range(count)]
    lat = []
    fd = os.open(path, os.O_RDONLY)
    try:
        for off in offs:
            t = time.time()
            got = pread_exact(fd, n, off)
            lat.append(time.time() - t)
            if got != src_bytes(src, off, n):
                raise ValueError(f"{path}: wrong bytes at {off}")
    finally:
        os.close(fd)
    q = statistics.quantiles(lat, n=10, method="inclusive") if len(lat) > 1 else lat * 9
    out(listing=listing, first=lat[0], median=statistics.median(lat), p90=q[8], lat=lat)


def cmd_tree(a):
    """tree MNT ROOT NAME T0 SRC: wait for NAME in MNT's listing, then
    check that the tree under ROOT lists exactly the files under SRC
    (zero-length ones included), each with the same bytes."""
    mnt, root, name, t0, src = a[0], a[1], a[2], float(a[3]), a[4]
    listing = wait_listing(mnt, name, t0, 60)
    t = time.time()

    def files(top):
        return {os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs}

    want, got = files(src), files(root)
    if want != got:
        raise ValueError(f"{root}: listing differs: missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}")
    for rel in sorted(want):
        with open(os.path.join(root, rel), "rb") as f, open(os.path.join(src, rel), "rb") as g:
            if f.read() != g.read():
                raise ValueError(f"{root}/{rel}: wrong bytes")
    out(listing=listing, s=time.time() - t, files=len(want))


def cpu_ticks(pid):
    """utime+stime of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_whole(path, size):
    """Reads path into a pre-faulted buffer with 1 MiB reads; returns
    (start, end, buffer). Hashing comes after, out of the timing."""
    buf = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
    mv = memoryview(buf)
    got = 0
    t = time.time()
    with open(path, "rb", buffering=0) as f:
        while got < size:
            k = f.readinto(mv[got:min(got + MiB, size)])
            if not k:
                break
            got += k
    end = time.time()
    mv.release()
    return t, end, got, buf


def cmd_seq(a):
    """seq [--repeat N [--budget S]] [--pid PID] [--wait MNT NAME T0] FILE
    SIZE SHA256: read FILE whole (after waiting for NAME in MNT's listing),
    check its SHA-256; with PID, the CPU seconds that process spent
    meanwhile. With --repeat, N reads in a row (the page cache warm after
    the first), fewer once they took S seconds together (a slow reader's
    one read is not noisy): the median time counts, and its CPU."""
    repeat, budget, pid, wait = 1, float("inf"), None, None
    while a and a[0].startswith("--"):
        if a[0] == "--repeat":
            repeat, a = int(a[1]), a[2:]
        elif a[0] == "--budget":
            budget, a = float(a[1]), a[2:]
        elif a[0] == "--pid":
            pid, a = a[1], a[2:]
        elif a[0] == "--wait":
            wait, a = a[1:4], a[4:]
        else:
            raise ValueError(f"seq: unknown option {a[0]}")
    path, size, want = a[0], int(a[1]), a[2]
    listing = wait_listing(wait[0], wait[1], float(wait[2]), 60) if wait else None
    runs = []
    for _ in range(repeat):
        c0 = cpu_ticks(pid) if pid else None
        t, end, got, buf = read_whole(path, size)
        cpu = cpu_ticks(pid) - c0 if pid else None
        ok = got == size and hashlib.sha256(buf[:got]).hexdigest() == want
        buf.close()
        if not ok:
            raise ValueError(f"{path}: {got} of {size} bytes, SHA-256 differs" if got == size else f"{path}: short read {got}")
        runs.append((end - t, t, end, cpu))
        if sum(r[0] for r in runs) >= budget:
            break
    s, t, end, cpu = sorted(runs)[len(runs) // 2]
    out(listing=listing, start=t, end=end, s=s, mbps=size / s / 1e6, cpu=cpu,
        all_s=[r[0] for r in runs] if len(runs) > 1 else None)


def cmd_evict(a):
    """evict PATH...: write back, then drop the page cache of every file
    under each PATH (posix_fadvise DONTNEED): the files' pages only, not
    the whole machine's cache (others share it)."""
    os.sync()
    n = 0
    for p in a:
        todo = [p]
        if os.path.isdir(p):
            todo = [os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs]
        for f in todo:
            try:
                fd = os.open(f, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fdatasync(fd)
            except OSError:
                pass
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
            n += 1
    out(files=n)


def cmd_run(a):
    """run MNT NAME T0 -- ARGV...: wait for the listing, then time ARGV
    (its output discarded; it must exit 0)."""
    mnt, name, t0 = a[0], a[1], float(a[2])
    argv = a[a.index("--") + 1:]
    listing = wait_listing(mnt, name, t0, 60) if mnt != "-" else None
    t = time.time()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    s = time.time() - t
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    out(listing=listing, s=s)


def cmd_hold(a):
    """hold FILE OFF LEN: one read that is expected to wait; prints what
    it got: ok, or the errno's name, and when it returned."""
    path, off, n = a[0], int(a[1]), int(a[2])
    t = time.time()
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.pread(fd, n, off)
        finally:
            os.close(fd)
        res = "ok"
    except OSError as e:
        res = os.strerror(e.errno) if e.errno else str(e)
    out(result=res, start=t, end=time.time())


def cmd_signal_wait(a):
    """signal-wait PID SIG TIMEOUT: send SIG to PID and wait (pidfd) for it
    to exit; the seconds it took, or null after TIMEOUT."""
    pid, sig, timeout = int(a[0]), getattr(signal, a[1]), float(a[2])
    fd = os.pidfd_open(pid)
    t = time.time()
    os.kill(pid, sig)
    p = select.poll()
    p.register(fd, select.POLLIN)
    ready = p.poll(timeout * 1000)
    s = time.time() - t
    os.close(fd)
    out(s=s if ready else None)


def cmd_stats(a):
    """stats PID: peak RSS (VmHWM, MiB) and CPU seconds so far."""
    pid = a[0]
    hwm = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    out(rss_mib=hwm, cpu=cpu_ticks(pid))


def cmd_stored(a):
    """stored DIR: bytes stored under DIR (allocated blocks, so sparse
    files count what they hold)."""
    n = 0
    for d, _, fs in os.walk(a[0]):
        for f in fs:
            try:
                n += os.lstat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass
    out(bytes=n)


def cmd_aria2_upload(a):
    """aria2-upload RPCPORT SECRET INFOHASH: bytes the aria2c seeder has
    uploaded of that torrent."""
    import urllib.request
    port, secret, ih = a[0], a[1], a[2].lower()
    body = json.dumps({"jsonrpc": "2.0", "id": "b", "method": "aria2.tellActive",
                       "params": ["token:" + secret, ["infoHash", "uploadLength"]]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/jsonrpc", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        res = json.load(r)["result"]
    for d in res:
        if d.get("infoHash", "").lower() == ih:
            out(bytes=int(d["uploadLength"]))
            return
    raise LookupError(f"aria2c does not seed {ih}")


def cmd_lt_seed(a):
    """lt-seed IP PORT STATS TORRENT:DIR...: a libtorrent seeder on IP:PORT
    seeding each TORRENT from DIR (seed mode: the data is trusted, not
    hashed), announcing to the torrents' tracker, until killed. TCP only,
    like aria2c: a uTP-capable seeder would spare johang/btfs its 3.5 s uTP
    attempt and change what its rows measure. No DHT, LSD, UPnP or NAT-PMP.
    Every 50 ms it rewrites STATS (atomically): {infohash: payload bytes
    uploaded}. Unchoke as soon as a peer is interested: libtorrent's
    fixed-slot choker has free slots for the bench's few peers."""
    import libtorrent as lt
    ip, port, stats = a[0], a[1], a[2]
    s = lt.session({
        "listen_interfaces": f"{ip}:{port}",
        "outgoing_interfaces": ip,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "announce_ip": ip, "allow_multiple_connections_per_ip": True,
        "unchoke_slots_limit": -1, "choking_algorithm": 0,
        "alert_mask": 0,
    })
    hs = []
    for spec in a[3:]:
        torrent, d = spec.split(":", 1)
        hs.append(s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": d,
                                 "flags": lt.torrent_flags.seed_mode | lt.torrent_flags.auto_managed}))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tmp = stats + ".tmp"
    while True:
        up = {str(h.info_hash()): h.status().total_payload_upload for h in hs}
        with open(tmp, "w") as f:
            json.dump(up, f)
        os.rename(tmp, stats)
        time.sleep(0.05)


def cmd_swarm_upload(a):
    """swarm-upload RPCPORT SECRET INFOHASH [STATS]: bytes the seeders have
    uploaded of that torrent: aria2c's own count (JSON-RPC), plus the
    libtorrent seeder's from its STATS file, read once it was rewritten
    after this call (so that no upload before the call is missing)."""
    import urllib.request
    port, secret, ih = a[0], a[1], a[2].lower()
    t = time.time()
    body = json.dumps({"jsonrpc": "2.0", "id": "b", "method": "aria2.tellActive",
                       "params": ["token:" + secret, ["infoHash", "uploadLength"]]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/jsonrpc", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        res = json.load(r)["result"]
    aria = [int(d["uploadLength"]) for d in res if d.get("infoHash", "").lower() == ih]
    if not aria:
        raise LookupError(f"aria2c does not seed {ih}")
    lt_bytes = 0
    if len(a) > 3:
        deadline = t + 5
        while os.stat(a[3]).st_mtime <= t:
            if time.time() > deadline:
                raise TimeoutError("the libtorrent seeder's stats are stale")
            time.sleep(0.01)
        with open(a[3]) as f:
            lt_bytes = json.load(f)[ih]
    out(bytes=aria[0] + lt_bytes, aria2=aria[0], libtorrent=lt_bytes)


def cmd_leech(a):
    """leech TORRENT DIR IP: a plain libtorrent leecher (no FUSE) on IP,
    TCP only (the seeder speaks no uTP, and libtorrent would wait 3.5 s
    for it first); start to finish, and from the first payload byte."""
    import libtorrent as lt
    torrent, d, ip = a[0], a[1], a[2]
    s = lt.session({
        "listen_interfaces": f"{ip}:0",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "alert_mask": 0,
    })
    t = time.time()
    h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": d})
    size = h.torrent_file().total_size()
    first = None
    while True:
        st = h.status()
        if first is None and st.total_wanted_done > 0:
            first = time.time()
        if st.is_seeding or st.state == lt.torrent_status.seeding:
            break
        if time.time() - t > 300:
            raise TimeoutError("libtorrent leecher did not finish")
        time.sleep(0.002)
    end = time.time()
    s.remove_torrent(h)
    out(s=end - t, mbps=size / (end - t) / 1e6,
        flow_mbps=size / (end - first) / 1e6 if first and end > first else None)


def shaper_out(url):
    """The bytes every shaped seeder has sent (cmd/shaper's /stats)."""
    import urllib.request
    with urllib.request.urlopen(url + "/stats", timeout=5) as r:
        return sum(v["out"] for v in json.load(r).values())


def rchar(pid):
    """The bytes pid has read through read(2) and friends (/proc/PID/io)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cmd_play(a):
    """play [--ss S] [--secs S] [--fps F] [--stall MIN] [--shaper URL
    [--out0 B]] [--events] MNT NAME T0 FILE: plays FILE as a player would, and times
    every frame.

    ffmpeg -re (real-time input) decodes the video (no audio) and writes it
    cropped to its 16x16 top-left corner in grey (256 bytes a frame: no scaling
    cost) on a pipe; the arrival of each
    frame on the pipe is timed here. Start-up is the time from ffmpeg's
    start to the first frame. Frame k is due at first + k/fps; a player
    that pauses when a frame is late (and resumes from there) has stalled,
    by frame k, S_k = max over j <= k of (arrival_j - due_j) (the "lag").
    A stall is a run of consecutive frames each raising that running
    maximum, by more than MIN in all (default 0.3 s: ffmpeg's own jitter
    reaches ~0.2 s over a local file on this loaded 2-core machine); the
    stall time is the sum of those runs. ffmpeg -re catches up after a late
    frame, so the frames queued behind it are not counted again; a swarm a
    little slower than the bitrate makes one long run. The decoder runs one
    thread (-threads 1): frame threading would delay the first frame by
    its thread count. --secs bounds the playback (default 25 s), --ss
    starts it at a
    position (a seek: its start-up is the seek's time to its first frame).

    With --shaper, the bytes the shaped seeders sent from --out0 (taken
    before the client started) or from now, to the end of playback, and
    the bytes ffmpeg read (its rchar): their difference is the over-fetch.
    --events starts the profile's hostile events (POST /events) at the
    first frame: they happen during playback, whatever the start-up took."""
    ss, secs, stall_min, url, out0, events, fps = None, 25.0, 0.3, None, None, False, 30.0
    while a and a[0].startswith("--"):
        if a[0] == "--ss":
            ss, a = a[1], a[2:]
        elif a[0] == "--secs":
            secs, a = float(a[1]), a[2:]
        elif a[0] == "--stall":
            stall_min, a = float(a[1]), a[2:]
        elif a[0] == "--shaper":
            url, a = a[1], a[2:]
        elif a[0] == "--out0":
            out0, a = int(a[1]), a[2:]
        elif a[0] == "--events":
            events, a = True, a[1:]
        elif a[0] == "--fps":
            fps, a = float(a[1]), a[2:]
        else:
            raise ValueError(f"play: unknown option {a[0]}")
    mnt, name, t0, path = a[0], a[1], float(a[2]), a[3]
    listing = wait_listing(mnt, name, t0, 60) if mnt != "-" else None
    if url and out0 is None:
        out0 = shaper_out(url)
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-re"]
    if ss is not None:
        argv += ["-ss", ss]
    argv += ["-threads", "1", "-i", path, "-t", str(secs), "-map", "0:v:0", "-vf", "crop=16:16:0:0", "-pix_fmt", "gray",
             "-f", "rawvideo", "pipe:1"]
    frame = 16 * 16
    t = time.time()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    arrivals = []
    buf = b""
    last_rchar = 0
    fd = p.stdout.fileno()
    while True:
        r, _, _ = select.select([fd], [], [], 0.05)
        rc = rchar(p.pid)
        if rc is not None:
            last_rchar = rc
        if not r:
            continue
        chunk = os.read(fd, 1 << 16)
        now = time.time()
        if not chunk:
            break
        buf += chunk
        while len(buf) >= frame:
            arrivals.append(now)
            buf = buf[frame:]
            if events and url and len(arrivals) == 1:
                import urllib.request
                urllib.request.urlopen(urllib.request.Request(url + "/events", method="POST"), timeout=5).read()
    err = p.stderr.read().decode(errors="replace")
    if p.wait() != 0:
        raise RuntimeError(f"ffmpeg exited {p.returncode}: {err[-500:]}")
    end = time.time()
    downloaded = shaper_out(url) - out0 if url else None
    if not arrivals:
        raise RuntimeError("no frame decoded")
    first = arrivals[0]
    worst, stalls, stall_s, longest, episode = 0.0, 0, 0.0, 0.0, 0.0

    def close_episode():
        nonlocal stalls, stall_s, longest, episode
        if episode > stall_min:
            stalls += 1
            stall_s += episode
            longest = max(longest, episode)
        episode = 0.0

    for k, at in enumerate(arrivals):
        late = at - (first + k / fps)
        if late > worst:
            episode += late - worst
            worst = late
        else:
            close_episode()
    close_episode()
    out(listing=listing, startup=first - t, frames=len(arrivals), fps=fps, played_s=len(arrivals) / fps,
        wall=end - t, stalls=stalls, stall_s=stall_s, longest_stall=longest, lag=worst,
        downloaded=downloaded, read=last_rchar,
        overfetch=downloaded - last_rchar if downloaded is not None else None)


def cmd_shaper_out(a):
    """shaper-out URL: the bytes every shaped seeder has sent so far."""
    out(bytes=shaper_out(a[0]))


def main():
    cmds = {
        "tree": cmd_tree, "ttfb": cmd_ttfb, "random": cmd_random, "seq": cmd_seq, "evict": cmd_evict,
        "run": cmd_run, "hold": cmd_hold, "signal-wait": cmd_signal_wait, "stats": cmd_stats,
        "stored": cmd_stored, "aria2-upload": cmd_aria2_upload, "leech": cmd_leech,
        "lt-seed": cmd_lt_seed, "swarm-upload": cmd_swarm_upload, "play": cmd_play,
        "shaper-out": cmd_shaper_out,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit("usage: measure.py " + "|".join(cmds) + " ARGS...")
    try:
        cmds[sys.argv[1]](sys.argv[2:])
    except Exception as e:  # one line for the bench log, and a failing exit
        print(f"measure.py {sys.argv[1]}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
