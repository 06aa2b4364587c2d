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


def deploy(env, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([repo_path("infrastructure", "deploy.sh"), "staging"],
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
    assert "IMAGE_URI" in out.stderr
