#!/bin/sh
# Times parsing + validating a generated 10,000-node topology (target < 1 s,
# release build). Usage: bench/topology.sh [NODES]
# Prints one line per shape (a flat generated file, and the same lab made
# by loops); exits 1 if either takes 1 s or more.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p vbet-topology --example bench_topology
exec target/release/examples/bench_topology "${1:-10000}"
