import json

import pytest

from lightning_nas import bench


@pytest.mark.slow  # a subprocess building the full C=16, 8-cell supernet
def test_bench_times_one_darts_step_in_its_own_process_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    results = bench.main(["--cases", "darts_first", "--batch", "2", "--steps", "1", "--warmup", "0",
                          "--partial-channels", "4", "--json", str(out)])
    (result,) = json.loads(out.read_text())["results"]
    assert result == results[0]
    assert (result["case"], result["batch"], result["partial_channels"]) == ("darts_first", 2, 4)
    assert len(result["times_s"]) == 1 and result["median_s"] == result["times_s"][0] > 0
    assert result["images_per_s"] == 2 / result["median_s"]
    assert result["peak_memory_bytes"] > 100e6 and result["memory"] == "max_rss"
    assert "darts_first" in capsys.readouterr().out


def test_bench_rejects_unknown_cases(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--cases", "darts_third"])
    assert "unknown case(s) darts_third" in capsys.readouterr().err
