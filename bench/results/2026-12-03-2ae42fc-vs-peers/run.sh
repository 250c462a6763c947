#!/bin/bash
# Three rotated runs of the eight systems, 1,000 routing keys (a GET per call for `ringway`).
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-2ae42fc-vs-peers
common="--no-cross-check --handshake-duration 0 --duration 8 --route-keys 1000"
target/release/scenario --systems ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls $common --out $R/run1 > $R/run1.log 2>&1
target/release/scenario --systems haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls,ringway,ringway-cache $common --out $R/run2 > $R/run2.log 2>&1
target/release/scenario --systems haproxy-tls,nginx-grpc-tls,ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache $common --out $R/run3 > $R/run3.log 2>&1
echo ALLDONE
# Run 1 came right after a 4-minute release build and the whole VM was slow in its first
# minutes (the target and load generator too): a fourth run, in run 1's order.
target/release/scenario --systems ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls $common --out $R/run4 > $R/run4.log 2>&1
echo ALLDONE4
