"""Querysets whose SQL is compiled once per database and run again with a new value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)

# Stands for the value a query is run with while its SQL is compiled.
_VALUE = "\0calls.records.compiled\0"


class CompiledFirst(Generic[M]):
    """The first row of a queryset built for one value, as `QuerySet.first()` finds it."""

    def __init__(self, model: type[M], build: Callable[[str], QuerySet[M]]) -> None:
        self._model = model
        self._build = build
        self._compiled: dict[str, tuple[str, tuple[Any, ...], int | None, list[str]]] = {}

    def __call__(self, value: str) -> M | None:
        """Run the query for `value`; None when it finds no row."""
        connection = connections[DEFAULT_DB_ALIAS]
        compiled = self._compiled.get(connection.vendor)
        if compiled is None:
            # Compiling is most of what an ORM look-up costs, and the SQL never changes.
            compiled = self._compiled[connection.vendor] = self._compile()
        sql, params, slot, names = compiled
        if slot is not None:
            params = (*params[:slot], value, *params[slot + 1 :])
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return None if row is None else self._model.from_db(DEFAULT_DB_ALIAS, names, row)

    def _compile(self) -> tuple[str, tuple[Any, ...], int | None, list[str]]:
        queryset = self._build(_VALUE)
        if not queryset.ordered:
            queryset = queryset.order_by("pk")
        compiler = queryset[:1].query.get_compiler(DEFAULT_DB_ALIAS)
        sql, params = compiler.as_sql()
        slots = [i for i, param in enumerate(params) if param == _VALUE]
        names = [column.target.attname for column, _, _ in compiler.select]
        return sql, tuple(params), slots[0] if slots else None, names
