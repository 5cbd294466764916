"""Schemathesis hooks for paykit: sign every request the way its caller would.

The merchant and biller APIs need an HMAC-SHA256 signature over the exact bytes sent
(README, "Signing merchant requests"), so the signature is added to the prepared request
just before it goes on the wire. Credentials come from the environment that
scripts/schemathesis.sh sets up.
"""
import base64
import hashlib
import hmac
import os
import secrets
import time

import requests.adapters

_send = requests.adapters.HTTPAdapter.send


def _party(path):
    if path.startswith("/v1/bills") or path.startswith("/v1/biller/"):
        return "biller", os.environ["BILLER_ID"], os.environ["BILLER_KEY_ID"], os.environ["BILLER_SECRET"]
    return "merchant", os.environ["MERCHANT_ID"], os.environ["MERCHANT_KEY_ID"], os.environ["MERCHANT_SECRET"]


def _sign(request):
    path = request.path_url
    if path.startswith("/wallet/v1/"):
        request.headers["Authorization"] = "Bearer " + os.environ["WALLET_TOKEN"]
        return
    if path.startswith("/ops/v1/"):
        request.headers["Authorization"] = "Bearer " + os.environ["OPERATOR_TOKEN"]
        return
    if not path.startswith("/v1/"):
        return
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
        request.body = body
    kind, party_id, key_id, secret = _party(path)
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16)
    canonical = b"\n".join(
        [request.method.upper().encode(), path.encode(), timestamp.encode(), nonce.encode(), body]
    ) + b"\n"
    signature = base64.b64encode(hmac.new(secret.encode(), canonical, hashlib.sha256).digest()).decode()
    request.headers["Authorization"] = (
        f'PAYKIT-HMAC-SHA256 {kind}_id="{party_id}",key_id="{key_id}",'
        f'timestamp="{timestamp}",nonce="{nonce}",signature="{signature}"'
    )


def _signed_send(self, request, *args, **kwargs):
    _sign(request)
    return _send(self, request, *args, **kwargs)


requests.adapters.HTTPAdapter.send = _signed_send
