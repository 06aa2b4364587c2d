"""The relocatable /opt/helix tree (infrastructure/build-bundle.sh), built from this machine's
Python without the network: the installed distributions are copied into its site-packages
(HELIX_BUNDLE_SKIP_PIP=1), then the tree must run Helix with an empty environment, from
another directory it was copied to (the sidecar's `COPY --from=helix /opt/helix /opt/helix`).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import subprocess
import sys

import pytest

from tests.deploy.conftest import repo_path
from tests.helpers import ROOT, http_get

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the bundle is built for Linux")


def copy_dist(name: str, site: str, seen: set[str]) -> None:
    from packaging.requirements import Requirement

    dist = md.distribution(name)
    key = dist.metadata["Name"].lower().replace("_", "-")
    if key in seen:
        return
    seen.add(key)
    for f in dist.files or ():
        rel = str(f)
        if rel.startswith("..") or "__pycache__" in rel:
            continue
        src = str(dist.locate_file(f))
        if os.path.isfile(src):
            dst = os.path.join(site, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)
    for spec in dist.requires or ():
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            copy_dist(req.name, site, seen)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("packaging")
    if shutil.which("ldd") is None:
        pytest.skip("ldd is not installed")
    prefix = tmp_path_factory.mktemp("opt") / "helix"
    pyver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    site = prefix / "lib" / f"python{pyver}" / "site-packages"
    site.mkdir(parents=True)
    from packaging.requirements import Requirement

    seen: set[str] = set()
    for spec in md.distribution("helix-gateway").requires or ():
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            copy_dist(req.name, str(site), seen)
    shutil.copytree(os.path.join(ROOT, "helix"), site / "helix",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    env = dict(os.environ, HELIX_BUNDLE_SKIP_PIP="1", PYTHON=sys.executable)
    out = subprocess.run([repo_path("infrastructure", "build-bundle.sh"), str(prefix)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return prefix


def test_bundle_runs_in_an_empty_environment_after_being_moved(bundle, tmp_path):
    moved = tmp_path / "elsewhere" / "helix"
    shutil.copytree(bundle, moved, symlinks=True)
    link = tmp_path / "bin-helix"
    os.symlink(moved / "bin" / "helix", link)  # e.g. /usr/local/bin/helix -> /opt/helix/...
    # From the repository root: -P keeps ./helix (the source tree) from shadowing the bundle.
    for launcher in (str(moved / "bin" / "helix"), str(link)):
        out = subprocess.run([launcher, "--version"], env={}, cwd=ROOT, capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "extensions: compiled" in out.stdout or os.environ.get("HELIX_NO_EXTENSIONS")
    out = subprocess.run([str(moved / "bin" / "python"), "-c",
                          "import sys, ssl, helix; print(sys.prefix); print(helix.__file__)"],
                         env={}, cwd="/", capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    prefix, helix_file = out.stdout.split()
    assert prefix == str(moved) and helix_file.startswith(str(moved))
    # Nothing outside the tree but glibc: every resolved library lives inside it.
    libs = subprocess.run(["ldd", str(moved / "libexec" / "python3")],
                          env={"LD_LIBRARY_PATH": str(moved / "lib")}, capture_output=True,
                          text=True, timeout=30).stdout
    for line in libs.splitlines():
        if "=>" in line and "/" in line.split("=>")[1]:
            path = line.split("=>")[1].split()[0]
            assert path.startswith(str(moved)) or os.path.basename(path).startswith(
                ("libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "libutil.so")
            ), line


def test_bundle_serves_health(bundle):
    from tests.helpers import free_port

    port = free_port()
    proc = subprocess.Popen([str(bundle / "bin" / "helix"), "--port", str(port), "--workers", "1"],
                            env={"HELIX_HOST": "127.0.0.1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + 20
        while True:
            try:
                status, body = http_get(port, "/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert status == 200 and b"ok" in body
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        proc.stdout.close()


def test_single_file_binary_runs_from_a_clean_directory(bundle, tmp_path):
    """infrastructure/build-binary.sh: one file that, copied anywhere (the sidecar's
    `COPY --from=... /usr/local/bin/helix`), says it is compiled and proxies a request with
    no Python, virtualenv or repository around it (its own bundled mock is the upstream)."""
    import json
    import signal
    import time

    from tests.helpers import free_port

    built = tmp_path / "dist" / "helix"
    out = subprocess.run([repo_path("infrastructure", "build-binary.sh"), str(built)],
                         env=dict(os.environ, HELIX_BUNDLE_DIR=str(bundle)), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    clean = tmp_path / "clean"
    (clean / "bin").mkdir(parents=True)
    binary = clean / "bin" / "helix"
    shutil.copyfile(built, binary)
    binary.chmod(0o755)
    env = {"PATH": f"{clean / 'bin'}:/usr/bin:/bin", "HOME": str(clean / "home")}
    out = subprocess.run(["helix", "--version"], env=env, cwd=clean, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    if not os.environ.get("HELIX_NO_EXTENSIONS"):
        assert "extensions: compiled" in out.stdout, out.stdout
    assert any((clean / "home" / ".cache" / "helix").iterdir())  # unpacked once, there

    mock = subprocess.Popen(["helix", "mock", "--port", "0"], env=env, cwd=clean,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True, text=True)
    helix = None
    try:
        line = mock.stdout.readline()
        mock_url = line.strip().rsplit(" ", 1)[1]
        (clean / "helix.yaml").write_text(
            f"providers:\n  - {{name: m, type: openai_compatible, base_url: '{mock_url}/v1', "
            f"api_key: sk-test, models: [gpt-4o-mini]}}\n")
        port = free_port()
        helix = subprocess.Popen(["helix", "--config", "helix.yaml", "--port", str(port),
                                  "--workers", "1"], env=env, cwd=clean,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        import http.client

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("POST", "/v1/chat/completions", json.dumps(
                    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
                    {"content-type": "application/json"})
                resp = conn.getresponse()
                body = json.loads(resp.read())
                conn.close()
                break
            except OSError:
                assert helix.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert resp.status == 200 and body["choices"][0]["message"]["content"]
        assert resp.getheader("x-helix-provider") == "m"
    finally:
        for proc in (helix, mock):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
        mock.stdout.close()
