#!/usr/bin/env bash
# Build Helix as ONE runnable file for Linux x86_64: a self-extracting shell script whose
# payload is the relocatable tree of build-bundle.sh (interpreter, stdlib, Helix with its
# compiled Cython accelerators, every dependency and the shared libraries they need).
#
#   infrastructure/build-binary.sh dist/helix [pip install arguments...]   # default "."
#   HELIX_BUNDLE_DIR=/opt/helix infrastructure/build-binary.sh dist/helix  # an existing tree
#
# The file needs only /bin/sh, tar, gzip and glibc >= the build machine's on the target (no
# Python): on first run it unpacks itself once into $HELIX_CACHE_DIR (default
# $XDG_CACHE_HOME/helix, ~/.cache/helix, else $TMPDIR/helix-<uid>), keyed by the payload's
# hash, then every run execs the unpacked bin/helix.  So `COPY --from=helix
# /usr/local/bin/helix /usr/local/bin/helix` works in any glibc image (the sidecar).
set -euo pipefail

if [ "$#" -lt 1 ]; then
  echo "usage: $0 OUTPUT [pip install arguments...]" >&2
  exit 2
fi
out=$1
shift
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -n "${HELIX_BUNDLE_DIR:-}" ]; then
  cp -a "$HELIX_BUNDLE_DIR" "$work/helix"
else
  "$here/build-bundle.sh" "$work/helix" "$@" >&2
fi
"$work/helix/bin/helix" --version >&2
tar -C "$work" -czf "$work/payload.tgz" helix
hash=$(sha256sum "$work/payload.tgz" | cut -c1-16)

cat >"$work/header" <<EOF
#!/bin/sh
# Helix, one file: a self-extracting bundle (infrastructure/build-binary.sh).  The payload
# below this header is a gzip tar of a relocatable Helix tree; it is unpacked once per
# version into \$HELIX_CACHE_DIR (default ~/.cache/helix) and run from there.
set -e
id=$hash
base=\${HELIX_CACHE_DIR:-\${XDG_CACHE_HOME:-\${HOME:-/nonexistent}/.cache}/helix}
if ! mkdir -p "\$base" 2>/dev/null || [ ! -w "\$base" ]; then
  base=\${TMPDIR:-/tmp}/helix-\$(id -u)
  mkdir -p "\$base"
  chmod 700 "\$base"
fi
dir=\$base/\$id
if [ ! -x "\$dir/helix/bin/helix" ]; then
  self=\$0
  case \$self in */*) ;; *) self=\$(command -v -- "\$self") ;; esac
  tmp=\$(mktemp -d "\$base/.unpack.XXXXXX")
  tail -n +LINES "\$self" | tar -xzf - -C "\$tmp"
  if [ -d "\$dir" ]; then rm -rf "\$tmp"; else mv "\$tmp" "\$dir" 2>/dev/null || rm -rf "\$tmp"; fi
fi
exec "\$dir/helix/bin/helix" "\$@"
EOF
lines=$(($(wc -l <"$work/header") + 1))
sed -i "s/LINES/$lines/" "$work/header"
mkdir -p "$(dirname -- "$out")"
cat "$work/header" "$work/payload.tgz" >"$out.tmp"
chmod 0755 "$out.tmp"
mv "$out.tmp" "$out"
echo "build-binary.sh: $out ($(du -h "$out" | cut -f1), payload $hash)" >&2
