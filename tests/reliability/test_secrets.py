"""Secrets (issue 14.6): scrubbed from error bodies, log lines, config errors and check output."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from helix import secrets
from helix.config import ConfigError, load_file, mask_secrets
from helix.errors import ErrorKind, HelixError
from tests.helpers import ROOT

KEY = "sk-CANARY-provider-0123456789"


@pytest.fixture(autouse=True)
def fresh():
    secrets.forget_all()
    yield
    secrets.forget_all()


def write(tmp_path, text: str) -> str:
    p = tmp_path / "helix.yaml"
    p.write_text(text)
    return str(p)


def test_every_configured_secret_is_known(tmp_path):
    creds = {"type": "service_account", "client_email": "a@b.iam.gserviceaccount.com",
             "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
                            "BKcwggSjAgEAAoIBAQC7CANARYvertexkeymaterial\n"
                            "-----END PRIVATE KEY-----\n",
             "private_key_id": "CANARY-pkid-123456", "token_uri": "https://oauth2.example/token"}
    cfg = load_file(write(tmp_path, f"""
providers:
  - {{name: o, type: openai, api_key: {KEY}, headers: {{X-Api-Key: CANARY-hdr-12345678}}}}
  - {{name: b, type: bedrock, region: us-east-1, aws_access_key_id: AKIACANARY00000001,
     aws_secret_access_key: CANARY-aws-secret-123456, aws_session_token: CANARY-aws-session-1234}}
  - {{name: v, type: vertex, project: p, location: us-central1,
     credentials_json: '{json.dumps(creds)}'}}
auth: {{keys: [{{key: CANARY-gateway-key-1}}]}}
rate_limits: {{backend: redis, redis_url: "redis://user:CANARY-redis-pw-1@127.0.0.1:1/0"}}
caching: {{backend: memory, admin_api_key: CANARY-purge-key-1}}
observability:
  admin: {{api_key: CANARY-admin-key-1}}
  helicone: {{api_key: CANARY-helicone-1}}
"""), {})
    found = set(secrets.secrets_of(cfg))
    for s in (KEY, "CANARY-hdr-12345678", "AKIACANARY00000001", "CANARY-aws-secret-123456",
              "CANARY-aws-session-1234", "CANARY-pkid-123456", "CANARY-gateway-key-1",
              "CANARY-redis-pw-1", "CANARY-purge-key-1", "CANARY-admin-key-1",
              "CANARY-helicone-1", creds["private_key"]):
        assert s in found, s
    # Loading remembered them: an error body echoing any of them is scrubbed.
    text = f"bad key {KEY} / {json.dumps(creds['private_key'])} / CANARY-redis-pw-1"
    out = secrets.scrub(text)
    assert "CANARY" not in out and "****" in out
    assert b"CANARY" not in secrets.scrub(text.encode())


def test_error_bodies_are_scrubbed():
    secrets.remember([KEY])
    err = HelixError.upstream(401, f"Incorrect API key provided: Bearer {KEY}")
    assert KEY.encode() not in err.to_json()
    assert KEY not in err.message and KEY not in str(err)
    native = HelixError(ErrorKind.UPSTREAM_STATUS, "x",
                        native=("anthropic", b'{"error":"' + KEY.encode() + b'"}'))
    assert KEY.encode() not in native.native[1]


def test_log_lines_are_scrubbed(caplog):
    secrets.remember([KEY])
    handler = logging.StreamHandler()
    secrets.install(handler)
    records = []
    handler.emit = lambda r: records.append(handler.format(r))
    log = logging.getLogger("helix.test.secrets")
    log.addHandler(handler)
    try:
        log.warning("upstream said %s", f"key {KEY} invalid")
        try:
            raise ValueError(f"boom {KEY}")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    assert len(records) == 2
    assert all(KEY not in r for r in records), records
    assert "boom ****" in records[1]


def test_short_values_are_not_secrets():
    secrets.remember(["k", "abc"])
    assert secrets.scrub("k abc") == "k abc"


@pytest.mark.parametrize(
    "snippet",
    [
        "providers:\n  - {name: o, type: openai, api_key: 98765432109876543}\n",
        "providers:\n  - {name: o, type: openai, api_key: [CANARY-list-12345]}\n",
        "providers:\n  - {name: o, type: openai, api_key: k,\n"
        "     headers: {Authorization: 1234567890123}}\n",
        "providers:\n  - name: o\n    type: openai\n    api_key: \"CANARY-unterminated-12345\n",
        "auth:\n  keys: [{key: 12345678901234567}]\n",
    ],
)
def test_config_errors_mask_secret_values(tmp_path, snippet):
    with pytest.raises(ConfigError) as info:
        load_file(write(tmp_path, snippet), {})
    msg = str(info.value)
    for leaked in ("98765432109876543", "CANARY-list-12345", "1234567890123",
                   "CANARY-unterminated", "12345678901234567"):
        assert leaked not in msg, msg


def test_mask_secrets_hides_url_credentials_everywhere():
    tree = {"providers": [{"base_url": "https://user:CANARY-pw@proxy.example/v1",
                           "headers": {"X-Api-Key": "CANARY-hdr-12345678", "Referer": "x"}}],
            "observability": {"tracing": {"endpoint": "http://CANARY-tok@otel:4318"}}}
    out = json.dumps(mask_secrets(tree))
    assert "CANARY" not in out and "Referer" in out


def test_helix_check_masks_base_url_userinfo(tmp_path):
    path = write(tmp_path, f"""
providers:
  - {{name: o, type: openai_compatible, base_url: "https://bob:CANARY-basic-pw@llm.example/v1",
     api_key: {KEY}}}
""")
    out = subprocess.run([sys.executable, "-m", "helix", "check", "--config", path],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    text = out.stdout + out.stderr
    assert "CANARY" not in text, text
