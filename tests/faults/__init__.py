"""The fault and bad-input suite (a package, so that `tests/` is on the import path and
`from helpers import ...` works when this folder is run on its own)."""
