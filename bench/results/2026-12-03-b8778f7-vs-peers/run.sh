#!/bin/bash
# Three rotated runs of the eight systems, 1,000 routing keys (a GET per call for `ringway`).
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-b8778f7-vs-peers
common="--no-cross-check --handshake-duration 0 --duration 8 --route-keys 1000"
target/release/scenario --systems ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls $common --out $R/run1 > $R/run1.log 2>&1
target/release/scenario --systems haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls,ringway,ringway-cache $common --out $R/run2 > $R/run2.log 2>&1
target/release/scenario --systems haproxy-tls,nginx-grpc-tls,ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache $common --out $R/run3 > $R/run3.log 2>&1
echo ALLDONE
# Afterwards, ringway-cache at f8d2443 and at b8778f7 alternated with HAProxy in each run (the
# binaries copied to /work/ab/ringway-<commit> from release builds of each commit), results in
# NOTE.md:
#   for i in 1 2 3 4; do for b in f8d2443 b8778f7; do
#     target/release/scenario --systems ringway-cache,haproxy --ringway /work/ab/ringway-$b \
#       --no-cross-check --handshake-duration 0 --duration 8 --route-keys 1000 --out /tmp/ab-$b-$i
#   done; done
