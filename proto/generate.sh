#!/usr/bin/env bash
# Regenerate the Python code of the wire contract next to the .proto files:
#   proto/generate.sh            writes proto/flowplan/v1/*_pb2.py, *_pb2.pyi, *_pb2_grpc.py
#   proto/generate.sh OUT_DIR    writes the same files under OUT_DIR instead (the drift test
#                                in tests/test_proto.py compares them with the checked-in ones)
# It needs the grpcio-tools pinned in pyproject.toml's `test` extra (pip install -e '.[test]');
# set PYTHON to use another interpreter than `python`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(cd "${1:-$root/proto}" && pwd)"   # an existing directory
cd "$root"
"${PYTHON:-python}" -m grpc_tools.protoc -I proto \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    proto/flowplan/v1/*.proto
