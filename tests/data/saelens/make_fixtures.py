"""Regenerate the SAELens-written fixtures in this folder (run with sae-lens installed).

    python tests/data/saelens/make_fixtures.py      # sae-lens 6.54.12, torch 2.13.0 (CPU)

For each architecture it builds a small SAELens SAE with random (seeded) weights, writes it with
SAELens's own ``save_model`` (cfg.json + sae_weights.safetensors), and stores SAELens's
``encode``/``decode`` outputs on a fixed input in ``expected.safetensors``, so interp's loader is
checked against SAELens itself without SAELens installed.
"""

from pathlib import Path

import sae_lens
import torch
from safetensors.torch import save_file
from sae_lens import (JumpReLUSAE, JumpReLUSAEConfig, JumpReLUTranscoder, JumpReLUTranscoderConfig, StandardSAE,
                      StandardSAEConfig, TopKSAE, TopKSAEConfig, Transcoder, TranscoderConfig)

HERE = Path(__file__).parent
D_IN, D_SAE, D_OUT = 12, 40, 10


def meta(cfg, hook):
    cfg.metadata.model_name = "tiny-llama"
    cfg.metadata.hook_name = hook
    cfg.metadata.context_size = 16
    return cfg


def randomise(sae, gen):
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if name.startswith("b") else 1.0))
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(torch.rand(sae.threshold.shape, generator=gen) * 0.5 + 0.05)


def main():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, D_IN, generator=gen)
    cases = {
        "standard": StandardSAE(meta(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE), "blocks.0.hook_resid_post")),
        "topk": TopKSAE(meta(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5), "blocks.0.hook_resid_post")),
        "topk_rescaled": TopKSAE(meta(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5, rescale_acts_by_decoder_norm=True),
                                      "blocks.0.hook_resid_post")),
        "jumprelu": JumpReLUSAE(meta(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE), "blocks.1.hook_resid_post")),
        "transcoder": Transcoder(meta(TranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, apply_b_dec_to_input=False),
                                      "blocks.0.ln2.hook_normalized")),
        "jumprelu_transcoder": JumpReLUTranscoder(meta(JumpReLUTranscoderConfig(
            d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, apply_b_dec_to_input=False), "blocks.0.ln2.hook_normalized")),
    }
    for name, sae in cases.items():
        if "transcoder" in name:
            sae.cfg.metadata.hook_name_out = "blocks.0.hook_mlp_out"
        randomise(sae, gen)
        sae.save_model(HERE / name)
        with torch.no_grad():
            acts = sae.encode(x)
            save_file({"x": x, "acts": acts, "out": sae.decode(acts)}, HERE / name / "expected.safetensors")
    (HERE / "VERSION").write_text(f"sae-lens {sae_lens.__version__}, torch {torch.__version__}\n")


if __name__ == "__main__":
    main()
