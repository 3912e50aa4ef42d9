#!/usr/bin/env bash
# Pretrain on the GPUs of this machine with torchrun: one process per GPU, DDP, gloo on a CPU-only box.
#   NPROC=8 DATA=data/k400 bash examples/torchrun.sh [more videomae pretrain flags...]
# Every rank trains on its turns of one global sample stream, so the result does not depend on NPROC: the global
# batch is --batch-size × NPROC × optim.accum_steps, printed at the start and used to scale the learning rate.
# Rank 0 alone logs and writes RUN/; re-running the same command continues from the newest checkpoint.
set -euo pipefail
NPROC=${NPROC:-2}
DATA=${DATA:-synthetic}
OUT=${OUT:-runs/pretrain-torchrun}
# `-m videomae_cli` runs the same code as the `videomae` command (torchrun --no-python videomae ... works too).
exec torchrun --standalone --nproc_per_node "$NPROC" -m videomae_cli pretrain \
    --data "$DATA" --out "$OUT" --resume auto "$@"
