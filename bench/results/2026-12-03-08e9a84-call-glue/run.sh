#!/bin/bash
# Where the shard's time goes, with a GET per call and with the route cache: `perf record` on
# the gateway's core (core 1) for 4 s in the middle of a one-system scenario run (64 calls in
# flight on 4 connections, 1,000 routing keys), then classify.py. Needs perf; run as root.
# ringway: release build of 08e9a84 (the same ringway code as 1349d01).
set -euo pipefail
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-08e9a84-call-glue
for system in ringway ringway-cache; do
  target/release/scenario --systems "$system" --no-cross-check --handshake-duration 0 \
    --duration 10 --warmup 1 --route-keys 1000 --out "$R/$system" > "$R/$system.log" 2>&1 &
  sleep 5
  perf record -C 1 -o "/tmp/perf.$system" -- sleep 4
  wait
  perf report -i "/tmp/perf.$system" --no-children --sort dso,sym --stdio 2>/dev/null |
    grep -E '^ +[0-9]' > "$R/flat-$system.txt"
  python3 "$R/classify.py" "$R/flat-$system.txt" > "$R/classified-$system.txt"
done
