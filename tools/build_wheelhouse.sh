#!/usr/bin/env bash
# Builds the wheelhouse a target host installs from with --no-index:
# the app wheel (always rebuilt from ./app) plus every runtime dependency,
# as binary wheels for the TARGET's Python and platform (not the controller's).
#
#   tools/build_wheelhouse.sh [--out DIR] [--python-version 3.11]
#                             [--glibc 2.36] [--arch x86_64]
#                             [--platform TAG]... [--extra NAME]...
#
# Defaults match Debian 12 (CPython 3.11, glibc 2.36, x86_64). pip 23 does not
# expand a manylinux_2_X tag to older glibc levels, so every level from 2.17
# up to --glibc is passed; --platform (repeatable) replaces that list.
# --extra mongodb adds pymongo (the app's `mongodb` extra): a host whose
# toxic_vocab_backend is mongodb needs it. TensorFlow is never included: the
# `keras` extra is refused here because it does not fit the 1 GB host (build
# that wheelhouse by hand if you mean it).
# Dependencies are cached: wheels already in DIR are reused, and the final set
# is exactly what the resolver picked (stale wheels from older builds go).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/.cache/wheelhouse"
pyver=3.11
glibc=2.36
arch=x86_64
platforms=()
extras=()
python=${PYTHON:-$here/.venv/bin/python}

die() { echo "build_wheelhouse: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --python-version) pyver=${2:?--python-version needs a value like 3.11}; shift 2 ;;
        --platform) platforms+=("${2:?--platform needs a tag like manylinux_2_28_x86_64}"); shift 2 ;;
        --glibc) glibc=${2:?--glibc needs a value like 2.36}; shift 2 ;;
        --arch) arch=${2:?--arch needs a value like x86_64}; shift 2 ;;
        --extra) extras+=("${2:?--extra needs a name}"); shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ $pyver =~ ^3\.[0-9]+$ ]] || die "--python-version must look like 3.11, got: $pyver"
for e in "${extras[@]}"; do
    case "$e" in
        keras) die "--extra keras pulls TensorFlow (~600 MB per worker); not for the 1 GB host" ;;
        tflite|import|mongodb) ;;
        *) die "unknown extra: $e (tflite, import or mongodb)" ;;
    esac
done
[[ $glibc =~ ^2\.[0-9]+$ ]] || die "--glibc must look like 2.36, got: $glibc"
if [ ${#platforms[@]} -eq 0 ]; then
    platforms=("manylinux2014_$arch")
    for ((minor = ${glibc#2.}; minor >= 17; minor--)); do platforms+=("manylinux_2_${minor}_$arch"); done
fi
platform_args=()
for p in "${platforms[@]}"; do platform_args+=(--platform "$p"); done
[ -x "$python" ] || die "no Python at $python (set PYTHON=)"

start=$(date +%s)
mkdir -p "$out"
stage=$(mktemp -d "$out.stage.XXXXXX")
appdist=$(mktemp -d "$out.app.XXXXXX")
trap 'rm -rf "$stage" "$appdist"' EXIT

# The app wheel is pure Python: build it for any target, always from scratch
# (a stale build/ or egg-info must not leak old files into it).
rm -rf "$here/app/build"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$appdist" "$here/app"
appwheel=$(ls "$appdist"/toxic_service-*.whl)
[ -f "$appwheel" ] || die "app wheel was not built"

spec="$appwheel"
if [ ${#extras[@]} -gt 0 ]; then
    spec="toxic-service[$(IFS=,; echo "${extras[*]}")] @ file://$appwheel"
fi

# Resolve for the target. --find-links "$out" lets pip reuse wheels from the
# previous build instead of fetching them again.
"$python" -m pip download --quiet \
    --only-binary=:all: --implementation cp \
    --python-version "$pyver" "${platform_args[@]}" \
    --find-links "$out" --dest "$stage" "$spec"

if ls "$stage" | grep -Eiq '^(tensorflow|tf_keras|keras)[-_]'; then
    die "TensorFlow/Keras crept into the wheelhouse; refusing"
fi

# Swap in the new set: old wheels that the resolver no longer picks disappear.
find "$out" -maxdepth 1 -name '*.whl' -delete
mv "$stage"/*.whl "$out"/
cp "$appwheel" "$out"/
echo "wheelhouse: $out ($(ls "$out" | wc -l) wheels, $(du -sh "$out" | cut -f1), $(( $(date +%s) - start )) s)"
ls "$out"
