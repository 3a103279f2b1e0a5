"""Frame backbones: each module defines `Backbone` with `kind`, `__call__` and `describe()`."""
