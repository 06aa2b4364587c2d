"""helix.providers.sigv4 against botocore's SigV4Auth (the oracle), same timestamp."""

from datetime import UTC, datetime
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from helix.providers import sigv4

NOW = datetime(2024, 11, 5, 13, 7, 9, tzinfo=UTC)
AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def botocore_headers(method, host, path, query, headers, body, region, service, creds):
    url = f"https://{host}{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        SigV4Auth(BotoCredentials(*creds), service, region).add_auth(req)
    return {k.lower(): v for k, v in req.headers.items()}


def model_path(model_id, action="converse"):
    return f"/model/{quote(model_id, safe='')}/{action}"


CASES = [
    ("POST", model_path("anthropic.claude-3-5-sonnet-20241022-v2:0"), "", b'{"messages":[]}', None),
    ("POST", model_path("anthropic.claude-3-5-sonnet-20241022-v2:0", "converse-stream"), "",
     b'{"a":1}', "FQoGZXIvYXdzEXAMPLETOKEN//+=="),
    ("POST", model_path("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama"),
     "", b"{}", None),
    ("GET", "/", "", b"", None),
    ("GET", "/models", "b=2&a=1&a=0&c=x%20y&d=~_-.&e=%2F%3A", b"", "tok"),
    ("POST", "/model/amazon.titan-embed-text-v2%3A0/invoke", "", b'{"inputText":"hi"}', None),
    ("POST", "/a/./b/../c//d", "", b"x", None),
]


@pytest.mark.parametrize(("method", "path", "query", "body", "token"), CASES)
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3"])
def test_matches_botocore(method, path, query, body, token, region):
    host = f"bedrock-runtime.{region}.amazonaws.com"
    headers = [
        (b"content-type", b"application/json"),
        (b"accept-encoding", b"identity"),
        (b"user-agent", b"helix-gateway"),
        (b"x-custom", b"  spaced    value "),
    ]
    creds = sigv4.Credentials(AKID, SECRET, token)
    ours = sigv4.sign(method, host, path, query, headers, body, region, "bedrock", creds, NOW)
    ours_d = {k.decode(): v.decode() for k, v in ours}
    theirs = botocore_headers(
        method, host, path, query, [(k.decode(), v.decode()) for k, v in headers], body,
        region, "bedrock", (AKID, SECRET, token),
    )
    theirs["host"] = host  # botocore signs host but leaves the header to the HTTP client
    assert ours_d == theirs
    assert ours_d["x-amz-date"] == "20241105T130709Z"
    assert ("x-amz-security-token" in ours_d) == bool(token)
    assert "user-agent" not in ours_d["authorization"].split("SignedHeaders=")[1]


def test_port_in_host_and_content_sha_header():
    host = "127.0.0.1:8443"
    creds = sigv4.Credentials(AKID, SECRET)
    ours = dict(
        sigv4.sign("POST", host, "/model/x/converse", "", [], b"{}", "us-west-2", "bedrock",
                   creds, NOW, content_sha256_header=True)
    )
    theirs = botocore_headers(
        "POST", host, "/model/x/converse", "",
        [("X-Amz-Content-SHA256", ours[b"x-amz-content-sha256"].decode())], b"{}",
        "us-west-2", "bedrock", (AKID, SECRET, None),
    )
    assert ours[b"authorization"].decode() == theirs["authorization"]


def test_existing_auth_headers_are_replaced_and_key_cache_is_equivalent():
    creds = sigv4.Credentials(AKID, SECRET, "t1")
    stale = [(b"authorization", b"old"), (b"x-amz-date", b"19990101T000000Z"), (b"Host", b"h")]
    cache = sigv4.SigningKeyCache()
    a = sigv4.sign("POST", "h2", "/p", "", stale, b"", "us-east-1", "bedrock", creds, NOW)
    b = sigv4.sign("POST", "h2", "/p", "", stale, b"", "us-east-1", "bedrock", creds, NOW,
                   key_cache=cache)
    c = sigv4.sign("POST", "h2", "/p", "", stale, b"", "us-east-1", "bedrock", creds, NOW,
                   key_cache=cache)
    assert a == b == c
    names = [k for k, _ in a]
    assert names.count(b"authorization") == 1 and b"Host" not in names
    assert dict(a)[b"host"] == b"h2"


def test_known_aws_test_vector():
    # AWS SigV4 test suite "get-vanilla": GET / on example.amazonaws.com, service "service".
    creds = sigv4.Credentials(AKID, SECRET)
    now = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
    out = dict(sigv4.sign("GET", "example.amazonaws.com", "/", "", [], b"", "us-east-1",
                          "service", creds, now))
    assert out[b"authorization"] == (
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        b"SignedHeaders=host;x-amz-date, "
        b"Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_parse_authorization_round_trip():
    creds = sigv4.Credentials(AKID, SECRET)
    out = dict(sigv4.sign("POST", "h", "/p", "", [(b"content-type", b"a/b")], b"x",
                          "us-east-1", "bedrock", creds, NOW))
    auth = sigv4.parse_authorization(out[b"authorization"].decode())
    assert auth is not None
    assert (auth.access_key, auth.region, auth.service) == (AKID, "us-east-1", "bedrock")
    assert auth.signed_headers == ["content-type", "host", "x-amz-date"]
    assert sigv4.parse_authorization("Bearer x") is None


def test_canonical_query_normalizes_encoding():
    # Unreserved characters are never encoded; everything else is, in upper-case hex.
    assert sigv4.canonical_query("d=%7e_-.&c=x y&a=%2f") == "a=%2F&c=x%20y&d=~_-."
    assert sigv4.canonical_uri("/model/a%3A0/converse") == "/model/a%253A0/converse"
    assert sigv4.canonical_uri("") == "/"
