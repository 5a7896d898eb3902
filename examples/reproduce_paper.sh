#!/usr/bin/env bash
# Reproduce the paper's six runs (w1/w2 × baseline/weak/strong) and its Tables 1–2 on real BBBC006v1.
#
#   examples/reproduce_paper.sh BBBC006/        # the folder holding the 34 BBBC006_v1_images_z_XX.zip files
#
# Strong fine-tunes weak (Eq. 5), so each channel runs baseline, weak, then strong. Expect about
# 40 epochs × 18,830 triplets per run: train on a GPU (`--gpus N` for several). Extra arguments after
# the source folder are passed to every `train` (e.g. --device cuda --gpus 2, or --epochs 2 to try it).
set -euo pipefail
src=${1:?usage: reproduce_paper.sh BBBC006/ [train options]}
shift
here=$(cd "$(dirname "$0")" && pwd)

blurlatent prepare "$src" prepared/ --channels w1,w2 --planes 0:16:2 --crop 128 --split 70:10:20
for ch in w1 w2; do
  blurlatent train --config "$here/configs/${ch}_baseline.yaml" --out "runs/${ch}-none" "$@"
  blurlatent train --config "$here/configs/${ch}_weak.yaml" --out "runs/${ch}-weak" "$@"
  blurlatent train --config "$here/configs/${ch}_strong.yaml" --out "runs/${ch}-strong" "$@"
  blurlatent evaluate prepared/ --channel "$ch" --out "report-${ch}/" \
    -c "runs/${ch}-none/best.pt" -c "runs/${ch}-weak/best.pt" -c "runs/${ch}-strong/best.pt"
done
