"""The latency table (a cache per device, batch and network, written atomically, a corrupt file refused) and the
latency budget of every space's proposals, with planted timers: no test here depends on how fast this machine is."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.spaces import create_space, latency
from lightning_nas.spaces.latency import LatencySetting, LatencyTable, time_forward

NETWORK = (10, 3, {"C": 4, "N": 1})
"""A small NB201 network (C=4, N=1): cheap to build."""


class CountingTimer:
    """A planted timer: a network's latency is its parameter count / 1000 ms; it counts the networks it times."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, network: nn.Module, x: torch.Tensor, setting: LatencySetting) -> list[float]:
        self.calls += 1
        ms = sum(p.numel() for p in network.parameters()) / 1000
        return [ms, ms + 1, ms - 0.5] * setting.repeats


def arches(count: int, seed: int = 0) -> list:
    space, rng = create_space("nb201"), random.Random(seed)
    return [space.draw(rng) for _ in range(count)]


def test_a_second_table_on_the_same_device_reads_the_file_and_measures_nothing(tmp_path: Path) -> None:
    space, timer = create_space("nb201"), CountingTimer()
    first = LatencyTable(space, NETWORK, folder=tmp_path, timer=timer)
    cells = arches(3)
    figures = first.measure(cells, progress=False)
    assert timer.calls == 3
    # the median of the planted figures (ms - 0.5, ms, ms + 1): the parameter count / 1000
    assert figures[space.key(cells[0])] == pytest.approx(space.num_params(cells[0], 10, 3, **NETWORK[2]) / 1000, abs=1e-4)
    again = CountingTimer()
    second = LatencyTable(space, NETWORK, folder=tmp_path, timer=again)
    assert second.path == first.path and [second(arch) for arch in cells] == list(figures.values())
    assert again.calls == 0
    header = first.path.read_text().splitlines()[0]
    assert latency.device_name("cpu") in header and '"batch_size": 1' in header and torch.__version__ in header


def test_another_batch_size_device_or_network_is_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space, timer = create_space("nb201"), CountingTimer()
    cell = arches(1)[0]
    base = LatencyTable(space, NETWORK, folder=tmp_path, timer=timer)
    base(cell)
    base.save()
    batch8 = LatencyTable(space, NETWORK, LatencySetting(batch_size=8), folder=tmp_path, timer=timer)
    wider = LatencyTable(space, (10, 3, {"C": 8, "N": 1}), folder=tmp_path, timer=timer)
    threads2 = LatencyTable(space, NETWORK, LatencySetting(threads=2), folder=tmp_path, timer=timer)
    monkeypatch.setattr(latency, "device_name", lambda device: "Another CPU 9000")
    other_cpu = LatencyTable(space, NETWORK, folder=tmp_path, timer=timer)
    paths = {base.path, batch8.path, wider.path, threads2.path, other_cpu.path}
    assert len(paths) == 5 and "Another-CPU-9000" in other_cpu.path.name and "_b8_" in batch8.path.name
    for table in (batch8, wider, threads2, other_cpu):
        assert table.ms == {}
        table(cell)
    assert timer.calls == 5
    # one CPU thread is timed by its CPU time (other processes do not inflate it); several threads by the wall clock
    assert base.identity["clock"] == "thread_cpu" and threads2.identity["clock"] == "wall"


@pytest.mark.parametrize("text, what", [
    ("garbage\n", "no header line"),
    ("# {not json\nkey,arch,ms\n", "its header is no JSON"),
    (None, "its columns are not key,arch,ms"),
    (None, "line 3 is no key,arch,ms row"),
    (None, "line 3: -2 is no positive number of milliseconds"),
])
def test_a_corrupt_cache_file_is_refused_in_one_line(tmp_path: Path, text: str | None, what: str) -> None:
    space = create_space("nb201")
    table = LatencyTable(space, NETWORK, folder=tmp_path, timer=CountingTimer())
    table(arches(1)[0])
    table.save()
    header, columns, row = table.path.read_text().splitlines()
    if text is None:
        text = {"its columns are not key,arch,ms": f"{header}\nkey,ms\n",
                "line 3 is no key,arch,ms row": f"{header}\n{columns}\n{row},extra\n",
                "line 3: -2 is no positive number of milliseconds": f"{header}\n{columns}\n{row.rsplit(',', 1)[0]},-2\n",
                }[what]
    table.path.write_text(text)
    with pytest.raises(ConfigError, match=f"latency cache .* is corrupt \\({what}\\); delete it to measure again"):
        LatencyTable(space, NETWORK, folder=tmp_path)


def test_a_file_of_another_device_under_this_name_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space = create_space("nb201")
    table = LatencyTable(space, NETWORK, folder=tmp_path, timer=CountingTimer())
    table(arches(1)[0])
    table.save()
    monkeypatch.setattr(latency, "device_name", lambda device: "Another CPU 9000")
    other = LatencyTable(space, NETWORK, folder=tmp_path)
    os.replace(table.path, other.path)
    with pytest.raises(ConfigError, match="its header names another device or network"):
        LatencyTable(space, NETWORK, folder=tmp_path)


def test_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space, cells = create_space("nb201"), arches(2)
    table = LatencyTable(space, NETWORK, folder=tmp_path, timer=CountingTimer())
    table(cells[0])
    table.save()
    before = table.path.read_text()
    table(cells[1])

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        table.save()
    assert table.path.read_text() == before and os.listdir(tmp_path) == [table.path.name]
    assert table in latency.UNSAVED  # still to be written at exit
    monkeypatch.undo()
    table.save()
    assert len(LatencyTable(space, NETWORK, folder=tmp_path).ms) == 2


def test_two_processes_writing_one_table_keep_both_figures(tmp_path: Path) -> None:
    space, (a, b) = create_space("nb201"), arches(2, seed=1)
    one = LatencyTable(space, NETWORK, folder=tmp_path, timer=CountingTimer())
    two = LatencyTable(space, NETWORK, folder=tmp_path, timer=CountingTimer())
    one(a)
    two(b)
    one.save()
    two.save()
    assert set(LatencyTable(space, NETWORK, folder=tmp_path).ms) == {space.key(a), space.key(b)}


def test_the_cache_folder_is_the_users_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(latency.CACHE_ENV, str(tmp_path / "mine"))
    assert LatencyTable(create_space("nb201"), NETWORK).path.parent == tmp_path / "mine"
    monkeypatch.delenv(latency.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert latency.cache_folder() == tmp_path / "xdg" / "lightning_nas" / "latency"


def test_the_real_timer_times_every_repeat_and_restores_the_threads() -> None:
    network, threads = nn.Linear(4, 2).eval(), torch.get_num_threads()
    times = time_forward(network, torch.zeros(1, 4), LatencySetting(threads=1, warmup=2, repeats=5))
    assert len(times) == 5 and all(t > 0 for t in times) and torch.get_num_threads() == threads


@pytest.mark.parametrize("setting, message", [
    (LatencySetting(batch_size=0), "latency batch_size=0 must be a whole number >= 1"),
    (LatencySetting(repeats=0), "latency repeats=0 must be a whole number >= 1"),
    (LatencySetting(input_size=(32,)), "latency input_size=\\(32,\\) must be two whole numbers"),
    (LatencySetting(device="tpu"), "latency device 'tpu'"),
])
def test_a_bad_setting_is_refused_in_one_line(setting: LatencySetting, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LatencyTable(create_space("nb201"), NETWORK, setting)


def planted_ms(arch) -> float:
    """A planted latency: 1 ms plus 1 ms per 3x3 convolution edge."""
    return 1.0 + arch.to_string().count("nor_conv_3x3")


@pytest.mark.parametrize("space_name", ["nb201", "darts"])
def test_a_latency_budget_restricts_every_proposal(space_name: str) -> None:
    space = create_space(space_name)
    ms = planted_ms if space_name == "nb201" else (lambda arch: 1.0 + space.to_string(arch).count("sep_conv_5x5"))
    budgeted, rng = space.with_budget(max_latency_ms=2, latency=ms), random.Random(0)
    samples = [budgeted.sample(rng) for _ in range(100)]
    mutants = [budgeted.mutate(arch, rng) for arch in samples]
    neighbours = [n for arch in samples[:10] for n in budgeted.neighbours(arch)]
    assert all(ms(arch) <= 2 for arch in samples + mutants + neighbours)
    # the negative control: unbudgeted, the same proposals cross the budget
    free = [space.sample(rng) for _ in range(100)]
    assert any(ms(arch) > 2 for arch in free + [n for arch in samples[:10] for n in space.neighbours(arch)])


def test_a_latency_and_a_parameter_budget_hold_together() -> None:
    space = create_space("nb201")
    both = space.with_budget(0.6e6, 3, latency=planted_ms)
    rng = random.Random(0)
    for arch in (both.sample(rng) for _ in range(50)):
        assert planted_ms(arch) <= 3 and space.num_params(arch, 10, 3, C=16, N=5) <= 0.6e6
    assert both.budget() == {"max_params": "at most 600000 parameters", "max_latency_ms": "at most 3 ms latency"}


def test_an_unreachable_latency_budget_names_it() -> None:
    with pytest.raises(ConfigError, match="has at most 0.5 ms latency; raise max_latency_ms"):
        create_space("nb201").with_budget(max_latency_ms=0.5, latency=planted_ms).sample(random.Random(0))


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")])
def test_a_latency_budget_that_is_no_positive_number_is_refused_at_once(value: float) -> None:
    with pytest.raises(ConfigError, match=f"max_latency_ms={value}: give a positive number of milliseconds"):
        create_space("nb201").with_budget(max_latency_ms=value)


def test_the_default_latency_is_a_cached_table_of_the_budgets_network(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(latency.CACHE_ENV, str(tmp_path))
    budgeted = create_space("nb201").with_budget(max_latency_ms=5, num_classes=10, in_chans=1, C=4, N=1)
    assert isinstance(budgeted.latency, LatencyTable) and budgeted.latency.network == (10, 1, {"C": 4, "N": 1})
    assert budgeted.latency.path.parent == tmp_path
