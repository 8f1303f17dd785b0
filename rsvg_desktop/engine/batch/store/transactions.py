"""The run store's connection and its transactions: all writes of a transaction are committed together
with the widened layer extents, or rolled back together with them."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field

from rsvg_desktop.engine.batch.store.layers import Layers
from rsvg_desktop.errors import ExportError


@dataclass
class Txn:
    """A transaction under way: the tables it wrote to (their ``last_change`` is set at the commit)."""

    touched: set[str] = field(default_factory=set)


class StoreDb:
    """The store's sqlite connection, its spatial layers and the transaction under way."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        self.layers = Layers()
        self.txn: Txn | None = None
        self.layers.load(con)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction (``BEGIN IMMEDIATE``); inside another one, part of it."""
        if self.txn is not None:
            yield
            return
        self.con.execute("BEGIN IMMEDIATE")
        self.txn = Txn()
        try:
            yield
            self.layers.flush_extents(self.con, self.txn.touched)
            self.con.execute("COMMIT")
        except BaseException:
            if self.con is not None:
                self.con.execute("ROLLBACK")
            self.layers.reload_extents(self.con)
            raise
        finally:
            self.txn = None

    def require_txn(self) -> Txn:
        """The transaction under way (RuntimeError when there is none)."""
        if self.txn is None:
            raise RuntimeError("store writes must happen inside store.transaction()")
        return self.txn

    def close(self) -> None:
        """Roll back a transaction under way and close the connection (idempotent)."""
        if self.con is None:
            return
        if self.txn is not None:
            self.con.execute("ROLLBACK")
            self.txn = None
        self.con.close()
        self.con = None  # type: ignore[assignment]


def inserted_rowid(cur: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT just added."""
    if cur.lastrowid is None:  # pragma: no cover - sqlite sets it after every INSERT
        raise ExportError("the run store did not return the new row's id")
    return int(cur.lastrowid)
