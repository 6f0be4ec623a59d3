"""The `archc import` round-trip table over torchvision's classification models.

    python -m bench.import_table [--outputs-up-to PARAMS] [--markdown] [MODEL ...]

For each model: does it import (archlang.importer.from_torch, built on the meta device), how
many lines is the text, does the text compile to exactly the model's parameters and MACs
(FlopCounterMode / 2 at the model's input size, on the meta device), do the model's
re-randomised weights load into the compiled module (by name with strict load_state_dict, else
by order with archlang.load_weights), and do the outputs agree (1e-4 of scale, eval mode).
Outputs are compared only for models up to --outputs-up-to parameters (default 150M): the
rest needs real weights, which takes minutes on a small machine."""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import archlang
from archlang.importer import from_torch
from archlang.importer.trace import ImportFailure
from tests.torchvision_ref import _no_init, models, rerandomise

SIZES = {"inception_v3": 299, "swin_v2_t": 256, "swin_v2_s": 256, "swin_v2_b": 256}  # input sizes other than 224


def _build(name: str, device: str | None):
    kwargs = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(init_weights=False)  # with their auxiliary heads, torchvision's default
    build = getattr(models, name)
    if device == "meta":
        try:
            with torch.device("meta"):
                return build(**kwargs)
        except NotImplementedError:  # RegNet reads tensor values while it builds
            with _no_init():
                return build(**kwargs)
    return build(**kwargs)


def _macs(model, dims) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.backends.mha.set_fastpath_enabled(False)
    counter = FlopCounterMode(display=False)
    device = next(model.parameters()).device
    with counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        model.eval()(torch.empty(1, *dims, device=device))
    return counter.get_total_flops() // 2


def row(name: str, outputs_up_to: int) -> dict:
    size = SIZES.get(name, 224)
    dims = (3, size, size)
    r = {"model": name, "imports": False, "lines": None, "exact": None, "loads": None, "agree": None, "why": ""}
    meta = _build(name, "meta")
    try:
        text = from_torch(meta, dims, name=name)
    except ImportFailure as err:
        r["why"] = str(err).split("\n")[0]
        return r
    r.update(imports=True, lines=len(text.splitlines()))
    net = archlang.compile(text, f"{name}.arch")[name]
    params = sum(p.numel() for p in meta.parameters())
    r["exact"] = net.params == params and net.macs == _macs(meta, dims)
    if params > outputs_up_to:
        r["why"] = "outputs not compared (large)"
        return r
    torch.manual_seed(0)
    reference = rerandomise(_build(name, None)).eval()
    generated = net.to_torch().eval()
    try:
        generated.load_state_dict(reference.state_dict())
        r["loads"] = "by name"
    except RuntimeError:
        try:
            archlang.load_weights(generated, reference.state_dict())
            r["loads"] = "by order"
        except archlang.WeightsMismatch as err:
            r["loads"] = False
            r["why"] = str(err)[:120]
            return r
    small = 64 if not name.startswith(("vit", "swin", "maxvit", "inception")) else size
    x = torch.randn(2, 3, small, small, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), generated(x)
    try:
        torch.testing.assert_close(got, expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)
        r["agree"] = True
    except AssertionError as err:
        r["agree"] = False
        r["why"] = " ".join(str(err).split("\n")[:2])[:120]
    return r


def _cell(v) -> str:
    if v is True or v is False or v is None:
        return {True: "yes", False: "no", None: "–"}[v]
    return str(v)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--outputs-up-to", type=float, default=150e6)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    names = args.models or models.list_models(module=models)
    rows = []
    for name in names:
        t = time.time()
        try:
            r = row(name, int(args.outputs_up_to))
        except Exception as err:  # noqa: BLE001 - a row, not a crash: the table says what failed
            r = {"model": name, "imports": False, "lines": None, "exact": None, "loads": None, "agree": None,
                 "why": f"{type(err).__name__}: {str(err).splitlines()[0][:100]}"}
        r["seconds"] = round(time.time() - t, 1)
        rows.append(r)
        print(f"{name:24} {_cell(r['imports']):4} {str(r['lines'] or ''):>4} {_cell(r['exact']):4} "
              f"{_cell(r['loads']):9} {_cell(r['agree']):4} {r['seconds']:6}s {r['why']}", file=sys.stderr, flush=True)
    n = len(rows)
    counts = {k: sum(1 for r in rows if r[k] not in (None, False)) for k in ("imports", "exact", "loads", "agree")}
    if args.markdown:
        print("| model | imports | lines | params & MACs exact | weights load | outputs agree | note |")
        print("| --- | --- | ---: | --- | --- | --- | --- |")
        for r in rows:
            why = r["why"].replace("|", "\\|")
            print(f"| {r['model']} | {_cell(r['imports'])} | {r['lines'] or ''} | {_cell(r['exact'])} | "
                  f"{_cell(r['loads'])} | {_cell(r['agree'])} | {why} |")
        print()
    print(f"{n} models: {counts['imports']} import, {counts['exact']} compile exact, {counts['loads']} load, "
          f"{counts['agree']} agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
