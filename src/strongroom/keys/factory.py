"""Open the key provider a ``KeySettings`` object names: the one place that maps settings to providers."""

from __future__ import annotations

from collections.abc import Callable

from strongroom.keys.errors import KeySettingsError
from strongroom.keys.local import LocalKeyring
from strongroom.keys.provider import KeyProvider
from strongroom.keys.settings import KeySettings, Secret


def open_provider(settings: KeySettings, *, ask_passphrase: Callable[[], str] | None = None) -> KeyProvider:
    """Open the provider chosen by ``settings``; ``ask_passphrase`` prompts for a local keyring's passphrase.

    Imports each backend only when it is chosen, so a machine without a PKCS#11 module or an OpenBao
    client can still use the others. The returned provider has ``close()``; callers should close it.
    """
    settings.require()
    kind = settings.provider
    if kind == "local":
        return _open_local(settings, ask_passphrase)
    if kind == "pkcs11":
        from strongroom.keys.pkcs11 import Pkcs11Provider

        p = settings.pkcs11
        assert p is not None
        return Pkcs11Provider(
            p.module,
            p.token_label,
            _need(p.pin, settings, "pkcs11", "PIN", "STRONGROOM_PKCS11_PIN", "pin_file"),
            p.key_label,
            mechanism=p.mechanism,
            create_key=p.create_key,
        )
    if kind == "openbao":
        from strongroom.keys.openbao import OpenBaoTransit

        o = settings.openbao
        assert o is not None
        return OpenBaoTransit(
            o.address,
            _need(o.token, settings, "openbao", "token", "STRONGROOM_OPENBAO_TOKEN", "token_file"),
            o.key_name,
            mount=o.mount,
            namespace=o.namespace,
            ca_file=str(o.ca_file) if o.ca_file else None,
            timeout_s=o.timeout_s,
        )
    from strongroom.keys.hpke import load_private_key, load_public_key
    from strongroom.keys.shamir import CustodianPublicKey, ShamirProvider

    s = settings.shamir
    assert s is not None
    custodians = [CustodianPublicKey(_custodian_name(path.name), load_public_key(path)) for path in s.custodians]
    passphrase = s.custodian_key_passphrase.reveal().encode() if s.custodian_key_passphrase else None
    local_keys = [load_private_key(path, passphrase) for path in s.custodian_private_keys]
    return ShamirProvider(custodians, s.threshold, local_custodian_keys=local_keys)


def _custodian_name(filename: str) -> str:
    for suffix in (".pem", ".pub", ".hex"):
        filename = filename.removesuffix(suffix)
    return filename


def _need(secret: Secret | None, settings: KeySettings, section: str, what: str, env: str, file_field: str) -> str:
    if secret is None:
        raise KeySettingsError(f"{settings.origin}: [{section}] no {what}: set {env} or {section}.{file_field}")
    return secret.reveal()


def _open_local(settings: KeySettings, ask_passphrase: Callable[[], str] | None) -> LocalKeyring:
    local = settings.local
    if local.keys is None:
        raise KeySettingsError(f"{settings.origin}: the local provider needs a key directory (--keys or [local] keys)")
    record = LocalKeyring.read_record(local.keys)
    if record["protection"] == "kek-file":
        return LocalKeyring.open(local.keys, kek_file=local.kek_file)
    if local.passphrase is not None:
        return LocalKeyring.open(local.keys, passphrase=local.passphrase.reveal())
    if ask_passphrase is None:
        raise KeySettingsError(f"{local.keys}: this keyring needs a passphrase (set STRONGROOM_PASSPHRASE)")
    return LocalKeyring.open(local.keys, passphrase=ask_passphrase())
