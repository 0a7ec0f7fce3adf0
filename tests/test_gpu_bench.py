"""The GPU-side timing, checked on the CPU: CUDA events after a warm-up, L2-proof buffer sizes,
the GPU tests' memory check. No GPU needed (torch.cuda's calls are stood in for)."""

from __future__ import annotations

import pytest
import torch

from pathlib import Path

from benchmarks import bench_bandwidth, common, scan_model


class FakeEvent:
    """Records when it is recorded; elapsed_time is the number of calls in between, in ms."""

    log: list = []

    def __init__(self, enable_timing=False):
        assert enable_timing
        self.at = None

    def record(self):
        self.at = len(FakeEvent.log)
        FakeEvent.log.append("record")

    def synchronize(self):
        FakeEvent.log.append("sync")

    def elapsed_time(self, other):
        return float(other.at - self.at)


def test_gpu_timing_uses_cuda_events_after_a_warm_up(monkeypatch):
    FakeEvent.log = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    calls = []

    def fn():
        calls.append(len(FakeEvent.log))
        FakeEvent.log.append("call")

    seconds = common.median_seconds(fn, "cuda")
    assert calls[0] == 0  # the warm-up ran before any event
    assert FakeEvent.log[1:4] == ["record", "call", "record"]
    assert seconds == pytest.approx(2e-3)  # record -> call -> record: 2 "ms"


@pytest.mark.parametrize("TxN", bench_bandwidth.SHAPES)
def test_gpu_bandwidth_buffers_exceed_the_l2(TxN):
    T, N = bench_bandwidth.shape("cuda-scan", TxN)
    assert 4 * T * N >= common.GPU_MIN_BUFFER  # each fp32 tensor, and the copy beside it
    assert T * N <= common.MAX_ELEMENTS["cuda"]
    gpu_sizes = [mb for mb in bench_bandwidth.SIZES_MB if mb << 20 >= common.GPU_MIN_BUFFER]
    assert gpu_sizes
    with pytest.raises(NotImplementedError, match="L2|CUDA"):
        bench_bandwidth.Copy().setup("cuda", 16)


def test_gpu_memory_check_empties_the_cache_first(monkeypatch):
    import test_gpu

    seen = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: seen.append("empty"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (seen.append("info"), (7, 9))[1])
    assert test_gpu.free_gpu_bytes() == 7 and seen == ["empty", "info"]


def test_readme_holds_the_model():
    """kernels/README.md's tables are scan_model's output, and the model's claims hold."""
    readme = (Path(__file__).parent.parent / "kernels" / "README.md").read_text()
    block = readme.split("<!-- model: python -m benchmarks.scan_model -->\n")[1].split(
        "<!-- /model -->"
    )[0]
    assert block == scan_model.markdown()
    for device, (bandwidth, _) in scan_model.DEVICES.items():
        for N in scan_model.NS:
            for d in ("forward", "backward"):
                old, new = (
                    scan_model.gbps(x, device, 1 << 24, N, d)
                    for x in (scan_model.OLD, scan_model.NEW)
                )
                assert old <= new <= bandwidth / 1e9
        assert (
            scan_model.gbps(scan_model.OLD, device, 1 << 24, 1, "forward") < 300
        )  # the review's ~0.2 TB/s
