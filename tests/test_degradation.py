"""The degradation experiment (archlang.train.degradation, `make degradation`), reduced: two
depths of specs/cifar_resnet.arch, plain and residual, one epoch each, end to end."""

from __future__ import annotations

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from archlang.train import degradation  # noqa: E402
from tests.conftest import SPECS  # noqa: E402


@pytest.fixture
def few_digits(monkeypatch):
    """The digits, cut to 128 training and 64 validation images: 2 steps an epoch at batch 64."""
    import archlang.train as train

    load = train.load

    def first_images(*args):
        d = load(*args)
        return dataclasses.replace(d, train_x=d.train_x[:128], train_y=d.train_y[:128], val_x=d.val_x[:64],
                                   val_y=d.val_y[:64])

    monkeypatch.setattr(train, "load", first_images)


def test_a_reduced_comparison_runs_end_to_end(few_digits, tmp_path, capsys):
    out, png = tmp_path / "runs", tmp_path / "fig.png"
    args = ["--spec", str(SPECS / "cifar_resnet.arch"), "--n", "1,2", "--epochs", "2", "--batch-size", "64",
            "--out", str(out), "--figure", str(png)]
    assert degradation.main(args) == 0
    printed = capsys.readouterr().out
    names = ["plain-8", "resnet-8", "plain-14", "resnet-14"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "table.md"])
    table = (out / "table.md").read_text()
    assert table in printed and f"wrote {png}" in printed
    for name in names:
        m = json.loads((out / name / "metrics.json").read_text())
        # every network trained alike: the same data, seed, optimizer, schedule and steps
        assert m["status"] == "complete" and m["steps"] == 4
        assert {k: m["settings"][k] for k in ("optimizer", "lr", "schedule", "seed", "batch_size")} == {
            "optimizer": "sgd", "lr": 0.05, "schedule": "step", "seed": 0, "batch_size": 64}
        assert [r["lr"] for r in m["epochs"]] == pytest.approx([0.05, 0.0005])  # ÷10 from steps 2 and 3 of 4
        assert m["arguments"]["n"] == (1 if name.endswith("-8") else 2)
        error = 1 - m["epochs"][-1]["train_acc"]
        assert f"| {name} | {name.split('-')[1]} | {m['params']:,} | {error:.2%} |" in table
    plain, residual = (json.loads((out / n / "metrics.json").read_text()) for n in ("plain-14", "resnet-14"))
    # by hand: stem 3*16*9 + 32 (BN); 4 convs 16→16 at 2,304 + 32; 16→32 at 4,608 + 64 and 3 of
    # 32→32 at 9,216 + 64; 32→64 at 18,432 + 128 and 3 of 64→64 at 36,864 + 128; dense 64*10 + 10.
    # Option A shortcuts hold no weights, so plain and residual have the same.
    by_hand = 464 + 4 * 2_336 + 4_672 + 3 * 9_280 + 18_560 + 3 * 36_992 + 650
    assert plain["params"] == residual["params"] == by_hand
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # run again: every run is complete, nothing is trained, the same table is drawn again
    assert degradation.main(args) == 0
    again = capsys.readouterr().out
    assert again.count("is complete") == 4 and (out / "table.md").read_text() == table


def test_bad_depths_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        degradation.main(["--n", "3,x"])
    assert exit_.value.code == 2 and "not a list of whole numbers" in capsys.readouterr().err
