"""The benchmark report's pure helpers (bench/): how profile samples and CPU per frame are judged."""

from bench.profile import shares
from bench.report import cpu_verdict

GROUPS = (
    ("dispatch", ("channels/consumer",), ""),
    ("socket write", ("uvicorn/protocols/websockets",), ""),
)


def test_a_profile_sample_counts_once_for_the_innermost_cost_it_matches():
    rows = [
        (["thread (1): MainThread", "dispatch (channels/consumer.py:1)", "send (uvicorn/protocols/websockets/x.py:2)"], 3),
        (["thread (1): MainThread", "dispatch (channels/consumer.py:1)", "handler (chat/consumers.py:9)"], 2),
        (["thread (1): MainThread", "run (asyncio/runners.py:1)"], 1),
    ]
    assert shares(rows, GROUPS) == {"samples": 6, "socket write": 3, "dispatch": 2, "other": 1}


def test_in_order_a_sample_counts_for_the_first_cost_any_of_its_frames_matches():
    rows = [(["thread (1): MainThread", "dispatch (channels/consumer.py:1)", "send (uvicorn/protocols/websockets/x.py:2)"], 3)]
    assert shares(rows, GROUPS, in_order=True) == {"samples": 3, "socket write": 0, "dispatch": 3, "other": 0}


def test_cpu_per_frame_is_met_only_under_the_bound_and_within_one_and_a_half_times_the_relay():
    assert cpu_verdict(0.00025, 0.0002)
    assert not cpu_verdict(0.00025, 0.0001)  # 2.5 times the relay
    assert not cpu_verdict(0.0004, 0.0004)  # as light as the relay, but over 0.3 ms
