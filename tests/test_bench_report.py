"""The benchmark report's pure helpers (bench/): how profile samples and CPU per frame are judged."""

from bench.profile import shares
from bench.report import cpu_verdict, send_cpu

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


def test_a_send_s_cpu_ceiling_is_the_cores_over_its_cpu_summed_over_every_process():
    def run(racers: float, postgresql: float) -> dict:
        return {"admitted": 100, "cpu_s": {"racers": racers, "PostgreSQL": postgresql, "Redis": 0.1}}

    table = send_cpu({"cores": 2, "reserve_only": [run(0.1, 0.1)] * 2, "distinct": [run(0.6, 0.3)]})
    assert "| `quota_reserve` alone | 2 (200) | 1.00 ms | 1.00 ms | 1.00 ms | **3.00 ms** | 667/s |" in table
    assert "| the whole send (`message_send`) | 1 (100) | 6.00 ms | 3.00 ms | 1.00 ms | **10.00 ms** | 200/s |" in table
