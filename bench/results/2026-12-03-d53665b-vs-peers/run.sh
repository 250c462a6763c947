#!/bin/bash
# Three rotated runs of the eight systems, 1,000 routing keys (a GET per call for `ringway`).
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-d53665b-vs-peers
common="--no-cross-check --handshake-duration 0 --duration 8 --route-keys 1000"
target/release/scenario --systems ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls $common --out $R/run1 > $R/run1.log 2>&1
target/release/scenario --systems haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls,ringway,ringway-cache $common --out $R/run2 > $R/run2.log 2>&1
target/release/scenario --systems haproxy-tls,nginx-grpc-tls,ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache $common --out $R/run3 > $R/run3.log 2>&1
echo ALLDONE
# Runs 1-3 ran in one of the VM's slow spells (the load generator at 6-11 µs per call against ~5):
# the same three rotations again, a few minutes later.
for i in 4 5 6; do
  case $i in
    4) order=ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls ;;
    5) order=haproxy,nginx-grpc,ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls,ringway,ringway-cache ;;
    6) order=haproxy-tls,nginx-grpc-tls,ringway,ringway-cache,haproxy,nginx-grpc,ringway-tls,ringway-tls-cache ;;
  esac
  target/release/scenario --systems $order $common --out $R/run$i > $R/run$i.log 2>&1
done
echo ALLDONE2
