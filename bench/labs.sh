#!/usr/bin/env bash
# Lab bring-up and tear-down: `vbet up` of N hosts on one switch (spec to
# every VM ready), `vbet down`, and the idle memory of a VM monitor and a
# switch; beside Mininet bringing up the same N hosts on one Linux bridge
# (`mn --switch lxbr --controller none --topo single,N`), in the same run.
# Usage: bench/labs.sh [N…] (default: 10 100). Needs root. Leaves nothing:
# every lab is brought down, every process it started is ended by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-10 100}")
read -r -a sizes <<<"${sizes[*]}"

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

secs() { python3 -c "import time; print(time.monotonic())"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

printf '\n| what | N | vBET | Mininet (lxbr) | ratio |\n|---|--:|--:|--:|--:|\n'
for n in "${sizes[@]}"; do
  topo=$work/hosts$n.vbet
  {
    echo "sw = alloc(switch, ports = $n)"
    echo "for i in 1..$n {"
    echo "  h\${i} = attach(alloc(host), alloc(NIC, addr = \"10.60.\${(i - 1) / 250}.\${(i - 1) % 250 + 1}/16\"))"
    echo "  link(sw, h\${i})"
    echo "}"
  } >"$topo"
  t0=$(secs); "$bin/vbet" up "$topo" --name "b$n" >/dev/null 2>&1; t1=$(secs)
  up=$(python3 -c "print(f'{$t1-$t0:.2f}')")
  mon=$(pgrep -f "run/b$n/specs/h1.toml" | head -1)
  sw=$(pgrep -f "run/b$n/sw/sw " | head -1)
  mon_rss=$(rss_kib "$mon"); sw_rss=$(rss_kib "$sw")
  t0=$(secs); "$bin/vbet" down "b$n" >/dev/null 2>&1; t1=$(secs)
  down=$(python3 -c "print(f'{$t1-$t0:.2f}')")
  if command -v mn >/dev/null; then
    t0=$(secs)
    if mn --switch lxbr --controller none --topo "single,$n" --test none >"$work/mn$n.log" 2>&1 \
      && grep -q "Done" "$work/mn$n.log"; then
      t1=$(secs); mn_total=$(python3 -c "print(f'{$t1-$t0:.2f}')")
    else
      mn_total="failed ($(tail -1 "$work/mn$n.log"))"
    fi
  else
    mn_total="not installed"
  fi
  ratio=$(python3 -c "print(f'x{$mn_total/$up:.1f} faster' if '$mn_total'[0].isdigit() else '-')")
  printf '| bring-up to all ready (`vbet up`; Mininet: up+down, `--test none`) | %s | %s s | %s s | %s |\n' "$n" "$up" "$mn_total" "$ratio"
  printf '| tear-down (`vbet down`) | %s | %s s | | |\n' "$n" "$down"
  printf '| idle RSS: one vm-monitor / the switchd | %s | %s KiB / %s KiB | | |\n' "$n" "$mon_rss" "$sw_rss"
done
