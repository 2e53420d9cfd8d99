"""Key-provider settings: one typed object, read from a TOML or JSON file and overridden by environment.

A file looks like (TOML; JSON with the same shape works too)::

    provider = "pkcs11"            # local | pkcs11 | openbao | shamir

    [local]
    keys = "keys/"                 # key directory; passphrase from STRONGROOM_PASSPHRASE
    kek_file = "kek.bin"           # optional

    [pkcs11]
    module = "/usr/lib/softhsm/libsofthsm2.so"
    token_label = "strongroom"
    key_label = "strongroom-kek"
    pin_file = "/run/secrets/pin"  # or STRONGROOM_PKCS11_PIN
    mechanism = "AES_GCM"          # the only one: it authenticates the key binding
    create_key = false

    [openbao]
    address = "https://bao.internal:8200"
    key_name = "strongroom"
    mount = "transit"
    token_file = "/run/secrets/bao-token"   # or STRONGROOM_OPENBAO_TOKEN
    ca_file = "ca.pem"
    timeout_s = 5.0

    [shamir]
    threshold = 2
    custodians = ["alice.pub.pem", "bob.pub.pem", "carol.pub.pem"]
    custodian_private_keys = []    # local quorum mode only (tests, recovery ceremonies)

Every field can be set by ``STRONGROOM_<SECTION>_<FIELD>`` (``STRONGROOM_PKCS11_TOKEN_LABEL``, ...; list
fields take ``os.pathsep``-separated paths); ``STRONGROOM_KEY_PROVIDER`` picks the provider, and the local
section keeps its established names ``STRONGROOM_KEYS``, ``STRONGROOM_KEK_FILE``, ``STRONGROOM_PASSPHRASE``.
Secrets (PIN, token, passphrase) come only from the environment or a ``*_file``, never from the settings
file itself, and print as ``***``. Relative paths are resolved against the settings file's directory.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from strongroom import process
from strongroom.keys.errors import KeySettingsError

ProviderKind = Literal["local", "pkcs11", "openbao", "shamir"]
PROVIDER_KINDS: tuple[ProviderKind, ...] = ("local", "pkcs11", "openbao", "shamir")
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class Secret:
    """A secret string that never shows itself in ``repr``, ``str`` or logs; ``reveal()`` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(Secret)


@dataclass(frozen=True)
class LocalSettings:
    keys: Path | None = None
    kek_file: Path | None = None
    passphrase: Secret | None = None


@dataclass(frozen=True)
class Pkcs11Settings:
    token_label: str
    module: str = DEFAULT_PKCS11_MODULE
    key_label: str = "strongroom-kek"
    pin: Secret | None = None
    mechanism: str = "AES_GCM"
    create_key: bool = False


@dataclass(frozen=True)
class OpenBaoSettings:
    address: str = "http://127.0.0.1:8200"
    key_name: str = "strongroom"
    mount: str = "transit"
    token: Secret | None = None
    namespace: str | None = None
    ca_file: Path | None = None
    timeout_s: float = 5.0


@dataclass(frozen=True)
class ShamirSettings:
    threshold: int
    custodians: tuple[Path, ...]
    custodian_private_keys: tuple[Path, ...] = ()
    custodian_key_passphrase: Secret | None = None


@dataclass(frozen=True)
class KeySettings:
    """Which provider to open and each provider's fields (only the chosen one must be complete)."""

    provider: ProviderKind = "local"
    local: LocalSettings = field(default_factory=LocalSettings)
    pkcs11: Pkcs11Settings | None = None
    openbao: OpenBaoSettings | None = None
    shamir: ShamirSettings | None = None
    source: Path | None = None

    @classmethod
    def load(
        cls,
        path: Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        provider: str | None = None,
    ) -> KeySettings:
        """Read ``path`` (TOML or JSON; optional), apply the environment, then an explicit provider choice."""
        env = process.environment() if env is None else env
        raw: dict[str, Any] = _read_file(path) if path is not None else {}
        base = Path(path).parent if path is not None else Path.cwd()
        return _build(raw, env, base, provider, Path(path) if path is not None else None)

    def require(self) -> None:
        """Check that the chosen provider's section is present."""
        if self.provider != "local" and getattr(self, self.provider) is None:
            raise KeySettingsError(
                f"{self.origin}: provider {self.provider!r} chosen but its [{self.provider}] settings are missing"
            )

    @property
    def origin(self) -> str:
        """Where these settings came from, for error messages."""
        return str(self.source) if self.source else "key settings"


# -- loading ------------------------------------------------------------------------------------

SECRET_FIELDS = {
    "local": {"passphrase": "STRONGROOM_PASSPHRASE"},
    "pkcs11": {"pin": "STRONGROOM_PKCS11_PIN"},
    "openbao": {"token": "STRONGROOM_OPENBAO_TOKEN"},
    "shamir": {"custodian_key_passphrase": "STRONGROOM_SHAMIR_CUSTODIAN_KEY_PASSPHRASE"},
}
LOCAL_ENV = {"keys": "STRONGROOM_KEYS", "kek_file": "STRONGROOM_KEK_FILE"}
KNOWN_FIELDS = {
    "local": {"keys", "kek_file", "passphrase_file"},
    "pkcs11": {"module", "token_label", "key_label", "pin_file", "mechanism", "create_key"},
    "openbao": {"address", "key_name", "mount", "token_file", "namespace", "ca_file", "timeout_s"},
    "shamir": {"threshold", "custodians", "custodian_private_keys", "custodian_key_passphrase_file"},
}
LIST_FIELDS = {"custodians", "custodian_private_keys"}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeySettingsError(f"{path}: cannot read key settings: {exc.strerror}") from None
    try:
        doc = json.loads(data) if Path(path).suffix == ".json" else tomllib.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "JSON" if Path(path).suffix == ".json" else "TOML"
        raise KeySettingsError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(doc, dict):
        raise KeySettingsError(f"{path}: key settings must be a table/object")
    return doc


def _section_env(section: str, name: str) -> str:
    if section == "local" and name in LOCAL_ENV:
        return LOCAL_ENV[name]
    return f"STRONGROOM_{section.upper()}_{name.upper()}"


def _build(
    raw: dict[str, Any], env: Mapping[str, str], base: Path, provider: str | None, source: Path | None
) -> KeySettings:
    where = str(source) if source else "key settings"
    unknown = set(raw) - {"provider", *KNOWN_FIELDS}
    if unknown:
        raise KeySettingsError(f"{where}: unknown key(s) {sorted(unknown)}")
    kind = provider or env.get("STRONGROOM_KEY_PROVIDER") or raw.get("provider") or "local"
    if kind not in PROVIDER_KINDS:
        raise KeySettingsError(f"{where}: provider {kind!r} is not one of {', '.join(PROVIDER_KINDS)}")
    sections: dict[str, dict[str, Any] | None] = {}
    for section, known in KNOWN_FIELDS.items():
        table = raw.get(section)
        if table is not None and not isinstance(table, dict):
            raise KeySettingsError(f"{where}: [{section}] must be a table")
        for secret in SECRET_FIELDS[section]:
            if table is not None and secret in table:
                raise KeySettingsError(
                    f"{where}: [{section}] {secret} must not be written in the settings file; "
                    f"use {SECRET_FIELDS[section][secret]} or {secret}_file"
                )
        if table is not None and set(table) - known:
            raise KeySettingsError(f"{where}: [{section}] unknown field(s) {sorted(set(table) - known)}")
        merged: dict[str, Any] = dict(table or {})
        for name in known:
            value = env.get(_section_env(section, name))
            if value is not None:
                merged[name] = value.split(os.pathsep) if name in LIST_FIELDS else value
        present = table is not None or bool(merged) or any(v in env for v in SECRET_FIELDS[section].values())
        sections[section] = merged if present else None
    reader = _Reader(where, base, env)
    settings = KeySettings(
        provider=cast(ProviderKind, kind),
        local=reader.local(sections["local"] or {}),
        pkcs11=reader.pkcs11(sections["pkcs11"]) if sections["pkcs11"] is not None else None,
        openbao=reader.openbao(sections["openbao"]) if sections["openbao"] is not None else None,
        shamir=reader.shamir(sections["shamir"]) if sections["shamir"] is not None else None,
        source=source,
    )
    settings.require()
    return settings


@dataclass
class _Reader:
    """Turns one merged section into its typed settings, naming the file and field at fault."""

    where: str
    base: Path
    env: Mapping[str, str]

    def _fail(self, section: str, name: str, want: str) -> KeySettingsError:
        return KeySettingsError(f"{self.where}: [{section}] {name} must be {want}")

    def _str(self, section: str, table: dict[str, Any], name: str, default: str | None = None) -> str:
        value = table.get(name, default)
        if not isinstance(value, str) or not value:
            raise self._fail(section, name, "a non-empty string")
        return value

    def _opt_str(self, section: str, table: dict[str, Any], name: str) -> str | None:
        return None if table.get(name) is None else self._str(section, table, name)

    def _path(self, section: str, table: dict[str, Any], name: str) -> Path | None:
        value = table.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self._fail(section, name, "a path")
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def _paths(self, section: str, table: dict[str, Any], name: str) -> tuple[Path, ...]:
        value = table.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._fail(section, name, "a list of paths")
        return tuple(p if p.is_absolute() else self.base / p for p in (Path(v).expanduser() for v in value))

    def _bool(self, section: str, table: dict[str, Any], name: str, default: bool) -> bool:
        value = table.get(name, default)
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        if not isinstance(value, bool):
            raise self._fail(section, name, "true or false")
        return value

    def _number(
        self, section: str, table: dict[str, Any], name: str, default: float, cast_to: Callable[[Any], Any]
    ) -> Any:
        value = table.get(name, default)
        try:
            if isinstance(value, bool) or (cast_to is int and isinstance(value, float)):
                raise ValueError
            number = cast_to(value)
        except (TypeError, ValueError):
            raise self._fail(section, name, "a number") from None
        if number <= 0:
            raise self._fail(section, name, "positive")
        return number

    def _secret(self, section: str, table: dict[str, Any], name: str) -> Secret | None:
        env_name = SECRET_FIELDS[section][name]
        if env_name in self.env:
            return Secret(self.env[env_name])
        path = self._path(section, table, name + "_file")
        if path is None:
            return None
        try:
            return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
        except (OSError, UnicodeDecodeError) as exc:
            raise KeySettingsError(f"{self.where}: [{section}] {name}_file {path}: cannot read ({exc})") from None

    def local(self, t: dict[str, Any]) -> LocalSettings:
        return LocalSettings(
            keys=self._path("local", t, "keys"),
            kek_file=self._path("local", t, "kek_file"),
            passphrase=self._secret("local", t, "passphrase"),
        )

    def pkcs11(self, t: dict[str, Any]) -> Pkcs11Settings:
        module = self._str("pkcs11", t, "module", DEFAULT_PKCS11_MODULE)
        mechanism = self._str("pkcs11", t, "mechanism", "AES_GCM")
        if mechanism != "AES_GCM":
            # AES key wrap (RFC 3394/5649) has no associated data, so it cannot bind a data key to its model.
            raise self._fail("pkcs11", "mechanism", "AES_GCM (AES key wrap cannot bind a key to its model)")
        return Pkcs11Settings(
            token_label=self._str("pkcs11", t, "token_label"),
            module=str(self.base / module) if not Path(module).is_absolute() else module,
            key_label=self._str("pkcs11", t, "key_label", "strongroom-kek"),
            pin=self._secret("pkcs11", t, "pin"),
            mechanism=mechanism,
            create_key=self._bool("pkcs11", t, "create_key", False),
        )

    def openbao(self, t: dict[str, Any]) -> OpenBaoSettings:
        return OpenBaoSettings(
            address=self._str("openbao", t, "address", "http://127.0.0.1:8200"),
            key_name=self._str("openbao", t, "key_name", "strongroom"),
            mount=self._str("openbao", t, "mount", "transit"),
            token=self._secret("openbao", t, "token"),
            namespace=self._opt_str("openbao", t, "namespace"),
            ca_file=self._path("openbao", t, "ca_file"),
            timeout_s=float(self._number("openbao", t, "timeout_s", 5.0, float)),
        )

    def shamir(self, t: dict[str, Any]) -> ShamirSettings:
        custodians = self._paths("shamir", t, "custodians")
        if not custodians:
            raise self._fail("shamir", "custodians", "a non-empty list of public key files")
        if "threshold" not in t:
            raise self._fail("shamir", "threshold", "given (k of the n custodians)")
        return ShamirSettings(
            threshold=int(self._number("shamir", t, "threshold", 0, int)),
            custodians=custodians,
            custodian_private_keys=self._paths("shamir", t, "custodian_private_keys"),
            custodian_key_passphrase=self._secret("shamir", t, "custodian_key_passphrase"),
        )
