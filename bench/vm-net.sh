#!/usr/bin/env bash
# VM networking speed, issue 3's data-path target, in one run: iperf3 TCP
# throughput and ping RTT between
#
#   1. two vBET VMs on one switchd (fast mode: 64 KiB TCP segments with a
#      virtio-net header from TAP to TAP through the switch);
#   2. two vBET VMs on a direct wire (fast mode, no switch);
#   3. two network namespaces joined by veths through a Linux bridge (the
#      kernel reference);
#   4. two network namespaces plugged by vde_plug2tap into vde_switch (the
#      peer reference).
#
# Targets: lines 1 and 2 each at least 10x line 4 and at least 40% of
# line 3, with RTT p50 at most 2x line 3's. The script prints the table
# for docs/BENCHMARKS.md ("VM network") and the verdicts; it exits 0
# whether or not they are met.
#
# Usage (as root): bench/vm-net.sh
#   IPERF_SECONDS  iperf3 duration per path (default 5)
#   PINGS          pings per path, at 10 ms (default 200)
#   ROUNDS         rounds over the four paths, interleaved; the median
#                  round by throughput is reported per path (default 1)
#   VMNET_KEEP=1   keep the work directory (logs) for inspection
#
# Every lab is brought down, every process this script starts is ended by
# PID, every namespace and temp dir removed on exit; host sysctls are left
# as they are. Addresses 10.78.x.y.
set -euo pipefail

secs=${IPERF_SECONDS:-5}
pings=${PINGS:-200}
rounds=${ROUNDS:-1}
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "bench/vm-net.sh: needs root (namespaces, TAPs)" >&2
    exit 1
fi
for p in iperf3 jq ip vde_switch vde_plug2tap; do
    command -v "$p" >/dev/null || {
        echo "bench/vm-net.sh: $p missing (apt-get install iperf3 jq vde2)" >&2
        exit 1
    }
done

echo "Building release binaries …" >&2
cargo build -q --release -p switchd -p hubd -p vm-monitor -p orchestrator --bins
bin=$PWD/target/release

tag=vbvm$$
lab=vmnet$$
work=$(mktemp -d /tmp/vbet-vmnet.XXXXXX)
run_root=$work/run
rows=$work/rows.tsv
: >"$rows"
orch_pid=
vde_pid=
plugs=()
namespaces=()

cleanup() {
    local rc=$? pid ns
    set +e
    [ -d "$run_root/$lab" ] && VBET_RUN_ROOT=$run_root "$bin/vbet" down "$lab" >/dev/null 2>&1
    for pid in "${plugs[@]}" $vde_pid $orch_pid; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if [ "${VMNET_KEEP:-0}" = 1 ]; then
        echo "work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

netns_add() {
    ip netns add "$1"
    namespaces+=("$1")
    ip -n "$1" link set lo up
}

# ping_stats FILE: "min p50 p99 received" of the RTTs in ping's output.
ping_stats() {
    grep -o 'time=[0-9.]*' "$1" | cut -d= -f2 | sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "- - - 0"; exit }
            i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++
            i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
            printf "%.3f %.3f %.3f %d\n", v[1], v[i50], v[i99], NR
        }'
}

# record KEY NAME JSON PING: one measured round of a path.
record() {
    local key=$1 name=$2 json=$3 ping=$4 mbps retr
    if jq -e '.end.sum_received' "$json" >/dev/null 2>&1; then
        mbps=$(jq '.end.sum_received.bits_per_second / 1e6' "$json")
        retr=$(jq '.end.sum_sent.retransmits // 0' "$json")
    else
        echo "  $name: iperf3 failed: $(head -c 300 "$json")" >&2
        mbps=0 retr=-
    fi
    set -- $(ping_stats "$ping")
    printf '%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\n' "$key" "$name" "$mbps" "$retr" "$1" "$2" "$3" "$4" >>"$rows"
    printf '  %-40s %9.1f Mbit/s %7s retr  RTT %s/%s/%s ms (%s/%s replies)\n' \
        "$name" "$mbps" "$retr" "$1" "$2" "$3" "$4" "$pings" >&2
}

# --- vBET VMs: one lab with two VMs on a switch and two on a wire -------
"$bin/orchestrator" --run-root "$run_root" >"$work/orchestrator.log" 2>&1 &
orch_pid=$!
for _ in $(seq 200); do [ -S "$run_root/orchestrator.sock" ] && break; sleep 0.05; done
export VBET_RUN_ROOT=$run_root
cat >"$work/vm-net.vbet" <<'EOF'
sw = alloc(switch)
s1 = attach(alloc(host), alloc(NIC, addr = "10.78.1.1/24"))
s2 = attach(alloc(host), alloc(NIC, addr = "10.78.1.2/24"))
link(sw, s1, s2)
w1 = attach(alloc(host), alloc(NIC, addr = "10.78.2.1/24"))
w2 = attach(alloc(host), alloc(NIC, addr = "10.78.2.2/24"))
link(w1, w2)
EOF
"$bin/vbet" up "$work/vm-net.vbet" --name "$lab" >"$work/up.log" 2>&1 || {
    cat "$work/up.log" >&2
    exit 1
}
vx() { "$bin/vbet" exec "$lab/$1" -- "${@:2}"; }

vm_pair() {
    local key=$1 name=$2 a=$3 b=$4 addr=$5 out=$work/$1-$6 i
    for i in $(seq 100); do vx "$a" ping -n -c 1 -W 1 "$addr" >/dev/null 2>&1 && break; done
    vx "$b" iperf3 -s -1 -D >/dev/null
    for i in $(seq 100); do
        vx "$b" ss -Hltn "sport = :5201" | grep -q . && break
        sleep 0.05
    done
    vx "$a" iperf3 -c "$addr" -t "$secs" --json >"$out.json" 2>&1 || true
    vx "$a" ping -n -c "$pings" -i 0.01 -W 1 "$addr" >"$out.ping" 2>&1 || true
    record "$key" "$name" "$out.json" "$out.ping"
}

# --- namespaces ---------------------------------------------------------
tcp_between() {
    local a=$1 b=$2 addr=$3 out=$4 server i
    ip netns exec "$a" ping -n -c 1 -w 10 "$addr" >/dev/null
    ip netns exec "$b" iperf3 -s -1 -B "$addr" >"$out.server.log" 2>&1 &
    server=$!
    for i in $(seq 50); do
        ip netns exec "$b" ss -Hltn "sport = :5201" | grep -q . && break
        sleep 0.1
    done
    ip netns exec "$a" iperf3 -c "$addr" -t "$secs" --json >"$out.json" || true
    wait "$server" 2>/dev/null || true
    ip netns exec "$a" ping -n -c "$pings" -i 0.01 -W 1 "$addr" >"$out.ping" || true
}

netns_add "$tag-br"
ip -n "$tag-br" link add br0 type bridge
ip -n "$tag-br" link set br0 up
for ns in a b; do
    netns_add "$tag-$ns"
    ip -n "$tag-br" link add "p$ns" type veth peer name eth0 netns "$tag-$ns"
    ip -n "$tag-br" link set "p$ns" master br0 up
done
ip -n "$tag-a" addr add 10.78.3.1/24 dev eth0
ip -n "$tag-b" addr add 10.78.3.2/24 dev eth0
ip -n "$tag-a" link set eth0 up
ip -n "$tag-b" link set eth0 up

bridge_pair() {
    tcp_between "$tag-a" "$tag-b" 10.78.3.2 "$work/bridge-$1"
    record bridge "netns veths via Linux bridge (kernel)" "$work/bridge-$1.json" "$work/bridge-$1.ping"
}

# vde_switch exits when its stdin closes: give it a pipe held open.
exec {hold}< <(exec sleep 100000)
plugs+=($!)
vde_switch -s "$work/vde" <&"$hold" >"$work/vde.log" 2>&1 &
vde_pid=$!
for _ in $(seq 100); do [ -S "$work/vde/ctl" ] && break; sleep 0.05; done
for ns in c d; do
    netns_add "$tag-$ns"
    ip netns exec "$tag-$ns" vde_plug2tap -s "$work/vde" tap0 </dev/null >"$work/plug-$ns.log" 2>&1 &
    plugs+=($!)
    for _ in $(seq 100); do ip -n "$tag-$ns" link show tap0 >/dev/null 2>&1 && break; sleep 0.05; done
done
ip -n "$tag-c" addr add 10.78.4.1/24 dev tap0
ip -n "$tag-d" addr add 10.78.4.2/24 dev tap0
ip -n "$tag-c" link set tap0 up
ip -n "$tag-d" link set tap0 up

vde_pair() {
    tcp_between "$tag-c" "$tag-d" 10.78.4.2 "$work/vde-$1"
    record vde "netns TAPs via vde_plug2tap + vde_switch" "$work/vde-$1.json" "$work/vde-$1.ping"
}

for r in $(seq "$rounds"); do
    echo "Round $r of $rounds (iperf3 ${secs} s, $pings pings per path):" >&2
    vm_pair switchd "VMs via switchd (fast mode)" s1 s2 10.78.1.2 "$r"
    vm_pair wire "VMs via a direct wire (fast mode)" w1 w2 10.78.2.2 "$r"
    bridge_pair "$r"
    vde_pair "$r"
done

# --- the table: per path, the median round by throughput ----------------
median() { # KEY -> the row of the median round
    awk -F'\t' -v k="$1" '$1 == k' "$rows" | sort -t$'\t' -k3,3n |
        awk -v n="$rounds" 'NR == int((n + 1) / 2)'
}
get() { median "$1" | cut -f"$2"; }
br_mbps=$(get bridge 3)
br_p50=$(get bridge 6)
vde_mbps=$(get vde 3)
ratio() { python3 -c "a, b = float('$1'), float('$2'); print(f'{a / b:.2f}' if b else '-')"; }

echo
echo "| path | Mbit/s | retransmits | RTT min/p50/p99 ms | × vde_plug2tap | × bridge | RTT p50 × bridge |"
echo "|---|---:|---:|---|---:|---:|---:|"
for key in switchd wire bridge vde; do
    IFS=$'\t' read -r _ name mbps retr min p50 p99 _ <<<"$(median "$key")"
    printf '| %s | %s | %s | %s/%s/%s | %s | %s | %s |\n' "$name" "$mbps" "$retr" "$min" "$p50" "$p99" \
        "$(ratio "$mbps" "$vde_mbps")" "$(ratio "$mbps" "$br_mbps")" "$(ratio "$p50" "$br_p50")"
done
echo
for key in switchd wire; do
    IFS=$'\t' read -r _ name mbps _ _ p50 _ _ <<<"$(median "$key")"
    python3 - "$name" "$mbps" "$p50" "$vde_mbps" "$br_mbps" "$br_p50" <<'EOF'
import sys
name, mbps, p50, vde, br, br_p50 = sys.argv[1], *map(float, sys.argv[2:])
checks = [
    (f"≥ 10× vde_plug2tap ({mbps / vde:.1f}×)", mbps >= 10 * vde),
    (f"≥ 40% of the bridge ({100 * mbps / br:.0f}%)", mbps >= 0.4 * br),
    (f"RTT p50 ≤ 2× the bridge's ({p50 / br_p50:.2f}×)", p50 <= 2 * br_p50),
]
print(f"- {name}: " + "; ".join(f"{t} {'met' if ok else 'NOT met'}" for t, ok in checks))
EOF
done
uptime >&2
