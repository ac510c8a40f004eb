#!/usr/bin/env bash
# Re-create the early-exit models of docs/models.md (SST-2), one training at a time.
#
#   bash benchmarks/make_early_exit.sh     # after `bash benchmarks/make_models.sh sst2`
#
# A budget that fits a 2-core afternoon (about an hour): MiniLM-L6 trains 1,000 steps of 32
# (32k rows, half an epoch), MPNet-base `joint` 1,200 steps (as the plain tier; `sweet` 600) with
# exits every second layer. Training holds out the same 8,000 rows as the SST-2 tiers. Exit heads
# read the mean of the tokens (the default `--pooling mean`). Models land in $TANGO_HOME/models/<name>
# and register as <name>; each gets one temperature per exit from `tango calibrate` on 3,000
# held-out training rows (benchmarks/bench.py --write-calibration-rows; SST-2 dev judges them).
# MPNET=0 skips the two MPNet models.
set -euo pipefail

DATA=${TANGO_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
HOME_DIR=${TANGO_HOME:-$HOME/.cache/tango}
TANGO=${TANGO:-"python -m tango"}
mkdir -p "$HOME_DIR/logs"
sst2=(--train "$DATA/sst2/train.tsv" --dev "$DATA/sst2/dev.tsv" --labels sst2
      --calibration-rows 8000 --calibration-seed 0)  # the rows make_models.sh holds out

# exit_model NAME ENCODER MODE EXITS [extra train args...]
exit_model() {
  local name=$1 encoder=$2 mode=$3 exits=$4 out="$HOME_DIR/models/$1"
  shift 4
  if [[ ! -f "$out/early_exit.json" ]]; then
    echo "== training $name (log: $HOME_DIR/logs/$name.log)"
    $TANGO train "$encoder" --early-exit "$mode" --exits "$exits" "${sst2[@]}" "$@" \
      --out "$out" --name "$name" > "$HOME_DIR/logs/$name.log" 2>&1
    tail -n 1 "$HOME_DIR/logs/$name.log"
  fi
  # one temperature per exit, fitted on held-out training rows (not on dev, which judges them)
  $TANGO calibrate "$out" --dev "$CALIBRATION"
}

$TANGO models install minilm mpnet
CALIBRATION="$HOME_DIR/data/sst2-calibration.tsv"
python "$(dirname "$0")/bench.py" --write-calibration-rows "$CALIBRATION"
exit_model minilm-l6-sst2-ee-joint minilm joint all --max-steps 1000
exit_model minilm-l6-sst2-ee-sweet minilm sweet all --max-steps 1000
if [[ ${MPNET:-1} == 1 ]]; then
  exit_model mpnet-base-sst2-ee-joint mpnet joint 2,4,6,8,10,12 --max-steps 1200
  exit_model mpnet-base-sst2-ee-sweet mpnet sweet 2,4,6,8,10,12 --max-steps 600
fi
