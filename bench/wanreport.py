#!/usr/bin/python3
"""wanreport.py RESULTS.jsonl OUT.json META.json: the table of
bench/run --wan PROFILE (bench/wan.sh).

RESULTS.jsonl holds one record per measure ({"m": KIND, "client":
"ours"|"johang"|"ref", "round": N, "data": {...}} or "error" instead of
"data"). This prints, per row, the median (min-max) of ours and of
johang/btfs, their ratio and the local file's reference where there is
one, and writes it all to OUT.json.
"""

import json
import statistics
import sys

MiB = 1 << 20

# (key, label, unit, kind, extract, reference kind)
ROWS = [
    ("ttfb_s", "first 64 KiB at 1/2, fresh mount", "s", "wan_ttfb", lambda d: d["reads"][0], None),
    ("rand_p50_s", "random 64 KiB reads: median", "s", "wan_random", lambda d: d["median"], None),
    ("rand_p90_s", "random 64 KiB reads: p90", "s", "wan_random", lambda d: d["p90"], None),
    ("ffprobe_s", "ffprobe, moov-at-end MP4, fresh mount", "s", "wan_ffprobe", lambda d: d["s"], "wan_local_ffprobe"),
    ("seek_s", "ffmpeg -ss middle, 1 frame, after the probe (same mount)", "s", "wan_seek", lambda d: d["s"],
     "wan_local_seek"),
    ("play_start_s", "playback (ffmpeg -re) start-up: first decoded frame", "s", "wan_play",
     lambda d: d["startup"], "wan_local_play"),
    ("play_stalls", "playback: stalls (> 0.3 s each)", "", "wan_play", lambda d: d["stalls"], "wan_local_play"),
    ("play_stall_s", "playback: stall time", "s", "wan_play", lambda d: d["stall_s"], "wan_local_play"),
    ("play_longest_s", "playback: longest stall", "s", "wan_play", lambda d: d["longest_stall"], "wan_local_play"),
    ("overfetch_mib", "playback: downloaded - read by the player", "MiB", "wan_play",
     lambda d: d["overfetch"] / MiB if d.get("overfetch") is not None else None, None),
    ("downloaded_mib", "playback: downloaded from the seeders", "MiB", "wan_play",
     lambda d: d["downloaded"] / MiB if d.get("downloaded") is not None else None, None),
    ("read_mib", "playback: read by the player", "MiB", "wan_play", lambda d: d["read"] / MiB, "wan_local_play"),
    ("fr_start_s", "playback, ours with -fetch reads: start-up", "s", "wan_play_fr", lambda d: d["startup"], None),
    ("fr_stalls", "... stalls", "", "wan_play_fr", lambda d: d["stalls"], None),
    ("fr_overfetch_mib", "... downloaded - read by the player", "MiB", "wan_play_fr",
     lambda d: d["overfetch"] / MiB if d.get("overfetch") is not None else None, None),
    ("seekplay_start_s", "seek to 3/4 after playback (same mount): first frame", "s", "wan_play_seek",
     lambda d: d["startup"], "wan_local_play_seek"),
    ("seekplay_stalls", "... then stalls over its playback", "", "wan_play_seek", lambda d: d["stalls"],
     "wan_local_play_seek"),
    ("seekplay_stall_s", "... stall time", "s", "wan_play_seek", lambda d: d["stall_s"], "wan_local_play_seek"),
    ("seq_mbps", "sequential read, fresh mount, SHA-256 checked", "MB/s", "wan_seq", lambda d: d["mbps"], None),
]


def load(path):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    return recs


def values(recs, kind, client, ex):
    vals, errors = [], 0
    for r in recs:
        if r["m"] != kind or r["client"] != client:
            continue
        if "error" in r:
            errors += 1
            continue
        try:
            v = ex(r["data"])
        except (KeyError, TypeError):
            v = None
        if v is not None:
            vals.append(float(v))
    return vals, errors


def fmt(vals, errors, unit):
    if not vals:
        return f"failed x{errors}" if errors else "-"
    med = statistics.median(vals)
    digits = 3 if unit == "s" else 2 if unit == "x" else 1 if unit in ("MiB", "MB/s") else 0
    s = f"{med:.{digits}f}"
    if len(vals) > 1:
        s += f" ({min(vals):.{digits}f}-{max(vals):.{digits}f})"
    if errors:
        s += f" +{errors} failed"
    return s


def main():
    recs = load(sys.argv[1])
    meta = json.load(open(sys.argv[3]))
    profile = next((r["data"] for r in recs if r["m"] == "wan_profile"), {})
    caps = profile.get("swarm_rate")
    table = []
    for key, label, unit, kind, ex, ref in ROWS:
        o, oe = values(recs, kind, "ours", ex)
        j, je = values(recs, kind, "johang", ex)
        rv, re_ = values(recs, ref, "ref", ex) if ref else ([], 0)
        row = {"key": key, "label": label, "unit": unit, "ours": o, "johang": j, "ref": rv,
               "ours_failed": oe, "johang_failed": je}
        if o and j and statistics.median(j) > 0:
            row["ratio"] = statistics.median(o) / statistics.median(j)
        table.append(row)
        if key == "seq_mbps" and caps:
            cap_mbps = caps / 1e6
            table.append({"key": "seq_of_caps", "label": f"sequential / sum of the seeders' caps ({cap_mbps:.2f} MB/s)",
                          "unit": "x", "ours": [v / cap_mbps for v in o], "johang": [v / cap_mbps for v in j],
                          "ref": [], "ours_failed": oe, "johang_failed": je})
    print(f"WAN profile {meta.get('profile', '?')}")
    print(f"command: {meta.get('command')}; {meta.get('rounds')} round(s), {meta.get('seconds')} s")
    print(f"machine: {meta.get('machine')}")
    print(f"data: {meta.get('data')}")
    print()
    w = max(len(r["label"]) for r in table)
    print(f"{'row':<{w}}  {'unit':<5} {'ours':<24} {'johang/btfs':<24} {'ours/johang':<11} local file")
    for r in table:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
        ref = fmt(r["ref"], 0, r["unit"]) if r["ref"] else ""
        print(f"{r['label']:<{w}}  {r['unit']:<5} {fmt(r['ours'], r['ours_failed'], r['unit']):<24} "
              f"{fmt(r['johang'], r['johang_failed'], r['unit']):<24} {ratio:<11} {ref}")
    with open(sys.argv[2], "w") as f:
        json.dump({"meta": meta, "profile": profile, "rows": table, "records": recs}, f, indent=1)


if __name__ == "__main__":
    main()
