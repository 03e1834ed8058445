"""``file:///path/to/dir``: a store of JSON documents, one per record.

Safe for several threads and processes at once (an flock around every
transaction, compare-and-set on ``revision``), atomic for multi-record writes
(a write-ahead journal), and durable by default: every commit fsyncs the files
and their directory.  ``file:///path/to/dir?fsync=false`` skips the fsyncs; a
commit then survives a crash of the process but not a power loss.

Reading a missing or empty directory creates nothing; ``upgrade()`` and the
first write create the layout (see ``documents`` for what lies where).
"""

from ledgerflow.persistence.files.backend import FileBackend, FileConnection

__all__ = ["FileBackend", "FileConnection"]
