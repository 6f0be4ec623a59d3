"""`archc train`: data loading, the checks before training, a short CPU run whose loss falls,
exact continuation after Ctrl-C or a kill, and a 2-process DDP run with identical replicas."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
Image = pytest.importorskip("PIL.Image")

import archlang  # noqa: E402
from archlang.cli import main  # noqa: E402
from archlang.train import data as train_data  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

# small and quick, with dropout so that the RNG matters to an exact resume
TINY = """network tiny(classes=10):
    input 1x8x8
    conv3x3 8 same > relu > dropout 0.3
    maxpool2x2
    dense classes
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.arch"
    path.write_text(TINY)
    return path


def _archc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archlang", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _weights(run: Path) -> dict:
    return torch.load(run / "model.pt", weights_only=True)


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert list(wa) == list(wb)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# ---- data ----

def test_digits_are_resized_split_and_standardised():
    d = train_data.load("digits", (1, 32, 32), 10)
    assert d.train_x.shape == (1438, 1, 32, 32) and d.val_x.shape == (359, 1, 32, 32)
    assert len(d.classes) == 10 and sorted(set(d.train_y.tolist())) == list(range(10))
    assert abs(d.train_x.mean().item()) < 1e-4 and abs(d.train_x.std().item() - 1) < 1e-3
    again = train_data.load("digits", (3, 16, 16), 10)  # the split never moves
    assert torch.equal(again.val_y, d.val_y) and again.train_x.shape[1:] == (3, 16, 16)
    assert train_data.load("digits", (64,), 10).train_x.shape == (1438, 64)  # an MLP takes 8x8 flattened


@pytest.mark.parametrize("shape, message", [
    ((5, 32, 32), "5-channel images"),
    ((10,), "vector of 10 features"),
])
def test_unusable_inputs_are_refused(shape, message):
    with pytest.raises(train_data.DataError, match=message):
        train_data.load("digits", shape, 10)


def _image_tree(root: Path, per_class: int = 12) -> None:
    """Two classes a network tells apart at once: light squares and dark squares."""
    for label, value in (("dark", 30), ("light", 220)):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (20 + i, 24), (value, value - 10 + i, value)).save(root / label / f"{i}.png")


def test_image_folder_with_and_without_train_val(tmp_path):
    _image_tree(tmp_path / "flat")
    d = train_data.load(str(tmp_path / "flat"), (3, 16, 16), 2)
    assert d.classes == ["dark", "light"] and d.train_x.shape == (19, 3, 16, 16) and len(d.val_y) == 5
    _image_tree(tmp_path / "split" / "train")
    _image_tree(tmp_path / "split" / "val", per_class=3)
    d = train_data.load(str(tmp_path / "split"), (1, 8, 8), 2)
    assert d.train_x.shape == (24, 1, 8, 8) and d.val_x.shape == (6, 1, 8, 8)
    assert d.val_y.tolist() == [0, 0, 0, 1, 1, 1]


def test_bad_folders_give_clear_errors(tmp_path):
    with pytest.raises(train_data.DataError, match="no such folder"):
        train_data.load(str(tmp_path / "missing"), (1, 8, 8), 2)
    (tmp_path / "one" / "cats").mkdir(parents=True)
    with pytest.raises(train_data.DataError, match="only cats/"):
        train_data.load(str(tmp_path / "one"), (1, 8, 8), 2)
    _image_tree(tmp_path / "broken")
    (tmp_path / "broken" / "dark" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(train_data.DataError, match=r"cannot read the image .*bad\.png"):
        train_data.load(str(tmp_path / "broken"), (1, 8, 8), 2)


# ---- checks before training ----

def test_class_mismatch_points_at_the_output_layer(tiny, tmp_path, capsys):
    _image_tree(tmp_path / "two")
    code = main(["train", str(tiny), "--data", str(tmp_path / "two"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{tiny}:5:5: error: the data has 2 classes but tiny ends in 10 outputs" in err
    assert "    dense classes" in err and "^" in err
    assert "hint: train it with --set classes=2" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_run_errors(tiny, tmp_path, capsys):
    assert main(["train", str(tiny), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert main(["train", str(tiny), "--resume", "--out", str(tmp_path / "r")]) == 1
    assert "no checkpoint to resume" in capsys.readouterr().err
    assert main(["train", str(tiny), "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["train", str(tiny), "--epochs", "1", "--out", str(tmp_path / "r")]) == 1
    assert "already holds a training run: continue it with --resume" in capsys.readouterr().err
    assert main(["train", str(tiny), "--resume", "--lr", "0.1", "--out", str(tmp_path / "r")]) == 1
    assert "was started with --lr 0.001" in capsys.readouterr().err
    assert main(["train", str(tiny), "--resume", "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    assert "is complete: it has trained its 1 epoch (--epochs 1 asks for no more)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tiny), "--epochs", "0"])
    assert exit_.value.code == 2


# ---- training ----

def test_short_run_learns_and_writes_its_outputs(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny), "--epochs", "4", "--batch-size", "32", "--out", str(run)]) == 0
    out = capsys.readouterr()
    assert "tiny: 4 epochs, 180 steps" in out.out and f"wrote {run}/" in out.out
    assert "epoch 4/4  train loss" in out.err
    m = json.loads((run / "metrics.json").read_text())
    losses = [r["train_loss"] for r in m["epochs"]]
    assert m["status"] == "complete" and m["steps"] == 4 * 45 and len(losses) == 4
    assert losses[-1] < 0.5 * losses[0] and m["final_val_acc"] > 0.8
    assert (run / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # model.pt is a state_dict for the generated module written beside it
    net = archlang.compile_file(tiny)["tiny"]
    module = net.to_torch()
    module.load_state_dict(_weights(run))
    assert (run / "tiny.py").read_text() == net.source()
    x = train_data.load("digits", (1, 8, 8), 10)
    with torch.no_grad():
        acc = (module.eval()(x.val_x).argmax(1) == x.val_y).float().mean().item()
    assert acc == pytest.approx(m["final_val_acc"], abs=1e-6)


def _interrupt(args: list[str], sig: int) -> int:
    """Starts a run, waits for its first epoch line, then sends `sig`; returns the exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "archlang", *args], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if re.match(r"epoch +1/", line) or time.monotonic() > deadline:
            break
    proc.send_signal(sig)
    proc.stderr.read()
    return proc.wait(timeout=120)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[list[str], Path]:
    """The run the interrupted runs must reproduce, to the last bit of every weight."""
    root = tmp_path_factory.mktemp("uninterrupted")
    (root / "tiny.arch").write_text(TINY)
    common = ["train", str(root / "tiny.arch"), "--epochs", "12", "--batch-size", "16"]
    assert _archc(*common, "--out", str(root / "run")).returncode == 0
    return common, root / "run"


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)])
def test_interrupted_run_resumes_exactly(uninterrupted, tmp_path, sig, code):
    common, reference = uninterrupted
    run = tmp_path / "run"
    assert _interrupt([*common, "--out", str(run)], sig) == code
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)  # whole, never half-written
    assert 1 <= checkpoint["epoch"] < 12
    assert not list(run.glob(".*.tmp"))
    resumed = _archc(*common, "--out", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    ref, got = (json.loads((p / "metrics.json").read_text()) for p in (reference, run))
    assert got["steps"] == ref["steps"] == 12 * 90
    assert [r["train_loss"] for r in got["epochs"]] == [r["train_loss"] for r in ref["epochs"]]
    _assert_same_weights(reference, run)


@pytest.mark.slow
def test_two_process_ddp_ends_with_identical_replicas(tiny, tmp_path):
    run = tmp_path / "ddp"
    result = _archc("train", str(tiny), "--epochs", "2", "--nproc", "2", "--out", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["settings"]["world_size"] == 2
    assert m["steps"] == 2 * 12  # 1,438 images, 64 a step on each of 2 processes
    digests = m["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert "2 processes, weights identical across them" in result.stdout
    assert m["epochs"][-1]["train_loss"] < m["epochs"][0]["train_loss"]


def test_a_full_disk_while_saving_is_an_error_not_a_traceback(tiny, tmp_path, capsys, monkeypatch):
    import errno

    from archlang.train import loop

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(loop, "write_atomic", full)
    assert main(["train", str(tiny), "--epochs", "1", "--data", "synthetic", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "archc: error: cannot write" in err and "No space left on device" in err and "Traceback" not in err


# ---- resuming keeps the run's length; what an interrupted or finished run leaves ----

def _sigint_when(monkeypatch, predicate) -> None:
    """Sends this process a Ctrl-C when the run prints a line for which `predicate` holds
    (the loop's handler then stops the run after the current step, as at a terminal)."""
    import os

    from archlang.train.progress import Progress

    line = Progress.line

    def line_then_stop(self, text):
        line(self, text)
        if predicate(text):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Progress, "line", line_then_stop)


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_resume_keeps_the_runs_epochs_and_a_finished_run_says_so(tiny, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _sigint_when(patch, lambda text: text.startswith("epoch 1/3"))
        assert main(["train", str(tiny), "--epochs", "3", "--out", str(run)]) == 130
    err = capsys.readouterr().err
    assert "stopped at the end of epoch 1" in err and "continue with --resume" in err
    m = _metrics(run)
    assert m["status"] == "interrupted" and len(m["epochs"]) == 1
    assert m["weights"]["model.pt"] == {"epoch": 1, "holds": "the last weights"}

    # the hint's command, as printed: the run goes on to its own 3 epochs, not the default 20
    assert main(["train", str(tiny), "--resume", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "tiny: 3 epochs, 69 steps" in out
    assert _metrics(run)["status"] == "complete" and _metrics(run)["steps"] == 3 * 23

    # a finished run resumed as it was: complete, nothing trained, exit 0
    assert main(["train", str(tiny), "--resume", "--out", str(run)]) == 0
    said = capsys.readouterr().out
    assert f"the run in {run}/ is complete: it has trained its 3 epochs" in said
    assert "resume it with a larger --epochs" in said and _metrics(run)["steps"] == 3 * 23

    # a larger --epochs goes on, and is the run's length from then on
    assert main(["train", str(tiny), "--resume", "--epochs", "4", "--out", str(run)]) == 0
    assert _metrics(run)["steps"] == 4 * 23 and len(_metrics(run)["epochs"]) == 4
    capsys.readouterr()
    assert main(["train", str(tiny), "--resume", "--out", str(run)]) == 0
    assert "it has trained its 4 epochs" in capsys.readouterr().out


def test_fewer_epochs_than_trained_mid_epoch_is_an_error(tiny, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:  # stop in epoch 2, after its 10th step (the log line of step 10)
        from archlang.train.progress import Progress

        step = Progress.step

        def step_then_stop(self, epoch, done, *rest):
            step(self, epoch, done, *rest)
            if (epoch, done) == (1, 10):
                import os

                os.kill(os.getpid(), signal.SIGINT)

        patch.setattr(Progress, "step", step_then_stop)
        assert main(["train", str(tiny), "--epochs", "3", "--out", str(run)]) == 130
    assert "stopped at epoch 2, step 10" in capsys.readouterr().err
    m = _metrics(run)
    assert m["status"] == "interrupted"
    assert m["weights"]["model.pt"] == {"epoch": 2, "step": 10, "holds": "the last weights, saved mid-epoch"}
    assert main(["train", str(tiny), "--resume", "--epochs", "1", "--out", str(run)]) == 1
    assert "has already trained 1 epoch and 10 steps of the next; pass at least --epochs 2" in capsys.readouterr().err


def test_a_second_ctrl_c_leaves_the_status_interrupted(tiny, tmp_path, capsys, monkeypatch):
    from archlang.train import loop

    calls = []
    evaluate = loop.Trainer.evaluate

    def evaluate_then_abort(self, model, autocast):
        calls.append(1)
        if len(calls) == 2:  # as a second Ctrl-C does: KeyboardInterrupt out of the loop
            raise KeyboardInterrupt
        return evaluate(self, model, autocast)

    monkeypatch.setattr(loop.Trainer, "evaluate", evaluate_then_abort)
    assert main(["train", str(tiny), "--epochs", "3", "--out", str(tmp_path / "r")]) == 130
    assert "holds the last saved state" in capsys.readouterr().err
    m = _metrics(tmp_path / "r")
    assert m["status"] == "interrupted" and len(m["epochs"]) == 1


def _accuracy(net, weights: Path, data) -> float:
    module = net.to_torch()
    module.load_state_dict(torch.load(weights, weights_only=True))
    with torch.no_grad():
        return (module.eval()(data.val_x).argmax(1) == data.val_y).float().mean().item()


def test_model_pt_is_the_last_epoch_and_best_pt_the_best(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    # a rate too high for this network: validation accuracy goes up and down, so best != last
    assert main(["train", str(tiny), "--epochs", "5", "--optimizer", "sgd", "--lr", "0.8", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    m = _metrics(run)
    accs = [r["val_acc"] for r in m["epochs"]]
    best = accs.index(max(accs)) + 1
    assert best != 5, accs  # the case this test is about
    assert m["best_epoch"] == best
    assert m["weights"]["model.pt"] == {"epoch": 5, "holds": "the last weights"}
    assert m["weights"]["best.pt"]["epoch"] == best and m["weights"]["best.pt"]["val_acc"] == max(accs)
    assert f"model.pt (the last weights, epoch 5), best.pt (the best validation accuracy, epoch {best})" in out
    # the files hold what metrics.json says: evaluated again here, from the files alone
    net = archlang.compile_file(tiny)["tiny"]
    data = train_data.load("digits", (1, 8, 8), 10)
    assert _accuracy(net, run / "model.pt", data) == pytest.approx(accs[-1], abs=1e-6)
    assert _accuracy(net, run / "best.pt", data) == pytest.approx(max(accs), abs=1e-6)


def test_one_epoch_is_singular(tiny, tmp_path, capsys):
    assert main(["train", str(tiny), "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr()
    assert "; 1 epoch of 23 steps, batch 64," in out.err
    assert "tiny: 1 epoch, 23 steps in" in out.out and "1 epochs" not in out.out + out.err


class _Stream:
    def __init__(self, tty: bool):
        self.text, self._tty = "", tty

    def isatty(self) -> bool:
        return self._tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_progress_draws_a_bar_only_on_a_terminal(tty, monkeypatch):
    from archlang.train import progress

    monkeypatch.setattr(progress, "LOG_EVERY_S", -1.0)  # a log line at every step
    stream = _Stream(tty)
    p = progress.Progress(2, 20, stream=stream)
    for step in range(1, 21):
        p.step(0, step, 1.5, 0.25, 1000.0)
    p.line("epoch 1/2  done")
    has_bar = "█" in stream.text or "·" in stream.text or "\r" in stream.text or "\033" in stream.text
    assert has_bar == tty
    if not tty:
        assert "epoch 1/2 step 10/20  loss 1.5000  acc  25.0%  1,000 img/s\n" in stream.text
        assert stream.text.isascii()


def test_colour_and_grey_conversions_are_said(tmp_path, tiny, capsys):
    _image_tree(tmp_path / "colour")  # RGB files with R, G and B apart
    assert any("in colour and the network takes 1 channel: they are made grey" in n
               for n in train_data.load(str(tmp_path / "colour"), (1, 8, 8), 2).notes)
    assert train_data.load(str(tmp_path / "colour"), (3, 8, 8), 2).notes == []
    for label, value in (("dark", 30), ("light", 220)):  # grey pictures, stored as L and as RGB files
        (tmp_path / "grey" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (10, 10), value + i).save(tmp_path / "grey" / label / f"{i}.png")
            Image.new("RGB", (10, 10), (value,) * 3).save(tmp_path / "grey" / label / f"rgb{i}.png")
    assert train_data.load(str(tmp_path / "grey"), (1, 8, 8), 2).notes == []
    assert any("grey and the network takes 3 channels" in n
               for n in train_data.load(str(tmp_path / "grey"), (3, 8, 8), 2).notes)
    assert train_data.load("digits", (1, 8, 8), 10).notes == []
    assert train_data.load("digits", (3, 8, 8), 10).notes == [
        "digits: the images are grey and the network takes 3 channels: each holds the same grey image"]
    # and the run says it before training
    (tmp_path / "two.arch").write_text(TINY.replace("classes=10", "classes=2"))
    assert main(["train", str(tmp_path / "two.arch"), "--data", str(tmp_path / "colour"), "--epochs", "1",
                 "--out", str(tmp_path / "r")]) == 0
    assert f"note: {tmp_path / 'colour'}: the images are in colour" in capsys.readouterr().err


# ---- optimizers and learning-rate schedules ----

def test_schedules_follow_torchs_own_schedulers():
    from archlang.train.schedule import learning_rate, milestone_steps

    epochs, steps = 4, 10
    total = epochs * steps
    assert milestone_steps("50%,75%", epochs, steps) == [20, 30]
    assert milestone_steps("2.5, 3", epochs, steps) == [25, 30]
    for schedule, reference in (
        ("step", lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[20, 30], gamma=0.1)),
        ("cosine", lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.0)),
        ("constant", lambda opt: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)),
    ):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        scheduler = reference(opt)
        for step in range(total):
            assert learning_rate(schedule, 0.1, step, total, [20, 30]) == pytest.approx(
                scheduler.get_last_lr()[0], rel=1e-9, abs=1e-15), (schedule, step)
            opt.step()
            scheduler.step()
    # hand-computed points
    assert learning_rate("step", 0.1, 19, total, [20, 30]) == 0.1
    assert learning_rate("step", 0.1, 30, total, [20, 30]) == pytest.approx(0.001)
    assert learning_rate("cosine", 0.1, 20, total, []) == pytest.approx(0.05)


@pytest.mark.parametrize("text, message", [
    ("50%,abc", "'abc' is not a share of the run"),
    ("0%", "between 0% and 100%"),
    ("100%", "between 0% and 100%"),
    ("-1", "above 0"),
    ("5,,6", "not a list of milestones"),
])
def test_bad_milestones(text, message):
    from archlang.train.schedule import parse_milestones

    with pytest.raises(ValueError, match=message):
        parse_milestones(text)


def test_milestone_options_on_the_command_line(tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tiny), "--schedule", "step", "--milestones", "5,x", "--out", str(tmp_path / "a")])
    assert exit_.value.code == 2 and "--milestones: 'x' is not a share" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tiny), "--milestones", "50%", "--out", str(tmp_path / "b")])
    assert exit_.value.code == 2 and "--milestones belongs to --schedule step" in capsys.readouterr().err
    assert main(["train", str(tiny), "--schedule", "step", "--milestones", "3", "--epochs", "2",
                 "--out", str(tmp_path / "c")]) == 1
    assert "epoch 3 is not inside the run's 2 epochs" in capsys.readouterr().err


def test_sgd_with_step_decay_as_he_et_al(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny), "--optimizer", "sgd", "--lr", "0.05", "--schedule", "step", "--epochs", "4",
                 "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "SGD lr 0.05 momentum 0.9 weight decay 0.0001, lr ÷10 at epochs 2 and 3" in err
    m = _metrics(run)
    # the rate of each epoch's last step: the milestones fall at the starts of epochs 3 and 4
    assert [r["lr"] for r in m["epochs"]] == pytest.approx([0.05, 0.05, 0.005, 0.0005])
    assert m["settings"]["optimizer"] == "sgd" and m["settings"]["weight_decay"] == 1e-4
    group = torch.load(run / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"][0]
    assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.9, 1e-4, False)
    assert m["epochs"][-1]["train_loss"] < m["epochs"][0]["train_loss"]
    # a resumed run keeps them: another optimizer is refused
    assert main(["train", str(tiny), "--resume", "--epochs", "5", "--optimizer", "adamw", "--out", str(run)]) == 1
    assert "was started with --optimizer sgd" in capsys.readouterr().err


@pytest.mark.parametrize("options", [
    [],
    ["--optimizer", "sgd", "--schedule", "step", "--milestones", "1.5,3"],
    ["--optimizer", "sgd", "--lr", "0.05", "--schedule", "cosine"],
], ids=["adamw", "sgd-step", "sgd-cosine"])
def test_a_run_stopped_mid_epoch_resumes_its_schedule_exactly(options, tiny, tmp_path, capsys, monkeypatch):
    """Stopped in epoch 2 (before the step schedule's first milestone, at step 34 of 92) and
    resumed: the same losses, learning rates and weights, to the bit, as the run never stopped."""
    common = ["train", str(tiny), "--epochs", "4", *options]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    from archlang.train.progress import Progress

    step = Progress.step

    def step_then_stop(self, epoch, done, *rest):
        step(self, epoch, done, *rest)
        if (epoch, done) == (1, 10):
            import os

            os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as patch:
        patch.setattr(Progress, "step", step_then_stop)
        assert main([*common, "--out", str(tmp_path / "stopped")]) == 130
    assert main(["train", str(tiny), "--resume", "--out", str(tmp_path / "stopped")]) == 0
    assert "resuming" in capsys.readouterr().err
    whole, resumed = _metrics(tmp_path / "whole"), _metrics(tmp_path / "stopped")
    assert resumed["steps"] == whole["steps"] == 4 * 23
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert [r[key] for r in resumed["epochs"]] == [r[key] for r in whole["epochs"]], key
    _assert_same_weights(tmp_path / "whole", tmp_path / "stopped")
    if "step" in options:  # the decay really happened inside the run
        assert [r["lr"] for r in whole["epochs"]] == pytest.approx([1e-1, 1e-2, 1e-2, 1e-3])
