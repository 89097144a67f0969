"""The benchmark's arrivals and called numbers: spread as asked, and the same for every server."""

from __future__ import annotations

from bench.assess import relay_number
from bench.phases import arriving, numbers, one_at_a_time
from bench.relay_floor import text_for


def test_poisson_arrivals_are_sorted_within_their_span_and_repeat_per_seed() -> None:
    offsets = arriving(200, 100.0, seed=4)
    assert len(offsets) == 200
    assert list(offsets) == sorted(offsets)
    assert offsets[0] >= 0.0 and offsets[-1] <= 2.0
    # Callers arrive throughout the span, not in a lump.
    assert offsets[-1] - offsets[0] > 1.5
    assert arriving(200, 100.0, seed=4) == offsets != arriving(200, 100.0, seed=5)


def test_a_single_call_arrives_at_once_and_single_calls_come_apart() -> None:
    assert arriving(1, 50.0, seed=1) == (0.0,)
    assert one_at_a_time(3, 0.5) == (0.0, 0.5, 1.0)


def test_called_numbers_are_distinct_e164_across_phases() -> None:
    first, second = numbers(10, 50), numbers(11, 50)
    assert len(set(first) | set(second)) == 100
    assert all(n.startswith("+1555") and n[1:].isdigit() and len(n) <= 16 for n in first)


def test_the_relay_floors_texts_name_their_number() -> None:
    assert relay_number(text_for("+15551000001", 3)) == "+15551000001"
    assert relay_number("Thank you for calling") is None
