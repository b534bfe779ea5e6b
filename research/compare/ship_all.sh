#!/bin/sh
# Train the shipped Compare fits (all five families on each of the six targets, one
# interleaved run per target), then write each folder's model card and scores.
# OMP_NUM_THREADS=1 sh research/compare/ship_all.sh  (about 2-5 min per target on one thread)
set -e
for target in ${TARGETS:-8gaussians checkerboard rings moons pinwheel spirals}; do
  OMP_NUM_THREADS=1 python -m playground.train compare --preset ship --set target=$target \
    --log-every 100 --checkpoint-every 0 --out weights/compare-$target
  rm -rf weights/compare-$target-ckpt
done
