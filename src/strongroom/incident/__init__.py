"""Incident response: playbooks as data, containment steps, key rotation, the forensic timeline, attribution.

Two layers (docs/architecture.md). Pure logic that custody may import: ``playbook`` (CACAO 2.0 playbooks),
``fingerprint`` (per-release marks and attribution), ``timeline``, ``rotate`` (re-seal and provider
retirement), ``report``, ``scenario``, ``errors``. Above custody, running the playbook against it:
``contain``, ``remote``, ``evidence``, ``demo``. Every authorisation decision (who may declare, lift,
acknowledge, rekey, adopt a playbook, mark releases) lives in ``strongroom.custody``.
"""
