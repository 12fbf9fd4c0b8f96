"""save_pretrained -> a fresh Python process that knows nothing of the installed package loads the folder with
`trust_remote_code=True` through the Auto classes, offline, and reproduces the outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch

from model_fixtures import mixed_pixels, threshold_between, tiny_model
from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification


CODE_FILES = {"configuration_ppt_deit.py", "modeling_ppt_deit.py", "token_ops.py"}
AUTO_MAP = {
    "AutoConfig": "configuration_ppt_deit.PPTDeiTConfig",
    "AutoModel": "modeling_ppt_deit.PPTDeiTModel",
    "AutoModelForImageClassification": "modeling_ppt_deit.PPTDeiTForImageClassification",
}

# Runs in the child. The installed package is made unimportable, so only the saved code files can serve.
CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path


    class BlockInstalledPackage:
        def find_spec(self, name, path=None, target=None):
            if name == "modeling_ppt_deit" or name.startswith("modeling_ppt_deit."):
                raise ImportError(f"test: the installed package must not be imported ({name})")
            return None


    sys.meta_path.insert(0, BlockInstalledPackage())
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

    work = Path(sys.argv[1])
    report = {}
    for case in json.loads((work / "cases.json").read_text()):
        folder = work / case
        data = torch.load(work / f"{case}.pt")
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        entry = {
            "config_class": type(config).__name__,
            "config_module": type(config).__module__,
            "base_class": type(base).__name__,
            "base_module": type(base).__module__,
        }
        with torch.no_grad():
            hidden = base(data["pixel_values"]).last_hidden_state
            entry["base_max_diff"] = float((hidden - data["last_hidden_state"]).abs().max())
            if "logits" in data:
                model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
                entry["class"] = type(model).__name__
                entry["module"] = type(model).__module__
                out = model(data["pixel_values"], output_compression=True)
                entry["logits_max_diff"] = float((out.logits - data["logits"]).abs().max())
                entry["pruned"] = [r.pruned.tolist() for r in out.compression]
        report[case] = entry
    report["installed_package_imported"] = "modeling_ppt_deit" in sys.modules
    (work / "report.json").write_text(json.dumps(report))
    """
)


def _save_case(work, name, model, x):
    folder = work / name
    model.save_pretrained(folder)
    with torch.no_grad():
        if isinstance(model, PPTDeiTForImageClassification):
            out = model(x, output_compression=True, output_hidden_states=True)
            data = {"pixel_values": x, "logits": out.logits,
                    "last_hidden_state": model.deit(x).last_hidden_state,
                    "pruned": [r.pruned.tolist() for r in out.compression]}
        else:
            data = {"pixel_values": x, "last_hidden_state": model(x).last_hidden_state}
    torch.save(data, work / f"{name}.pt")
    return folder, data


def test_remote_code_round_trip_in_fresh_process(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    x = mixed_pixels(8)

    classifier = tiny_model(initializer_range=0.5, prune_threshold=0.0)
    with torch.no_grad():
        tau = threshold_between(classifier(x, output_compression=True).compression[0].score_variance)
    classifier.configure_compression(prune_threshold=tau)
    distilled = tiny_model(seed=1, use_distillation_token=True, distillation_head=True, score_function="entropy",
                           prune_threshold=float("inf"), tokens_removed=[10, 5])
    base = tiny_model(seed=2, prune_threshold=0.0).deit
    cases = {"classifier": classifier, "distilled": distilled, "base": base}
    saved = {name: _save_case(work, name, model, x) for name, model in cases.items()}
    (work / "cases.json").write_text(json.dumps(list(cases)))
    pruned = saved["classifier"][1]["pruned"][0]
    assert any(pruned) and not all(pruned)

    for name, (folder, _) in saved.items():
        files = {p.name for p in folder.iterdir()}
        assert CODE_FILES <= files, files
        assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files), files
        config = json.loads((folder / "config.json").read_text())
        assert config["auto_map"] == AUTO_MAP
        assert config["model_type"] == "ppt_deit"
    assert json.loads((saved["classifier"][0] / "config.json").read_text())["prune_threshold"] == tau

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    (cwd / "child.py").write_text(CHILD)
    result = subprocess.run([sys.executable, "child.py", str(work)], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((work / "report.json").read_text())
    assert report["installed_package_imported"] is False

    for name in cases:
        entry = report[name]
        assert entry["config_class"] == "PPTDeiTConfig"
        assert entry["base_class"] == "PPTDeiTModel"
        for key in ("config_module", "base_module"):
            assert entry[key].startswith("transformers_modules."), entry[key]
        assert entry["base_max_diff"] <= 1e-6, (name, entry)
    for name in ("classifier", "distilled"):
        entry = report[name]
        assert entry["class"] == "PPTDeiTForImageClassification"
        assert entry["module"].startswith("transformers_modules.") and entry["module"].endswith("modeling_ppt_deit")
        assert entry["logits_max_diff"] <= 1e-6, (name, entry)
        assert entry["pruned"] == saved[name][1]["pruned"]


def test_saved_config_loads_in_process_with_auto_classes(tmp_path):
    """With the package installed, the Auto classes resolve "ppt_deit" without remote code."""
    from transformers import AutoConfig, AutoModelForImageClassification

    tiny_model().save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), PPTDeiTConfig)
    assert isinstance(AutoModelForImageClassification.from_pretrained(tmp_path), PPTDeiTForImageClassification)
