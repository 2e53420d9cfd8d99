"""Country-level location verification of weight hosts: delay-based, revealing only the country.

Landmarks (``landmarks``) with enrolled keys and surveyed coordinates challenge a host with fresh signed
nonces (``protocol``, ``service``); the host answers with its attested key (``prover``). Each landmark's
smallest RTT bounds the host's distance at the speed of light in vacuum; the disks' intersection is the
region (``region``); a verdict is IN(country), INCONCLUSIVE or INCONSISTENT (``verify``). The ledger gets
the country and a commitment to the raw measurements; auditors recompute from the opening
(``verify.recompute``); release policies read per-host verdicts folded from the ledger (``state.GeoState``).
Landmarks check each other (``crosscheck``). See docs/location.md.
"""
