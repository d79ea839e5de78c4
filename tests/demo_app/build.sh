#!/usr/bin/env bash
# Builds the demo app image on this machine's engine and saves it as a tar for the
# app role's image_archive (the air-gapped path):
#   tests/demo_app/build.sh TAG OUTPUT.tar
set -euo pipefail
tag=${1:?tag}
out=${2:?output tar}
here=$(cd "$(dirname "$0")" && pwd)
docker build --quiet --build-arg DEMO_VERSION="$tag" -t "platform-demo-app:$tag" "$here" >/dev/null
docker save -o "$out" "platform-demo-app:$tag"
