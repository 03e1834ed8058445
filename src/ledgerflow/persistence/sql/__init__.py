"""The SQL backend: SQLite, PostgreSQL and MariaDB/MySQL through SQLAlchemy Core.

``tables`` holds the schema, ``engines`` every connection setting, ``migrate``
the Alembic runner (``migrations/`` is its frozen history) and ``backend`` the
``SQLBackend``.  Importing this package imports no database driver.
"""
