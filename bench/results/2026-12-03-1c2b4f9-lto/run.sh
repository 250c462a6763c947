#!/bin/bash
# Same source (1c2b4f9), two builds, alternated: the release profile as it was (codegen-units = 4,
# no LTO) against lto = "fat", codegen-units = 1. Three pairs, 1,000 routing keys, 64 in flight.
#   base: cargo build --release -p ringway
#   lto:  CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 cargo build --release -p ringway
# (the binaries were copied to /work/ab/ before the runs)
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-1c2b4f9-lto
common="--no-cross-check --handshake-duration 0 --duration 8 --route-keys 1000 --systems ringway,ringway-cache,ringway-tls,haproxy,haproxy-tls"
for i in 1 2 3; do
  target/release/scenario $common --ringway /work/ab/ringway-base --out $R/base$i > $R/base$i.log 2>&1
  target/release/scenario $common --ringway /work/ab/ringway-lto --out $R/lto$i > $R/lto$i.log 2>&1
done
echo ALLDONE
