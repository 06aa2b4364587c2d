#!/usr/bin/env bash
# Build a relocatable, self-contained Helix tree: the Python interpreter, the
# standard library (pruned), Helix and its dependencies, and every shared library
# they link against except glibc's own, plus two launchers that find their
# directory at run time:
#
#   PREFIX/bin/helix    runs Helix          (what the Docker image's ENTRYPOINT runs)
#   PREFIX/bin/python   runs the interpreter (HEALTHCHECK, debugging)
#
# The tree needs only /bin/sh and glibc >= the build machine's on the target, so it
# can be copied into another image (the sidecar pattern):
#   COPY --from=helix /opt/helix /opt/helix
#
# Usage: infrastructure/build-bundle.sh PREFIX [pip install arguments...]
#   default pip arguments: "." (build Helix, with its Cython accelerators, from the
#   current directory).  PYTHON selects the interpreter to bundle (default python3).
#   HELIX_BUNDLE_SKIP_PIP=1: PREFIX's site-packages is already filled (the tests do this
#   offline by copying the installed distributions), so skip the pip step.
set -euo pipefail

if [ "$#" -lt 1 ]; then
  echo "usage: $0 PREFIX [pip install arguments...]" >&2
  exit 2
fi
prefix=$1
shift
if [ "$#" -eq 0 ]; then
  set -- .
fi
python=${PYTHON:-python3}

pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
stdlib=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
interp=$("$python" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
interp=$(readlink -f "$interp")

mkdir -p "$prefix/bin" "$prefix/libexec" "$prefix/lib"
prefix=$(cd "$prefix" && pwd -P)
site="$prefix/lib/python$pyver/site-packages"

# 1. The interpreter and the standard library, without what a server never imports.
cp "$interp" "$prefix/libexec/python3"
tar -C "$(dirname "$stdlib")" \
  --exclude="python$pyver/site-packages" --exclude="python$pyver/test" \
  --exclude="python$pyver/idlelib" --exclude="python$pyver/tkinter" \
  --exclude="python$pyver/turtledemo" --exclude="python$pyver/ensurepip" \
  --exclude="python$pyver/lib2to3" --exclude="python$pyver/unittest/test" \
  --exclude="python$pyver/config-$pyver-*" --exclude="python$pyver/lib-dynload/_tkinter*" \
  --exclude="python$pyver/lib-dynload/nis.*" --exclude="python$pyver/lib-dynload/_curses*" \
  --exclude="python$pyver/lib-dynload/readline.*" --exclude="python$pyver/lib-dynload/_dbm.*" \
  --exclude="python$pyver/lib-dynload/_gdbm.*" --exclude="python$pyver/lib-dynload/*test*" \
  --exclude="python$pyver/lib-dynload/xx*" --exclude="python$pyver/lib-dynload/_xx*" \
  --exclude="__pycache__" \
  -cf - "python$pyver" | tar -C "$prefix/lib" -xf -

# 2. Helix and its dependencies.
mkdir -p "$site"
if [ "${HELIX_BUNDLE_SKIP_PIP:-0}" != 1 ]; then
  "$python" -m pip install --no-cache-dir --disable-pip-version-check --no-compile \
    --target "$site" "$@"
fi
rm -rf "${site:?}/bin"   # console scripts of --target installs point at the build interpreter

# 3. Every shared library the interpreter (libpython, for a --enable-shared build like the
#    python:3.11 images) and the extension modules need, except
#    glibc's (libc, libm, libpthread, libdl, librt, libutil, the dynamic loader).
find "$prefix/libexec" "$prefix/lib" -type f \( -name '*.so' -o -name '*.so.*' -o -path '*/libexec/*' \) \
  -print0 | xargs -0 ldd 2>/dev/null | awk '/=> \// { print $3 }' | sort -u |
  while read -r lib; do
    case "$(basename "$lib")" in
      libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libutil.so.*|ld-linux*) ;;
      *) [ -e "$prefix/lib/$(basename "$lib")" ] || cp -L "$lib" "$prefix/lib/" ;;
    esac
  done

# 4. Debug symbols out (when binutils is there: the build stage has it with gcc).
if command -v strip >/dev/null 2>&1; then
  find "$prefix/libexec" "$prefix/lib" -type f \( -name '*.so' -o -name '*.so.*' -o -path '*/libexec/*' \) \
    -exec strip --strip-unneeded {} +
fi

# 5. Bytecode once, at build time (the run-time user cannot write the tree).
PYTHONHOME=$prefix LD_LIBRARY_PATH=$prefix/lib "$prefix/libexec/python3" -m compileall -q -j 0 \
  "$prefix/lib/python$pyver" >/dev/null

# 6. The launchers: locate the tree from the script's own (resolved) path.
write_launcher() {
  cat >"$prefix/bin/$1" <<EOF
#!/bin/sh
# Self-contained launcher: needs /bin/sh and glibc; finds its tree wherever it is copied.
self=\$0
case \$self in */*) ;; *) self=\$(command -v -- "\$self") ;; esac
self=\$(readlink -f -- "\$self" 2>/dev/null || printf '%s' "\$self")
root=\$(cd -- "\$(dirname -- "\$self")/.." && pwd -P)
PYTHONHOME=\$root
LD_LIBRARY_PATH=\$root/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
PYTHONNOUSERSITE=1
export PYTHONHOME LD_LIBRARY_PATH PYTHONNOUSERSITE
exec "\$root/libexec/python3" $2 "\$@"
EOF
  chmod 0755 "$prefix/bin/$1"
}
write_launcher helix "-P -m helix"   # -P: never import from the working directory
write_launcher python ""

"$prefix/bin/helix" --version
