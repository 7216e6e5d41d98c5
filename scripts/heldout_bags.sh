#!/usr/bin/env bash
# The held-out split as bags for replay-eval through the graph: one rosbag2 (MCAP) per video
# of a `live-ros generate world --split eval` folder, its annotation stored in the bag.
#
#   scripts/heldout_bags.sh [WORLD_EVAL_DIR] [BAGS_DIR]    (defaults: data/world/eval, data/world/eval-bags)
#   .venv/bin/live-ros replay-eval BAGS_DIR/* --out OUT    # the word tables, per bag and over all
set -euo pipefail
cd "$(dirname "$0")/.."
EVAL="${1:-data/world/eval}"
BAGS="${2:-$EVAL-bags}"
mkdir -p "$BAGS"
for video in "$EVAL"/videos/*.mp4; do
  name="$(basename "$video" .mp4)"
  [ -e "$BAGS/$name" ] || .venv/bin/live-ros bag-from-video "$video" --out "$BAGS/$name" \
      --annotations "$EVAL/annotations/$name.json" > /dev/null
done
echo "$(ls "$BAGS" | wc -l) bags in $BAGS"
