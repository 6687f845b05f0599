"""What an activation store holds, as a typed result (kind ``store``): :func:`summarize_store`.

Besides the manifest (model, hooks, rows, shards, dtype, corpus) it records the integrity check that
was run (file sizes always, the CRC-32 of every shard file with ``verify=True``) and the L2 norm of
the rows of each hook on ``n_norm_rows`` rows spread evenly over the store: a store whose norms are
nan, zero or wildly larger than its neighbours' (an fp16 overflow, a wrong hook) shows it at once.
Cost: the CRC pass reads every byte once; the norms read ``n_norm_rows`` rows per hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from interp.results import Result, register, versions

@register
@dataclass
class StoreSummary(Result):
    """An activation store: manifest, integrity status and row norms per hook."""

    kind: ClassVar[str] = "store"
    axes: ClassVar[dict[str, str]] = {"hooks": "hook", "norms.mean": "row L2 norm",
                                      "shards#0": "shard", "shards": "rows"}

    path: str
    model: str
    weight_hash: str
    hooks: dict
    """``{hook: {d, row_shape}}``."""
    dtype: str
    n_rows: int
    """Rows (tokens) stored per hook."""
    n_rows_target: int
    complete: bool
    context_length: int
    shard_rows: int
    """Rows per full shard."""
    bytes: int
    corpus: str
    prepend_bos: bool | None = None
    skip_bos: bool | None = None
    created: str | None = None
    verify: dict | None = None
    """``{files, bytes, ok}`` after a CRC-32 check of every file; None when only sizes were checked."""
    norms: dict = field(default_factory=dict)
    """``{hook: {rows, mean, median, p99, max, nonfinite}}``: L2 norms of rows spread over the store."""
    shards: list[int] = field(default_factory=list)
    """Rows in each shard, in order."""
    last_run: dict = field(default_factory=dict)
    """The last caching run (rows written, seconds) from the manifest."""
    meta: dict = field(default_factory=dict)

    def summary(self) -> str:
        state = "complete" if self.complete else f"PARTIAL ({self.n_rows:,} of {self.n_rows_target:,} rows)"
        check = (f"the CRC-32 of all {self.verify['files']} files matches" if self.verify
                 else "file sizes match the manifest (CRC-32 not checked)")
        norms = "; ".join(f"{h} {v['mean']:.3g}" + (f" ({v['nonfinite']} non-finite rows)" if v["nonfinite"] else "")
                          for h, v in self.norms.items())
        size = f"{self.bytes / 2**20:.1f} MiB" if self.bytes >= 2**20 else f"{self.bytes / 2**10:.1f} KiB"
        run = self.last_run
        return (f"The store is {state}: {self.n_rows:,} rows x {len(self.hooks)} hook(s) of {self.model} "
                f"({self.dtype}, {size} in {len(self.shards)} shards); {check}."
                + (f" Mean row L2 norm: {norms}." if norms else "")
                + (f" The last caching run wrote {run['rows']:,} rows in {run['seconds']:.1f} s."
                   if run.get("rows") and run.get("seconds") else ""))

    def report(self):
        from interp.reports import Report
        from interp.reports.figures import grouped_bars

        r = Report.of(self, f"Activation store: {self.path}", weight_hash=self.weight_hash)
        if self.norms:
            hs = list(self.norms)
            r.add_section("Row norms per hook")
            fig = grouped_bars("", hs, {s: [self.norms[h][s] for h in hs] for s in ("mean", "p99")},
                               self.axes["hooks"], self.axes["norms.mean"]).fig
            r.add_figure(fig.update_yaxes(type="log"), title="Row L2 norm per hook", fields=("hooks", "norms.mean"),
                         caption=f"Mean and 99th percentile of the L2 norm of {self.norms[hs[0]]['rows']} rows per "
                                 "hook, spread evenly over the store (log scale).")
        r.add_section("Contents and integrity")
        r.add_table("Hooks", [{"hook": h, "d": v["d"], "row shape": str(tuple(v["row_shape"])),
                               **self.norms.get(h, {})} for h, v in self.hooks.items()])
        if len(self.shards) > 1:
            r.add_bars("Rows per shard", None, {"": self.shards}, x_title=self.axes["shards#0"],
                       y_title=self.axes["shards"], fields=("shards#0", "shards"),
                       caption=f"Full shards hold {self.shard_rows:,} rows; a short last shard is a partial run "
                               "or the end of the budget.")
        r.add_table("Manifest", {"corpus": self.corpus, "context length": self.context_length,
                                 "prepend BOS": self.prepend_bos, "skip BOS": self.skip_bos,
                                 "created": self.created, "verified": self.verify or "sizes only",
                                 **{f"last run {k}": v for k, v in self.last_run.items()}})
        return r


@torch.no_grad()
def summarize_store(store, verify: bool = False, n_norm_rows: int = 2048) -> StoreSummary:
    """The :class:`StoreSummary` of an open :class:`~interp.store.ActivationStore`; ``verify`` checks
    every file's CRC-32 (raises :class:`~interp.store.CorruptShardError` on the first bad one)."""
    checked = store.verify() if verify else None
    norms = {}
    m = min(n_norm_rows, store.n_rows)
    idx = torch.linspace(0, store.n_rows - 1, m).round().long().unique()
    for h in store.hooks if m else ():
        n = store.rows(h, idx).double().norm(dim=-1)
        fin = n.where(n.isfinite(), torch.nan)  # the nan-aware statistics skip the non-finite rows
        norms[h] = {"rows": n.numel(), "mean": float(fin.nanmean()), "median": float(fin.nanmedian()),
                    "p99": float(fin.nanquantile(0.99)), "max": float(fin.nanquantile(1.0)),
                    "nonfinite": int(fin.isnan().sum())}
    m = store.manifest
    return StoreSummary(
        **{k: m.get(k) for k in ("model", "weight_hash", "n_rows_target", "context_length", "corpus",
                                 "prepend_bos", "skip_bos", "created")},
        path=str(store.path), dtype=store.dtype, n_rows=store.n_rows, complete=store.complete,
        hooks={h: {"d": store.d(h), "row_shape": list(store.row_shape(h))} for h in store.hooks},
        shard_rows=store.shard_rows, bytes=store.nbytes(), verify=checked, norms=norms,
        shards=[s["rows"] for s in store.shards], last_run=m.get("last_run", {}),
        meta={"versions": versions()})
