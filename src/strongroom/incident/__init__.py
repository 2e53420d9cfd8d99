"""Incident response: playbooks as data, containment steps, key rotation, the forensic timeline, attribution.

Pure logic only: every authorisation decision (who may declare, lift, acknowledge) lives in
``strongroom.custody``; this package plans, computes and renders.
"""
