"""pipeline.serve.live: live sessions by client, bounded in number and forgotten when idle."""

from __future__ import annotations

from pipeline.serve.live import SessionRegistry
from pipeline.stream import LiveStream


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_session_registry_bounds_sessions_and_forgets_idle_ones():
    clock = FakeClock()
    made = []

    def factory(settings):
        made.append(settings)
        return LiveStream(lambda image, threshold=0.5, **options: {"instances": []}, clock=clock)

    registry = SessionRegistry(factory, max_sessions=2, idle_s=10.0, clock=clock)
    first = registry.get("a", settings=("m1",))
    assert registry.get("a", settings=("m1",)) is first
    assert registry.get("a", settings=("m2",)) is first  # new models: the caller applies them, the stream goes on
    assert len(registry) == 1
    registry.get("b")
    registry.get("c")
    assert len(registry) == 2
    clock.now = 100.0
    registry.get("d")
    assert len(registry) == 1
    assert made == [("m1",), None, None, None]
