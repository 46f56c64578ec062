"""The settings every room of payscore may import: one frozen configuration, read once from
``PAYSCORE_*`` environment variables at an entry point (:mod:`settings.config`). This package
imports nothing else of payscore."""
