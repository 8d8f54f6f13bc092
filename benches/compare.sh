#!/usr/bin/env bash
# End-to-end comparison of cairn with restic and borg on the same data, in one run, interleaved:
# wall time, CPU time (user + system), peak RSS and repository size per tool and step.
#
#   benches/compare.sh [--quick] [--work DIR] [--source DIR] [--datasets LIST]
#
# Datasets (LIST is comma-separated; default: all four, in this order):
# - toolchain: a copy of SOURCE (default: the Rust toolchain,
#   ~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu). Steps: first backup, unchanged
#   rerun, rerun after a small change (a 4 KiB region rewritten in 20 files, one 1 MiB
#   file added), full restore, single-file restore (the largest file).
# - small-files: 200,000 generated files of 0.5–4 KiB in 400 folders. Steps: first backup,
#   unchanged rerun, full restore.
# - big-file: one 4 GiB file, half random and half text-like; between snapshots a 4 KiB
#   region is rewritten in 1% of its MiBs. Steps: first backup, rerun after the change,
#   full restore.
# - series: ten versions of a changing tree. Version 1 is a copy of SOURCE; each later
#   version rewrites a 4 KiB region in 3% of the files, deletes 1% and adds altered copies
#   of 1% (seeded). Each tool backs up every version; then all forget the five oldest
#   snapshots (`--keep-last 5`) and prune at once (borg: `prune` then `compact`); then check.
# - scale (cairn only, not in the default list): whether memory stays flat as the index
#   grows. Two repositories get 100,000 and 5,000,000 made-up blobs in their index
#   (`examples/fake_index.rs`; --quick: 1,000,000), then the same backups: SOURCE/share
#   first (this run also loads the index into the local cache), then after a small change.
#
# The floor: for toolchain and big-file, `tar | zstd -3 -T2` over the data from the page
# cache is timed too (tool "floor"), the physical limit of a tool that reads and compresses
# everything at level 3 on both cores. For full restores the floor is `cp -a` of the data
# from the page cache: creating the same files and writing the same bytes, nothing else.
#
# Every tool compresses with zstd at level 3 or its own equivalent (restic: `auto`; borg:
# `--compression zstd,3`). Within a step the tools run one after another and the order
# rotates from step to step, so no tool always gets the warmest cache. Restores are checked
# against the source with `cmp`/`diff -r` (not timed).
#
# --quick: SOURCE/lib/rustlib/*/bin and SOURCE/share only, 20,000 small files, a 512 MiB
# big file and three versions in the series: a few minutes in all.
# Nothing here is a test: the figures depend on the machine, so compare only within a run.
# restic and borg come from Debian's packages, installed here when missing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
quick=0
work=${TMPDIR:-/tmp}/cairn-compare
source_dir=${HOME}/.rustup/toolchains/stable-x86_64-unknown-linux-gnu
datasets=toolchain,small-files,big-file,series
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1 ;;
        --work) work=$2; shift ;;
        --source) source_dir=$2; shift ;;
        --datasets) datasets=$2; shift ;;
        *) echo "usage: $0 [--quick] [--work DIR] [--source DIR] [--datasets LIST]" >&2; exit 2 ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    versions=3 small_files=20000 big_mib=512
else
    versions=10 small_files=200000 big_mib=4096
fi

need() { command -v "$1" >/dev/null 2>&1; }
install_peers() {
    local missing=()
    need restic || missing+=(restic)
    need borg || missing+=(borgbackup)
    [ -x /usr/bin/time ] || missing+=(time)
    need zstd || missing+=(zstd)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} from Debian's packages" >&2
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_peers
# The profile published binaries are built with (Cargo.toml: fat LTO, one codegen unit).
(cd "$here" && cargo build --profile dist --locked -q)
cairn=$here/target/dist/cairn

rm -rf "$work"
mkdir -p "$work"
results=$work/results.tsv
echo "$work" >&2
printf 'secret password for the comparison\n' >"$work/password"
export CAIRN_PASSWORD_FILE=$work/password RESTIC_PASSWORD_FILE=$work/password
export BORG_PASSCOMMAND="cat $work/password" BORG_BASE_DIR=$work/borg-home
tools=(cairn restic borg)
turn=0

# copy_source DIR: a real copy of the source (the tree is changed in place later).
copy_source() {
    mkdir -p "$1"
    if [ "$quick" = 1 ]; then
        for d in "$source_dir"/lib/rustlib/*/bin "$source_dir"/share; do
            [ -d "$d" ] && cp -a "$d" "$1/"
        done
    else
        cp -a "$source_dir"/. "$1/"
    fi
}

# py SCRIPT ARGS...: the helpers below, in Python for seeded randomness.
py() {
    python3 - "$@" <<'PY'
import os, random, sys
cmd, args = sys.argv[1], sys.argv[2:]

def files_of(root):
    out = []
    for d, dirs, names in os.walk(root):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out

def rewrite_region(rng, src, dst):
    with open(src, "rb") as f:
        b = bytearray(f.read())
    at = rng.randrange(max(1, len(b) - 4096))
    b[at:at + 4096] = rng.randbytes(min(4096, max(1, len(b))))
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b)
    os.replace(tmp, dst)

if cmd == "mutate":  # ROOT VERSION: the series' next version
    root, version = args[0], int(args[1])
    rng = random.Random(version)
    files = files_of(root)
    picks = rng.sample(files, k=max(1, len(files) * 5 // 100))
    n3, n1 = len(files) * 3 // 100, len(files) // 100
    for p in picks[:n3]:
        rewrite_region(rng, p, p)
    for p in picks[n3:n3 + n1]:
        os.remove(p)
    added = os.path.join(root, f"added-{version}")
    os.makedirs(added, exist_ok=True)
    for i, p in enumerate(picks[n3 + n1:n3 + 2 * n1]):
        rewrite_region(rng, p, os.path.join(added, f"{i}-{os.path.basename(p)}"))
elif cmd == "small-change":  # ROOT: 20 files edited, one added
    root = args[0]
    rng = random.Random(99)
    for p in rng.sample(files_of(root), k=20):
        rewrite_region(rng, p, p)
    with open(os.path.join(root, "added-small-change"), "wb") as f:
        f.write(rng.randbytes(1 << 20))
elif cmd == "small-files":  # ROOT COUNT
    root, count = args[0], int(args[1])
    rng = random.Random(7)
    words = [b"backup", b"restore", b"chunk", b"snapshot", b"the", b"of", b"data", b"\n"]
    for i in range(count):
        d = os.path.join(root, f"d{i % 400:03}")
        if i < 400:
            os.makedirs(d)
        n = rng.randrange(512, 4096)
        body = b" ".join(rng.choices(words, k=n // 5))[:n // 2] + rng.randbytes(n - n // 2)
        with open(os.path.join(d, f"f{i:06}"), "wb") as f:
            f.write(body)
elif cmd == "big-file":  # PATH MIB: half random, half text-like, in 1 MiB pieces
    path, mib = args[0], int(args[1])
    rng = random.Random(11)
    text = b"".join(rng.choices([b"backup ", b"chunk ", b"the ", b"data\n"], k=300000))[:1 << 20]
    with open(path, "wb") as f:
        for i in range(mib):
            f.write(rng.randbytes(1 << 20) if i % 2 else text[i % 4096:] + text[:i % 4096])
elif cmd == "big-change":  # PATH: a 4 KiB region rewritten in 1% of the MiBs
    path = args[0]
    rng = random.Random(13)
    mib = os.path.getsize(path) >> 20
    with open(path, "r+b") as f:
        for m in rng.sample(range(mib), k=max(1, mib // 100)):
            f.seek((m << 20) + rng.randrange((1 << 20) - 4096))
            f.write(rng.randbytes(4096))
elif cmd == "largest":  # ROOT: path of the largest file, relative to ROOT
    print(os.path.relpath(max(files_of(args[0]), key=os.path.getsize), args[0]))
PY
}

# measure DATASET TOOL STEP REPO COMMAND...: runs the command, appends a result row.
measure() {
    local ds=$1 tool=$2 step=$3 repo=$4
    shift 4
    local t=$work/time.out log=$work/$ds-$tool-$step.log
    if ! /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" >"$log" 2>&1; then
        echo "$ds: $tool $step failed; see $log" >&2
        tail -5 "$log" >&2
        exit 1
    fi
    local wall user sys rss
    read -r wall user sys rss <"$t"
    local size
    size=$(du -sb "$repo" | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ds" "$tool" "$step" "$wall" \
        "$(awk "BEGIN { print $user + $sys }")" "$rss" "$size" >>"$results"
}

# init DATASET: an empty repository per tool.
init() {
    local ds=$1
    "$cairn" -r "$work/$ds-repo-cairn" init -q
    restic -r "$work/$ds-repo-restic" init -q --cache-dir "$work/$ds-cache-restic" >/dev/null
    borg init --encryption=repokey-blake2 "$work/$ds-repo-borg" 2>"$work/$ds-borg-init.log"
}

# run DATASET TOOL STEP DATA [ARG]: one step of one tool. Restores go to $work/restored.
run() {
    local ds=$1 tool=$2 step=$3 data=$4 arg=${5:-}
    local repo=$work/$ds-repo-$tool target=$work/restored
    local c=("$cairn" -r "$repo") r=(restic -r "$repo" --cache-dir "$work/$ds-cache-restic")
    export CAIRN_CACHE_DIR=$work/$ds-cache-cairn
    case $tool/$step in
        cairn/backup*) measure "$ds" cairn "$step" "$repo" "${c[@]}" backup -q "$data" ;;
        restic/backup*) measure "$ds" restic "$step" "$repo" "${r[@]}" backup -q "$data" ;;
        borg/backup*) measure "$ds" borg "$step" "$repo" borg create --compression zstd,3 "$repo::$step" "$data" ;;
        */restore*)
            mkdir -p "$target"
            local include=() borg_path=${data#/}
            if [ -n "$arg" ]; then
                include=(--include "$data/$arg")
                borg_path=${data#/}/$arg
            fi
            case $tool in
                cairn) measure "$ds" cairn "$step" "$repo" "${c[@]}" restore -q latest --target "$target" "${include[@]}" ;;
                restic) measure "$ds" restic "$step" "$repo" "${r[@]}" restore -q latest --target "$target" "${include[@]}" ;;
                borg)
                    local last
                    last=$(borg list --short --last 1 "$repo")
                    measure "$ds" borg "$step" "$repo" sh -c 'cd "$1" && borg extract "$2" "$3"' sh "$target" "$repo::$last" "$borg_path" ;;
            esac
            # Every tool restores below the target with the full source path.
            if [ -n "$arg" ]; then
                cmp "$data/$arg" "$target$data/$arg"
            else
                diff -r --no-dereference "$data" "$target$data" >/dev/null
            fi
            # Deleted only when the dataset is done: ext4 skips inodes freed in the last
            # half minute when it allocates, which made whichever restore followed a
            # deletion spend most of its time in the kernel's inode search.
            mkdir -p "$work/trash"
            mv "$target" "$work/trash/$ds-$tool-$step" ;;
        # Forget half and prune at once (cairn's grace period set to 0, as the others
        # delete at once).
        cairn/forget-prune) measure "$ds" cairn "$step" "$repo" "${c[@]}" forget --keep-last 5 --prune --keep-delete 0 ;;
        restic/forget-prune) measure "$ds" restic "$step" "$repo" "${r[@]}" forget --keep-last 5 --prune ;;
        borg/forget-prune) measure "$ds" borg "$step" "$repo" sh -c 'borg prune --keep-last 5 "$1" && borg compact "$1"' sh "$repo" ;;
        cairn/check) measure "$ds" cairn "$step" "$repo" "${c[@]}" check ;;
        restic/check) measure "$ds" restic "$step" "$repo" "${r[@]}" check ;;
        borg/check) measure "$ds" borg "$step" "$repo" borg check "$repo" ;;
    esac
}

# floor DATASET DATA: reading the data and zstd -3 on both cores, nothing else.
floor() {
    measure "$1" floor zstd-3-both-cores "$2" \
        sh -c 'tar cf - -C "$1" . | zstd -3 -T2 -q -c >/dev/null' sh "$2"
}

# floor_restore DATASET DATA: the restore's floor, a plain copy of the data.
floor_restore() {
    local target=$work/restored
    mkdir -p "$target"
    measure "$1" floor restore-full "$2" cp -a "$2" "$target/"
    mkdir -p "$work/trash"
    mv "$target" "$work/trash/$1-floor-restore-full"
}

# each DATASET STEP DATA [ARG]: the step for every tool, in rotating order.
each() {
    turn=$((turn + 1))
    for i in 0 1 2; do
        run "$1" "${tools[$(((turn + i) % 3))]}" "$2" "$3" "${4:-}"
    done
    echo "$1: $2 done" >&2
}

for ds in ${datasets//,/ }; do
    data=$work/$ds-data
    [ "$ds" = scale ] || init "$ds"
    case $ds in
        toolchain)
            copy_source "$data"
            largest=$(py largest "$data")
            floor "$ds" "$data"
            each "$ds" backup-first "$data"
            each "$ds" backup-unchanged "$data"
            py small-change "$data"
            each "$ds" backup-small-change "$data"
            floor_restore "$ds" "$data"
            each "$ds" restore-full "$data"
            each "$ds" restore-one-file "$data" "$largest" ;;
        small-files)
            py small-files "$data" "$small_files"
            each "$ds" backup-first "$data"
            each "$ds" backup-unchanged "$data"
            floor_restore "$ds" "$data"
            each "$ds" restore-full "$data" ;;
        big-file)
            mkdir -p "$data"
            py big-file "$data/big" "$big_mib"
            floor "$ds" "$data"
            each "$ds" backup-first "$data"
            py big-change "$data/big"
            each "$ds" backup-changed "$data"
            floor_restore "$ds" "$data"
            each "$ds" restore-full "$data" ;;
        series)
            copy_source "$data"
            for v in $(seq 1 "$versions"); do
                [ "$v" = 1 ] || py mutate "$data" "$v"
                each "$ds" "backup-v$v" "$data"
            done
            each "$ds" forget-prune "$data"
            each "$ds" check "$data" ;;
        scale)
            (cd "$here" && cargo build --profile dist --locked -q --example fake_index)
            copy_source "$data.full"
            mv "$data.full/share" "$data" && rm -rf "$data.full"
            big=5000000
            [ "$quick" = 1 ] && big=1000000
            for n in 100000 "$big"; do
                "$cairn" -r "$work/scale-$n-repo-cairn" init -q
                CAIRN_CACHE_DIR=$work/scale-$n-cache-cairn \
                    "$here/target/dist/examples/fake_index" "$work/scale-$n-repo-cairn" "$n" >/dev/null
                run "scale-$n" cairn backup-first "$data"
                py small-change "$data"
                run "scale-$n" cairn backup-small-change "$data"
                rm -rf "$work/scale-$n"-repo-* "$work/scale-$n"-cache-*
                echo "$ds: $n blobs done" >&2
            done ;;
        *) echo "unknown dataset $ds" >&2; exit 2 ;;
    esac
    # Only the figures are kept; the data and repositories would fill the disk.
    rm -rf "$data" "$work/$ds"-repo-* "$work/$ds"-cache-* "$work/trash"
done

python3 - "$results" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for ds, tool, step, wall, cpu, rss, size in rows:
    by.setdefault(ds, {}).setdefault(step, {})[tool] = (float(wall), float(cpu), int(rss) * 1024, int(size))
def mb(b): return f"{b / 1e6:.1f}"
peers = ("restic", "borg")
ratio = lambda a, b: f"{a / b:.2f}" if b else "-"
for ds, steps in by.items():
    print(f"\n### {ds}\n")
    print("| step | tool | wall s | CPU s | peak RSS MB | repo MB |")
    print("|---|---|---:|---:|---:|---:|")
    for step, tools in steps.items():
        for tool in ("cairn",) + peers + ("floor",):
            if tool in tools:
                w, c, r, s = tools[tool]
                print(f"| {step} | {tool} | {w:.2f} | {c:.2f} | {mb(r)} | {mb(s)} |")
        for peer in peers:
            if "cairn" in tools and peer in tools:
                mine, theirs = tools["cairn"], tools[peer]
                cells = " | ".join(ratio(a, b) for a, b in zip(mine, theirs))
                print(f"| {step} | cairn/{peer} | {cells} |")
    if "forget-prune" in steps:
        last = max((s for s in steps if s.startswith("backup-v")), key=lambda s: int(s[8:]))
        print()
        for t, v in steps["forget-prune"].items():
            before, after = steps[last][t][3], v[3]
            print(f"- {t}: prune freed {mb(before - after)} MB ({100 * (before - after) / before:.1f}% of {mb(before)} MB)")
PY
