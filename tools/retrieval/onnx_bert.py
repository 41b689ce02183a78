"""An ONNX graph of a BERT sentence encoder, written from its safetensors weights.

`build_bert_onnx` reads a sentence-transformers folder (config.json, model.safetensors,
1_Pooling) and writes the same computation as an ONNX graph: embeddings, the encoder
layers (post-LayerNorm, exact-erf GELU), then masked mean pooling, as
sentence-transformers' `Transformer` + `Pooling(mean)` modules do. Normalisation is left
to the caller. No torch and no exporter are involved: the graph is built node by node
with `onnx.helper`, so it depends only on the weights and the architecture written here.

Only the BERT shape that MiniLM and its relatives use is supported (absolute position
embeddings, mean pooling, `gelu` activation); anything else raises `UnsupportedModelError`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from harmonygraph.tools.retrieval.errors import EmbeddingError

__all__ = ["ONNX_GRAPH_VERSION", "UnsupportedModelError", "build_bert_onnx"]

# Bump when the graph written here changes, so that cached files are rebuilt.
ONNX_GRAPH_VERSION = 1
OPSET = 17


class UnsupportedModelError(EmbeddingError):
    """The model folder holds an architecture the ONNX graph builder does not write."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(
            f"cannot read {path} ({exc}); the model folder must be a sentence-transformers "
            "folder with config.json and model.safetensors"
        ) from exc


def check_architecture(model_dir: Path) -> dict[str, Any]:
    """The model's config, after checking that `build_bert_onnx` can write it."""
    config = _read_json(model_dir / "config.json")
    pooling_file = model_dir / "1_Pooling" / "config.json"
    pooling = _read_json(pooling_file) if pooling_file.exists() else {"pooling_mode_mean_tokens": True}
    problems = []
    if config.get("model_type") != "bert":
        problems.append(f"model_type {config.get('model_type')!r} (only 'bert')")
    if config.get("hidden_act") != "gelu":
        problems.append(f"hidden_act {config.get('hidden_act')!r} (only 'gelu')")
    if config.get("position_embedding_type", "absolute") != "absolute":
        problems.append("relative position embeddings")
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        problems.append(f"pooling {modes} (only mean pooling)")
    if not (model_dir / "model.safetensors").exists():
        problems.append("no model.safetensors")
    if problems:
        raise UnsupportedModelError(
            f"{model_dir} is not a model the ONNX runtime can run ({'; '.join(problems)}); "
            "use the sentence-transformers runtime for it (HARMONYGRAPH_EMBED_RUNTIME=torch)"
        )
    return config


def build_bert_onnx(model_dir: Path, out_path: Path) -> None:
    """Write the ONNX graph of the model in `model_dir` to `out_path` (atomically).

    Inputs `input_ids` and `attention_mask` (int64, [batch, length]); output
    `embedding` (float32, [batch, hidden]): the masked mean of the last layer, not
    normalised.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    config = check_architecture(model_dir)
    weights = load_file(str(model_dir / "model.safetensors"))
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

    def w(name: str) -> np.ndarray:
        try:
            return np.asarray(weights[prefix + name], dtype=np.float32)
        except KeyError as exc:
            raise UnsupportedModelError(
                f"{model_dir / 'model.safetensors'} has no tensor {prefix + name!r}: "
                "not a BERT checkpoint this builder knows"
            ) from exc

    inits: list[Any] = []
    nodes: list[Any] = []
    counter = [0]

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        counter[0] += 1
        out = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def linear(x: str, name: str) -> str:
        # torch keeps [out, in]; MatMul wants [in, out].
        weight = const(f"{name}.weight_t", w(f"{name}.weight").T)
        bias = const(f"{name}.bias", w(f"{name}.bias"))
        return node("Add", [node("MatMul", [x, weight]), bias])

    def layer_norm(x: str, name: str) -> str:
        scale = const(f"{name}.weight", w(f"{name}.weight"))
        bias = const(f"{name}.bias", w(f"{name}.bias"))
        return node("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)

    # Embeddings: word + position + token type 0, then LayerNorm.
    words = node("Gather", [const("word_embeddings", w("embeddings.word_embeddings.weight")), "input_ids"])
    # Positions 0..length-1: a slice of the position table as long as the input.
    length = node(
        "Slice",
        [node("Shape", ["input_ids"]), const("one_1d", np.array([1], dtype=np.int64)),
         const("two_1d", np.array([2], dtype=np.int64))],
    )  # fmt: skip
    pos = node(
        "Slice",
        [const("position_embeddings", w("embeddings.position_embeddings.weight")),
         const("zero_1d", np.array([0], dtype=np.int64)), length,
         const("axis_0", np.array([0], dtype=np.int64))],
    )  # fmt: skip
    token_type = const("token_type_0", w("embeddings.token_type_embeddings.weight")[0])
    x = node("Add", [node("Add", [words, pos]), token_type])
    x = layer_norm(x, "embeddings.LayerNorm")

    # Additive attention mask, [batch, 1, 1, length]: 0 where a token is, very negative on padding.
    mask_f = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    inverted = node("Sub", [const("f_one", np.array(1.0, dtype=np.float32)), mask_f])
    bias4 = node(
        "Unsqueeze",
        [node("Mul", [inverted, const("neg_big", np.array(-1e9, dtype=np.float32))]),
         const("axes_1_2", np.array([1, 2], dtype=np.int64))],
    )  # fmt: skip
    split_heads = const("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = const("attn_scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))
    inv_sqrt2 = const("inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))

    for i in range(layers):
        p = f"encoder.layer.{i}."
        q = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.query"), split_heads])], perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.key"), split_heads])], perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.value"), split_heads])], perm=[0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias4])
        probs = node("Softmax", [scores], axis=-1)
        context = node("Reshape", [node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merge_heads])
        attn = linear(context, p + "attention.output.dense")
        x = layer_norm(node("Add", [attn, x]), p + "attention.output.LayerNorm")
        inner = linear(x, p + "intermediate.dense")
        # Exact GELU, as BERT's "gelu": 0.5 * x * (1 + erf(x / sqrt 2)).
        erf = node("Erf", [node("Mul", [inner, inv_sqrt2])])
        gelu = node("Mul", [node("Mul", [inner, half]), node("Add", [erf, "f_one"])])
        out = linear(gelu, p + "output.dense")
        x = layer_norm(node("Add", [out, x]), p + "output.LayerNorm")

    # Mean pooling over the real tokens (sentence-transformers' Pooling, mean mode).
    mask3 = node("Unsqueeze", [mask_f, const("axis_2", np.array([2], dtype=np.int64))])
    axis1 = const("axis_1", np.array([1], dtype=np.int64))
    summed = node("ReduceSum", [node("Mul", [x, mask3]), axis1], keepdims=0)
    counts = node("Max", [node("ReduceSum", [mask3, axis1], keepdims=0), const("tiny", np.array(1e-9, dtype=np.float32))])
    nodes.append(helper.make_node("Div", [summed, counts], ["embedding"], name="embedding"))

    graph = helper.make_graph(
        nodes,
        "sentence_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "length"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="harmonygraph",
        producer_version=str(ONNX_GRAPH_VERSION),
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{id(model)}.tmp")
    try:
        tmp.write_bytes(model.SerializeToString())
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
