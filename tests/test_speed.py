import json
import sys
import textwrap

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lightning_nas import speed
from lightning_nas.speed.cases import CASES
from lightning_nas.speed.cli import DEFAULT_BATCHES, OFFICIAL
from lightning_nas.speed.official import OFFICIAL_CASES


def test_cuda_graph_needs_a_gpu_and_darts_cases(capsys):
    with pytest.raises(SystemExit):
        speed.main(["--cases", "darts_first", "--cuda-graph"])
    assert capsys.readouterr().err.startswith(
        "python -m lightning_nas.speed: error: --cuda-graph replays a step on a GPU: use --device cuda")


def test_every_case_has_default_batches_and_every_darts_case_an_official_twin():
    assert set(DEFAULT_BATCHES) == set(CASES)
    assert set(OFFICIAL.values()) == set(OFFICIAL_CASES) and set(OFFICIAL) <= set(CASES)


@pytest.mark.slow  # a subprocess building a DARTS supernet
def test_speed_times_one_darts_step_in_its_own_process_and_writes_json(tmp_path, capsys):
    out = tmp_path / "speed.json"
    results = speed.main(["--cases", "darts_first", "--batch", "2", "--C", "4", "--layers", "3", "--steps", "1",
                          "--warmup", "1", "--partial-channels", "4", "--json", str(out)])
    (result,) = json.loads(out.read_text())["results"]
    assert result == results[0]
    assert (result["case"], result["batch"], result["C"], result["layers"], result["partial_channels"]) == (
        "darts_first", 2, 4, 3, 4)
    assert len(result["times_s"]) == 1 and result["median_s"] == result["times_s"][0] > 0
    assert result["images_per_s"] == 2 / result["median_s"]
    assert result["peak_memory_bytes"] > 100e6 and result["memory"] == "max_rss"
    # the FLOP count's warm-up would be in the CPU peak RSS (checkpointed cells: 8.7 against 2.4 GB), so none on CPU
    assert result["flops_per_step"] is None
    # the warm-up step's dispatched kernels; its one host read is the non-finite guard's, after the step
    assert result["kernels_per_step"] > 1000 and result["syncs_per_step"] == 1
    assert "darts_first" in capsys.readouterr().out


FAKE_MODEL_SEARCH = '''
import torch
from torch import nn

CALLS = []


class Network(nn.Module):
    def __init__(self, C, num_classes, layers, criterion):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes)).cuda()
        self.alphas = torch.zeros(2, requires_grad=True).cuda()
        self._criterion = criterion
        print("official net", C, layers, flush=True)

    def forward(self, x):
        return self.net(x) * self.alphas.sum().exp()

    def _loss(self, x, y):
        return self._criterion(self(x), y)

    def arch_parameters(self):
        return [self.alphas]
'''

FAKE_ARCHITECT = '''
import sys
import torch


class Architect:
    def __init__(self, model, args):
        self.model, self.optimizer = model, torch.optim.Adam(model.arch_parameters(), lr=args.arch_learning_rate)

    def step(self, x_train, y_train, x_valid, y_valid, eta, network_optimizer, unrolled):
        print("unrolled" if unrolled else "first order", len(x_train), len(x_valid), file=sys.stderr, flush=True)
        self.optimizer.zero_grad()
        self.model._loss(x_valid, y_valid).backward()
        self.optimizer.step()
'''


@pytest.fixture
def fake_official(tmp_path):
    """A stand-in for a quark0/darts checkout with the API the worker calls (and a .cuda() the worker must neuter)."""
    (tmp_path / "darts" / "cnn").mkdir(parents=True)
    (tmp_path / "darts" / "cnn" / "model_search.py").write_text(textwrap.dedent(FAKE_MODEL_SEARCH))
    (tmp_path / "darts" / "cnn" / "architect.py").write_text(textwrap.dedent(FAKE_ARCHITECT))
    return tmp_path / "darts"


def test_official_worker_runs_the_checkouts_step_at_the_requested_point_on_cpu(fake_official, capsys):
    cuda = torch.Tensor.cuda
    speed.main(["--case", "official_second", "--cases", "official_second", "--batch", "3", "--C", "6",
                "--layers", "5", "--steps", "2", "--warmup", "1", "--official", str(fake_official)])
    out, err = capsys.readouterr()
    record = json.loads(out.strip().splitlines()[-1])
    assert "official net 6 5" in out and err.count("unrolled 3 3") == 3  # warm-up + 2 timed steps, second order
    assert (record["case"], record["batch"], record["C"], record["layers"]) == ("official_second", 3, 6, 5)
    assert len(record["times_s"]) == 2 and record["median_s"] > 0
    assert record["kernels_per_step"] > 10 and record["syncs_per_step"] >= 0  # counted on the warm-up step
    assert torch.Tensor.cuda is cuda and "model_search" not in sys.modules  # nothing of the checkout stays behind


@pytest.mark.slow  # two subprocesses per round, one of them building a DARTS supernet
def test_against_official_alternates_fresh_processes_and_reports_the_ratios(fake_official, tmp_path, monkeypatch):
    monkeypatch.setenv("DARTS_OFFICIAL", str(fake_official))
    out = tmp_path / "speed.json"
    speed.main(["--cases", "darts_first", "--against-official", "--rounds", "2", "--batch", "2", "--C", "4",
                "--layers", "3", "--steps", "1", "--warmup", "0", "--json", str(out)])
    written = json.loads(out.read_text())
    cases = [r["case"] for r in written["results"]]
    assert cases == ["darts_first", "darts_first", "official_first", "official_first"]
    (row,) = written["against_official"]
    ours = [r for r in written["results"] if r["case"] == "darts_first"]
    official = [r for r in written["results"] if r["case"] == "official_first"]
    assert row["speedup"] == pytest.approx(row["official_s"] / row["ours_s"])
    assert row["ours_s"] == pytest.approx(sum(r["median_s"] for r in ours) / 2)  # median of two steps: their mean
    assert row["official_peak_bytes"] == max(r["peak_memory_bytes"] for r in official)
    assert row["memory_ratio"] == pytest.approx(row["ours_peak_bytes"] / row["official_peak_bytes"])
    assert row["round_speedups"] == pytest.approx([o["median_s"] / u["median_s"] for u, o in zip(ours, official)])


def test_against_official_without_a_checkout_says_how_to_get_one(monkeypatch, capsys):
    monkeypatch.delenv("DARTS_OFFICIAL", raising=False)
    with pytest.raises(SystemExit, match="needs a checkout of quark0/darts: give --official PATH or set DARTS_OFFICIAL"):
        speed.main(["--cases", "darts_first", "--against-official"])


def test_against_official_refuses_what_the_official_code_cannot_run(capsys):
    with pytest.raises(SystemExit):
        speed.main(["--cases", "enas_child", "--against-official"])
    assert "compares DARTS cases only" in capsys.readouterr().err


def test_speed_rejects_unknown_cases(capsys):
    with pytest.raises(SystemExit):
        speed.main(["--cases", "darts_third"])
    assert "unknown case(s) darts_third" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--batch", "0"], "argument --batch: must be at least 1, got 0"),
    (["--warmup", "-1"], "argument --warmup: must be at least 0, got -1"),
    (["--steps", "x"], "argument --steps: invalid int value: 'x'"),
])
def test_bad_counts_end_in_one_line_before_any_worker_starts(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        speed.main(args)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"python -m lightning_nas.speed: error: {message} (see --help)\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--cases", "darts_first", "--partial-channels", "3"],
     "--partial-channels 3 must divide every --C (each edge mixes C/K of the C channels): 16 is not a multiple of 3"),
    (["--cases", "darts_second", "--C", "8", "12", "--partial-channels", "8"], "12 is not a multiple of 8"),
    (["--cases", "darts_gdas", "--partial-channels", "2"], "darts_gdas (GDAS) samples whole channels"),
])
def test_partial_channels_the_darts_cases_cannot_run_are_refused_before_any_worker_starts(
        monkeypatch, capsys, args, message):
    from lightning_nas.speed import cli

    monkeypatch.setattr(cli, "run_worker", lambda *a, **k: pytest.fail("a worker started"))
    with pytest.raises(SystemExit) as exit_info:
        speed.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m lightning_nas.speed: error: ") and message in err and err.count("\n") == 1


def test_flop_count_is_three_forward_passes_of_a_depthwise_conv():
    """2·k²·C·H·W per depthwise forward; torch's own backward count (its groups ignored) would be far more."""
    from lightning_nas.speed.cases import FlopCount

    C, H, k, batch = 16, 8, 3, 2
    conv = torch.nn.Conv2d(C, C, k, padding=1, groups=C, bias=False)
    counter = FlopCount()
    counter.on_train_batch_start()
    conv(torch.randn(batch, C, H, H, requires_grad=True)).sum().backward()
    counter.on_train_batch_end()
    assert counter.flops == 3 * 2 * k * k * C * H * H * batch
    counter.on_train_batch_start()  # only the first batch is counted
    assert counter._mode is None
    with FlopCounterMode(display=False) as torch_count:  # what the count would be with torch's backward formula
        conv(torch.randn(batch, C, H, H, requires_grad=True)).sum().backward()
    assert torch_count.get_total_flops() > 2 * counter.flops


def test_compile_takes_a_torch_compile_mode(capsys):
    assert speed.cli.parse_args(["--compile"]).compile == "default"
    assert speed.cli.parse_args(["--compile", "reduce-overhead"]).compile == "reduce-overhead"
    assert speed.cli.parse_args([]).compile is None
    with pytest.raises(SystemExit):
        speed.main(["--cases", "darts_first", "--against-official", "--official", ".", "--compile"])
    assert "drop --bf16, --channels-last, --compile" in capsys.readouterr().err
