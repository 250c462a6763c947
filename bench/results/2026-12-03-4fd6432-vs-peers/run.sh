#!/bin/bash
# Three rotated runs of the eight gateways, 1,000 routing keys (a GET per
# call for `ringway`), at 4fd6432 (release build).
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-4fd6432-vs-peers
common="--no-cross-check --handshake-duration 0 --duration 8 --route-keys 1000"
target/release/scenario --systems ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls $common --out $R/run1 > $R/run1.log 2>&1
target/release/scenario --systems haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls,ringway,ringway-cache $common --out $R/run2 > $R/run2.log 2>&1
target/release/scenario --systems haproxy-tls,nginx-grpc-tls,ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache $common --out $R/run3 > $R/run3.log 2>&1
echo ALLDONE
