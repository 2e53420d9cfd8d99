"""The HTTP service: the ledger's C2SP tlog-tiles read API and write API, custody and people routes."""
