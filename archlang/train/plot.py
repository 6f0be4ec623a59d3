"""metrics.png: training and validation loss and accuracy against the epoch (matplotlib, Agg)."""

from __future__ import annotations

import io
from pathlib import Path

from archlang.backends.files import write_atomic


def plot_metrics(history: list[dict], path: Path, title: str, write=write_atomic) -> Path | None:
    """Draws the curves; returns None (and draws nothing) without matplotlib or without epochs."""
    if not history:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        return None
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    loss, acc = fig.subplots(1, 2)
    loss.plot(epochs, [r["train_loss"] for r in history], marker=".", label="train")
    loss.plot(epochs, [r["val_loss"] for r in history], marker=".", label="validation")
    loss.set(xlabel="epoch", ylabel="cross-entropy loss", title=f"{title}: loss")
    acc.plot(epochs, [100 * r["train_acc"] for r in history], marker=".", label="train")
    acc.plot(epochs, [100 * r["val_acc"] for r in history], marker=".", label="validation")
    acc.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{title}: accuracy")
    best = max(history, key=lambda r: r["val_acc"])
    acc.annotate(f"best {100 * best['val_acc']:.1f}%", (best["epoch"], 100 * best["val_acc"]),
                 textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    for ax in (loss, acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write(path, buf.getvalue())
    return path
