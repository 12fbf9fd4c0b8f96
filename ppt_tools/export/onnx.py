# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Export a PPT-DeiT model to ONNX with its token compression in the graph, and run the file with ONNX Runtime.

    from ppt_tools.export.onnx import export_onnx
    export_onnx(model, "ppt-deit-small.onnx")            # opset 18, dynamic batch size

    ppt-export-onnx CHECKPOINT OUT.onnx [--opset 18] [--overwrite]

The graph keeps PPT's per-sample policy: every reduction layer scores its tokens, chooses pruning or pooling per
sample (score variance against tau) and removes `r` tokens, with proportional attention (`+ log size`) in every
later layer, exactly as the PyTorch forward does; a batch that mixes pruned and pooled samples gives the same
logits in ONNX Runtime as in PyTorch (tests/test_onnx.py). Only the batch size is dynamic: the image size and the
token schedule are fixed at export, as they are for a stock ViT export.

The export uses torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`), which needs the optional
dependencies `onnx` and `onnxscript` (`pip install ".[onnx]"`, which also brings `onnxruntime`). This module is
not part of the shipped model code: `modeling_ppt_deit` never imports it.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib
import json
import sys
from pathlib import Path

import torch

from modeling_ppt_deit import PPTDeiTConfig, PPTDeiTForImageClassification, PPTDeiTModel

from ppt_tools.core.arguments import run_command
from ppt_tools.core.errors import CommandFailure
from ppt_tools.core.models import eval_mode, load_checkpoint, stock_classes
from ppt_tools.core.outputs import FILE, OutputTarget


# torch's dynamo exporter implements its operators at opset 18 (lower versions go through a converter that fails on
# this graph). 18 runs on ONNX Runtime >= 1.14. From opset 23 on, SDPA becomes the ONNX `Attention` operator, whose
# ONNX Runtime CPU kernel (1.32) rejects a key mask broadcast over the queries (PPT's log-size term), so the
# highest opset accepted is 22.
DEFAULT_OPSET = 18
SUPPORTED_OPSETS = range(18, 23)
INPUT_NAME = "pixel_values"
CLASSIFIER_OUTPUTS = ("logits",)
BASE_MODEL_OUTPUTS = ("last_hidden_state", "token_sizes")
METADATA_PREFIX = "ppt_deit."
EXPORTABLE = (PPTDeiTForImageClassification, PPTDeiTModel)


class _TensorOutputs(torch.nn.Module):
    """The model's forward with plain tensors out, in the order of `output_names`: what an ONNX graph returns.

    Attentions, hidden states and compression records are off (they are debugging outputs, and asking for
    attentions would switch every layer to the slow full-probability attention).
    """

    def __init__(self, model: torch.nn.Module, output_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(self, pixel_values: torch.Tensor):
        outputs = self.model(pixel_values=pixel_values, output_attentions=False, output_hidden_states=False)
        values = tuple(getattr(outputs, name) for name in self.output_names)
        return values[0] if len(values) == 1 else values


def output_names_of(model: torch.nn.Module) -> tuple[str, ...]:
    """The graph outputs: `logits` for a classifier (what Optimum's `ORTModelForImageClassification` reads),
    `last_hidden_state` and `token_sizes` for the bare encoder."""
    if isinstance(model, PPTDeiTForImageClassification):
        return CLASSIFIER_OUTPUTS
    if isinstance(model, PPTDeiTModel):
        return BASE_MODEL_OUTPUTS
    raise TypeError(
        f"export_onnx exports a PPT-DeiT model ({', '.join(cls.__name__ for cls in EXPORTABLE)}), got "
        f"{type(model).__module__}.{type(model).__name__}; load one with "
        "PPTDeiTForImageClassification.from_pretrained(...) (it also loads stock DeiT / ViT checkpoints)"
    )


ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # the optional `.[onnx]` extra


class OnnxMismatchError(CommandFailure):
    """The exported graph, run in ONNX Runtime, does not give the model's outputs."""


def check_onnx_packages(purpose: str, packages: tuple[str, ...] = ONNX_PACKAGES) -> None:
    """Raise `ValueError` naming the optional ONNX packages that do not import, before `purpose` does any work.
    This module imports them only where they are used, so that the eager paths run without them."""
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ValueError(f"{purpose} needs the optional ONNX dependencies ({', '.join(missing)} not installed): "
                         'pip install ".[onnx]"')


def check_opset(opset) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in SUPPORTED_OPSETS:
        raise ValueError(
            f"opset {opset!r} is not supported; choose one of {list(SUPPORTED_OPSETS)} (default {DEFAULT_OPSET}). "
            "torch's exporter starts at 18, and from 23 on ONNX Runtime's CPU Attention kernel rejects PPT's "
            "per-key mask"
        )
    return opset


def check_target(path, overwrite: bool = False) -> Path:
    """The output file: a `.onnx` name (so that `overwrite` can never replace a checkpoint's weights or config),
    its folder must exist, and an existing file is only replaced with `overwrite`."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"{str(path)!r} does not end in .onnx; give the path of the .onnx file to write")
    folder = path.parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"cannot write {str(path)!r}: its folder {str(folder)!r} {what}; create it first")
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a folder; give the path of the .onnx file to write inside it")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; it is left as it is (pass overwrite=True / --overwrite to replace it)")
    return path


def check_float32(model: torch.nn.Module) -> None:
    """The export runs in float32 only: torch exports a bf16 or fp16 model without complaint, but ONNX Runtime's CPU
    kernels refuse the file (no bf16 Conv; no fp16 ScatterND with `add`, which pooling uses)."""
    dtypes = sorted({str(tensor.dtype) for tensor in (*model.parameters(), *model.buffers())
                     if tensor.is_floating_point() and tensor.dtype != torch.float32})
    if dtypes:
        raise ValueError(
            f"export_onnx exports float32 models; this one holds {', '.join(dtypes)} weights, which ONNX Runtime's CPU "
            "kernels refuse to run. Export a float32 copy (copy.deepcopy(model).float(), or load it with "
            "dtype=torch.float32); to make the file smaller, convert the exported .onnx afterwards with ONNX tools "
            "and check it against PyTorch in ONNX Runtime"
        )


def compression_metadata(config: PPTDeiTConfig) -> dict[str, str]:
    """The PPT settings baked into the graph, as ONNX metadata (strings), so a file says what it computes."""
    settings = {
        "reduction_layers": list(config.reduction_layers),
        "tokens_removed": config.tokens_removed,
        "prune_threshold": str(config.prune_threshold) if config.prune_threshold == float("inf") else config.prune_threshold,
        "score_function": config.score_function,
        "proportional_attention": config.proportional_attention,
        "token_schedule": [list(step) for step in config.token_schedule()],
        "image_size": config.image_size,
        "num_protected_tokens": config.num_protected_tokens,
    }
    return {METADATA_PREFIX + name: json.dumps(value) for name, value in settings.items()}


def _example_input(model: torch.nn.Module, batch_size: int) -> torch.Tensor:
    config = model.config
    size = config.image_size if isinstance(config.image_size, (tuple, list)) else (config.image_size,) * 2
    parameter = next(model.parameters())
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch_size, config.num_channels, *size, generator=generator)
    return pixels.to(device=parameter.device, dtype=parameter.dtype)


def export_onnx(
    model: PPTDeiTForImageClassification | PPTDeiTModel,
    path,
    opset: int = DEFAULT_OPSET,
    *,
    overwrite: bool = False,
    example_batch_size: int = 2,
    metadata: dict[str, str] | None = None,
    verify=None,
) -> Path:
    """Export `model` to the ONNX file `path`, with a dynamic batch size and the compression in the graph.

    Args:
        model: a `PPTDeiTForImageClassification` (graph input `pixel_values` `[batch, C, H, W]`, output `logits`
            `[batch, num_labels]`) or a `PPTDeiTModel` (outputs `last_hidden_state` `[batch, final_tokens,
            hidden]` and `token_sizes` `[batch, final_tokens]`). Exported in eval mode with its current PPT
            settings (which the file's metadata records); its train/eval mode is restored afterwards.
        path: the `.onnx` file to write. Its folder must exist. The file is written under a staging name beside it
            and renamed at the end (`ppt_tools.core.outputs`), so a failed export leaves nothing behind.
        opset: ONNX opset, one of `SUPPORTED_OPSETS` (default 18).
        overwrite: replace an existing `path`; without it an existing file raises `FileExistsError`.
        example_batch_size: the batch traced (>= 2, so that the batch dimension is not specialised to 1).
        metadata: extra string metadata for the file (beside the PPT settings, which are always recorded).
        verify: called with the path of the written file before it takes `path`'s place; whatever it raises
            leaves `path` as it was (e.g. a file ONNX Runtime refuses, or whose outputs differ from PyTorch's).

    Returns:
        The path written. Weights are stored inside the file (no external data), so it is a single file.
    """
    output_names = output_names_of(model)
    return _export(model, output_names, {**compression_metadata(model.config), **(metadata or {})}, path, opset,
                   overwrite, example_batch_size, verify)


def export_stock_classifier(model: torch.nn.Module, path, opset: int = DEFAULT_OPSET, *, overwrite: bool = False,
                            example_batch_size: int = 2, metadata: dict[str, str] | None = None) -> Path:
    """Export a stock `transformers` image classifier (the comparator: `ViTForImageClassification`, DeiT) exactly
    as `export_onnx` exports a PPT model: same exporter, opset, dynamic batch, input `pixel_values`, output
    `logits`. For speed comparisons of the two graphs in ONNX Runtime."""
    if not (hasattr(model, "config") and hasattr(model.config, "image_size") and hasattr(model.config, "num_labels")):
        raise TypeError(f"export_stock_classifier needs a transformers image classifier, got {type(model).__name__}")
    if isinstance(model, EXPORTABLE):
        raise TypeError("this is a PPT-DeiT model: use export_onnx")
    return _export(model, CLASSIFIER_OUTPUTS, dict(metadata or {}), path, opset, overwrite, example_batch_size)


FINGERPRINT_KEY = METADATA_PREFIX + "export_fingerprint"


def export_fingerprint(model: torch.nn.Module, opset: int) -> str:
    """A digest of what an export of `model` depends on: its class, config (PPT settings included), weights and the
    opset, and the torch version (the exporter). Equal fingerprints mean an existing file can be reused."""
    digest = hashlib.sha256()
    digest.update(json.dumps([type(model).__name__, model.config.to_dict(), opset, torch.__version__],
                             sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def file_metadata(path) -> dict[str, str]:
    """The metadata of an ONNX file; `ValueError` if it is not one."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends: not an ONNX file
        raise ValueError(f"{str(path)!r} is not a readable ONNX file ({type(error).__name__}: {error})") from None
    return {prop.key: prop.value for prop in model.metadata_props}


def _export(model, output_names, metadata, path, opset, overwrite, example_batch_size, verify=None) -> Path:
    opset = check_opset(opset)
    path = check_target(path, overwrite)
    if isinstance(example_batch_size, bool) or not isinstance(example_batch_size, int) or example_batch_size < 2:
        raise ValueError(f"example_batch_size must be an int >= 2 (a traced batch of 1 would fix the batch size), "
                         f"got {example_batch_size!r}")
    check_float32(model)
    check_onnx_packages("the ONNX export", ("onnx", "onnxscript"))  # before tracing for a minute

    with eval_mode(model):
        example = _example_input(model, example_batch_size)
        program = torch.onnx.export(
            _TensorOutputs(model, output_names).eval(),
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch_size")}},
            verbose=False,
        )
    program.model.metadata_props.update(metadata)
    # One writer of the file at a time; a kill leaves the old file or the new one, and the next export removes its
    # staging file (`ppt_tools.core.outputs`).
    with OutputTarget(path, kind=FILE, replace=overwrite) as output, output.staging() as staging:
        program.save(str(staging), external_data=False)
        if verify is not None:
            verify(staging)  # a file that fails its check is never put in place
    return path


# --------------------------------------------------------------------------------------------------------------------
# Running the file
# --------------------------------------------------------------------------------------------------------------------


def onnx_session(path, threads: int | None = None, optimization: str = "all", device: str | torch.device = "cpu",
                 optimized_model_path=None, spinning: bool = True):
    """An ONNX Runtime session on `path`: CPU, or CUDA for a CUDA `device` (needs `onnxruntime-gpu`). `threads` sets
    the intra-op pool (inter-op stays 1, sequential); `optimization` is "all" (ORT's default), "extended", "basic"
    or "none"; `optimized_model_path` saves the graph as ORT optimised it. `spinning=False`: the pool's threads sleep
    as soon as a run ends instead of busy-waiting for the next one (ORT's default), which leaves the cores to
    whatever runs next in the process but costs every parallel operator a wake-up (benchmark.py keeps the spinning
    and pauses between models)."""
    import onnxruntime

    levels = {
        "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    if optimization not in levels:
        raise ValueError(f"optimization {optimization!r} is not one of {sorted(levels)}")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    device = torch.device(device)
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise ValueError(f"ONNX Runtime {onnxruntime.__version__} here has no CUDAExecutionProvider (providers: "
                             f"{onnxruntime.get_available_providers()}); install onnxruntime-gpu in place of "
                             "onnxruntime, or use --device cpu")
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return onnxruntime.InferenceSession(str(path), options, providers=providers)


def onnx_runner(session, pixel_values: torch.Tensor):
    """A zero-argument callable running `session` on `pixel_values` (for timing): on the CPU a plain run on the
    tensor's memory; for a CUDA tensor an I/O binding, so that input and output stay on the GPU (no host copies
    timed, as for the PyTorch models)."""
    if pixel_values.device.type != "cuda":
        feed = {INPUT_NAME: pixel_values.detach().contiguous().numpy()}
        return lambda: session.run(None, feed)
    import numpy

    pixel_values = pixel_values.detach().contiguous()
    binding = session.io_binding()
    binding.bind_input(INPUT_NAME, device_type="cuda", device_id=pixel_values.device.index or 0,
                       element_type=numpy.float32, shape=tuple(pixel_values.shape), buffer_ptr=pixel_values.data_ptr())
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda", pixel_values.device.index or 0)

    def run():
        session.run_with_iobinding(binding)
        return pixel_values  # keeps the bound input alive as long as the callable

    return run


def operator_counts(path) -> collections.Counter:
    """How many nodes of each operator type the ONNX file's main graph has (`domain.Op` outside the default domain)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return collections.Counter(f"{node.domain + '.' if node.domain else ''}{node.op_type}" for node in graph.node)


def onnx_outputs(session, pixel_values: torch.Tensor) -> list[torch.Tensor]:
    """Run `session` on `pixel_values`; the graph outputs as tensors, in the graph's order."""
    outputs = session.run(None, {INPUT_NAME: pixel_values.detach().cpu().numpy()})
    return [torch.from_numpy(output) for output in outputs]


def max_difference(model: torch.nn.Module, session, pixel_values: torch.Tensor) -> float:
    """Largest absolute difference between the graph's first output (logits / last hidden state) and PyTorch's."""
    name = "last_hidden_state" if isinstance(model, PPTDeiTModel) else "logits"
    with torch.inference_mode():
        expected = getattr(model(pixel_values=pixel_values), name).float().cpu()
    return float((onnx_outputs(session, pixel_values)[0].float() - expected).abs().max())


# --------------------------------------------------------------------------------------------------------------------
# Optimum
# --------------------------------------------------------------------------------------------------------------------

# The config.json keys Optimum's ORTModelForImageClassification can use: the architecture (for the record) and the
# labels. The graph itself holds everything it computes, PPT included.
_RUNTIME_CONFIG_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                        "layer_norm_eps", "image_size", "patch_size", "num_channels", "qkv_bias", "id2label", "label2id")


def onnx_runtime_config(config: PPTDeiTConfig) -> dict:
    """A plain `vit` (or, with the DIST token, `deit`) config.json for the folder that holds the ONNX file, naming
    the stock classifier whose weights are ours (`ppt_tools.core.models.stock_classes`).

    Optimum's `ORTModelForImageClassification` (optimum-onnx 0.1, which needs transformers < 4.58) reads the
    config.json of the folder it loads; ours (`ppt_deit`, remote code for transformers >= 5.9) cannot load there.
    With `onnx/model.onnx` beside this config, `ORTModelForImageClassification.from_pretrained(repo,
    subfolder="onnx")` loads the graph without remote code (checked: same logits as PyTorch within 1e-6).
    """
    settings = config.to_dict()
    runtime = {key: settings[key] for key in _RUNTIME_CONFIG_KEYS if key in settings}
    model_type, _, stock_class = stock_classes(config)  # the stock classifier that holds exactly these weights
    runtime["model_type"] = model_type
    runtime["architectures"] = [stock_class.__name__]
    runtime["ppt_deit"] = {key.removeprefix(METADATA_PREFIX): json.loads(value)
                           for key, value in compression_metadata(config).items()}
    return runtime


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def _load(checkpoint: str) -> PPTDeiTForImageClassification:
    # In float32 whatever dtype the checkpoint was saved in: the only dtype the export runs in (`check_float32`).
    return load_checkpoint(checkpoint, dtype=torch.float32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppt-export-onnx",
        allow_abbrev=False,
        description="Export a PPT-DeiT image classifier to ONNX (dynamic batch size, compression in the graph), "
                    "then check it against PyTorch with ONNX Runtime.",
    )
    parser.add_argument("--model_name_or_path", required=True,
                        help="model folder (save_pretrained / train.py output, or a stock DeiT / ViT)")
    parser.add_argument("--output_file", required=True, help="the .onnx file to write (its folder must exist)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--no_check", action="store_true",
                        help="skip running the file with ONNX Runtime against PyTorch (batches of 1 and 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("ppt-export-onnx", _export_checkpoint, args)


def _export_checkpoint(args) -> int:
    check_opset(args.opset)
    check_target(args.output_file, args.overwrite)  # before loading the model: fail in a second, not in a minute
    model = _load(args.model_name_or_path)
    checked = {}

    def check(staged) -> None:
        # ONNX Runtime against PyTorch on the staged file: a file that fails is never put in place
        session = onnx_session(staged)
        checked["worst"] = max(max_difference(model, session, _example_input(model, batch)) for batch in (1, 3))
        if not checked["worst"] <= 1e-4:
            raise OnnxMismatchError(f"the exported graph {args.output_file!r} does not match PyTorch within 1e-4 "
                                    f"({checked['worst']:.2e}); it was not written")

    path = export_onnx(model, args.output_file, args.opset, overwrite=args.overwrite,
                       verify=None if args.no_check else check)
    config = model.config
    print(f"wrote {path} (opset {args.opset}, dynamic batch size; PPT r={config.tokens_removed} at layers "
          f"{list(config.reduction_layers)}, tau={config.prune_threshold:g}, score {config.score_function})")
    if not args.no_check:
        print(f"ONNX Runtime vs PyTorch, batches of 1 and 3: max |logits difference| = {checked['worst']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
