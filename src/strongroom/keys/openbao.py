"""OpenBao (or HashiCorp Vault) transit provider: data keys generated and unwrapped by the transit engine.

``generate_data_key`` calls ``POST /v1/<mount>/datakey/plaintext/<key>`` (a fresh 256-bit key and its
transit ciphertext), ``wrap`` calls ``encrypt`` and ``unwrap`` calls ``decrypt``; the KEK never leaves
OpenBao. The blob is the transit ciphertext (``vault:v<N>:...``) as ASCII; the key id is ``<mount>/<key>``.

Binding: every call sends transit's ``associated_data`` parameter (base64 of
``"strongroom/openbao-transit/v1" || 0x00 || key_id || 0x00 || binding.aad()``), which OpenBao authenticates
as AES-GCM additional data (transit API: encrypt, decrypt and datakey take ``associated_data`` for AEAD
keys), so a reference whose binding was edited fails ``decrypt`` inside OpenBao. The transit key must be a
non-derived ``aes256-gcm96`` key; opening refuses any other type, and a server that reports it ignored
``associated_data`` (one too old to bind) is refused rather than trusted.

Fail closed: an unreachable, sealed or erroring server raises ``ProviderUnavailableError``, a refused token
``ProviderAuthError``, a missing key ``KekNotFoundError``; nothing is ever guessed or retried silently.
Plain ``http://`` is allowed only to a loopback address; anything else must be ``https://``. Opening the
provider checks the token (``auth/token/lookup-self``) and, where the token may read it, that the transit
key exists and is not exportable. The token is sent only in the ``X-Vault-Token`` header and never logged.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from strongroom.keys.errors import (
    KekNotFoundError,
    KekPolicyError,
    KeyProviderError,
    KeySettingsError,
    ProviderAuthError,
    ProviderUnavailableError,
    UnwrapError,
)
from strongroom.keys.provider import DATA_KEY_BYTES, KeyBinding, WrappedKey, associated_data, check_reference
from strongroom.memory import wipe

MAX_BLOB_BYTES = 4096
BINDING_DOMAIN = b"strongroom/openbao-transit/v1\x00"
KEY_TYPE = "aes256-gcm96"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_MOUNT = re.compile(r"[A-Za-z0-9._-]{1,128}(/[A-Za-z0-9._-]{1,128}){0,7}")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any loopback IP literal (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(address: str) -> str:
    """Validate an OpenBao address: http only on loopback, https elsewhere; returns it without a trailing /."""
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KeySettingsError(f"OpenBao address {address!r} must be an http(s) URL with a host")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise KeySettingsError(f"OpenBao address {address!r}: plain http is allowed only to a loopback address")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise KeySettingsError(f"OpenBao address {address!r} must not carry a path, query or fragment")
    return address.rstrip("/")


class OpenBaoTransit:
    """Key provider backed by a transit key in OpenBao; one pooled HTTP client, safe across threads."""

    def __init__(
        self,
        address: str,
        token: str,
        key_name: str,
        *,
        mount: str = "transit",
        namespace: str | None = None,
        ca_file: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._address = check_address(address)
        if not token:
            raise KeySettingsError("OpenBao token is empty (set STRONGROOM_OPENBAO_TOKEN or openbao.token_file)")
        if not _NAME.fullmatch(key_name) or key_name in (".", ".."):
            raise KeySettingsError(f"OpenBao transit key name {key_name!r} is invalid")
        if not _MOUNT.fullmatch(mount.strip("/")) or ".." in mount.split("/"):
            raise KeySettingsError(f"OpenBao mount {mount!r} is invalid")
        self._key_name = key_name
        self._mount = mount.strip("/")
        headers = {"X-Vault-Token": token, "X-Vault-Request": "true"}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        self._client: httpx.Client | None = httpx.Client(
            base_url=self._address,
            headers=headers,
            timeout=timeout_s,
            verify=ca_file if ca_file else True,
            follow_redirects=False,
            trust_env=False,
        )
        try:
            self._check_token_and_key()
        except BaseException:
            self.close()
            raise

    @property
    def provider(self) -> str:
        return "openbao"

    @property
    def key_id(self) -> str:
        return f"{self._mount}/{self._key_name}"

    # -- HTTP ------------------------------------------------------------------------------------

    def _path(self, action: str) -> str:
        return f"/v1/{self._mount}/{action}/{quote(self._key_name, safe='')}"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        if self._client is None:
            raise KeyProviderError(f"OpenBao provider {self.key_id} is closed")
        try:
            response = self._client.request(method, path, json=body)
        except httpx.TimeoutException:
            raise ProviderUnavailableError(f"OpenBao at {self._address} did not answer in time ({path})") from None
        except httpx.TransportError as exc:
            raise ProviderUnavailableError(
                f"OpenBao at {self._address} is unreachable ({type(exc).__name__}): nothing was done"
            ) from None
        if response.status_code == 403:
            raise ProviderAuthError(f"OpenBao at {self._address} refused the token for {path} (permission denied)")
        if response.status_code in (429, 472, 473) or response.status_code >= 500:
            raise ProviderUnavailableError(
                f"OpenBao at {self._address} answered {response.status_code} for {path}: {_errors(response)}"
            )
        return response

    def _data(self, response: httpx.Response, path: str) -> dict[str, Any]:
        try:
            data = response.json()["data"]
        except (ValueError, KeyError, TypeError):
            raise ProviderUnavailableError(f"OpenBao at {self._address}: malformed answer for {path}") from None
        if not isinstance(data, dict):
            raise ProviderUnavailableError(f"OpenBao at {self._address}: malformed answer for {path}")
        return data

    def _check_token_and_key(self) -> None:
        response = self._request("GET", "/v1/auth/token/lookup-self")
        if response.status_code != 200:
            raise ProviderAuthError(f"OpenBao at {self._address} does not accept the token ({response.status_code})")
        path = f"/v1/{self._mount}/keys/{quote(self._key_name, safe='')}"
        try:
            response = self._request("GET", path)
        except ProviderAuthError:
            return  # a least-privilege token may not read key metadata; datakey/decrypt will still be checked
        if response.status_code == 404:
            raise KekNotFoundError(f"OpenBao at {self._address}: no transit key {self.key_id}")
        if response.status_code != 200:
            raise ProviderUnavailableError(
                f"OpenBao at {self._address} answered {response.status_code} for {path}: {_errors(response)}"
            )
        data = self._data(response, path)
        if data.get("exportable") or data.get("allow_plaintext_backup"):
            raise KekPolicyError(f"OpenBao transit key {self.key_id} is exportable: refused")
        if not data.get("supports_encryption", True) or not data.get("supports_decryption", True):
            raise KekPolicyError(f"OpenBao transit key {self.key_id} cannot encrypt and decrypt")
        if data.get("type") != KEY_TYPE:
            raise KekPolicyError(
                f"OpenBao transit key {self.key_id} is of type {data.get('type')!r}: it cannot bind a data key to "
                f"its model (associated_data); use a non-derived {KEY_TYPE} key"
            )
        if data.get("derived") or data.get("convergent_encryption"):
            raise KekPolicyError(
                f"OpenBao transit key {self.key_id} is derived: this provider binds keys with associated_data on "
                f"a non-derived {KEY_TYPE} key and sends no derivation context; use such a key"
            )

    def _not_found_or(self, response: httpx.Response, what: str) -> KeyProviderError:
        message = _errors(response)
        if response.status_code == 404 or "not found" in message:
            return KekNotFoundError(f"OpenBao at {self._address}: no transit key {self.key_id} ({message})")
        return KeyProviderError(f"OpenBao transit {what} under {self.key_id} failed: {message}")

    # -- the provider protocol ----------------------------------------------------------------

    def _binding_params(self, binding: KeyBinding) -> dict[str, str]:
        """Transit's ``associated_data`` (base64) for one binding: authenticated by AES-GCM in OpenBao."""
        aad = associated_data(BINDING_DOMAIN, self.key_id, binding)
        return {"associated_data": base64.b64encode(aad).decode("ascii")}

    def _check_bound(self, response: httpx.Response, path: str) -> None:
        """Fail closed if the server says it ignored ``associated_data`` (then nothing was bound)."""
        try:
            warnings = response.json().get("warnings")
        except (ValueError, AttributeError):
            warnings = None
        if isinstance(warnings, list) and any("associated_data" in str(w) for w in warnings):
            raise KekPolicyError(
                f"OpenBao at {self._address} ignored associated_data for {path}: this server cannot bind a data key "
                "to its model; refused"
            )

    def generate_data_key(self, binding: KeyBinding) -> tuple[bytearray, WrappedKey]:
        path = self._path("datakey/plaintext")
        response = self._request("POST", path, {"bits": DATA_KEY_BYTES * 8, **self._binding_params(binding)})
        if response.status_code != 200:
            raise self._not_found_or(response, "datakey")
        self._check_bound(response, path)
        data = self._data(response, path)
        dek = _decode_key(data.get("plaintext"), self._address)
        ciphertext = data.get("ciphertext")
        if not isinstance(ciphertext, str) or not ciphertext.startswith("vault:v"):
            wipe(dek)
            raise ProviderUnavailableError(f"OpenBao at {self._address}: datakey answer lacks a ciphertext")
        return dek, WrappedKey(self.provider, self.key_id, ciphertext.encode("ascii"), binding)

    def wrap(self, data_key: bytes | bytearray, binding: KeyBinding) -> WrappedKey:
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyProviderError(f"data keys are {DATA_KEY_BYTES} bytes, got {len(data_key)}")
        path = self._path("encrypt")
        body = {"plaintext": base64.b64encode(bytes(data_key)).decode("ascii"), **self._binding_params(binding)}
        response = self._request("POST", path, body)
        if response.status_code != 200:
            raise self._not_found_or(response, "encrypt")
        self._check_bound(response, path)
        ciphertext = self._data(response, path).get("ciphertext")
        if not isinstance(ciphertext, str) or not ciphertext.startswith("vault:v"):
            raise ProviderUnavailableError(f"OpenBao at {self._address}: encrypt answer lacks a ciphertext")
        return WrappedKey(self.provider, self.key_id, ciphertext.encode("ascii"), binding)

    def unwrap(self, wrapped: WrappedKey) -> bytearray:
        check_reference(self, wrapped)
        try:
            ciphertext = wrapped.blob.decode("ascii")
        except UnicodeDecodeError:
            raise UnwrapError(f"OpenBao blob under {self.key_id} is not an ASCII transit ciphertext") from None
        if not ciphertext.startswith("vault:v") or len(wrapped.blob) > MAX_BLOB_BYTES:
            raise UnwrapError(f"OpenBao blob under {self.key_id} is not a transit ciphertext")
        path = self._path("decrypt")
        response = self._request("POST", path, {"ciphertext": ciphertext, **self._binding_params(wrapped.binding)})
        if response.status_code == 400 and "not found" not in _errors(response):
            raise UnwrapError(
                f"OpenBao transit key {self.key_id} refused the wrapped data key (tampered, or bound to another "
                f"seal id or model id): {_errors(response)}"
            )
        if response.status_code != 200:
            raise self._not_found_or(response, "decrypt")
        self._check_bound(response, path)
        dek = _decode_key(self._data(response, path).get("plaintext"), self._address)
        return dek

    # -- key versions (incident rotation) ----------------------------------------------------------

    def versions(self) -> tuple[int, int]:
        """The transit key's ``(latest_version, min_decryption_version)``."""
        path = f"/v1/{self._mount}/keys/{quote(self._key_name, safe='')}"
        response = self._request("GET", path)
        if response.status_code != 200:
            raise self._not_found_or(response, "read key")
        data = self._data(response, path)
        latest, minimum = data.get("latest_version"), data.get("min_decryption_version")
        if not isinstance(latest, int) or not isinstance(minimum, int):
            raise ProviderUnavailableError(f"OpenBao at {self._address}: key read lacks its versions")
        return latest, minimum

    def rotate(self) -> int:
        """A new version of the transit key; new wraps use it. Returns the new latest version."""
        path = self._path("keys") + "/rotate"
        response = self._request("POST", path, {})
        if response.status_code not in (200, 204):
            raise self._not_found_or(response, "rotate")
        return self.versions()[0]

    def set_min_decryption_version(self, version: int) -> None:
        """Refuse to decrypt anything wrapped under a version below ``version`` (a retired key stays retired
        unless someone with the transit key's config policy lowers it again, which the ledger does not see)."""
        path = self._path("keys") + "/config"
        response = self._request("POST", path, {"min_decryption_version": version})
        if response.status_code not in (200, 204):
            raise self._not_found_or(response, "config")
        if self.versions()[1] != version:
            raise ProviderUnavailableError(f"OpenBao at {self._address}: min_decryption_version did not take")

    def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> OpenBaoTransit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _errors(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors)[:300]
    except (ValueError, AttributeError):
        pass
    return f"HTTP {response.status_code}"


def _decode_key(value: Any, address: str) -> bytearray:
    if not isinstance(value, str):
        raise ProviderUnavailableError(f"OpenBao at {address}: answer lacks a plaintext key")
    try:
        dek = bytearray(base64.b64decode(value, validate=True))
    except binascii.Error:
        raise ProviderUnavailableError(f"OpenBao at {address}: plaintext key is not base64") from None
    if len(dek) != DATA_KEY_BYTES:
        wipe(dek)
        raise UnwrapError(f"OpenBao at {address} returned a {len(dek)}-byte key, expected {DATA_KEY_BYTES}")
    return dek
