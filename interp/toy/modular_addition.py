"""A one-layer transformer trained on modular addition, as a test bed for LIB.

Task (Nanda et al. 2023, "Progress measures for grokking via mechanistic
interpretability"; used by Bushnaq et al. 2024 for LIB): the input is the three tokens
``a b =`` (``=`` has id ``p``), the target ``(a + b) mod p``, read at the last position.

Model: token + learned position embedding (d_model), one attention layer (n_heads, no
layer norm, as in Nanda's model), a ReLU MLP (d_mlp), unembedding to ``p`` logits.  Only
the last position's residual is read out, so attention is computed for the last query
only and the MLP runs at the last position only (what the other positions would compute
never reaches the logits).

The model exposes the LIB node layers as a chain (:meth:`ModAddTransformer.chain`):

=========  =======================================  ===============
node       activation                               shape
=========  =======================================  ===============
``ln1.0``  residual stream before attention         ``[N, 3, d_model]``
``ln2.0``  residual after attention, last position  ``[N, d_model]``
``unembed`` residual after the MLP, last position   ``[N, d_model]``
``output`` logits                                   ``[N, p]``
=========  =======================================  ===============

Training: full batch AdamW (lr 3e-3, weight decay 1.0, betas 0.9/0.98) on a random 50%
of the ``p^2`` pairs until accuracy on all pairs reaches ``target_acc``.  (The LIB paper
trains on 30%; there grokking took 2,000 to 6,000+ steps here depending on the seed, too
slow for two shared CPU cores, while 50% generalises within a few hundred steps.)
Weights are cached as safetensors under ``$INTERP_CACHE/toy`` (default
``~/.cache/interp/toy``) keyed by the config, so tests and benchmarks reuse them.

LIB against PCA on it (:func:`lib_vs_pca`, ``interp lib --model modadd-p113``): both bases fitted
on ``n_fit`` random pairs, then per node layer the fewest nodes (scored on all pairs) and edges
(on ``n_eval`` pairs; one forward per output node) that keep 99% of the accuracy.  Bushnaq et
al. 2024 report (5 seeds, edges ln1 / ln2 / unembed) LIB 86.6 / 74.0 / 634.2 vs PCA 117.4 / 85.2 /
662.6; ours trains on 50% of pairs, centres instead of folding biases and measures on subsets,
so the counts are comparable in kind, not digit for digit.

Memory: ~230k parameters (d_model 128, d_mlp 512); the full dataset is ``p^2 x 3`` tokens.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from interp.decompositions.lib import LIBConfig, fit_lib, run_chain
from interp.decompositions.lib_ablation import min_edges, min_nodes
from interp.decompositions.results import LIBComparison, spectra
from interp.results import check_fields, encode, versions


@dataclass(frozen=True)
class ModAddConfig:
    """Model and training settings of the modular-addition toy."""

    p: int = 113
    """Modulus (also the number of answer tokens); the ``=`` token has id ``p``."""
    d_model: int = 128
    """Residual width."""
    n_heads: int = 4
    """Attention heads (d_head = d_model / n_heads)."""
    d_mlp: int = 512
    """MLP hidden width."""
    train_frac: float = 0.5
    """Fraction of the p^2 pairs used for training."""
    lr: float = 3e-3
    """AdamW learning rate."""
    weight_decay: float = 1.0
    """AdamW weight decay (drives grokking)."""
    max_steps: int = 6000
    """Maximum full-batch steps."""
    target_acc: float = 0.999
    """Training stops once accuracy over all p^2 pairs reaches this."""
    seed: int = 0
    """Seed for the split and the initialisation."""

    def __post_init__(self):
        check_fields(self, at_least={"p": 2})
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if not 0 < self.train_frac <= 1:
            raise ValueError(f"ModAddConfig.train_frac must be in (0, 1], got {self.train_frac}")


def dataset(p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs: tokens ``[p^2, 3]`` (a, b, =) and labels ``[p^2]`` = (a + b) mod p."""
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).T  # a = 0 0 .. 1 1 .., b = 0 1 .. 0 1 ..
    return torch.stack([a, b, torch.full_like(a, p)], 1), (a + b) % p


class ModAddTransformer(nn.Module):
    """One attention layer + ReLU MLP, no layer norm; logits at the last position."""

    def __init__(self, cfg: ModAddConfig):
        super().__init__()
        self.cfg = cfg
        d, p, m = cfg.d_model, cfg.p, cfg.d_mlp
        # (shape, fan-in) of each weight, in the order the initialisation draws them; biases start at 0
        shapes = {"W_E": ((p + 1, d), d), "W_pos": ((3, d), d), "W_Q": ((d, d), d), "W_K": ((d, d), d),
                  "W_V": ((d, d), d), "W_O": ((d, d), d), "W_in": ((d, m), d), "b_in": ((m,), 0),
                  "W_out": ((m, d), m), "b_out": ((d,), 0), "W_U": ((d, p), d)}
        for name, (shape, fan_in) in shapes.items():
            init = torch.randn(shape) / fan_in**0.5 if fan_in else torch.zeros(shape)
            setattr(self, name, nn.Parameter(init))

    # the chain of node layers -------------------------------------------------------
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``ln1.0``: residual before attention ``[N, 3, d]``."""
        return self.W_E[tokens] + self.W_pos

    def attn(self, resid: torch.Tensor) -> torch.Tensor:
        """``ln1.0 -> ln2.0``: add attention output at the last position ``[N, 3, d] -> [N, d]``."""
        N, H = resid.shape[0], self.cfg.n_heads
        q, k, v = ((x @ W).view(N, x.shape[1], H, -1).transpose(1, 2)  # [N, H, T, d_head]; q: last position
                   for x, W in ((resid[:, -1:], self.W_Q), (resid, self.W_K), (resid, self.W_V)))
        z = nn.functional.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(dh)) v: [N, H, 1, dh]
        return resid[:, -1] + z.reshape(N, -1) @ self.W_O

    def mlp(self, resid_mid: torch.Tensor) -> torch.Tensor:
        """``ln2.0 -> unembed``: add the ReLU MLP output ``[N, d] -> [N, d]``."""
        return resid_mid + torch.relu(resid_mid @ self.W_in + self.b_in) @ self.W_out + self.b_out

    def unembed(self, resid_post: torch.Tensor) -> torch.Tensor:
        """``unembed -> output``: logits ``[N, d] -> [N, p]``."""
        return resid_post @ self.W_U

    def chain(self) -> tuple[list[str], list]:
        """Node-layer names and the maps between consecutive node layers (for LIB)."""
        return ["ln1.0", "ln2.0", "unembed", "output"], [self.attn, self.mlp, self.unembed]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.unembed(self.mlp(self.attn(self.embed(tokens))))


def accuracy_on(labels: torch.Tensor):
    """The metric ``logits -> accuracy`` against ``labels`` (also what the LIB ablations score)."""
    return lambda logits: (logits.argmax(-1).cpu() == labels).double().mean().item()


@torch.no_grad()
def accuracy(model: ModAddTransformer, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy over ``tokens`` in one batch (all p = 113 pairs: 12769 x d_mlp activations)."""
    return accuracy_on(labels)(model(tokens.to(model.W_E.device)))


def train(cfg: ModAddConfig, device: str | None = None, verbose: bool = False):
    """Train from scratch, logging every 100 steps; returns ``(model, log)``, the log a dict of ``steps``
    (full-batch steps taken), ``seconds`` (wall time), ``train_acc`` / ``test_acc`` (accuracy on the training /
    held-out pairs; ``test_acc`` None when ``train_frac`` = 1), ``all_acc`` (over all p^2 pairs) and ``history`` (step, loss,
    test_acc, all_acc every 100 steps)."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    dev = torch.device(device or "cpu")
    X, Y = dataset(cfg.p)
    perm = torch.randperm(len(X), generator=g)
    n_train = max(1, int(cfg.train_frac * len(X)))
    tr, te = perm[:n_train], perm[n_train:]
    model = ModAddTransformer(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    Xtr, Ytr = X[tr].to(dev), Y[tr].to(dev)
    t0, history, step = time.perf_counter(), [], 0
    for step in range(1, cfg.max_steps + 1):
        loss = nn.functional.cross_entropy(model(Xtr), Ytr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0:
            all_acc = accuracy(model, X, Y)
            test_acc = accuracy(model, X[te], Y[te]) if len(te) else all_acc
            history.append({"step": step, "loss": loss.item(), "test_acc": test_acc, "all_acc": all_acc})
            if verbose:
                print(f"step {step} loss {loss.item():.4f} test {test_acc:.4f} all {all_acc:.4f}", flush=True)
            if all_acc >= cfg.target_acc:
                break
    model.eval().requires_grad_(False)
    log = dict(steps=step, seconds=time.perf_counter() - t0, train_acc=accuracy(model, X[tr], Y[tr]),
               test_acc=accuracy(model, X[te], Y[te]) if len(te) else None,
               all_acc=accuracy(model, X, Y), history=history)
    return model, log


def load_or_train(cfg: ModAddConfig | None = None, device: str | None = None,
                  verbose: bool = False) -> tuple[ModAddTransformer, dict]:
    """The trained model for ``cfg`` from the safetensors cache, training (and caching) it if absent.

    Returns ``(model, meta)`` where ``meta`` holds the config and the training log of :func:`train`.
    """
    from safetensors.torch import load_file, save_file

    from interp.models.gguf import cache_root

    cfg = cfg or ModAddConfig()
    key = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / "toy" / f"modadd-p{cfg.p}-{key}.safetensors"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        model = ModAddTransformer(cfg)
        model.load_state_dict(load_file(str(path)))
        model.eval().requires_grad_(False)
        return model.to(device or "cpu"), json.loads(meta_path.read_text())
    model, log = train(cfg, device=device, verbose=verbose)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
    meta = {"config": asdict(cfg), "train": log}
    meta_path.write_text(json.dumps(meta, indent=2))
    return model, meta


def lib_vs_pca(cfg: ModAddConfig | None = None, n_fit: int = 600, n_eval: int = 500, split_seed: int = 0,
               verbose: bool = False):
    """LIB and PCA on the trained model's chain: a :class:`~interp.decompositions.results.LIBComparison`
    with the nodes and edges each basis needs for 99% of the accuracy (module docstring); ``split_seed`` draws
    the ``n_fit`` and ``n_eval`` inputs (``cfg.seed`` trains the model)."""
    cfg = cfg or ModAddConfig()
    model, meta = load_or_train(cfg, verbose=verbose)
    model = model.double()
    X, Y = dataset(cfg.p)
    names, maps = model.chain()
    g = torch.Generator().manual_seed(split_seed)
    fit_idx, eval_idx = torch.randperm(len(X), generator=g)[:n_fit], torch.randperm(len(X), generator=g)[:n_eval]
    acts_all = run_chain(model.embed(X), maps)
    acts_fit, acts_eval = [a[fit_idx] for a in acts_all], [a[eval_idx] for a in acts_all]
    acc_all, acc_eval = accuracy_on(Y), accuracy_on(Y[eval_idx])

    base = acc_all(acts_all[-1])
    target_all, target_eval = 0.99 * base, 0.99 * acc_eval(acts_eval[-1])
    fits = {b: fit_lib(acts_fit[0], maps, names, LIBConfig(basis=b), acts=acts_fit) for b in ("lib", "pca")}
    rows = []
    for l in range(len(maps)):
        row = {"layer": names[l]}
        for basis, res in fits.items():
            row[f"{basis}_kept"] = res.bases[l].k
            row[f"{basis}_nodes"] = asdict(min_nodes(res, maps, acts_all, l, acc_all, target_all))
            row[f"{basis}_edges"] = asdict(min_edges(res, maps, acts_eval, l, acc_eval, target_eval))
        rows.append(row)
        if verbose:
            print(row, flush=True)
    return LIBComparison(model=f"modular addition p={cfg.p}", names=list(names), lib=encode(fits["lib"].to_json(top=12)),
                         pca=encode(fits["pca"].to_json(top=12)), spectra={b: spectra(r) for b, r in fits.items()},
                         ablation=encode(rows), accuracy=base, target=target_all,
                         settings={"model": encode(asdict(cfg)), "n_fit": n_fit, "n_eval": n_eval,
                                   "split_seed": split_seed},
                         notes="Node ablations are scored on all p^2 pairs, edge ablations on the n_eval pairs; "
                               "removed nodes and edges are mean-ablated.",
                         meta={"train": meta["train"] | {"history": None}, "versions": versions()})
