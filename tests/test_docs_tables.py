"""scripts/docs_tables.py: docs/results.md's tables from summary.json files, and Holm's
adjustment over a family of contrasts picked from several summaries (hand-computed values)."""

from __future__ import annotations

import json

import pytest

from tests.scripts import load_script

docs_tables = load_script("docs_tables")

NUMBERS = ("best_accuracy", "last_accuracy", "corrupted_mean", "noise_mean", "last_ece",
           "last_nll")


def row(method, baseline=None, *, delta=0.5, p=0.01, holm=0.02):
    r = {"method": method, "seeds": 3}
    for key in NUMBERS:
        r |= {f"{key}_mean": 70.0 if "acc" in key or "mean" in key else 0.1,
              f"{key}_std": 0.25}
    if baseline:
        r |= {"baseline": baseline, "test": "paired"}
        for key in NUMBERS:
            r |= {f"{key}_delta": delta, f"{key}_delta_low": delta - 1,
                  f"{key}_delta_high": delta + 1, f"{key}_delta_p": p,
                  f"{key}_delta_p_holm": holm, f"{key}_delta_n": 3,
                  f"{key}_delta_n_baseline": 3}
    return r


def write(tmp_path, name, rows):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"rows": rows}))
    return str(path)


def test_means_and_deltas_tables(tmp_path, capsys):
    mtkd = row("mtkd", "kd", p=0.3, holm=0.6) | {"best_accuracy_delta_n": 2}  # a NaN seed
    path = write(tmp_path, "s", [row("kd"), row("tgd", "kd", delta=-0.25, p=0.004, holm=0.012),
                                 mtkd])
    assert docs_tables.main(["means", path, "--rows", "tgd"]) == 0
    means = capsys.readouterr().out.splitlines()
    assert means[2] == ("| tgd | 3 | 70.00 ± 0.25 | 70.00 ± 0.25 | 0.1000 ± 0.2500 | "
                        "0.10 ± 0.25 | 70.00 ± 0.25 | 70.00 ± 0.25 |")
    assert docs_tables.main(["deltas", path]) == 0
    tgd, mtkd_line = capsys.readouterr().out.splitlines()[2:]
    # bold where Holm < 0.05; numbers' minus signs typeset (−), an exponent's kept
    assert tgd.startswith("| tgd − kd | **−0.25 [−1.25, +0.75], p = 0.004, Holm 0.012** |")
    assert "−0.2500 [−1.2500, +0.7500]" in tgd  # ECE with 4 decimals
    assert mtkd_line.startswith("| mtkd − kd | +0.50 [−0.50, +1.50], p = 0.3, Holm 0.6, n=2/3 | "
                                "+0.50 [−0.50, +1.50], p = 0.3, Holm 0.6 |")
    with pytest.raises(SystemExit, match=r"no row\(s\) \['gone'\]"):
        docs_tables.main(["means", path, "--rows", "gone"])


def test_contrasts_are_holm_adjusted_over_the_contrasts_picked(tmp_path, capsys):
    a = write(tmp_path, "vs_kd", [row("kd"), row("x", "kd", p=0.01, holm=0.5)])
    b = write(tmp_path, "vs_x", [row("x"), row("y", "x", p=0.04, holm=0.5),
                                 row("z", "x", p=0.03, holm=0.5)])
    assert docs_tables.main(["contrasts", f"{a}:x", f"{b}:y", f"{b}:z"]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    # Holm over m = 3: sorted p 0.01, 0.03, 0.04 -> 3·0.01, max(0.03, 2·0.03), max(0.06, 0.04)
    assert [line.split(" | ")[0] for line in lines] == ["| x − kd", "| y − x", "| z − x"]
    assert "p = 0.01, Holm 0.03**" in lines[0]
    assert "p = 0.04, Holm 0.06 |" in lines[1]
    assert "p = 0.03, Holm 0.06 |" in lines[2]
    with pytest.raises(SystemExit, match="was not compared with a baseline"):
        docs_tables.main(["contrasts", f"{a}:kd"])


def write_evals(runs, name, values):
    """``runs/<name>/seed<k>/eval.json`` whose every number is ``values[k]``."""
    for seed, v in enumerate(values):
        metrics = {"accuracy": v, "ece": v, "nll": v}
        sweep = [{"corruption": "clean", "severity": 0, "sigma": None, "accuracy": v},
                 {"corruption": "gaussian_noise", "severity": 1, "sigma": None, "accuracy": v},
                 {"corruption": "gaussian_noise_sigma", "severity": None, "sigma": 0.1,
                  "accuracy": v}]
        folder = runs / name / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "eval.json").write_text(json.dumps({"best": metrics, "last": metrics,
                                                      "sweep": sweep}))


def test_an_interaction_is_a_difference_of_differences_paired_by_seed(tmp_path, capsys):
    """(A − B) − (C − D) per seed = [1, 2, 2] − [0, 1, 0] = [1, 1, 2]: mean 4/3, standard error
    1/3, t = 4 on 2 degrees of freedom: 95 % CI 4/3 ± 4.302653 / 3, p = 1 − 4 / √18 (the t
    distribution with 2 degrees of freedom has F(t) = 1/2 + t / (2 √(t² + 2)))."""
    runs = tmp_path / "runs"
    for name, values in (("a", [80, 81, 82]), ("b", [79, 79, 80]), ("c", [78, 78, 78]),
                         ("d", [78, 77, 78])):
        write_evals(runs, name, values)
    row, base = docs_tables.interaction_pair(runs, ["a", "b", "c", "d"])
    assert (row["method"], base["method"], row["seeds"]) == ("(a − b)", "(c − d)", 3)
    for key in NUMBERS:
        assert row[f"{key}_delta"] == pytest.approx(4 / 3)
        assert row[f"{key}_delta_high"] - 4 / 3 == pytest.approx(4.302653 / 3, abs=1e-6)
        assert row[f"{key}_delta_p"] == pytest.approx(1 - 4 / 18 ** 0.5)
        assert row[f"{key}_delta_p_holm"] == row[f"{key}_delta_p"]  # one test
    assert docs_tables.main(["interaction", str(runs), "a", "b", "c", "d"]) == 0
    assert "| (a − b) − (c − d) | +1.33 [−0.10, +2.77], p = 0.057" in capsys.readouterr().out

    (runs / "d" / "seed1" / "eval.json").unlink()
    (runs / "d" / "seed2" / "eval.json").unlink()
    with pytest.raises(SystemExit, match=r"share 1 evaluated seed\(s\)"):
        docs_tables.interaction_pair(runs, ["a", "b", "c", "d"])
