"""The packaged MiniLM (a 6-layer BERT) as an ONNX graph, built from its safetensors weights with
the ``onnx`` helper API — no torch, no export, no download — and quantised to int8 once.
Attention, the residual + layer norms and the GELU use ONNX Runtime's fused operators
(``com.microsoft``: Attention, SkipLayerNormalization, BiasGelu).

The graph takes ``input_ids`` and ``attention_mask`` (int64, [batch, tokens]) and returns the
sentence embedding sentence-transformers computes for this model: mean of the last hidden states
over the unmasked tokens, L2-normalised. Token type ids are always 0 for single sentences, so the
type-0 embedding is folded into the position table.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from pathlib import Path

import numpy as np

from robustft.errors import ConfigError

OPSET = 18
MS = "com.microsoft"  # ONNX Runtime's fused transformer operators
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as a numpy array (the format is an 8-byte header
    length, a JSON header of dtype/shape/offsets, then the raw little-endian data)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(meta["dtype"])
        if dtype is None:
            raise ConfigError(f"{path}: tensor {name} has unsupported dtype {meta['dtype']}")
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(meta["shape"]).astype(
            np.float32 if dtype is np.float16 else dtype)
    return out


def build_graph(model_dir: Path):
    """The ONNX ModelProto of the BERT encoder + mean pooling + L2 normalisation."""
    from onnx import TensorProto, helper, numpy_helper

    config = json.loads((model_dir / "config.json").read_text())
    w = read_safetensors(model_dir / "model.safetensors")
    w = {k.removeprefix("bert."): v for k, v in w.items()}
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    eps = float(config.get("layer_norm_eps", 1e-12))
    nodes, inits = [], []
    counter = iter(range(10**9))

    def const(value, name: str | None = None) -> str:
        name = name or f"c{next(counter)}"
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind: str, *inputs: str, **attrs) -> str:
        out = f"t{next(counter)}"
        nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def matmul(x: str, prefix: str) -> str:
        return op("MatMul", x, const(w[f"{prefix}.weight"].T.copy(), f"{prefix}.W"))

    def skip_norm(x: str, skip: str, prefix: str) -> str:
        """LayerNorm(x + bias + skip): the residual, the dense layer's bias and the norm."""
        return op("SkipLayerNormalization", x, skip, const(w[f"{prefix}.LayerNorm.weight"]),
                  const(w[f"{prefix}.LayerNorm.bias"]), const(w[f"{prefix}.dense.bias"]),
                  domain=MS, epsilon=eps)

    def layer_norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", x, const(w[f"{prefix}.weight"], f"{prefix}.g"),
                  const(w[f"{prefix}.bias"], f"{prefix}.beta"), axis=-1, epsilon=eps)

    # embeddings: word + (position + token type 0), LayerNorm
    tokens = op("Gather", op("Shape", "input_ids"), const(np.int64(1)))
    positions = const(w["embeddings.position_embeddings.weight"]
                      + w["embeddings.token_type_embeddings.weight"][0], "embeddings.pos")
    pos = op("Slice", positions, const(np.array([0], np.int64)),
             op("Unsqueeze", tokens, const(np.array([0], np.int64))),
             const(np.array([0], np.int64)))
    words = op("Gather", const(w["embeddings.word_embeddings.weight"], "embeddings.words"),
               "input_ids")
    x = layer_norm(op("Add", words, pos), "embeddings.LayerNorm")

    maskf = op("Cast", "attention_mask", to=TensorProto.FLOAT)
    mask32 = op("Cast", "attention_mask", to=TensorProto.INT32)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        qkv = [f"{p}.attention.self.{name}" for name in ("query", "key", "value")]
        weights = const(np.concatenate([w[f"{n}.weight"].T for n in qkv], axis=1), f"{p}.qkv.W")
        biases = const(np.concatenate([w[f"{n}.bias"] for n in qkv]), f"{p}.qkv.b")
        context = op("Attention", x, weights, biases, mask32, domain=MS, num_heads=heads)
        x = skip_norm(matmul(context, f"{p}.attention.output.dense"), x,
                      f"{p}.attention.output")
        h = op("BiasGelu", matmul(x, f"{p}.intermediate.dense"),
               const(w[f"{p}.intermediate.dense.bias"], f"{p}.intermediate.dense.b"), domain=MS)
        x = skip_norm(matmul(h, f"{p}.output.dense"), x, f"{p}.output")

    # mean pooling over attended tokens, then L2 normalisation
    mask3 = op("Unsqueeze", maskf, const(np.array([2], np.int64)))
    summed = op("ReduceSum", op("Mul", x, mask3), const(np.array([1], np.int64)), keepdims=0)
    count = op("Max", op("ReduceSum", mask3, const(np.array([1], np.int64)), keepdims=0),
               const(np.float32(1e-9)))
    mean = op("Div", summed, count)
    norm = op("Max", op("ReduceL2", mean, const(np.array([1], np.int64)), keepdims=1),
              const(np.float32(1e-12)))
    nodes.append(helper.make_node("Div", [mean, norm], ["embedding"]))

    graph = helper.make_graph(
        nodes, "minilm",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="robustft")


def write_model(model_dir: Path, target: Path, quantize: bool) -> Path:
    """Build the graph (and quantise its MatMul weights to int8 when ``quantize``) into
    ``target``, atomically: a concurrent builder never sees a half-written file."""
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    unique = f"{os.getpid()}.{uuid.uuid4().hex}"
    tmp = target.with_name(f".{target.name}.{unique}.tmp")
    model = build_graph(model_dir)
    if not quantize:
        onnx.save(model, tmp)
    else:
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic


        plain = target.with_name(f".{target.name}.{unique}.fp32")
        onnx.save(model, plain)
        logging.disable(logging.WARNING)  # its advice to pre-process, logged on the root logger
        try:
            quantize_dynamic(plain, tmp, weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Attention"],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            logging.disable(logging.NOTSET)
            plain.unlink(missing_ok=True)
    tmp.replace(target)
    return target
