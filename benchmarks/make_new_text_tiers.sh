#!/usr/bin/env bash
# The tiers of benchmarks/PROTOCOL.md (new-text series), one job at a time (2 cores: never two).
#
#   bash benchmarks/make_new_text_tiers.sh        # ~55 min on 2 quiet cores (series 1), ~75 more (series 2)
#
# Every tier holds out the same 30,000 SST-2 training rows by whole sentences (containment
# groups, seed 0); tier 1 variant B also learns from 30,000 IMDB sentences its teacher scores.
# Tiers land in $TANGO_HOME/models/<name>, logs in $TANGO_HOME/logs; finished steps are skipped,
# an interrupted training resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${TANGO_DATA:-$(cd .. && pwd)/shared/data}
HOME_DIR=${TANGO_HOME:-$HOME/.cache/tango}
TANGO=${TANGO:-"python -m tango"}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p "$HOME_DIR/logs" "$HOME_DIR/data"
HOLD=(--labels sst2 --calibration-rows 30000 --calibration-seed 0 --group-column containment)
T2=mpnet-base-sst2-g30k

train() {  # NAME MODEL ARGS...
  local name=$1 model=$2 out="$HOME_DIR/models/$1"
  shift 2
  if [[ ! -f "$out/tango_train.json" ]]; then
    echo "== $(date -u +%H:%M) training $name (log: $HOME_DIR/logs/$name.log)"
    $TANGO train "$model" --train "$DATA/sst2/train.tsv" "${HOLD[@]}" "$@" --out "$out" --name "$name" \
      > "$HOME_DIR/logs/$name.log" 2>&1
  fi
}

export_ov() {  # NAME [--int8]
  local name=$1 out="$HOME_DIR/models/$1"
  shift
  local suffix=-ov
  [[ ${1:-} == --int8 ]] && suffix=-ov-int8
  if [[ ! -f "$out$suffix/tango_export.json" ]]; then
    echo "== $(date -u +%H:%M) exporting $name$suffix"
    $TANGO export "$out" --format openvino "$@" --out "$out$suffix" --name "$name$suffix" \
      --check-data "$DATA/sst2/train.tsv" --no-probe > "$HOME_DIR/logs/$name$suffix.log" 2>&1
    $TANGO probe "$out$suffix" --data "$DATA/sst2/train.tsv" >> "$HOME_DIR/logs/$name$suffix.log" 2>&1
  fi
}

# IMDB sentences, split once into two disjoint seeded halves: distillation and calibration.
if [[ ! -f "$HOME_DIR/data/imdb-sentences-calibration.jsonl" ]]; then
  python - "$DATA/imdb/train.jsonl" "$HOME_DIR/data" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
from tango.data import load_texts
from tango.sentences import sentences_of
sentences = list(sentences_of(load_texts(sys.argv[1])))
order = np.random.default_rng(0).permutation(len(sentences))
half = len(sentences) // 2
for name, part in (("distillation", order[:half]), ("calibration", order[half:])):
    with open(Path(sys.argv[2]) / f"imdb-sentences-{name}.jsonl", "w") as out:
        out.writelines(json.dumps({"text": sentences[i]}) + "\n" for i in sorted(part))
print(f"{len(sentences)} IMDB sentences, {half} for distillation")
PY
fi

train "$T2" mpnet
train minilm-l6-sst2-g30k-distilled minilm --teacher "$T2"
train minilm-l6-sst2-g30k-imdb minilm --teacher "$T2" \
  --unlabelled "$HOME_DIR/data/imdb-sentences-distillation.jsonl" --unlabelled-rows 30000
export_ov "$T2" --int8
export_ov minilm-l6-sst2-g30k-distilled
export_ov minilm-l6-sst2-g30k-imdb
# Series 2 (PROTOCOL.md, version 2): D distils on 100,000 IMDB sentences (B's 30,000 among them);
# C is B plus the Gatekeeper stage alone (--epochs 0 starts from B's weights).
train minilm-l6-sst2-g30k-imdb100k minilm --teacher "$T2" \
  --unlabelled "$HOME_DIR/data/imdb-sentences-distillation.jsonl" --unlabelled-rows 100000
export_ov minilm-l6-sst2-g30k-imdb100k
train minilm-l6-sst2-g30k-imdb-gk "$HOME_DIR/models/minilm-l6-sst2-g30k-imdb" --teacher "$T2" \
  --unlabelled "$HOME_DIR/data/imdb-sentences-distillation.jsonl" --unlabelled-rows 30000 \
  --epochs 0 --gatekeeper 0.5
export_ov minilm-l6-sst2-g30k-imdb-gk
echo "== $(date -u +%H:%M) done"
