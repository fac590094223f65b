"""`KubernetesSecretStore`: the bootstrap's `InitStore` as a Kubernetes Secret beside Vault.

The provider reaches Vault through the API server, so the API server is the one durable store that
every target has, with the same admin client certificate. The Secret holds the init record
encrypted with AES-256-GCM under a key derived from the admin client key: whoever may read Secrets
in the namespace (Argo CD's controller, for one) sees only ciphertext, and only the holder of the
program's admin identity can read the root token and keys.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from components.vault.bootstrap import BootstrapError, BootstrapResult, InitRecord

INIT_SECRET = "vault-bootstrap-init"
"""Name of the Secret, in Vault's namespace, that holds an init answer until Pulumi state does."""
_DATA_KEY = "record"
_NONCE_BYTES = 12


class KubernetesSecretStore:
    """One Secret, read and written through the Kubernetes API with the admin client certificate.

    `verify`/`cert` are requests' TLS arguments (file paths); `client_key_pem` is the admin key the
    encryption key is derived from; `statefulset` names Vault's StatefulSet for the wipe steps.
    """

    def __init__(
        self,
        api_url: str,
        namespace: str,
        statefulset: str,
        *,
        client_key_pem: str,
        verify: str | bool,
        cert: tuple[str, str] | None,
        timeout: float,
        name: str = INIT_SECRET,
    ) -> None:
        self._collection = f"{api_url.rstrip('/')}/api/v1/namespaces/{namespace}/secrets"
        self._url = f"{self._collection}/{name}"
        self._name = name
        self._context = f"{namespace}/{name}".encode()
        self._aead = AESGCM(
            HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=b"vault-bootstrap-init:" + self._context,
            ).derive(client_key_pem.encode())
        )
        self._session = requests.Session()
        # Per request: a session's own `verify` loses to REQUESTS_CA_BUNDLE from the environment.
        self._tls: dict[str, Any] = {"verify": verify, "cert": cert, "timeout": timeout}
        self.where = f"Secret {namespace}/{name}"
        self.wipe_steps = (
            f"note the replica count (`kubectl -n {namespace} get statefulset {statefulset}`), "
            f"`kubectl -n {namespace} scale statefulset {statefulset} --replicas=0`, delete the "
            f"Raft data of every replica (`kubectl -n {namespace} delete pvc "
            f"-l app.kubernetes.io/instance={statefulset}`: data-{statefulset}-0, "
            f"data-{statefulset}-1, ...), then scale it back to the noted count"
        )

    def _request(self, method: str, url: str, ok: tuple[int, ...], **kwargs: Any) -> Any:
        try:
            response = self._session.request(method, url, **self._tls, **kwargs)
        except requests.RequestException as exc:
            raise BootstrapError(f"{method} {url} failed: {exc}") from exc
        if response.status_code not in ok:
            raise BootstrapError(
                f"{method} {url} answered HTTP {response.status_code}: {response.text[:300]!r}"
            )
        return response

    def load(self) -> InitRecord | None:
        response = self._request("GET", self._url, (200, 404))
        if response.status_code == 404:
            return None
        try:
            sealed = base64.b64decode(response.json()["data"][_DATA_KEY])
            plain = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], self._context)
        except InvalidTag:
            raise BootstrapError(
                f"{self.where} was written with another admin client key and cannot be read; "
                "run with the admin key of the run that wrote it (earlier Pulumi state), or "
                "delete the Secret if that run's Vault is gone"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise BootstrapError(f"{self.where} is not an init record: {exc!r}") from None
        record = json.loads(plain)
        answer = record.get("answer")
        return InitRecord(
            started=record["started"],
            answer=None if answer is None else BootstrapResult.from_outputs(answer),
        )

    def save(self, record: InitRecord) -> None:
        plain = {
            "started": record.started,
            "answer": None if record.answer is None else record.answer.to_outputs(),
        }
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, json.dumps(plain).encode(), self._context)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self._name,
                "labels": {"app.kubernetes.io/managed-by": "vault-bootstrap"},
            },
            "type": "Opaque",
            "data": {_DATA_KEY: base64.b64encode(sealed).decode()},
        }
        # An unconditional replace; a 404 means there is nothing to replace yet.
        if self._request("PUT", self._url, (200, 201, 404), json=body).status_code == 404:
            self._request("POST", self._collection, (200, 201), json=body)

    def delete(self) -> None:
        self._request("DELETE", self._url, (200, 202, 404))
