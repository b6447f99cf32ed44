#!/usr/bin/env bash
# Lab bring-up, tear-down and memory: `vbet up` / `vbet down` of a lab
# shape of N nodes, beside Mininet (Linux-bridge switches, no controller)
# building the same shape through its Python API, in the same run.
#
# Usage: bench/labs.sh [SHAPE:N …]   (default: star:100 linear:100 ring:100)
#   star:N    N hosts on one switch             (Mininet: single,N)
#   linear:N  N switches in a chain, a host on each  (Mininet: linear,N)
#   ring:N    N routers in a ring of point-to-point cables, no switch
#             (vBET: direct wires between monitors; Mininet: veth pairs)
#
# Up is `vbet up` returning (every VM ready, its NICs plugged in); down is
# `vbet down` returning (nothing left). Memory per node is the drop of the
# host's MemAvailable from before `vbet up` to after it, over N: processes,
# page tables, namespaces, TAPs and sockets alike. Needs root, a release
# build (made here), and for Mininet Debian's `mininet` and `bridge-utils`.
# Leaves nothing: every lab is brought down, every process it started is
# ended by PID, and the sysctls Mininet raises are put back.
set -euo pipefail
cd "$(dirname "$0")/.."
specs=("${@:-star:100 linear:100 ring:100}")
read -r -a specs <<<"${specs[*]}"

cargo build --release --quiet --bins
bin=$PWD/target/release
work=$(mktemp -d /tmp/vbet-bench-labs.XXXXXX)
run_root=$work/run
orch_pid=
# Mininet raises host sysctls (its fixLimits) and never lowers them: keep
# what they were and put them back.
mn_keys=(fs.file-max net.core.wmem_max net.core.rmem_max net.ipv4.tcp_rmem net.ipv4.tcp_wmem
  net.core.netdev_max_backlog net.ipv4.neigh.default.gc_thresh3 net.ipv4.neigh.default.gc_thresh2
  net.ipv4.neigh.default.gc_thresh1 net.ipv4.route.max_size kernel.pty.max)
declare -A mn_saved
for key in "${mn_keys[@]}"; do mn_saved[$key]=$(sysctl -n "$key"); done
cleanup() {
  for lab in $(ls "$run_root" 2>/dev/null); do
    [ -d "$run_root/$lab" ] && VBET_RUN_ROOT=$run_root "$bin/vbet" down "$lab" >/dev/null 2>&1 || true
  done
  [ -n "$orch_pid" ] && kill "$orch_pid" 2>/dev/null && wait "$orch_pid" 2>/dev/null || true
  command -v mn >/dev/null && mn -c >/dev/null 2>&1 || true  # Mininet's own clean-up
  for key in "${mn_keys[@]}"; do sysctl -qw "$key=${mn_saved[$key]}" || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/orchestrator" --run-root "$run_root" >"$work/orchestrator.log" 2>&1 &
orch_pid=$!
for _ in $(seq 100); do [ -S "$run_root/orchestrator.sock" ] && break; sleep 0.05; done
export VBET_RUN_ROOT=$run_root

now() { python3 -c "import time; print(time.monotonic())"; }
since() { python3 -c "print(f'{$(now) - $1:.2f}')"; }
mem_available_kib() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }
# lab_pss_kib LAB: the summed PSS of every process of a lab: its daemons
# (command line under RUN_ROOT/LAB/), everything in its VMs' cgroups, and
# the orchestrator (as Mininet's count has its Python process).
lab_pss_kib() {
  python3 - "$1" "$run_root" "$orch_pid" <<'PY'
import os, sys
lab, root, orchestrator = sys.argv[1:4]
total = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        cg = open(f"/proc/{pid}/cgroup").read()
        if pid != orchestrator and f"{root}/{lab}/" not in cmd and f"vbet/{lab}." not in cg:
            continue
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    except OSError:
        pass
print(total)
PY
}
# kib PID FIELD: a field of /proc/PID/smaps_rollup (Rss, Pss), in KiB.
kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/smaps_rollup"; }

# topology SHAPE N: the shape as a .vbet file.
topology() {
  local addr='addr = "10.60.${(i - 1) / 250}.${(i - 1) % 250 + 1}/16"'
  case $1 in
  star)
    echo "sw = alloc(switch, ports = $2)"
    echo "for i in 1..$2 {"
    echo "  h\${i} = attach(alloc(host), alloc(NIC, $addr))"
    echo "  link(sw, h\${i})"
    echo "}"
    ;;
  linear)
    echo "for i in 1..$2 {"
    echo "  s\${i} = alloc(switch, ports = 3)"
    echo "  h\${i} = attach(alloc(host), alloc(NIC, $addr))"
    echo "  link(s\${i}, h\${i})"
    echo "}"
    echo "for i in 2..$2 { link(NIC(s\${i}), NIC(s\${i - 1})) }"
    ;;
  ring)
    # Cable k joins r_k's eth1 (10.K.1) and r_{k+1}'s eth0 (10.K.2).
    echo "n = $2"
    echo "for i in 1..n {"
    echo "  r\${i} = attach(alloc(router),"
    echo "    alloc(NIC, addr = \"10.\${((i + n - 2) % n + 1) / 250}.\${((i + n - 2) % n + 1) % 250}.2/24\"),"
    echo "    alloc(NIC, addr = \"10.\${i / 250}.\${i % 250}.1/24\"))"
    echo "}"
    echo "for i in 1..n { link(NIC(r\${i}, 2), NIC(r\${i % n + 1}, 1)) }"
    ;;
  *)
    echo "unknown shape $1 (star, linear or ring)" >&2
    exit 2
    ;;
  esac
}

printf '\n| shape | N | up: vBET | up: Mininet | down: vBET | down: Mininet | PSS per node: vBET | Mininet | MemAvailable drop per node: vBET | Mininet | one vm-monitor RSS / PSS |\n'
printf '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n'
for spec in "${specs[@]}"; do
  shape=${spec%%:*} n=${spec##*:} lab=b$shape$n
  topo=$work/$lab.vbet
  topology "$shape" "$n" >"$topo"
  sync
  mem0=$(mem_available_kib)
  t0=$(now)
  if ! "$bin/vbet" up "$topo" --name "$lab" >"$work/$lab.up.log" 2>&1; then
    echo "vbet up $shape:$n failed:" >&2
    tail -5 "$work/$lab.up.log" >&2
    exit 1
  fi
  up=$(since "$t0")
  mem=$((($mem0 - $(mem_available_kib)) / n))
  pss=$(($(lab_pss_kib "$lab") / n))
  mon=$(pgrep -f "run/$lab/specs/[hr]1.toml" | head -1)
  mon_mem="$(kib "$mon" Rss) / $(kib "$mon" Pss) KiB"
  t0=$(now)
  "$bin/vbet" down "$lab" >/dev/null 2>&1
  down=$(since "$t0")

  mn_up=- mn_down=- mn_mem=- mn_pss=-
  if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import mininet' 2>/dev/null; then
    if out=$(/usr/bin/python3 bench/mininet_lab.py "$shape" "$n" 2>"$work/mn-$lab.log"); then
      read -r mn_up mn_down mn_mem mn_pss < <(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['up'], d['down'], d['mem_per_node_kib'], d['pss_per_node_kib'])" "$out")
    else
      mn_up="failed ($(tail -1 "$work/mn-$lab.log"))"
    fi
    mn -c >/dev/null 2>&1 || true
  fi
  printf '| %s | %s | %s s | %s s | %s s | %s s | %s KiB | %s KiB | %s KiB | %s KiB | %s |\n' \
    "$shape" "$n" "$up" "$mn_up" "$down" "$mn_down" "$pss" "$mn_pss" "$mem" "$mn_mem" "$mon_mem"
done
