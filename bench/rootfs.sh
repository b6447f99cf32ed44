#!/usr/bin/env bash
# Times rootfs-tool: busybox image build, layer create (disk and tmpfs),
# tar export/import (plain, gzip, zstd) and verify. Prints the figures that
# go into docs/BENCHMARKS.md ("rootfs-tool").
#
# Usage (as root): bench/rootfs.sh [RUNS]
#   RUNS         repetitions of the fast operations (default 20)
#   ROOTFS_TOOL  binary to time (default: a release build of this tree)
# Everything happens in a temporary store under /tmp, removed at the end
# (mounts included), whatever happens.
set -euo pipefail

runs=${1:-20}
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "bench/rootfs.sh: needs root (tmpfs layers are mounts)" >&2
    exit 1
fi
if [ -z "${ROOTFS_TOOL:-}" ]; then
    cargo build -q --release -p rootfs-tool
    ROOTFS_TOOL=$PWD/target/release/rootfs-tool
fi
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || apt-get install -y -q busybox-static >/dev/null

work=$(mktemp -d /tmp/rootfs-bench.XXXXXX)
cleanup() {
    findmnt -rn -o TARGET | { grep "^$work/" || true; } | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
export VBET_IMAGE_STORE=$work/store
tool() { "$ROOTFS_TOOL" "$@"; }

now() { date +%s%N; }
# stats NAME UNIT VALUES… (values in microseconds): prints min/median/max.
stats() {
    local name=$1 unit=$2
    shift 2
    sort -n <<<"$(printf '%s\n' "$@")" | awk -v name="$name" -v unit="$unit" '
        { v[NR] = $1 }
        END {
            d = (unit == "ms") ? 1000 : 1000000
            printf "%-38s n=%-3d min %8.2f %s  median %8.2f %s  max %8.2f %s\n",
                name, NR, v[1] / d, unit, v[int((NR + 1) / 2)] / d, unit, v[NR] / d, unit
        }'
}

echo "rootfs-tool benchmark: $(uname -r), $(nproc) cores, $ROOTFS_TOOL"

# Busybox image builds.
t=()
for i in $(seq 5); do
    s=$(now); tool build "bb$i" --from busybox >/dev/null; e=$(now)
    t+=($(((e - s) / 1000)))
done
stats "busybox build (wall)" s "${t[@]}"
tool inspect bb1 | grep -E '^(size|entries) '

# Layer create, wall time of the command and the library's own figure.
for kind in disk tmpfs; do
    wall=() lib=()
    for i in $(seq "$runs"); do
        args=(layer create "$work/l-$kind-$i" --image bb1)
        [ "$kind" = tmpfs ] && args+=(--tmpfs 64M)
        s=$(now); out=$(tool "${args[@]}"); e=$(now)
        wall+=($(((e - s) / 1000)))
        lib+=($(awk '{ for (i = 1; i <= NF; i++) if ($i == "in") printf "%d", $(i + 1) * 1000 }' <<<"$out"))
    done
    stats "layer create $kind (library)" ms "${lib[@]}"
    stats "layer create $kind (wall, exec incl.)" ms "${wall[@]}"
    for i in $(seq "$runs"); do tool layer rm "$work/l-$kind-$i" >/dev/null; done
done

# Export and import.
for ext in tar tar.gz tar.zst; do
    s=$(now); tool export bb1 "$work/bb.$ext" >/dev/null; e=$(now)
    stats "export .$ext" ms $(((e - s) / 1000))
    s=$(now); tool import "imp-${ext//./-}" "$work/bb.$ext" >/dev/null; e=$(now)
    stats "import .$ext" ms $(((e - s) / 1000))
    [ "$(tool inspect "imp-${ext//./-}" | grep '^digest')" = "$(tool inspect bb1 | grep '^digest')" ] ||
        { echo "digest changed in the .$ext round trip" >&2; exit 1; }
    echo "  .$ext archive: $(stat -c %s "$work/bb.$ext") bytes"
done

s=$(now); tool verify bb1 >/dev/null; e=$(now)
stats "verify (digest of the tree)" ms $(((e - s) / 1000))
