"""infrastructure/deploy.sh for real against moto's server mode (a local AWS API).

The stack is created, updated idempotently (same inputs), then updated with a new image
and task count; every run exits 0 and prints the load balancer URL.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.deploy.conftest import repo_path, tool
from tests.helpers import free_port

pytest.importorskip("moto.server")


@pytest.fixture
def aws(tmp_path):
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    try:
        yield env
    finally:
        server.stop()


def aws_cli(env, *args: str) -> str:
    out = subprocess.run([tool("aws"), *args, "--output", "text"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def deploy(env, environment: str = "staging", **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([repo_path("infrastructure", "deploy.sh"), environment],
                          env={**env, **extra}, capture_output=True, text=True, timeout=120)


# moto skips resources it does not model (the listener-ordering WaitConditionHandle).
@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_deploy_creates_then_updates_idempotently(aws):
    tool("aws")
    arn = aws_cli(aws, "secretsmanager", "create-secret", "--name", "helix-provider-keys",
                  "--secret-string", '{"OPENAI_API_KEY": "sk-test"}', "--query", "ARN")
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/helix:one"
    inputs = {"IMAGE_URI": image, "PROVIDER_KEYS_SECRET_ARN": arn}

    first = deploy(aws, **inputs)
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip()
    assert url.startswith("http://helix-staging-") and url.endswith(".elb.amazonaws.com"), url
    assert "creating helix-staging" in first.stderr

    again = deploy(aws, **inputs)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == url
    assert "updating helix-staging" in again.stderr

    third = deploy(aws, **{**inputs, "IMAGE_URI": image.replace(":one", ":two")},
                   DESIRED_COUNT="3")
    assert third.returncode == 0, third.stderr
    assert third.stdout.strip() == url
    assert aws_cli(aws, "cloudformation", "describe-stacks", "--stack-name", "helix-staging",
                   "--query", "Stacks[0].StackStatus") == "UPDATE_COMPLETE"
    params = aws_cli(aws, "cloudformation", "describe-stacks", "--stack-name", "helix-staging",
                     "--query", "Stacks[0].Parameters[?ParameterKey=='ImageUri'].ParameterValue")
    assert params == image.replace(":one", ":two")
    count = aws_cli(aws, "ecs", "describe-services", "--cluster", "helix-staging", "--services",
                    "helix-staging", "--query", "services[0].desiredCount")
    assert count == "3"


def test_deploy_refuses_without_inputs(aws):
    out = deploy(aws)
    assert out.returncode == 1
    assert "OPENAI_API_KEY" in out.stderr and "PROVIDER_KEYS_SECRET_ARN" in out.stderr


def test_without_docker_it_says_what_to_set(aws, tmp_path):
    """Keys given, no image and no Docker engine: one clear line naming IMAGE_URI (the
    secret is already made: a second run with IMAGE_URI reuses it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\n"
                                   "exit 1\n")
    (bin_dir / "docker").chmod(0o755)
    env = {**aws, "PATH": f"{bin_dir}:{aws['PATH']}"}
    out = deploy(env, OPENAI_API_KEY="sk-live-openai-123")
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert "set IMAGE_URI" in last and "Docker" in last
    assert "sk-live-openai-123" not in out.stderr + out.stdout


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_keys_from_env_build_push_and_deploy(aws, tmp_path):
    """Nothing but AWS credentials and provider keys: the secret is created (then updated)
    from the *_API_KEY variables, the ECR repository is created, the image is built, logged
    in with ECR's token and pushed (docker here is a recorder: no engine on CI machines),
    and the stack injects exactly the keys given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "docker-calls"
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        f"echo \"$*\" >> {calls}\n"
        "if [ \"$1\" = login ]; then read -r token; [ -n \"$token\" ] || exit 1; fi\n"
        "exit 0\n")
    (bin_dir / "docker").chmod(0o755)
    env = {**aws, "PATH": f"{bin_dir}:{aws['PATH']}"}
    keys = {"OPENAI_API_KEY": "sk-openai-1", "GROQ_API_KEY": "gsk-groq-2",
            "NOTAPROVIDER_API_KEY": "zz-3"}
    # moto's backend is shared by every server in this process: names of this test's own
    names = {"STACK_NAME": "helix-fromenv", "SECRET_NAME": "helix-fromenv-keys",
             "ECR_REPOSITORY": "helix-fromenv"}
    env = {**env, **names}
    first = deploy(env, "fromenv", **keys, IMAGE_TAG="t1")
    assert first.returncode == 0, first.stderr
    assert "created secret helix-fromenv-keys" in first.stderr
    assert "NOTAPROVIDER_API_KEY is in the secret but Helix reads no such variable" in first.stderr
    for v in keys.values():
        assert v not in first.stderr and v not in first.stdout
    import json

    secret = json.loads(aws_cli(aws, "secretsmanager", "get-secret-value", "--secret-id",
                                "helix-fromenv-keys", "--query", "SecretString"))
    assert secret == keys
    repo = aws_cli(aws, "ecr", "describe-repositories", "--repository-names", "helix-fromenv",
                   "--query", "repositories[0].repositoryUri")
    log = calls.read_text().splitlines()
    assert log[0] == "info"
    assert log[1].startswith(f"build -t {repo}:t1 ")
    assert log[2].startswith("login --username AWS --password-stdin")
    assert log[3] == f"push {repo}:t1"

    def param(name):
        return aws_cli(aws, "cloudformation", "describe-stacks", "--stack-name", "helix-fromenv",
                       "--query", f"Stacks[0].Parameters[?ParameterKey=='{name}'].ParameterValue")

    assert param("ImageUri") == f"{repo}:t1"
    assert (param("UseOpenAIKey"), param("UseGroqKey"), param("UseAnthropicKey")) == (
        "true", "true", "false")
    # A second run with a changed key updates the same secret.
    again = deploy(env, "fromenv", **{**keys, "OPENAI_API_KEY": "sk-openai-rotated"},
                   IMAGE_TAG="t1")
    assert again.returncode == 0, again.stderr
    assert "updated secret helix-fromenv-keys" in again.stderr
    secret = json.loads(aws_cli(aws, "secretsmanager", "get-secret-value", "--secret-id",
                                "helix-fromenv-keys", "--query", "SecretString"))
    assert secret["OPENAI_API_KEY"] == "sk-openai-rotated"
