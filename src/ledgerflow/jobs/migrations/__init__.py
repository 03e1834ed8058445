"""Alembic history of the job tables: their own line and version table, beside the logbooks'.

Files in ``versions/`` are frozen: they never import live ledgerflow code.
"""
