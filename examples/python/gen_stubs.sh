#!/usr/bin/env bash
# Generates the Python gRPC stubs for browserd.v1 from proto/ into gen/
# (gitignored). The well-known types (Duration, Timestamp) ship with
# grpcio-tools and protobuf, so only proto/ is on the include path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$(cd "$here/../../proto" && pwd)"
python="${PYTHON:-python3}"
rm -rf "$here/gen"
mkdir -p "$here/gen"
"$python" -m grpc_tools.protoc -I"$proto" \
  --python_out="$here/gen" --pyi_out="$here/gen" --grpc_python_out="$here/gen" \
  "$proto/browserd/v1/sessions.proto" \
  "$proto/browserd/v1/contexts.proto" \
  "$proto/browserd/v1/admin.proto"
echo "generated $(cd "$here/gen" && find . -name '*.py' | sort | tr '\n' ' ')"
