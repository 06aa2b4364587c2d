"""Static checks of the deployment artefacts with the real validators (all offline).

hadolint (Dockerfile), the Compose specification schema, kubernetes-validate (Kubernetes API
schemas), cfn-lint (CloudFormation), the GitHub workflow schema, shellcheck; plus the facts
the docs promise (non-root, HEALTHCHECK, probes, limits, drain budget) and that every Helix
config shipped inside an artefact loads with this version's config loader.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess

import pytest
import yaml

from helix import config as cfgmod
from tests.deploy.conftest import repo_path, tool

K8S = repo_path("deploy", "kubernetes")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def load_helix_config(text: str, env: dict[str, str], tmp_path) -> cfgmod.Config:
    path = tmp_path / "helix.yaml"
    path.write_text(text)
    cfg = cfgmod.load_file(str(path), env)
    cfgmod.check_supported(cfg)
    return cfg


def duration(value) -> float:
    return float(getattr(value, "seconds", value))


# --- Dockerfile ---------------------------------------------------------------------------


def test_hadolint_dockerfile():
    out = run([tool("hadolint"), repo_path("Dockerfile")])
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_structure():
    dfp = pytest.importorskip("dockerfile_parse")
    parser = dfp.DockerfileParser(path=repo_path("Dockerfile"))
    instrs = parser.structure
    froms = [i["value"] for i in instrs if i["instruction"] == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build"), froms
    final = instrs[max(i for i, x in enumerate(instrs) if x["instruction"] == "FROM"):]
    kinds = {x["instruction"]: x["value"] for x in final}
    assert kinds["USER"] == "10001:10001"
    assert "/health" in kinds["HEALTHCHECK"]
    assert "/opt/helix/bin/helix" in kinds["ENTRYPOINT"]
    assert "/app/helix.yaml" in kinds["ENTRYPOINT"]
    assert any(x["instruction"] == "COPY" and "--from=build /opt/helix" in x["value"]
               for x in final)
    # The build stage compiles the accelerators and refuses an image without them.
    build = "\n".join(x["value"] for x in instrs[: instrs.index(final[0])])
    assert "gcc" in build and 'grep -q "extensions: compiled"' in build
    # Everything the Dockerfile COPYs from the context passes .dockerignore.
    with open(repo_path(".dockerignore")) as fh:
        allowed = {ln[1:].rstrip("/") for ln in fh.read().split("\n") if ln.startswith("!")}
    for x in instrs:
        if x["instruction"] == "COPY" and "--from" not in x["value"]:
            for src in x["value"].split()[:-1]:
                assert src in allowed, f"{src} is COPYed but excluded by .dockerignore"


def test_entrypoint_uses_mounted_config_only_when_present(tmp_path):
    """Run the ENTRYPOINT's shell logic with the paths moved into tmp_path."""
    dfp = pytest.importorskip("dockerfile_parse")
    parser = dfp.DockerfileParser(path=repo_path("Dockerfile"))
    (entry,) = [i["value"] for i in parser.structure if i["instruction"] == "ENTRYPOINT"]
    import json

    argv = json.loads(entry)
    assert argv[:2] == ["/bin/sh", "-c"]
    fake = tmp_path / "helix"
    fake.write_text('#!/bin/sh\necho "config=${HELIX_CONFIG:-none} args=$*"\n')
    fake.chmod(0o755)
    script = argv[2].replace("/opt/helix/bin/helix", str(fake)).replace(
        "/app/helix.yaml", str(tmp_path / "helix.yaml"))
    env = {"PATH": "/usr/bin:/bin"}
    out = run(["/bin/sh", "-c", script, "helix", "check"], env=env)
    assert out.stdout.strip() == "config=none args=check"
    (tmp_path / "helix.yaml").write_text("{}\n")
    out = run(["/bin/sh", "-c", script, "helix", "--workers", "2"], env=env)
    assert out.stdout.strip() == f"config={tmp_path / 'helix.yaml'} args=--workers 2"
    out = run(["/bin/sh", "-c", script, "helix"], env={**env, "HELIX_CONFIG": "/x.yaml"})
    assert out.stdout.strip() == "config=/x.yaml args="


# --- Compose, Prometheus, Grafana --------------------------------------------------------


def test_compose_against_compose_spec():
    out = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
               repo_path("deploy", "docker-compose.yml")])
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_services(tmp_path):
    with open(repo_path("deploy", "docker-compose.yml")) as fh:
        doc = yaml.safe_load(fh)
    svcs = doc["services"]
    for name in ("helix", "redis"):
        assert "profiles" not in svcs[name]
        assert svcs[name]["restart"] == "unless-stopped"
        assert "test" in svcs[name]["healthcheck"]
    assert svcs["helix"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert any(v["target"] == "/app/config" for v in svcs["helix"]["volumes"])
    for name in ("mock", "helix-loadtest", "loadgen", "prometheus", "grafana"):
        assert "loadtest" in svcs[name]["profiles"]
    loadgen = svcs["loadgen"]["command"]
    assert loadgen[:1] == ["try"] and "--run-forever" in loadgen
    # Every relative bind source exists (except the dashboard another change provides).
    for svc in svcs.values():
        for vol in svc.get("volumes", []):
            src = vol["source"] if isinstance(vol, dict) else vol.split(":")[0]
            if src.startswith("."):
                path = os.path.normpath(repo_path("deploy", src))
                if not path.endswith("helix-dashboard.json"):
                    assert os.path.exists(path), src
    # The inline load-test config is a valid Helix config for this version.
    text = doc["configs"]["helix_loadtest"]["content"]
    assert "$" not in text  # Compose would interpolate it
    cfg = load_helix_config(text, {}, tmp_path)
    assert cfg.observability.metrics.enabled and cfg.server.workers == 2


def test_prometheus_and_grafana_provisioning():
    with open(repo_path("deploy", "prometheus.yml")) as fh:
        prom = yaml.safe_load(fh)
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "helix"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"helix:8080", "helix-loadtest:8080"}
    prov_dir = repo_path("deploy", "grafana", "provisioning")
    with open(os.path.join(prov_dir, "datasources", "prometheus.yml")) as fh:
        ds = yaml.safe_load(fh)["datasources"][0]
    assert ds["uid"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    with open(os.path.join(prov_dir, "dashboards", "helix.yml")) as fh:
        prov = yaml.safe_load(fh)["providers"][0]
    with open(repo_path("deploy", "docker-compose.yml")) as fh:
        grafana = yaml.safe_load(fh)["services"]["grafana"]
    assert any(v.endswith(prov["options"]["path"] + "/helix-dashboard.json:ro")
               for v in grafana["volumes"])


# --- Kubernetes ---------------------------------------------------------------------------


def k8s_docs() -> dict[str, dict]:
    docs = {}
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        with open(path) as fh:
            for doc in yaml.safe_load_all(fh):
                docs[doc["kind"]] = doc
    return docs


def test_kubernetes_validate():
    files = sorted(glob.glob(os.path.join(K8S, "*.yaml")))
    out = run([tool("kubernetes-validate"), "--strict", *files])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("passed") == len(files), out.stdout + out.stderr


def test_kubernetes_deployment_contract(tmp_path):
    docs = k8s_docs()
    dep = docs["Deployment"]
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    (c,) = pod["spec"]["containers"]
    assert c["resources"] == {"requests": {"memory": "64Mi", "cpu": "50m"},
                              "limits": {"memory": "128Mi", "cpu": "200m"}}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HELIX_WORKERS"] == "2"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # The ConfigMap's config loads, and its drain fits the grace period:
    # preStop sleep + graceful_timeout + margin <= terminationGracePeriodSeconds.
    text = docs["ConfigMap"]["data"]["helix.yaml"]
    keys = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test"}
    assert set(docs["Secret"]["stringData"]) == set(keys)
    cfg = load_helix_config(text, keys, tmp_path)
    assert cfg.observability.metrics.enabled
    assert env["HELIX_CONFIG"].startswith(c["volumeMounts"][0]["mountPath"] + "/")
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert pre_stop + duration(cfg.server.graceful_timeout) + 5 <= grace
    assert docs["PodDisruptionBudget"]["spec"]["selector"] == dep["spec"]["selector"]
    assert docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    assert docs["Service"]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


# --- AWS: CloudFormation, workflow, shell ------------------------------------------------


def test_cfn_lint():
    out = run([tool("cfn-lint"), repo_path("infrastructure", "helix-ecs.yaml")])
    assert out.returncode == 0, out.stdout + out.stderr


def test_ecs_stop_timeout_covers_the_drain():
    pytest.importorskip("cfnlint")
    from cfnlint.decode import decode  # cfn-lint's own YAML loader (understands !Ref ...)

    tpl, errs = decode(repo_path("infrastructure", "helix-ecs.yaml"))
    assert not errs
    (c,) = tpl["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    # Helix's default server.graceful_timeout (30 s) + 10 s margin.
    assert c["StopTimeout"] >= duration(cfgmod.ServerConfig().graceful_timeout) + 10
    policy = tpl["Resources"]["ExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert policy["Statement"][0]["Action"] == "secretsmanager:GetSecretValue"
    with open(repo_path("infrastructure", "helix-ecs.yaml")) as fh:
        assert "FullAccess" not in fh.read()


def test_workflow_against_github_schema():
    path = repo_path(".github", "workflows", "deploy-to-ecs.yml")
    out = run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", path])
    assert out.returncode == 0, out.stdout + out.stderr
    with open(path) as fh:
        wf = yaml.safe_load(fh)
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert "environment" in on["workflow_dispatch"]["inputs"]
    assert wf["permissions"]["id-token"] == "write"
    with open(path) as fh:
        text = fh.read()
    assert "aws-actions/configure-aws-credentials" in text and "role-to-assume" in text
    assert "./infrastructure/deploy.sh" in text
    # No expression is pasted into a shell line (script injection): only env indirection.
    for step in wf["jobs"]["deploy"]["steps"]:
        assert "${{" not in step.get("run", ""), step["name"]


def test_shellcheck():
    scripts = [repo_path("infrastructure", "deploy.sh"), repo_path("infrastructure",
                                                                   "build-bundle.sh")]
    out = run([tool("shellcheck"), *scripts])
    assert out.returncode == 0, out.stdout + out.stderr
    for s in scripts:
        assert os.access(s, os.X_OK), f"{s} is not executable"


def test_docs_commands_match_artefacts():
    with open(repo_path("docs", "DEPLOY.md")) as fh:
        text = fh.read()
    for needle in ("docker build -t helix .", "docker compose -f deploy/docker-compose.yml",
                   "kubectl apply -f deploy/kubernetes/", "./infrastructure/deploy.sh",
                   "helix try", "COPY --from=helix /opt/helix /opt/helix"):
        assert needle in text, needle
    assert not re.search(r"\*FullAccess\b.*attach", text)
