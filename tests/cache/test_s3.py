"""S3 addressing and signing (pure: no network).  The signature is checked against botocore's
own S3 SigV4 signer for the same request and clock."""

from datetime import UTC, datetime

import pytest

from helix.cache.s3 import S3Backend, S3Location
from helix.providers.sigv4 import Credentials

CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_path_and_virtual_addressing():
    p = S3Location("http://127.0.0.1:9000", "bkt", "path", "pre/")
    assert (p.origin.host, p.origin.port, p.host) == ("127.0.0.1", 9000, "127.0.0.1:9000")
    assert p.path("_/abc") == "/bkt/pre/_/abc" and p.path() == "/bkt"
    v = S3Location("https://s3.eu-west-1.amazonaws.com", "bkt", "virtual", "pre/")
    assert v.host == "bkt.s3.eu-west-1.amazonaws.com" and v.origin.port == 443
    assert v.path("_/abc") == "/pre/_/abc" and v.path() == "/"


def _botocore_signature(method, url, body):
    botocore = pytest.importorskip("botocore")
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    assert botocore
    auth = S3SigV4Auth(BotoCredentials(CREDS.access_key, CREDS.secret_key), "s3", "us-east-1")
    req = AWSRequest(method=method, url=url, data=body)
    req.context["timestamp"] = NOW.strftime("%Y%m%dT%H%M%SZ")
    req.context["payload_signing_enabled"] = True
    auth._modify_request_before_signing(req)
    canonical = auth.canonical_request(req)
    return auth.signature(auth.string_to_sign(req, canonical), req)


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_signature_matches_botocore(style):
    method = "GET"
    backend = S3Backend(
        None, endpoint="https://s3.us-east-1.amazonaws.com", bucket="my-bucket",
        region="us-east-1", style=style, prefix="helix-cache/", credentials=CREDS, timeout=1.0,
    )
    path = backend.loc.path("_/" + "a" * 64)
    body = b""
    headers = dict(backend.signed(method, path, "", body, NOW))
    ours = headers[b"authorization"].decode().rsplit("Signature=", 1)[1]
    url = f"https://{backend.loc.host}{path}"
    assert ours == _botocore_signature(method, url, body)
