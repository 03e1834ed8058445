"""Alembic migrations of the SQL schema: frozen history, run by ``sql.migrate``.

Each file in ``versions/`` describes the schema as it was when written and never
imports live ledgerflow code, so a later change to ``tables`` cannot rewrite history.
"""
