"""SAELens on-disk format: files written by SAELens itself load and compute what SAELens computed."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp.dictionaries.base import SAEConfig
from interp.dictionaries.registry import make
from interp.dictionaries.saelens_io import SAELensFormatError, load_sae, save_sae

FIX = Path(__file__).parent / "data" / "saelens"
CASES = ["standard", "topk", "topk_rescaled", "jumprelu", "transcoder", "jumprelu_transcoder"]


@pytest.mark.parametrize("name", CASES)
def test_load_file_written_by_saelens(name):
    """Fixtures from tests/data/saelens/make_fixtures.py: SAELens's save_model + its encode/decode outputs."""
    sae = load_sae(FIX / name)
    exp = load_file(FIX / name / "expected.safetensors")
    with torch.no_grad():
        code = sae.encode(exp["x"])
        # SAELens' own encode recorded: float32, same formula, another op order: 84 eps32
        torch.testing.assert_close(code.acts, exp["acts"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sae(exp["x"]), exp["out"], rtol=1e-5, atol=1e-5)
    assert sae.cfg.is_transcoder == ("transcoder" in name)
    if "transcoder" in name:
        assert sae.cfg.hook_out == "blocks.0.hook_mlp_out"


@pytest.mark.parametrize("arch,transcoder", [("relu", False), ("topk", False), ("jumprelu", False),
                                             ("relu", True), ("jumprelu", True), ("topk", True)])
def test_round_trip(tmp_path, arch, transcoder):
    cfg = SAEConfig(arch=arch, d_in=8, d_sae=24, k=3, hook_in="blocks.1.hook_resid_post", model_name="tiny-llama",
                    d_out=6 if transcoder else None, hook_out="blocks.1.hook_mlp_out" if transcoder else None)
    torch.manual_seed(0)
    sae = make(cfg)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_sae(sae, tmp_path / "s")
    cj = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert set(load_file(tmp_path / "s" / "sae_weights.safetensors")) >= {"W_enc", "W_dec", "b_enc", "b_dec"}
    assert cj["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    assert cj["metadata"]["sae_lens_version"] >= "6"  # else SAELens reads it as a pre-6.0 config
    back = load_sae(tmp_path / "s")
    assert back.cfg == cfg
    for (n, p), (n2, p2) in zip(sae.state_dict().items(), back.state_dict().items()):
        assert n == n2
        # a float32 save/load is exact in principle: 1e-6 = 8 eps32 of slack
        torch.testing.assert_close(p, p2, rtol=1e-6, atol=1e-7)
    x = torch.randn(5, 8)
    torch.testing.assert_close(sae(x), back(x))  # defaults (float32): the same weights


def test_pre6_config_and_b_dec_not_applied(tmp_path):
    """An old-style cfg (hook_point, activation_fn_str) with apply_b_dec_to_input=false is folded exactly."""
    g = torch.Generator().manual_seed(1)
    w = {"W_enc": torch.randn(6, 10, generator=g), "W_dec": torch.randn(10, 6, generator=g),
         "b_enc": torch.randn(10, generator=g), "b_dec": torch.randn(6, generator=g)}
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": 6, "d_sae": 10, "hook_point": "blocks.0.hook_resid_pre",
                                                    "activation_fn_str": "relu", "apply_b_dec_to_input": False,
                                                    "model_name": "gpt2", "normalize_activations": False}))
    save_file(w, tmp_path / "sae_weights.safetensors")
    sae = load_sae(tmp_path)
    x = torch.randn(4, 6, generator=g)
    want = torch.relu(x @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]  # definition, b_dec not subtracted
    torch.testing.assert_close(sae(x), want, rtol=1e-5, atol=1e-5)  # float32 formula vs module: 84 eps32
    assert sae.cfg.hook_in == "blocks.0.hook_resid_pre"
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "normalize_activations": True}))  # normalised
    with pytest.raises(SAELensFormatError, match="normalize_activations=True has no exact interp equivalent"):
        load_sae(tmp_path)
    # an SAE of one head (pre-6.0 hook_point_head_index; 6.0 metadata.hook_head_index) is refused, not read as
    # an SAE of the whole hook; head 0 counts (a truthiness check would let it through)
    for extra in ({"hook_point_head_index": 0}, {"metadata": {"hook_head_index": 3}}):
        (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "normalize_activations": False, **extra}))
        with pytest.raises(SAELensFormatError, match="reads one attention head"):
            load_sae(tmp_path)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cfg.json is missing"):
        load_sae(tmp_path)
    (tmp_path / "cfg.json").write_text("{not json")
    with pytest.raises(SAELensFormatError, match="not valid JSON"):
        load_sae(tmp_path)
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "gated", "d_in": 4, "d_sae": 8, "metadata": {"a": 1}}))
    with pytest.raises(SAELensFormatError, match="architecture 'gated' is not supported"):
        load_sae(tmp_path)
    cfg = {"architecture": "standard", "d_in": 4, "d_sae": 8, "normalize_activations": "layer_norm", "metadata": {"a": 1}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SAELensFormatError, match="normalize_activations='layer_norm'"):
        load_sae(tmp_path)
    cfg["normalize_activations"] = "none"
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    save_file({"W_enc": torch.zeros(4, 8), "W_dec": torch.zeros(8, 5), "b_enc": torch.zeros(8), "b_dec": torch.zeros(4)},
              tmp_path / "sae_weights.safetensors")
    with pytest.raises(SAELensFormatError, match=r"W_dec has shape \(8, 5\)"):
        load_sae(tmp_path)


SAELENS_PY = Path(os.environ.get("INTERP_SAELENS_PYTHON", "/work/venv-saelens/bin/python"))


@pytest.mark.slow
@pytest.mark.skipif(not SAELENS_PY.exists(), reason="no Python with sae-lens (set INTERP_SAELENS_PYTHON)")
@pytest.mark.parametrize("arch,transcoder", [("relu", False), ("topk", False), ("jumprelu", False), ("relu", True)])
def test_saelens_itself_loads_our_files(tmp_path, arch, transcoder):
    """SAELens's own SAE.load_from_disk reads what save_sae wrote and computes the same outputs."""
    cfg = SAEConfig(arch=arch, d_in=8, d_sae=24, k=3, hook_in="blocks.1.ln2.hook_normalized" if transcoder else
                    "blocks.1.hook_resid_post", model_name="tiny-llama", d_out=8 if transcoder else None,
                    hook_out="blocks.1.hook_mlp_out" if transcoder else None)
    torch.manual_seed(0)
    sae = make(cfg)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.2 * torch.randn_like(p))
    save_sae(sae, tmp_path / "s")
    x = torch.randn(16, 8)
    with torch.no_grad():
        save_file({"x": x, "acts": sae.encode(x).acts, "out": sae(x)}, tmp_path / "want.safetensors")
    code = (
        "import sys, torch; from safetensors.torch import load_file; from sae_lens import SAE\n"
        "s = SAE.load_from_disk(sys.argv[1]); w = load_file(sys.argv[2])\n"
        "a = s.encode(w['x']); o = s.decode(a)\n"
        # float32 in another process/library version: 1e-5 ~ 84 eps32 x |acts| (~1)
        "assert torch.allclose(a, w['acts'], atol=1e-5), (a - w['acts']).abs().max()\n"
        "assert torch.allclose(o, w['out'], atol=1e-5), (o - w['out']).abs().max()\n"
        "print(type(s).__name__, s.cfg.metadata.hook_name)\n"
    )
    p = subprocess.run([str(SAELENS_PY), "-c", code, str(tmp_path / "s"), str(tmp_path / "want.safetensors")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-1500:]
    assert cfg.hook_in in p.stdout
