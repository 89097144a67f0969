"""A queryset compiled once answers as QuerySet.first() would, for each value it is run with."""

from __future__ import annotations

import pytest
from pytest_django import DjangoAssertNumQueries

from calls.models import Greeting, PhoneNumber
from calls.records.compiled import CompiledFirst

pytestmark = pytest.mark.django_db


def _by_name(name: str) -> CompiledFirst[Greeting]:
    return CompiledFirst(Greeting, lambda value: Greeting.objects.filter(name=value))


def test_each_value_finds_its_own_row() -> None:
    first = Greeting.objects.create(name="first", text="one")
    second = Greeting.objects.create(name="second", text="two")
    by_name = _by_name("")
    assert by_name("first") == first
    assert by_name("second") == second
    found = by_name("second")
    assert found is not None and found.text == "two"


def test_no_row_is_none() -> None:
    assert _by_name("")("nobody") is None


def test_order_is_the_querysets() -> None:
    Greeting.objects.create(name="b", text="same")
    Greeting.objects.create(name="a", text="same")
    by_text = CompiledFirst(Greeting, lambda value: Greeting.objects.filter(text=value))
    assert by_text("same") == Greeting.objects.filter(text="same").first()
    found = by_text("same")
    assert found is not None and found.name == "a"


def test_a_join_runs_in_one_query(django_assert_num_queries: DjangoAssertNumQueries) -> None:
    greeting = Greeting.objects.create(name="routed", text="hi")
    PhoneNumber.objects.create(number="+15550100000", greeting=greeting)
    routed = CompiledFirst(Greeting, lambda value: Greeting.objects.filter(numbers__number=value))
    with django_assert_num_queries(1):
        assert routed("+15550100000") == greeting
