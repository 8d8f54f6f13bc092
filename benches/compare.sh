#!/usr/bin/env bash
# End-to-end comparison of cairn with restic and borg on the same data, in one run, interleaved:
# wall time, CPU time (user + system), peak RSS and repository size per tool and step.
#
#   benches/compare.sh [--quick] [--work DIR] [--source DIR]
#
# Dataset "series": ten versions of a changing real tree. Version 1 is a copy of SOURCE
# (default: the Rust toolchain, ~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu);
# each later version rewrites a 4 KiB region in 3% of the files, deletes 1% and adds
# altered copies of 1% (seeded, so every run makes the same versions). Each tool backs up
# every version into its own repository; then both forget the five oldest snapshots
# (`--keep-last 5`) and prune at once (borg: `prune` then `compact`). Every tool compresses
# with zstd at level 3 or its own equivalent (restic: `auto`; borg: `--compression zstd,3`).
#
# --quick uses only SOURCE/lib/rustlib/*/bin and SOURCE/share (a few hundred MB).
# Nothing here is a test: the figures depend on the machine, so compare only within a run.
# restic and borg come from Debian's packages, installed here when missing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
quick=0
work=${TMPDIR:-/tmp}/cairn-compare
source_dir=${HOME}/.rustup/toolchains/stable-x86_64-unknown-linux-gnu
versions=10
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1 ;;
        --work) work=$2; shift ;;
        --source) source_dir=$2; shift ;;
        *) echo "usage: $0 [--quick] [--work DIR] [--source DIR]" >&2; exit 2 ;;
    esac
    shift
done

need() { command -v "$1" >/dev/null 2>&1; }
install_peers() {
    local missing=()
    need restic || missing+=(restic)
    need borg || missing+=(borgbackup)
    [ -x /usr/bin/time ] || missing+=(time)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} from Debian's packages" >&2
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_peers
(cd "$here" && cargo build --release --locked -q)
cairn=$here/target/release/cairn

rm -rf "$work"
mkdir -p "$work"
data=$work/data
results=$work/results.tsv
echo "$work" >&2
printf 'secret password for the comparison\n' >"$work/password"
export CAIRN_PASSWORD_FILE=$work/password RESTIC_PASSWORD_FILE=$work/password
export CAIRN_CACHE_DIR=$work/cache-cairn
export BORG_PASSCOMMAND="cat $work/password" BORG_BASE_DIR=$work/borg-home

# Copies the source (a real copy: versions are changed in place).
mkdir -p "$data"
if [ "$quick" = 1 ]; then
    for d in "$source_dir"/lib/rustlib/*/bin "$source_dir"/share; do
        [ -d "$d" ] && cp -a "$d" "$data/"
    done
else
    cp -a "$source_dir"/. "$data/"
fi

# Makes version N of the tree from version N-1.
mutate() {
    python3 - "$data" "$1" <<'PY'
import os, random, sys
root, version = sys.argv[1], int(sys.argv[2])
rng = random.Random(version)
files = []
for d, dirs, names in os.walk(root):
    dirs.sort()
    for n in sorted(names):
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(p)
def rewrite_region(src, dst):
    with open(src, "rb") as f:
        b = bytearray(f.read())
    at = rng.randrange(max(1, len(b) - 4096))
    b[at:at + 4096] = rng.randbytes(min(4096, max(1, len(b))))
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b)
    os.replace(tmp, dst)
picks = rng.sample(files, k=max(1, len(files) * 5 // 100))
n3, n1 = len(files) * 3 // 100, len(files) // 100
for p in picks[:n3]:
    rewrite_region(p, p)
for p in picks[n3:n3 + n1]:
    os.remove(p)
added = os.path.join(root, f"added-{version}")
os.makedirs(added, exist_ok=True)
for i, p in enumerate(picks[n3 + n1:n3 + 2 * n1]):
    rewrite_region(p, os.path.join(added, f"{i}-{os.path.basename(p)}"))
PY
}

# measure TOOL STEP REPO COMMAND...: runs the command, appends a result row.
measure() {
    local tool=$1 step=$2 repo=$3
    shift 3
    local t=$work/time.out log=$work/$tool-$step.log
    if ! /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" >"$log" 2>&1; then
        echo "$tool $step failed; see $log" >&2
        tail -5 "$log" >&2
        exit 1
    fi
    local wall user sys rss
    read -r wall user sys rss <"$t"
    local size
    size=$(du -sb "$repo" | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$wall" \
        "$(awk "BEGIN { print $user + $sys }")" "$rss" "$size" >>"$results"
}

cr=$work/repo-cairn
rr=$work/repo-restic
br=$work/repo-borg
"$cairn" -r "$cr" init -q
restic -r "$rr" init -q --cache-dir "$work/cache-restic" >/dev/null
borg init --encryption=repokey-blake2 "$br" 2>"$work/borg-init.log"
echo "data: $(du -sh "$data" | cut -f1), $(find "$data" -type f | wc -l) files" >&2

# run TOOL STEP [VERSION]: one step of one tool.
run() {
    local tool=$1 step=$2 v=${3:-}
    case $tool/$step in
        cairn/backup) measure cairn "backup-v$v" "$cr" "$cairn" -r "$cr" backup -q "$data" ;;
        restic/backup) measure restic "backup-v$v" "$rr" restic -r "$rr" --cache-dir "$work/cache-restic" backup -q "$data" ;;
        borg/backup) measure borg "backup-v$v" "$br" borg create --compression zstd,3 "$br::v$v" "$data" ;;
        # Forget half and prune at once (cairn's grace period set to 0, as the others
        # delete at once).
        cairn/forget-prune) measure cairn forget-prune "$cr" "$cairn" -r "$cr" forget --keep-last 5 --prune --keep-delete 0 ;;
        restic/forget-prune) measure restic forget-prune "$rr" restic -r "$rr" --cache-dir "$work/cache-restic" forget --keep-last 5 --prune ;;
        borg/forget-prune) measure borg forget-prune "$br" sh -c 'borg prune --keep-last 5 "$1" && borg compact "$1"' sh "$br" ;;
        cairn/check) measure cairn check "$cr" "$cairn" -r "$cr" check ;;
        restic/check) measure restic check "$rr" restic -r "$rr" --cache-dir "$work/cache-restic" check ;;
        borg/check) measure borg check "$br" borg check "$br" ;;
    esac
}

tools=(cairn restic borg)
for v in $(seq 1 $versions); do
    [ "$v" = 1 ] || mutate "$v"
    # Interleaved, and the order rotates so no tool always gets the warmest cache.
    for i in 0 1 2; do
        run "${tools[$(((v + i) % 3))]}" backup "$v"
    done
    echo "version $v backed up" >&2
done
for step in forget-prune check; do
    for tool in "${tools[@]}"; do
        run "$tool" "$step"
    done
done

python3 - "$results" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for tool, step, wall, cpu, rss, size in rows:
    by.setdefault(step, {})[tool] = (float(wall), float(cpu), int(rss) * 1024, int(size))
def mb(b): return f"{b / 1e6:.1f}"
peers = ("restic", "borg")
ratio = lambda a, b: f"{a / b:.2f}" if b else "-"
print(f"| step | tool | wall s | CPU s | peak RSS MB | repo MB |")
print(f"|---|---|---:|---:|---:|---:|")
for step, tools in by.items():
    for tool in ("cairn",) + peers:
        if tool in tools:
            w, c, r, s = tools[tool]
            print(f"| {step} | {tool} | {w:.2f} | {c:.2f} | {mb(r)} | {mb(s)} |")
    for peer in peers:
        if "cairn" in tools and peer in tools:
            mine, theirs = tools["cairn"], tools[peer]
            cells = " | ".join(ratio(a, b) for a, b in zip(mine, theirs))
            print(f"| {step} | cairn/{peer} | {cells} |")
last = f"backup-v{max(int(s[8:]) for s in by if s.startswith('backup-v'))}"
before = {t: v[3] for t, v in by[last].items()}
after = {t: v[3] for t, v in by["forget-prune"].items()}
print()
for t in after:
    print(f"{t}: prune freed {mb(before[t] - after[t])} MB ({before[t] and 100 * (before[t] - after[t]) / before[t]:.1f}% of {mb(before[t])} MB)")
PY
