import csv
import json

from torchlc_geo import sweep


def test_tiny_sweep_runs_resumes_and_summarises(tmp_path):
    out = tmp_path / "sw"
    args = ["--preset", "tiny", "--out", str(out), "--no-progress", "--quiet", "--threads", "1"]
    first = sweep.main(args + ["--max-runs", "1"])  # an "interrupted" sweep: one run done
    assert len(first) == 1 and first[0]["status"] == "ok"
    res = sweep.main(args)  # resumes: the remaining 3 runs
    assert len(res) == 4 and all(r["status"] == "ok" for r in res)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4 and len({json.loads(x)["id"] for x in lines}) == 4
    again = sweep.main(args)  # nothing left to do: no new lines
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    assert [r["id"] for r in again] == [r["id"] for r in res]
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert {r["model"] for r in rows} == {"geo", "equal_params"}
    geo = [r for r in rows if r["model"] == "geo"]
    base = [r for r in rows if r["model"] == "equal_params"]
    for g, b in zip(sorted(geo, key=lambda r: r["k"]), sorted(base, key=lambda r: r["k"])):
        assert abs(int(g["params"]) - int(b["params"])) <= 0.01 * int(g["params"])
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["sessions"]) == 3 and "torch" in m["environment"]
    assert (out / "plot_r2_vs_params.png").stat().st_size > 0


def test_plan_is_stable_and_distinct():
    a = sweep.plan_runs(sweep.PRESETS["gpu"])
    b = sweep.plan_runs(sweep.PRESETS["gpu"])
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert len({r["id"] for r in a}) == len(a)
    assert {r["k"] for r in a} == {4, 8, 16, 32}
