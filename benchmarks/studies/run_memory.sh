#!/usr/bin/env bash
# Peak RSS of `tango run` on 10k and 1M rows (docs/run.md): memory must not grow with the file.
# Tiny random-weight tiers (tests/tiny_models.py) keep the 1M-row run to a few minutes; memory
# behaviour is the streaming's, not the model's. SST-2 sentences are repeated to fill the files.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${WORK:-/tmp/tango-run-memory}
mkdir -p "$work"
python - "$work" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "tests")
from tiny_models import build_tiny_classifier
from tango.export import export_tier
work = Path(sys.argv[1])
for k in (1, 2):
    build_tiny_classifier(work / f"torch{k}", seed=k)
    export_tier(work / f"torch{k}", work / f"int8_{k}", int8=True)
rows = [l.split("\t")[0].strip() for l in Path("../shared/data/sst2/train.tsv").read_text().splitlines()[1:]]
for n in (10_000, 1_000_000):
    with open(work / f"in_{n}.jsonl", "w") as f:
        f.writelines(json.dumps({"id": i, "text": rows[i % len(rows)]}) + "\n" for i in range(n))
PY
for runtime in int8_ torch; do
  for n in 10000 1000000; do
    /usr/bin/time -v tango run --tier1 "$work/${runtime}1" --tier2 "$work/${runtime}2" --threshold 0.9 \
      -i "$work/in_$n.jsonl" -o "$work/out.jsonl" --overwrite -q 2> "$work/time.txt"
    echo "$runtime $n rows: $(grep -E 'Maximum resident' "$work/time.txt" | awk '{print $NF}') kB peak RSS," \
         "$(grep Elapsed "$work/time.txt" | awk '{print $NF}') wall"
  done
done
